"""Exact best points under prices in batched tensor steps: the device's counterpart of the price tree.

For the squared Euclidean cost, the c-transform asks, for each query ``x``, the points ``y`` of
lowest ``|x - y|^2 + p(y)``. As in :mod:`.pricetree`, the part of the prices that a quadratic
least-squares fit explains is absorbed into the geometry, so each query minimises
``stretch |y - w|^2 + r(y)`` over the residual prices ``r``.

The points are put in Morton (z-curve) order and grouped into leaves of :data:`LEAF`
consecutive points; the leaves are the bottom of an implicit complete binary tree whose nodes
are ranges of that order, each with its bounding box and its lowest residual price (in up to
:data:`TILT_MAX_DIM` dimensions, its tilt, as in the price tree: :meth:`BatchedPriceSearch._tilted`).
All these are computed by reshapes and reductions, and recomputed for new prices in a few
tensor operations. A search runs every query at once, level by level:

1. an upper bound per query: the ``k``-th best value among the points next to it, or to its
   anchor (its partner), in the Morton order (:data:`WINDOW` of them);
2. from the root down, the pairs (query, node) whose lower bound
   (``stretch dist(w, box)^2 + min r``, or its tilted form) is at most that upper bound are
   kept, the others pruned;
3. at the leaves, every point of the surviving leaves is evaluated, and the ``k`` best of each
   query are kept (a segmented sort).

No point with a value at most the upper bound is ever pruned, and the upper bound is the value
of ``k`` actual points, so the answer is exact for any prices. There is no host round trip and
no Python loop over queries: the work is a handful of kernels per level, which is what a GPU
needs; on the CPU the compiled :class:`.pricetree.PriceTree` is faster and is the one used there.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

#: Points per leaf.
LEAF = 8
#: Points next to a query in the Morton order that give its first upper bound.
WINDOW = 32
#: Most (query, point) pairs evaluated at once; queries are searched in slices that stay below it.
MAX_PAIRS = 1 << 24
#: Leaves a query is expected to keep (about 7-10 on planted pairs): sets the first slices' size.
_LEAVES_PER_QUERY = 16
#: Largest ``k`` found by rounds of segmented minima (above, by one segmented sort).
_ROUNDS_MAX_K = 4
#: Fewest queries in a slice (a slice that overflows with this few is searched anyway).
_MIN_SLICE = 256
#: Most dimensions in which the nodes are tilted, here and in :class:`.pricetree.PriceTree` (see
#: :meth:`BatchedPriceSearch._tilted`). The price tree on Gaussian mixtures of 16,384 points (2
#: cores): the same time in 3 and 4 dimensions with or without, in 8 the pricing 2.6 s untilted
#: and 3.5 s tilted.
TILT_MAX_DIM = 3
#: An axis along which the points spread less than this share of their widest spread gets no slope
#: in the absorbed quadratic part (:func:`absorbed_fit`), and an axis of a node's box less than this
#: share of the box's widest side no tilt. A slope fitted along a near-flat axis is noise divided by
#: almost nothing: it put the shifted queries astronomically far from every point, where the large
#: terms of the bounds cancel to nothing in float64 (a planar section lifted into 3-D, off its
#: plane by 1e-13: the price tree's answer wrong for every query, the batched search failing). The
#: price slope along such an axis is as small as the axis is flat, and stays in the residual.
FLAT_AXIS = 1e-3
#: Relative rounding allowed for in a node's lower bound: it is lowered by this share of the sum
#: of its terms' magnitudes (the terms of a tilted bound cancel), so that rounding never prunes a
#: node holding a better point. Far above float64's error on these few terms (about 1e-14).
BOUND_ROUNDING = 1e-12


def absorbed_fit(gram: np.ndarray, rhs: np.ndarray) -> tuple[float, np.ndarray]:
    """``alpha`` and ``slope`` of the least-squares fit ``alpha |c|^2 + slope . c + const`` of prices.

    Parameters
    ----------
    gram, rhs
        The normal equations of the design ``[|c|^2, c, 1]`` over centred points ``c`` (m, d):
        ``design.T @ design`` (d + 2, d + 2) and ``design.T @ prices`` (d + 2,), float64.

    Returns
    -------
    alpha, slope
        ``slope`` (d,) is zero along the axes flatter than :data:`FLAT_AXIS`; ``alpha`` is kept
        above -0.95 (else zero, and the slope refitted), so that ``1 + alpha`` stays well inside
        positive definiteness. Zeros where the fit is not finite: any fit keeps the searches
        exact, only their locality depends on it.
    """
    d = gram.shape[0] - 2
    spread = np.sqrt(np.clip(np.diag(gram)[1 : d + 1], 0.0, None))
    axes = np.flatnonzero(spread > FLAT_AXIS * spread.max()) if d else np.zeros(0, dtype=np.int64)
    slope = np.zeros(d)
    for cols in (np.r_[0, 1 + axes, d + 1], np.r_[1 + axes, d + 1]):
        coef = np.linalg.lstsq(gram[np.ix_(cols, cols)], rhs[cols], rcond=None)[0]
        alpha = float(coef[0]) if cols[0] == 0 else 0.0
        if cols[0] != 0 or 1.0 + alpha > 0.05:
            break
    slope[axes] = coef[-1 - axes.size : -1]
    if not (np.isfinite(alpha) and np.isfinite(slope).all()):
        return 0.0, np.zeros(d)
    return alpha, slope


def morton_codes(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Z-curve codes of integer coordinates ``q`` (n, d), ``bits`` bits each (``bits * d <= 63``).

    Bit ``b`` of coordinate ``c`` goes to bit ``b * d + c`` of the code. Each coordinate's bits are
    spread apart by a few shift-or-mask steps (:func:`_spread_steps`), not one bit at a time: on a
    GPU every tensor operation is a kernel launch (2-D: about 40 instead of 210 per call).
    """
    n, d = q.shape
    code = torch.zeros(n, dtype=torch.int64, device=q.device)
    steps = _spread_steps(bits, d)
    for c in range(d):
        x = q[:, c] & ((1 << bits) - 1)
        for shift, mask in steps:
            x = (x | (x << shift)) & mask
        code |= x << c
    return code


@cache
def _spread_steps(bits: int, d: int) -> tuple[tuple[int, int], ...]:
    """Steps ``x = (x | x << shift) & mask`` that move bit ``i`` of a ``bits``-bit integer to bit ``i * d``.

    The step of every power of two ``s`` (largest first) moves the bits whose index has ``s`` set
    by ``s * (d - 1)``; after all of them bit ``i`` has moved by ``i * (d - 1)``. The mask keeps
    the bits where they now are.
    """
    pos, steps = list(range(bits)), []
    s = 1 << max(0, (bits - 1).bit_length() - 1)
    while s >= 1 and d > 1:
        shift = s * (d - 1)
        pos = [p + shift if i & s else p for i, p in enumerate(pos)]
        steps.append((shift, sum(1 << p for p in pos)))
        s >>= 1
    return tuple(steps)


def morton_order(points: torch.Tensor) -> torch.Tensor:
    """A permutation (n,) of ``points`` (n, d) along the Z-curve of a grid over their box, on their device."""
    n, d = points.shape
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=points.device)
    p = points.double()
    bits = max(1, min(21, 63 // max(1, d)))
    low = p.min(0).values
    span = torch.clamp(p.max(0).values - low, min=1e-300)
    grid = torch.clamp(torch.floor((p - low) / span * float((1 << bits) - 1)), 0, (1 << bits) - 1).to(torch.int64)
    return torch.sort(morton_codes(grid, bits), stable=True).indices


class BatchedPriceSearch:
    """Exact ``k`` lowest ``|x - y|^2 + p(y)`` over the points ``y``, for any prices ``p``, on their device.

    Parameters
    ----------
    b
        The points, (m, d), in the prices' units (any floating dtype; searched in float64).
    prices
        Prices (m,) that fix the absorbed quadratic part (later prices are answered exactly;
        these only set how local the searches are). ``None``: zero prices (nearest neighbours).
    """

    def __init__(self, b: torch.Tensor, prices: np.ndarray | torch.Tensor | None = None) -> None:
        b = b.double()
        m, d = b.shape
        self.m, self.d, self.device = m, d, b.device
        self.centre = b.mean(0) if m else b.new_zeros(d)
        c = b - self.centre
        sq = (c * c).sum(1)
        self.alpha, self.slope = 0.0, b.new_zeros(d)
        if prices is not None and m > d + 2:
            p = torch.as_tensor(prices, dtype=torch.float64, device=self.device)
            design = torch.cat([sq[:, None], c, torch.ones_like(sq)[:, None]], 1)
            # normal equations: (d + 2)^2 numbers reach the host, not the points
            alpha, slope = absorbed_fit((design.T @ design).cpu().numpy(), (design.T @ p).cpu().numpy())
            self.alpha, self.slope = alpha, torch.as_tensor(slope, device=self.device)
        self.stretch = 1.0 + self.alpha
        # Morton order on a grid over the points' box
        self.bits = max(1, min(21, 63 // max(1, d)))
        self.low_corner = c.min(0).values if m else c.new_zeros(d)
        span = (c.max(0).values - self.low_corner) if m else c.new_ones(d)
        self.cell = torch.clamp(span, min=1e-300) / float((1 << self.bits) - 1)
        codes = morton_codes(self._grid(c), self.bits)
        self.codes, order = torch.sort(codes, stable=True)
        self.order = order
        self.rank = torch.empty_like(order)  # place of every point in the Morton order
        self.rank[order] = torch.arange(m, device=self.device)
        self.levels = max(0, int(np.ceil(np.log2(max(1, -(-m // LEAF))))))
        size = (1 << self.levels) * LEAF
        pts = c[order]
        if size > m:  # padding: copies of the last point, never the best (infinite residual)
            pts = torch.cat([pts, pts[-1:].expand(size - m, d)]) if m else c.new_zeros((size, d))
        self.pts = pts
        self.absorbed = (self.alpha * sq + c @ self.slope)[order]
        # bounding boxes of every node, leaves first (level = self.levels) up to the root (level 0)
        lo = pts.view(-1, LEAF, d).min(1).values
        hi = pts.view(-1, LEAF, d).max(1).values
        self.lo, self.hi = [lo], [hi]
        for _ in range(self.levels):
            lo = lo.view(-1, 2, d).min(1).values
            hi = hi.view(-1, 2, d).max(1).values
            self.lo.append(lo)
            self.hi.append(hi)
        self.lo.reverse()
        self.hi.reverse()
        self.prices: torch.Tensor | None = None
        self.queries = None  # interface of the price tree (queries need no order here)
        # (nearest points, without prices, need no tilts: their residual is the absorbed part alone)
        self.tilted = prices is not None and d <= TILT_MAX_DIM
        self.update(np.zeros(m) if prices is None else prices)

    def _grid(self, c: torch.Tensor) -> torch.Tensor:
        """Integer grid coordinates of centred points (clamped to the grid)."""
        q = torch.floor((c - self.low_corner) / self.cell)
        return torch.clamp(q, 0, (1 << self.bits) - 1).to(torch.int64)

    def update(self, prices: np.ndarray | torch.Tensor) -> None:
        """Take new prices (m,): the residuals and the nodes' lowest residuals are recomputed."""
        p = torch.as_tensor(prices, dtype=torch.float64, device=self.device)
        if self.prices is not None and torch.equal(p, self.prices):
            return
        self.prices = p.clone()
        r = p[self.order] - self.absorbed
        pad = self.pts.shape[0] - self.m
        if pad:
            r = torch.cat([r, r.new_full((pad,), float("inf"))])
        self.r = r
        if self.tilted:
            self.tilt, self.low = self._tilted(r)
            return
        self.tilt = None
        low = r.view(-1, LEAF).min(1).values
        self.low = [low]
        for _ in range(self.levels):
            low = low.view(-1, 2).min(1).values
            self.low.append(low)
        self.low.reverse()

    def _tilted(self, r: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every level's tilts (nodes, d) and the least ``r(y) - t.(y - z)`` over each node's points.

        As in :class:`.pricetree.PriceTree`: a node's tilt ``t`` is the least-squares slope of the
        residual along each axis over its points (finite residuals only), ``z`` its box's centre.
        Where the residual slopes across a node (a displacement field that the one quadratic
        cannot absorb: two sections of a tissue), the bound no longer drops to the price of its
        far side (see :meth:`_bounds`). A few reductions per level, all on the device.
        """
        d, pts = self.d, self.pts
        finite = torch.isfinite(r)
        weight = finite.to(r.dtype)
        rf = torch.where(finite, r, 0.0)
        # sums per node, every level (root first, as the boxes): count, r, y, y^2, r y (y centred:
        # no large terms cancel); the tilts of all levels at once (few kernels on a GPU)
        sums = [torch.cat([weight[:, None], rf[:, None], pts * weight[:, None], pts * pts * weight[:, None],
                           pts * rf[:, None]], 1).view(-1, LEAF, 2 + 3 * d).sum(1)]  # fmt: skip
        for _ in range(self.levels):
            sums.append(sums[-1].view(-1, 2, sums[-1].shape[1]).sum(1))
        sums = torch.cat(sums[::-1])
        count = sums[:, :1].clamp_min(1.0)
        mean_y = sums[:, 2 : 2 + d] / count
        var = sums[:, 2 + d : 2 + 2 * d] / count - mean_y * mean_y
        cov = sums[:, 2 + 2 * d :] / count - mean_y * sums[:, 1:2] / count
        lo, hi = torch.cat(self.lo), torch.cat(self.hi)
        widest = (hi - lo).amax(1, keepdim=True)
        flat = (var <= (FLAT_AXIS * widest) ** 2) | (var <= 0) | (sums[:, :1] < 2)
        tilt = torch.where(flat, 0.0, cov / torch.where(flat, 1.0, var))
        tilt = torch.where(torch.isfinite(tilt), tilt, 0.0)  # (infinite prices: no tilt)
        tilts = list(tilt.split([t.shape[0] for t in self.lo]))
        lows = []
        for level, t in enumerate(tilts):
            nodes = t.shape[0]
            centre = 0.5 * (self.lo[level] + self.hi[level])
            shifted = r.view(nodes, -1) - ((pts.view(nodes, -1, d) - centre[:, None]) * t[:, None]).sum(-1)
            lows.append(shifted.min(1).values)
        return tilts, lows

    def _bounds(self, level: int, node: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Lower bounds of ``stretch |y - x|^2 + r(y)`` over the points ``y`` of each ``node`` of ``level``.

        Untilted: ``stretch dist(x, box)^2 + min r``. Tilted (``t``, box centre ``z``), completing
        the square: ``stretch |y - x|^2 + t.(y - z) = stretch |y - x'|^2 + t.(x - z) - |t|^2 / (4 stretch)``
        with ``x' = x - t / (2 stretch)``, and ``r(y) - t.(y - z)`` is at least the node's low.
        """
        lo, hi, low = self.lo[level][node], self.hi[level][node], self.low[level][node]
        if self.tilt is None:
            gap = torch.clamp(lo - x, min=0) + torch.clamp(x - hi, min=0)
            far = self.stretch * (gap * gap).sum(1)
            return far + low - BOUND_ROUNDING * (far + low.abs())
        t = self.tilt[level][node]
        shifted = x - t / (2.0 * self.stretch)
        gap = torch.clamp(lo - shifted, min=0) + torch.clamp(shifted - hi, min=0)
        along, square = t * (x - 0.5 * (lo + hi)), (t * t) / (4.0 * self.stretch)
        far = self.stretch * (gap * gap).sum(1)
        size = far + low.abs() + (along.abs() + square).sum(1)  # (the terms' magnitudes: they cancel)
        return far + low + (along - square).sum(1) - BOUND_ROUNDING * size

    def best(
        self, a: np.ndarray | torch.Tensor, k: int, *, order: np.ndarray | None = None,
        anchor: np.ndarray | torch.Tensor | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Indices (q, k) of the ``k`` best points for every query ``a`` (q, d), best first.

        ``order`` is accepted for the price tree's interface and ignored; ``anchor``: see :meth:`search`.
        """
        del order
        anchor = None if anchor is None else torch.as_tensor(anchor, device=self.device)
        return self.search(torch.as_tensor(a, device=self.device), k, anchor=anchor).cpu().numpy()

    def search(self, a: torch.Tensor, k: int, *, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`best` on the device: indices (q, k) as a tensor there.

        ``anchor`` (q,): a point near which each query's best points likely lie (its partner).
        The search's first bound is then the ``k``-th best of the points next to the anchor in
        the Morton order, not next to the query. On two sections of a tissue the best partners
        lie where the prices' quadratic part does not say (300,000 cells, prices after the first
        solve, tilted nodes): the best two took 314 leaves a query from the query, 58 from its
        partner (the least possible: 58 from the best two themselves); the best 32, 1,085 and
        178. Any points will do: they only set where the search starts pruning.
        """
        k = min(k, self.m)
        a = a.to(device=self.device, dtype=torch.float64)
        q = a.shape[0]
        if k == 0 or q == 0:
            return torch.empty((q, k), dtype=torch.int64, device=self.device)
        w = (2.0 * (a - self.centre) - self.slope) / (2.0 * self.stretch)
        out = torch.empty((q, k), dtype=torch.int64, device=self.device)
        at = None if anchor is None else self.rank[anchor.to(torch.int64)]
        self._search_slices(w, k, out, 0, q, at)
        return self.order[out]

    def _search_slices(
        self, w: torch.Tensor, k: int, out: torch.Tensor, lo: int, hi: int, at: torch.Tensor | None
    ) -> None:  # fmt: skip
        """Search the queries ``lo:hi`` into ``out``, halving slices whose pairs overflow."""
        step = max(_MIN_SLICE, MAX_PAIRS // (_LEAVES_PER_QUERY * LEAF))
        pending = [(s, min(hi, s + step)) for s in range(lo, hi, step)]
        while pending:
            s, e = pending.pop()
            found = self._search(w[s:e], k, force=e - s <= _MIN_SLICE, at=None if at is None else at[s:e])
            if found is None:
                half = (s + e) // 2
                pending += [(s, half), (half, e)]
            else:
                out[s:e] = found

    def _values(self, w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``stretch |pts[idx] - w|^2 + r[idx]`` with ``w`` broadcast against ``idx``'s trailing axis."""
        diff = self.pts[idx] - w.unsqueeze(-2) if idx.dim() > 1 else self.pts[idx] - w
        return self.stretch * (diff * diff).sum(-1) + self.r[idx]

    def _search(
        self, w: torch.Tensor, k: int, *, force: bool, at: torch.Tensor | None = None
    ) -> torch.Tensor | None:  # fmt: skip
        """Positions in the Morton order (q, k) of the best points of the queries ``w``; ``None`` on overflow.

        ``at``: each query's anchor, a position in the Morton order (default: the query's own).
        """
        q = w.shape[0]
        # 1. upper bound: the k-th best of the points next to each query (or its anchor) in the Morton order
        window = min(max(WINDOW, k), self.m)
        if at is None:
            at = torch.searchsorted(self.codes, morton_codes(self._grid(w), self.bits))
        start = torch.clamp(at - window // 2, 0, self.m - window)
        near = start[:, None] + torch.arange(window, device=self.device)
        ub = torch.topk(self._values(w, near), k, dim=1, largest=False).values[:, -1]
        ub = ub + 1e-9 * (1.0 + ub.abs())  # rounding of the bounds below must not prune a tie
        # 2. descend: keep the (query, node) pairs whose lower bound is at most the upper bound
        qi = torch.arange(q, device=self.device)
        node = torch.zeros(q, dtype=torch.int64, device=self.device)
        for level in range(1, self.levels + 1):
            qi = qi.repeat_interleave(2)
            node = (2 * node[:, None] + torch.arange(2, device=self.device)).reshape(-1)
            keep = self._bounds(level, node, w[qi]) <= ub[qi]
            qi, node = qi[keep], node[keep]
            if not force and qi.shape[0] * LEAF > MAX_PAIRS:
                return None
        # 3. every point of the surviving leaves; the k best of each query (pairs stay sorted by query)
        idx = (node[:, None] * LEAF + torch.arange(LEAF, device=self.device)).reshape(-1)
        qi = qi.repeat_interleave(LEAF)
        value = self._values(w[qi], idx)
        return _k_smallest_by_query(value, idx, qi, q, k)


def _k_smallest_by_query(value: torch.Tensor, idx: torch.Tensor, qi: torch.Tensor, q: int, k: int) -> torch.Tensor:
    """``idx`` of the ``k`` smallest ``value`` of every query ``qi`` (each has at least ``k``), (q, k), best first.

    Few: ``k`` rounds of a segmented minimum (ties to the first); many: one segmented sort.
    """
    device = value.device
    out = torch.empty((q, k), dtype=torch.int64, device=device)
    if k <= _ROUNDS_MAX_K:
        value = value.clone()
        pos = torch.arange(value.shape[0], device=device)
        for j in range(k):
            low = torch.full((q,), float("inf"), dtype=value.dtype, device=device)
            low.scatter_reduce_(0, qi, value, reduce="amin")
            hit = value == low[qi]
            pick = torch.full((q,), value.shape[0], dtype=torch.int64, device=device)
            pick.scatter_reduce_(0, qi[hit], pos[hit], reduce="amin")
            out[:, j] = idx[pick]
            value[pick] = float("inf")
        return out
    by_value = torch.sort(value, stable=True).indices
    by_query = by_value[torch.sort(qi[by_value], stable=True).indices]
    counts = torch.bincount(qi, minlength=q)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(by_query.shape[0], device=device) - first[qi[by_query]]
    take = rank < k
    out[qi[by_query][take], rank[take]] = idx[by_query][take]
    return out


def on_device(device: torch.device | str) -> bool:
    """Whether the finish's exact searches run here as batched tensor work (on every device but the CPU).

    On the CPU the compiled k-d trees are faster; elsewhere they would mean a host round trip.
    """
    return torch.device(device).type != "cpu"


def nearest_batched(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (q, k) of the ``k`` nearest ``points`` (m, d) of every query, exactly, on the points' device."""
    return BatchedPriceSearch(points).search(queries, k)
