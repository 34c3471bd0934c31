"""How many CPU threads the engine uses: torch's intra-op threads, chosen per stage of a solve.

Much of a solve is many small tensor operations. When two processes each run as many threads
as there are cores, every parallel region waits for threads that the other process holds off
the cores, and both slow down by an order of magnitude (measured on 2 cores: 10x each, while
one thread per process costs 1.2x). So, unless told otherwise, the engine runs at most as many
threads as there are cores not busy with other work, checked at the start of every level and
of the leaves and finishing; alone on a machine it keeps torch's setting. The setting is
restored when the solve returns.

Overrides, in this order: ``hiref.solve(..., threads=N)``, the environment variable
``HIREF_NUM_THREADS`` (e.g. for ``hiref align`` or a notebook), then the automatic choice. A
distributed run gives each process ``cores // processes on this node`` threads.

Results can differ in the last bits between thread counts (parallel reductions add in another
order); for bit-identical results across runs on a busy machine, fix the count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from hiref.engine.checks import check_positive_int

#: Environment variable that fixes the engine's thread count.
ENV = "HIREF_NUM_THREADS"


def usable_cpus() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def busy_elsewhere() -> int:
    """Runnable tasks on this machine that are not threads of this process (0 where unknown).

    Linux only: the running count of ``/proc/loadavg`` minus this process's threads in state R,
    the least of up to :data:`SAMPLES` reads :data:`SAMPLE_GAP` seconds apart. One read alone
    often saw a task where there was none: this process's own threads, still running when the
    count was taken, asleep when their states were read (on an idle 2-core machine, one solve
    in three of a 30-D mixture of 16,384 points ran its finish on one thread, 12.4 s instead of
    8.4 s); a task that runs for an instant is no reason to give up a core either.
    """
    least = None
    for sample in range(SAMPLES):
        if sample:
            time.sleep(SAMPLE_GAP)
        busy = _busy_once()
        least = busy if least is None else min(least, busy)
        if least == 0:
            break
    return least


#: Reads of the running count that :func:`busy_elsewhere` takes the least of.
SAMPLES = 4
#: Seconds between two reads.
SAMPLE_GAP = 0.002


def _busy_once() -> int:
    """One read of :func:`busy_elsewhere`'s count (this process's running threads read before and after)."""
    try:
        own = _own_running()
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = max(own, _own_running())
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - own)


def _own_running() -> int:
    """Threads of this process in state R."""
    own = 0
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text()
        own += stat[stat.rindex(")") + 2] == "R"
    return own


def fixed_threads(threads: int | None) -> int | None:
    """The thread count fixed by ``threads`` or by ``HIREF_NUM_THREADS``; ``None``: choose automatically."""
    if threads is not None:
        return check_positive_int(threads, "threads")
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"the environment variable {ENV} must be a positive integer, got {text!r}."
        raise ValueError(msg)
    return value


def _local_processes() -> int:
    """Processes of a distributed run on this node (torchrun's ``LOCAL_WORLD_SIZE``), else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


@contextmanager
def engine_threads(threads: int | None, *, distributed: bool = False) -> Iterator[Callable[[], None]]:
    """Set torch's intra-op threads for a solve; yields ``adjust()``, to call at the start of every stage.

    Parameters
    ----------
    threads
        A fixed count, or ``None`` for ``HIREF_NUM_THREADS`` or else the automatic choice (see the
        module's docstring).
    distributed
        Whether this process is one of several of a distributed run (a fixed share of the node).
    """
    previous = torch.get_num_threads()
    fixed = fixed_threads(threads)
    if fixed is None and distributed:
        fixed = max(1, min(previous, usable_cpus() // _local_processes()))

    def adjust() -> None:
        n = fixed if fixed is not None else max(1, min(previous, usable_cpus() - busy_elsewhere()))
        if n != torch.get_num_threads():
            torch.set_num_threads(n)

    adjust()
    try:
        yield adjust
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def in_slices(total: int, run: Callable[[int, int], None], *, least: int = 1) -> None:
    """Call ``run(lo, hi)`` on contiguous slices of ``range(total)``, one per thread (torch's count).

    For compiled loops that release the GIL: each thread takes one slice, at least ``least``
    items long (fewer threads where there are fewer items).
    """
    workers = max(1, min(torch.get_num_threads(), total // max(1, least)))
    cuts = np.linspace(0, total, workers + 1).astype(np.int64)
    if workers == 1:
        run(0, total)
        return
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda w: run(int(cuts[w]), int(cuts[w + 1])), range(workers)))
