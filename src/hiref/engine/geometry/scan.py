"""The smallest entries of every row of ``bias[j] - 2 <q_i, p_j>`` over all columns ``j``.

Exact row minima over all pairs are what the finish's pricing and its candidate neighbours
need above 16 dimensions, where no k-d tree helps. One product per chunk of rows over all
columns writes a matrix larger than the CPU's caches, and runs at 0.4-0.6 G entries/s
(2 cores, 30-98 dimensions, 2**16 columns); a tile of 1024 x 2048 runs at about 2 G
entries/s, but ``topk`` over each tile would cost more than the product. So on the CPU each
row first gets a threshold from a random sample of the columns (its :data:`_RANK`-th
smallest there), which about :data:`_PASSED` entries of the whole row lie below; each tile
then passes on only its entries below the threshold, in one compiled pass, and the ``k``
smallest are taken from those. A row whose threshold let through fewer than ``k`` entries, or
more than were kept, is computed again in full. Measured: 2-2.9 times the speed of the single
product per chunk (4,096 rows against 46,000-84,172 points in 30-98 dimensions, 2 cores).

Each thread scans chunks of rows of its own, products and passes alike, with torch at one
thread in it (:func:`_workers`): where the products ran on all threads and the passes in a
pool after each tile, torch's idle threads kept spinning on the cores that the passes needed.
40,000 rows against 40,000 points in 56 dimensions (2 cores): 2.6-3.0 s instead of 3.7-4.8 s.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch

#: Rows and columns of one tile of the CPU scan.
_TILE_ROWS, _TILE_COLS = 1024, 2048
#: Fewest columns for which the CPU scan is tiled (below, one product per chunk of rows). With a
#: chunk of rows per thread, tiles pay from two on (2 cores, as many rows as columns, 30 and 56
#: dimensions, k = 1 and 32): 4,096 columns 1.0-1.25x the speed of one product per chunk, 8,192
#: 1.9-2.1x, 16,384 3.4-3.8x; 2,048 columns 0.3-0.9x.
_TILED_MIN_COLS = 2 * _TILE_COLS
#: Entries a row's threshold lets through, in expectation (at least; six per entry asked above).
_PASSED = 128
#: The threshold is this order statistic of a row's sampled columns (a larger one varies less).
_RANK = 8
#: Entries kept per row, in units of those expected to pass (a row with more is computed again).
_ROOM = 8


def smallest(
    Q: torch.Tensor, P: torch.Tensor, bias: torch.Tensor, k: int, *, entries: int = 1 << 24
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Values and indices of the ``k`` smallest ``bias[j] - 2 <Q[i], P[j]>`` of every row, smallest first.

    Parameters
    ----------
    Q, P
        Queries (q, d) and points (m, d), one dtype and device.
    bias
        (m,) added to every column (e.g. ``|p|^2`` plus prices).
    k
        Entries per row; at most ``m``.
    entries
        Entries of one chunk of the untiled path (GPU, or fewer than :data:`_TILED_MIN_COLS`
        columns).

    Returns
    -------
    values, indices
        (q, k) in ``Q``'s dtype and int64, on ``Q``'s device. Ties come out in any order.
    """
    m = P.shape[0]
    k = min(k, m)
    bias = bias.reshape(1, m).to(Q.dtype)
    if Q.device.type != "cpu" or m < _TILED_MIN_COLS or k == 0 or Q.shape[0] == 0:
        return _chunked(Q, P, bias, k, entries)
    passed = max(_PASSED, 6 * k)
    sample = math.ceil(_RANK * m / passed)
    if 4 * sample > m:
        return _chunked(Q, P, bias, k, entries)
    pick = torch.randperm(m, generator=torch.Generator().manual_seed(0))[:sample]
    P_s, bias_s = P[pick], bias[:, pick]
    n = Q.shape[0]
    workers = max(1, torch.get_num_threads()) if _openmp() else 1
    rows = min(_TILE_ROWS, max(_LEAST_ROWS, -(-n // workers)))
    starts = range(0, n, rows)
    workers = min(workers, len(starts))
    # one set of buffers per thread, reused by its chunks: fresh ones per chunk are not given
    # back to the system (measured: +0.7 GB at 2**16 rows)
    spare: queue.SimpleQueue[_Buffers] = queue.SimpleQueue()
    for _ in range(workers):
        spare.put(_Buffers(rows, max(k, int(_ROOM * passed)), Q.dtype))

    def scan_rows(lo: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        buffers = spare.get()
        try:
            q = Q[lo : lo + rows]
            sampled = torch.addmm(bias_s, q, P_s.T, alpha=-2.0)
            tau = torch.topk(sampled, _RANK, dim=1, largest=False).values[:, -1]  # (kthvalue: 20x slower)
            return _below(q, P, bias, tau, k, buffers)
        finally:
            spare.put(buffers)

    values, indices = Q.new_empty(n, k), torch.empty(n, k, dtype=torch.long)
    again = []
    with _workers(workers) as pool:
        for lo, (v, i, redo) in zip(starts, pool.map(scan_rows, starts), strict=True):
            values[lo : lo + v.shape[0]], indices[lo : lo + v.shape[0]] = v, i
            again.append(redo + lo)
    again = np.concatenate(again)
    if again.size:  # a threshold too low (or ties) or too high: these rows in full, on all threads
        redo = torch.from_numpy(again)
        values[redo], indices[redo] = _chunked(Q[redo], P, bias, k, entries)
    return values, indices


#: Fewest rows of a chunk of the CPU scan (fewer rows than threads x :data:`_TILE_ROWS` are
#: shared out in smaller chunks, so that no thread waits).
_LEAST_ROWS = 128


@cache
def _openmp() -> bool:
    """Whether torch runs its threads by OpenMP, whose count each thread sets for itself."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


@contextmanager
def _workers(workers: int) -> Iterator[ThreadPoolExecutor | _InThisThread]:
    """A pool of ``workers`` threads, torch at one thread in each; the count is restored after."""
    if workers == 1:
        yield _InThisThread()
        return
    previous = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:  # (the workers' setting is also the count that threads started later take)
        torch.set_num_threads(previous)


class _InThisThread:
    """The ``map`` of a pool of one: the calls run in this thread, with torch's threads as they are."""

    @staticmethod
    def map(run: Callable, items: Iterable) -> Iterator:
        return map(run, items)


class _Buffers:
    """The arrays of one chunk of rows: a tile of entries, and the entries each row passes on."""

    def __init__(self, rows: int, room: int, dtype: torch.dtype) -> None:
        self.tile = torch.empty(rows, _TILE_COLS, dtype=dtype)
        self.vals = self.tile.new_empty(rows, room).numpy()
        self.cols = np.empty((rows, room), dtype=np.int64)
        self.counts = np.empty(rows, dtype=np.int64)


def _chunked(
    Q: torch.Tensor, P: torch.Tensor, bias: torch.Tensor, k: int, entries: int
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`smallest` by one product over all columns per chunk of rows."""
    if k == 0 or Q.shape[0] == 0:
        return Q.new_empty(Q.shape[0], k), torch.empty(Q.shape[0], k, dtype=torch.long, device=Q.device)
    rows = max(1, entries // max(1, P.shape[0]))
    found = [
        torch.topk(torch.addmm(bias, Q[lo : lo + rows], P.T, alpha=-2.0), k, dim=1, largest=False)
        for lo in range(0, Q.shape[0], rows)
    ]  # fmt: skip
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def _below(
    q: torch.Tensor, P: torch.Tensor, bias: torch.Tensor, tau: torch.Tensor, k: int, scan: _Buffers
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:  # fmt: skip
    """The ``k`` smallest of each row of ``q`` from the entries below ``tau``, and the rows to compute again."""
    rows, m = q.shape[0], P.shape[0]
    room = scan.cols.shape[1]
    cols, vals, counts = scan.cols[:rows], scan.vals[:rows], scan.counts[:rows]
    counts[:] = 0
    tau_np = tau.numpy()
    collect = _collect_kernel()
    for c0 in range(0, m, _TILE_COLS):
        c1 = min(c0 + _TILE_COLS, m)
        out = scan.tile[:rows] if c1 - c0 == _TILE_COLS else None
        D = torch.addmm(bias[:, c0:c1], q, P[c0:c1].T, alpha=-2.0, out=out).numpy()
        collect(D, tau_np, c0, cols, vals, counts, 0, rows)
    # only as many columns as the fullest row filled (most rows use a fraction of their room)
    width = int(min(room, max(k, counts.max())))
    kept = vals[:, :width]
    kept[np.arange(width)[None, :] >= counts[:, None]] = np.inf
    values, at = torch.topk(torch.from_numpy(kept), k, dim=1, largest=False, sorted=True)
    indices = torch.from_numpy(np.take_along_axis(cols[:, :width], at.numpy(), axis=1))
    # rows whose threshold was too low (or ties) or too high
    return values, indices, np.flatnonzero((counts < k) | (counts > room))


@cache
def _collect_kernel() -> Callable:
    """The compiled pass keeping entries below each row's threshold (cached on disk; numba is imported here)."""
    from hiref.engine.geometry._scan_kernels import collect

    return collect
