"""One level of Hierarchical Refinement: split every co-cluster of the level into ``r`` children.

All blocks of a level are solved together as stacked tensors. For each block:

1. Candidates: mirror descent on the low-rank problem (:mod:`.lowrank`) from ``n_starts``
   starts (:mod:`.init`: the joint principal axis, then random directions), all stacked in one
   batch; with several starts, also ``n_raw`` straight cuts along random directions.
2. Hard, exactly balanced splits of every candidate (:mod:`.split`).
3. With several candidates, the one that separates the fewest exactly matched pairs of a
   random subsample (:mod:`.consistency`) is kept.

Levels with more than ``restart_blocks`` blocks get a single start: their blocks are small and
many, so a wrong cut costs little there and the search would cost a lot.

Blocks larger than ``coarse_size`` are first solved on a uniform subsample of that size; the
winner's co-clusters then seed the whole block through the low-rank gradient they induce (the
cost of every point to every co-cluster of the other side), and a few mirror-descent steps on
the whole block finish the split. The work of a level is thus ``O(coarse_size)`` for the
search and ``O(n)`` for a short polish, however large the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import init as _init
from .blocks import child_capacities
from .consistency import broken_pairs
from .lowrank import mirror_descent
from .split import balanced_split

if TYPE_CHECKING:
    from .costs import SqEuclidean


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


def _log_g(caps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.log(caps.to(dtype) / caps.sum(1, keepdim=True).to(dtype))


def _candidates(
    geometry: SqEuclidean,
    X: torch.Tensor,
    Y: torch.Tensor,
    mask: torch.Tensor,
    caps: torch.Tensor,
    generator: torch.Generator,
    opts: LevelOptions,
    n_starts: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of ``n_starts`` mirror-descent runs per block; returns hard labels (B, W) for X and Y."""
    B = X.shape[0]
    rank = caps.shape[1]
    rep = (lambda t: t.repeat_interleave(n_starts, 0)) if n_starts > 1 else (lambda t: t)
    Xk, Yk, mk, ck = rep(X), rep(Y), rep(mask), rep(caps)
    log_g = _log_g(ck, X.dtype)
    starts = [_init.joint_cloud(X, Y, mask, rank, generator, principal=k == 0) for k in range(n_starts)]
    log_q = torch.stack([q for q, _ in starts], 1).flatten(0, 1)
    log_r = torch.stack([r for _, r in starts], 1).flatten(0, 1)
    op = geometry.block_operator(Xk, Yk, mk)
    log_q, log_r = mirror_descent(op, mk, log_g, log_q, log_r, n_iter=opts.n_iter, step=opts.step, n_inner=opts.n_inner)
    lab_x = balanced_split(log_q, mk, ck)
    lab_y = balanced_split(log_r, mk, ck)
    if n_starts == 1:
        return lab_x, lab_y
    if opts.n_raw:
        # Straight cuts along random directions, without mirror descent: on symmetric data the
        # consistent cut is often not a local optimum of the low-rank objective.
        raw = [_init.joint_cloud(X, Y, mask, rank, generator, principal=False) for _ in range(opts.n_raw)]
        rep_raw = lambda t: t.repeat_interleave(opts.n_raw, 0)  # noqa: E731
        m_raw, c_raw = rep_raw(mask), rep_raw(caps)
        raw_x = balanced_split(torch.stack([q for q, _ in raw], 1).flatten(0, 1), m_raw, c_raw)
        raw_y = balanced_split(torch.stack([r for _, r in raw], 1).flatten(0, 1), m_raw, c_raw)
        total = n_starts + opts.n_raw
        lab_x = torch.cat([lab_x.reshape(B, n_starts, -1), raw_x.reshape(B, opts.n_raw, -1)], 1).flatten(0, 1)
        lab_y = torch.cat([lab_y.reshape(B, n_starts, -1), raw_y.reshape(B, opts.n_raw, -1)], 1).flatten(0, 1)
        Xk, Yk, mk = X.repeat_interleave(total, 0), Y.repeat_interleave(total, 0), mask.repeat_interleave(total, 0)
        n_starts = total
    broken = broken_pairs(geometry.dense, Xk, Yk, mk, lab_x, lab_y, n_starts, generator, n_eval=opts.n_eval)
    best = broken.reshape(B, n_starts).argmin(1).to(lab_x.device)
    best = best + torch.arange(B, device=lab_x.device) * n_starts
    return lab_x[best], lab_y[best]


def _one_hot_factor(
    labels: torch.Tensor, rows: torch.Tensor, width: int, rank: int, dtype: torch.dtype
) -> torch.Tensor:
    """Uniform factor of hard clusters of sampled rows, scattered into (B, rank, width)."""
    B, m = labels.shape
    onehot = torch.nn.functional.one_hot(labels, rank).transpose(1, 2).to(dtype) / m
    out = torch.zeros(B, rank, width, dtype=onehot.dtype, device=labels.device)
    return out.scatter_(2, rows[:, None, :].expand(B, rank, m), onehot)


def split_level(
    geometry: SqEuclidean,
    X: torch.Tensor,
    Y: torch.Tensor,
    mask: torch.Tensor,
    sizes: torch.Tensor,
    rank: int,
    generator: torch.Generator,
    opts: LevelOptions,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split every block of a level into ``rank`` co-clusters of exactly balanced sizes.

    Parameters
    ----------
    geometry
        Cost geometry.
    X, Y
        Blocks, (B, W, d), padded.
    mask
        Valid rows, (B, W).
    sizes
        Block sizes, (B,).
    rank
        Children per block.
    generator
        Source of randomness.
    opts
        Solver settings.

    Returns
    -------
    Child labels of X and Y, (B, W), and the child sizes, (B, rank).
    """
    B, W, d = X.shape
    caps = child_capacities(sizes, rank)
    n_starts = opts.n_starts if opts.restart_blocks >= B else 1
    if opts.coarse_size >= W:
        lab_x, lab_y = _candidates(geometry, X, Y, mask, caps, generator, opts, n_starts)
        return lab_x, lab_y, caps

    m = opts.coarse_size
    rows_x = _init.sample_rows(mask, m, generator)
    rows_y = _init.sample_rows(mask, m, generator)
    xs = torch.gather(X, 1, rows_x[..., None].expand(B, m, d))
    ys = torch.gather(Y, 1, rows_y[..., None].expand(B, m, d))
    full = torch.ones(B, m, dtype=torch.bool, device=X.device)
    sub_caps = child_capacities(torch.full((B,), m, device=X.device), rank)
    sub_x, sub_y = _candidates(geometry, xs, ys, full, sub_caps, generator, opts, n_starts)

    # Seed the whole block with the gradient of the low-rank cost at the coarse solution: the
    # mean cost of every point to each co-cluster of the other side.
    op = geometry.block_operator(X, Y, mask)
    log_g = _log_g(caps, X.dtype)
    inv_g = torch.exp(-log_g)[..., None]
    grad_q = op.apply(_one_hot_factor(sub_y, rows_y, W, rank, X.dtype)) * inv_g
    grad_r = op.apply_t(_one_hot_factor(sub_x, rows_x, W, rank, X.dtype)) * inv_g
    seeds = []
    for grad in (grad_q, grad_r):
        grad = (grad - grad.mean(1, keepdim=True)) * mask[:, None, :]
        spread = grad.abs().flatten(1).amax(1).clamp_min(torch.finfo(X.dtype).tiny)
        seeds.append(torch.where(mask[:, None, :], -4.0 * grad / spread[:, None, None], float("-inf")))
    log_q, log_r = mirror_descent(
        op, mask, log_g, seeds[0], seeds[1], n_iter=opts.n_iter_fine, step=opts.step, n_inner=opts.n_inner
    )
    return balanced_split(log_q, mask, caps), balanced_split(log_r, mask, caps), caps
