from __future__ import annotations

import math

import pytest

from hiref.engine import rank_schedule
from hiref.engine.schedule import block_sizes, check_schedule


def partial_products(ranks):
    out, p = [], 1
    for r in ranks:
        p *= r
        out.append(p)
    return out


def brute_force(n, max_rank):
    """Least sum of partial products over all exact factorisations of n into ranks <= max_rank."""
    if n == 1:
        return 0
    best = math.inf
    for r in range(2, min(max_rank, n) + 1):
        if n % r == 0:
            # The first rank r leaves n / r points per block; the partial products of the rest
            # are all multiplied by r.
            best = min(best, r + r * brute_force(n // r, max_rank))
    return best


@pytest.mark.parametrize("n", [2, 12, 60, 64, 97, 128, 360, 1000, 5040])
@pytest.mark.parametrize("max_rank", [2, 3, 8])
def test_paper_setting_is_optimal_by_brute_force(n, max_rank):
    # Leaf size 1: the ranks must bring every co-cluster down to a single point. When n factors
    # into ranks <= max_rank the co-clusters are even and the objective is the paper's sum of
    # partial products r1 + r1 r2 + ...; compare with every factorisation.
    best = brute_force(n, max_rank)
    if best == math.inf:  # n has a prime factor above max_rank: uneven children are needed,
        # which can leave blocks of 1 and 2 points, so single-point leaves may be out of reach.
        ranks = rank_schedule(n, max_rank=max_rank, leaf_size=2)
        assert block_sizes(n, ranks)[-1][1] <= 2
        return
    ranks = rank_schedule(n, max_rank=max_rank)
    assert math.prod(ranks) == n
    assert sum(partial_products(ranks)) == best


def test_prime_n_uses_uneven_children():
    ranks = rank_schedule(100_003, max_rank=16, leaf_size=64)
    sizes = block_sizes(100_003, ranks)
    assert sizes[-1][1] <= 64
    assert all(lo >= 1 and hi - lo <= 1 for lo, hi in sizes)
    assert all(2 <= r <= 16 for r in ranks)


@pytest.mark.parametrize("objective", ["calls", "work"])
def test_depth_and_rank_caps(objective):
    ranks = rank_schedule(4096, max_rank=64, max_depth=2, objective=objective)
    assert len(ranks) <= 2
    assert max(ranks) <= 64
    assert block_sizes(4096, ranks)[-1][1] == 1
    assert rank_schedule(4096, max_rank=2, leaf_size=64) == [2] * 6
    # The "work" objective (sum of ranks) prefers many small ranks.
    assert sum(rank_schedule(4096, max_rank=16, leaf_size=1, objective="work")) <= sum(
        rank_schedule(4096, max_rank=16, leaf_size=1, objective="calls")
    )


def test_small_n_needs_no_level():
    assert rank_schedule(50, leaf_size=64) == []


def test_impossible_request_names_the_limits():
    with pytest.raises(ValueError, match="max_rank=4 and max_depth=2"):
        rank_schedule(1000, max_rank=4, max_depth=2)
    with pytest.raises(ValueError, match="objective"):
        rank_schedule(100, objective="time")
    with pytest.raises(TypeError, match="`n` must be an int"):
        rank_schedule(100.0)


def test_check_schedule():
    assert check_schedule(100, (4, 5), leaf_size=5) == [4, 5]
    with pytest.raises(ValueError, match="exceeds the smallest co-cluster"):
        check_schedule(10, [4, 4], leaf_size=1)
    with pytest.raises(ValueError, match="leaves co-clusters of up to 25"):
        check_schedule(100, [4], leaf_size=5)
