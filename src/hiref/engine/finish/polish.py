"""The exact finish: the matching made optimal on one candidate graph of the whole clouds, then proved.

The hierarchy gets the large scale right but, on near-uniform clouds (tissue sections, lattices),
every split cuts through a band of optimal pairs; the repairs this needs form chains of
exchanges that run along the cuts, as long as they need to be. This finish solves the
assignment problem on a sparse graph over *all* points at once, with no blocks and no seams:
every point ``x`` of the smaller cloud may keep its partner ``T(x)`` or take one of

- its ``k`` nearest points of the other cloud,
- the ``k`` nearest neighbours of its partner ``T(x)`` (corrections of the current map), and
- the partners of its ``k`` nearest neighbours (the displacement of its neighbourhood).

The graph is solved by the auction algorithm with epsilon-scaling (:mod:`.auction`), which also
returns prices (a dual solution). Two things make it fast and exact:

1. **Warm prices.** Cold, the auction spends most of its bids building the price landscape,
   whose slope is the displacement field. For a differentiable cost, the prices' gradient at
   a matched point ``y`` is ``-grad_y c(T^-1(y), y)``; its least-squares integral over the
   nearest-neighbour graph (a sparse Laplacian solve) gives prices that are nearly right, and the
   auction starts from them with a small ``eps`` (at 262,144 points: 1.5 million bids instead
   of 41 million). From :data:`.coarse_start.COARSE_MIN` points the displacement field comes from a
   subsample of the pairs solved first, coarse to fine (:func:`.coarse_start.coarse_start`): where the
   hierarchy follows a local deformation only in part, its own field is biased. In a partial
   matching (more points in ``B``) the subsample holds points of ``B`` the matching leaves out
   too: its optimum says where ``B``'s leftovers lie. Where cells move far against their
   spacing (two sections of one tissue), and in high dimensions, the subsample's dual, extended
   by a soft c-transform, gives the prices instead (:data:`.coarse_start.COARSE_DUAL_SPACING`).
2. **Pricing.** Prices give the c-transform ``u(x) = min_y c(x, y) + p(y)`` over *every* point
   of the other cloud (:mod:`.certificate`); a pair with ``c(x, y) + p(y) < u(x)`` is an arc
   the graph lacks. They are added and the graph is solved again until none is left: then the
   matching is optimal up to ``eps``, and the dual gives a lower bound on the optimum. On the
   CPU, with clouds of equal sizes, the solves after the first start from the last one and
   reassign only the points that lost their slackness, by shortest augmenting paths
   (:mod:`.augment`).

An automatic finish (one with a work budget, counted in bids: the same data give the same
matching on any machine) whose auction runs out of it keeps the matching of the auction's last
completed phase where it costs less than the one it started from.

Costs are divided by the current mean cost, and ``eps`` is relative to it: the result does not
depend on the data's units. Points of the larger cloud left unmatched end as its cheapest
(:mod:`.auction`), as the dual of the partial problem asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from hiref.engine._resources import return_freed_memory
from hiref.engine.finish import batched_search, coarse_start
from hiref.engine.finish.auction import Graph, auction_cpu, auction_torch, epsilons
from hiref.engine.finish.augment import reassign
from hiref.engine.finish.candidates import Neighbourhoods, SparseProblem, index_dtype
from hiref.engine.finish.certificate import (
    Dual,
    best_points,
    c_transform,
    c_transform_moved,
    c_transform_risen,
    lower_bound,
    tightened_bound,
    transform_feasible,
    uses_price_tree,
)
from hiref.engine.finish.leaves import mean_paired_cost
from hiref.engine.finish.neighbours import candidate_neighbours, nearest_on_device
from hiref.engine.finish.prices import EDGES, price_guess, prices_from_slopes
from hiref.engine.finish.spatial_order import SpatialOrder
from hiref.engine.geometry.costs import Cost

logger = logging.getLogger("hiref")

#: ``eps`` of the last auction phase, relative to the mean cost: the matching is optimal on its
#: graph within this share of the cost.
FINAL_EPS = 1e-7
#: A point is short when some arc undercuts its pair's value by more than this (two final ``eps``).
_SHORT = 2 * FINAL_EPS
#: ``eps`` of the first phase when the prices are guessed (else 1, a cold start).
WARM_EPS = 0.03
#: Least ``eps`` of the first phase after arcs were added, where the auction solves again (the
#: prices are nearly right by then; the phase starts at the relative gap still to prove where that
#: is larger). Sections of 300,000 cells with 5 % dropped, 2 cores, seeds 0-2 (a partial
#: matching, re-solved by the auction): the finish's solves 7.1 / 6.8 / 7.0 s with 1e-3, 6.2 / 6.3
#: / 6.0 s with 1e-4, 6.2 / 5.7 / 6.2 s with 1e-5; a planted density pair of 2**18 points cut at
#: 90 %: 1.93 -> 1.84 s; a 30-D mixture of 16,384 points: no change.
REPRICE_EPS = 1e-4
#: Ratio of successive ``eps``.
EPS_FACTOR = 5.0
#: Most rounds of pricing (solve, find the missing arcs, add them).
MAX_ROUNDS = 30
#: Pricing stops once the certificate proves the matching this close to the optimum
#: (relative); arcs still missing then can gain at most that much.
CERTIFIED = 1e-5
#: Pricing also stops once the bound proves the matching this close to the optimum and the last
#: two solves lowered the cost by less than a hundredth of what is left to prove: the rounds
#: after that only tighten the bound (on lattices, whose optimal prices are far from unique,
#: by about a tenth a round).
CERTIFIED_STALLED = 1e-4
#: Fewest free rows for which a GPU phase bids in batched rounds; fewer finish the phase on the host.
#: A batched round costs about the same whether ten rows bid or ten thousand (launch-bound),
#: while the compiled auction makes about ten million bids a second. Measured on the finish of a
#: 65,536-point planted pair (CPU): the rounds with at least 1,024 free rows were 768 of 20,912
#: and carried 93 % of the bids; the other 20,144 rounds carried 32,519 bids, a few milliseconds
#: of host work.
HOST_TAIL = 1024
#: Work of one step of a shortest-path search (an object scanned), in bids of the auction: on the
#: re-solves of the 300,000-cell sections of ``benchmarks/sections.py`` (2 cores) the searches
#: scanned about 2.3 million objects a second where the auction bid about 3.9 million times.
POP_WORK = 2
#: Work of a round of pricing (c-transform, bound, missing arcs) per point of the larger cloud, in
#: bids, where the price tree answers the squared Euclidean cost: about 1.3 s a round on the same
#: sections.
PRICING_WORK = 16
#: The same where the price tree answers the Euclidean distance or a power of it: values tie
#: along rays near the optimum and the searches are wide (planted density pair of 300,000 points,
#: Euclidean cost, 2 cores: 19.5 s for the first pricing, 63-69 s for each later one).
PRICING_WORK_RAYS = 500
#: Work of pricing by exact minima over all pairs, per pair and dimension (a model: where the
#: automatic finish prices that way above 2**18 points, a GPU with a power cost, no device was
#: lent to time it).
PRICING_WORK_EXACT = 1 / 1024
#: Largest share of points given new arcs for which a re-solve (equal sizes) searches shortest
#: augmenting paths from them (:func:`.augment.reassign`); above it, the auction solves again
#: from the current prices. Where the graph lacks many partners (high dimensions, flat cost
#: landscapes), each search scans a wide region. Two sections of 50,000 simulated cells aligned
#: by ``hr.tl.align`` on position and 54 expression components (2 cores, seed 0): the re-solve
#: after the fourth pricing (17,380 points, 35 %, 130 arcs a point) scanned 16.1 million objects
#: in 22.6 s, where the auction from the same prices made 1.4 million bids in 0.9 s to the same
#: matching; with 0.1 instead of 0.5 the alignment took 61.8 -> 43.2 s (seed 1: 58.0 -> 41.5 s,
#: 100,000 cells: 212 -> 167 s). For fewer points the searches' prices pay, proving the matching
#: in fewer rounds of pricing: Gaussian mixtures of 16,384 and 46,000 points in 30 dimensions,
#: re-solves for 0.7 % and 0.4 % of the points, 5.1 and 20.7 s with the searches, 5.8 and
#: 23.0 s with the auction.
_SEARCHED_MOST = 0.1
#: (Where exact minima price from a subsample's dual, the first re-solve is always the auction's:
#: right after the first auction its searches scanned thousands of objects per point. Two
#: sections of 100,000 simulated cells aligned on position and 54 expression components, 2
#: cores: 5,693 and 7,304 points, 49 and 89 million objects, 70 and 124 s, against 2-3 s for an
#: auction; 50,000 cells: 4,162 points, 14 million objects, 18.7 s.)
#: Arcs added per point whose best partner lies outside the graph.
_PRICED_ARCS = 2
#: Most arcs per point short once the rounds double them (:func:`_arcs_per_row`).
_PRICED_ARCS_MAX = 16
#: The same where exact minima over all pairs price (high dimensions): a full row costs little
#: more than its minimum there, and every arc added saves a round of pricing.
_PRICED_ARCS_EXACT = 32
#: The same where the price tree answers a Euclidean distance to a power: near the optimum the
#: Euclidean distance's values tie along whole rays, nearly every point is short in every round,
#: and each arc added saves one (half-moon to S-curve, 16,384 points, 2 cores: 8 arcs 41.8 s,
#: 32 arcs 32.3 s, 64 arcs 27.6 s).
_PRICED_ARCS_RAYS = 64
#: Arcs added before the first solve (where the price tree prices), per point whose best partner
#: under the guessed prices lies outside the graph.
#: Where the hierarchy is far from the optimum, its neighbourhoods lack many true partners and the
#: first auction fights long price wars over the graph it has; the guessed prices know better
#: (planted density pair, 2**20 points, hierarchy 13.7 % above the optimum: 98 s -> 37 s to the
#: optimum; 2 or 4 arcs instead of 8: 61 s, 60 s).
_START_ARCS = 8
#: The same where the prices come from a subsample solved first (:func:`.coarse_start.coarse_start`): they
#: are right over whole regions where the hierarchy's matching, and so its neighbourhoods, are
#: not (a local deformation of 2**20 points whose hierarchy ends 49 % above the optimum: the
#: finish took 64 s with 8 arcs, 20 s with 16; with 16 arcs but the hierarchy's prices, 432 s).
_START_ARCS_COARSE = 16
#: The same where the prices are a subsample's dual (:data:`.coarse_start.COARSE_DUAL_SPACING`): two sections
#: of a tissue, 300,000 cells, seed 1: with 16 arcs the first solve left 9,887 points short and
#: their re-solve ran out of the budget, with 32 none (the optimum in 28 s).
_START_ARCS_DUAL = 32


@dataclass
class Finish:
    """What the exact finish found.

    Attributes
    ----------
    perm
        The matching, (n,).
    costs
        Mean cost after every solve of the graph.
    lower_bound
        Lower bound on the optimal mean cost from the final prices (``None`` where the
        c-transform was not computed).
    rounds
        Solves of the graph (1 + rounds of pricing that added arcs); a solve that ran out of
        its budget counts where the matching of its last completed phase was kept.
    timings
        Seconds spent solving the subsample that gives the starting slopes (``coarse``, from
        :data:`.coarse_start.COARSE_MIN` points), finding the neighbourhoods (``neighbours``), guessing the
        prices (``prices``), in the auctions (``solve``) and in pricing (``pricing``: c-transforms,
        bounds, the missing arcs added).
    exact
        Whether the last pricing found no missing arc, or proved the matching within
        :data:`CERTIFIED` of the optimum (:data:`CERTIFIED_STALLED` once the cost stopped
        falling).
    work
        Work done, in bids of the auction (:data:`POP_WORK`, :data:`PRICING_WORK`; the
        subsample's finish included): what a work budget counts.
    prices
        The prices of ``B``'s points that go with the matching, (m,), in units of ``scale``
        (``None`` where no auction ran).
    scale
        Unit of the prices: the mean cost of the matching the finish started from.
    """

    perm: np.ndarray
    costs: list[float]
    lower_bound: float | None
    rounds: int
    exact: bool
    timings: dict[str, float] = field(default_factory=dict)
    work: int = 0
    prices: np.ndarray | None = None
    scale: float = 1.0


def exact_finish(
    geometry: Cost,
    A: torch.Tensor,
    B: torch.Tensor,
    perm: np.ndarray,
    *,
    Aw: torch.Tensor | None = None,
    Bw: torch.Tensor | None = None,
    neighbours: int = 8,
    generator: torch.Generator,
    bound_budget: float = 2.0**36,
    work_budget: int | None = None,
    say: Callable[[str], None] | None = None,
) -> Finish:
    """Make a matching optimal on a candidate graph of all points, add missing arcs, bound the optimum.

    Parameters
    ----------
    geometry
        The cost geometry (arc costs are exact, in float64).
    A, B
        All points, (n, d) and (m, d), ``n <= m``.
    perm
        Current matching, (n,): ``A[i]`` matched to ``B[perm[i]]``.
    Aw, Bw
        Coordinates in which neighbours are sought (e.g. a sketch of high-dimensional data);
        ``A`` and ``B`` by default.
    neighbours
        Candidates of each kind per point (see the module docstring and :class:`.candidates.Neighbourhoods`).
    generator
        Source of randomness (unused: the finish is deterministic; kept for a uniform signature).
    bound_budget
        Largest ``n * m * d`` for which the c-transform is computed by exact minima over all
        pairs where no k-d tree applies (the squared Euclidean cost in at most 16 dimensions
        always uses one). Above it, no pricing and no bound.
    work_budget
        Work (in bids, see :attr:`Finish.work`) after which no new round of pricing starts and
        no solve goes on past what is left of it, or a quarter of it (``None``: no limit). The
        matching of the last solve is kept with the bound of its prices: valid, but not proved
        optimal. Counted in work, not seconds, so that the result does not depend on the machine.
    say
        Called with a few words on the stage that starts (a progress bar's text); ``None``: silent.

    Returns
    -------
    The finish: matching, costs, lower bound, rounds.
    """
    order = SpatialOrder.of(A if Aw is None else Aw, B if Bw is None else Bw)
    options = {"neighbours": neighbours, "bound_budget": bound_budget, "work_budget": work_budget, "say": say}
    if order is None:
        return _finish(geometry, A, B, perm, Aw, Bw, **options)
    finish = _finish(geometry, *order.clouds(A, B), order.to_sorted(perm), *order.clouds(Aw, Bw), **options)
    finish.perm = order.from_sorted(finish.perm)
    if finish.prices is not None:
        finish.prices = order.b_from_sorted(finish.prices)
    return finish


def _finish(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, perm: np.ndarray, Aw: torch.Tensor | None,
    Bw: torch.Tensor | None, *, neighbours: int, bound_budget: float, work_budget: int | None,
    say: Callable[[str], None] | None,
) -> Finish:  # fmt: skip
    """:func:`exact_finish` on clouds in the order given."""
    say = say or _silent
    return_freed_memory()
    n, m = A.shape[0], B.shape[0]
    perm = np.asarray(perm, dtype=np.int64).copy()
    start_cost = mean_paired_cost(geometry, A, B, perm)
    if n == 0 or start_cost <= 0.0:
        return Finish(perm, [start_cost], start_cost if n else None, rounds=0, exact=True)
    clock = _Clock()
    by_tree = uses_price_tree(geometry, A.shape[1], A.device)
    pricing_work = _pricing_work(geometry, A.shape[1], n, m, by_tree=by_tree)
    feasible = transform_feasible(geometry, A.shape[1], n, m, bound_budget, A.device)
    # where exact minima price the squared Euclidean cost (high dimensions; ranked in float32
    # over cache-sized tiles), the first pricing, before the first solve, gives each point its
    # best partners of the other cloud at the starting prices, instead of a search for the
    # nearest ones: 46,000 points in 30 dimensions (2 cores) 21 s -> 14 s, the first auctions on
    # the better graph 6.6 s -> 2.4 s. (Other costs price by float64 rows, dearer: Euclidean in
    # 2-D, 16,384 points, 65 s -> 70 s with it.)
    first_priced = feasible and not by_tree and geometry.name == "sqeuclidean"
    # (the subsample's slopes integrate to prices of the squared Euclidean cost only; in high
    # dimensions its dual gives them, see coarse_start)
    start = None
    tree_dims = uses_price_tree(geometry, A.shape[1])  # (on the host; a device prices by exact minima)
    coarse = (
        geometry.name == "sqeuclidean"
        and (tree_dims or first_priced)
        and n >= (coarse_start.COARSE_MIN if tree_dims else coarse_start.COARSE_MIN_EXACT)
    )  # fmt: skip
    spent = 0  # work, in bids
    if coarse:  # first, before the graph: its memory is back by then
        say("finish: solving a subsample for the starting prices")
        budget = None if work_budget is None else work_budget // 3
        start, spent = coarse_start.coarse_start(
            geometry, A, B, perm, Aw, Bw, k=neighbours, bound_budget=bound_budget, work_budget=budget,
            finish=exact_finish,
        )  # fmt: skip
        return_freed_memory()
        clock.lap("coarse")
    from_dual = start is not None and start.prices is not None
    # Where exact minima price from a subsample's dual, the first pricing's best arcs are the
    # graph: the scans for each cloud's own neighbours (two self-joins as dear as a pricing)
    # gave no fewer rounds (50,000 unregistered cells, 2 cores: 63-68 s -> 44.5 s; a 46,000-point
    # mixture in 30-D 38-44 s -> 27 s; 100,000 cells 191-210 s either way, see the note at
    # _SEARCHED_MOST).
    within = not (from_dual and first_priced)
    say("finish: nearest neighbours")
    near = Neighbourhoods(
        A if Aw is None else Aw, B if Bw is None else Bw, neighbours, across=not first_priced, within=within
    )  # fmt: skip
    return_freed_memory()
    problem = SparseProblem(geometry, A, B, start_cost)
    cols, indptr = near.arcs(perm)
    problem.add(np.repeat(np.arange(n, dtype=index_dtype(n)), np.diff(indptr)), cols)
    del cols, indptr
    return_freed_memory()
    clock.lap("neighbours")
    mate = perm
    if from_dual:
        prices = start.prices / start_cost
        prices -= prices.min()
    elif start is not None:
        prices = prices_from_slopes(
            B, start.slopes, torch.ones(m, dtype=torch.bool, device=B.device), near.b_near_b, scale=start_cost
        )
    else:
        prices = price_guess(geometry, A, B, perm, near.b_near_b, scale=start_cost)
    del start
    return_freed_memory()
    clock.lap("prices")
    guessed = prices is not None
    eps = epsilons(WARM_EPS if guessed else 1.0, FINAL_EPS, EPS_FACTOR)
    prices = np.zeros(m) if prices is None else prices
    # few arcs per point short where the price tree answers the squared Euclidean cost, many where
    # exact minima price or where values tie along rays
    few_arcs = by_tree and geometry.name == "sqeuclidean"
    per_row = _PRICED_ARCS if few_arcs else _PRICED_ARCS_RAYS if by_tree else _PRICED_ARCS_EXACT
    costs: list[float] = []
    rounds, exact, bound, dual, asked, back = 0, False, None, None, None, None
    tightened = False  # whether the last bound had the best prices for its dual's c-transform
    first_asked = None
    if (by_tree and guessed) or first_priced:
        say("finish: checking every point for a better partner")
        start_arcs = (
            (_START_ARCS_DUAL if from_dual else _START_ARCS_COARSE if coarse else _START_ARCS) if few_arcs else per_row
        )
        # from a subsample's dual nearly every point is short (85-97 % on the sections): one
        # search of the best arcs for all, instead of the best one and then the best for those
        dual = c_transform(
            geometry, A, B, prices, scale=start_cost, k=start_arcs if from_dual else 1 if few_arcs else per_row,
            anchor=_anchor(mate, n, A.device),
        )  # fmt: skip
        current = problem.cost(np.arange(n), mate[:n]) + prices[mate[:n]]
        if from_dual and first_priced:
            # every point gets its best arcs, not only those short: a point with its partner
            # as its only arc, once another takes that partner, has no second choice to bound
            # its bid (50,000 unregistered cells, 2 cores: in the first auction 12 % of prices
            # rose by three times the mean cost, and the next pricings searched every point;
            # with the arcs, every price rose by 0.13-0.4 times, and 4 solves became 2: the
            # align 34-37 s -> 25-26 s)
            first_asked = problem.add_candidates(np.arange(n), dual.best[:, :start_arcs].copy(), overwrite=True)
        else:
            first_asked = _missing_arcs(problem, dual, current, prices, per_row=start_arcs)
        if from_dual and by_tree:  # only the best is needed later (the search's arrays are kept)
            dual.best = np.ascontiguousarray(dual.best[:, :1])
        spent += pricing_work
        clock.lap("pricing")
    on_device = batched_search.on_device(A.device)
    solve_next = True
    while True:
        risen = moved = False
        if solve_next:
            say(f"finish: round {rounds + 1}, assignment on {int(problem.indptr[-1]):,} arcs{_proved(costs, bound)}")
            graph = problem.graph()
            before_mate, before_prices = mate, prices
            settled = None
            if asked is not None:  # only the rows given new arcs can have lost their slackness
                settled = np.ones(n, dtype=bool)
                settled[asked] = False
            max_bids = None
            if work_budget is not None:  # an automatic finish: no solve works far past its budget
                max_bids = max(work_budget - spent, work_budget // 4)
            partial = None
            few = asked is not None and graph.m == graph.n and asked.size <= _SEARCHED_MOST * n
            if few and not on_device and (by_tree or not from_dual or rounds >= 2):
                max_pops = None if max_bids is None else max_bids // POP_WORK
                mate, prices, pops = reassign(graph, mate, prices, asked, FINAL_EPS, max_pops=max_pops)
                spent += POP_WORK * pops
            else:
                mate, prices, partial, bids = _solve(graph, mate, prices, eps, A.device, settled, max_bids=max_bids)
                spent += bids
            del graph  # pricing merges new arcs into its arrays
            if mate is None:  # the auction gave up: keep the better of the matching before and its last phase's
                mate, prices, kept = before_mate, before_prices, "the matching it had"
                if partial is not None:
                    cost = mean_paired_cost(geometry, A, B, partial[0][:n])
                    if cost < (costs[-1] if costs else start_cost):
                        (mate, prices), kept = partial, "the matching of its last completed phase"
                        costs.append(cost)
                        rounds += 1
                if max_bids is not None:  # by design: the bound in the summary says how far it stopped
                    logger.info(
                        "hiref: the exact finish stopped at its work budget; keeping %s (polish=True runs it to the "
                        "end)", kept,
                    )  # fmt: skip
                else:
                    logger.warning("hiref: the exact finish did not converge; keeping %s", kept)
                if feasible and (bound is None or mate is not before_mate):  # bounded by the prices kept
                    dual = c_transform(geometry, A, B, prices, scale=start_cost, k=1, anchor=_anchor(mate, n, A.device))
                    tight, _ = tightened_bound(geometry, A, B, dual, scale=start_cost)
                    kept_bound = max(lower_bound(dual, prices, n), tight) * start_cost
                    bound = kept_bound if bound is None else max(bound, kept_bound)
                    spent += pricing_work
                elif feasible and dual is not None and not tightened:  # the last pricing's dual, kept
                    tight, back = tightened_bound(geometry, A, B, dual, scale=start_cost, tree=back)
                    bound = max(bound, tight * start_cost)
                    spent += pricing_work
                clock.lap("solve")
                break
            rounds += 1
            costs.append(mean_paired_cost(geometry, A, B, mate[:n]))
            clock.lap("solve")
            if not feasible:
                break
            # Where the c-transform takes exact minima over all pairs for the squared Euclidean
            # cost, each point's candidates of the last pricing and its floor bound all other
            # points by the change of their prices: each point is searched only over the points
            # whose price moved less than its pair is above its floor
            # (:func:`.certificate.c_transform_moved`). For other costs (no floor), where no
            # price went down (always so when n == m: forward bids only raise prices), only the
            # points that moved, got arcs or hold a point whose price rose can have fallen
            # short, and most of those are answered by their candidates of the last pricing
            # (:func:`.certificate.c_transform_risen`; without the third kind, passes over all
            # points found 3-27 more short, and the 30-D mixture of the tissue benchmark took 8
            # rounds, not 5). The price tree prices every point: it is cheap, and loose values
            # would keep the bound from proving the matching.
            moved = dual is not None and not by_tree and dual.floor is not None
            risen = dual is not None and not by_tree and not moved and bool((prices >= before_prices).all())
            if risen:
                dearer = np.flatnonzero(prices[mate[:n]] > before_prices[mate[:n]])
                given = asked if asked is not None else first_asked  # the points given arcs before
                changed = np.union1d(np.union1d(np.flatnonzero(mate[:n] != before_mate[:n]), given), dearer)
        # (exact minima keep every arc that pricing adds: no second pass over the points short)
        k = _PRICED_ARCS if few_arcs else _arcs_per_row(per_row, rounds)
        say(f"finish: round {rounds}, checking every point for a better partner")
        current = problem.cost(np.arange(n), mate[:n]) + prices[mate[:n]]
        if moved:
            dual, _ = c_transform_moved(
                geometry, A, B, prices, scale=start_cost, k=k, previous=dual, before=before_prices, current=current,
                margin=_SHORT,
            )  # fmt: skip
            loose = False
        elif risen:
            dual, _, loose = c_transform_risen(
                geometry, A, B, prices, scale=start_cost, k=k, previous=dual, current=current, changed=changed,
                margin=_SHORT,
            )  # fmt: skip
        else:
            search = None if dual is None else dual.search
            anchor = _anchor(mate, n, A.device)
            dual = c_transform(geometry, A, B, prices, scale=start_cost, k=k, search=search, anchor=anchor)
            loose = False
        bound = lower_bound(dual, prices, n) * start_cost
        certified = _certified(costs, bound)
        spent += pricing_work
        late = work_budget is not None and spent > work_budget
        tightened = not certified and (_stalled(costs, bound) or rounds >= MAX_ROUNDS or late)
        if tightened:
            tight, back = tightened_bound(geometry, A, B, dual, scale=start_cost, tree=back)
            bound = max(bound, tight * start_cost)
            certified = _certified(costs, bound)
        asked = (
            np.empty(0, dtype=np.int64)
            if certified
            else _missing_arcs(problem, dual, current, prices, per_row=_arcs_per_row(per_row, rounds))
        )
        return_freed_memory()
        clock.lap("pricing")
        logger.debug(
            "hiref finish round %d: cost %.8g, bound %.8g, %d points short", rounds, costs[-1], bound, asked.size
        )
        if asked.size == 0 and loose and not certified:
            solve_next = False  # none short, but some values are old: price all once more
            continue
        exact = asked.size == 0
        spent_all = work_budget is not None and spent > work_budget
        if spent_all and not exact:
            logger.info("hiref: the exact finish stopped after %d rounds, its work budget spent", rounds)
        if exact or rounds >= MAX_ROUNDS or spent_all:
            if loose and not certified:  # values kept from earlier rounds: valid but loose
                dual = c_transform(geometry, A, B, prices, scale=start_cost, k=1, anchor=_anchor(mate, n, A.device))
                bound = lower_bound(dual, prices, n) * start_cost
                spent += pricing_work
                clock.lap("pricing")
            break
        solve_next = True
        # prices far from the new optimum take coarse bids first (else long wars of small ones)
        eps = epsilons(float(np.clip((costs[-1] - bound) / costs[-1], REPRICE_EPS, WARM_EPS)), FINAL_EPS, EPS_FACTOR)
    return Finish(mate[:n].copy(), costs, bound, rounds, exact, clock.seconds, spent, prices, start_cost)


def _anchor(mate: np.ndarray, n: int, device: torch.device) -> np.ndarray | None:
    """Every row's partner, where the batched search prices: its first bound comes from there.

    (:meth:`.BatchedPriceSearch.search`; the price tree starts from the previous query's best
    points instead: ``None`` there.)
    """
    return mate[:n] if batched_search.on_device(device) else None


def _pricing_work(geometry: Cost, d: int, n: int, m: int, *, by_tree: bool) -> int:
    """Work of a round of pricing, in bids (see :data:`PRICING_WORK` and the two after it)."""
    if not by_tree:
        return int(PRICING_WORK_EXACT * n * m * d)
    return (PRICING_WORK if geometry.name == "sqeuclidean" else PRICING_WORK_RAYS) * m


def _silent(_: str) -> None:
    """No progress to show."""


def _proved(costs: list[float], bound: float | None) -> str:
    """How far above the optimum the last matching is proved to be at most, for the progress bar."""
    if not costs or bound is None or bound <= 0:
        return ""
    return f", at most {100 * max(costs[-1] / bound - 1, 0.0):.2g} % above the optimum"


class _Clock:
    """Seconds spent per named stage: each :meth:`lap` adds the time since the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


def _certified(costs: list[float], bound: float) -> bool:
    """Whether pricing stops.

    It stops when the bound proves the matching within :data:`CERTIFIED` of the optimum, or within
    :data:`CERTIFIED_STALLED` once the last solves stopped lowering the cost.
    """
    gap = costs[-1] - bound
    if gap <= CERTIFIED * abs(bound):
        return True
    return _stalled(costs, bound) and gap <= CERTIFIED_STALLED * abs(bound)


def _stalled(costs: list[float], bound: float) -> bool:
    """Whether the last two solves lowered the cost by less than a hundredth of what is left to prove."""
    return len(costs) >= 3 and costs[-3] - costs[-1] <= 0.01 * (costs[-1] - bound)


def _solve(
    graph: Graph, mate: np.ndarray, prices: np.ndarray, eps: list[float], device: torch.device,
    settled: np.ndarray | None = None, *, max_bids: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None, int]:  # fmt: skip
    """One auction on the graph: compiled on the CPU; elsewhere batched bidding there, tails on the host.

    On a GPU, every phase bids in batched rounds (:func:`.auction.auction_torch`) while at least
    :data:`HOST_TAIL` rows are free; the few rows left then bid one at a time in the compiled
    auction, which continues from the same prices and assignment (both still meet the phase's
    ``eps``-slackness). Unbalanced graphs (reverse bids) are solved on the host.

    Returns the assignment and prices (``None`` where the auction gave up, past ``max_bids``),
    the assignment and prices of the last phase completed before the last (``None`` if none
    was), and the bids (batched rounds count every row that takes part).
    """
    done: list[tuple[np.ndarray, np.ndarray]] = []

    def keep(mate: np.ndarray, prices: np.ndarray, e: float) -> None:
        done[:] = [(mate, prices)]

    if not batched_search.on_device(device) or graph.m > graph.n:
        mate, prices, bids = auction_cpu(
            graph, mate, prices, eps, settled=settled, max_bids=max_bids, on_phase=keep
        )  # fmt: skip
        return mate, prices, done[0] if done else None, bids
    cols_t, costs_t = _padded_rows(graph, device)
    mate_t, prices_t = torch.as_tensor(mate, device=device), torch.as_tensor(prices, device=device)
    bids = 0
    for e in eps:
        left = None if max_bids is None else max_bids - bids
        mate_t, prices_t, got = auction_torch(
            cols_t, costs_t, graph.m, mate_t, prices_t, [e], stop_below=HOST_TAIL, max_bids=left
        )  # fmt: skip
        bids += got
        if mate_t is None:
            return None, None, done[0] if done else None, bids
        mate, prices = mate_t.cpu().numpy(), prices_t.cpu().numpy()
        if (mate < 0).any():
            left = None if max_bids is None else max(max_bids - bids, 0)
            mate, prices, got = auction_cpu(graph, mate, prices, [e], max_bids=left)
            bids += got
            if mate is None:
                return None, None, done[0] if done else None, bids
            mate_t, prices_t = torch.as_tensor(mate, device=device), torch.as_tensor(prices, device=device)
        if e != eps[-1]:
            keep(mate.copy(), prices.copy(), e)
    return mate, prices, done[0] if done else None, bids


def _padded_rows(graph: Graph, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The graph's arcs as (n, width) columns and costs on ``device`` (``inf`` cost where padded), built there."""
    indptr = torch.as_tensor(graph.indptr, device=device)
    counts = indptr[1:] - indptr[:-1]
    width = int(counts.max())
    rows = torch.repeat_interleave(torch.arange(graph.n, device=device), counts)
    pos = torch.arange(rows.shape[0], device=device) - indptr[:-1][rows]
    cols = torch.zeros((graph.n, width), dtype=torch.long, device=device)
    costs = torch.full((graph.n, width), float("inf"), dtype=torch.float64, device=device)
    cols[rows, pos] = torch.as_tensor(graph.cols, device=device).long()
    costs[rows, pos] = torch.as_tensor(graph.costs, device=device)
    return cols, costs


def _arcs_per_row(base: int, rounds: int) -> int:
    """Arcs added per point short after ``rounds`` solves: ``base``, doubled from the third on.

    A matching that needs many rounds of pricing lacks long chains of arcs, two at a time were
    too few (3,000 S-curve points into 3,700 half-moon ones: 30 rounds and still 1.7 % short of a
    proof with 2 arcs a round; 21 rounds and a proof within 2e-6 with 8). Most problems are done
    in one or two solves and never reach the doubling (at 2**20 planted points, 8 arcs from the
    start cost 4 s and 0.2 GB more).
    """
    return min(max(base, _PRICED_ARCS_MAX), base * 2 ** max(0, rounds - 2))


def _missing_arcs(
    problem: SparseProblem, dual: Dual, current: np.ndarray, prices: np.ndarray, *, per_row: int
) -> np.ndarray:  # fmt: skip
    """Add the arcs whose reduced cost is below the current pairs' (the graph lacks them); returns their rows.

    ``current``: every point's pair's value, ``c / scale + p`` at ``prices``. Each point short gets its
    ``per_row`` cheapest arcs (searched again where ``dual`` kept fewer).
    """
    short = np.flatnonzero(dual.u < current - _SHORT)
    if short.size == 0:
        return short
    if dual.best.shape[1] >= per_row:  # (a copy of the rows: sorted in place)
        return problem.add_candidates(short, dual.best[short], overwrite=True)
    A_short = problem.A[torch.as_tensor(short, device=problem.A.device)]
    best = best_points(
        problem.geometry, A_short, problem.B, prices, scale=problem.scale, k=min(per_row, problem.m), search=dual.search
    )  # fmt: skip
    del A_short
    return problem.add_candidates(short, best, overwrite=True)


def certify(
    geometry: Cost,
    A: torch.Tensor,
    B: torch.Tensor,
    perm: np.ndarray,
    *,
    Aw: torch.Tensor | None = None,
    Bw: torch.Tensor | None = None,
    bound_budget: float = 2.0**36,
) -> float | None:
    """A lower bound on the optimal mean cost for a matching that was not finished (``None`` if out of budget).

    The prices are the integral of the matching's displacement field (:mod:`.prices`) over the
    same graph of :data:`.prices.EDGES` neighbours as the finish's guess (over 4, the integral had
    deep wells: planted density pairs of 2**16 points 3.5-5.2 % above the optimum were certified
    within 16 %, 57 % and not at all; over 6, within 3.6-5.4 %). The bound is valid whatever
    the prices are, and tight only where the matching is nearly optimal. Their
    c-transform is then paired with its own best prices (:func:`.certificate.tightened_bound`),
    one more exact search that lowers the bound's slack by a quarter to three quarters
    (measured over 4 neighbours: planted 2**20 points, hierarchy 14 % above the optimum,
    certified within 23 % -> 17 %, in 1.4 s more, and 14.7 % over 6; 3,000 S-curve points into
    half moons: 15 % -> 3.7 %).
    """
    n, m = A.shape[0], B.shape[0]
    if n == 0 or not transform_feasible(geometry, A.shape[1], n, m, bound_budget, A.device):
        return None
    perm = np.asarray(perm, dtype=np.int64)
    order = SpatialOrder.of(A if Aw is None else Aw, B if Bw is None else Bw)
    if order is not None:  # (the bound does not depend on the order)
        (A, B), perm, (Aw, Bw) = order.clouds(A, B), order.to_sorted(perm), order.clouds(Aw, Bw)
    scale = mean_paired_cost(geometry, A, B, perm)
    if scale <= 0.0:
        return scale
    Bw = B if Bw is None else Bw
    if batched_search.on_device(Bw.device):
        neighbours = nearest_on_device(Bw, Bw, EDGES + 1)[:, 1:]
    else:
        Bw_np = Bw.double().cpu().numpy()
        neighbours = candidate_neighbours(Bw_np, Bw_np, EDGES + 1)[:, 1:]
    prices = price_guess(geometry, A, B, perm, neighbours, scale=scale)
    if prices is None:
        prices = np.zeros(m)
    dual = c_transform(geometry, A, B, prices, scale=scale, k=1, anchor=perm)
    tight, _ = tightened_bound(geometry, A, B, dual, scale=scale)
    return max(lower_bound(dual, prices, n), tight) * scale
