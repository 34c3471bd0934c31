"""Bookkeeping of co-clusters: contiguous, equally sized segments of two index orders.

A level's co-clusters are stored as two permutations ``ix`` and ``iy`` of ``range(n)`` and one
vector of block sizes: block ``b`` holds the points ``ix[o_b : o_b + s_b]`` of X and
``iy[o_b : o_b + s_b]`` of Y, where ``o`` are the running offsets. Both sides of a block always
have the same size, so one ``sizes`` vector serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Blocks:
    """The co-clusters of one level.

    Attributes
    ----------
    ix
        Indices into X, grouped block after block, shape ``(n,)``.
    iy
        Indices into Y, grouped the same way, shape ``(n,)``.
    sizes
        Number of points per block on each side, shape ``(B,)``.
    """

    ix: torch.Tensor
    iy: torch.Tensor
    sizes: torch.Tensor

    @classmethod
    def whole(cls, n: int, device: torch.device) -> Blocks:
        """One block holding every point."""
        ar = torch.arange(n, device=device)
        return cls(ar, ar.clone(), torch.tensor([n], device=device))

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return int(self.sizes.numel())

    @property
    def offsets(self) -> torch.Tensor:
        """Start of every block in ``ix``/``iy``, shape ``(B,)``."""
        return torch.cumsum(self.sizes, 0) - self.sizes

    def padded(self, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of each block's points, padded to a common width.

        Returns
        -------
        ``pos`` of shape ``(B, W)``, positions into ``ix``/``iy`` (padding repeats the block's
        first position), and ``mask`` of the same shape, True where a real point sits.
        """
        if width is None:
            width = int(self.sizes.max())
        ar = torch.arange(width, device=self.sizes.device)
        mask = ar[None, :] < self.sizes[:, None]
        pos = self.offsets[:, None] + torch.where(mask, ar[None, :], 0)
        return pos, mask

    def block_ids(self) -> torch.Tensor:
        """Block index of every position, shape ``(n,)``."""
        return torch.repeat_interleave(torch.arange(self.n_blocks, device=self.sizes.device), self.sizes)

    def labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Block label of every point of X and of Y (point order), each of shape ``(n,)``."""
        ids = self.block_ids()
        lx = torch.empty_like(ids)
        ly = torch.empty_like(ids)
        lx[self.ix] = ids
        ly[self.iy] = ids
        return lx, ly

    def refine(
        self,
        pos: torch.Tensor,
        mask: torch.Tensor,
        labels_x: torch.Tensor,
        labels_y: torch.Tensor,
        capacities: torch.Tensor,
    ) -> Blocks:
        """Split every block into its children.

        Parameters
        ----------
        pos, mask
            As returned by :meth:`padded`.
        labels_x, labels_y
            Child label in ``[0, r)`` of every padded entry, shape ``(B, W)``.
        capacities
            Child sizes, shape ``(B, r)``; every block's labels must use child ``z`` exactly
            ``capacities[b, z]`` times on each side.
        """
        rank = capacities.shape[1]
        block = torch.arange(pos.shape[0], device=pos.device)[:, None].expand_as(pos)
        flat_pos = pos[mask]
        keys_base = (block * rank)[mask]
        order_x = torch.sort(keys_base + labels_x[mask], stable=True).indices
        order_y = torch.sort(keys_base + labels_y[mask], stable=True).indices
        return Blocks(
            ix=self.ix[flat_pos[order_x]],
            iy=self.iy[flat_pos[order_y]],
            sizes=capacities.reshape(-1),
        )


def child_capacities(sizes: torch.Tensor, rank: int) -> torch.Tensor:
    """Sizes of the ``rank`` children of every block: ``floor`` or ``ceil`` of ``size / rank``.

    The larger children come first. Returns shape ``(B, rank)``.
    """
    base = sizes // rank
    extra = sizes % rank
    ar = torch.arange(rank, device=sizes.device)
    return base[:, None] + (ar[None, :] < extra[:, None]).to(sizes.dtype)
