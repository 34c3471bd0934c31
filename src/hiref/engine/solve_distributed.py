"""Hierarchical Refinement over several processes: data-parallel top levels, then sharded co-clusters.

Every process holds a contiguous slice of the rows of both clouds. The run has two phases:

1. **Data parallel.** While the co-clusters cannot yet be shared out evenly among the
   processes, each level is solved by all of them together
   (:func:`~hiref.engine.level_parallel.split_level_parallel`): each keeps its own rows, and
   exchanges subsamples, (r, d + 2) moments and r scores per point. All processes hold the same
   block bookkeeping (one integer per point) and agree on every label.
2. **Sharded.** The co-clusters are assigned to processes, largest first to the least loaded
   (balanced by size), every point travels once to the process that owns its co-cluster
   (``all_to_all``), and each process runs the remaining levels, the exact leaves and the
   refinement on its own co-clusters, with no further exchange.

At the end the matching and the co-clusters of every level are gathered on every process into
the :class:`~hiref.engine.solve.Matching` a single process would return, with costs summed over
processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from ._labels import LevelLabels
from .blocks import Blocks
from .costs import Transposed
from .leaves import mean_paired_cost, solve_leaves
from .level_parallel import Shard, split_level_parallel
from .solve import (
    check_finite,
    finish,
    finish_matching,
    local_split,
    principal_axes,
    project,
    record_memory,
    run_levels,
)

if TYPE_CHECKING:
    from .blocks import Side
    from .costs import Cost
    from .distributed import Comm
    from .solve import Matching, Settings

#: The data-parallel phase ends once the most loaded process would get at most this many times
#: the mean load.
BALANCE = 1.25


def assign_blocks(loads: torch.Tensor, world: int) -> torch.Tensor:
    """Owner process of every block: largest first, each to the least loaded process so far.

    Ties go to the lower block index and the lower rank, so every process computes the same owners.
    """
    owner = torch.empty(loads.numel(), dtype=torch.long)
    total = [0] * world
    order = torch.sort(loads.cpu(), descending=True, stable=True).indices.tolist()
    values = loads.cpu().tolist()
    for b in order:
        k = min(range(world), key=lambda j: (total[j], j))
        owner[b] = k
        total[k] += values[b]
    return owner


def _balanced(blocks: Blocks, world: int) -> bool:
    loads = (blocks.sizes_x + blocks.sizes_y).cpu()
    owner = assign_blocks(loads, world)
    per_rank = torch.zeros(world, dtype=loads.dtype).index_add_(0, owner, loads)
    return bool(per_rank.max() <= BALANCE * loads.sum() / world)


def _move(
    comm: Comm, P: torch.Tensor, lo: int, labels: torch.Tensor, owner: torch.Tensor, position: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Send this process's rows to the owners of their co-clusters; returns rows and global ids.

    Received rows are ordered as in the single-process block order (``position``): grouped by
    co-cluster, in the owner's block order.
    """
    ids = torch.arange(lo, lo + P.shape[0], device=P.device)
    dest = owner.to(P.device)[labels[ids]]
    rows = comm.exchange(P, dest)
    got = comm.exchange(ids, dest)
    order = torch.sort(position[got]).indices
    return rows[order], got[order]


def _global_labels(local: torch.Tensor, owned: torch.Tensor, width: int) -> torch.Tensor:
    """Single-process numbering of co-clusters numbered ``0 ..`` on this process.

    Blocks split parent-major, so a local block ``p * width + c`` (``width`` descendants per
    owned parent) is child ``c`` of owned parent ``owned[p]``.
    """
    return owned.to(local.device)[local // width] * width + local % width


def _working(
    A: torch.Tensor, B: torch.Tensor, los: tuple[int, int], sizes: tuple[int, int], settings: Settings,
    comm: Comm, generator: torch.Generator,
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """How to make working copies: a projection on principal axes agreed by all processes, or a cast."""
    if not settings.sketched(A.shape[1]):
        return lambda P: P.to(settings.work_dtype)

    def take(side: int, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(A.device)
        return comm.fetch((A, B)[side], los[side], rows, torch.ones_like(rows, dtype=torch.bool))

    centre, basis = principal_axes(take, sizes, settings.sketch_dim, settings.work_dtype, generator)
    return lambda P: project(P, centre, basis)


def _data_parallel(
    geometry: Cost, shard: Shard, sizes: tuple[int, int], ranks: list[int], settings: Settings,
    generator: torch.Generator, comm: Comm, report: dict,
) -> tuple[Blocks, int]:  # fmt: skip
    """Phase 1: levels solved by all processes together, until the co-clusters can be shared out.

    Returns the co-clusters and the number of levels done.
    """
    blocks = Blocks.whole(*sizes, shard.X.device)

    def split(blocks: Blocks, rank: int) -> tuple[Side, Side, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return split_level_parallel(geometry, blocks, shard, rank, generator, settings.options, comm)

    done = 0
    while done < len(ranks) and not _balanced(blocks, comm.world):
        blocks = run_levels(split, blocks, ranks[done : done + 1], first_level=done + 1, **report)
        done += 1
    return blocks, done


def _own_blocks(
    blocks: Blocks, A: torch.Tensor, B: torch.Tensor, los: tuple[int, int], comm: Comm
) -> tuple[Blocks, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Phase 2 set-up: share the co-clusters out and move every point to its co-cluster's owner.

    Returns this process's co-clusters (as :class:`Blocks` over the received points), the
    received points of each side with their global indices, and the global numbers of the
    owned co-clusters.
    """
    owner = assign_blocks((blocks.sizes_x + blocks.sizes_y).cpu(), comm.world)
    owned = torch.nonzero(owner == comm.rank).flatten()
    top_a, top_b = blocks.labels()
    moved = []
    for P, lo, top, index in ((A, los[0], top_a, blocks.ix), (B, los[1], top_b, blocks.iy)):
        position = torch.empty_like(index).scatter_(0, index, torch.arange(index.numel(), device=index.device))
        moved.append(_move(comm, P, lo, top, owner, position))
    (A_own, ids_a), (B_own, ids_b) = moved
    owned_dev = owned.to(A.device)
    local = Blocks(
        torch.arange(A_own.shape[0], device=A.device),
        torch.arange(B_own.shape[0], device=A.device),
        blocks.sizes_x[owned_dev],
        blocks.sizes_y[owned_dev],
    )
    return local, A_own, B_own, ids_a, ids_b, owned


def solve_sharded(
    X_in: torch.Tensor,
    Y_in: torch.Tensor,
    comm: Comm,
    settings: Settings,
    *,
    device: torch.device,
    seed: int,
    t_start: float,
) -> Matching:
    """:func:`hiref.solve` over the processes of ``comm``; ``X_in``, ``Y_in`` are this process's rows."""
    geometry = settings.geometry
    generator = torch.Generator(device="cpu").manual_seed(seed)
    communication: dict[str, int] = {}
    timings: dict[str, float] = {}
    memory: dict[str, int] = {}
    dims = comm.sizes(X_in.shape[1]) + comm.sizes(Y_in.shape[1])
    if len(set(dims)) != 1:
        msg = f"every process must pass X and Y with the same number of features, got {dims}."
        raise ValueError(msg)
    sizes_x, sizes_y = comm.sizes(X_in.shape[0]), comm.sizes(Y_in.shape[0])
    swapped = sum(sizes_x) > sum(sizes_y)
    small, large = (Y_in, X_in) if swapped else (X_in, Y_in)
    sizes_a, sizes_b = (sizes_y, sizes_x) if swapped else (sizes_x, sizes_y)
    geometry_ab = Transposed(geometry) if swapped and not geometry.symmetric else geometry
    n, n_large = sum(sizes_a), sum(sizes_b)
    los = (sum(sizes_a[: comm.rank]), sum(sizes_b[: comm.rank]))
    A, B = small.to(device), large.to(device)
    ranks = settings.ranks(n_large)
    communication["setup"] = comm.sent

    t0, sent = time.perf_counter(), comm.sent
    working = _working(A, B, los, (n, n_large), settings, comm, generator)
    if settings.sketched(A.shape[1]):
        timings["sketch"] = time.perf_counter() - t0
        communication["sketch"] = comm.sent - sent
    bar = tqdm(
        total=len(ranks) + 1, desc=f"hiref ({comm.world} processes)", unit="level",
        disable=not settings.progress or comm.rank != 0, leave=False,
    )  # fmt: skip
    report = {"timings": timings, "memory": memory, "bar": bar}
    blocks, n_parallel = _data_parallel(
        geometry_ab, Shard(working(A), working(B), *los), (n, n_large), ranks, settings, generator, comm,
        {**report, "comm": comm, "communication": communication},
    )  # fmt: skip

    t0, sent = time.perf_counter(), comm.sent
    local, A_own, B_own, ids_a, ids_b, owned = _own_blocks(blocks, A, B, los, comm)
    del A, B, blocks
    timings["shard"] = time.perf_counter() - t0
    communication["shard"] = comm.sent - sent

    # Phase 2: the remaining levels, the leaves and the refinement of this process's co-clusters.
    leaves = local
    if owned.numel():
        Aw, Bw = working(A_own), working(B_own)
        split = local_split(geometry_ab, Aw, Bw, settings.options, generator)
        leaves = run_levels(split, local, ranks[n_parallel:], first_level=n_parallel + 1, **report)
        del Aw, Bw, split
    t0 = time.perf_counter()
    bar.set_postfix_str(f"leaves: {leaves.n_blocks} exact problem(s) on rank 0")
    perm = torch.as_tensor(solve_leaves(geometry_ab, A_own, B_own, leaves), device=device)
    timings["leaves"] = time.perf_counter() - t0
    record_memory(memory, "leaves", device)
    bar.update()
    bar.close()
    if A_own.shape[0]:
        # Every process finishes its own co-clusters (windows and polish stay inside them).
        perm, _ = finish_matching(
            geometry_ab, A_own, B_own, None, None, perm.cpu().numpy(), settings, generator, timings
        )
        perm = torch.as_tensor(perm, device=device)

    # Gather the matching and the deepest co-clusters, in single-process numbering (every
    # coarser level follows by integer division: see LevelLabels); sum the costs.
    t0, sent = time.perf_counter(), comm.sent
    width = int(np.prod(ranks[n_parallel:], dtype=np.int64))
    deep_a, deep_b = (_global_labels(lab, owned, width) for lab in leaves.labels())
    del leaves
    level_costs = geometry_ab.level_costs(
        A_own, B_own, LevelLabels(deep_a, ranks), LevelLabels(deep_b, ranks), generator, reduce=comm
    )
    own_total = mean_paired_cost(geometry_ab, A_own, B_own, perm) * A_own.shape[0] if A_own.shape[0] else 0.0
    matched = float(comm.sum(torch.tensor([own_total], dtype=torch.float64))) / n
    level_costs.append(matched)
    check_finite(matched)
    perm_all = comm.gather_values(ids_a, ids_b[perm], n).cpu().numpy()
    labels_a = LevelLabels(comm.gather_values(ids_a, deep_a, n).cpu().numpy(), ranks)
    labels_b = LevelLabels(comm.gather_values(ids_b, deep_b, n_large).cpu().numpy(), ranks)
    timings["gather"] = time.perf_counter() - t0
    communication["gather"] = comm.sent - sent
    return finish(
        perm_all, labels_a, labels_b, kept=None, swapped=swapped, n_large=n_large, cost=matched, ranks=ranks,
        level_costs=level_costs, timings=timings, memory=memory, geometry=geometry,
        dropped=np.empty(0, dtype=np.int64), refine_costs=[], n_y=sum(sizes_y), t_start=t_start,
        communication=communication, world_size=comm.world,
    )  # fmt: skip
