"""Synthetic point-cloud pairs of the HiRef paper (Appendix D.1) and a hard symmetric pair.

Every generator takes ``n`` (points per side) and ``seed`` and returns ``(X, Y)``, two
``float64`` arrays of shape ``(n, 2)``. The same seed gives the same pair on every machine.
"""

from __future__ import annotations

import numpy as np


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        msg = f"`n` must be an int, got {type(n).__name__}."
        raise TypeError(msg)
    if n < 1:
        msg = f"`n` must be at least 1, got {n}."
        raise ValueError(msg)
    return int(n)


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _even_counts(n: int, k: int) -> np.ndarray:
    """Split ``n`` into ``k`` counts that differ by at most one."""
    counts = np.full(k, n // k)
    counts[: n % k] += 1
    return counts


def halfmoon_scurve(n: int = 1024, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Half-moon (source) and S-curve (target), as in the HiRef paper.

    The source is the upper moon of the two-moons law with noise 0.05, rotated by pi/6 and
    shifted by (0, -0.5). The target is an S-curve with noise 0.05 seen along its (3rd, 1st)
    coordinates, scaled by 0.6, rotated by -pi/6 and shifted by (0.5, -2).

    Parameters
    ----------
    n
        Number of points on each side.
    seed
        Seed of the random generator.

    Returns
    -------
    The source and target points, each of shape ``(n, 2)``.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, np.pi, n)
    moon = np.column_stack([np.cos(t), np.sin(t)]) + 0.05 * rng.standard_normal((n, 2))
    X = _rotate(moon, np.pi / 6) + np.array([0.0, -0.5])

    u = 3 * np.pi * (rng.uniform(size=n) - 0.5)
    first = np.sin(u)
    third = np.sign(u) * (np.cos(u) - 1)
    curve = np.column_stack([third, first]) + 0.05 * rng.standard_normal((n, 2))
    Y = _rotate(0.6 * curve, -np.pi / 6) + np.array([0.5, -2.0])
    return X, Y


def checkerboard(n: int = 1024, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-mixture "checkerboard" pair of the HiRef paper.

    The source is an equal mixture of five Gaussians at ``5 * {(0,0), (1,1), (-1,1), (-1,-1),
    (1,-1)}``; the target an equal mixture of four at ``5 * {(1,0), (0,1), (-1,0), (0,-1)}``;
    every component has standard deviation 0.25.

    Parameters
    ----------
    n
        Number of points on each side.
    seed
        Seed of the random generator.

    Returns
    -------
    The source and target points, each of shape ``(n, 2)``.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    src = 5.0 * np.array([[0, 0], [1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float)
    tgt = 5.0 * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=float)
    X = src[rng.integers(0, len(src), n)] + 0.25 * rng.standard_normal((n, 2))
    Y = tgt[rng.integers(0, len(tgt), n)] + 0.25 * rng.standard_normal((n, 2))
    return X, Y


def maf_moons_rings(n: int = 1024, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MAF moon (source) and four concentric rings (target), as in the HiRef paper.

    The source is the banana ``(0.5 * (z0 + z1**2) - 5, z1)`` with ``z ~ N(0, I)``. The target
    puts a quarter of the points, evenly spread in angle, on each of the rings of radii
    ``3 * {1.2, 0.9, 0.55, 0.25}``, with Gaussian noise of standard deviation 0.08.

    Parameters
    ----------
    n
        Number of points on each side.
    seed
        Seed of the random generator.

    Returns
    -------
    The source and target points, each of shape ``(n, 2)``.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    X = np.column_stack([0.5 * (z[:, 0] + z[:, 1] ** 2) - 5.0, z[:, 1]])

    rings = []
    for radius, count in zip(3.0 * np.array([1.2, 0.9, 0.55, 0.25]), _even_counts(n, 4), strict=True):
        angle = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
        rings.append(radius * np.column_stack([np.cos(angle), np.sin(angle)]))
    Y = np.concatenate(rings) + 0.08 * rng.standard_normal((n, 2))
    return X, Y


def uniform_checkerboard(n: int = 1024, *, cells: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform checkerboard: even cells (source) to odd cells (target) of a square grid.

    A hard, symmetric pair: many balanced cuts of it look alike, and an inconsistent cut
    forces mass to travel across whole cells.

    Parameters
    ----------
    n
        Number of points on each side.
    cells
        Number of cells along each axis of the unit square; must be at least 2.
    seed
        Seed of the random generator.

    Returns
    -------
    The source and target points, each of shape ``(n, 2)``, in the unit square.
    """
    n = _check_n(n)
    if cells < 2:
        msg = f"`cells` must be at least 2, got {cells}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij"), -1).reshape(-1, 2)
    even = grid[grid.sum(1) % 2 == 0]
    odd = grid[grid.sum(1) % 2 == 1]

    def sample(corners: np.ndarray) -> np.ndarray:
        picked = corners[rng.integers(0, len(corners), n)]
        return (picked + rng.uniform(size=(n, 2))) / cells

    return sample(even), sample(odd)


SYNTHETIC_PAIRS = {
    "halfmoon_scurve": halfmoon_scurve,
    "checkerboard": checkerboard,
    "maf_moons_rings": maf_moons_rings,
    "uniform_checkerboard": uniform_checkerboard,
}


def gaussian_mixtures(
    n: int = 4096, d: int = 50, *, components: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian mixtures in ``d`` dimensions with shared, moved components.

    A stand-in for cells in a PCA or embedding space: both sides mix the same ``components``
    clusters (means drawn with spread 4 per coordinate), but with different weights, and every
    target component is shifted by a random offset (spread 1) and scaled, so that the
    transport both reweights and moves mass.

    Parameters
    ----------
    n
        Number of points on each side.
    d
        Dimension.
    components
        Number of mixture components.
    seed
        Seed of the random generator.

    Returns
    -------
    The source and target points, each of shape ``(n, d)``.
    """
    n = _check_n(n)
    d = _check_n(d)
    rng = np.random.default_rng(seed)
    means = 4.0 * rng.standard_normal((components, d)) / np.sqrt(d) * np.sqrt(2.0)
    w_src = rng.dirichlet(np.full(components, 2.0))
    w_tgt = rng.dirichlet(np.full(components, 2.0))
    shift = rng.standard_normal((components, d)) / np.sqrt(d)
    scale = rng.uniform(0.7, 1.3, components)
    src = rng.choice(components, n, p=w_src)
    tgt = rng.choice(components, n, p=w_tgt)
    X = means[src] + rng.standard_normal((n, d))
    Y = means[tgt] + shift[tgt] + scale[tgt, None] * rng.standard_normal((n, d))
    return X, Y
