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
- Each node of the squared Euclidean cost (in up to :data:`~.batched_search.TILT_MAX_DIM`
  dimensions) carries a tilt ``t``, the least-squares slope of the residual over its points, and
  keeps the least of ``r(y) - t.(y - z)`` (``z`` the box's centre) instead of the least ``r``:
  completing the square again, ``stretch |y - w|^2 + t.(y - z)`` is ``stretch |y - w'|^2`` plus
  terms of ``w`` alone, with ``w' = w - t / (2 stretch)``. Where the prices slope across a node
  (the displacement field varies from place to place, which one quadratic cannot absorb), its
  bound no longer drops to the far side's prices.

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

from hiref.engine.finish.batched_search import BOUND_ROUNDING, FLAT_AXIS, TILT_MAX_DIM, absorbed_fit
from hiref.engine.finish.neighbours import spatial_order

#: Points per leaf.
_LEAF = 8
#: Fewest queries put in spatial order, and per thread.
_ORDER_MIN = 1 << 14


@cache
def _kernels() -> tuple[Callable, Callable]:
    """The compiled parts: the nodes' boxes and minima, and the search (compiled once, cached on disk)."""
    from hiref.engine.finish import _pricetree_kernels  # (numba is imported here)

    return _pricetree_kernels.boxes, _pricetree_kernels.search


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
        # centred: the searches' differences and the fit's columns keep their precision wherever
        # the points lie (queries are centred alike)
        self.centre = b.mean(0) if m else np.zeros(d)
        b = b - self.centre
        sq = (b * b).sum(1)
        alpha, slope = 0.0, np.zeros(d)
        if power == 2.0 and m:
            design = np.concatenate([sq[:, None], b, np.ones((m, 1))], axis=1)
            alpha, slope = absorbed_fit(design.T @ design, design.T @ prices)
        self.alpha, self.slope = alpha, slope
        self.pts = np.ascontiguousarray(b[self.order])
        self.absorbed = (alpha * sq + b @ slope)[self.order]
        self.size = 1 << max(0, int(np.ceil(np.log2(max(1, -(-m // _LEAF))))))
        self.lo = np.empty((2 * self.size, d))
        self.hi = np.empty((2 * self.size, d))
        self.low = np.empty(2 * self.size)
        # (for the squared Euclidean cost in few dimensions, see :data:`~.batched_search.TILT_MAX_DIM`)
        self.tilt = np.zeros((2 * self.size, d if self.half == 1.0 and d <= TILT_MAX_DIM else 0))
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
        _kernels()[0](self.pts, self.r, _LEAF, self.size, self.lo, self.hi, self.low, self.tilt, stats, FLAT_AXIS)

    def best(self, a: np.ndarray, k: int, *, order: np.ndarray | None = None) -> np.ndarray:
        """Indices (q, k) of the ``k`` best points for every query ``a`` (q, d), best first.

        ``order``: the queries in a spatial order (neighbouring queries visit the same nodes);
        computed for many queries when not given (see :func:`.neighbours.spatial_order`).
        """
        k = min(k, self.pts.shape[0])
        q = a.shape[0]
        if order is None and q >= _ORDER_MIN:
            order = spatial_order(a)
        w = (2.0 * (a - self.centre) - self.slope[None, :]) / (2.0 * (1.0 + self.alpha))
        w = np.ascontiguousarray(w if order is None else w[order])
        rows = np.arange(q, dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
        # written in place by the search: no copies of the (q, k) answer (at 10^6 points and
        # k = 32, each would be a quarter of a gigabyte)
        found = np.empty((q, k), dtype=self.order.dtype)
        search = _kernels()[1]
        tree = (
            1.0 + self.alpha, self.half, self.pts, self.r, _LEAF, self.size, self.lo, self.hi, self.low, self.tilt,
            self.order, BOUND_ROUNDING,
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
