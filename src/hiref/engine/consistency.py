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

from ._assign import assign_many
from .init import sample_rows


def broken_pairs(
    dense: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    X: torch.Tensor,
    Y: torch.Tensor,
    mask: torch.Tensor,
    labels_x: torch.Tensor,
    labels_y: torch.Tensor,
    n_candidates: int,
    generator: torch.Generator,
    *,
    n_eval: int = 512,
) -> torch.Tensor:
    """Fraction of exactly matched subsample pairs that each candidate split puts apart.

    Blocks come in groups of ``n_candidates`` consecutive copies (the candidates of one block);
    one subsample per block is matched exactly and shared by its candidates.

    Returns
    -------
    (B,) fractions, B counting every candidate.
    """
    B, _, d = X.shape
    blocks = B // n_candidates
    first = torch.arange(blocks, device=X.device) * n_candidates
    m = min(n_eval, int(mask.sum(1).min()))
    rows_x = sample_rows(mask[first], m, generator)
    rows_y = sample_rows(mask[first], m, generator)
    xs = torch.gather(X[first], 1, rows_x[..., None].expand(-1, -1, d))
    ys = torch.gather(Y[first], 1, rows_y[..., None].expand(-1, -1, d))
    costs = dense(xs.double(), ys.double()).cpu().numpy()
    cols = assign_many(costs)
    partner = torch.gather(rows_y, 1, torch.as_tensor(cols, device=X.device))
    rows_x = rows_x.repeat_interleave(n_candidates, 0)
    partner = partner.repeat_interleave(n_candidates, 0)
    lx = torch.gather(labels_x, 1, rows_x)
    ly = torch.gather(labels_y, 1, partner)
    return (lx != ly).double().mean(1).cpu()
