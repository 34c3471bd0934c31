"""Exactly balanced hard splits of soft low-rank factors.

Given scores ``S`` (B, r, W), cluster-major (log-factors: higher means "belongs to this
cluster"), and child capacities ``c`` (B, r), return labels such that child ``z`` of block ``b``
receives at most ``c[b, z]`` points, and exactly ``c[b, z]`` when the capacities add up to the
block's number of points (the one-to-one case). For ``r = 2`` the best split ranks the score
difference; only the few points moved between the child they prefer and the other need ranking
(a partial selection, not a sort of whole rows). For ``r > 2``, prices from entropic dual
ascent make most points' favourite cluster fit, then a batched deferred-acceptance pass (each
point proposes to its best cluster that has not refused it; a full cluster keeps its
highest-scoring candidates) meets every capacity in a few rounds.
"""

from __future__ import annotations

import torch


def _largest(keys: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The ``count[b]`` largest entries of every row of ``keys`` (B, W), ties to the lowest index; (B, W) bool.

    One partial selection of ``max(count)`` entries per row (not a sort of whole rows): the
    two-way split only moves the few points between the child they prefer and the other.
    """
    out = torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    k = int(count.max()) if count.numel() else 0
    if k <= 0:
        return out
    values = torch.topk(keys, k, dim=1, sorted=True).values
    last = values.gather(1, (count - 1).clamp_min(0)[:, None])  # the count-th largest of every row
    above = keys > last
    tie = keys == last
    need = count - above.sum(1)
    out = above | (tie & (torch.cumsum(tie, 1) <= need[:, None]))
    return out & (count > 0)[:, None]


def _by_selection(device: torch.device) -> bool:
    """Whether two-way splits rank by partial selection (on the CPU) rather than by a sort of whole rows."""
    return device.type == "cpu"


def _split_two(scores: torch.Tensor, mask: torch.Tensor, capacities: torch.Tensor) -> torch.Tensor:
    """Labels of a two-way split; on the CPU by partial selection, elsewhere by a sort (the same labels)."""
    diff = torch.where(mask, scores[:, 0] - scores[:, 1], float("-inf"))
    # Every point to the child it prefers, as far as the capacities allow: child 0 takes the
    # `first` highest differences (ties to the lowest index, as a stable sort would rank them).
    n_valid = mask.sum(1)
    prefer = diff > 0
    n_prefer = prefer.sum(1)
    first = torch.minimum(torch.maximum(n_prefer, n_valid - capacities[:, 1]), capacities[:, 0])
    if not _by_selection(diff.device):  # one sort of whole rows: fewer launches and no synchronisation
        order = torch.sort(diff, dim=1, descending=True, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(diff.shape[1], device=diff.device).expand_as(order))
        return (ranks >= first[:, None]).long()
    # short of `first`: the best of the others join; past it, the worst of those that prefer
    # child 0 leave (the last ranked: lowest difference, then highest index)
    join = _largest(torch.where(prefer | ~mask, float("-inf"), diff), (first - n_prefer).clamp_min(0))
    leave = _largest(torch.where(prefer, -diff, float("-inf")).flip(1), (n_prefer - first).clamp_min(0)).flip(1)
    return (~((prefer & ~leave) | join)).long()


def _deferred_acceptance(scores: torch.Tensor, mask: torch.Tensor, capacities: torch.Tensor) -> torch.Tensor:
    B, W, r = scores.shape
    device = scores.device
    neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=device)
    refused = torch.zeros(B, W, r, dtype=torch.bool, device=device)
    held = torch.full((B, W), -1, dtype=torch.long, device=device)
    positions = torch.arange(W, device=device).expand(B, W)
    while True:
        free = mask & (held < 0)
        if not bool(free.any()):
            return held
        proposal = torch.where(refused, neg_inf, scores).argmax(-1)
        candidate = torch.where(free, proposal, held)  # -1 where neither
        active = candidate >= 0
        cand = candidate.clamp_min(0)
        own = torch.gather(scores, 2, cand[..., None])[..., 0]
        # Sort by (cluster, -score): first by score, then stably by cluster.
        by_score = torch.sort(torch.where(active, own, neg_inf), dim=1, descending=True, stable=True).indices
        cl = torch.gather(torch.where(active, cand, r), 1, by_score)
        by_cluster = torch.sort(cl, dim=1, stable=True).indices
        order = torch.gather(by_score, 1, by_cluster)
        sorted_cl = torch.gather(cl, 1, by_cluster)
        counts = torch.zeros(B, r + 1, dtype=torch.long, device=device).scatter_add_(
            1, sorted_cl, torch.ones_like(sorted_cl)
        )
        starts = torch.cumsum(counts, 1) - counts
        rank_sorted = positions - torch.gather(starts, 1, sorted_cl)
        cap_sorted = torch.gather(torch.cat([capacities, torch.zeros_like(capacities[:, :1])], 1), 1, sorted_cl)
        keep_sorted = rank_sorted < cap_sorted
        keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)
        rejected = active & ~keep
        refused |= torch.nn.functional.one_hot(cand, r).bool() & rejected[..., None]
        held = torch.where(keep & active, cand, -1)


def _prices(scores: torch.Tensor, mask: torch.Tensor, capacities: torch.Tensor, n_iter: int = 15) -> torch.Tensor:
    """Cluster prices ``p`` (B, r) under which ``argmax_z (S - p)`` nearly meets the capacities.

    Entropic dual ascent (Sinkhorn on the columns) at decreasing temperatures: the prices of the
    transportation problem that the exact split solves.
    """
    m3 = mask[:, None, :]
    relaxed = (mask.sum(1) < capacities.sum(1))[:, None]
    spread = (torch.where(m3, scores, 0.0).amax((1, 2)) - torch.where(m3, scores, 0.0).amin((1, 2))).clamp_min(1e-12)
    log_caps = torch.log(capacities.to(scores.dtype).clamp_min(1e-12))
    p = torch.zeros(capacities.shape, dtype=scores.dtype, device=scores.device)
    for frac in (0.3, 0.1, 0.03, 0.01):
        tau = (frac * spread)[:, None]
        for _ in range(n_iter):
            logits = (scores - p[..., None]) / tau[..., None]
            logits = logits - torch.logsumexp(logits, 1, keepdim=True)
            mass = torch.logsumexp(torch.where(m3, logits, float("-inf")), 2)
            p = p + tau * (mass - log_caps)
            # With spare capacity only full clusters carry a price.
            p = torch.where(relaxed, p.clamp_min(0.0), p)
    return p


def balanced_split(scores: torch.Tensor, mask: torch.Tensor, capacities: torch.Tensor) -> torch.Tensor:
    """Hard labels with exact child sizes.

    Parameters
    ----------
    scores
        Preference of every point for every child, (B, r, W); higher is better.
    mask
        Valid points, (B, W).
    capacities
        Child capacities, (B, r); each row sums to at least the block's number of valid
        points, and exactly to it for a one-to-one split.

    Returns
    -------
    Labels in ``[0, r)``, (B, W); padding entries are 0.
    """
    if scores.shape[1] == 2:
        labels = _split_two(scores, mask, capacities)
    else:
        priced = scores - _prices(scores, mask, capacities)[..., None]
        labels = _deferred_acceptance(priced.transpose(1, 2), mask, capacities)
    return torch.where(mask, labels, 0)
