from __future__ import annotations

import numpy as np
import pytest
import torch

import hiref as hr
from hiref.datasets import checkerboard, halfmoon_scurve, maf_moons_rings, uniform_checkerboard

from helpers import DEVICES

PAIRS = [halfmoon_scurve, checkerboard, maf_moons_rings]


def is_permutation(perm: np.ndarray, n: int) -> bool:
    return perm.shape == (n,) and perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(n))


@pytest.mark.parametrize("pair", PAIRS, ids=lambda f: f.__name__)
def test_near_exact_on_paper_pairs(pair, exact):
    # A regression in any part of the engine (starts, mirror descent, splits, leaves) shows up
    # here as a gap to the exact optimum.
    X, Y = pair(256, seed=1)
    m = hr.solve(X, Y, progress=False, leaf_size=32)
    assert is_permutation(m.perm, 256)
    _, best = exact(X, Y)
    assert m.cost <= best * 1.01


def greedy_cost(X: np.ndarray, Y: np.ndarray) -> float:
    """Mean cost of the greedy matching: take the cheapest pair of still unmatched points, again and again."""
    C = ((X[:, None] - Y[None]) ** 2).sum(-1)
    free_x, free_y = np.ones(len(X), dtype=bool), np.ones(len(Y), dtype=bool)
    total = 0.0
    for flat in np.argsort(C, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(Y))
        if free_x[i] and free_y[j]:
            free_x[i] = free_y[j] = False
            total += C[i, j]
    return total / len(X)


def test_beats_random_and_greedy_on_hard_pair(exact):
    X, Y = uniform_checkerboard(512, seed=0)
    _, best = exact(X, Y)
    greedy = greedy_cost(X, Y)
    random_cost = ((X - Y[np.random.default_rng(0).permutation(512)]) ** 2).sum(1).mean()
    assert best < greedy < random_cost  # the baselines are what their names say
    m = hr.solve(X, Y, progress=False, leaf_size=64)
    assert best * (1 - 1e-9) <= m.cost <= best * 1.01
    # The hierarchy alone (no exact finish) is far closer to the optimum than greedy (measured: 2.4 % above it,
    # greedy 197 %).
    hierarchy = hr.solve(X, Y, progress=False, leaf_size=64, polish=False)
    assert hierarchy.cost - best < 0.1 * (greedy - best)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 127, 257, 1031])
def test_any_n_gives_a_bijection(n):
    X, Y = halfmoon_scurve(n, seed=3)
    m = hr.solve(X, Y, progress=False, leaf_size=16)
    assert is_permutation(m.perm, n)
    assert np.isclose(m.cost, ((X - Y[m.perm]) ** 2).sum(1).mean())


def test_reported_cost_and_level_costs():
    X, Y = checkerboard(600, seed=2)
    m = hr.solve(X, Y, progress=False, leaf_size=40)
    assert np.isclose(m.cost, ((X - Y[m.perm]) ** 2).sum(1).mean(), rtol=1e-12)
    assert len(m.level_costs) == len(m.schedule) + 2
    everything = ((X[:, None] - Y[None]) ** 2).sum(-1).mean()
    assert np.isclose(m.level_costs[0], everything)
    assert m.level_costs[-1] == m.cost
    # Refining co-clusters of good splits lowers the cost of the block coupling.
    assert m.level_costs[-2] < m.level_costs[0]


def test_levels_are_consistent_co_clusters():
    X, Y = maf_moons_rings(500, seed=0)
    m = hr.solve(X, Y, progress=False, leaf_size=32, polish=False)  # the hierarchy's own matching
    assert len(m.labels_x) == len(m.schedule) == len(m.labels_y)
    previous = np.zeros(500, dtype=np.int64)
    for rank, lx, ly in zip(m.schedule, m.labels_x, m.labels_y, strict=True):
        # Matched points share their co-cluster at every level ...
        assert np.array_equal(lx, ly[m.perm])
        # ... both sides of a co-cluster have the same size, within one of even ...
        counts_x, counts_y = np.bincount(lx), np.bincount(ly)
        assert np.array_equal(counts_x, counts_y)
        assert counts_x.max() - counts_x.min() <= 1
        # ... and co-clusters nest: each child lies inside one parent.
        parents = np.zeros(lx.max() + 1, dtype=np.int64)
        parents[lx] = previous
        assert np.array_equal(parents[lx], previous)
        assert lx.max() + 1 == (previous.max() + 1) * rank
        previous = lx


def test_deterministic_per_seed():
    X, Y = halfmoon_scurve(700, seed=0)
    a = hr.solve(X, Y, progress=False, seed=4, leaf_size=32)
    b = hr.solve(X, Y, progress=False, seed=4, leaf_size=32)
    assert np.array_equal(a.perm, b.perm)
    for la, lb in zip(a.labels_x, b.labels_x, strict=True):
        assert np.array_equal(la, lb)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_input_float64_and_device(device):
    X, Y = checkerboard(300, seed=5)
    m64 = hr.solve(torch.tensor(X), torch.tensor(Y), dtype="float64", device=device, progress=False, leaf_size=32)
    m32 = hr.solve(X.astype(np.float32), Y.astype(np.float32), device=device, progress=False, leaf_size=32)
    for m in (m64, m32):
        assert is_permutation(m.perm, 300)
    assert abs(m64.cost - m32.cost) / m64.cost < 0.02


def test_identical_clouds_are_matched_to_themselves():
    X, _ = halfmoon_scurve(400, seed=7)
    m = hr.solve(X, X.copy(), progress=False, leaf_size=32)
    assert m.cost < 1e-12
    assert np.array_equal(m.perm, np.arange(400))


def test_translation_is_recovered():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 3))
    shift = np.array([10.0, -3.0, 2.0])
    order = rng.permutation(512)
    m = hr.solve(X, X[order] + shift, progress=False, leaf_size=32)
    # The optimal map of a translation is the translation itself, at cost |shift|^2.
    assert m.cost <= (shift**2).sum() * 1.0005
    assert (order[m.perm] == np.arange(512)).mean() > 0.9


def test_timings_memory_and_schedule():
    X, Y = halfmoon_scurve(200, seed=0)  # two levels of 4 and 5 co-clusters down to leaves of 10
    m = hr.solve(X, Y, progress=False, leaf_size=10, schedule=[4, 5], polish=False)
    assert m.schedule == [4, 5]
    assert set(m.timings) == {"level_1", "level_2", "leaves", "bound", "total"}  # the hierarchy's own certificate
    assert all(v >= 0 for v in m.timings.values())
    assert all(v > 0 for v in m.memory.values())


def test_progress_bar_writes_to_stderr(capsys):
    X, Y = halfmoon_scurve(200, seed=0)
    m = hr.solve(X, Y, leaf_size=32, progress=True)
    err = capsys.readouterr().err
    # the levels, the leaves and the finish, each stage of the finish named as it starts
    assert f"0/{len(m.schedule) + 2} " in err
    assert "finish: nearest neighbours" in err
    assert "finish: round 1, assignment on" in err
    hr.solve(X, Y, leaf_size=32, progress=True, polish=False)
    assert "bounding the optimum" in capsys.readouterr().err
    hr.solve(X, Y, leaf_size=32, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("X", "Y", "error", "match"),
    [
        (np.zeros((5, 2)), np.zeros((5, 3)), ValueError, "same number of features"),
        (np.zeros((0, 2)), np.zeros((0, 2)), ValueError, "`X` is empty"),
        (np.zeros(5), np.zeros(5), ValueError, "`X` must be 2-D"),
        (np.zeros((5, 2, 1)), np.zeros((5, 2, 1)), ValueError, "`X` must be 2-D"),
        (np.array([[0.0, np.nan]] * 3), np.zeros((3, 2)), ValueError, "`X` contains NaN"),
        (np.zeros((3, 2)), np.array([[np.inf, 0.0]] * 3), ValueError, "`Y` contains NaN or infinite"),
        ([[0.0, 1.0]], np.zeros((1, 2)), TypeError, "`X` must be a numpy array or a torch tensor"),
        (np.array([["a", "b"]]), np.zeros((1, 2)), TypeError, "`X` must hold real numbers"),
    ],
)
def test_bad_input_raises(X, Y, error, match):
    with pytest.raises(error, match=match):
        hr.solve(X, Y, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cost": "manhattan"}, ValueError, "`cost` must be 'sqeuclidean', 'euclidean'"),
        ({"unbalanced": "drop"}, ValueError, "`unbalanced` must be one of"),
        ({"refine_window": 1}, ValueError, "`refine_window`"),
        ({"dtype": "float16"}, ValueError, "`dtype`"),
        ({"device": "tpu"}, ValueError, "`device`"),
        ({"schedule": [2, 2]}, ValueError, "leaves co-clusters of up to"),
        ({"schedule": [1, 64]}, ValueError, "schedule entries"),
        ({"schedule": "2,2"}, TypeError, "`schedule` must be a list"),
        ({"leaf_size": 0}, ValueError, "`leaf_size`"),
        ({"step": -1.0}, ValueError, "`step`"),
        ({"n_starts": 1.5}, TypeError, "`n_starts`"),
    ],
)
def test_bad_options_raise(kwargs, error, match):
    X, Y = halfmoon_scurve(64, seed=0)
    with pytest.raises(error, match=match):
        hr.solve(X, Y, progress=False, leaf_size=kwargs.pop("leaf_size", 8), **kwargs)


def test_cuda_request_without_cuda_is_clear():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    X, Y = halfmoon_scurve(16, seed=0)
    with pytest.raises(ValueError, match="no CUDA device"):
        hr.solve(X, Y, device="cuda", progress=False)
