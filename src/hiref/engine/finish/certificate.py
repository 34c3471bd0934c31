"""A lower bound on the optimal matching cost from prices: the optimality certificate.

For prices ``p`` of the larger cloud's points (a dual solution), the c-transform
``u(x) = min_y c(x, y) + p(y)`` over *every* point ``y`` makes ``(u, -p)`` dual feasible, so
by weak duality ``sum_x u(x) - sum_y p(y)`` is at most the cost of any one-to-one matching.
When the larger cloud has extra points (``m > n``, each point of the smaller cloud matched),
the dual asks ``-p <= 0``: prices are taken relative to a threshold, those below it raised to it
(:func:`lower_bound`). With the auction's final prices the bound is within ``n * eps`` of the
matching's cost on its graph, so it proves the matching optimal up to that.

For the squared Euclidean cost in low dimensions, a branch-and-bound search on a k-d tree whose
nodes know their lowest price answers it exactly: compiled on the CPU (:mod:`.pricetree`), in
batched tensor steps on other devices (:mod:`.batched_search`, no host round trip); the compiled
tree also answers the Euclidean distance to a power on the CPU. Elsewhere it takes exact minima
over all pairs, a chunk of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from hiref.engine.finish import batched_search
from hiref.engine.finish.batched_search import BatchedPriceSearch
from hiref.engine.finish.neighbours import spatial_order
from hiref.engine.finish.pricetree import PriceTree
from hiref.engine.geometry.costs import Power

if TYPE_CHECKING:
    from hiref.engine.geometry.costs import Cost

#: Largest dimension for which the price tree answers the c-transform.
TREE_MAX_DIM = 16
#: Fewest candidates per point for which exact minima rank in float32 (:func:`_c_transform_float32`):
#: with fewer, the rounding often exceeds the spread of their values, and float64 ranks.
RANKED_FLOAT32_MIN_K = 8
#: Largest share of points to search again for which :func:`c_transform_risen` keeps the others'
#: candidates; above it, every point is searched (valuing the candidates would cost more than it
#: saves).
_RISEN_MOST = 0.5
#: Largest share of all pairs to search again for which :func:`c_transform_moved` keeps the
#: candidates; above it, one pass over all pairs (faster than many over parts of the cloud).
_MOVED_MOST = 0.5
#: Ratio of the largest to the smallest number of points searched within one group of
#: :func:`c_transform_moved` (every point of a group is searched over as many as the largest),
#: and the least difference (fewer, larger groups where each is searched over few points).
_MOVED_GROUP_RATIO, _MOVED_GROUP_SLACK = 1.25, 256
#: Least share of ``B`` over which :func:`c_transform_moved` searches a point at all: a point's
#: new floor rises by the least change of price outside its part, so a larger part keeps the
#: floors near the values and spares the next pricing (unregistered sections, 2 cores, the two
#: pricings after solves: 50,000 cells 3.9 -> 2.8 s, 100,000 cells 9.4 -> 7.3 s; 0.05 and 0.3
#: at 100,000 cells: 8.0 s, 10.5 s).
_MOVED_LEAST_SHARE = 0.1
#: Most points of a group that :func:`c_transform_moved` searches and merges at once (its
#: temporaries are a few arrays of 2k values per point: 84,400 points at once raised the peak
#: of 100,000 unregistered cells from 1.29 to 1.54 GB).
_MOVED_ROWS = 1 << 14


@dataclass
class Dual:
    """The c-transform of some prices at every point of the smaller cloud.

    Attributes
    ----------
    u
        ``min_y c(x, y) / scale + p(y)`` for every point ``x``, (n,), float64.
    best
        The ``k`` points ``y`` of lowest ``c(x, y) / scale + p(y)``, (n, k), best first.
    search
        The tree that answered (``None`` where exact minima over all pairs did), kept so that
        later calls reuse it.
    floor
        Where exact minima answered for the squared Euclidean cost: for every point, a value that
        no point ``y`` outside its ``best`` undercuts, (n,) (the ``k``-th value less a bound on
        the ranking's rounding; ``inf`` where ``best`` holds every point). Prices that only rose
        since keep it so (:func:`c_transform_risen`); others move it by their change
        (:func:`c_transform_moved`).
    values, error
        Where known: the values of ``best`` as ranked, (n, k), and for every point a bound on
        their rounding, (n,) (exact values: zero).
    """

    u: np.ndarray
    best: np.ndarray
    search: PriceTree | BatchedPriceSearch | None = None
    floor: np.ndarray | None = None
    values: np.ndarray | None = None
    error: np.ndarray | None = None


def _power_cost(geometry: Cost) -> Power | None:
    """The cost as a :class:`.Power` (symmetric: also when transposed), else ``None``."""
    base = getattr(geometry, "base", geometry)
    return base if isinstance(base, Power) else None


def _power(geometry: Cost) -> float:
    """The exponent ``p`` of a cost ``|x - y|^p`` that the price tree answers (2: squared Euclidean)."""
    power = _power_cost(geometry)
    return 2.0 if power is None else power.p


def price_search(
    points: torch.Tensor, prices: np.ndarray, *, scale: float, geometry: Cost | None = None
) -> PriceTree | BatchedPriceSearch:  # fmt: skip
    """The exact search of lowest ``c(x, y) / scale + p(y)`` over ``points`` (see :func:`uses_price_tree`).

    On the points' device: the compiled price tree on the CPU, batched tensor steps elsewhere
    (the squared Euclidean cost only).
    """
    if batched_search.on_device(points.device):
        return BatchedPriceSearch(points.double() / np.sqrt(scale), prices)
    power = 2.0 if geometry is None else _power(geometry)
    return PriceTree(points.double().cpu().numpy() / scale ** (1.0 / power), prices, power=power)


def _queries(search: PriceTree | BatchedPriceSearch, points: torch.Tensor, scale: float):
    """Query points for ``search``, in its units (kept on the device for the batched search)."""
    if isinstance(search, BatchedPriceSearch):
        return points.double() / np.sqrt(scale)
    return points.double().cpu().numpy() / scale ** (1.0 / (2.0 * search.half))


def transform_feasible(
    geometry: Cost, d: int, n: int, m: int, budget: float, device: torch.device | str = "cpu"
) -> bool:  # fmt: skip
    """Whether the c-transform is computed: by a k-d tree, or within ``budget`` entries x dimensions."""
    if uses_price_tree(geometry, d, device):
        return True
    return float(n) * float(m) * max(1, d) <= budget


def uses_price_tree(geometry: Cost, d: int, device: torch.device | str = "cpu") -> bool:
    """Whether the c-transform is answered by a price tree (else by exact minima over all pairs).

    The squared Euclidean cost in at most :data:`TREE_MAX_DIM` dimensions, on any device; the
    Euclidean distance to a power (``"euclidean"``, ``Power(p)``) there too, on the CPU.
    """
    if d > TREE_MAX_DIM:
        return False
    if geometry.name == "sqeuclidean":
        return True
    return _power_cost(geometry) is not None and not batched_search.on_device(device)


def c_transform(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int = 1,
    search: PriceTree | BatchedPriceSearch | None = None, anchor: np.ndarray | None = None,
) -> Dual:  # fmt: skip
    """The c-transform of ``prices`` (in units of ``scale``) at every point of ``A``, exactly.

    Parameters
    ----------
    geometry
        The cost.
    A, B
        The smaller and the larger cloud, (n, d) and (m, d).
    prices
        Prices of B's points, (m,), in units of ``scale``.
    scale
        Unit of the prices (costs are divided by it).
    k
        Candidates kept per point of ``A``.
    search
        A price tree over ``B`` from an earlier call with the same ``scale``, to reuse.
    anchor
        A point of ``B`` near which each point's best likely lie, (n,) (its partner): where the
        batched search answers, its first bound comes from there
        (:meth:`.BatchedPriceSearch.search`). Only the speed depends on it.
    """
    k = min(k, B.shape[0])
    if uses_price_tree(geometry, A.shape[1], A.device):
        if search is None:
            search = price_search(B, prices, scale=scale, geometry=geometry)
        if search.queries is None and isinstance(search, PriceTree):
            # the same queries come back: order them once
            search.queries = spatial_order(A.double().cpu().numpy())
    elif geometry.name == "sqeuclidean" and RANKED_FLOAT32_MIN_K <= k < B.shape[0] and _exact_float32(B.device):
        return _c_transform_float32(geometry, A, B, prices, scale=scale, k=k)
    order = search.queries if search is not None else None
    best = best_points(geometry, A, B, prices, scale=scale, k=k, search=search, order=order, anchor=anchor)
    # The value itself, recomputed exactly for the best candidate.
    u = _values(geometry, A, B, best[:, :1], prices, scale)[:, 0]
    floor = _floor(geometry, A, B, best, prices, scale) if search is None and geometry.name == "sqeuclidean" else None
    if k == 1:
        return Dual(u, best, search, floor, u[:, None].copy(), np.zeros_like(u))
    return Dual(u, best, search, floor)


def _c_transform_float32(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int
) -> Dual:  # fmt: skip
    """:func:`c_transform` by exact minima for the squared Euclidean cost, ranked in float32.

    The ``k`` candidates of every point are ranked in float32 (:meth:`.SqEuclidean.cheapest_float32`,
    whose values err by at most ``delta``): no point outside them is below their highest ranked
    value less ``delta``, the floor. The exact minimum among them lies within ``2 delta`` of
    their least ranked value, and only those are valued exactly, in float64; where that
    minimum is at most the floor, it is the transform. The other points (rounding too coarse
    for the spread of their values) are searched again in float64. On 46,000 points in 30
    dimensions (Gaussian mixture, 2 cores): 4.8 s a pass instead of 9-12 s, none searched
    again; in 2,048 dimensions valuing all ``k`` candidates cost as much as ranking them.
    """
    shift = torch.as_tensor(prices * scale, device=B.device)
    ranked, approx, delta = geometry.cheapest_float32(A, B, shift, k)
    order = np.argsort(approx, axis=1, kind="stable")
    ranked, approx = np.take_along_axis(ranked, order, 1), np.take_along_axis(approx, order, 1) / scale
    delta = delta / scale
    u = _least(geometry, A, B, prices, scale, ranked, approx, delta)
    out = Dual(u, ranked, None, approx[:, -1] - delta, approx, delta)
    again = np.flatnonzero(out.u > out.floor)
    if again.size:
        A_again = A[torch.as_tensor(again, device=A.device)]
        best = best_points(geometry, A_again, B, prices, scale=scale, k=k)
        out.best[again] = best
        out.values[again] = _values(geometry, A_again, B, best, prices, scale)
        out.error[again] = 0.0
        out.u[again] = out.values[again, 0]
        out.floor[again] = _floor(geometry, A_again, B, best, prices, scale)
    return out


def _least(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, scale: float, best: np.ndarray,
    values: np.ndarray, error: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """The exact least value of ``best`` for every point, from ``values`` ranked (each row ascending) within ``error``.

    Only the candidates within twice the error of the least ranked value can hold it: only those
    are valued exactly.
    """
    rows, slots = np.nonzero(values <= values[:, :1] + 2.0 * error[:, None])
    exact = _values(geometry, A[torch.as_tensor(rows, device=A.device)], B, best[rows, slots][:, None], prices, scale)
    u = np.full(best.shape[0], np.inf)
    np.minimum.at(u, rows, exact[:, 0])
    return u


def _exact_float32(device: torch.device) -> bool:
    """Whether float32 products on ``device`` round as float32: the bound of the ranking's rounding holds only then.

    ``torch.set_float32_matmul_precision`` below "highest", or ``allow_tf32`` on CUDA, allow
    passes in TF32 or bfloat16.
    """
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return device.type != "cuda" or not torch.backends.cuda.matmul.allow_tf32


def c_transform_risen(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int,
    previous: Dual, current: np.ndarray, changed: np.ndarray, margin: float,
) -> tuple[Dual, np.ndarray, bool]:  # fmt: skip
    """:func:`c_transform` by exact minima, after prices rose (none fell) since ``previous``.

    Only the points ``changed`` can have fallen short: any other kept its pair, whose price
    did not rise, and was not short (the others' prices only rose). Of those, the squared
    Euclidean cost searches again only the points whose pair's value ``current`` (in units of
    ``scale``) is more than ``margin`` above their floor (``previous.floor``, which no price
    fall has undercut): below it, the candidates in ``previous.best``, valued at the new prices,
    hold every point that undercuts the pair by more than ``margin``, and the least of their
    values and the floor is a valid, and mostly exact, value of the transform. Other costs (no
    floor: their rounding has no bound) search every point ``changed`` and keep the others' old
    values: valid, as prices only rose, but loose.

    Returns the transform, the points searched again, and whether some values are loose.
    On the 30-D mixture of the tissue benchmark (4,096 points), the last rounds search 1,795,
    121 and 1 points instead of nearly all.
    """
    n = A.shape[0]
    floor = previous.floor
    again = changed if floor is None else changed[current[changed] > floor[changed] + margin]
    if previous.best.shape[1] != min(k, B.shape[0]) or again.size > _RISEN_MOST * n:
        return c_transform(geometry, A, B, prices, scale=scale, k=k), np.arange(n), False
    out = Dual(previous.u.copy(), previous.best.copy(), None, None if floor is None else floor.copy())
    if floor is not None:
        kept = np.ones(n, dtype=bool)
        kept[again] = False
        kept = np.flatnonzero(kept)
        values = _values(geometry, A[torch.as_tensor(kept, device=A.device)], B, previous.best[kept], prices, scale)
        out.best[kept] = np.take_along_axis(previous.best[kept], np.argsort(values, axis=1, kind="stable"), 1)
        out.u[kept] = np.minimum(values.min(1), floor[kept])
    if again.size:
        searched = c_transform(geometry, A[torch.as_tensor(again, device=A.device)], B, prices, scale=scale, k=k)
        out.u[again], out.best[again] = searched.u, searched.best
        if floor is not None:
            out.floor[again] = searched.floor
    return out, again, floor is None and again.size < n


def c_transform_moved(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int,
    previous: Dual, before: np.ndarray, current: np.ndarray, margin: float,
) -> tuple[Dual, np.ndarray]:  # fmt: skip
    """:func:`c_transform` by exact minima, from ``previous`` at prices ``before`` (with floors).

    Prices may have moved either way. A point ``y`` outside a point's candidates
    (``previous.best``) is now valued at least at its floor plus the change of its price, so
    each point needs searching only over the points of ``B`` whose price moved less than its
    pair's value ``current`` (units of ``scale``) is above its floor (less ``margin``): the rest
    cannot undercut its pair by more than ``margin``. Points are grouped by how many points of
    ``B`` they need (those first in the order of the change of price); each group is searched
    over that part of ``B``, and the results are merged with the candidates, whose values move
    by the change of their prices. The values are valid, and exact wherever the minimum is among
    the points searched or the candidates.

    After the first solve from a subsample's dual (50,000 unregistered cells, 56-D), prices rose
    by 0.13-3.0 times the mean cost, unevenly: every point was above its floor and the rule
    before (:func:`c_transform_risen`) searched them all; by the change of price, 11-12 % of all
    pairs are searched (2 % once every point had its best arcs in the first solve), 0.8-2.9 s
    a pricing instead of 3.6-5.0 s (2 cores; the parts' scans cost more per pair than a whole
    one).

    Returns the transform and the points searched (over some part of ``B``).
    """
    n, m = A.shape[0], B.shape[0]
    k = min(k, m)
    change = prices - before
    order = np.argsort(change, kind="stable")
    # the least change of price outside the first j of the order, for j = 0..m
    least_outside = np.append(change[order], np.inf)
    need = np.searchsorted(least_outside[:m], current - margin - previous.floor, side="left")
    if previous.best.shape[1] != k or need.sum() > _MOVED_MOST * n * m:
        return c_transform(geometry, A, B, prices, scale=scale, k=k), np.arange(n)
    if previous.values is None:
        values, error = _values(geometry, A, B, previous.best, prices, scale), np.zeros(n)
    else:  # (the sum's rounding, besides)
        values = previous.values + change[previous.best]
        error = previous.error + 2.0**-51 * np.abs(values).max(1)
    rank = np.argsort(values, axis=1, kind="stable")
    best, values = np.take_along_axis(previous.best, rank, 1), np.take_along_axis(values, rank, 1)
    floor = previous.floor + least_outside[0]
    least = _least(geometry, A, B, prices, scale, best, values, error)
    out = Dual(np.minimum(least, floor), best, None, floor, values, error)
    searched = np.flatnonzero(need > 0)
    need[searched] = np.maximum(need[searched], int(_MOVED_LEAST_SHARE * m))
    searched = searched[np.argsort(need[searched], kind="stable")]
    ranked = need[searched]
    lo = 0
    while lo < searched.size:
        most = max(ranked[lo] * _MOVED_GROUP_RATIO, ranked[lo] + _MOVED_GROUP_SLACK)
        hi = int(np.searchsorted(ranked, most, side="right"))
        part = order[: int(ranked[hi - 1])]
        for at in range(lo, hi, _MOVED_ROWS):
            rows = searched[at : min(hi, at + _MOVED_ROWS)]
            _merge(geometry, A, B, prices, scale, out, rows, part, previous.floor[rows] + least_outside[part.size])
        lo = hi
    return out, searched


def _merge(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, scale: float, out: Dual,
    rows: np.ndarray, part: np.ndarray, floor: np.ndarray,
) -> None:  # fmt: skip
    """Search ``rows`` over the points ``part`` of ``B`` and merge the best with their candidates in ``out``.

    ``floor``: a value of each row that no point outside ``part`` and its candidates undercuts.
    """
    A_rows = A[torch.as_tensor(rows, device=A.device)]
    k = out.best.shape[1]
    found = c_transform(geometry, A_rows, B[torch.as_tensor(part, device=B.device)], prices[part], scale=scale, k=k)
    found_cols = part[found.best]
    if found.values is None:
        found.values, found.error = _values(geometry, A_rows, B, found_cols, prices, scale), np.zeros(rows.size)
    cols = np.concatenate([found_cols, out.best[rows]], axis=1)
    pool = np.concatenate([found.values, out.values[rows]], axis=1)
    error = np.maximum(found.error, out.error[rows])
    # a point among both the found and the old candidates counts once
    by_col = np.argsort(cols, axis=1, kind="stable")
    sorted_cols = np.take_along_axis(cols, by_col, 1)
    twin = np.zeros_like(cols, dtype=bool)
    twin[:, 1:] = sorted_cols[:, 1:] == sorted_cols[:, :-1]
    np.put_along_axis(pool, by_col, np.where(twin, np.inf, np.take_along_axis(pool, by_col, 1)), 1)
    rank = np.argsort(pool, axis=1, kind="stable")[:, : k + 1]
    pool, cols = np.take_along_axis(pool, rank, 1), np.take_along_axis(cols, rank, 1)
    # the best of the pool left out bounds the rest of it
    floor = np.minimum(np.minimum(floor, found.floor), pool[:, k] - error)
    best, values = cols[:, :k], pool[:, :k]
    out.best[rows], out.values[rows], out.error[rows], out.floor[rows] = best, values, error, floor
    out.u[rows] = np.minimum(_least(geometry, A_rows, B, prices, scale, best, values, error), floor)


def _values(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, cols: np.ndarray, prices: np.ndarray, scale: float
) -> np.ndarray:  # fmt: skip
    """``c(A[i], B[cols[i, t]]) / scale + p(cols[i, t])``, exactly, (n, t); a chunk of rows at a time."""
    n, t = cols.shape
    out = np.empty((n, t), dtype=np.float64)
    step = max(1, (1 << 20) // max(1, t * A.shape[1]))
    for lo in range(0, n, step):
        c = torch.as_tensor(cols[lo : lo + step].reshape(-1), device=B.device)
        a = A[lo : lo + step].double().repeat_interleave(t, 0)
        out[lo : lo + step] = geometry.paired(a, B[c].double()).cpu().numpy().reshape(-1, t) / scale
    out += prices[cols]
    return out


def _floor(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, best: np.ndarray, prices: np.ndarray, scale: float
) -> np.ndarray:
    """A value that no point outside ``best`` undercuts, for every point of ``A`` (see :class:`Dual`)."""
    if best.shape[1] >= B.shape[0]:
        return np.full(best.shape[0], np.inf)
    last = _values(geometry, A, B, best[:, -1:], prices, scale)[:, 0]
    # the search ranked in float64 products, whose rounding grows with the coordinates' norms
    centre = B.double().mean(0)
    norms = float((A.double() - centre).square().sum(1).max()) + float((B.double() - centre).square().sum(1).max())
    return last - (A.shape[1] + 8) * 2.0**-44 * (norms / scale + float(np.abs(prices).max()))


def best_points(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int,
    search: PriceTree | BatchedPriceSearch | None = None, order: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """The ``k`` points of ``B`` of lowest ``c(x, y) / scale + p(y)`` for every point of ``A``, (n, k), best first.

    By the price tree ``search`` over ``B`` (built with the same ``scale``; queries in ``order``;
    the batched search starts from the ``anchor``, see :func:`c_transform`) where there is one,
    else by exact minima over all pairs.
    """
    if search is not None:
        search.update(prices)
        if isinstance(search, BatchedPriceSearch):
            return search.best(_queries(search, A, scale), k, anchor=anchor)
        return search.best(_queries(search, A, scale), k, order=order)
    shift = torch.as_tensor(prices * scale, device=B.device)
    return geometry.cheapest(A, B, shift, k).cpu().numpy()


def tightened_bound(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, dual: Dual, *, scale: float,
    tree: PriceTree | BatchedPriceSearch | None = None,
) -> tuple[float, PriceTree | BatchedPriceSearch | None]:  # fmt: skip
    """The lower bound of ``dual.u`` with the best prices for it, and the tree that found them.

    The prices ``q(y) = max_x u(x) - c(x, y) / scale`` keep ``(u, -q)`` dual feasible and are at
    most any prices that ``u`` is the c-transform of, so the bound is at least
    :func:`lower_bound`'s: where the auction's prices leave slack (a lattice, whose optimal
    prices are far from unique; high dimensions), this proves in one query what more rounds of
    pricing would. The price tree over ``A`` answers where :func:`uses_price_tree` says so
    (``tree`` is reused from an earlier call), exact minima over all pairs elsewhere (for the
    squared Euclidean cost ranked in float32 and valued exactly, as :func:`c_transform` does).
    """
    if uses_price_tree(geometry, A.shape[1], A.device):
        if tree is None:
            tree = price_search(A, -dual.u, scale=scale, geometry=geometry)
        b = _queries(tree, B, scale)
        if isinstance(tree, PriceTree) and tree.queries is None:
            tree.queries = spatial_order(b)
        tree.update(-dual.u)
        best = tree.best(b, 1, order=tree.queries)[:, 0]
    elif geometry.name == "sqeuclidean" and geometry.symmetric:
        # the c-transform of -u over A at every point of B, by exact minima ranked in float32
        # (a 46,000-point mixture in 30 dimensions, 2 cores: 3.3 s instead of 5.5-6.2 s in float64)
        base = getattr(geometry, "base", geometry)
        q = -c_transform(base, B, A, -dual.u, scale=scale, k=RANKED_FLOAT32_MIN_K).u
        return lower_bound(dual, q, A.shape[0]), tree
    else:
        from hiref.engine.geometry.costs import Transposed

        shift = torch.as_tensor(-dual.u * scale, device=A.device)
        best = Transposed(geometry).cheapest(B, A, shift, 1)[:, 0].cpu().numpy()
    j = torch.as_tensor(best, device=A.device)
    q = dual.u[best] - geometry.paired(A[j].double(), B.double()).cpu().numpy() / scale
    return lower_bound(dual, q, A.shape[0]), tree


def lower_bound(dual: Dual, prices: np.ndarray, n: int) -> float:
    """The dual's lower bound on the optimal mean cost per matched pair, in units of the prices.

    With more points than ``n`` in the larger cloud, the dual of the partial problem asks prices
    of at least a threshold ``t`` (taken as zero): prices below it are raised to it, which keeps
    ``dual.u`` feasible. The bound ``sum(u) - n t - sum(max(p - t, 0))`` is concave in ``t`` and
    largest at the ``n``-th highest price, the threshold used (all prices count otherwise: the
    lowest as threshold left the extra points' prices in the sum and lost the bound where the
    leftovers are far from the smaller cloud).
    """
    m = prices.shape[0]
    t = float(np.partition(prices, m - n)[m - n]) if 0 < n < m else float(prices.min())
    return float((dual.u - t).sum() - np.maximum(prices - t, 0.0).sum()) / n
