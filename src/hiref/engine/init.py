"""Starting points for the low-rank factors of a stack of blocks.

Mirror descent on the low-rank problem is non-convex, so where it starts matters.
:func:`joint_cloud` gives X and Y the same clusters, found on each block's joint cloud (its X
and Y points together): for rank 2 a soft cut across the first principal axis (or, for
restarts, a random direction), for higher ranks k-means++ seeds and a few Lloyd steps.
"""

from __future__ import annotations

import torch

from .costs import masked_mean


def _centred(Z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (Z - masked_mean(Z, mask)[:, None, :]) * mask[..., None].to(Z.dtype)


def _axis_scores(
    Z: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, *, principal: bool = True
) -> torch.Tensor:
    """Standardised coordinate of every row along the first principal axis (or a random one), (B, N, 2)."""
    Z = _centred(Z, mask)
    v = torch.randn(Z.shape[0], Z.shape[2], 1, generator=generator).to(Z)
    v = v / v.norm(dim=1, keepdim=True)
    for _ in range(30 if principal else 0):  # power iteration on Z^T Z without forming it (d may be large)
        v = Z.transpose(1, 2) @ (Z @ v)
        v = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny)
    proj = (Z @ v)[..., 0]
    std = ((proj * proj).sum(1) / mask.sum(1)).sqrt().clamp_min(torch.finfo(Z.dtype).tiny)
    proj = proj / std[:, None]
    return torch.stack([proj, -proj], -1) / 2


def _kmeans_scores(
    Z: torch.Tensor, mask: torch.Tensor, rank: int, generator: torch.Generator, n_lloyd: int = 5
) -> torch.Tensor:
    """``-|z - c_k|^2 / mean_sq_dist`` for k-means++ centres refined by Lloyd steps, (B, N, r)."""
    B, _, d = Z.shape
    w = mask.to(Z.dtype)
    zz = (Z * Z).sum(-1)

    def sq_dist(C: torch.Tensor) -> torch.Tensor:
        return (zz[..., None] + (C * C).sum(-1)[:, None, :] - 2 * Z @ C.transpose(1, 2)).clamp_min(0)

    def pick(weights: torch.Tensor) -> torch.Tensor:
        row = torch.multinomial(weights.cpu(), 1, generator=generator).to(Z.device)
        return torch.gather(Z, 1, row[..., None].expand(B, 1, d))

    centres = [pick(w)]
    d2 = sq_dist(centres[0])[..., 0] * w
    for _ in range(1, rank):
        centres.append(pick(d2 + 1e-30 * w))
        d2 = torch.minimum(d2, sq_dist(centres[-1])[..., 0] * w)
    C = torch.cat(centres, 1)
    for _ in range(n_lloyd):
        onehot = torch.nn.functional.one_hot(sq_dist(C).argmin(-1), rank).to(Z.dtype) * w[..., None]
        counts = onehot.sum(1)[..., None]
        C = torch.where(counts > 0, onehot.transpose(1, 2) @ Z / counts.clamp_min(1.0), C)
    D = sq_dist(C)
    scale = ((D.amin(-1) * w).sum(1) / w.sum(1)).clamp_min(torch.finfo(Z.dtype).tiny)
    return -D / scale[:, None, None]


def _cluster_scores(
    Z: torch.Tensor, mask: torch.Tensor, rank: int, generator: torch.Generator, *, principal: bool = True
) -> torch.Tensor:
    if rank == 2:
        return _axis_scores(Z, mask, generator, principal=principal)
    return _kmeans_scores(Z, mask, rank, generator)


def _masked_logits(scores: torch.Tensor, mask: torch.Tensor, sharpness: float) -> torch.Tensor:
    """(B, N, r) scores to cluster-major (B, r, N) logits, ``-inf`` on padding."""
    return torch.where(mask[:, None, :], sharpness * scores.transpose(1, 2), float("-inf"))


def joint_cloud(
    X: torch.Tensor,
    Y: torch.Tensor,
    mask: torch.Tensor,
    rank: int,
    generator: torch.Generator,
    *,
    sharpness: float = 1.0,
    principal: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start from clusters of each block's joint cloud.

    Parameters
    ----------
    X, Y
        Blocks, (B, W, d).
    mask
        Valid rows, (B, W).
    rank
        Number of clusters.
    generator
        Source of randomness (power-iteration start, k-means++ seeds).
    sharpness
        Scale of the returned logits.
    principal
        For rank 2, cut across the first principal axis; if False, across a random direction
        (used for restarts).

    Returns
    -------
    Unnormalised log-factors for X and Y, cluster-major (B, r, W), ``-inf`` on padding.
    """
    W = X.shape[1]
    mask2 = torch.cat([mask, mask], 1)
    scores = _cluster_scores(_centred(torch.cat([X, Y], 1), mask2), mask2, rank, generator, principal=principal)
    logits = _masked_logits(scores, mask2, sharpness)
    return logits[..., :W], logits[..., W:]


def sample_rows(mask: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
    """``m`` distinct valid rows of every block, drawn uniformly; (B, m). Blocks need >= m rows."""
    keys = torch.rand(mask.shape, generator=generator).to(mask.device)
    keys = torch.where(mask, keys, 2.0)
    return torch.topk(keys, m, dim=1, largest=False).indices
