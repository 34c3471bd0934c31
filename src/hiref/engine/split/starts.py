"""Starting points for the low-rank factors of a stack of blocks.

Mirror descent on the low-rank problem is non-convex, so where it starts matters.
:func:`joint_cloud` gives X and Y the same clusters, found on each block's joint cloud (its X
and Y points together): for rank 2 a soft cut across the first principal axis (or, for
restarts, a random direction), for higher ranks k-means++ seeds and a few Lloyd steps.
"""

from __future__ import annotations

import torch

from hiref.engine.geometry.costs import masked_mean

#: Most dimensions for which the power iteration forms ``Z^T Z`` (d x d per block) instead of
#: applying it as two products with the points at every step.
_GRAM_MAX_DIM = 64


def _centred(Z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (Z - masked_mean(Z, mask)[:, None, :]) * mask[..., None].to(Z.dtype)


def _axis_scores(
    Z: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, count: int = 1, *, principal: bool = True
) -> torch.Tensor:
    """Standardised coordinates along ``count`` axes, as rank-2 scores (B, count, N, 2).

    The first axis is the first principal axis when ``principal``, the others random directions.
    ``Z`` must be centred.
    """
    V = torch.randn(Z.shape[0], Z.shape[2], count, generator=generator).to(Z)
    V = V / V.norm(dim=1, keepdim=True)
    if principal:
        v = V[..., :1]
        # power iteration on Z^T Z: formed once in few dimensions (one pass over the points
        # instead of two per step), applied as two products in many
        gram = Z.transpose(1, 2) @ Z if Z.shape[2] <= _GRAM_MAX_DIM else None
        for _ in range(30):
            v = gram @ v if gram is not None else Z.transpose(1, 2) @ (Z @ v)
            v = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny)
        V = torch.cat([v, V[..., 1:]], 2)
    proj = (Z @ V).transpose(1, 2)  # (B, count, N)
    std = ((proj * proj).sum(2) / mask.sum(1, keepdim=True)).sqrt().clamp_min(torch.finfo(Z.dtype).tiny)
    proj = proj / std[..., None]
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
    Z: torch.Tensor, mask: torch.Tensor, rank: int, generator: torch.Generator, count: int, *, principal: bool
) -> torch.Tensor:
    """Scores (B, count, N, r) of ``count`` independent starts."""
    Z = _centred(Z, mask)
    if rank == 2:
        return _axis_scores(Z, mask, generator, count, principal=principal)
    return torch.stack([_kmeans_scores(Z, mask, rank, generator) for _ in range(count)], 1)


def _masked_logits(scores: torch.Tensor, mask: torch.Tensor, sharpness: float) -> torch.Tensor:
    """(B, K, N, r) scores to cluster-major (B, K, r, N) logits, ``-inf`` on padding."""
    return torch.where(mask[:, None, None, :], sharpness * scores.transpose(2, 3), float("-inf"))


def joint_cloud(
    X: torch.Tensor,
    Y: torch.Tensor,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    rank: int,
    generator: torch.Generator,
    *,
    count: int = 1,
    sharpness: float = 1.0,
    principal: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start from clusters of each block's joint cloud.

    Parameters
    ----------
    X, Y
        Blocks, (B, Wx, d) and (B, Wy, d).
    mask_x, mask_y
        Valid rows, (B, Wx) and (B, Wy).
    rank
        Number of clusters.
    generator
        Source of randomness (power-iteration start, k-means++ seeds).
    count
        Number of independent starts per block.
    sharpness
        Scale of the returned logits.
    principal
        For rank 2, the first start cuts across the first principal axis, the others across
        random directions; if False, all cut across random directions.

    Returns
    -------
    Unnormalised log-factors for X and Y, cluster-major (B, count, r, Wx) and
    (B, count, r, Wy), ``-inf`` on padding.
    """
    Wx = X.shape[1]
    mask = torch.cat([mask_x, mask_y], 1)
    Z = torch.cat([X, Y], 1)
    scores = _cluster_scores(Z, mask, rank, generator, count, principal=principal)
    logits = _masked_logits(scores, mask, sharpness)
    return logits[..., :Wx], logits[..., Wx:]


def sample_rows(
    mask: torch.Tensor, counts: torch.Tensor | int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct valid rows of every block, drawn uniformly.

    Parameters
    ----------
    mask
        Valid rows, (B, W).
    counts
        Rows wanted per block, an int or (B,); a block with fewer valid rows gives them all.
    generator
        Source of randomness.

    Returns
    -------
    ``rows`` (B, k) with ``k = max(counts)``, and ``valid`` (B, k), True where a drawn row is real.
    """
    counts = torch.as_tensor(counts, device=mask.device).expand(mask.shape[0])
    counts = torch.minimum(counts, mask.sum(1))
    k = max(1, int(counts.max()))
    keys = torch.rand(mask.shape, generator=generator).to(mask.device)
    rows = torch.topk(torch.where(mask, keys, 2.0), k, dim=1, largest=False).indices
    valid = torch.arange(k, device=mask.device)[None, :] < counts[:, None]
    return rows, valid
