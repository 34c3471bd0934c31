"""The result of a solve, :class:`Matching`, and its translation into the caller's numbering."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hiref.engine.labels import LevelLabels


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
    lower_bound
        A lower bound on the optimal mean cost over all one-to-one matchings of the two clouds
        (every point of the smaller one matched), from a dual solution; ``None`` where none was
        computed (a distributed run, or no exact c-transform within budget: a cost other than
        squared Euclidean or more than 16 dimensions on large clouds). See :attr:`gap_bound`.
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
    lower_bound: float | None = None

    @property
    def gap_bound(self) -> float | None:
        """How far above the optimum the matching can be, at most: ``(cost - lower_bound) / lower_bound``.

        A certificate: the true relative gap ``(cost - optimum) / optimum`` is never larger.
        ``0.0`` when the cost is 0; ``inf`` when the bound is not positive; ``None`` without a bound.
        """
        if self.lower_bound is None:
            return None
        if self.cost <= 0.0:
            return 0.0
        if self.lower_bound <= 0.0:
            return float("inf")
        return max(0.0, (self.cost - self.lower_bound) / self.lower_bound)

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


@dataclass
class Arrangement:
    """How the engine's problem (smaller cloud A into larger B) relates to the caller's X and Y.

    Attributes
    ----------
    swapped
        Whether A is Y (X was the larger cloud).
    n_large
        Points of the larger cloud as given.
    n_y
        Points of Y as given.
    kept
        With ``unbalanced="subsample"``: the sorted indices of the larger cloud's points kept;
        else ``None``.
    dropped
        The sorted indices of the larger cloud's points left out (empty unless subsampled).
    """

    swapped: bool
    n_large: int
    n_y: int
    kept: np.ndarray | None = None
    dropped: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


@dataclass
class Outcome:
    """What the driver found, in the engine's numbering (A into B): see :class:`Matching`."""

    perm: np.ndarray
    labels_a: LevelLabels
    labels_b: LevelLabels
    cost: float
    ranks: list[int]
    level_costs: list[float]
    refine_costs: list[float]
    timings: dict[str, float]
    memory: dict[str, int]
    communication: dict[str, int] = field(default_factory=dict)
    world_size: int = 1
    lower_bound: float | None = None


def _spread(values: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """An int64 array of ``size`` entries, ``-1`` except ``values`` at positions ``at``."""
    out = np.full(size, -1, dtype=np.int64)
    out[at] = values
    return out


def caller_matching(out: Outcome, arrangement: Arrangement, *, cost_name: str, t_start: float) -> Matching:
    """The :class:`Matching` in the caller's numbering: undo the subsample, then the swap."""
    perm, labels_a, labels_b = out.perm, out.labels_a, out.labels_b
    n = perm.shape[0]
    kept, n_large = arrangement.kept, arrangement.n_large
    if kept is not None:
        perm = kept[perm]
        labels_b = labels_b.map(lambda lab: _spread(lab, kept, n_large))
    if arrangement.swapped:
        perm = _spread(np.arange(n), perm, n_large)
        labels_a, labels_b = labels_b, labels_a
    out.timings["total"] = time.perf_counter() - t_start
    return Matching(
        perm=perm,
        cost=out.cost,
        schedule=out.ranks,
        labels_x=labels_a,
        labels_y=labels_b,
        level_costs=out.level_costs,
        timings=out.timings,
        memory=out.memory,
        cost_name=cost_name,
        dropped=arrangement.dropped,
        refine_costs=out.refine_costs,
        n_y=arrangement.n_y,
        communication=out.communication,
        world_size=out.world_size,
        lower_bound=out.lower_bound,
    )
