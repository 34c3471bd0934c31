"""Tissue-like pairs of any size whose optimal matching is known: :func:`planted_pair`.

``Y = grad phi(X)`` for a strictly convex ``phi`` (the identity plus a translation and a smooth
wave field, displacements of about three cell spacings). By Brenier's theorem the map
``x -> grad phi(x)`` is the unique optimal transport for the squared Euclidean cost, so pairing
every ``X[i]`` with its own image is the unique optimal one-to-one matching: the gap of any
matching to the optimum, and its share of true partners, are exact at every ``n``.
"""

from __future__ import annotations

import numpy as np

from ._point_clouds import _check_n

# The outline: a union of disks (centre x, centre y, radius) less a notch.
_DISKS = np.array([[0.0, 0.0, 1.0], [0.9, 0.3, 0.6], [-0.6, 0.7, 0.5]])
_NOTCH = np.array([0.2, -0.9, 0.4])
_BOX = np.array([[-1.8, -1.4], [1.8, 1.6]])
_AREA = 3.9  # about the outline's area
# The wave field psi(x) = sum_k a_k sin(w_k . x + b_k).
_WAVES = np.array([[2.0, 1.0], [-1.2, 2.5], [3.0, -0.7]])
_PHASES = np.array([0.3, 1.1, -0.5])
_AMPLITUDES = np.array([1.0, 0.7, 0.5])
_SHIFT = np.array([1.3, -0.8])  # the translation, in spacings


def _inside(points: np.ndarray) -> np.ndarray:
    d2 = ((points[:, None, :] - _DISKS[None, :, :2]) ** 2).sum(2)
    inside = (d2 < _DISKS[None, :, 2] ** 2).any(1)
    return inside & (((points - _NOTCH[:2]) ** 2).sum(1) >= _NOTCH[2] ** 2)


def _lattice(n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    # A hexagonal lattice a little denser than n points on the outline, jittered, then n kept.
    h = np.sqrt(2 * _AREA / (np.sqrt(3) * n * 1.05))
    xs = np.arange(_BOX[0, 0], _BOX[1, 0], h)
    ys = np.arange(_BOX[0, 1], _BOX[1, 1], h * np.sqrt(3) / 2)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(ys.shape[0])[:, None] % 2) * h / 2
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    points = points[_inside(points)]
    points = points + rng.normal(0.0, 0.05 * h, points.shape)
    if points.shape[0] < n:  # pragma: no cover - the 5 % margin always suffices
        msg = f"the lattice holds {points.shape[0]} points, fewer than n={n}."
        raise RuntimeError(msg)
    return points[rng.choice(points.shape[0], n, replace=False)], float(h)


def _density(n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    # Rejection sampling of a smooth density between 0.35 and 1 on the outline.
    parts, total = [], 0
    while total < n:
        points = rng.uniform(_BOX[0], _BOX[1], (2 * n, 2))
        points = points[_inside(points)]
        wave = np.sin(3.1 * points[:, 0] + 1.0) * np.cos(2.3 * points[:, 1] - 0.4)
        keep = rng.uniform(size=points.shape[0]) < 0.35 + 0.65 * (0.5 + 0.5 * wave)
        parts.append(points[keep])
        total += int(keep.sum())
    return np.concatenate(parts)[:n], float(np.sqrt(_AREA / n))


def planted_map(X: np.ndarray, spacing: float) -> np.ndarray:
    """The optimal map of a planted pair: ``X + t + e grad psi(X)``, a gradient of a strictly convex function.

    Parameters
    ----------
    X
        Points, (n, 2).
    spacing
        Typical distance between neighbouring points: the displacements are about three spacings.
    """
    curvature = float((_AMPLITUDES * (_WAVES**2).sum(1)).sum())  # bounds the Hessian of psi
    grad = (np.cos(X @ _WAVES.T + _PHASES) * _AMPLITUDES) @ _WAVES
    e = min(0.5 / curvature, 3.0 * spacing / float(np.abs(grad).max()))
    return X + _SHIFT * spacing + e * grad


def planted_pair(n: int, *, kind: str = "density", seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tissue-like pair with a known optimal matching, for benchmarks at any size.

    Parameters
    ----------
    n
        Points per side.
    kind
        ``"density"``: a smooth non-uniform density on an irregular outline (MERFISH-like);
        ``"lattice"``: a jittered hexagonal lattice on it (Visium-like).
    seed
        Seed of the points and of the shuffle of ``Y``.

    Returns
    -------
    ``X`` and ``Y`` (float64, (n, 2)), and ``truth``: ``X[i]``'s optimal partner is
    ``Y[truth[i]]`` (the unique optimum for the squared Euclidean cost), so
    ``((X - Y[truth]) ** 2).sum(1).mean()`` is the optimal mean cost.

    Examples
    --------
    >>> import hiref as hr
    >>> X, Y, truth = hr.datasets.planted_pair(1000, seed=0)
    >>> X.shape, sorted(truth) == list(range(1000))
    ((1000, 2), True)
    """
    n = _check_n(n)
    if kind not in ("density", "lattice"):
        msg = f"`kind` must be 'density' or 'lattice', got {kind!r}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    X, spacing = _lattice(n, rng) if kind == "lattice" else _density(n, rng)
    images = planted_map(X, spacing)
    order = rng.permutation(n)  # Y[j] is the image of X[order[j]]
    truth = np.empty(n, dtype=np.int64)
    truth[order] = np.arange(n)
    return X, images[order], truth
