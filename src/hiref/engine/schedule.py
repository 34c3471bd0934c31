"""Rank-annealing schedules: how many children each level splits its co-clusters into.

With ``n`` points and ranks ``r_1, ..., r_L``, the co-clusters after level ``l`` have
``floor(n / P_l)`` or ``ceil(n / P_l)`` points, where ``P_l = r_1 * ... * r_l``: the floors and
ceilings compose (``floor(floor(n / P) / r) == floor(n / (P r))``), so uneven child sizes keep
every level within one point of even and any ``n`` works, primes included.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Literal

from hiref.engine.checks import check_positive_int


def block_sizes(n: int, schedule: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """Smallest and largest co-cluster size before each level and after the last one.

    Parameters
    ----------
    n
        Number of points per side.
    schedule
        Ranks, one per level.

    Returns
    -------
    ``len(schedule) + 1`` pairs ``(floor(n / P), ceil(n / P))``.
    """
    sizes = [(n, n)]
    lo, hi = n, n
    for r in schedule:
        lo, hi = lo // r, -(-hi // r)
        sizes.append((lo, hi))
    return sizes


#: Largest rank of a level that :func:`hiref.solve` accepts. A level's low-rank problem grows
#: with its rank (work ``O(n r)`` per step, more candidate splits and a harder balanced rounding),
#: and one high-rank level is both slower and less accurate than several small ones: a schedule
#: ``[400]`` for 400 points took minutes and cost 50 % more than the default binary schedule.
MAX_RANK = 64


def check_max_rank(value: object) -> int:
    """Return ``max_rank`` after checking it is an int in ``[2, MAX_RANK]``."""
    rank = check_positive_int(value, "max_rank", minimum=2)
    if rank > MAX_RANK:
        msg = (
            f"`max_rank` must be at most {MAX_RANK}, got {rank}: a level of higher rank is slower and less "
            "accurate than several levels of small rank."
        )
        raise ValueError(msg)
    return rank


def check_schedule(n: int, schedule: list[int] | tuple[int, ...], leaf_size: int) -> list[int]:
    """Validate a user schedule for ``n`` points and return it as a list of ints.

    Every rank must be at least 2, at most :data:`MAX_RANK` and at most the smallest co-cluster
    it splits, and the last level must leave co-clusters of at most ``leaf_size`` points.
    """
    if isinstance(schedule, str) or not hasattr(schedule, "__iter__"):
        msg = f"`schedule` must be a list of ints (one rank per level), got {type(schedule).__name__}."
        raise TypeError(msg)
    ranks = [check_positive_int(r, "schedule entries", minimum=2) for r in schedule]
    too_large = [r for r in ranks if r > MAX_RANK]
    if too_large:
        msg = (
            f"`schedule` ranks must be at most {MAX_RANK}, got {too_large[0]}: a level of higher rank is slower "
            f"and less accurate than several levels of small rank (e.g. schedule=None, or ranks 2 to {MAX_RANK})."
        )
        raise ValueError(msg)
    lo, hi = n, n
    for level, r in enumerate(ranks):
        if r > lo:
            msg = (
                f"`schedule` rank {r} at level {level} exceeds the smallest co-cluster there ({lo} points); "
                f"the product of the ranks must not exceed n={n}."
            )
            raise ValueError(msg)
        lo, hi = lo // r, -(-hi // r)
    if hi > leaf_size:
        msg = (
            f"`schedule` {ranks} leaves co-clusters of up to {hi} points, more than leaf_size={leaf_size}; "
            f"add levels or raise `leaf_size`."
        )
        raise ValueError(msg)
    return ranks


def rank_schedule(
    n: int,
    *,
    max_rank: int = 16,
    max_depth: int | None = None,
    leaf_size: int = 1,
    objective: Literal["calls", "work"] = "calls",
) -> list[int]:
    """Rank-annealing schedule by dynamic programming (HiRef paper, Sec. 3.3 and App. E.1).

    Chooses ranks ``r_1, ..., r_L`` with ``2 <= r_l <= max_rank`` and ``L <= max_depth`` whose
    co-clusters end at no more than ``leaf_size`` points, minimising

    - ``"calls"``: the paper's objective, the sum of partial products ``r_1 + r_1 r_2 + ...``,
      i.e. the number of low-rank problems solved (each level's blocks, then the leaves);
    - ``"work"``: the sum of ranks ``r_1 + r_2 + ...``, proportional to the time of a batched
      engine, in which a level costs ``O(n r)`` however many blocks it has.

    With ``leaf_size=1`` and ``n`` a product of factors up to ``max_rank`` this is the paper's
    setting; otherwise child sizes are uneven (``floor``/``ceil``), so every ``n`` has a schedule.

    Parameters
    ----------
    n
        Number of points per side.
    max_rank
        Largest rank of any level (bounds the memory of a level, ``O(n * max_rank)``).
    max_depth
        Largest number of levels; ``None`` for no bound.
    leaf_size
        Largest co-cluster left after the last level (solved exactly).
    objective
        What to minimise, see above.

    Returns
    -------
    The ranks, one per level (empty when ``n <= leaf_size``).

    Examples
    --------
    >>> rank_schedule(1024, max_rank=32, max_depth=2)
    [32, 32]
    >>> rank_schedule(4096, max_rank=16, leaf_size=64)
    [4, 16]
    >>> rank_schedule(100_003, max_rank=16, leaf_size=128, objective="work")
    [2, 2, 2, 2, 2, 3, 3, 3]
    """
    n = check_positive_int(n, "n")
    max_rank = check_positive_int(max_rank, "max_rank", minimum=2)
    leaf_size = check_positive_int(leaf_size, "leaf_size")
    if max_depth is not None:
        max_depth = check_positive_int(max_depth, "max_depth", minimum=0)
    if objective not in ("calls", "work"):
        msg = f"`objective` must be 'calls' or 'work', got {objective!r}."
        raise ValueError(msg)
    if n <= leaf_size:
        return []
    depth_cap = max_depth if max_depth is not None else max(1, math.ceil(math.log2(n)))

    @cache
    def best(lo: int, hi: int, depth: int) -> tuple[float, tuple[int, ...]]:
        if hi <= leaf_size:
            return 0.0, ()
        if depth == 0:
            return math.inf, ()
        found: tuple[float, tuple[int, ...]] = (math.inf, ())
        for r in range(2, min(max_rank, lo) + 1):
            clo, chi = lo // r, -(-hi // r)
            rest, ranks = best(clo, chi, depth - 1)
            if rest == math.inf:
                continue
            step = 2.0 * n / (clo + chi) if objective == "calls" else float(r)
            total = step + rest
            if total < found[0] - 1e-9:
                found = (total, (r, *ranks))
        return found

    cost, ranks = best(n, n, depth_cap)
    if cost == math.inf:
        msg = (
            f"no schedule reaches co-clusters of at most leaf_size={leaf_size} from n={n} with "
            f"max_rank={max_rank} and max_depth={max_depth}; raise one of them."
        )
        raise ValueError(msg)
    return list(ranks)
