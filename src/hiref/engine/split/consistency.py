"""Which candidate split keeps Monge pairs together, judged by exact OT on a subsample.

A split of a block into co-clusters forbids every match across them, so the final matching can
only be optimal if the split keeps every Monge pair ``(x, T(x))`` in one co-cluster (Prop. 3.1
of the paper). We match a random subsample of the block exactly and count the matched pairs a
candidate puts apart. Unlike the low-rank objective, which rewards compact clusters, this
measures what HiRef needs, and the two disagree on symmetric data: the most compact balanced cut
of a checkerboard cuts across the transport, while a diagonal one follows it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hiref.engine.finish.auction import assign_stack
from hiref.engine.split.starts import sample_rows


def broken_pairs(
    dense: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    X: torch.Tensor,
    Y: torch.Tensor,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    labels_x: torch.Tensor,
    labels_y: torch.Tensor,
    generator: torch.Generator,
    *,
    n_eval: int = 384,
) -> torch.Tensor:
    """Fraction of exactly matched subsample pairs that each candidate split puts apart.

    Parameters
    ----------
    dense
        Exact cost matrices of blocks, ``(B, s, d), (B, t, d) -> (B, s, t)``.
    X, Y
        Blocks, (B, Wx, d) and (B, Wy, d).
    mask_x, mask_y
        Valid rows, (B, Wx) and (B, Wy).
    labels_x, labels_y
        Candidate splits, (B, K, Wx) and (B, K, Wy): K candidates per block.
    generator
        Source of the subsamples.
    n_eval
        Subsample size on the Y side (the X side keeps the block's X-to-Y ratio).

    Returns
    -------
    (B, K) fractions of broken pairs.
    """
    d = X.shape[2]
    size_x, size_y = mask_x.sum(1), mask_y.sum(1)
    # Equal subsample sizes across blocks (one stacked assignment problem); the X side keeps the
    # smallest X-to-Y ratio of the stack, so that no sampled X point lacks a real partner.
    m_y = min(n_eval, int(size_y.min()))
    has_x = size_x > 0
    if not bool(has_x.any()):
        return torch.zeros(labels_x.shape[:2], dtype=torch.float64, device=X.device)
    ratio = float((size_x[has_x] / size_y[has_x]).min())
    m_x = max(1, min(m_y, int(m_y * ratio)))
    rows_x, valid_x = sample_rows(mask_x, m_x, generator)
    rows_y, _ = sample_rows(mask_y, m_y, generator)
    xs = torch.gather(X, 1, rows_x[..., None].expand(-1, -1, d))
    ys = torch.gather(Y, 1, rows_y[..., None].expand(-1, -1, d))
    cols = assign_stack(dense(xs.double(), ys.double()))
    partner = torch.gather(rows_y, 1, cols)
    K = labels_x.shape[1]
    lx = torch.gather(labels_x, 2, rows_x[:, None, :].expand(-1, K, -1))
    ly = torch.gather(labels_y, 2, partner[:, None, :].expand(-1, K, -1))
    broken = ((lx != ly) & valid_x[:, None, :]).double().sum(2)
    return broken / valid_x.sum(1, keepdim=True).clamp_min(1)
