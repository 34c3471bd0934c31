"""The compiled loops of :class:`.neighbours.PlaneGrid`: points of the plane bucketed in square cells.

Module-level functions, so that numba caches them on disk. A cell is ``(cx, cy)`` with
``cx = floor((x - lo_x) / h)`` clamped to the grid, stored at ``cy * gx + cx``; the points are
sorted by cell (a counting sort), their coordinates copied in that order.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _cell(x, lo, h, g):  # pragma: no cover
    c = int((x - lo) / h) if x > lo else 0
    return min(g - 1, c)


@numba.njit(cache=True, nogil=True)
def _by_cell(P, lo_x, lo_y, h, gx, gy):  # pragma: no cover
    # cell pointers (gx * gy + 1,) and the points' indices sorted by cell (a counting sort)
    m = P.shape[0]
    cell = np.empty(m, np.int64)
    start = np.zeros(gx * gy + 1, np.int64)
    for i in range(m):
        c = _cell(P[i, 1], lo_y, h, gy) * gx + _cell(P[i, 0], lo_x, h, gx)
        cell[i] = c
        start[c + 1] += 1
    for c in range(gx * gy):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(m, np.int64)
    for i in range(m):
        order[fill[cell[i]]] = i
        fill[cell[i]] += 1
    return start, order


@numba.njit(cache=True, nogil=True)
def bucket(P, lo_x, lo_y, h, gx, gy):  # pragma: no cover
    """Cell pointers (gx * gy + 1,), the points' indices sorted by cell, and their coordinates in that order."""
    start, order = _by_cell(P, lo_x, lo_y, h, gx, gy)
    S = np.empty((P.shape[0], 2))
    for t in range(P.shape[0]):
        S[t, 0] = P[order[t], 0]
        S[t, 1] = P[order[t], 1]
    return start, order, S


@numba.njit(cache=True, nogil=True)
def query_order(Q, lo_x, lo_y, h, gx, gy):  # pragma: no cover
    """The queries' indices sorted by cell (neighbouring queries then scan the same cells)."""
    return _by_cell(Q, lo_x, lo_y, h, gx, gy)[1]


@numba.njit(cache=True, nogil=True)
def _unscanned_gap(x, y, cx, cy, r, lo_x, lo_y, h, gx, gy):  # pragma: no cover
    # Least distance from (x, y) to a grid cell farther than ring r from (cx, cy); inf when none is left.
    gap = np.inf
    if cx - r > 0:
        gap = min(gap, max(0.0, x - (lo_x + (cx - r) * h)))
    if cx + r < gx - 1:
        gap = min(gap, max(0.0, lo_x + (cx + r + 1) * h - x))
    if cy - r > 0:
        gap = min(gap, max(0.0, y - (lo_y + (cy - r) * h)))
    if cy + r < gy - 1:
        gap = min(gap, max(0.0, lo_y + (cy + r + 1) * h - y))
    return gap


@numba.njit(cache=True, nogil=True)
def nearest_slice(Q, queries, start, order, S, lo_x, lo_y, h, gx, gy, k, max_ring, out, gave_up):  # pragma: no cover
    """The ``k`` nearest points of each query ``queries[t]``, nearest first, ties by index, into ``out``.

    Scans rings of cells around the query's cell until the ``k``-th nearest found is nearer than
    any cell not yet scanned. A query whose answer needs more than ``max_ring`` rings is left
    (``gave_up[t]`` True) for another search.
    """
    best_d = np.empty(k)
    best_i = np.empty(k, np.int64)
    margin = 1e-9 * h  # cells' edges as computed here may differ by rounding from the bucketing
    for t in range(queries.shape[0]):
        q = queries[t]
        x, y = Q[q, 0], Q[q, 1]
        cx, cy = _cell(x, lo_x, h, gx), _cell(y, lo_y, h, gy)
        found = 0
        gave_up[t] = False
        r = 0
        while True:
            for yy in range(max(0, cy - r), min(gy, cy + r + 1)):
                edge = yy == cy - r or yy == cy + r
                xx = cx - r
                while xx <= cx + r:
                    if 0 <= xx < gx:
                        c = yy * gx + xx
                        for s in range(start[c], start[c + 1]):
                            dx = S[s, 0] - x
                            dy = S[s, 1] - y
                            d = dx * dx + dy * dy
                            i = order[s]
                            if found < k:
                                p = found
                                found += 1
                            elif d < best_d[k - 1] or (d == best_d[k - 1] and i < best_i[k - 1]):
                                p = k - 1
                            else:
                                continue
                            while p > 0 and (best_d[p - 1] > d or (best_d[p - 1] == d and best_i[p - 1] > i)):
                                best_d[p] = best_d[p - 1]
                                best_i[p] = best_i[p - 1]
                                p -= 1
                            best_d[p] = d
                            best_i[p] = i
                    # inner rows of the ring: only its first and last columns
                    xx += 1 if edge or r == 0 else 2 * r
            gap = _unscanned_gap(x, y, cx, cy, r, lo_x, lo_y, h, gx, gy)
            if gap == np.inf:
                break
            if found == k:
                gap = max(0.0, gap - margin)
                if best_d[k - 1] < gap * gap:
                    break
            if r == max_ring:
                gave_up[t] = True
                break
            r += 1
        for j in range(found):
            out[q, j] = best_i[j]
