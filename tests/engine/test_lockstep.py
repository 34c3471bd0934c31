"""The device's leaf solver: lockstep shortest-path searches over a whole stack, run on the CPU.

On a GPU the leaves (and large stacks of subsamples) are solved by :mod:`hiref.engine.finish.lockstep`
instead of by scipy on the host. It runs on any device: here it is checked against
``linear_sum_assignment`` problem by problem, and inside whole solves with the device path forced on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.engine.finish import auction, batched_search
from hiref.engine.finish.leaves import solve_leaves
from hiref.engine.finish.lockstep import assign_lockstep
from hiref.engine.repeat import repeat_until


def _check_optimal(C, cols, rtol=1e-12):
    n_b, s, _ = C.shape
    for k in range(n_b):
        assert len(set(cols[k].tolist())) == s, f"problem {k}: a column taken twice"
        r, c = linear_sum_assignment(C[k])
        got = C[k, np.arange(s), cols[k]].sum()
        assert got == pytest.approx(C[k, r, c].sum(), rel=rtol, abs=1e-300), f"problem {k}"


@pytest.mark.parametrize(("s", "t"), [(1, 1), (1, 6), (7, 7), (16, 16), (12, 19), (40, 40), (5, 50)])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_lockstep_equals_scipy_on_many_random_problems(s, t, scale):
    rng = np.random.default_rng(s * 100 + t)
    C = rng.random((48, s, t)) * scale
    cols, steps = assign_lockstep(torch.as_tensor(C))
    _check_optimal(C, cols.numpy())
    assert steps <= t * (t + 3) + 2 * 16


def test_lockstep_with_many_ties_and_integer_costs():
    rng = np.random.default_rng(3)
    C = rng.integers(0, 3, (80, 20, 23)).astype(float)
    C[:10] = 1.0  # every assignment optimal
    cols, _ = assign_lockstep(torch.as_tensor(C), check_every=1)
    _check_optimal(C, cols.numpy())


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_lockstep_on_leaf_like_problems(shift):
    # small point clouds matched to shifted, jittered copies: rows want the same few columns,
    # so the searches are long (the case of the hierarchy's leaves)
    rng = np.random.default_rng(int(shift) + 11)
    X = rng.random((64, 40, 2))
    Y = X + shift * 0.1 + rng.normal(scale=0.05, size=X.shape)
    Y = np.concatenate([Y, rng.random((64, 4, 2))], axis=1)  # 4 extra columns per problem
    C = np.stack([cdist(X[k], Y[k], "sqeuclidean") for k in range(64)])
    cols, steps = assign_lockstep(torch.as_tensor(C))
    _check_optimal(C, cols.numpy())
    assert steps <= 44 * 47 + 32


def test_lockstep_answer_does_not_depend_on_how_often_it_checks():
    C = np.random.default_rng(5).random((30, 25, 25))
    a, steps_a = assign_lockstep(torch.as_tensor(C), check_every=1)
    b, steps_b = assign_lockstep(torch.as_tensor(C), check_every=64)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert steps_a <= steps_b < steps_a + 64


def test_compacting_the_stack_keeps_every_answer(monkeypatch):
    # problems of very different difficulty: the easy ones are set aside as the stack compacts
    from hiref.engine.finish import lockstep

    rng = np.random.default_rng(9)
    C = rng.random((300, 30, 33))
    C[::3] = np.arange(33)[None, None, :] * 1.0 + rng.random((100, 30, 1))  # all rows want the same columns
    compacted, steps = assign_lockstep(torch.as_tensor(C))
    monkeypatch.setattr(lockstep, "COMPACT_MIN", 10**9)
    whole, steps_whole = assign_lockstep(torch.as_tensor(C))
    _check_optimal(C, compacted.numpy())
    _check_optimal(C, whole.numpy())
    assert abs(steps - steps_whole) <= 16 * 9  # at most one block more per compaction


def test_lockstep_refuses_bad_stacks():
    with pytest.raises(ValueError, match="s <= t"):
        assign_lockstep(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="s <= t"):
        assign_lockstep(torch.zeros(5, 4))
    C = torch.rand(3, 4, 4)
    C[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        assign_lockstep(C)
    assert assign_lockstep(torch.zeros(0, 4, 4))[0].shape == (0, 4)


def test_repeat_until_stops_after_the_block_that_finishes_and_refuses_to_run_forever():
    count = torch.zeros(())

    def step():
        count.add_(1)

    steps = repeat_until(step, lambda: bool(count >= 10), every=4, most=100, device=count.device)
    assert steps == 12
    assert int(count) == 12
    with pytest.raises(RuntimeError, match="no end after"):
        repeat_until(step, lambda: False, every=4, most=20, device=count.device)


def test_stacks_go_to_the_lockstep_solver_on_a_device(monkeypatch):
    calls = []
    real = auction.assign_lockstep

    def counted(costs, **kw):
        calls.append(costs.shape)
        return real(costs, **kw)

    monkeypatch.setattr(auction, "assign_lockstep", counted)
    C = np.random.default_rng(2).random((300, 9, 11))
    on_host = auction.assign_stack(torch.as_tensor(C)).numpy()  # the CPU: scipy
    assert calls == []
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)
    monkeypatch.setattr(auction, "LOCKSTEP_MIN_WORK", 300 * 9**2)
    small = auction.assign_stack(torch.as_tensor(C[:10])).numpy()  # too little work: the host
    assert calls == []
    on_device = auction.assign_stack(torch.as_tensor(C)).numpy()
    assert calls == [(300, 9, 11)]
    monkeypatch.setattr(auction, "LOCKSTEP_MAX_ENTRIES", 128 * 9 * 11)  # in chunks of 128 problems
    chunked = auction.assign_stack(torch.as_tensor(C)).numpy()
    assert calls[1:] == [(128, 9, 11), (128, 9, 11), (44, 9, 11)]
    _check_optimal(C, chunked)
    np.testing.assert_array_equal(small, on_host[:10])
    _check_optimal(C, on_device)


def test_leaves_solved_in_lockstep_equal_the_host_leaves(monkeypatch):
    X, Y, _ = hr.datasets.planted_pair(4096, kind="density", seed=1)
    opts = hr.engine.SolveOptions(polish=False, refine=False)
    host = hr.solve(X, Y, progress=False, options=opts)
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)
    monkeypatch.setattr(auction, "LOCKSTEP_MIN_WORK", 1)
    calls = []
    real = auction.assign_lockstep
    monkeypatch.setattr(auction, "assign_lockstep", lambda C, **kw: calls.append(C.shape) or real(C, **kw))
    device = hr.solve(X, Y, progress=False, options=opts)
    assert any(shape[1] <= 64 for shape in calls)  # the leaves went through it
    assert device.cost == pytest.approx(host.cost, rel=1e-12)


def test_solve_leaves_in_lockstep_on_unequal_leaves(monkeypatch):
    # leaves of several shapes, some with more Y than X points, through the device's solver
    from hiref.engine.blocks import Blocks
    from hiref.engine.geometry.costs import SqEuclidean

    rng = np.random.default_rng(4)
    sizes_x, sizes_y = np.array([5, 5, 7, 3, 0]), np.array([5, 6, 7, 4, 2])
    X, Y = rng.random((sizes_x.sum(), 2)), rng.random((sizes_y.sum(), 2))
    blocks = Blocks(
        torch.as_tensor(rng.permutation(len(X))), torch.as_tensor(rng.permutation(len(Y))),
        torch.as_tensor(sizes_x), torch.as_tensor(sizes_y),
    )  # fmt: skip
    expected = solve_leaves(SqEuclidean(), torch.tensor(X), torch.tensor(Y), blocks)
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)
    monkeypatch.setattr(auction, "LOCKSTEP_MIN_WORK", 1)
    got = solve_leaves(SqEuclidean(), torch.tensor(X), torch.tensor(Y), blocks)
    cost = lambda perm: ((X - Y[perm]) ** 2).sum()  # noqa: E731
    assert cost(got) == pytest.approx(cost(expected), rel=1e-12)
    assert len(np.unique(got)) == len(X)


@pytest.mark.gpu
def test_lockstep_on_cuda_equals_scipy():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    C = np.random.default_rng(6).random((300, 32, 35))
    cols, _ = assign_lockstep(torch.as_tensor(C, device="cuda"))
    _check_optimal(C, cols.cpu().numpy())
