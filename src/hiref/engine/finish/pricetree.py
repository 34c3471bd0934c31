"""Exact best points under prices: a k-d tree whose nodes know their lowest price.

For the squared Euclidean cost, the c-transform asks, for each query ``x``, the points ``y`` of
lowest ``|x - y|^2 + p(y)``. The part ``alpha |y|^2 + a.y`` of the prices that a least-squares
fit explains is absorbed into the geometry exactly,
``|x - y|^2 + alpha |y|^2 + a.y = (1 + alpha) |y - w|^2 + terms in x alone`` with
``w = (2x - a) / (2 (1 + alpha))``, so each query minimises ``(1 + alpha) |y - w|^2 + r(y)``
over the residual prices ``r``. A node of the tree (a box of points) cannot hold anything
better than ``(1 + alpha) dist(w, box)^2 + min r`` over its points: a branch-and-bound search
visits the nodes nearest first and skips every node whose bound is no better than the ``k``-th
best found. The answer is exact for any prices; after the prices change, only the nodes'
minima are recomputed (linear time), never the tree.

Two things keep the bounds tight (the 10^6-cell sections of ``benchmarks/sections.py``, 2 cores:
the 32 best points of every cell 17.1 s -> 4.0 s, the best two after the auction 7.2 s -> 3.0 s):

- Queries come in spatial order, and each search starts from the previous query's ``k`` best
  points, valued anew: its ``k``-th best value is nearly final before the first node is opened
  (an empty start needs several leaves for that, each opened on a loose bound).
- Each node of the squared Euclidean cost (in up to :data:`_TILT_MAX_DIM` dimensions) carries a
  tilt ``t``, the least-squares slope of the residual over its points, and keeps the least of
  ``r(y) - t.(y - z)`` (``z`` the box's centre) instead of the least ``r``: completing the square
  again, ``stretch |y - w|^2 + t.(y - z)`` is ``stretch |y - w'|^2`` plus terms of ``w`` alone,
  with ``w' = w - t / (2 stretch)``. Where the prices slope across a node (the displacement field
  varies from place to place, which one quadratic cannot absorb), its bound no longer drops to
  the far side's prices.

For the Euclidean distance to a power ``p`` (``|x - y|^p``; ``p = 1``: the Euclidean cost)
nothing is absorbed: a node's bound is ``dist(x, box)^p + min p`` over its points. At the
optimum of the Euclidean cost the values tie along whole transport rays, so its searches are
wider, but still far from all pairs (half-moon to S-curve, 16,384 points, 2 cores: the finish
in 27.6 s instead of 66.5 s by exact minima over all pairs).

The residual varies far less than the prices (these follow the displacement field), so the
search stays local. A k-d tree over points lifted by their prices, ``(y, sqrt(r(y)))``, answers
the same question, but its searches widen wherever ``r`` varies: on 2**20 planted points with
near-optimal prices it took 41 s for every point, against a few seconds here.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
from scipy.spatial import cKDTree

from hiref.engine.finish.neighbours import spatial_order

#: Points per leaf.
_LEAF = 8
#: Fewest queries put in spatial order, and per thread.
_ORDER_MIN = 1 << 14
#: Most dimensions in which the nodes are tilted (the searches of the squared Euclidean cost, see the
#: module docstring).
_TILT_MAX_DIM = 3


@cache
def _kernels() -> tuple[Callable, Callable]:
    """The compiled parts: the nodes' boxes and minima, and the search (compiled once, cached on disk)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def boxes(pts, r, leaf, size, lo, hi, low, tilt, stats):  # pragma: no cover
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
        # from the box's centre, so that no large terms cancel)
        for node in range(1, 2 * size):
            count = stats[node, 0]
            for c in range(d):
                tilt[node, c] = 0.0
                if count > 1:
                    mean = stats[node, 2 + c] / count
                    var = stats[node, 2 + d + c] / count - mean * mean
                    if var > 1e-12 * (hi[node, c] - lo[node, c]) ** 2 and var > 0.0:
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
    def search(w, stretch, half, pts, r, leaf, size, lo, hi, low, tilt, order, rows, out):  # pragma: no cover
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
                if i < 0:
                    continue
                seeded[i] = q
                v = 0.0
                for c in range(d):
                    v += (pts[i, c] - w[q, c]) ** 2
                if half != 1.0:
                    v = v**half
                v = stretch * v + r[i]
                s = t
                while s > 0 and best_v[s - 1] > v:
                    best_v[s], best_i[s] = best_v[s - 1], best_i[s - 1]
                    s -= 1
                best_v[s], best_i[s] = v, i
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
                        v = 0.0
                        for c in range(d):
                            v += (pts[i, c] - w[q, c]) ** 2
                        if half != 1.0:
                            v = v**half
                        v = stretch * v + r[i]
                        if v < best_v[k - 1] and seeded[i] != q:
                            s = k - 1
                            while s > 0 and best_v[s - 1] > v:
                                best_v[s], best_i[s] = best_v[s - 1], best_i[s - 1]
                                s -= 1
                            best_v[s], best_i[s] = v, i
                    continue
                near, far = 2 * node, 2 * node + 1
                b_near, b_far = low[near], low[far]
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
                        b_near += t_near * (w[q, c] - z_near) - t_near * t_near / (4.0 * stretch)
                        b_far += t_far * (w[q, c] - z_far) - t_far * t_far / (4.0 * stretch)
                else:
                    for c in range(d):
                        g_near += max(lo[near, c] - w[q, c], 0.0, w[q, c] - hi[near, c]) ** 2
                        g_far += max(lo[far, c] - w[q, c], 0.0, w[q, c] - hi[far, c]) ** 2
                if half != 1.0:
                    g_near, g_far = g_near**half, g_far**half
                b_near += stretch * g_near
                b_far += stretch * g_far
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

    return boxes, search


class PriceTree:
    """Exact ``k`` lowest ``|x - y|^p + price(y)`` over the points ``y``, for any prices.

    Parameters
    ----------
    b
        The points, (m, d) float64, in the prices' units.
    prices
        Prices (m,) that fix the absorbed quadratic part (any later prices are answered exactly;
        these only set how local the searches are).
    power
        The exponent ``p``: 2 (the squared Euclidean cost, whose prices' quadratic part is
        absorbed into the geometry), or any ``p > 0`` (the Euclidean distance to that power,
        searched on the prices as they are: a node's bound is ``dist(x, box)^p + min price``).
    """

    def __init__(self, b: np.ndarray, prices: np.ndarray, *, power: float = 2.0) -> None:
        m, d = b.shape
        # nearby points share leaves; indices as compact as the graph's (4 bytes below 2**31 points)
        self.order = cKDTree(b).indices.astype(np.int32 if m < 2**31 else np.int64)
        self.half = float(power) / 2.0
        sq = (b * b).sum(1)
        if power == 2.0:
            design = np.concatenate([sq[:, None], b, np.ones((m, 1))], axis=1)
            coef = np.linalg.lstsq(design, prices, rcond=None)[0]
            alpha, slope = float(coef[0]), coef[1:-1]
            if not 1.0 + alpha > 0.05:  # keep the quadratic form well inside positive definiteness
                alpha = 0.0
                slope = np.linalg.lstsq(design[:, 1:], prices, rcond=None)[0][:-1]
        else:
            alpha, slope = 0.0, np.zeros(d)
        self.alpha, self.slope = alpha, slope
        self.pts = np.ascontiguousarray(b[self.order])
        self.absorbed = (alpha * sq + b @ slope)[self.order]
        self.size = 1 << max(0, int(np.ceil(np.log2(max(1, -(-m // _LEAF))))))
        self.lo = np.empty((2 * self.size, d))
        self.hi = np.empty((2 * self.size, d))
        self.low = np.empty(2 * self.size)
        # (for the squared Euclidean cost in few dimensions, see :data:`_TILT_MAX_DIM`)
        self.tilt = np.zeros((2 * self.size, d if self.half == 1.0 and d <= _TILT_MAX_DIM else 0))
        self.r = np.empty(m)
        self.prices = None
        #: A spatial order of the queries that come back (kept here by the caller).
        self.queries: np.ndarray | None = None
        self.update(prices)

    def update(self, prices: np.ndarray) -> None:
        """Take new prices (m,): the nodes' minima are recomputed."""
        if self.prices is not None and np.array_equal(prices, self.prices):
            return
        self.prices = prices.copy()
        self.r = prices[self.order] - self.absorbed
        # sums per node for the tilts: count, r, y, y^2, r y
        stats = np.empty((2 * self.size, 2 + 3 * self.tilt.shape[1]))
        _kernels()[0](self.pts, self.r, _LEAF, self.size, self.lo, self.hi, self.low, self.tilt, stats)

    def best(self, a: np.ndarray, k: int, *, order: np.ndarray | None = None) -> np.ndarray:
        """Indices (q, k) of the ``k`` best points for every query ``a`` (q, d), best first.

        ``order``: the queries in a spatial order (neighbouring queries visit the same nodes);
        computed for many queries when not given (see :func:`.neighbours.spatial_order`).
        """
        k = min(k, self.pts.shape[0])
        q = a.shape[0]
        if order is None and q >= _ORDER_MIN:
            order = spatial_order(a)
        w = (2.0 * a - self.slope[None, :]) / (2.0 * (1.0 + self.alpha))
        w = np.ascontiguousarray(w if order is None else w[order])
        rows = np.arange(q, dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
        # written in place by the search: no copies of the (q, k) answer (at 10^6 points and
        # k = 32, each would be a quarter of a gigabyte)
        found = np.empty((q, k), dtype=self.order.dtype)
        search = _kernels()[1]
        tree = (
            1.0 + self.alpha, self.half, self.pts, self.r, _LEAF, self.size, self.lo, self.hi, self.low, self.tilt,
            self.order,
        )  # fmt: skip
        parts = min(torch.get_num_threads(), max(1, q // _ORDER_MIN))
        if parts > 1:  # the compiled search releases the GIL: one slice of the queries per thread
            cuts = np.linspace(0, q, parts + 1).astype(np.int64)
            with ThreadPoolExecutor(parts) as pool:
                list(
                    pool.map(
                        lambda i: search(w[cuts[i] : cuts[i + 1]], *tree, rows[cuts[i] : cuts[i + 1]], found),
                        range(parts),
                    )
                )
        else:
            search(w, *tree, rows, found)
        return found
