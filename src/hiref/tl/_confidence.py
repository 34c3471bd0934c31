"""Per-cell quality of a matching: the cost of each pair and the spatial coherence of partners."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

N_NEIGHBOURS = 8


def matched_cost(A: np.ndarray, B: np.ndarray, perm: np.ndarray, *, root: bool = False) -> np.ndarray:
    """Squared Euclidean distance between every row of ``A`` and its partner ``B[perm]`` (NaN if ``perm < 0``).

    ``root``: the Euclidean distance instead.
    """
    out = np.full(len(perm), np.nan)
    ok = perm >= 0
    d = ((np.asarray(A, np.float64)[ok] - np.asarray(B, np.float64)[perm[ok]]) ** 2).sum(1)
    out[ok] = np.sqrt(d) if root else d
    return out


def neighbours(points: np.ndarray, k: int = N_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of every point's ``k`` nearest other points, (n, k) each (all cores)."""
    k = min(k, len(points) - 1)
    if k < 1:
        empty = np.empty((len(points), 0))
        return empty, empty.astype(np.int64)
    dist, idx = cKDTree(points).query(points, k + 1, workers=-1)
    return dist[:, 1:], idx[:, 1:]


def spatial_confidence(
    own: np.ndarray,
    other: np.ndarray,
    perm: np.ndarray,
    *,
    n_neighbours: int = N_NEIGHBOURS,
    knn: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Share of a cell's spatial neighbours whose partners lie near its own partner.

    For every matched cell, its ``n_neighbours`` nearest cells (by ``own`` coordinates) are
    looked up; a matched neighbour agrees if its partner lies within ``r`` of the cell's
    partner in ``other``, where ``r`` is twice the median distance of a cell of ``other`` to
    its ``n_neighbours``-th neighbour. 1: the neighbourhood moved together; 0: its partners
    are scattered (a doubtful partner). NaN for unmatched cells and cells without a matched
    neighbour. ``knn``: :func:`neighbours` of ``own`` and of ``other``, if already computed
    (both sides of an alignment need the same two).
    """
    n = len(own)
    out = np.full(n, np.nan)
    k = min(n_neighbours, n - 1, len(other) - 1)
    if k < 1:
        return out
    ok = perm >= 0
    (_, near_own), (dist_other, _) = knn if knn is not None else (neighbours(own, k), neighbours(other, k))
    near_own, dist_other = near_own[:, :k], dist_other[:, :k]
    radius = 2.0 * float(np.median(dist_other[:, -1]))
    partner_xy = np.where(ok[:, None], other[np.maximum(perm, 0)], np.nan)
    near = np.linalg.norm(partner_xy[near_own] - partner_xy[:, None, :], axis=2) <= radius
    counted = ok[near_own]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (near & counted).sum(1) / counted.sum(1)
    out[ok] = share[ok]
    return out
