"""Sums and maxima over the points of a block: the identity in one process, all-reduces in several."""

from __future__ import annotations

from typing import Protocol

import torch


class Reducer(Protocol):
    """Sums and maxima over the point axis when a block's points are spread over processes.

    In one process both are the identity; :class:`hiref.engine.distributed.comm.Comm` all-reduces.
    """

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of ``t`` over the processes."""

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum of ``t`` over the processes."""


class Local:
    """The :class:`Reducer` of a single process: every point is here, nothing to combine."""

    rank = 0
    world = 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Return ``t``."""
        return t

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """Return ``t``."""
        return t


LOCAL = Local()
