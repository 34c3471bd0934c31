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
batched tensor steps on other devices (:mod:`.batched_search`, no host round trip). Elsewhere it
takes exact minima over all pairs, a chunk of rows at a time.
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

if TYPE_CHECKING:
    from hiref.engine.geometry.costs import Cost

#: Largest dimension for which the price tree answers the c-transform.
TREE_MAX_DIM = 16


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
    """

    u: np.ndarray
    best: np.ndarray
    search: PriceTree | BatchedPriceSearch | None = None


def price_search(
    points: torch.Tensor, prices: np.ndarray, *, scale: float
) -> PriceTree | BatchedPriceSearch:  # fmt: skip
    """The exact search of lowest ``c(x, y) / scale + p(y)`` over ``points`` for the squared Euclidean cost.

    On the points' device: the compiled price tree on the CPU, batched tensor steps elsewhere.
    """
    if batched_search.on_device(points.device):
        return BatchedPriceSearch(points.double() / np.sqrt(scale), prices)
    return PriceTree(points.double().cpu().numpy() / np.sqrt(scale), prices)


def _queries(search: PriceTree | BatchedPriceSearch, points: torch.Tensor, scale: float):
    """Query points for ``search``, in its units (kept on the device for the batched search)."""
    if isinstance(search, BatchedPriceSearch):
        return points.double() / np.sqrt(scale)
    return points.double().cpu().numpy() / np.sqrt(scale)


def transform_feasible(geometry: Cost, d: int, n: int, m: int, budget: float) -> bool:
    """Whether the c-transform is computed: by a k-d tree, or within ``budget`` entries x dimensions."""
    if uses_price_tree(geometry, d):
        return True
    return float(n) * float(m) * max(1, d) <= budget


def uses_price_tree(geometry: Cost, d: int) -> bool:
    """Whether the c-transform is answered by the price tree (else by exact minima over all pairs)."""
    return geometry.name == "sqeuclidean" and d <= TREE_MAX_DIM


def c_transform(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int = 1,
    previous: Dual | None = None, rows: np.ndarray | None = None,
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
    previous, rows
        Recompute only the points ``rows`` of ``A`` and keep ``previous`` for the others: valid
        when no price has decreased since ``previous`` was computed (then its values are still
        at most the c-transform, and the bound built on them stays a bound).
    """
    k = min(k, B.shape[0])
    A_rows = A if rows is None else A[torch.as_tensor(rows, device=A.device)]
    search = previous.search if previous is not None else None
    if uses_price_tree(geometry, A.shape[1]):
        if search is None:
            search = price_search(B, prices, scale=scale)
        if rows is None and search.queries is None and isinstance(search, PriceTree):
            # the same queries come back: order them once
            search.queries = spatial_order(A.double().cpu().numpy())
    order = search.queries if rows is None and search is not None else None
    best = best_points(geometry, A_rows, B, prices, scale=scale, k=k, search=search, order=order)
    # The value itself, recomputed exactly for the best candidate.
    j = torch.as_tensor(best[:, 0], device=B.device)
    u = geometry.paired(A_rows.double(), B[j].double()).cpu().numpy() / scale + prices[best[:, 0]]
    if rows is None or previous is None:
        return Dual(u, best, search)
    out = Dual(previous.u.copy(), previous.best.copy(), search)
    out.u[rows], out.best[rows] = u, best
    return out


def best_points(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int,
    search: PriceTree | BatchedPriceSearch | None = None, order: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """The ``k`` points of ``B`` of lowest ``c(x, y) / scale + p(y)`` for every point of ``A``, (n, k), best first.

    By the price tree ``search`` over ``B`` (built with the same ``scale``; queries in ``order``)
    where there is one, else by exact minima over all pairs.
    """
    if search is not None:
        search.update(prices)
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
    (``tree`` is reused from an earlier call), exact minima over all pairs elsewhere.
    """
    if uses_price_tree(geometry, A.shape[1]):
        if tree is None:
            tree = price_search(A, -dual.u, scale=scale)
        b = _queries(tree, B, scale)
        if isinstance(tree, PriceTree) and tree.queries is None:
            tree.queries = spatial_order(b)
        tree.update(-dual.u)
        best = tree.best(b, 1, order=tree.queries)[:, 0]
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
