"""Exact assignment on the leaves of the hierarchy (small co-clusters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ._assign import assign_many

if TYPE_CHECKING:
    from .blocks import Blocks
    from .costs import SqEuclidean

# Dense leaf costs are built this many entries at a time (float64: 8 bytes each).
_CHUNK_ENTRIES = 1 << 23


def solve_leaves(cost: SqEuclidean, X: torch.Tensor, Y: torch.Tensor, blocks: Blocks) -> np.ndarray:
    """Match every leaf co-cluster exactly and return the global matching.

    Each leaf's dense cost is built in float64 and solved with
    :func:`scipy.optimize.linear_sum_assignment`; leaves of equal size are built together, in
    chunks that bound the memory.

    Parameters
    ----------
    cost
        The cost geometry.
    X, Y
        All points, (n, d).
    blocks
        The leaf co-clusters.

    Returns
    -------
    ``perm`` (n,), int64: ``X[i]`` is matched to ``Y[perm[i]]``.
    """
    n = X.shape[0]
    perm = np.empty(n, dtype=np.int64)
    ix = blocks.ix.cpu().numpy()
    iy = blocks.iy.cpu().numpy()
    sizes = blocks.sizes.cpu().numpy()
    offsets = np.cumsum(sizes) - sizes
    for size in np.unique(sizes):
        starts = offsets[sizes == size]
        pos = starts[:, None] + np.arange(size)[None, :]
        per_chunk = max(1, _CHUNK_ENTRIES // (int(size) * int(size)))
        for lo in range(0, len(starts), per_chunk):
            px = ix[pos[lo : lo + per_chunk]]
            py = iy[pos[lo : lo + per_chunk]]
            tx = torch.as_tensor(px, device=X.device)
            ty = torch.as_tensor(py, device=X.device)
            C = cost.dense(X[tx].double(), Y[ty].double()).cpu().numpy()
            perm[px] = np.take_along_axis(py, assign_many(C), 1)
    return perm
