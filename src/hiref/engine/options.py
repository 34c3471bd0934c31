"""The options of a solve: :class:`SolveOptions` (public, typed, frozen) and the :class:`Plan` of one problem.

:class:`SolveOptions` holds every algorithmic option of :func:`hiref.solve` and checks them once,
when it is made; :func:`hiref.solve`, :func:`hiref.tl.align` and the ``hiref align`` command all
take one. Options that depend on the problem (the leaf size, the window size, whether to refine
and polish) are resolved for its dimension and size by :meth:`SolveOptions.plan`.

Each field's ``metadata`` holds its one-line ``help`` (shown by ``hiref align --help``) and whether
the command line offers it (``cli``); the command's flags are generated from the fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from hiref.engine.checks import check_bool, check_choice, check_positive_float, check_positive_int, resolve_dtype
from hiref.engine.geometry.costs import Cost, get_cost
from hiref.engine.schedule import check_max_rank, check_schedule, rank_schedule
from hiref.engine.split.level import LevelOptions

#: Working dimension above which ``refine=None`` refines by windows (before the polish).
WINDOWS_MIN_DIM = 16
#: Largest cloud (points of the larger side) for which ``refine=None`` refines by windows.
AUTO_FINISH_MAX = 1 << 18
#: Largest cloud for which ``polish=None`` runs the exact finish in at most 16 working dimensions
#: (above, as for the windows: :data:`AUTO_FINISH_MAX` points and :data:`AUTO_FINISH_WORK` points
#: x dimensions). Planted tissue pairs, 2 cores: exact with 99.9995 % true partners or more at
#: 2**20 in 25-31 s in all and 1.2 GB, at 2**22 in 108-152 s and 3.8 GB, at 2**23 in 252 s and
#: 7.2 GB, where the hierarchy alone ends about 15 % above the optimum.
AUTO_POLISH_MAX = 1 << 23
#: Above :data:`AUTO_FINISH_MAX` points, the finish that ``polish=None`` turned on starts no new
#: round of pricing after this much work per point of the larger cloud, and no solve works far
#: past it. Work is counted in bids of the auction (a step of a shortest-path search counts two,
#: a round of pricing :data:`~hiref.engine.finish.polish.PRICING_WORK` per point), not in
#: seconds: the same data and options give the same matching on any machine and under any load
#: (with eight times the levels' time instead, seed 1 of the sections below ended 0.11 % or
#: 0.006 % above the optimum depending on the run). On 2 cores that is about 100 s per million
#: points, close to that time budget. Planted pairs end well within it (2**20, density, seed 1:
#: 76 per point). Two sections of one tissue are harder (``benchmarks/sections.py``: the
#: simulated sections of the recipe, registered, 300,000 cells each, seeds 0-2): the first solve
#: alone takes about 100 bids per point from the subsample's dual, and the default ends within
#: 0.0009 % of the optimum on every seed in 25-30.5 s (with twice the levels' time, 0.076 %,
#: 0.92 % and 0.20 % in 14 s); at 10**6 cells (seed 0) within 0.00095 %, in 123-142.5 s. A partial matching
#: (more points in the larger cloud) gets the same. ``polish=True`` has no limit.
AUTO_FINISH_WORK_PER_POINT = 400
#: The same for other costs (the Euclidean distance and its powers), four times as much: their
#: levels take about four times as long (the budget of eight times the levels' time gave them
#: that), and their auctions and pricing work more per point (values tie along rays near the
#: optimum). Planted density pair of 300,000 points, Euclidean cost, 2 cores: the first solve
#: makes 238 million bids; with 400 per point it ran out and kept the hierarchy's matching
#: (107 s, certified within 59 %), with this the finish stops after that solve as under the
#: time budget (0.32 % above the optimum, certified within 0.83 %; to the optimum: 502 s).
AUTO_FINISH_WORK_PER_POINT_OTHER_COSTS = 1600
#: Largest points x dimensions for which they do: exact distances and window re-solves grow with
#: both, about linearly (89,344 points in 97 dimensions, 2**23: 24 s of windows and 24 s of polish
#: after 16 s of hierarchy, for 4.5 % less cost; 65,536 points in 2,048 dimensions, 2**27: over
#: 14 minutes against 52 s for the hierarchy).
AUTO_FINISH_WORK = 1 << 24


def _help(text: str, *, cli: bool = True, choices: tuple[str, ...] = ()) -> dict[str, Any]:
    """A field's metadata: its one-line ``help``, whether the command line offers it, its string choices."""
    return {"help": text, "cli": cli, "choices": choices}


@dataclass(frozen=True)
class SolveOptions:
    """Every algorithmic option of :func:`hiref.solve`, checked once when made.

    Frozen: derive a variant with :meth:`replace` (``opts.replace(leaf_size=256)``). Equal
    options give the same matching for the same data, seed and device. The parameters are
    described in :func:`hiref.solve`.

    Examples
    --------
    >>> import hiref as hr
    >>> opts = hr.engine.SolveOptions(leaf_size=256, polish=False)
    >>> opts.replace(n_starts=8).n_starts
    8
    """

    cost: str | Cost | Callable = field(
        default="sqeuclidean", metadata=_help("ground cost", choices=("sqeuclidean", "euclidean"))
    )
    unbalanced: str = field(
        default="partial",
        metadata=_help(
            "with different numbers of points: leave out the points the transport leaves out (partial) or random ones "
            "(subsample)",
            choices=("partial", "subsample"),
        ),
    )
    refine: bool | None = field(
        default=None,
        metadata=_help("re-solve exactly over windows of neighbouring pairs (default: above 16 dimensions)"),
    )
    polish: bool | None = field(
        default=None,
        metadata=_help(
            "exact finish on one sparse graph of candidate partners, with an optimality certificate (default: up to "
            "2^23 points in at most 16 working dims, else 2^18 points and 2^24 points x dims)"
        ),
    )
    polish_neighbours: int = field(default=8, metadata=_help("candidate partners per point and kind in the finish"))
    schedule: tuple[int, ...] | None = field(
        default=None, metadata=_help("rank of every level (default: chosen for the size by the schedule)")
    )
    max_rank: int = field(default=2, metadata=_help("largest rank of a level when the schedule is chosen"))
    leaf_size: int | None = field(
        default=None, metadata=_help("largest co-cluster solved exactly (default: 64, 512 or 2048 by dimension)")
    )
    n_iter: int = field(default=60, metadata=_help("mirror-descent iterations per level"))
    step: float = field(default=1.0, metadata=_help("mirror-descent step size", cli=False))
    n_starts: int = field(default=16, metadata=_help("random starts of the coarse search per level"))
    restart_blocks: int = field(default=4, metadata=_help("restarts for at most this many blocks per level", cli=False))
    coarse_size: int = field(default=8192, metadata=_help("subsample size of the coarse search per block"))
    refine_passes: int = field(default=8, metadata=_help("most passes of window refinement"))
    refine_window: int | None = field(
        default=None, metadata=_help("pairs per refinement window (default: min(2 * leaf size, 1024))")
    )
    sketch_dim: int | None = field(
        default=128, metadata=_help("levels work on this many principal axes of higher-dimensional data (none: never)")
    )
    dtype: str | torch.dtype | None = field(
        default=None,
        metadata=_help("working precision of the levels (default: float32)", choices=("float32", "float64")),
    )

    def __post_init__(self) -> None:
        check_choice(self.unbalanced, "unbalanced", ("partial", "subsample"))
        get_cost(self.cost)
        for name in ("refine", "polish"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_bool(value, name))
        check_positive_int(self.polish_neighbours, "polish_neighbours")
        if self.schedule is not None:
            if isinstance(self.schedule, str) or not hasattr(self.schedule, "__iter__"):
                msg = f"`schedule` must be a list of ints (one rank per level), got {type(self.schedule).__name__}."
                raise TypeError(msg)
            ranks = tuple(check_positive_int(r, "schedule entries", minimum=2) for r in self.schedule)
            object.__setattr__(self, "schedule", ranks)
        check_max_rank(self.max_rank)
        for name, minimum in (("leaf_size", 1), ("refine_window", 2), ("sketch_dim", 1)):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name, minimum=minimum)
        for name, minimum in (("n_iter", 0), ("n_starts", 1), ("restart_blocks", 0), ("coarse_size", 2)):
            check_positive_int(getattr(self, name), name, minimum=minimum)
        check_positive_float(self.step, "step")
        check_positive_int(self.refine_passes, "refine_passes", minimum=0)
        if self.refine is True and self.refine_passes == 0:
            msg = "`refine=True` needs `refine_passes` of at least 1, got 0; pass refine=False to skip the windows."
            raise ValueError(msg)
        resolve_dtype(self.dtype)

    @classmethod
    def make(cls, options: SolveOptions | Mapping[str, Any] | None = None, **overrides: Any) -> SolveOptions:
        """Options from ``options`` (a :class:`SolveOptions`, a mapping of its fields, or ``None``) and ``overrides``.

        Unknown names raise a :class:`TypeError` that lists the valid ones.
        """
        if options is None:
            base: dict[str, Any] = {}
        elif isinstance(options, SolveOptions):
            base = {f.name: getattr(options, f.name) for f in dataclasses.fields(cls)}
        elif isinstance(options, Mapping):
            base = dict(options)
        else:
            msg = f"`options` must be a SolveOptions, a dict of its fields or None, got {type(options).__name__}."
            raise TypeError(msg)
        merged = {**base, **overrides}
        unknown = sorted(set(merged) - set(cls.names()))
        if unknown:
            msg = f"unknown solver option(s) {unknown}; valid options are {cls.names()}."
            raise TypeError(msg)
        return cls(**merged)

    @classmethod
    def names(cls) -> list[str]:
        """The option names, in the order of the fields."""
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> SolveOptions:
        """A copy with ``changes`` applied (and checked)."""
        return SolveOptions.make(self, **changes)

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults, by name."""
        default = SolveOptions()
        return {name: getattr(self, name) for name in self.names() if getattr(self, name) != getattr(default, name)}

    def plan(self, d: int) -> Plan:
        """These options resolved for ``d``-dimensional points."""
        # Exact assignment is cheap on high-dimensional blocks and each split costs more there
        # (more of the transport is noise that only an exact solve can use), so high dimensions
        # get fewer, larger leaves.
        leaf_size = self.leaf_size if self.leaf_size is not None else 64 if d <= 4 else 512 if d <= 256 else 2048
        window = self.refine_window if self.refine_window is not None else min(2 * leaf_size, 1024)
        level = LevelOptions(
            n_iter=self.n_iter, step=float(self.step), n_starts=self.n_starts,
            restart_blocks=self.restart_blocks, coarse_size=self.coarse_size,
        )  # fmt: skip
        return Plan(
            options=self, geometry=get_cost(self.cost), d=d, leaf_size=int(leaf_size), refine_window=int(window),
            level=level, work_dtype=resolve_dtype(self.dtype),
        )  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """:class:`SolveOptions` resolved for one problem's dimension ``d``: what the driver reads."""

    options: SolveOptions
    geometry: Cost
    d: int
    leaf_size: int
    refine_window: int
    level: LevelOptions
    work_dtype: torch.dtype

    @property
    def sketched(self) -> bool:
        """Whether the levels work on a principal-axes sketch of the data."""
        dim = self.options.sketch_dim
        return self.geometry.sketchable and dim is not None and self.d > dim

    def ranks(self, n_large: int) -> list[int]:
        """Rank of every level for a larger cloud of ``n_large`` points."""
        if self.options.schedule is None:
            return rank_schedule(n_large, max_rank=self.options.max_rank, leaf_size=self.leaf_size, objective="work")
        return check_schedule(n_large, list(self.options.schedule), self.leaf_size)

    def finishing(self, n_large: int, *, priced: bool = False) -> tuple[bool, bool]:
        """Whether to refine by windows and whether to polish on a sparse graph (see :func:`hiref.solve`).

        ``refine=None`` refines in more than :data:`WINDOWS_MIN_DIM` working dimensions, where
        nearest neighbours alone find few of the missing partners and windows pay most, up to
        :data:`AUTO_FINISH_MAX` points and :data:`AUTO_FINISH_WORK` points x dimensions, unless the
        exact finish runs and can price every point (``priced``): it then finds every missing
        partner itself, in less time than the windows take (Gaussian mixtures, 4,096 points in
        30 dimensions: 2.2-2.5 s in all without them, 3.3-3.5 s with them first);
        ``polish=None`` runs the exact finish up to :data:`AUTO_POLISH_MAX` points in at most
        :data:`WINDOWS_MIN_DIM` working dimensions, and above on the clouds that the windows take.
        """
        opts = self.options
        work_d = opts.sketch_dim if self.sketched else self.d
        small = n_large <= AUTO_FINISH_MAX and n_large * self.d <= AUTO_FINISH_WORK
        if opts.polish is not None:
            polish = opts.polish
        else:  # nearest neighbours in high dimensions are exact scans over all pairs
            polish = n_large <= AUTO_POLISH_MAX if work_d <= WINDOWS_MIN_DIM else small
        if opts.refine is not None:
            refine = opts.refine
        else:
            refine = small and work_d > WINDOWS_MIN_DIM and not (polish and priced)
        return refine and opts.refine_passes > 0, polish

    def finish_work_budget(self, n_large: int) -> int | None:
        """Work (in bids) the exact finish may do (``None``: no limit); see :data:`AUTO_FINISH_WORK_PER_POINT`."""
        if self.options.polish is not None or n_large <= AUTO_FINISH_MAX:
            return None
        if self.geometry.name == "sqeuclidean":
            return AUTO_FINISH_WORK_PER_POINT * n_large
        return AUTO_FINISH_WORK_PER_POINT_OTHER_COSTS * n_large

    def check_distributable(self) -> None:
        """Raise for the options that a distributed run does not support."""
        if self.geometry.name != "sqeuclidean":
            msg = (
                f"`distributed` runs support cost='sqeuclidean' only, got {self.geometry.name!r}: "
                "its exact factorization is what keeps the exchange per level small."
            )
            raise ValueError(msg)
        if self.options.unbalanced == "subsample":
            msg = "`distributed` runs support unbalanced='partial' only; subsample the larger cloud before sharding."
            raise ValueError(msg)
