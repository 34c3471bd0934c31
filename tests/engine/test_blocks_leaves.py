from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from hiref.engine import _assign as assign_module
from hiref.engine import blocks as blocks_module
from hiref.engine._assign import assign_many
from hiref.engine.blocks import Blocks, _padded, _regroup, _regroup_sorted, child_capacities
from hiref.engine.finish.auction import assign_stack
from hiref.engine.finish.leaves import solve_leaves
from hiref.engine.geometry.costs import SqEuclidean
from hiref.engine.split.consistency import broken_pairs

from helpers import exact_matching


def test_child_capacities_floor_ceil():
    caps = child_capacities(torch.tensor([10, 11, 3]), 3)
    assert caps.tolist() == [[4, 3, 3], [4, 4, 3], [1, 1, 1]]


def test_refine_groups_children_contiguously():
    sizes = torch.tensor([6, 4])
    blocks = Blocks(torch.arange(10), torch.arange(10).flip(0), sizes, sizes.clone())
    side_x, side_y = blocks.padded()
    assert side_x.pos.shape == (2, 6)
    assert side_x.mask.sum().item() == 10
    lab = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 0]])
    caps = torch.tensor([[3, 3], [2, 2]])
    child = blocks.split(side_x, side_y, lab, lab, caps, caps)
    assert child.sizes_x.tolist() == [3, 3, 2, 2]
    assert child.ix.tolist() == [1, 3, 5, 0, 2, 4, 6, 9, 7, 8]
    lx, ly = child.labels()
    assert torch.equal(lx[child.ix], torch.repeat_interleave(torch.arange(4), child.sizes_x))
    assert torch.equal(ly[child.iy], lx[child.ix])


def test_unequal_sides_and_empty_blocks():
    blocks = Blocks(torch.arange(3), torch.arange(7), torch.tensor([0, 3]), torch.tensor([2, 5]))
    side_x, _ = blocks.padded()
    assert side_x.mask.tolist() == [[False, False, False], [True, True, True]]
    assert int(side_x.pos.max()) <= 2  # padding of the empty block stays in range
    lx, ly = blocks.labels()
    assert lx.tolist() == [1, 1, 1]
    assert ly.tolist() == [0, 0, 1, 1, 1, 1, 1]


def test_leaves_are_solved_exactly():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(90, 2)))
    Y = torch.tensor(rng.normal(size=(90, 2)))
    ix, iy = torch.randperm(90), torch.randperm(90)
    sizes = torch.tensor([30, 31, 29])
    perm = solve_leaves(SqEuclidean(), X, Y, Blocks(ix, iy, sizes, sizes.clone()))
    offsets = [0, 30, 61, 90]
    for lo, hi in itertools.pairwise(offsets):
        xs, ys = ix[lo:hi].numpy(), iy[lo:hi].numpy()
        local, _ = exact_matching(X[xs].numpy(), Y[ys].numpy())
        assert np.array_equal(perm[xs], ys[local])


def test_rectangular_leaves_leave_extra_points_unmatched():
    rng = np.random.default_rng(2)
    X = torch.tensor(rng.normal(size=(20, 2)))
    Y = torch.tensor(rng.normal(size=(35, 2)))
    blocks = Blocks(torch.arange(20), torch.arange(35), torch.tensor([12, 8]), torch.tensor([15, 20]))
    perm = solve_leaves(SqEuclidean(), X, Y, blocks)
    assert len(set(perm.tolist())) == 20
    assert (perm[:12] < 15).all()
    assert (perm[12:] >= 15).all()


def test_broken_pairs_counts_separated_monge_pairs():
    rng = np.random.default_rng(1)
    X = torch.tensor(rng.normal(size=(1, 200, 2)))
    Y = X + 0.01  # the Monge map is the identity
    mask = torch.ones(1, 200, dtype=torch.bool)
    same = (X[0, :, 0] > 0).long()
    random = torch.tensor(rng.integers(0, 2, 200))
    labels_x = torch.stack([same, same])[None]  # one block, two candidates
    labels_y = torch.stack([same, random])[None]
    gen = torch.Generator().manual_seed(0)
    out = broken_pairs(SqEuclidean().dense, X, Y, mask, mask, labels_x, labels_y, gen, n_eval=100)[0]
    # Independent subsamples of X and Y pair up near, not exact, partners: a few pairs straddle
    # even a consistent cut, half of them straddle a random one.
    assert out[0] < 0.12
    assert 0.35 < out[1] < 0.65


def test_rectangular_leaves_are_solved_exactly():
    # Regression: a column-minimum shift is only valid when every column is used.
    rng = np.random.default_rng(3)
    X = torch.tensor(rng.normal(size=(60, 30)))
    Y = torch.tensor(rng.normal(size=(75, 30)))
    perm = solve_leaves(
        SqEuclidean(), X, Y, Blocks(torch.arange(60), torch.arange(75), torch.tensor([60]), torch.tensor([75]))
    )
    C = cdist(X.numpy(), Y.numpy(), "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    assert len(set(perm.tolist())) == 60
    np.testing.assert_allclose(C[np.arange(60), perm].sum(), C[rows, cols].sum(), rtol=1e-12)


def test_leaves_of_mixed_shapes_and_sizes_zero_and_one():
    """Blocks of several shapes (some sharing one side's size), single points, and X-empty blocks, in any order."""
    sizes_x = [2, 0, 3, 1, 2, 3, 0, 1, 4]
    sizes_y = [3, 2, 3, 1, 2, 5, 1, 3, 4]
    n, m = sum(sizes_x), sum(sizes_y)
    rng = np.random.default_rng(5)
    X, Y = torch.tensor(rng.normal(size=(n, 2))), torch.tensor(rng.normal(size=(m, 2)))
    ix, iy = torch.randperm(n), torch.randperm(m)
    perm = solve_leaves(SqEuclidean(), X, Y, Blocks(ix, iy, torch.tensor(sizes_x), torch.tensor(sizes_y)))
    ox, oy = np.cumsum([0, *sizes_x]), np.cumsum([0, *sizes_y])
    for b in range(len(sizes_x)):
        xs, ys = ix[ox[b] : ox[b + 1]].numpy(), iy[oy[b] : oy[b + 1]].numpy()
        if len(xs):
            C = cdist(X[xs].numpy(), Y[ys].numpy(), "sqeuclidean")
            rows, cols = linear_sum_assignment(C)
            np.testing.assert_array_equal(perm[xs[rows]], ys[cols])
    assert len(set(perm.tolist())) == n


def test_leaves_in_small_chunks_give_the_same_matching(monkeypatch):
    import hiref.engine.finish.leaves as leaves

    sizes_x, sizes_y = [3] * 7 + [2], [3] * 7 + [4]
    rng = np.random.default_rng(6)
    X, Y = torch.tensor(rng.normal(size=(23, 3))), torch.tensor(rng.normal(size=(25, 3)))
    blocks = Blocks(torch.randperm(23), torch.randperm(25), torch.tensor(sizes_x), torch.tensor(sizes_y))
    whole = solve_leaves(SqEuclidean(), X, Y, blocks)
    monkeypatch.setattr(leaves, "_CHUNK_ENTRIES", 20)  # two 3 x 3 leaves per chunk
    np.testing.assert_array_equal(solve_leaves(SqEuclidean(), X, Y, blocks), whole)


@pytest.mark.parametrize("chunk", [None, 5])
def test_mean_paired_cost_is_exact(monkeypatch, chunk):
    import hiref.engine.finish.leaves as leaves

    if chunk:
        monkeypatch.setattr(leaves, "_CHUNK_ENTRIES", chunk)  # two rows of 2-D points at a time
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(11, 2)), rng.normal(size=(13, 2))
    perm = rng.permutation(13)[:11]
    expected = ((X - Y[perm]) ** 2).sum(1).mean()
    got = leaves.mean_paired_cost(SqEuclidean(), torch.tensor(X, dtype=torch.float32), torch.tensor(Y), perm)
    assert got == pytest.approx(expected, rel=1e-6)
    assert isinstance(got, float)


def test_a_leaf_with_a_near_tie_is_solved_exactly_on_the_cpu():
    # Near-duplicate points: two matchings of this leaf are about 1e-10 apart (seed found by a search
    # on which an auction with a relative tolerance of 1e-9 stops at the worse one).
    rng = np.random.default_rng(189)
    P = rng.random((4, 2))
    X = P + 1e-7 * rng.standard_normal((4, 2))
    Y = P[rng.permutation(4)] + 1e-7 * rng.standard_normal((4, 2))
    Y[:2] = X[0] + 1e-7 * rng.standard_normal((2, 2))
    C = cdist(X, Y, "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    blocks = Blocks(torch.arange(4), torch.arange(4), torch.tensor([4]), torch.tensor([4]))
    perm = solve_leaves(SqEuclidean(), torch.tensor(X), torch.tensor(Y), blocks)
    assert C[np.arange(4), perm].sum() <= C[rows, cols].sum() + 1e-14


@pytest.mark.parametrize("shape", [(37, 9, 9), (23, 6, 11), (1, 5, 5), (0, 4, 4)])
@pytest.mark.parametrize("compiled_from", [0, assign_module.COMPILED_MIN_ENTRIES])
def test_stacks_of_problems_are_solved_exactly_in_slices(shape, compiled_from, monkeypatch):
    # several threads, each on its own slice of the stack; every problem against scipy alone
    monkeypatch.setattr(assign_module, "COMPILED_MIN_ENTRIES", compiled_from)
    rng = np.random.default_rng(sum(shape))
    C = rng.random(shape)
    got = assign_many(C)
    assert got.shape == shape[:2]
    stacked = assign_stack(torch.as_tensor(C)).numpy()
    np.testing.assert_array_equal(stacked, got)
    for k in range(shape[0]):
        r, c = linear_sum_assignment(C[k])
        assert len(set(got[k].tolist())) == shape[1]
        assert C[k, np.arange(shape[1]), got[k]].sum() == pytest.approx(C[k, r, c].sum(), rel=1e-12)


def _stack_of_kind(kind, rng, n_b, s, t):
    if kind == "ties":  # small integers: many optimal assignments, every search meets ties
        return rng.integers(0, 3, (n_b, s, t)).astype(np.float64)
    if kind == "planar":  # squared distances of points in the plane (the leaves' case)
        return np.stack([cdist(rng.random((s, 2)), rng.random((t, 2)), "sqeuclidean") for _ in range(n_b)])
    # a jittered lattice, shifted far from 0 (prices of large size beside small differences)
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2)[:t].astype(np.float64)
    return np.stack([cdist(grid[rng.permutation(t)[:s]] + 0.3, grid, "sqeuclidean") + 1e6 for _ in range(n_b)])


@pytest.mark.parametrize("kind", ["ties", "planar", "lattice"])
@pytest.mark.parametrize(("s", "t"), [(17, 17), (12, 19), (1, 1), (1, 6), (40, 40)])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_stack_solver_equals_scipy(kind, s, t, threads, monkeypatch):
    # the compiled solver against scipy, problem by problem: the same optimal cost, every column once
    monkeypatch.setattr(assign_module, "COMPILED_MIN_ENTRIES", 0)
    rng = np.random.default_rng(s * 100 + t)
    C = _stack_of_kind(kind, rng, 25, s, t)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = assign_many(C)
    finally:
        torch.set_num_threads(previous)
    for k in range(len(C)):
        r, c = linear_sum_assignment(C[k])
        assert len(set(got[k].tolist())) == s
        assert C[k, np.arange(s), got[k]].sum() == pytest.approx(C[k, r, c].sum(), rel=1e-13, abs=1e-12)


def test_stacks_with_costs_not_finite_go_to_scipy():
    rng = np.random.default_rng(3)
    C = rng.random((4, 5, 5))
    C[2, 1, 3] = np.inf  # still has an assignment
    got = assign_many(C)
    r, c = linear_sum_assignment(C[2])
    assert C[2, np.arange(5), got[2]].sum() == pytest.approx(C[2, r, c].sum())
    C[1, 4, :] = np.inf  # row 4 of problem 1 has no column
    with pytest.raises(ValueError, match="infeasible"):
        assign_many(C)


@pytest.mark.parametrize("rank", [2, 3])
def test_regrouping_by_counting_equals_a_stable_sort(rank, monkeypatch):
    # the CPU's counting pass against the sort that other devices run, on blocks of uneven sizes
    monkeypatch.setattr(blocks_module, "COUNTING_MIN", 0)
    gen = torch.Generator().manual_seed(rank)
    sizes = torch.tensor([7, 0, 12, 1, 30, 5])
    pos, mask = _padded(sizes)
    labels = torch.randint(0, rank, pos.shape, generator=gen)
    caps = torch.stack([((labels == z) & mask).sum(1) for z in range(rank)], 1)
    index = torch.randperm(int(sizes.sum()), generator=gen)
    got = _regroup(index, pos, mask, labels, caps)
    np.testing.assert_array_equal(got.numpy(), _regroup_sorted(index, pos, mask, labels, rank).numpy())
    wrong = caps.clone()
    wrong[0, 0] += 1
    wrong[0, 1] -= 1
    with pytest.raises(ValueError, match="child sizes"):
        _regroup(index, pos, mask, labels, wrong)
