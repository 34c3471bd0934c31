"""The one driver of Hierarchical Refinement (HiRef paper, Algorithm 1), for one process or several.

A single process is a world of size one (:data:`~hiref.engine.distributed.comm.SINGLE`, whose
collectives are the identity); :func:`run` is the same sequence for both:

1. **Arrange**: match the smaller cloud A into the larger B (swap if needed; with
   ``unbalanced="subsample"`` draw B's kept points).
2. **Working copies** of both clouds in the working precision, projected on principal axes in
   high dimension (:mod:`~hiref.engine.geometry.sketch`).
3. **Levels**: split every co-cluster into ``r`` children, all co-clusters of a level in one
   batched call (:func:`~hiref.engine.split.level.split_level`). In a world of several processes the
   top levels run data parallel (:func:`~hiref.engine.split.data_parallel.split_level_parallel`)
   until the co-clusters can be shared out evenly; then every point moves once to the process
   that owns its co-cluster (:mod:`~hiref.engine.distributed.sharding`), which runs the remaining levels
   alone.
4. **Leaves**: exact assignment inside every final co-cluster.
5. **Finish**: window refinement and the sparse-graph polish (each process on its own
   co-clusters), then the exact cost; in a world of several processes the matching and labels
   are gathered on every process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from hiref.engine._resources import record_memory
from hiref.engine.blocks import Blocks, LevelSplit
from hiref.engine.distributed.sharding import Owned, balanced, global_labels, own_blocks
from hiref.engine.finish.certificate import transform_feasible
from hiref.engine.finish.leaves import mean_paired_cost, solve_leaves
from hiref.engine.finish.polish import certify, exact_finish
from hiref.engine.finish.windows import refine_matching
from hiref.engine.geometry.costs import Transposed
from hiref.engine.geometry.sketch import working_copy
from hiref.engine.labels import LevelLabels
from hiref.engine.leftovers import applies, select_kept, spread_labels
from hiref.engine.matching import Arrangement, Matching, Outcome, caller_matching
from hiref.engine.split.data_parallel import Shard, split_level_parallel
from hiref.engine.split.level import Stack, split_level

if TYPE_CHECKING:
    from hiref.engine.distributed.comm import Collectives
    from hiref.engine.geometry.costs import Cost
    from hiref.engine.options import Plan
    from hiref.engine.split.level import LevelOptions

#: Largest n * m * d for which the certificate takes exact minima over all pairs (no k-d tree
#: applies: a cost other than squared Euclidean, or more than 16 dimensions), on the CPU and on CUDA.
#: Up to it the finish prices every point and proves its matching; above, the windows refine and
#: no bound is given. Gaussian mixtures on 2 cores (``benchmarks/highdim.py --priced``, 2**36 ->
#: 2**40, with the tiled scans of :mod:`.geometry.scan`): 65,536 points in 50 dimensions 30.7 s
#: at 4.87 % above the optimum, no bound -> 43.4 s, certified optimal; 84,172 in 98 (the
#: paper's MERFISH size) 46.1 s at 5.12 % -> 82.4 s; 131,072 in 20: 88 s at 3.4 % -> 107 s
#: (before the first pricing replaced the search for neighbours).
BOUND_BUDGET_CPU = 2.0**40
BOUND_BUDGET_CUDA = 2.0**42

#: On the CPU, the blocks of a level are split in groups of consecutive blocks of at most this
#: many padded points per side (a larger block alone). The mirror descent's temporaries then
#: stay a few MB, which the allocator reuses; larger ones come as fresh pages every time (torch
#: 2.13, 2 cores: a sigmoid over 2**23 float32 takes 1.15 ns an element, 0.16 into a kept
#: buffer). Planted lattice, seed 0, 2 cores, one run each: the 16 levels of 2**22 points took
#: 85 s as whole levels, 64 s in groups; the 14 levels of 2**20 points 15.4 s and 12.9 s.
#: On other devices a level stays one batch (fewer, larger kernels).
LEVEL_GROUP_CPU = 1 << 19

#: How one level is split: a function of the blocks and the rank.
Split = Callable[[Blocks, int], LevelSplit]


@dataclass
class Report:
    """What a run records as it goes: seconds, peak memory and bytes sent per stage, and the progress bar."""

    bar: tqdm
    adjust: Callable[[], None] = lambda: None
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    communication: dict[str, int] = field(default_factory=dict)


def run(
    X: torch.Tensor, Y: torch.Tensor, plan: Plan, comm: Collectives, *, device: torch.device, seed: int,
    progress: bool, t_start: float, adjust: Callable[[], None] = lambda: None,
) -> Matching:  # fmt: skip
    """:func:`hiref.solve` on checked inputs: this process's rows ``X``, ``Y`` of the clouds."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    problem = _Problem.arrange(X, Y, plan, comm, generator, device)
    ranks = problem.levels(plan, comm)
    world = comm.world > 1
    bar = tqdm(  # the levels, the leaves and the finish
        total=len(ranks) + 2, desc=f"hiref ({comm.world} processes)" if world else "hiref", unit="step",
        disable=not progress or comm.rank != 0, leave=False,
    )  # fmt: skip
    report = Report(bar, adjust)
    if world:
        report.communication["setup"] = comm.sent
    t0, sent = time.perf_counter(), comm.sent
    working = working_copy(
        problem.A, problem.B, los=problem.los, sizes=(problem.n, problem.n_large),
        dim=plan.options.sketch_dim if plan.sketched else None, dtype=plan.work_dtype, comm=comm,
        generator=generator,
    )  # fmt: skip
    if plan.sketched:
        report.timings["sketch"] = time.perf_counter() - t0
        if world:
            report.communication["sketch"] = comm.sent - sent
    out = _Run(problem, plan, comm, generator, report, seed).solve(working, ranks)
    return caller_matching(out, problem.arrangement, cost_name=plan.geometry.name, t_start=t_start)


@dataclass
class _Problem:
    """The engine's problem on this process: rows of A (smaller) into rows of B (larger)."""

    A: torch.Tensor
    B: torch.Tensor
    n: int
    n_large: int
    los: tuple[int, int]
    geometry: Cost
    arrangement: Arrangement
    #: whether the hierarchy matches A into a selection of as many points of B (:mod:`.leftovers`)
    select: bool = False

    @classmethod
    def arrange(
        cls, X: torch.Tensor, Y: torch.Tensor, plan: Plan, comm: Collectives, generator: torch.Generator,
        device: torch.device,
    ) -> _Problem:  # fmt: skip
        sizes_x, sizes_y = comm.sizes(X.shape[0]), comm.sizes(Y.shape[0])
        swapped = sum(sizes_x) > sum(sizes_y)
        small, large = (Y, X) if swapped else (X, Y)
        sizes_a, sizes_b = (sizes_y, sizes_x) if swapped else (sizes_x, sizes_y)
        geometry = plan.geometry
        geometry_ab = Transposed(geometry) if swapped and not geometry.symmetric else geometry
        n, n_large = sum(sizes_a), sum(sizes_b)
        arrangement = Arrangement(swapped=swapped, n_large=n_large, n_y=sum(sizes_y))
        if plan.options.unbalanced == "subsample" and n < n_large:
            order = torch.randperm(n_large, generator=generator)
            arrangement.kept = torch.sort(order[:n]).values.numpy()
            arrangement.dropped = torch.sort(order[n:]).values.numpy()
        # Exact computations (leaves, reported costs) read the inputs as given, in float64 a chunk
        # at a time; the levels work on one copy in the working precision.
        A, B = small.to(device), large.to(device)
        if arrangement.kept is not None:
            B = B[torch.as_tensor(arrangement.kept, device=device)]
            n_large = n
        los = (sum(sizes_a[: comm.rank]), sum(sizes_b[: comm.rank]))
        return cls(A, B, n, n_large, los, geometry_ab, arrangement)

    def levels(self, plan: Plan, comm: Collectives) -> list[int]:
        """The rank of every level; decides :attr:`select` (then the hierarchy matches n points into n)."""
        work_d = min(plan.d, plan.options.sketch_dim) if plan.sketched else plan.d
        partial = plan.options.unbalanced == "partial" and comm.world == 1
        if partial and applies(self.n, self.n_large, work_d):
            try:
                ranks = plan.ranks(self.n)
            except ValueError:  # a schedule of the user's that only fits the larger cloud
                return plan.ranks(self.n_large)
            self.select = True
            return ranks
        return plan.ranks(self.n_large)


@dataclass
class _Run:
    """One run of the level loop, the leaves and the finish (see the module's docstring)."""

    problem: _Problem
    plan: Plan
    comm: Collectives
    generator: torch.Generator
    report: Report
    #: the seed of ``generator``: the selection draws from a generator of its own, so that the
    #: levels draw the same numbers whether it selects or not
    seed: int = 0

    @property
    def world(self) -> bool:
        return self.comm.world > 1

    def solve(self, working: Callable[[torch.Tensor], torch.Tensor], ranks: list[int]) -> Outcome:
        p = self.problem
        if self.world:
            blocks, done = self.data_parallel(Shard(working(p.A), working(p.B), *p.los), ranks)
            t0, sent = time.perf_counter(), self.comm.sent
            own = own_blocks(blocks, p.A, p.B, p.los, self.comm)
            del blocks
            self.report.timings["shard"] = time.perf_counter() - t0
            self.report.communication["shard"] = self.comm.sent - sent
        else:
            done, own = 0, Owned(Blocks.whole(p.n, p.n_large, p.A.device), p.A, p.B)
        del p.A, p.B  # the owned points are all this process needs from here on
        Aw = Bw = None
        leaves, matched, kept = own.blocks, own, None
        if own.owned is None or own.owned.numel():
            Aw, Bw = working(own.A), working(own.B)
            Bh = Bw
            if p.select:
                kept = self.select_kept(Aw, Bw)
            if kept is not None:
                kept_t = torch.as_tensor(kept, device=Bw.device)
                Bh = Bw[kept_t]
                matched = Owned(Blocks.whole(p.n, p.n, Bw.device), own.A, own.B[kept_t])
            elif p.select:  # nothing selected: the levels of the whole larger cloud (a user's schedule may fit n only)
                with contextlib.suppress(ValueError):
                    ranks = self.plan.ranks(p.n_large)
                self.report.bar.total = len(ranks) + 2
            split = local_split(p.geometry, Aw, Bh, self.plan.level, self.generator)
            leaves = self.levels(split, matched.blocks, ranks[done:], first_level=done + 1)
            del Bh
        perm = self.leaves(matched, leaves)
        width = int(np.prod(ranks[done:], dtype=np.int64))
        deep_a, deep_b = (global_labels(lab, own.owned, width) if self.world else lab for lab in leaves.labels())
        del leaves
        level_costs = self.level_costs(matched, deep_a, deep_b, ranks)
        if kept is not None:  # back to all of B: the left-over points join their nearest kept point's co-cluster
            perm = kept[perm]
            deep_b = torch.as_tensor(spread_labels(deep_b.cpu().numpy(), Bw, kept), device=deep_b.device)
        del matched
        refine_costs: list[float] = []
        bound = None
        if own.A.shape[0]:
            # Every process finishes its own co-clusters (windows and polish stay inside them);
            # neighbours are sought on the working copies in one process.
            keep = not self.world
            self.report.adjust()
            perm, refine_costs, bound = finish_matching(
                p.geometry, own.A, own.B, Aw if keep else None, Bw if keep else None, perm, self.plan,
                self.generator, self.report.timings, say=self.report.bar.set_postfix_str,
            )  # fmt: skip
        self.report.bar.update()
        self.report.bar.close()
        del Aw, Bw
        cost = self.matched_cost(own, perm)
        level_costs.append(cost)
        if self.world:
            bound = None  # each process bounds only its own co-clusters
        return self.outcome(own, perm, deep_a, deep_b, cost=cost, ranks=ranks, level_costs=level_costs,
                            refine_costs=refine_costs, lower_bound=bound)  # fmt: skip

    def select_kept(self, Aw: torch.Tensor, Bw: torch.Tensor) -> np.ndarray | None:
        """The points of B the hierarchy matches A into (:func:`.leftovers.select_kept`), timed as ``"select"``."""
        t0 = time.perf_counter()
        self.report.bar.set_postfix_str(f"selecting {self.problem.n} of {self.problem.n_large} points")
        # the subsample is matched exactly, by the defaults (a schedule given for the whole clouds would not fit)
        options = replace(self.plan.options, polish=None, refine=None, schedule=None)
        plan = replace(options.plan(Aw.shape[1]), geometry=self.problem.geometry)

        generator = torch.Generator().manual_seed(self.seed)

        def solve(A: torch.Tensor, B: torch.Tensor) -> np.ndarray:
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
            return run(A, B, plan, self.comm, device=A.device, seed=seed, progress=False, t_start=t0).perm

        kept = select_kept(Aw, Bw, solve, generator)
        self.report.timings["select"] = time.perf_counter() - t0
        return kept

    def data_parallel(self, shard: Shard, ranks: list[int]) -> tuple[Blocks, int]:
        """The top levels, solved by all processes together until the co-clusters can be shared out.

        Returns the co-clusters and the number of levels done.
        """
        p, comm = self.problem, self.comm
        blocks = Blocks.whole(p.n, p.n_large, shard.X.device)

        def split(blocks: Blocks, rank: int) -> LevelSplit:
            return split_level_parallel(p.geometry, blocks, shard, rank, self.generator, self.plan.level, comm)

        done = 0
        while done < len(ranks) and not balanced(blocks, comm.world):
            blocks = self.levels(split, blocks, ranks[done : done + 1], first_level=done + 1)
            done += 1
        return blocks, done

    def levels(self, split: Split, blocks: Blocks, ranks: list[int], *, first_level: int) -> Blocks:
        """Split ``blocks`` level after level; returns the co-clusters after the last one."""
        report, dev = self.report, blocks.ix.device
        for level, rank in enumerate(ranks, start=first_level):
            report.adjust()
            t0, sent = time.perf_counter(), self.comm.sent
            report.bar.set_postfix_str(f"level {level}: {blocks.n_blocks} block(s) -> rank {rank}")
            side_a, side_b, lab_a, lab_b, caps_a, caps_b = split(blocks, rank)
            blocks = blocks.split(side_a, side_b, lab_a, lab_b, caps_a, caps_b)
            report.timings[f"level_{level}"] = time.perf_counter() - t0
            if self.world:
                report.communication[f"level_{level}"] = self.comm.sent - sent
            record_memory(report.memory, f"level_{level}", dev)
            report.bar.update()
        return blocks

    def leaves(self, own: Owned, leaves: Blocks) -> np.ndarray:
        """Exact assignment inside every final co-cluster: the partner in ``own.B`` of every point of ``own.A``."""
        report = self.report
        report.adjust()
        t0 = time.perf_counter()
        where = " on rank 0" if self.world else ""
        report.bar.set_postfix_str(f"leaves: {leaves.n_blocks} exact problem(s){where}")
        perm = solve_leaves(self.problem.geometry, own.A, own.B, leaves)
        report.timings["leaves"] = time.perf_counter() - t0
        record_memory(report.memory, "leaves", own.A.device)
        report.bar.update()
        return perm

    def level_costs(self, own: Owned, deep_a: torch.Tensor, deep_b: torch.Tensor, ranks: list[int]) -> list[float]:
        """Block-coupling cost of every level (summed over processes)."""
        labels_a, labels_b = LevelLabels(deep_a, ranks), LevelLabels(deep_b, ranks)
        geometry = self.problem.geometry
        if self.world:
            return geometry.level_costs(own.A, own.B, labels_a, labels_b, self.generator, reduce=self.comm)
        return geometry.level_costs(own.A, own.B, labels_a, labels_b, self.generator)

    def matched_cost(self, own: Owned, perm: np.ndarray) -> float:
        """Mean cost of the matched pairs, exactly in float64 (over all processes)."""
        geometry = self.problem.geometry
        if not self.world:
            cost = mean_paired_cost(geometry, own.A, own.B, perm)
        else:
            own_total = mean_paired_cost(geometry, own.A, own.B, perm) * own.A.shape[0] if own.A.shape[0] else 0.0
            cost = float(self.comm.sum(torch.tensor([own_total], dtype=torch.float64))) / self.problem.n
        if not math.isfinite(cost):
            msg = "the matching cost is not finite; check the scale of X and Y."
            raise FloatingPointError(msg)
        return cost

    def outcome(
        self, own: Owned, perm: np.ndarray, deep_a: torch.Tensor, deep_b: torch.Tensor, **result: object
    ) -> Outcome:
        """The run's result on this process; in a world of several, the whole matching gathered from all."""
        ranks = result["ranks"]
        report = self.report
        if not self.world:
            labels_a = LevelLabels(deep_a.cpu().numpy(), ranks)
            labels_b = LevelLabels(deep_b.cpu().numpy(), ranks)
            return Outcome(perm, labels_a, labels_b, timings=report.timings, memory=report.memory, **result)
        comm, n, n_large = self.comm, self.problem.n, self.problem.n_large
        t0, sent = time.perf_counter(), comm.sent
        perm_t = torch.as_tensor(perm, device=own.A.device)
        perm = comm.gather_values(own.ids_a, own.ids_b[perm_t], n).cpu().numpy()
        labels_a = LevelLabels(comm.gather_values(own.ids_a, deep_a, n).cpu().numpy(), ranks)
        labels_b = LevelLabels(comm.gather_values(own.ids_b, deep_b, n_large).cpu().numpy(), ranks)
        report.timings["gather"] = time.perf_counter() - t0
        report.communication["gather"] = comm.sent - sent
        result["refine_costs"] = []
        return Outcome(
            perm, labels_a, labels_b, timings=report.timings, memory=report.memory,
            communication=report.communication, world_size=comm.world, **result,
        )  # fmt: skip


def local_split(
    geometry: Cost, Aw: torch.Tensor, Bw: torch.Tensor, options: LevelOptions, generator: torch.Generator
) -> Split:
    """The level split of one process: every block's points are in ``Aw`` and ``Bw``."""

    def split(blocks: Blocks, rank: int) -> LevelSplit:
        side_a, side_b = blocks.padded()
        parts = []
        for lo, hi in _block_groups(side_b.mask.shape, Aw.device):
            pos_a, pos_b = side_a.pos[lo:hi], side_b.pos[lo:hi]
            stack = Stack(Aw[blocks.ix[pos_a]], Bw[blocks.iy[pos_b]], side_a.mask[lo:hi], side_b.mask[lo:hi])
            parts.append(split_level(geometry, stack, rank, generator, options, level_blocks=blocks.n_blocks))
        return side_a, side_b, *(torch.cat(part) for part in zip(*parts, strict=True))

    return split


def _block_groups(shape: tuple[int, int], device: torch.device) -> list[tuple[int, int]]:
    """Ranges of consecutive blocks of a padded level (B, W) solved together (see :data:`LEVEL_GROUP_CPU`)."""
    n_blocks, width = shape
    if device.type != "cpu":
        return [(0, n_blocks)]
    per = max(1, LEVEL_GROUP_CPU // max(1, width))
    return [(lo, min(lo + per, n_blocks)) for lo in range(0, n_blocks, per)]


def finish_matching(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, Aw: torch.Tensor | None, Bw: torch.Tensor | None,
    perm: np.ndarray, plan: Plan, generator: torch.Generator, timings: dict[str, float],
    say: Callable[[str], None] = lambda _: None,
) -> tuple[np.ndarray, list[float], float | None]:  # fmt: skip
    """Refinement by windows, then the exact finish on a candidate graph, as :meth:`Plan.finishing` decides.

    ``A``, ``B`` are the exact points, ``Aw``, ``Bw`` their working copies (where neighbours are
    sought; ``None``: ``A``, ``B``); returns the matching, the mean cost after every pass or solve,
    and a lower bound on the optimal mean cost (``None`` where none was computed). ``say`` is
    told each stage as it starts (the progress bar's text).
    """
    budget = BOUND_BUDGET_CUDA if A.device.type == "cuda" else BOUND_BUDGET_CPU
    if plan.options.polish:  # asked for: to the end, pricing over all pairs whatever the size
        budget = math.inf
    priced = transform_feasible(geometry, A.shape[1], A.shape[0], B.shape[0], budget, A.device)
    refine, polish = plan.finishing(B.shape[0], priced=priced)
    costs: list[float] = []
    if refine:
        say("windows of exact re-solves")
        t0 = time.perf_counter()
        perm, passes = refine_matching(
            geometry, A, B, perm, passes=plan.options.refine_passes, window=plan.refine_window,
            generator=generator, work_dtype=plan.work_dtype,
        )  # fmt: skip
        costs += passes
        timings["refine"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if polish:
        finish = exact_finish(
            geometry, A, B, perm, Aw=Aw, Bw=Bw, neighbours=plan.options.polish_neighbours, generator=generator,
            bound_budget=budget,
            work_budget=plan.finish_work_budget(B.shape[0]), say=say,
        )  # fmt: skip
        perm, bound = finish.perm, finish.lower_bound
        costs += finish.costs
        timings["polish"] = time.perf_counter() - t0
        timings.update({f"polish_{stage}": t for stage, t in finish.timings.items()})
    else:  # a bound at any size (planted pairs, 2 cores: about a third of the levels' time)
        say("bounding the optimum")
        bound = certify(geometry, A, B, perm, Aw=Aw, Bw=Bw, bound_budget=budget)
        if bound is not None:
            timings["bound"] = time.perf_counter() - t0
    return perm, costs, bound
