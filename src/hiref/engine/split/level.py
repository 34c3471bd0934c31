"""One level of Hierarchical Refinement: split every co-cluster of the level into ``r`` children.

All blocks of a level are solved together as stacked tensors (on the CPU, in groups of
consecutive blocks: :data:`hiref.engine.driver.LEVEL_GROUP_CPU`). For each block:

1. Candidates: mirror descent on the low-rank problem (:mod:`.lowrank`) from ``n_starts``
   starts (:mod:`.starts`: the joint principal axis, then random directions), all stacked in one
   batch; with several starts, also ``n_raw`` straight cuts along random directions.
2. Hard splits of every candidate (:mod:`.balance`): the Y side into children of exactly
   ``floor``/``ceil`` of its size over ``r``; the X side into the same sizes for a one-to-one
   matching, or at most those sizes when the block has fewer X than Y points.
3. With several candidates, the one that separates the fewest exactly matched pairs of a
   random subsample (:mod:`.consistency`) is kept.

Levels with more than ``restart_blocks`` blocks get a single start: their blocks are small and
many, so a wrong cut costs little there and the search would cost a lot.

Blocks larger than ``coarse_size`` are first solved on a uniform subsample of that size; the
winner's co-clusters then seed the whole block through the low-rank gradient they induce (the
cost of every point to every co-cluster of the other side), and a few mirror-descent steps on
the whole block finish the split. The work of a level is thus ``O(coarse_size)`` for the
search and ``O(n)`` for a short descent on the whole block, however large the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hiref.engine.blocks import child_capacities
from hiref.engine.reducer import LOCAL, Reducer
from hiref.engine.split import starts
from hiref.engine.split.balance import balanced_split
from hiref.engine.split.consistency import broken_pairs
from hiref.engine.split.lowrank import BlockOperator, mirror_descent

if TYPE_CHECKING:
    from hiref.engine.geometry.costs import Cost


@dataclass(frozen=True)
class LevelOptions:
    """Settings of the level solver (see :func:`hiref.solve` for their meaning)."""

    n_iter: int = 60
    step: float = 1.0
    n_inner: int = 5
    n_starts: int = 16
    restart_blocks: int = 4
    n_eval: int = 384
    n_raw: int = 16
    coarse_size: int = 8192
    n_iter_fine: int = 20


@dataclass
class Stack:
    """A stack of blocks: points (B, W, d) and valid rows (B, W) on each side."""

    X: torch.Tensor
    Y: torch.Tensor
    mask_x: torch.Tensor
    mask_y: torch.Tensor


def _log_g(caps_y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.log(caps_y.to(dtype) / caps_y.sum(1, keepdim=True).to(dtype).clamp_min(1))


def _split(
    log_q: torch.Tensor, log_r: torch.Tensor, s: Stack, caps_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard splits of K candidates per block: (B, K, r, W) scores -> (B, K, W) labels."""
    B, K = log_q.shape[:2]

    def one_side(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rep = lambda t: t.repeat_interleave(K, 0)  # noqa: E731
        return balanced_split(scores.flatten(0, 1), rep(mask), rep(caps_y)).unflatten(0, (B, K))

    return one_side(log_q, s.mask_x), one_side(log_r, s.mask_y)


def _starts(
    s: Stack, rank: int, generator: torch.Generator, count: int, *, principal_first: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` starting log-factors per block, (B, count, r, W) for each side."""
    return starts.joint_cloud(s.X, s.Y, s.mask_x, s.mask_y, rank, generator, count=count, principal=principal_first)


def candidates(
    geometry: Cost, s: Stack, caps_y: torch.Tensor, generator: torch.Generator, opts: LevelOptions, n_starts: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of several candidate splits per block; returns hard labels (B, Wx), (B, Wy)."""
    B = s.X.shape[0]
    rank = caps_y.shape[1]
    log_q, log_r = _starts(s, rank, generator, n_starts, principal_first=True)
    op = geometry.block_operator(s.X, s.Y, s.mask_x, s.mask_y, generator)
    log_q, log_r = mirror_descent(
        op, s.mask_x, s.mask_y, _log_g(caps_y, s.X.dtype), log_q, log_r,
        n_iter=opts.n_iter, step=opts.step, n_inner=opts.n_inner,
    )  # fmt: skip
    lab_x, lab_y = _split(log_q, log_r, s, caps_y)
    if n_starts == 1:
        return lab_x[:, 0], lab_y[:, 0]
    if opts.n_raw:
        # Straight cuts along random directions, without mirror descent: on symmetric data the
        # consistent cut is often not a local optimum of the low-rank objective.
        raw_x, raw_y = _split(*_starts(s, rank, generator, opts.n_raw, principal_first=False), s, caps_y)
        lab_x, lab_y = torch.cat([lab_x, raw_x], 1), torch.cat([lab_y, raw_y], 1)
    broken = broken_pairs(geometry.dense, s.X, s.Y, s.mask_x, s.mask_y, lab_x, lab_y, generator, n_eval=opts.n_eval)
    best = broken.argmin(1).to(lab_x.device)
    batch = torch.arange(B, device=lab_x.device)
    return lab_x[batch, best], lab_y[batch, best]


def one_hot_factor(
    labels: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor, width: int, rank: int, dtype: torch.dtype
) -> torch.Tensor:
    """Uniform factor of hard clusters of sampled rows, scattered into (B, rank, width)."""
    B, m = labels.shape
    weight = valid.to(dtype) / valid.sum(1, keepdim=True).clamp_min(1).to(dtype)
    onehot = torch.nn.functional.one_hot(labels, rank).transpose(1, 2).to(dtype) * weight[:, None, :]
    out = torch.zeros(B, rank, width, dtype=dtype, device=labels.device)
    return out.scatter_(2, rows[:, None, :].expand(B, rank, m), onehot)


def coarse_rows(
    mask_x: torch.Tensor, mask_y: torch.Tensor, coarse_size: int, generator: torch.Generator
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Uniform subsamples of at most ``coarse_size`` Y points per block, and as many X in proportion.

    Returns ``(rows, valid)`` for X and for Y, as :func:`~hiref.engine.split.starts.sample_rows`.
    """
    size_x, size_y = mask_x.sum(1), mask_y.sum(1)
    take_y = torch.clamp(size_y, max=coarse_size)
    take_x = torch.div(size_x * take_y, size_y.clamp_min(1), rounding_mode="floor")  # same ratio
    return starts.sample_rows(mask_x, take_x, generator), starts.sample_rows(mask_y, take_y, generator)


def _seed_from_coarse(
    geometry: Cost,
    s: Stack,
    caps_y: torch.Tensor,
    generator: torch.Generator,
    opts: LevelOptions,
    n_starts: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve a subsample of every block, then turn its co-clusters into logits for the whole block."""
    _, Wx, d = s.X.shape
    Wy = s.Y.shape[1]
    rank = caps_y.shape[1]
    (rows_x, valid_x), (rows_y, valid_y) = coarse_rows(s.mask_x, s.mask_y, opts.coarse_size, generator)
    sub = Stack(
        torch.gather(s.X, 1, rows_x[..., None].expand(-1, -1, d)),
        torch.gather(s.Y, 1, rows_y[..., None].expand(-1, -1, d)),
        valid_x,
        valid_y,
    )
    sub_x, sub_y = candidates(geometry, sub, child_capacities(valid_y.sum(1), rank), generator, opts, n_starts)

    op = geometry.block_operator(s.X, s.Y, s.mask_x, s.mask_y, generator)
    factor_y = one_hot_factor(sub_y, rows_y, valid_y, Wy, rank, s.X.dtype)
    factor_x = one_hot_factor(sub_x, rows_x, valid_x, Wx, rank, s.X.dtype)
    log_q, log_r = descend_whole(op, s.mask_x, s.mask_y, caps_y, factor_x, factor_y, opts)
    lab_x, lab_y = _split(log_q, log_r, s, caps_y)
    return lab_x[:, 0], lab_y[:, 0]


def descend_whole(
    op: BlockOperator,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    caps_y: torch.Tensor,
    factor_x: torch.Tensor,
    factor_y: torch.Tensor,
    opts: LevelOptions,
    reduce: Reducer = LOCAL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Short mirror descent on whole blocks, seeded by the co-clusters of a coarse split.

    ``factor_x`` (B, r, Wx) and ``factor_y`` (B, r, Wy) are the coarse co-clusters as uniform
    factors over their sampled points; the seed is the gradient of the low-rank cost they
    induce (the mean cost of every point to each co-cluster of the other side). Returns
    log-factors (B, 1, r, W).
    """
    dtype = factor_x.dtype
    inv_g = torch.exp(-_log_g(caps_y, dtype))[..., None]
    grad_q = op.apply(factor_y) * inv_g
    grad_r = op.apply_t(factor_x) * inv_g
    seeds = []
    for grad, mask in ((grad_q, mask_x), (grad_r, mask_y)):
        grad = (grad - grad.mean(1, keepdim=True)) * mask[:, None, :]
        spread = reduce.max(grad.abs().flatten(1).amax(1)).clamp_min(torch.finfo(dtype).tiny)
        seeds.append(torch.where(mask[:, None, :], -4.0 * grad / spread[:, None, None], float("-inf"))[:, None])
    return mirror_descent(
        op, mask_x, mask_y, _log_g(caps_y, dtype), seeds[0], seeds[1],
        n_iter=opts.n_iter_fine, step=opts.step, n_inner=opts.n_inner, reduce=reduce,
    )  # fmt: skip


def split_level(
    geometry: Cost,
    stack: Stack,
    rank: int,
    generator: torch.Generator,
    opts: LevelOptions,
    *,
    level_blocks: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split every block of a level (or of a group of its blocks) into ``rank`` co-clusters.

    Parameters
    ----------
    geometry
        Cost geometry.
    stack
        The level's blocks, padded; no block has more X than Y points.
    rank
        Children per block.
    generator
        Source of randomness.
    opts
        Solver settings.
    level_blocks
        Blocks in the whole level, when ``stack`` holds a group of them (default: the stack's);
        a level of more than ``opts.restart_blocks`` blocks gets a single start.

    Returns
    -------
    Child labels of X (B, Wx) and Y (B, Wy), and the child sizes on each side, (B, rank).
    """
    caps_y = child_capacities(stack.mask_y.sum(1), rank)
    n_blocks = stack.X.shape[0] if level_blocks is None else level_blocks
    n_starts = opts.n_starts if n_blocks <= opts.restart_blocks else 1
    if stack.Y.shape[1] <= opts.coarse_size:
        lab_x, lab_y = candidates(geometry, stack, caps_y, generator, opts, n_starts)
    else:
        lab_x, lab_y = _seed_from_coarse(geometry, stack, caps_y, generator, opts, n_starts)
    caps_x = torch.nn.functional.one_hot(torch.where(stack.mask_x, lab_x, rank), rank + 1)[..., :rank].sum(1)
    return lab_x, lab_y, caps_x, caps_y
