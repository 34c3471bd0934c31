"""Bookkeeping of co-clusters: contiguous segments of two index orders.

A level's co-clusters are stored as two permutations, ``ix`` of ``range(n)`` and ``iy`` of
``range(m)``, and two vectors of block sizes: block ``b`` holds the points
``ix[ox_b : ox_b + sx_b]`` of X and ``iy[oy_b : oy_b + sy_b]`` of Y, where ``ox``, ``oy`` are the
running offsets. For a one-to-one matching both sides of a block have the same size; with
unequal clouds the smaller side's blocks are at most as large as the other side's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch


def _padded(sizes: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if width is None:
        width = int(sizes.max())
    ar = torch.arange(width, device=sizes.device)
    mask = ar[None, :] < sizes[:, None]
    offsets = torch.cumsum(sizes, 0) - sizes
    # An empty block's padding points at a valid position (any: it is masked).
    pos = (offsets[:, None] + torch.where(mask, ar[None, :], 0)).clamp_max(max(int(sizes.sum()) - 1, 0))
    return pos, mask


#: Fewest points for which the CPU regroups by the compiled counting pass (fewer: the sort, the
#: same order; no compilation at first use for small problems).
COUNTING_MIN = 1 << 16


def _regroup(
    index: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, caps: torch.Tensor
) -> torch.Tensor:
    """``index`` reordered block after block, child after child (``caps`` (B, r) points each), entries in order."""
    if index.device.type == "cpu" and index.shape[0] >= COUNTING_MIN:  # 2**20 points: 0.8 s of sorts over the levels
        return _regroup_counting(index, pos, mask, labels, caps)
    return _regroup_sorted(index, pos, mask, labels, caps.shape[1])


def _regroup_sorted(
    index: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, rank: int
) -> torch.Tensor:
    block = torch.arange(pos.shape[0], device=pos.device)[:, None].expand_as(pos)
    keys = (block * rank + labels)[mask]
    return index[pos[mask][torch.sort(keys, stable=True).indices]]


def _regroup_counting(
    index: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, caps: torch.Tensor
) -> torch.Tensor:
    # the same order as the stable sort, by a counting sort in one compiled pass
    end = torch.cumsum(caps.reshape(-1), 0).reshape(caps.shape)
    out = torch.empty_like(index)
    if not _regroup_kernel()(
        index.numpy(), pos.numpy(), mask.numpy(), labels.numpy(), (end - caps).numpy(), end.numpy(), out.numpy()
    ):  # fmt: skip
        msg = "child labels do not match the child sizes"
        raise ValueError(msg)
    return out


@cache
def _regroup_kernel() -> Callable:
    """The compiled counting sort (compiled once, cached on disk; numba is imported here)."""
    from hiref.engine._blocks_kernels import regroup

    return regroup


@dataclass
class PaddedSide:
    """One side (X or Y) of a level's blocks, padded for batched work.

    Attributes
    ----------
    pos
        Positions into the side's index order, (B, W); padding repeats a valid position.
    mask
        True where a real point sits, (B, W).
    """

    pos: torch.Tensor
    mask: torch.Tensor


#: One level's split of a set of blocks: both padded sides, the child labels of X and Y
#: (B, Wx) and (B, Wy), and the child sizes of X and Y (B, r).
LevelSplit = tuple[PaddedSide, PaddedSide, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class Blocks:
    """The co-clusters of one level.

    Attributes
    ----------
    ix, iy
        Indices into X (n,) and Y (m,), grouped block after block.
    sizes_x, sizes_y
        Points per block on each side, (B,).
    """

    ix: torch.Tensor
    iy: torch.Tensor
    sizes_x: torch.Tensor
    sizes_y: torch.Tensor

    @classmethod
    def whole(cls, n: int, m: int, device: torch.device) -> Blocks:
        """One block holding every point."""
        return cls(
            torch.arange(n, device=device),
            torch.arange(m, device=device),
            torch.tensor([n], device=device),
            torch.tensor([m], device=device),
        )

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return int(self.sizes_x.numel())

    def padded(self) -> tuple[PaddedSide, PaddedSide]:
        """Both sides padded to their largest block."""
        return PaddedSide(*_padded(self.sizes_x)), PaddedSide(*_padded(self.sizes_y))

    def labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Block of every point of X (n,) and of Y (m,), in point order."""
        ids = torch.arange(self.n_blocks, device=self.sizes_x.device)
        lx = torch.empty_like(self.ix)
        ly = torch.empty_like(self.iy)
        lx[self.ix] = torch.repeat_interleave(ids, self.sizes_x)
        ly[self.iy] = torch.repeat_interleave(ids, self.sizes_y)
        return lx, ly

    def split(
        self,
        side_x: PaddedSide,
        side_y: PaddedSide,
        labels_x: torch.Tensor,
        labels_y: torch.Tensor,
        caps_x: torch.Tensor,
        caps_y: torch.Tensor,
    ) -> Blocks:
        """Split every block into its children.

        Parameters
        ----------
        side_x, side_y
            As returned by :meth:`padded`.
        labels_x, labels_y
            Child in ``[0, r)`` of every padded entry, (B, Wx) and (B, Wy).
        caps_x, caps_y
            Child sizes, (B, r): the labels must use child ``z`` of block ``b`` exactly
            ``caps[b, z]`` times on that side.
        """
        return Blocks(
            ix=_regroup(self.ix, side_x.pos, side_x.mask, labels_x, caps_x),
            iy=_regroup(self.iy, side_y.pos, side_y.mask, labels_y, caps_y),
            sizes_x=caps_x.reshape(-1),
            sizes_y=caps_y.reshape(-1),
        )


def child_capacities(sizes: torch.Tensor, rank: int) -> torch.Tensor:
    """Sizes of the ``rank`` children of every block: ``floor`` or ``ceil`` of ``size / rank``.

    The larger children come first. Returns shape ``(B, rank)``.
    """
    base = sizes // rank
    extra = sizes % rank
    ar = torch.arange(rank, device=sizes.device)
    return base[:, None] + (ar[None, :] < extra[:, None]).to(sizes.dtype)
