"""Local exact polishing of a matching, after the hierarchy.

The hierarchy's only losses are pairs that a split put in different co-clusters. Refinement
re-solves the matching exactly inside windows of neighbouring pairs that straddle the old
co-cluster boundaries: each pass partitions the matched pairs ``(x, y)`` (and the unmatched
points of the larger cloud) by a random-projection tree in the joint space, into windows of
about ``window`` pairs, and solves every window exactly (:func:`~.leaves.solve_leaves`). A
window's current matching is one of its feasible solutions, so no pass can raise the cost, and
fresh random directions move the window boundaries from pass to pass.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from hiref.engine.blocks import Blocks
from hiref.engine.finish.leaves import mean_paired_cost, solve_leaves

if TYPE_CHECKING:
    from hiref.engine.geometry.costs import Cost


def _tree_groups(
    parts: list[tuple[torch.Tensor, torch.Tensor]], depth: int, generator: torch.Generator
) -> torch.Tensor:
    """Group of every item after ``depth`` median splits along random directions.

    Items live in a joint space given by blocks: ``parts`` lists ``(U, V)`` pairs of (N_k, d)
    tensors, the item being the concatenation ``[U_i, V_i]``; items of all parts are stacked.
    Projections are computed as ``U @ a + V @ b``, never forming the joint vectors.
    """
    N = sum(U.shape[0] for U, _ in parts)
    d = parts[0][0].shape[1]
    device = parts[0][0].device
    group = torch.zeros(N, dtype=torch.long, device=device)
    position = torch.arange(N, device=device)
    for level in range(depth):
        n_groups = 1 << level
        dirs = torch.randn(2, n_groups, d, generator=generator).to(device=device, dtype=parts[0][0].dtype)
        proj = torch.cat([U @ dirs[0].T + V @ dirs[1].T for U, V in parts])  # (N, n_groups)
        proj = proj.gather(1, group[:, None])[:, 0]
        order = torch.sort(proj, stable=True).indices
        order = order[torch.sort(group[order], stable=True).indices]  # by group, then projection
        counts = torch.bincount(group, minlength=n_groups)
        starts = torch.cumsum(counts, 0) - counts
        sorted_group = group[order]
        rank = position - starts[sorted_group]
        child = 2 * sorted_group + (rank >= counts[sorted_group] // 2).long()
        group = torch.empty_like(group).scatter_(0, order, child)
    return group


def pair_windows(
    X: torch.Tensor, Y: torch.Tensor, perm: torch.Tensor, depth: int, generator: torch.Generator
) -> Blocks:
    """Blocks of pairs (and unmatched Y points) grouped by a random-projection tree."""
    n, m = X.shape[0], Y.shape[0]
    unmatched = torch.ones(m, dtype=torch.bool, device=perm.device)
    unmatched[perm] = False
    free_y = torch.nonzero(unmatched).flatten()
    group = _tree_groups([(X, Y[perm]), (Y[free_y], Y[free_y])], depth, generator)
    g_pairs = group[:n]
    g_all = torch.cat([g_pairs, group[n:]])
    n_groups = 1 << depth
    return Blocks(
        ix=torch.sort(g_pairs, stable=True).indices,
        iy=torch.cat([perm, free_y])[torch.sort(g_all, stable=True).indices],
        sizes_x=torch.bincount(g_pairs, minlength=n_groups),
        sizes_y=torch.bincount(g_all, minlength=n_groups),
    )


def refine_matching(
    geometry: Cost,
    X: torch.Tensor,
    Y: torch.Tensor,
    perm: np.ndarray,
    *,
    passes: int = 8,
    window: int = 256,
    generator: torch.Generator,
    tol: float = 1e-6,
    work_dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, list[float]]:
    """Polish a matching by exact re-solves over random windows of neighbouring pairs.

    Parameters
    ----------
    geometry
        The cost geometry.
    X, Y
        All points, (n, d) and (m, d), ``n <= m``.
    perm
        Current matching, (n,): ``X[i]`` matched to ``Y[perm[i]]``.
    passes
        Most passes; stops early when a pass gains less than ``tol`` (relative).
    window
        Pairs per window (about).
    generator
        Source of the random directions.
    tol
        Relative gain under which refinement stops.
    work_dtype
        Precision of the window partition (the re-solves are exact, in float64).

    Returns
    -------
    The refined matching and the mean cost after every pass.
    """
    m = Y.shape[0]
    depth = max(0, math.ceil(math.log2(max(1, m) / window)))
    Xw, Yw = X.to(work_dtype), Y.to(work_dtype)
    current = torch.as_tensor(perm, device=X.device)
    previous = mean_paired_cost(geometry, X, Y, current)
    costs: list[float] = []
    for _ in range(passes):
        blocks = pair_windows(Xw, Yw, current, depth, generator)
        current = torch.as_tensor(solve_leaves(geometry, X, Y, blocks), device=X.device)
        value = mean_paired_cost(geometry, X, Y, current)
        costs.append(value)
        if previous - value <= tol * abs(previous):
            break
        previous = value
    return current.cpu().numpy(), costs
