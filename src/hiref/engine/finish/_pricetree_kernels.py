"""The compiled loops of :mod:`.pricetree`: the nodes' boxes, minima and tilts, and the search.

Module-level functions, so that numba caches on disk the search together with the small
functions it calls (see :mod:`._augment_kernels`).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def value(pts, r, w, q, stretch, half, i):  # pragma: no cover
    # stretch |y - w|^(2 half) + r(y) at the point y = pts[i]
    v = 0.0
    for c in range(pts.shape[1]):
        v += (pts[i, c] - w[q, c]) ** 2
    if half != 1.0:
        v = v**half
    return stretch * v + r[i]


@numba.njit(cache=True, nogil=True, inline="always")
def keep(best_v, best_i, v, i, at):  # pragma: no cover
    # v (point i) into the sorted best values, from slot ``at`` (whose entry drops out) down
    while at > 0 and best_v[at - 1] > v:
        best_v[at], best_i[at] = best_v[at - 1], best_i[at - 1]
        at -= 1
    best_v[at], best_i[at] = v, i


@numba.njit(cache=True, nogil=True)
def boxes(pts, r, leaf, size, lo, hi, low, tilt, stats, flat):  # pragma: no cover
    m, d = pts.shape
    tilted = tilt.shape[1] > 0
    for j in range(size):  # leaves: nodes size .. 2 size - 1
        node = size + j
        for c in range(d):
            lo[node, c], hi[node, c] = np.inf, -np.inf
        low[node] = np.inf
        for t in range(stats.shape[1]):
            stats[node, t] = 0.0
        for i in range(j * leaf, min((j + 1) * leaf, m)):
            for c in range(d):
                lo[node, c] = min(lo[node, c], pts[i, c])
                hi[node, c] = max(hi[node, c], pts[i, c])
            low[node] = min(low[node], r[i])
            if tilted:
                stats[node, 0] += 1.0
                stats[node, 1] += r[i]
                for c in range(d):
                    stats[node, 2 + c] += pts[i, c]
                    stats[node, 2 + d + c] += pts[i, c] * pts[i, c]
                    stats[node, 2 + 2 * d + c] += pts[i, c] * r[i]
    for node in range(size - 1, 0, -1):
        for c in range(d):
            lo[node, c] = min(lo[2 * node, c], lo[2 * node + 1, c])
            hi[node, c] = max(hi[2 * node, c], hi[2 * node + 1, c])
        low[node] = min(low[2 * node], low[2 * node + 1])
        if tilted:
            for t in range(stats.shape[1]):
                stats[node, t] = stats[2 * node, t] + stats[2 * node + 1, t]
    if not tilted:
        return
    # each node's tilt: the least-squares slope of r along each axis; its floor is then the
    # least of r(y) - tilt . (y - centre) over its points, exact whatever the tilt (measured
    # from the box's centre, so that no large terms cancel). No tilt along an axis flatter than
    # ``flat`` times the box's widest side (a slope there is noise over almost nothing).
    for node in range(1, 2 * size):
        count = stats[node, 0]
        widest = 0.0
        for c in range(d):
            widest = max(widest, hi[node, c] - lo[node, c])
        for c in range(d):
            tilt[node, c] = 0.0
            if count > 1:
                mean = stats[node, 2 + c] / count
                var = stats[node, 2 + d + c] / count - mean * mean
                if var > (flat * widest) ** 2 and var > 0.0:
                    slope = (stats[node, 2 + 2 * d + c] / count - mean * stats[node, 1] / count) / var
                    tilt[node, c] = slope if np.isfinite(slope) else 0.0  # (infinite prices: no tilt)
        low[node] = np.inf
    for j in range(size):
        for i in range(j * leaf, min((j + 1) * leaf, m)):
            node = size + j
            while node >= 1:
                v = r[i]
                for c in range(d):
                    v -= tilt[node, c] * (pts[i, c] - 0.5 * (lo[node, c] + hi[node, c]))
                low[node] = min(low[node], v)
                node >>= 1


@numba.njit(cache=True, nogil=True)
def search(w, stretch, half, pts, r, leaf, size, lo, hi, low, tilt, order, rounding, rows, out):  # pragma: no cover
    m, d = pts.shape
    k = out.shape[1]
    stack = np.empty(256, dtype=np.int64)
    bounds = np.empty(256)
    best_v = np.empty(k)
    best_i = np.full(k, -1, dtype=np.int64)
    seeded = np.full(m, -1, dtype=np.int64)  # the query whose search started from the point
    for q in range(w.shape[0]):
        # the previous query's best points (a neighbour: the queries come in spatial order)
        # start the search, whose bound is then tight from its first node
        best_v[:] = np.inf
        for t in range(k):
            i = best_i[t]
            if i >= 0:
                seeded[i] = q
                keep(best_v, best_i, value(pts, r, w, q, stretch, half, i), i, t)
        top = 0
        stack[0], bounds[0] = 1, -np.inf
        while top >= 0:
            node, bound = stack[top], bounds[top]
            top -= 1
            if bound >= best_v[k - 1]:
                continue
            if node >= size:
                j = node - size
                for i in range(j * leaf, min((j + 1) * leaf, m)):
                    v = value(pts, r, w, q, stretch, half, i)
                    if v < best_v[k - 1] and seeded[i] != q:
                        keep(best_v, best_i, v, i, k - 1)
                continue
            near, far = 2 * node, 2 * node + 1
            b_near, b_far = low[near], low[far]
            # the magnitudes of the bounds' terms: each bound is lowered by ``rounding`` times
            # them, so that their rounding (the tilted terms cancel) never prunes a better point
            m_near, m_far = abs(b_near), abs(b_far)
            g_near, g_far = 0.0, 0.0
            if tilt.shape[1] > 0:
                # with the centre z of a node's box and its tilt t:
                # stretch |y - w|^2 + t.(y - z) = stretch |y - w'|^2 + t.(w - z) - |t|^2 / (4 stretch),
                # w' = w - t / (2 stretch)
                for c in range(d):
                    t_near, t_far = tilt[near, c], tilt[far, c]
                    s_near, s_far = w[q, c] - t_near / (2.0 * stretch), w[q, c] - t_far / (2.0 * stretch)
                    g_near += max(lo[near, c] - s_near, 0.0, s_near - hi[near, c]) ** 2
                    g_far += max(lo[far, c] - s_far, 0.0, s_far - hi[far, c]) ** 2
                    z_near, z_far = 0.5 * (lo[near, c] + hi[near, c]), 0.5 * (lo[far, c] + hi[far, c])
                    a_near, a_far = t_near * (w[q, c] - z_near), t_far * (w[q, c] - z_far)
                    e_near, e_far = t_near * t_near / (4.0 * stretch), t_far * t_far / (4.0 * stretch)
                    b_near += a_near - e_near
                    b_far += a_far - e_far
                    m_near += abs(a_near) + e_near
                    m_far += abs(a_far) + e_far
            else:
                for c in range(d):
                    g_near += max(lo[near, c] - w[q, c], 0.0, w[q, c] - hi[near, c]) ** 2
                    g_far += max(lo[far, c] - w[q, c], 0.0, w[q, c] - hi[far, c]) ** 2
            if half != 1.0:
                g_near, g_far = g_near**half, g_far**half
            b_near += stretch * g_near - rounding * (m_near + stretch * g_near)
            b_far += stretch * g_far - rounding * (m_far + stretch * g_far)
            if b_far < b_near:
                near, far, b_near, b_far = far, near, b_far, b_near
            if b_far < best_v[k - 1]:  # pushed first, visited after the nearer child
                top += 1
                stack[top], bounds[top] = far, b_far
            if b_near < best_v[k - 1]:
                top += 1
                stack[top], bounds[top] = near, b_near
        for s in range(k):  # into the query's row, as indices of the points as given
            out[rows[q], s] = order[best_i[s]]
