"""Match two point clouds by Hierarchical Refinement: :func:`solve`, the engine's public entry.

:func:`solve` checks the inputs and the options, connects to the process group of a
distributed run, and hands the rest to the one driver (:func:`hiref.engine.driver.run`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from hiref.engine.checks import as_points, check_bool, check_features, check_seed, resolve_device
from hiref.engine.distributed.comm import SINGLE, check_distributed, connect, local_device
from hiref.engine.driver import run
from hiref.engine.geometry.sketch import centred
from hiref.engine.options import SolveOptions
from hiref.engine.threads import engine_threads, fixed_threads

if TYPE_CHECKING:
    from hiref.engine._types import ArrayLike
    from hiref.engine.matching import Matching


def solve(
    X: ArrayLike,
    Y: ArrayLike,
    options: SolveOptions | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device | None = None,
    seed: int | np.random.Generator | None = 0,
    progress: bool = True,
    distributed: bool | dist.ProcessGroup = False,
    threads: int | None = None,
    **overrides: Any,
) -> Matching:
    """Match two point clouds by Hierarchical Refinement.

    Every level splits each co-cluster of X and Y into ``r`` children of exactly equal sizes
    on both sides, found by low-rank optimal transport solved for all co-clusters of the level
    at once; the final co-clusters (at most ``leaf_size`` points) are matched exactly.

    Memory: the inputs, a working copy in ``dtype`` and ``O((n + m) r)`` per level; nothing
    quadratic in ``n`` beyond ``leaf_size``, ``refine_window`` and the subsamples of
    ``coarse_size`` points. On the CPU, ``n = 2**20`` points in 2-D peak at about 0.9 GB of
    resident memory.

    Parameters
    ----------
    X, Y
        Point clouds of shape (n, d) and (m, d), numpy arrays or torch tensors.
    options
        The algorithmic options below as one :class:`~hiref.engine.SolveOptions` (or a dict of
        its fields); keyword ``overrides`` are applied on top. ``None``: the defaults.
    cost
        Ground cost: ``"sqeuclidean"`` (``|x - y|^2``, factorized exactly), ``"euclidean"``
        (``|x - y|``), :class:`~hiref.engine.Power` for ``|x - y|^p``, or a function
        ``f(x, y)`` of two batches of points, (..., s, d) and (..., t, d), returning their
        (..., s, t) costs (see :class:`~hiref.engine.Custom`). Costs other than
        ``"sqeuclidean"`` are factorized per block by sampling; leaves and the reported cost
        are always exact.
    unbalanced
        What to do when ``n != m``. ``"partial"`` (default): every point of the smaller cloud
        gets a partner and the larger cloud's extra points stay unmatched (``-1``), chosen by
        the transport itself (the paper's dummy points, Sec. 3.1, realised as uneven
        co-cluster sizes) — so points without a counterpart, e.g. tissue present in one slice
        only, are the ones left out. Above 8,192 points in the smaller cloud, which points of
        the larger one to leave out is first learnt from the optimum of a subsample
        (:mod:`hiref.engine.leftovers`; ``timings["select"]``), and the levels match into the
        points kept, where those left out form regions that the smaller cloud lacks.
        ``"subsample"`` (the paper's experiments): draw ``min(n, m)`` points of the larger
        cloud at random (``seed``), match one to one, and list the others in
        :attr:`Matching.dropped`; faster, but the points left out are random.
    refine
        After the bijection, re-solve exactly over windows of neighbouring matched pairs
        (``refine_window`` pairs each, by default ``min(2 * leaf_size, 1024)``, from random
        partitions of the pairs), for at most ``refine_passes`` passes while it gains. Never
        raises the cost. ``None`` (default): on in more than 16 working dimensions (where it
        lowers the cost most, before the finish) for clouds of at most 2**18 points and
        2**24 points x dimensions, unless the finish can price every point (at most 2**40
        pairs x dimensions on the CPU: it then finds those partners itself and proves them);
        off otherwise.
    polish
        After the bijection (and the windows), the exact finish
        (:mod:`hiref.engine.finish.polish`): the assignment is solved on one sparse graph of
        candidate partners over all points — every point may keep its partner or take one of
        its ``polish_neighbours`` nearest points of the other cloud, of its partner's nearest
        neighbours, or of its neighbours' partners — by an epsilon-scaling auction, and the arcs
        the graph lacks are found by the dual's c-transform and added until none is left, so
        mass moves along co-cluster boundaries as far as it must. It ends with a certificate:
        :attr:`Matching.lower_bound` and :attr:`Matching.gap_bound`. ``None`` (default): on for
        clouds of at most 2**23 points in at most 16 working dimensions (above, for at most
        2**18 points and 2**24 points x dimensions); above 2**18 points the automatic finish
        has a budget of work, counted in bids (for the squared Euclidean cost about 100 s per
        million points on 2 cores; the same matching on any machine): it starts no new round
        of pricing past it, and no auction bids far past it (it keeps the improved matching and
        its valid bound, see :data:`~hiref.engine.options.AUTO_FINISH_WORK_PER_POINT`); pass
        ``True`` to finish to the
        end, and larger clouds too (where no k-d tree applies, it then prices every point at
        any size, over all pairs: ``n * m * d`` per round, with a certificate).
        Without it, the hierarchy's own matching still gets a (looser) bound, at any size.
    polish_neighbours
        Candidate partners of each kind per point in the first graph of the finish (missing
        arcs are added by pricing where the c-transform is computed).
    schedule
        Ranks of the levels, each from 2 to :data:`~hiref.engine.schedule.MAX_RANK` (64); by default
        :func:`rank_schedule` with ``max_rank`` and ``leaf_size``.
    max_rank
        Largest rank of the default schedule, from 2 to 64 (which minimises the sum of ranks, the work of a
        batched level, so ``max_rank=2`` gives binary splits, the default and most accurate).
    leaf_size
        Largest co-cluster solved exactly at the end; by default 64 for ``d <= 4``, 512 up to
        ``d = 256`` and 2048 above (in high dimension every split loses more, and exact
        assignment is cheaper).
    n_iter
        Mirror-descent steps per level.
    step
        Mirror-descent step size: the largest change of a log-factor entry per step.
    n_starts
        Candidate splits per co-cluster on the top levels (those with at most
        ``restart_blocks`` co-clusters): mirror descent from the principal axis and from random
        directions, plus straight cuts; the candidate that separates the fewest exactly matched
        pairs of a random subsample is kept. ``1`` is the paper's single run.
    restart_blocks
        Levels with at most this many co-clusters get ``n_starts`` candidates, the others one.
    coarse_size
        Co-clusters larger than this are first split on a random subsample of this size; the
        result seeds a short mirror descent on the whole co-cluster.
    refine_passes, refine_window
        See ``refine``.
    sketch_dim
        For ``d > sketch_dim``, the levels see the data projected on its ``sketch_dim`` principal
        axes (from a randomized SVD of a subsample); leaves, refinement and the reported cost
        still use the full data and the exact cost. ``None`` keeps every dimension. Only for the
        Euclidean family of costs; a custom cost always sees the full data.
    device
        Torch device; ``None`` picks cuda when available, else cpu.
    dtype
        Working precision, ``"float32"`` (default) or ``"float64"``; leaves and reported costs
        always use float64.
    seed
        Seed of every random choice, an int in ``[0, 2**32)``; the same seed on the same device
        gives the same matching. ``None`` draws a fresh seed, a :class:`numpy.random.Generator`
        gives one.
    progress
        Show a progress bar over the levels, the leaves and the finish, whose rounds it names with
        how far above the optimum the matching is proved to be at most (on rank 0 only in a
        distributed run).
    distributed
        Run over the processes of a :mod:`torch.distributed` group: ``True`` for the default
        group (started from ``torchrun``'s environment if needed: NCCL with CUDA, else gloo),
        or a ``ProcessGroup``. Every process calls ``solve`` with its own contiguous slice of
        the rows of X and of Y (rank 0 the first rows, and so on; see
        :func:`hiref.engine.row_ranges`) and the same options; each gets the same
        :class:`Matching` of the whole clouds. The top levels run data parallel with small
        all-reduces; once the co-clusters can be shared out evenly, each process solves its
        own co-clusters to the end (levels, leaves and refinement). Squared Euclidean cost and
        ``unbalanced="partial"`` only. See the docs' "Distributed runs" page.
    threads
        CPU threads (torch's intra-op threads) for the solve; ``None`` (default): the environment
        variable ``HIREF_NUM_THREADS`` if set, else torch's setting, lowered at the start of
        every level to the cores that other work leaves free, so that concurrent processes do
        not slow each other down by an order of magnitude (a distributed run: the cores of the
        node shared among its processes). Restored on return. See :mod:`hiref.engine.threads`.
    **overrides
        Any option of :class:`~hiref.engine.SolveOptions` by name (the parameters above from
        ``cost`` to ``dtype``), applied on top of ``options``.

    Returns
    -------
    The matching, with its cost, schedule, per-level co-clusters and costs, and timings.

    Examples
    --------
    >>> import hiref as hr
    >>> X, Y = hr.datasets.halfmoon_scurve(1000, seed=0)
    >>> m = hr.solve(X, Y, progress=False)
    >>> sorted(m.perm.tolist()) == list(range(1000))
    True
    """
    t_start = time.perf_counter()
    comm = SINGLE if distributed is False else connect(check_distributed(distributed))
    error = None
    try:
        if comm is not SINGLE and (seed is None or isinstance(seed, np.random.Generator)):
            msg = "`seed` must be an int in a distributed run (every process needs the same seed)."
            raise TypeError(msg)
        seed = check_seed(seed, "seed")
        progress = check_bool(progress, "progress")
        X_in, Y_in = as_points(X, "X"), as_points(Y, "Y")
        check_features(X_in, Y_in)
        plan = SolveOptions.make(options, **overrides).plan(X_in.shape[1])
        fixed_threads(threads)
        if comm is SINGLE:
            X_in, Y_in = centred(X_in, Y_in, plan.geometry)
            dev = resolve_device(device)
        else:
            plan.check_distributable()
            dev = local_device(comm, None if device is None else resolve_device(device))
    except (TypeError, ValueError) as err:
        if comm is SINGLE:
            raise
        error = err
    comm.check(error)
    with engine_threads(threads, distributed=comm is not SINGLE) as adjust:
        return run(X_in, Y_in, plan, comm, device=dev, seed=seed, progress=progress, t_start=t_start, adjust=adjust)
