"""Both clouds of a large finish in spatial (Morton) order, and the matchings and prices mapped back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hiref.engine.finish import batched_search
from hiref.engine.finish.neighbours import TREE_MAX_DIM

#: Fewest points of the larger cloud for which the finish and the bound work on both clouds in a
#: spatial (Morton) order, in at most :data:`.neighbours.TREE_MAX_DIM` dimensions: neighbouring points then
#: sit close in memory, and every gather of the searches and auctions stays local (finish of a
#: 2**20-point planted pair, 2 cores: 26.7 s -> 18.7 s, its auction 10.1 s -> 5.3 s; 2**16:
#: 1.0 s -> 0.8 s). Smaller clouds fit in cache and keep their order.
SPATIAL_ORDER_MIN = 1 << 16


@dataclass
class SpatialOrder:
    """Both clouds in Morton order: ``a[i]`` (``b[j]``) is point ``i`` (``j``) of the sorted cloud."""

    a: torch.Tensor
    b: torch.Tensor

    @classmethod
    def of(cls, A: torch.Tensor, B: torch.Tensor) -> SpatialOrder | None:
        """The orders of ``A`` (n, d) and ``B`` (m, d), or ``None`` where the clouds keep theirs."""
        if B.shape[0] < SPATIAL_ORDER_MIN or B.shape[1] > TREE_MAX_DIM:
            return None
        return cls(batched_search.morton_order(A), batched_search.morton_order(B.to(A.device)))

    def clouds(self, A: torch.Tensor | None, B: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``A`` and ``B`` (either may be ``None``) in the sorted order."""
        return (
            None if A is None else A[self.a.to(A.device)],
            None if B is None else B[self.b.to(B.device)],
        )  # fmt: skip

    def to_sorted(self, perm: np.ndarray) -> np.ndarray:
        """A matching (n,) of the clouds as given, as one of the sorted clouds (``-1`` kept)."""
        a, b = self.a.cpu().numpy(), self.b.cpu().numpy()
        rank_b = np.empty_like(b)
        rank_b[b] = np.arange(b.shape[0])
        perm = np.asarray(perm, dtype=np.int64)[a]
        return np.where(perm >= 0, rank_b[np.maximum(perm, 0)], -1)

    def b_from_sorted(self, values: np.ndarray) -> np.ndarray:
        """Values (m,) of the sorted cloud ``B``'s points, in the order of ``B`` as given."""
        out = np.empty_like(values)
        out[self.b.cpu().numpy()] = values
        return out

    def from_sorted(self, perm: np.ndarray) -> np.ndarray:
        """A matching (n,) of the sorted clouds, as one of the clouds as given."""
        a, b = self.a.cpu().numpy(), self.b.cpu().numpy()
        out = np.empty(a.shape[0], dtype=np.int64)
        out[a] = np.where(perm >= 0, b[np.maximum(perm, 0)], -1)
        return out
