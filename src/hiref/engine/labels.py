"""Co-cluster labels of every level, kept as the deepest level's labels only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar, overload

import numpy as np
import torch

Labels = TypeVar("Labels", np.ndarray, torch.Tensor)


class LevelLabels(Sequence[Labels], Generic[Labels]):
    """The co-cluster of every point after every level, computed on access from the deepest level.

    Co-clusters are numbered parent-major (child ``z`` of co-cluster ``b`` at a level of rank
    ``r`` is ``b * r + z``), so the label at level ``k`` is the deepest label divided by the
    product of the ranks below ``k``; storing one array instead of one per level keeps the
    memory linear in ``n``. Behaves like a list of int64 arrays (numpy or torch), one per level;
    ``-1`` (a point outside the matching) stays ``-1`` at every level.

    Parameters
    ----------
    deepest
        Labels after the last level, length n.
    ranks
        Rank of every level.
    """

    def __init__(self, deepest: Labels, ranks: Sequence[int]) -> None:
        self.deepest = deepest
        self.ranks = [int(r) for r in ranks]

    def __len__(self) -> int:
        return len(self.ranks)

    @overload
    def __getitem__(self, level: int) -> Labels: ...

    @overload
    def __getitem__(self, level: slice) -> list[Labels]: ...

    def __getitem__(self, level: int | slice) -> Labels | list[Labels]:
        if isinstance(level, slice):
            return [self[k] for k in range(*level.indices(len(self)))]
        if not -len(self) <= level < len(self):
            msg = f"level {level} out of range for {len(self)} level(s)"
            raise IndexError(msg)
        below = int(np.prod(self.ranks[level % len(self) + 1 :], dtype=np.int64))
        return self.deepest // below if below > 1 else self.deepest

    def __iter__(self) -> Iterator[Labels]:
        return (self[k] for k in range(len(self)))

    def __repr__(self) -> str:
        return f"LevelLabels({len(self)} level(s) of {len(self.deepest)} points)"

    def map(self, function) -> LevelLabels:
        """The same levels with ``function`` applied to the deepest labels (e.g. a re-indexing)."""
        return LevelLabels(function(self.deepest), self.ranks)
