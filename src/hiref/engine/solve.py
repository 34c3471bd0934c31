"""The level loop of Hierarchical Refinement (HiRef paper, Algorithm 1), batched over co-clusters."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ._labels import LevelLabels
from ._resources import peak_device_bytes, peak_rss_bytes
from ._validate import (
    as_points,
    check_bool,
    check_choice,
    check_features,
    check_positive_float,
    check_positive_int,
    check_seed,
    resolve_device,
    resolve_dtype,
)
from .blocks import Blocks, Side
from .costs import Cost, Power, SqEuclidean, Transposed, get_cost
from .distributed import connect, local_device
from .leaves import mean_paired_cost, solve_leaves
from .level import LevelOptions, Stack, split_level
from .polish import polish_matching
from .refine import refine_matching
from .schedule import check_max_rank, check_schedule, rank_schedule

if TYPE_CHECKING:
    from ._types import ArrayLike
    from .distributed import Comm


@dataclass
class Matching:
    """A matching of two point clouds, as returned by :func:`hiref.solve`.

    Attributes
    ----------
    perm
        ``int64`` array of length n: row ``i`` of X is matched to row ``perm[i]`` of Y, or
        ``-1`` if it is unmatched (only when X has more points than Y).
    cost
        Mean cost of the matched pairs under the chosen cost, computed exactly in float64.
    schedule
        Rank of every level.
    labels_x, labels_y
        One ``int64`` array per level, of length n and m: the co-cluster of every point of X
        and of Y after that level (equal labels on the two sides mean the same co-cluster;
        ``-1`` for points left out with ``unbalanced="subsample"``). A list-like
        :class:`~hiref.engine.LevelLabels` that keeps only the deepest level and
        computes the others on access, so the matching takes ``O(n)`` memory, not
        ``O(n log n)``. These are the hierarchy's co-clusters: after ``polish`` or ``refine``
        some pairs cross them (``polish=False, refine=False`` keeps every pair inside).
    level_costs
        Mean cost of the block coupling of every level (each point of the smaller cloud spread
        evenly over its co-cluster's points of the other), the initial single block first; the
        last entry is ``cost``. Exact for ``"sqeuclidean"``, a Monte-Carlo estimate otherwise.
    timings
        Seconds per level (``"level_1"``, ...), on the leaves, in ``"refine"`` (windows), in
        ``"polish"`` (sparse graph) and in total.
    memory
        Peak memory after every level, in bytes: ``"rss_level_1"``, ... (the process's peak
        resident memory so far) and, on CUDA, ``"cuda_level_1"``, ... (torch's peak
        allocation). Empty where the platform cannot tell.
    cost_name
        The cost the matching was computed for.
    dropped
        With ``unbalanced="subsample"``: indices of the larger side's points left out before
        matching (into X if X was larger, else into Y); otherwise empty.
    refine_costs
        Mean cost after each pass of window refinement, then of polish (empty without either,
        and in a distributed run, where every process finishes its own co-clusters).
    n_y
        Number of points of Y.
    communication
        In a distributed run (``distributed=...``), the bytes this process contributed to
        collectives per stage (``"setup"``, ``"level_1"``, ..., ``"shard"``, ``"gather"``); empty
        otherwise.
    world_size
        Number of processes that computed the matching (1 unless distributed).
    """

    perm: np.ndarray
    cost: float
    schedule: list[int]
    labels_x: Sequence[np.ndarray] = field(repr=False)
    labels_y: Sequence[np.ndarray] = field(repr=False)
    level_costs: list[float]
    timings: dict[str, float]
    memory: dict[str, int] = field(default_factory=dict)
    cost_name: str = "sqeuclidean"
    dropped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)
    refine_costs: list[float] = field(default_factory=list)
    n_y: int = -1
    communication: dict[str, int] = field(default_factory=dict)
    world_size: int = 1

    @property
    def n(self) -> int:
        """Number of points of X."""
        return int(self.perm.shape[0])

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int((self.perm >= 0).sum())

    @property
    def perm_y(self) -> np.ndarray:
        """For every point of Y, the index of its partner in X, or ``-1``; length m."""
        m = self.n_y if self.n_y >= 0 else int(self.perm.max()) + 1
        out = np.full(m, -1, dtype=np.int64)
        matched = self.perm >= 0
        out[self.perm[matched]] = np.flatnonzero(matched)
        return out


def record_memory(memory: dict[str, int], stage: str, device: torch.device) -> None:
    """Store the peak resident (and CUDA) memory so far under ``rss_<stage>`` (``cuda_<stage>``)."""
    rss = peak_rss_bytes()
    if rss is not None:
        memory[f"rss_{stage}"] = rss
    gpu = peak_device_bytes(device)
    if gpu is not None:
        memory[f"cuda_{stage}"] = gpu


def _spread(values: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """An int64 array of ``size`` entries, ``-1`` except ``values`` at positions ``at``."""
    out = np.full(size, -1, dtype=np.int64)
    out[at] = values
    return out


def principal_axes(
    take: Callable[[int, torch.Tensor], torch.Tensor],
    sizes: tuple[int, int],
    dim: int,
    dtype: torch.dtype,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and ``dim`` principal axes of both clouds, from a randomized SVD of a subsample.

    ``take(side, rows)`` returns rows of cloud ``side`` (0: A, 1: B), whose sizes are ``sizes``;
    up to 8192 random points of each cloud are centred together.
    """
    picks = [torch.randperm(size, generator=generator)[:8192] for size in sizes]
    sample = torch.cat([take(side, pick) for side, pick in enumerate(picks)]).to(dtype)
    centre = sample.mean(0)
    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))  # svd_lowrank draws globally
    try:
        _, _, V = torch.svd_lowrank(sample - centre, q=min(dim + 10, *sample.shape), niter=3)
    finally:
        torch.random.set_rng_state(state)
    return centre, V[:, :dim]


def project(P: torch.Tensor, centre: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(P - centre) @ basis`` in the basis's precision, a chunk of rows at a time."""
    rows = max(1, (1 << 24) // max(1, P.shape[1]))
    parts = [(P[lo : lo + rows].to(basis.dtype) - centre) @ basis for lo in range(0, P.shape[0], rows)]
    return torch.cat(parts) if parts else P.new_zeros((0, basis.shape[1]), dtype=basis.dtype)


def _sketch(
    A: torch.Tensor, B: torch.Tensor, dim: int | None, dtype: torch.dtype, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Working copies of both clouds, in ``dtype``; projected on ``dim`` principal axes if given."""
    if dim is None:
        return A.to(dtype), B.to(dtype)

    def take(side: int, rows: torch.Tensor) -> torch.Tensor:
        P = (A, B)[side]
        return P[rows.to(P.device)]

    centre, basis = principal_axes(take, (A.shape[0], B.shape[0]), dim, dtype, generator)
    return project(A, centre, basis), project(B, centre, basis)


Split = Callable[[Blocks, int], tuple[Side, Side, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def local_split(
    geometry: Cost, Aw: torch.Tensor, Bw: torch.Tensor, options: LevelOptions, generator: torch.Generator
) -> Split:
    """The level split of one process: every block's points are in ``Aw`` and ``Bw``."""

    def split(blocks: Blocks, rank: int) -> tuple[Side, Side, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        side_a, side_b = blocks.padded()
        stack = Stack(Aw[blocks.ix[side_a.pos]], Bw[blocks.iy[side_b.pos]], side_a.mask, side_b.mask)
        return side_a, side_b, *split_level(geometry, stack, rank, generator, options)

    return split


def run_levels(
    split: Split,
    blocks: Blocks,
    ranks: list[int],
    *,
    first_level: int,
    timings: dict[str, float],
    memory: dict[str, int],
    bar: tqdm,
    comm: Comm | None = None,
    communication: dict[str, int] | None = None,
) -> Blocks:
    """Split ``blocks`` level after level; returns the co-clusters after the last one.

    Fills ``timings`` and ``memory`` (and ``communication`` with the bytes ``comm`` sent).
    """
    dev = blocks.ix.device
    for level, rank in enumerate(ranks, start=first_level):
        t0 = time.perf_counter()
        sent = comm.sent if comm is not None else 0
        bar.set_postfix_str(f"level {level}: {blocks.n_blocks} block(s) -> rank {rank}")
        side_a, side_b, lab_a, lab_b, caps_a, caps_b = split(blocks, rank)
        blocks = blocks.refine(side_a, side_b, lab_a, lab_b, caps_a, caps_b)
        timings[f"level_{level}"] = time.perf_counter() - t0
        if comm is not None and communication is not None:
            communication[f"level_{level}"] = comm.sent - sent
        record_memory(memory, f"level_{level}", dev)
        bar.update()
    return blocks


def _hierarchy(
    geometry: Cost,
    A: torch.Tensor,
    B: torch.Tensor,
    Aw: torch.Tensor,
    Bw: torch.Tensor,
    ranks: list[int],
    options: LevelOptions,
    generator: torch.Generator,
    timings: dict[str, float],
    memory: dict[str, int],
    *,
    progress: bool,
) -> tuple[np.ndarray, LevelLabels, LevelLabels, list[float]]:
    """The level loop on the working copies ``Aw``, ``Bw`` and the exact leaves on ``A``, ``B``.

    Needs ``len(A) <= len(B)``; fills ``timings`` and ``memory``.
    """
    bar = tqdm(total=len(ranks) + 1, desc="hiref", unit="level", disable=not progress, leave=False)
    blocks = run_levels(
        local_split(geometry, Aw, Bw, options, generator), Blocks.whole(A.shape[0], B.shape[0], A.device), ranks,
        first_level=1, timings=timings, memory=memory, bar=bar,
    )  # fmt: skip
    dev = A.device
    t0 = time.perf_counter()
    bar.set_postfix_str(f"leaves: {blocks.n_blocks} exact problem(s)")
    perm = solve_leaves(geometry, A, B, blocks)
    timings["leaves"] = time.perf_counter() - t0
    record_memory(memory, "leaves", dev)
    bar.update()
    bar.close()
    deep_a, deep_b = blocks.labels()
    del blocks
    level_costs = geometry.level_costs(A, B, LevelLabels(deep_a, ranks), LevelLabels(deep_b, ranks), generator)
    return perm, LevelLabels(deep_a.cpu().numpy(), ranks), LevelLabels(deep_b.cpu().numpy(), ranks), level_costs


def solve(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    cost: str | Cost | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "sqeuclidean",
    unbalanced: Literal["partial", "subsample"] = "partial",
    refine: bool | None = None,
    polish: bool | None = None,
    polish_neighbours: int = 16,
    schedule: list[int] | None = None,
    max_rank: int = 2,
    leaf_size: int | None = None,
    n_iter: int = 60,
    step: float = 1.0,
    n_starts: int = 16,
    restart_blocks: int = 4,
    coarse_size: int = 8192,
    refine_passes: int = 8,
    refine_window: int | None = None,
    sketch_dim: int | None = 128,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int | np.random.Generator | None = 0,
    progress: bool = True,
    distributed: bool | dist.ProcessGroup = False,
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
        only, are the ones left out. ``"subsample"`` (the paper's experiments): draw
        ``min(n, m)`` points of the larger cloud at random (``seed``), match one to one, and
        list the others in :attr:`Matching.dropped`; faster, but the points left out are random.
    refine
        After the bijection, re-solve exactly over windows of neighbouring matched pairs
        (``refine_window`` pairs each, by default ``min(2 * leaf_size, 1024)``, from random
        partitions of the pairs), for at most ``refine_passes`` passes while it gains. Never
        raises the cost. ``None`` (default): on in more than 16 working dimensions (where it
        lowers the cost most, before the polish) for clouds of at most 2**18 points, off
        otherwise.
    polish
        After the bijection (and the windows), solve the assignment exactly on a sparse graph
        of candidate partners: every point may keep its partner or take one of its
        ``polish_neighbours`` nearest points of the other cloud, of its partner's nearest
        neighbours, or of its neighbours' partners (:mod:`hiref.engine.polish`; a cost-scaling
        assignment solver from OR-Tools). Mass can move along co-cluster boundaries as far as it
        needs to, which windows cannot do: on tissue sections (uniform densities, lattices,
        unequal sizes) this takes the matching from tens of percent above the optimum to within
        about 0.01 %. Never raises the cost; up to 4 passes (fewer on large clouds), in blocks of
        8,192 neighbouring pairs beyond that size. ``None`` (default): on for clouds of at most
        2**18 points (the solver's time grows faster than ``n``); pass ``True`` to polish
        larger clouds too.
    polish_neighbours
        Candidate partners of each kind per point (see ``polish``). The strongest setting is
        ``refine=True, polish_neighbours=32``: in 32 dimensions (30 expression PCs and
        position of a MERFISH pair) it takes the gap to the exact optimum from 0.35 % to
        0.17 % at a third more time.
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
        Show a progress bar over levels (on rank 0 only in a distributed run).
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
    comm = None if distributed is False else connect(check_distributed(distributed))
    error = None
    try:
        if comm is not None and (seed is None or isinstance(seed, np.random.Generator)):
            msg = "`seed` must be an int in a distributed run (every process needs the same seed)."
            raise TypeError(msg)
        seed = check_seed(seed, "seed")
        X_in, Y_in = as_points(X, "X"), as_points(Y, "Y")
        check_features(X_in, Y_in)
        settings = Settings.resolve(
            d=X_in.shape[1], cost=cost, unbalanced=unbalanced, refine=refine, polish=polish,
            polish_neighbours=polish_neighbours, schedule=schedule,
            max_rank=max_rank, leaf_size=leaf_size, n_iter=n_iter, step=step, n_starts=n_starts,
            restart_blocks=restart_blocks, coarse_size=coarse_size, refine_passes=refine_passes,
            refine_window=refine_window, sketch_dim=sketch_dim, dtype=dtype, progress=progress,
        )  # fmt: skip
        if comm is not None:
            check_distributable(settings)
        else:
            X_in, Y_in = centred(X_in, Y_in, settings.geometry)
        dev = (
            resolve_device(device)
            if comm is None
            else local_device(comm, None if device is None else resolve_device(device))
        )
    except (TypeError, ValueError) as err:
        if comm is None:
            raise
        error = err
    if comm is not None:
        comm.check(error)
        from .solve_distributed import solve_sharded

        return solve_sharded(X_in, Y_in, comm, settings, device=dev, seed=seed, t_start=t_start)
    return _solve_local(X_in, Y_in, settings, device=dev, seed=seed, t_start=t_start)


#: Working dimension above which ``refine=None`` refines by windows (before the polish).
WINDOWS_MIN_DIM = 16
#: Largest cloud (points of the larger side) for which ``polish=None`` / ``refine=None`` finish the matching.
AUTO_FINISH_MAX = 1 << 18

#: Clouds whose joint mean lies further from the origin than this many times their spread are
#: centred before solving (see :func:`centred`).
CENTRE_RATIO = 8.0


def centred(X: torch.Tensor, Y: torch.Tensor, geometry: Cost) -> tuple[torch.Tensor, torch.Tensor]:
    """``X`` and ``Y`` minus their joint mean, when the cost ignores translations and the offset is large.

    A large common offset (coordinates around ``1e7``, say) costs precision in float32 and
    nothing else for the Euclidean family of costs, which depend on ``x - y`` only; so those
    clouds are centred, in float64, before the engine sees them (the matching and its reported
    cost are unchanged in exact arithmetic). Clouds already within :data:`CENTRE_RATIO` spreads of
    the origin, and custom costs, are returned as they are. Floating inputs keep their dtype,
    integer inputs become float64.
    """
    if not isinstance(geometry, SqEuclidean | Power):
        return X, Y
    rows = max(1, (1 << 22) // max(1, X.shape[1]))
    parts = [(P, lo) for P in (X, Y) for lo in range(0, P.shape[0], rows)]
    total = sum(P[lo : lo + rows].to(torch.float64).sum(0) for P, lo in parts)
    mean = total / (X.shape[0] + Y.shape[0])
    spread2 = sum(((P[lo : lo + rows].to(torch.float64) - mean) ** 2).sum() for P, lo in parts)
    spread = math.sqrt(float(spread2) / (X.shape[0] + Y.shape[0]))
    if float(mean.norm()) <= CENTRE_RATIO * spread:
        return X, Y

    def shift(P: torch.Tensor) -> torch.Tensor:
        out = torch.empty(P.shape, dtype=P.dtype if P.is_floating_point() else torch.float64, device=P.device)
        for lo in range(0, P.shape[0], rows):
            out[lo : lo + rows] = (P[lo : lo + rows].to(torch.float64) - mean).to(out.dtype)
        return out

    return shift(X), shift(Y)


@dataclass(frozen=True)
class Settings:
    """The checked options of one :func:`solve` call (see there for their meaning)."""

    geometry: Cost
    unbalanced: str
    refine: bool | None
    polish: bool | None
    polish_neighbours: int
    schedule: list[int] | None
    max_rank: int
    leaf_size: int
    options: LevelOptions
    refine_passes: int
    refine_window: int
    sketch_dim: int | None
    work_dtype: torch.dtype
    progress: bool

    @classmethod
    def resolve(cls, *, d: int, **kw: object) -> Settings:
        """Check every option and fill the defaults that depend on the dimension ``d``."""
        check_choice(kw["unbalanced"], "unbalanced", ("partial", "subsample"))
        # Exact assignment is cheap on high-dimensional blocks and each split costs more there
        # (more of the transport is noise that only an exact solve can use), so high dimensions
        # get fewer, larger leaves.
        leaf_size = kw["leaf_size"]
        if leaf_size is None:
            leaf_size = 64 if d <= 4 else 512 if d <= 256 else 2048
        leaf_size = check_positive_int(leaf_size, "leaf_size")
        options = LevelOptions(
            n_iter=check_positive_int(kw["n_iter"], "n_iter", minimum=0),
            step=check_positive_float(kw["step"], "step"),
            n_starts=check_positive_int(kw["n_starts"], "n_starts"),
            restart_blocks=check_positive_int(kw["restart_blocks"], "restart_blocks", minimum=0),
            coarse_size=check_positive_int(kw["coarse_size"], "coarse_size", minimum=2),
        )
        refine_window = kw["refine_window"]
        if refine_window is None:
            refine_window = min(2 * leaf_size, 1024)
        sketch_dim = kw["sketch_dim"]
        return cls(
            geometry=get_cost(kw["cost"]),
            unbalanced=kw["unbalanced"],
            refine=None if kw["refine"] is None else check_bool(kw["refine"], "refine"),
            polish=None if kw["polish"] is None else check_bool(kw["polish"], "polish"),
            polish_neighbours=check_positive_int(kw["polish_neighbours"], "polish_neighbours"),
            schedule=kw["schedule"],
            max_rank=check_max_rank(kw["max_rank"]),
            leaf_size=leaf_size,
            options=options,
            refine_passes=check_positive_int(kw["refine_passes"], "refine_passes", minimum=0),
            refine_window=check_positive_int(refine_window, "refine_window", minimum=2),
            sketch_dim=None if sketch_dim is None else check_positive_int(sketch_dim, "sketch_dim"),
            work_dtype=resolve_dtype(kw["dtype"]),
            progress=check_bool(kw["progress"], "progress"),
        )

    def ranks(self, n_large: int) -> list[int]:
        """Rank of every level for a larger cloud of ``n_large`` points."""
        if self.schedule is None:
            return rank_schedule(n_large, max_rank=self.max_rank, leaf_size=self.leaf_size, objective="work")
        return check_schedule(n_large, self.schedule, self.leaf_size)

    def finishing(self, n_large: int, d: int) -> tuple[bool, bool]:
        """Whether to refine by windows and whether to polish on a sparse graph (see :func:`solve`).

        ``refine=None`` refines in more than :data:`WINDOWS_MIN_DIM` working dimensions, where
        nearest neighbours alone find few of the missing partners and windows pay most;
        ``polish=None`` always polishes. Both automatic choices hold up to
        :data:`AUTO_FINISH_MAX` points.
        """
        work_d = self.sketch_dim if self.sketched(d) else d
        small = n_large <= AUTO_FINISH_MAX
        refine = self.refine if self.refine is not None else small and work_d > WINDOWS_MIN_DIM
        polish = self.polish if self.polish is not None else small
        return refine and self.refine_passes > 0, polish

    def sketched(self, d: int) -> bool:
        """Whether the levels work on a principal-axes sketch of ``d``-dimensional data."""
        return self.geometry.sketchable and self.sketch_dim is not None and d > self.sketch_dim


def _solve_local(
    X_in: torch.Tensor, Y_in: torch.Tensor, settings: Settings, *, device: torch.device, seed: int, t_start: float
) -> Matching:
    """:func:`solve` in one process."""
    geometry = settings.geometry
    generator = torch.Generator(device="cpu").manual_seed(seed)

    # The engine matches a smaller (or equal) cloud into a larger one; swap if X is larger.
    swapped = X_in.shape[0] > Y_in.shape[0]
    small, large = (Y_in, X_in) if swapped else (X_in, Y_in)
    geometry_ab = Transposed(geometry) if swapped and not geometry.symmetric else geometry
    n, n_large = small.shape[0], large.shape[0]
    dropped = np.empty(0, dtype=np.int64)
    kept = None
    if settings.unbalanced == "subsample" and n < n_large:
        order = torch.randperm(n_large, generator=generator)
        kept = torch.sort(order[:n]).values.numpy()
        dropped = torch.sort(order[n:]).values.numpy()
    # Exact computations (leaves, reported costs) read the inputs as given, in float64 a chunk
    # at a time; the levels work on one copy in the working precision.
    A = small.to(device)
    B = large.to(device)
    if kept is not None:
        B = B[torch.as_tensor(kept, device=device)]
    ranks = settings.ranks(B.shape[0])

    t0 = time.perf_counter()
    sketched = settings.sketched(A.shape[1])
    Aw, Bw = _sketch(A, B, settings.sketch_dim if sketched else None, settings.work_dtype, generator)
    timings: dict[str, float] = {"sketch": time.perf_counter() - t0} if sketched else {}
    perm, labels_a, labels_b, level_costs = _hierarchy(
        geometry_ab, A, B, Aw, Bw, ranks, settings.options, generator, timings, memory := {},
        progress=settings.progress,
    )  # fmt: skip
    perm, refine_costs = finish_matching(geometry_ab, A, B, Aw, Bw, perm, settings, generator, timings)
    del Aw, Bw
    matched = mean_paired_cost(geometry_ab, A, B, perm)
    level_costs.append(matched)
    check_finite(matched)
    return finish(
        perm, labels_a, labels_b, kept=kept, swapped=swapped, n_large=n_large, cost=matched, ranks=ranks,
        level_costs=level_costs, timings=timings, memory=memory, geometry=geometry, dropped=dropped,
        refine_costs=refine_costs, n_y=int(Y_in.shape[0]), t_start=t_start,
    )  # fmt: skip


def finish_matching(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, Aw: torch.Tensor | None, Bw: torch.Tensor | None,
    perm: np.ndarray, settings: Settings, generator: torch.Generator, timings: dict[str, float],
) -> tuple[np.ndarray, list[float]]:  # fmt: skip
    """Refinement by windows, then polish on a sparse graph, as :meth:`Settings.finishing` decides.

    ``A``, ``B`` are the exact points, ``Aw``, ``Bw`` their working copies (where neighbours are
    sought; ``None``: ``A``, ``B``); returns the matching and the mean cost after every pass of either.
    """
    refine, polish = settings.finishing(B.shape[0], A.shape[1])
    costs: list[float] = []
    if refine:
        t0 = time.perf_counter()
        perm, passes = refine_matching(
            geometry, A, B, perm, passes=settings.refine_passes, window=settings.refine_window,
            generator=generator, work_dtype=settings.work_dtype,
        )  # fmt: skip
        costs += passes
        timings["refine"] = time.perf_counter() - t0
    if polish:
        t0 = time.perf_counter()
        perm, passes = polish_matching(
            geometry, A, B, perm, Aw=Aw, Bw=Bw, neighbours=settings.polish_neighbours,
            passes=max(1, min(4, (1 << 16) // max(1, B.shape[0]))), generator=generator,
        )  # fmt: skip
        costs += passes
        timings["polish"] = time.perf_counter() - t0
    return perm, costs


def check_finite(cost: float) -> None:
    """Raise if the matching cost overflowed."""
    if not math.isfinite(cost):
        msg = "the matching cost is not finite; check the scale of X and Y."
        raise FloatingPointError(msg)


def check_distributed(distributed: object) -> bool | dist.ProcessGroup:
    """Return ``distributed`` after checking it is a bool or a process group."""
    if isinstance(distributed, bool) or (dist.is_available() and isinstance(distributed, dist.ProcessGroup)):
        return distributed
    msg = f"`distributed` must be True, False or a torch.distributed ProcessGroup, got {type(distributed).__name__}."
    raise TypeError(msg)


def check_distributable(settings: Settings) -> None:
    """Raise for the options that a distributed run does not support."""
    if settings.geometry.name != "sqeuclidean":
        msg = (
            f"`distributed` runs support cost='sqeuclidean' only, got {settings.geometry.name!r}: "
            "its exact factorization is what keeps the exchange per level small."
        )
        raise ValueError(msg)
    if settings.unbalanced == "subsample":
        msg = "`distributed` runs support unbalanced='partial' only; subsample the larger cloud before sharding."
        raise ValueError(msg)


def finish(
    perm: np.ndarray,
    labels_a: LevelLabels,
    labels_b: LevelLabels,
    *,
    kept: np.ndarray | None,
    swapped: bool,
    n_large: int,
    cost: float,
    ranks: list[int],
    level_costs: list[float],
    timings: dict[str, float],
    memory: dict[str, int],
    geometry: Cost,
    dropped: np.ndarray,
    refine_costs: list[float],
    n_y: int,
    t_start: float,
    communication: dict[str, int] | None = None,
    world_size: int = 1,
) -> Matching:
    """The :class:`Matching` in the caller's numbering: undo the subsample, then the swap."""
    n = perm.shape[0]
    if kept is not None:
        perm = kept[perm]
        labels_b = labels_b.map(lambda lab: _spread(lab, kept, n_large))
    if swapped:
        perm = _spread(np.arange(n), perm, n_large)
        labels_a, labels_b = labels_b, labels_a
    timings["total"] = time.perf_counter() - t_start
    return Matching(
        perm=perm,
        cost=cost,
        schedule=ranks,
        labels_x=labels_a,
        labels_y=labels_b,
        level_costs=level_costs,
        timings=timings,
        memory=memory,
        cost_name=geometry.name,
        dropped=dropped,
        refine_costs=refine_costs,
        n_y=n_y,
        communication=communication or {},
        world_size=world_size,
    )
