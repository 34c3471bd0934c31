"""A level split with the points of every block spread over processes (data parallel).

Used for the top levels of a distributed run, where blocks hold points of every process. Each
process keeps its own rows of X and Y; all processes hold the same block bookkeeping (one
integer per point) and the same random generator, so every random choice agrees. Per block:

1. The coarse search (:func:`~hiref.engine.split.level.split_level` logic) runs on the same uniform
   subsample of at most ``coarse_size`` points on every process: the sampled rows are
   assembled by one all-reduce of ``coarse_size * d`` numbers, then every process solves the
   identical small problem. Blocks no larger than ``coarse_size`` are assembled whole.
2. The descent on the whole block (:func:`~hiref.engine.split.level.descend_whole`) is mirror
   descent on each process's own rows; the squared
   Euclidean factorization needs only sums of (r, d + 2) moments per product, plus a few
   scalars per projection (:class:`~hiref.engine.split.lowrank.Reducer`).
3. The scores (r numbers per point) are collected on every process, which all run the same
   exactly balanced split, so the labels agree without another exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hiref.engine.blocks import Blocks, LevelSplit, child_capacities
from hiref.engine.split.balance import balanced_split
from hiref.engine.split.level import (
    LevelOptions,
    Stack,
    candidates,
    coarse_rows,
    descend_whole,
    one_hot_factor,
    split_level,
)

if TYPE_CHECKING:
    from hiref.engine.distributed.comm import Comm
    from hiref.engine.geometry.costs import Cost


@dataclass
class Shard:
    """The rows of both clouds held by one process: rows ``lo_x ...`` of X and ``lo_y ...`` of Y."""

    X: torch.Tensor
    Y: torch.Tensor
    lo_x: int
    lo_y: int


def _local_columns(
    ids: torch.Tensor, mask: torch.Tensor, lo: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where this process's points sit in a padded level: columns, local rows and validity (B, w)."""
    mine = mask & (ids >= lo) & (ids < lo + count)
    width = max(1, int(mine.sum(1).max()))
    cols = torch.sort((~mine).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    valid = torch.gather(mine, 1, cols)
    rows = torch.where(valid, torch.gather(ids, 1, cols) - lo, 0)
    return cols, rows, valid


def _collect(scores: torch.Tensor, cols: torch.Tensor, valid: torch.Tensor, width: int, comm: Comm) -> torch.Tensor:
    """Every process's scores (B, r, w) placed at their columns of the padded level, (B, r, width)."""
    B, r, _ = scores.shape
    out = torch.zeros(B, r, width, dtype=scores.dtype, device=scores.device)
    out.scatter_(2, cols[:, None, :].expand(B, r, -1), torch.where(valid[:, None, :], scores, 0.0))
    return comm.sum(out)


def split_level_parallel(
    geometry: Cost,
    blocks: Blocks,
    shard: Shard,
    rank: int,
    generator: torch.Generator,
    opts: LevelOptions,
    comm: Comm,
) -> LevelSplit:
    """Split every block of a level into ``rank`` co-clusters, the points being spread over processes.

    Parameters
    ----------
    geometry
        Cost geometry; the whole-block descent needs :class:`~hiref.engine.geometry.costs.SqEuclidean`.
    blocks
        The level's co-clusters, in global indices, the same on every process.
    shard
        This process's rows, in the working precision.
    rank
        Children per block.
    generator
        Source of randomness, in the same state on every process.
    opts
        Solver settings.
    comm
        The process group.

    Returns
    -------
    The padded sides of ``blocks``, then, as :func:`~hiref.engine.split.level.split_level`, the
    child labels (B, Wx), (B, Wy) and child sizes (B, rank) of X and Y; identical on every
    process.
    """
    side_x, side_y = blocks.padded()
    ids_x, ids_y = blocks.ix[side_x.pos], blocks.iy[side_y.pos]
    mx, my = side_x.mask, side_y.mask

    def fetch_x(ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return comm.fetch(shard.X, shard.lo_x, ids, valid)

    def fetch_y(ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return comm.fetch(shard.Y, shard.lo_y, ids, valid)

    if my.shape[1] <= opts.coarse_size:
        whole = Stack(fetch_x(ids_x, mx), fetch_y(ids_y, my), mx, my)
        return side_x, side_y, *split_level(geometry, whole, rank, generator, opts)

    caps_y = child_capacities(my.sum(1), rank)
    n_starts = opts.n_starts if blocks.n_blocks <= opts.restart_blocks else 1
    (rows_x, valid_x), (rows_y, valid_y) = coarse_rows(mx, my, opts.coarse_size, generator)
    sub = Stack(fetch_x(ids_x.gather(1, rows_x), valid_x), fetch_y(ids_y.gather(1, rows_y), valid_y), valid_x, valid_y)
    sub_x, sub_y = candidates(geometry, sub, child_capacities(valid_y.sum(1), rank), generator, opts, n_starts)

    cols_x, local_x, own_x = _local_columns(ids_x, mx, shard.lo_x, shard.X.shape[0])
    cols_y, local_y, own_y = _local_columns(ids_y, my, shard.lo_y, shard.Y.shape[0])
    op = geometry.block_operator(shard.X[local_x], shard.Y[local_y], own_x, own_y, generator, reduce=comm)
    dtype = shard.X.dtype

    def factor(labels: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor, cols: torch.Tensor, width: int):
        full = one_hot_factor(labels, rows, valid, width, rank, dtype)
        return full.gather(2, cols[:, None, :].expand(-1, rank, -1))

    log_q, log_r = descend_whole(
        op, own_x, own_y, caps_y,
        factor(sub_x, rows_x, valid_x, cols_x, mx.shape[1]), factor(sub_y, rows_y, valid_y, cols_y, my.shape[1]),
        opts, reduce=comm,
    )  # fmt: skip
    lab_x = balanced_split(_collect(log_q[:, 0], cols_x, own_x, mx.shape[1], comm), mx, caps_y)
    lab_y = balanced_split(_collect(log_r[:, 0], cols_y, own_y, my.shape[1], comm), my, caps_y)
    caps_x = torch.nn.functional.one_hot(torch.where(mx, lab_x, rank), rank + 1)[..., :rank].sum(1)
    return side_x, side_y, lab_x, lab_y, caps_x, caps_y
