"""The auction algorithm with epsilon-scaling (Bertsekas 1988) on a sparse graph, with its prices.

Persons (rows) bid for objects (columns): a person takes the object ``j`` that minimises
``cost[i, j] + price[j]`` over its arcs and raises that object's price by the margin to its
second-best choice plus ``eps``; the person who held the object bids again. When every person
holds an object, each holds one within ``eps`` of its best (``eps``-complementary slackness), so
the assignment is within ``n * eps`` of the optimum on the graph, and the prices are a dual
solution from which :mod:`.certificate` computes a lower bound on the optimum over *all* pairs.

With more objects than persons, the objects left over must end up the cheapest (their dual
variable is zero, the others' at most zero). After the bidding of each phase, reverse bids
(Bertsekas and Castanon's asymmetric auction): every object left over that costs more than the
cheapest held one offers itself to the person it is the best deal for, at a price that keeps
every person within ``eps`` of its best, or drops to that floor if nobody gains by taking it.

Epsilon-scaling runs the auction for decreasing ``eps``, keeping the prices and every
assignment that still meets the tighter condition. Costs are floats: the resolution is set by
``eps`` relative to the costs, never by their units.

Two implementations: a compiled Gauss-Seidel one for the CPU (:func:`auction_cpu`, numba), and a
batched Jacobi one in torch (:func:`auction_torch`: every free person bids at once, the best
bid per object wins), which runs on any device and is the one used on CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import torch

from hiref.engine._assign import assign_many
from hiref.engine.finish import batched_search
from hiref.engine.finish.lockstep import assign_lockstep

if TYPE_CHECKING:
    from collections.abc import Callable


#: Most bids per arc of the graph before an auction gives up (a warm start needs a few per
#: row; a cold start on a 65,536-point tissue pair about 0.4 per arc).
MAX_BIDS_PER_ARC = 200


@dataclass
class Graph:
    """A sparse assignment problem in compressed rows: row ``i``'s arcs are ``indptr[i]:indptr[i + 1]``.

    Attributes
    ----------
    indptr
        (n + 1,) int64 row pointers.
    cols
        Column (object) of every arc, int64.
    costs
        Cost of every arc, float64 (already divided by the problem's cost scale).
    m
        Number of columns (objects), at least the number of rows.
    """

    indptr: np.ndarray
    cols: np.ndarray
    costs: np.ndarray
    m: int

    @property
    def n(self) -> int:
        """Number of rows (persons)."""
        return int(self.indptr.shape[0] - 1)

    def rows(self) -> np.ndarray:
        """Row of every arc."""
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))


@cache
def _kernels() -> tuple[Callable, Callable, Callable]:
    """The compiled loops: forward bids, release, reverse bids (compiled once, cached on disk)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def bid(  # pragma: no cover
        indptr, cols, costs, prices, mate, owner, held, eps, queue, n_free, jump, max_bids, touched
    ):
        # The rows to bid, from queue[head] on. A row outbid bids next, not last: it lives next to
        # the row that outbid it, whose arcs and prices are still in the cache (the 300,000-cell
        # sections of benchmarks/sections.py: 9.8 s -> 7.1 s for the first auction, about as
        # many bids).
        head, cap, left, bids = 0, queue.shape[0], n_free, 0
        while left > 0:
            if bids >= max_bids:
                return -1
            i = queue[head]
            head = head + 1 if head + 1 < cap else 0
            left -= 1
            # best and second best without branches (a branch per arc mispredicts on ties and
            # near-ties: the same auction, 6.6 s -> 5.2 s)
            best, second, best_k = np.inf, np.inf, -1
            for k in range(indptr[i], indptr[i + 1]):
                value = costs[k] + prices[cols[k]]
                second = min(second, max(best, value))
                best_k = k if value < best else best_k
                best = min(best, value)
            best_j, best_c = cols[best_k], costs[best_k]
            if second == np.inf:
                second = best + jump
            raised = prices[best_j] + (second - best + eps)
            if raised <= prices[best_j]:  # an increment below the price's float resolution
                raised = prices[best_j] + abs(prices[best_j]) * 1e-15 + eps
            prices[best_j] = raised
            previous = owner[best_j]
            owner[best_j], mate[i], held[i] = i, best_j, best_c
            touched[i] = True
            bids += 1
            if previous >= 0:
                mate[previous] = -1
                head = head - 1 if head > 0 else cap - 1
                queue[head] = previous
                left += 1
        return bids

    @numba.njit(cache=True, nogil=True)
    def release(indptr, cols, costs, prices, mate, owner, held, eps, queue, touched):  # pragma: no cover
        n_free = 0
        for i in range(indptr.shape[0] - 1):
            if not touched[i]:
                continue
            j = mate[i]
            best, current = np.inf, np.inf
            for k in range(indptr[i], indptr[i + 1]):
                value = costs[k] + prices[cols[k]]
                best = min(best, value)
                if cols[k] == j:
                    current, held[i] = value, costs[k]
            if j < 0 or current > best + eps:
                if j >= 0:
                    owner[j] = -1
                    mate[i] = -1
                queue[n_free] = i
                n_free += 1
        return n_free

    @numba.njit(cache=True, nogil=True)
    def reverse(t_indptr, t_rows, t_costs, prices, mate, owner, held, eps, queue, max_steps):  # pragma: no cover
        # Every object left over and dearer than the cheapest held one offers itself to the person
        # it is the best deal for (at a price that keeps every person within eps of its best), or
        # drops to that floor. Persons stay assigned throughout.
        floor = np.inf
        for j in range(prices.shape[0]):
            if owner[j] >= 0:
                floor = min(floor, prices[j])
        cap, left = queue.shape[0], 0
        for j in range(prices.shape[0]):
            if owner[j] < 0 and prices[j] > floor:
                queue[left] = j
                left += 1
        # what every person pays (cost plus price): only a person that takes an object changes it
        pay = np.empty(mate.shape[0])
        for i in range(mate.shape[0]):
            pay[i] = held[i] + prices[mate[i]]
        head, steps = 0, 0
        while left > 0:
            if steps >= max_steps:
                return -1
            j = queue[head]
            head = head + 1 if head + 1 < cap else 0
            left -= 1
            best, second, best_k = -np.inf, -np.inf, -1
            for k in range(t_indptr[j], t_indptr[j + 1]):
                i = t_rows[k]
                deal = pay[i] - t_costs[k]
                second = max(second, min(best, deal))
                best_k = k if deal > best else best_k
                best = max(best, deal)
            best_i, best_c = -1, 0.0
            if best_k >= 0:
                best_i, best_c = t_rows[best_k], t_costs[best_k]
            steps += 1
            if best_i < 0 or best < floor + eps:
                prices[j] = floor
                continue
            prices[j] = max(floor, second - eps)
            previous = mate[best_i]
            owner[previous] = -1
            owner[j], mate[best_i], held[best_i] = best_i, j, best_c
            pay[best_i] = best_c + prices[j]
            # the object given up bids next, as an outbid row does in `bid`: its arcs and its
            # neighbours' prices are still in the cache (sections of 285,000 and 300,000 cells:
            # 35.5 million reverse bids in 6.1 s -> 32.0 million in 4.8 s)
            if prices[previous] > floor:
                head = head - 1 if head > 0 else cap - 1
                queue[head] = previous
                left += 1
        return steps

    return bid, release, reverse


@cache
def _transpose_kernel() -> Callable:
    """The compiled fill of :func:`_by_object` (compiled once, cached on disk)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def fill(indptr, cols, costs, t_indptr, t_rows, t_costs):  # pragma: no cover
        at = t_indptr[:-1].copy()
        for i in range(indptr.shape[0] - 1):
            for k in range(indptr[i], indptr[i + 1]):
                j = cols[k]
                t_rows[at[j]], t_costs[at[j]] = i, costs[k]
                at[j] += 1

    return fill


def _by_object(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The graph's arcs grouped by object, rows ascending: pointers (m + 1,), rows and costs.

    Filled in one pass (a counting sort), rows stored in the smallest integer type: a stable
    argsort and gathers by it held four arrays of arcs at once, which set the finish's peak
    memory on partial matchings (2**20 planted points cut at 90 %: 1.68 GiB, 0.3 GiB of it here).
    """
    t_indptr = np.zeros(graph.m + 1, dtype=np.int64)
    np.cumsum(np.bincount(graph.cols, minlength=graph.m), out=t_indptr[1:])
    t_rows = np.empty(graph.cols.shape[0], dtype=np.int32 if graph.n < 2**31 else np.int64)
    t_costs = np.empty(graph.cols.shape[0], dtype=np.float64)
    _transpose_kernel()(graph.indptr, graph.cols, graph.costs, t_indptr, t_rows, t_costs)
    return t_indptr, t_rows, t_costs


def epsilons(start: float, stop: float, factor: float) -> list[float]:
    """The decreasing ``eps`` of the scaling phases, from ``start`` to ``stop`` (both included)."""
    out = [max(start, stop)]
    while out[-1] > stop:
        out.append(max(stop, out[-1] / factor))
    return out


def auction_cpu(
    graph: Graph, mate: np.ndarray, prices: np.ndarray, eps: list[float], *, settled: np.ndarray | None = None,
    max_bids: int | None = None, on_phase: Callable[[np.ndarray, np.ndarray, float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """Epsilon-scaling auction on the CPU (compiled, one bidder at a time).

    Parameters
    ----------
    graph
        The problem; every row must be assignable (a feasible assignment exists on its arcs).
    mate
        Starting object of every row (``-1``: none); rows keep it while it meets ``eps``-slackness.
    prices
        Starting prices of the objects, (m,).
    eps
        The phases' ``eps``, decreasing.
    settled
        Rows (boolean mask) known to hold their object within ``eps[-1]`` of their best at the
        start, e.g. after an earlier auction on the same graph less a few arcs of other rows.
        With as many objects as rows, prices only rise, so such a row keeps that until it is
        outbid: each phase checks only the other rows and those that bid, not every row.
        Ignored with more objects than rows (the reverse bids lower prices).
    max_bids
        Most bids (forward and reverse) before the auction gives up (``None``:
        :data:`MAX_BIDS_PER_ARC` per arc, the smaller of the two when given).
    on_phase
        Called after every phase but the last with copies of the assignment and prices (which
        meet that phase's ``eps``-slackness: an assignment within ``n * eps`` of the optimum on
        the graph) and the phase's ``eps``: what a caller can keep if a later phase gives up.

    Returns
    -------
    The object of every row, the prices and the number of bids; ``None`` instead of the first
    two when the bids ran past ``max_bids`` or :data:`MAX_BIDS_PER_ARC` per arc (costs whose
    spread defeats float resolution), in which case the caller keeps its own matching.
    """
    bid, release, reverse = _kernels()
    mate = np.asarray(mate, dtype=np.int64).copy()
    prices = np.asarray(prices, dtype=np.float64).copy()
    owner = np.full(graph.m, -1, dtype=np.int64)
    assigned = mate >= 0
    owner[mate[assigned]] = np.flatnonzero(assigned)
    held = np.zeros(graph.n)
    queue = np.empty(max(graph.n, graph.m) + 1, dtype=np.int64)
    spread = float(graph.costs.max() - graph.costs.min()) if graph.costs.size else 0.0
    if graph.m > graph.n:  # arcs by object, for the reverse bids
        t_indptr, t_rows, t_costs = _by_object(graph)
    bids, budget = 0, MAX_BIDS_PER_ARC * max(graph.cols.shape[0], 1)
    if max_bids is not None:
        budget = min(budget, max(0, int(max_bids)))
    check = np.ones(graph.n, dtype=bool)  # rows that each phase checks
    if settled is not None and graph.m == graph.n:
        check &= ~np.asarray(settled, dtype=bool) | (mate < 0)
    for e in eps:
        arcs = (graph.indptr, graph.cols, graph.costs)
        n_free = release(*arcs, prices, mate, owner, held, e, queue, check)
        got = bid(*arcs, prices, mate, owner, held, e, queue, n_free, spread + e, budget - bids, check)
        if got < 0:  # every bid left was made
            return None, None, budget
        bids += got
        if graph.m > graph.n:
            got = reverse(t_indptr, t_rows, t_costs, prices, mate, owner, held, e, queue, budget - bids)
            if got < 0:
                return None, None, budget
            bids += got
        if on_phase is not None and e != eps[-1]:
            on_phase(mate.copy(), _leftovers_cheapest(prices.copy(), owner), e)
    return mate, _leftovers_cheapest(prices, owner), bids


def _leftovers_cheapest(prices: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``prices`` (in place) with every object nobody holds at the cheapest held price.

    With more objects than persons, none of those is dearer after the reverse bids; raising the
    cheaper ones keeps every person's slackness, and their dual is then zero.
    """
    held = owner >= 0
    if held.any() and not held.all():
        prices[~held] = prices[held].min()
    return prices


def auction_torch(
    cols: torch.Tensor, costs: torch.Tensor, m: int, mate: torch.Tensor, prices: torch.Tensor, eps: list[float],
    *, check_every: int = 16, stop_below: int = 0, max_bids: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:  # fmt: skip
    """Epsilon-scaling auction in batched tensor steps (Jacobi bidding), on the tensors' device.

    Parameters
    ----------
    cols, costs
        (n, k) padded arcs of every row: columns (any valid index where padded) and costs
        (``inf`` where padded). Every row must be assignable.
    m
        Number of objects; equal to ``n`` (balanced: an unbalanced problem gets dummy rows).
    mate, prices
        Starting object of every row (``-1``: none) and starting prices (m,).
    eps
        The phases' ``eps``, decreasing.
    check_every
        Bidding rounds between two looks at which rows are free (the only host synchronisations).
    stop_below
        Return as soon as a look finds fewer free rows than this (0: only when none is left),
        with those rows still free: the caller finishes the phase another way. Only with one ``eps``.
    max_bids
        Most bids before giving up (``None``: no limit). Each look counts the rows that bid in
        the rounds up to the next: ``check_every`` bids each (some may hold an object by then).

    Returns
    -------
    The object of every row (``-1`` where still free), the prices and the bids counted; ``None``
    instead of the first two when the bids ran past ``max_bids``.

    Notes
    -----
    Every ``check_every`` rounds, the rows free at that moment are gathered into as many
    bidding slots; only the rows in the slots bid in the rounds that follow. A win frees at
    most one row, the object's previous holder, and that row takes the winner's slot and bids
    in the very next round, so the chains of displacements that make the tail of a phase go
    on between two looks (before 2026-12-08 an outbid row waited for the next look: on random
    sparse graphs of 400 rows, 14 to 15 rounds of every 16 in the tails bid for nothing). Any
    set of free rows may bid in a Jacobi auction, and the tail of a phase, where few rows are
    free, then costs work in proportion to those rows, not to the whole graph. Within the
    rounds, no tensor's size depends on the data: empty slots and rows that do not bid scatter
    into one spare slot at the end of each array (index ``n`` or ``m``), so a round issues no
    host synchronisation.
    """
    if stop_below and len(eps) > 1:
        msg = f"stop_below needs a single eps, got {len(eps)}"
        raise ValueError(msg)
    n, width = cols.shape
    device = cols.device
    spare_row, spare_object = n, m
    # one spare slot at the end of every array
    mate = torch.cat([mate.clone(), mate.new_full((1,), -1)])
    prices = torch.cat([prices.clone().to(costs.dtype), prices.new_zeros(1, dtype=costs.dtype)])
    rows = torch.arange(n, device=device)
    finite = torch.isfinite(costs)
    spread = (costs[finite].max() - costs[finite].min()) if bool(finite.any()) else costs.new_zeros(())
    k_best = min(2, width)
    bids, budget = 0, math.inf if max_bids is None else max_bids
    for e in eps:
        # Release the rows that no longer meet e-slackness (and their objects).
        value = costs + prices[cols]
        best = value.min(1).values
        held = mate[:n] >= 0
        current = torch.where(held, value.gather(1, torch.where(held, _arc_of(cols, mate[:n]), 0)[:, None])[:, 0], best)
        mate[:n] = torch.where(held & (current <= best + e), mate[:n], -1)
        owner = torch.full((m + 1,), -1, dtype=torch.long, device=device)
        kept = mate[:n] >= 0
        owner.scatter_(0, torch.where(kept, mate[:n], spare_object), rows)
        owner[spare_object] = -1
        while True:
            bidders = torch.nonzero(mate[:n] < 0)[:, 0]  # the look (a synchronisation)
            if bidders.shape[0] == 0 or bidders.shape[0] < stop_below:
                break
            bids += bidders.shape[0] * check_every
            if bids > budget:
                return None, None, bids
            slots = bidders
            for _ in range(check_every):
                slots = _bid_round(cols, costs, slots, mate, owner, prices, e, spread, k_best, spare_row, spare_object)
    return mate[:n], prices[:m], bids


def _bid_round(
    cols: torch.Tensor, costs: torch.Tensor, bidders: torch.Tensor, mate: torch.Tensor, owner: torch.Tensor,
    prices: torch.Tensor, e: float, spread: torch.Tensor, k_best: int, spare_row: int, spare_object: int,
) -> torch.Tensor:  # fmt: skip
    """One Jacobi round in place: every row in a slot of ``bidders`` bids; the best bid per object wins.

    ``cols`` and ``costs`` are every row's arcs. ``bidders`` holds free rows (``spare_row`` for an
    empty slot, which reads the last row's arcs and bids nothing). Returns the slots of the next round: a winner's slot
    goes to the row it displaced (empty if the object was free), the others keep theirs.
    """
    free = bidders != spare_row
    at = bidders.clamp(max=spare_row - 1)
    cols, costs = cols[at], costs[at]
    value = costs + prices[cols]
    top = torch.topk(value, k_best, dim=1, largest=False)
    first = top.values[:, 0]
    second = top.values[:, 1] if k_best > 1 else first + spread + e
    second = torch.where(torch.isfinite(second), second, first + spread + e)
    target = cols.gather(1, top.indices[:, :1])[:, 0]
    raise_by = torch.where(free, second - first + e, -1.0)
    # The highest bid on each object wins; ties go to the lowest row.
    offer = torch.full_like(prices, -1.0)
    offer.scatter_reduce_(0, target, raise_by, reduce="amax")
    wins = free & (raise_by == offer[target])
    winner = torch.full((prices.shape[0],), spare_row, dtype=torch.long, device=prices.device)
    winner.scatter_reduce_(0, target, torch.where(wins, bidders, spare_row), reduce="amin")
    wins &= winner[target] == bidders
    # The winner takes the object, its previous holder is freed, the price rises by the bid.
    won = torch.where(wins, target, spare_object)
    losers = owner[won]
    freed = torch.where(losers >= 0, losers, spare_row)
    mate.scatter_(0, torch.where(wins, freed, spare_row), -1)
    owner.scatter_(0, won, bidders)
    mate.scatter_(0, torch.where(wins, bidders, spare_row), target)
    prices.index_add_(0, won, torch.where(wins, raise_by, 0.0))
    mate[spare_row], owner[spare_object], prices[spare_object] = -1, -1, 0.0
    return torch.where(wins, freed, bidders)


def _arc_of(cols: torch.Tensor, mate: torch.Tensor) -> torch.Tensor:
    """Position of ``mate[i]`` among row ``i``'s padded arcs (0 where absent)."""
    return (cols == mate[:, None]).to(torch.int8).argmax(1)


#: Whether stacks of small dense problems (the leaves, the subsamples that judge candidate splits)
#: are solved on a GPU, as one batch of lockstep shortest-path searches
#: (:func:`~.lockstep.assign_lockstep`), instead of by the compiled solver on the host
#: (:func:`~hiref.engine._assign.assign_many`).
STACK_ON_DEVICE = True

#: Least work (problems x rows^2) for a stack to be solved on the device. A lockstep step costs
#: about the same for one problem as for thousands, and a stack needs as many steps as its
#: busiest problem (from the entropic start, 240 for 1,024 leaves of 64 points of a planted pair,
#: 3,392 for subsamples of 384), while the host's time grows with problems x rows^3 spread over
#: its cores. A model, not a measurement (no GPU was lent when it was set): ~0.2 ms per step of
#: about 60 small kernels from a CUDA graph, against scipy at ~1e-4 s per 64-row problem per core
#: on 8 cores, puts the two level near 2^24 (4,096 leaves of 64 points, 2^18 points);
#: ``benchmarks/gpu_finish.py`` times both. (The host's compiled solver has since halved the
#: host's time, which moves the model's level to about 2^25; left at 2^24 until a GPU is timed,
#: as the device's solve also leaves the host's cores free.)
LOCKSTEP_MIN_WORK = 1 << 24
#: Most cost entries per lockstep stack (1 GB in float64): larger stacks are solved in chunks.
LOCKSTEP_MAX_ENTRIES = 1 << 27


def assign_stack(costs: torch.Tensor) -> torch.Tensor:
    """Optimal assignment of every problem of a stack (B, s, t), ``s <= t``; columns on the costs' device.

    On a GPU (:func:`~.batched_search.on_device`), a stack with at least
    :data:`LOCKSTEP_MIN_WORK` is solved there by :func:`~.lockstep.assign_lockstep` (with
    :data:`STACK_ON_DEVICE`); otherwise the compiled solver of
    :func:`~hiref.engine._assign.assign_many` solves them on the host, a slice of the stack per
    thread. Returns (B, s) int64 columns.
    """
    n_b, s, t = costs.shape
    if batched_search.on_device(costs.device) and STACK_ON_DEVICE and n_b * s * s >= LOCKSTEP_MIN_WORK:
        # in chunks of at most LOCKSTEP_MAX_ENTRIES (its start and state take a few times the costs)
        per = max(1, LOCKSTEP_MAX_ENTRIES // max(1, s * t))
        return torch.cat([assign_lockstep(costs[lo : lo + per])[0] for lo in range(0, n_b, per)])
    if costs.device.type == "cpu":
        return torch.as_tensor(assign_many(costs.numpy()), dtype=torch.long)
    return torch.as_tensor(assign_many(costs.cpu().numpy()), dtype=torch.long, device=costs.device)
