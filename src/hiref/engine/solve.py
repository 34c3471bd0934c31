"""The level loop of Hierarchical Refinement (HiRef paper, Algorithm 1), batched over co-clusters."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from tqdm import tqdm

from ._resources import peak_device_bytes, peak_rss_bytes
from ._validate import (
    as_points,
    check_choice,
    check_features,
    check_positive_float,
    check_positive_int,
    resolve_device,
    resolve_dtype,
)
from .blocks import Blocks
from .costs import Cost, Transposed, get_cost
from .leaves import mean_paired_cost, solve_leaves
from .level import LevelOptions, Stack, split_level
from .refine import refine_matching
from .schedule import check_schedule, rank_schedule

if TYPE_CHECKING:
    from ._types import ArrayLike


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
        and of Y after that level (equal labels on the two sides mean the same co-cluster).
    level_costs
        Mean cost of the block coupling of every level (each point of the smaller cloud spread
        evenly over its co-cluster's points of the other), the initial single block first; the
        last entry is ``cost``. Exact for ``"sqeuclidean"``, a Monte-Carlo estimate otherwise.
    timings
        Seconds per level (``"level_1"``, ...), on the leaves, in ``"refine"`` and in total.
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
        Mean cost after each refinement pass (empty without refinement).
    """

    perm: np.ndarray
    cost: float
    schedule: list[int]
    labels_x: list[np.ndarray] = field(repr=False)
    labels_y: list[np.ndarray] = field(repr=False)
    level_costs: list[float]
    timings: dict[str, float]
    memory: dict[str, int] = field(default_factory=dict)
    cost_name: str = "sqeuclidean"
    dropped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)
    refine_costs: list[float] = field(default_factory=list)
    n_y: int = -1

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


def _record_memory(memory: dict[str, int], stage: str, device: torch.device) -> None:
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


def _sketch(
    A: torch.Tensor, B: torch.Tensor, dim: int | None, dtype: torch.dtype, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Working copies of both clouds, in ``dtype``; projected on ``dim`` principal axes if given.

    The axes come from a randomized SVD of up to 8192 points of each cloud, centred together.
    """
    if dim is None:
        return A.to(dtype), B.to(dtype)
    pick_a = torch.randperm(A.shape[0], generator=generator)[:8192].to(A.device)
    pick_b = torch.randperm(B.shape[0], generator=generator)[:8192].to(B.device)
    sample = torch.cat([A[pick_a], B[pick_b]]).to(dtype)
    centre = sample.mean(0)
    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))  # svd_lowrank draws globally
    try:
        _, _, V = torch.svd_lowrank(sample - centre, q=min(dim + 10, *sample.shape), niter=3)
    finally:
        torch.random.set_rng_state(state)
    basis = V[:, :dim]

    def project(P: torch.Tensor) -> torch.Tensor:
        rows = max(1, (1 << 24) // P.shape[1])
        return torch.cat([(P[lo : lo + rows].to(dtype) - centre) @ basis for lo in range(0, P.shape[0], rows)])

    return project(A), project(B)


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
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[float]]:
    """The level loop on the working copies ``Aw``, ``Bw`` and the exact leaves on ``A``, ``B``.

    Needs ``len(A) <= len(B)``; fills ``timings`` and ``memory``.
    """
    dev = A.device
    blocks = Blocks.whole(A.shape[0], B.shape[0], dev)
    ids_a: list[torch.Tensor] = []
    ids_b: list[torch.Tensor] = []
    bar = tqdm(total=len(ranks) + 1, desc="hiref", unit="level", disable=not progress, leave=False)
    for level, rank in enumerate(ranks, start=1):
        t0 = time.perf_counter()
        bar.set_postfix_str(f"level {level}: {blocks.n_blocks} block(s) -> rank {rank}")
        side_a, side_b = blocks.padded()
        stack = Stack(Aw[blocks.ix[side_a.pos]], Bw[blocks.iy[side_b.pos]], side_a.mask, side_b.mask)
        lab_a, lab_b, caps_a, caps_b = split_level(geometry, stack, rank, generator, options)
        del stack
        blocks = blocks.refine(side_a, side_b, lab_a, lab_b, caps_a, caps_b)
        level_a, level_b = blocks.labels()
        ids_a.append(level_a)
        ids_b.append(level_b)
        timings[f"level_{level}"] = time.perf_counter() - t0
        _record_memory(memory, f"level_{level}", dev)
        bar.update()
    t0 = time.perf_counter()
    bar.set_postfix_str(f"leaves: {blocks.n_blocks} exact problem(s)")
    perm = solve_leaves(geometry, A, B, blocks)
    timings["leaves"] = time.perf_counter() - t0
    _record_memory(memory, "leaves", dev)
    bar.update()
    bar.close()
    level_costs = geometry.level_costs(A, B, ids_a, ids_b, generator)
    return perm, [i.cpu().numpy() for i in ids_a], [i.cpu().numpy() for i in ids_b], level_costs


def solve(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    cost: str | Cost | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "sqeuclidean",
    unbalanced: Literal["partial", "subsample"] = "partial",
    refine: bool = False,
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
    seed: int = 0,
    progress: bool = True,
) -> Matching:
    """Match two point clouds by Hierarchical Refinement.

    Every level splits each co-cluster of X and Y into ``r`` children of exactly equal sizes
    on both sides, found by low-rank optimal transport solved for all co-clusters of the level
    at once; the final co-clusters (at most ``leaf_size`` points) are matched exactly.

    Memory: the inputs, a working copy in ``dtype`` and ``O((n + m) r)`` per level; nothing
    quadratic in ``n`` beyond ``leaf_size``, ``refine_window`` and the subsamples of
    ``coarse_size`` points. On the CPU, ``n = 2**20`` points in 2-D peak at about 1.2 GB of
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
        partitions of the pairs), for at most ``refine_passes`` passes while it gains. Never raises the cost;
        typically 2-3 times the unrefined time, and worth most in high dimension.
    schedule
        Ranks of the levels; by default :func:`rank_schedule` with ``max_rank`` and ``leaf_size``.
    max_rank
        Largest rank of the default schedule (which minimises the sum of ranks, the work of a
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
        Seed of every random choice; the same seed on the same device gives the same matching.
    progress
        Show a progress bar over levels.

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
    X_in, Y_in = as_points(X, "X"), as_points(Y, "Y")
    check_features(X_in, Y_in)
    check_choice(unbalanced, "unbalanced", ("partial", "subsample"))
    dev = resolve_device(device)
    work_dtype = resolve_dtype(dtype)
    d = X_in.shape[1]
    # Exact assignment is cheap on high-dimensional blocks and each split costs more there (more
    # of the transport is noise that only an exact solve can use), so high dimensions get fewer,
    # larger leaves.
    if leaf_size is None:
        leaf_size = 64 if d <= 4 else 512 if d <= 256 else 2048
    leaf_size = check_positive_int(leaf_size, "leaf_size")
    options = LevelOptions(
        n_iter=check_positive_int(n_iter, "n_iter", minimum=0),
        step=check_positive_float(step, "step"),
        n_starts=check_positive_int(n_starts, "n_starts"),
        restart_blocks=check_positive_int(restart_blocks, "restart_blocks", minimum=0),
        coarse_size=check_positive_int(coarse_size, "coarse_size", minimum=2),
    )
    refine_passes = check_positive_int(refine_passes, "refine_passes", minimum=0)
    if refine_window is None:
        refine_window = min(2 * leaf_size, 1024)
    refine_window = check_positive_int(refine_window, "refine_window", minimum=2)
    if sketch_dim is not None:
        sketch_dim = check_positive_int(sketch_dim, "sketch_dim")
    geometry = get_cost(cost)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    # The engine matches a smaller (or equal) cloud into a larger one; swap if X is larger.
    swapped = X_in.shape[0] > Y_in.shape[0]
    small, large = (Y_in, X_in) if swapped else (X_in, Y_in)
    geometry_ab = Transposed(geometry) if swapped and not geometry.symmetric else geometry
    n, n_large = small.shape[0], large.shape[0]
    dropped = np.empty(0, dtype=np.int64)
    kept = None
    if unbalanced == "subsample" and n < n_large:
        order = torch.randperm(n_large, generator=generator)
        kept = torch.sort(order[:n]).values.numpy()
        dropped = torch.sort(order[n:]).values.numpy()
    # Exact computations (leaves, reported costs) read the inputs as given, in float64 a chunk
    # at a time; the levels work on one copy in the working precision.
    A = small.to(dev)
    B = large.to(dev)
    if kept is not None:
        B = B[torch.as_tensor(kept, device=dev)]
    ranks = (
        rank_schedule(B.shape[0], max_rank=max_rank, leaf_size=leaf_size, objective="work")
        if schedule is None
        else check_schedule(B.shape[0], schedule, leaf_size)
    )

    t0 = time.perf_counter()
    sketched = geometry.sketchable and sketch_dim is not None and A.shape[1] > sketch_dim
    Aw, Bw = _sketch(A, B, sketch_dim if sketched else None, work_dtype, generator)
    timings: dict[str, float] = {"sketch": time.perf_counter() - t0} if sketched else {}
    perm, labels_a, labels_b, level_costs = _hierarchy(
        geometry_ab, A, B, Aw, Bw, ranks, options, generator, timings, memory := {}, progress=progress
    )
    del Aw, Bw
    refine_costs: list[float] = []
    if refine and refine_passes:
        t0 = time.perf_counter()
        perm, refine_costs = refine_matching(
            geometry_ab, A, B, perm, passes=refine_passes, window=refine_window, generator=generator,
            work_dtype=work_dtype,
        )  # fmt: skip
        timings["refine"] = time.perf_counter() - t0
    matched = mean_paired_cost(geometry_ab, A, B, perm)
    level_costs.append(matched)
    if not math.isfinite(matched):
        msg = "the matching cost is not finite; check the scale of X and Y."
        raise FloatingPointError(msg)

    # Back to the caller's numbering: undo the subsample, then the swap.
    if kept is not None:
        perm = kept[perm]
        labels_b = [_spread(lab, kept, n_large) for lab in labels_b]
    if swapped:
        perm = _spread(np.arange(n), perm, n_large)
        labels_a, labels_b = labels_b, labels_a
    timings["total"] = time.perf_counter() - t_start
    return Matching(
        perm=perm,
        cost=matched,
        schedule=ranks,
        labels_x=labels_a,
        labels_y=labels_b,
        level_costs=level_costs,
        timings=timings,
        memory=memory,
        cost_name=geometry.name,
        dropped=dropped,
        refine_costs=refine_costs,
        n_y=int(Y_in.shape[0]),
    )
