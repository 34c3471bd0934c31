"""Collectives for running the engine over several processes with :mod:`torch.distributed`.

:class:`Comm` wraps a process group (NCCL on GPUs, gloo on CPUs; started by ``torchrun``) and
offers the few collectives the engine needs, counting the bytes each process contributes so
that every level can report its communication.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from hiref.engine.reducer import Local


@dataclass
class Comm:
    """The engine's view of a process group.

    Attributes
    ----------
    group
        The :mod:`torch.distributed` process group (``None``: the default group).
    rank, world
        This process's rank and the number of processes.
    device
        Where collective buffers must live for the backend (CUDA for NCCL, CPU for gloo).
    sent
        Bytes this process has contributed to collectives so far: the payload of every
        all-reduce and all-gather, and the rows it sent to other processes in exchanges.
    """

    group: dist.ProcessGroup | None = None
    rank: int = field(init=False)
    world: int = field(init=False)
    device: torch.device = field(init=False)
    sent: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rank = dist.get_rank(self.group)
        self.world = dist.get_world_size(self.group)
        backend = dist.get_backend(self.group)
        self.device = gpu_of_this_process() if backend == "nccl" else torch.device("cpu")

    def _reduce(self, t: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
        buf = t.detach().to(self.device, copy=True).contiguous()
        self.sent += buf.numel() * buf.element_size()
        dist.all_reduce(buf, op=op, group=self.group)
        return buf.to(t.device)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of ``t`` over all processes (booleans are summed as int64)."""
        return self._reduce(t.long() if t.dtype == torch.bool else t, dist.ReduceOp.SUM)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum of ``t`` over all processes."""
        return self._reduce(t, dist.ReduceOp.MAX)

    def sizes(self, count: int) -> list[int]:
        """``count`` of every process, in rank order."""
        counts = torch.zeros(self.world, dtype=torch.long)
        counts[self.rank] = count
        return [int(c) for c in self.sum(counts)]

    def check(self, error: BaseException | None) -> None:
        """Raise on every process if any process hit ``error``: never leave the others waiting.

        The process that failed re-raises its own error; the others raise a
        :class:`RuntimeError` naming the ranks that failed.
        """
        failed = torch.zeros(self.world, dtype=torch.long)
        failed[self.rank] = error is not None
        failed = self.sum(failed)
        if error is not None:
            raise error
        if bool(failed.any()):
            ranks = torch.nonzero(failed).flatten().tolist()
            msg = f"hiref: the input check failed on rank(s) {ranks}; see their error message."
            raise RuntimeError(msg)

    def fetch(self, P: torch.Tensor, lo: int, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape) of a matrix whose rows ``[lo, lo + len(P))`` are ``P`` here.

        Every process holds a contiguous slice of the rows; the result, of shape
        ``(*ids.shape, d)``, is the same on all processes (0 where ``valid`` is False).
        """
        mine = valid & (ids >= lo) & (ids < lo + P.shape[0])
        out = torch.zeros((*ids.shape, P.shape[1]), dtype=P.dtype, device=P.device)
        out[mine] = P[ids[mine] - lo]
        return self.sum(out)

    def gather_values(self, ids: torch.Tensor, values: torch.Tensor, size: int, fill: int = -1) -> torch.Tensor:
        """An array of length ``size`` with ``values`` at ``ids``, collected from all processes.

        Every position must be given by at most one process; the others hold ``fill``.
        """
        counts = self.sizes(ids.numel())
        width = max(1, max(counts))
        pad = torch.full((2, width), -1, dtype=torch.long, device=self.device)
        pad[0, : ids.numel()] = ids.to(self.device)
        pad[1, : ids.numel()] = values.to(self.device)
        pieces = [torch.empty_like(pad) for _ in range(self.world)]
        self.sent += pad.numel() * pad.element_size()
        dist.all_gather(pieces, pad, group=self.group)
        out = torch.full((size,), fill, dtype=torch.long)
        for piece, count in zip(pieces, counts, strict=True):
            out[piece[0, :count].cpu()] = piece[1, :count].cpu()
        return out.to(values.device)

    def exchange(self, rows: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
        """Send every row of ``rows`` to process ``dest[i]``; return the rows received.

        Received rows come grouped by sender rank, in the senders' order.
        """
        order = torch.sort(dest, stable=True).indices
        flat = rows.reshape(rows.shape[0], -1)
        send = flat[order].to(self.device).contiguous()
        out_counts = torch.bincount(dest.cpu(), minlength=self.world)
        matrix = torch.zeros(self.world, self.world, dtype=torch.long)
        matrix[self.rank] = out_counts
        in_counts = self.sum(matrix)[:, self.rank]
        recv = torch.empty((int(in_counts.sum()), flat.shape[1]), dtype=rows.dtype, device=self.device)
        self.sent += int(out_counts.sum() - out_counts[self.rank]) * flat.shape[1] * rows.element_size()
        dist.all_to_all_single(
            recv, send, output_split_sizes=in_counts.tolist(), input_split_sizes=out_counts.tolist(), group=self.group
        )
        recv = recv.reshape(recv.shape[0], *rows.shape[1:])
        return recv.to(rows.device)


class SingleProcess(Local):
    """The collectives of a world of one process: every one is the identity (see :class:`Comm`)."""

    group = None
    sent = 0
    device = torch.device("cpu")

    def sizes(self, count: int) -> list[int]:
        """``[count]``."""
        return [count]

    def check(self, error: BaseException | None) -> None:
        """Raise ``error`` if there is one."""
        if error is not None:
            raise error

    def fetch(self, P: torch.Tensor, lo: int, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of a matrix whose rows ``[lo, lo + len(P))`` are ``P`` (0 where ``valid`` is False)."""
        out = torch.zeros((*ids.shape, P.shape[1]), dtype=P.dtype, device=P.device)
        out[valid] = P[ids[valid] - lo]
        return out


#: The collectives of :func:`hiref.solve` in one process.
SINGLE = SingleProcess()

#: What the driver needs of a world of processes, one or several.
Collectives = Comm | SingleProcess


def check_distributed(distributed: object) -> bool | dist.ProcessGroup:
    """Return ``distributed`` after checking it is a bool or a process group."""
    if isinstance(distributed, bool) or (dist.is_available() and isinstance(distributed, dist.ProcessGroup)):
        return distributed
    msg = f"`distributed` must be True, False or a torch.distributed ProcessGroup, got {type(distributed).__name__}."
    raise TypeError(msg)


def this_process_rows(
    *clouds: np.ndarray | torch.Tensor, distributed: bool | dist.ProcessGroup
) -> tuple[bool | dist.ProcessGroup, list[np.ndarray | torch.Tensor]]:
    """The rows of every cloud that this process works on: a contiguous slice (see :func:`row_ranges`).

    For callers that hold whole clouds on every process (the AnnData layer) and pass each
    process's rows to :func:`hiref.solve`; also returns the ``distributed`` value to pass on
    (the process group, connected). ``distributed=False`` returns the clouds as they are.
    """
    if distributed is False:
        return False, list(clouds)
    comm = connect(check_distributed(distributed))
    rows = [P[slice(*row_ranges(P.shape[0], comm.world)[comm.rank])] for P in clouds]
    return (comm.group if comm.group is not None else True), rows


def connect(distributed: bool | dist.ProcessGroup) -> Comm:  # noqa: FBT001
    """The :class:`Comm` for ``hiref.solve(..., distributed=...)``.

    ``True`` uses the default process group, starting it from ``torchrun``'s environment
    variables if needed (NCCL when CUDA is available, else gloo); a process group is used as
    given.
    """
    if isinstance(distributed, dist.ProcessGroup):
        return Comm(distributed)
    if not dist.is_available():
        msg = "`distributed=True` needs torch.distributed, which this torch build lacks."
        raise RuntimeError(msg)
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            msg = (
                "`distributed=True` needs a torch.distributed process group: launch with "
                "`torchrun --nproc-per-node N script.py` or call torch.distributed.init_process_group first."
            )
            raise RuntimeError(msg)
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(gpu_of_this_process())
        dist.init_process_group(backend)
    return Comm()


def gpu_of_this_process() -> torch.device:
    """The GPU of this process: ``cuda:$LOCAL_RANK`` under torchrun, else torch's current CUDA device."""
    if "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]) % max(1, torch.cuda.device_count()))
    return torch.device("cuda", torch.cuda.current_device())


def local_device(comm: Comm, device: torch.device | None) -> torch.device:
    """The compute device of this process.

    ``None``: its own GPU under NCCL, else the CPU; a bare ``cuda`` (no index) means this
    process's GPU, not GPU 0 for everyone; anything else as given.
    """
    if device is None:
        return comm.device
    if device.type == "cuda" and device.index is None:
        return gpu_of_this_process()
    return device


def row_ranges(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal slices of ``range(n)`` for ``world`` processes, in rank order.

    A convenience for loading shards: process ``k`` passes rows ``slice(*row_ranges(n, world)[k])``.
    """
    bounds = [(n * k) // world for k in range(world + 1)]
    return list(itertools.pairwise(bounds))
