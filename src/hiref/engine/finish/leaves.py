"""Exact assignment on the leaves of the hierarchy (small co-clusters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from hiref.engine.finish import auction
from hiref.engine.finish.auction import assign_stack

if TYPE_CHECKING:
    from hiref.engine.blocks import Blocks
    from hiref.engine.geometry.costs import Cost

# Dense leaf costs are built this many entries at a time (float64: 8 bytes each); on a GPU as
# many as a lockstep stack takes, as its steps cost about the same for a chunk of any size.
_CHUNK_ENTRIES = 1 << 23


def solve_leaves(geometry: Cost, X: torch.Tensor, Y: torch.Tensor, blocks: Blocks) -> np.ndarray:
    """Match every leaf co-cluster exactly and return the global matching.

    Each leaf's dense cost is built in float64, leaves of the same shape together, in chunks
    that bound the memory, and solved a chunk at a time by :func:`~.auction.assign_stack`: on
    the CPU by compiled shortest augmenting paths (:func:`~hiref.engine._assign.assign_many`, the
    method of :func:`scipy.optimize.linear_sum_assignment`), on a GPU by lockstep shortest-path
    searches over the whole chunk (:mod:`.lockstep`). A leaf may have more Y than X points; its
    extra Y points stay unmatched.

    Parameters
    ----------
    geometry
        The cost geometry.
    X, Y
        All points, (n, d) and (m, d), ``n <= m``.
    blocks
        The leaf co-clusters (no block with more X than Y points).

    Returns
    -------
    ``perm`` (n,), int64: ``X[i]`` is matched to ``Y[perm[i]]``.
    """
    perm = np.empty(X.shape[0], dtype=np.int64)
    ix, iy = blocks.ix.cpu().numpy(), blocks.iy.cpu().numpy()
    sx, sy = blocks.sizes_x.cpu().numpy(), blocks.sizes_y.cpu().numpy()
    ox, oy = np.cumsum(sx) - sx, np.cumsum(sy) - sy
    shapes = np.unique(np.stack([sx, sy], 1), axis=0)
    for size_x, size_y in shapes:
        if size_x == 0:
            continue
        which = (sx == size_x) & (sy == size_y)
        pos_x = ox[which][:, None] + np.arange(size_x)[None, :]
        pos_y = oy[which][:, None] + np.arange(size_y)[None, :]
        entries = auction.LOCKSTEP_MAX_ENTRIES if X.device.type == "cuda" else _CHUNK_ENTRIES
        per_chunk = max(1, entries // (int(size_x) * int(size_y)))
        for lo in range(0, len(pos_x), per_chunk):
            px, py = ix[pos_x[lo : lo + per_chunk]], iy[pos_y[lo : lo + per_chunk]]
            tx = torch.as_tensor(px, device=X.device)
            ty = torch.as_tensor(py, device=Y.device)
            C = geometry.dense(X[tx].double(), Y[ty].double())
            cols = assign_stack(C).cpu().numpy()
            perm[px] = np.take_along_axis(py, cols, 1)
    return perm


def mean_paired_cost(geometry: Cost, X: torch.Tensor, Y: torch.Tensor, perm: torch.Tensor | np.ndarray) -> float:
    """Exact mean cost of the pairs ``(X[i], Y[perm[i]])``, in float64, a chunk of rows at a time."""
    perm = torch.as_tensor(perm, device=X.device)
    rows = max(1, _CHUNK_ENTRIES // max(1, X.shape[1]))
    total = 0.0
    for lo in range(0, X.shape[0], rows):
        total += float(geometry.paired(X[lo : lo + rows].double(), Y[perm[lo : lo + rows]].double()).sum())
    return total / X.shape[0]
