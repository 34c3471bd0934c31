"""Sharding the co-clusters of a distributed run: who owns which, moving points there, numbering back.

A distributed run (see :mod:`hiref.engine.driver`) solves its top levels data parallel until
the co-clusters can be shared out evenly; then every co-cluster is assigned to one process
(:func:`assign_blocks`), every point travels once to its owner (:func:`own_blocks`), and each
process finishes its co-clusters alone. Labels are numbered back into the single-process
numbering with :func:`global_labels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hiref.engine.blocks import Blocks

if TYPE_CHECKING:
    from hiref.engine.distributed.comm import Comm

#: The data-parallel phase ends once the most loaded process would get at most this many times
#: the mean load.
BALANCE = 1.25


def assign_blocks(loads: torch.Tensor, world: int) -> torch.Tensor:
    """Owner process of every block: largest first, each to the least loaded process so far.

    Ties go to the lower block index and the lower rank, so every process computes the same owners.
    """
    owner = torch.empty(loads.numel(), dtype=torch.long)
    total = [0] * world
    order = torch.sort(loads.cpu(), descending=True, stable=True).indices.tolist()
    values = loads.cpu().tolist()
    for b in order:
        k = min(range(world), key=lambda j: (total[j], j))
        owner[b] = k
        total[k] += values[b]
    return owner


def balanced(blocks: Blocks, world: int) -> bool:
    """Whether the co-clusters can be shared out among ``world`` processes within :data:`BALANCE`."""
    loads = (blocks.sizes_x + blocks.sizes_y).cpu()
    owner = assign_blocks(loads, world)
    per_rank = torch.zeros(world, dtype=loads.dtype).index_add_(0, owner, loads)
    return bool(per_rank.max() <= BALANCE * loads.sum() / world)


def _move(
    comm: Comm, P: torch.Tensor, lo: int, labels: torch.Tensor, owner: torch.Tensor, position: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Send this process's rows to the owners of their co-clusters; returns rows and global ids.

    Received rows are ordered as in the single-process block order (``position``): grouped by
    co-cluster, in the owner's block order.
    """
    ids = torch.arange(lo, lo + P.shape[0], device=P.device)
    dest = owner.to(P.device)[labels[ids]]
    rows = comm.exchange(P, dest)
    got = comm.exchange(ids, dest)
    order = torch.sort(position[got]).indices
    return rows[order], got[order]


def global_labels(local: torch.Tensor, owned: torch.Tensor, width: int) -> torch.Tensor:
    """Single-process numbering of co-clusters numbered ``0 ..`` on this process.

    Blocks split parent-major, so a local block ``p * width + c`` (``width`` descendants per
    owned parent) is child ``c`` of owned parent ``owned[p]``.
    """
    return owned.to(local.device)[local // width] * width + local % width


@dataclass
class Owned:
    """The co-clusters of this process after sharding.

    Attributes
    ----------
    blocks
        The co-clusters, as :class:`~hiref.engine.blocks.Blocks` over the received points.
    A, B
        The received points of each side, grouped by co-cluster.
    ids_a, ids_b
        Their global indices (``None`` in a single process, where nothing moved).
    owned
        The global numbers of the owned co-clusters (``None`` in a single process).
    """

    blocks: Blocks
    A: torch.Tensor
    B: torch.Tensor
    ids_a: torch.Tensor | None = None
    ids_b: torch.Tensor | None = None
    owned: torch.Tensor | None = None


def own_blocks(blocks: Blocks, A: torch.Tensor, B: torch.Tensor, los: tuple[int, int], comm: Comm) -> Owned:
    """Share the co-clusters out and move every point to its co-cluster's owner."""
    owner = assign_blocks((blocks.sizes_x + blocks.sizes_y).cpu(), comm.world)
    owned = torch.nonzero(owner == comm.rank).flatten()
    top_a, top_b = blocks.labels()
    moved = []
    for P, lo, top, index in ((A, los[0], top_a, blocks.ix), (B, los[1], top_b, blocks.iy)):
        position = torch.empty_like(index).scatter_(0, index, torch.arange(index.numel(), device=index.device))
        moved.append(_move(comm, P, lo, top, owner, position))
    (A_own, ids_a), (B_own, ids_b) = moved
    owned_dev = owned.to(A.device)
    local = Blocks(
        torch.arange(A_own.shape[0], device=A.device),
        torch.arange(B_own.shape[0], device=A.device),
        blocks.sizes_x[owned_dev],
        blocks.sizes_y[owned_dev],
    )
    return Owned(local, A_own, B_own, ids_a, ids_b, owned)
