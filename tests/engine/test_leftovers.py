"""The selection of the larger cloud's points that the hierarchy matches (``unbalanced="partial"``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.engine import leftovers


def _cut_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A planted pair whose X is cut at 90 % of its width: Y has a tenth more, all on one side."""
    X, Y, _ = hr.datasets.planted_pair(n, kind="density", seed=seed)
    return X[X[:, 0] < np.quantile(X[:, 0], 0.9)], Y


@pytest.fixture(scope="module")
def cut():
    X, Y = _cut_pair(4096, 0)
    C = cdist(X, Y, "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    return X, Y, float(C[rows, cols].mean())


def test_selection_keeps_the_hierarchy_near_the_optimum_of_a_cut_section(monkeypatch, cut):
    X, Y, opt = cut
    monkeypatch.setattr(leftovers, "SAMPLE", 512)
    res = hr.solve(X, Y, progress=False, polish=False, refine=False)
    assert "select" in res.timings
    assert res.cost <= 1.2 * opt  # measured 10 % above
    assert 0 < res.lower_bound <= opt * (1 + 1e-12)
    # every point of Y has a co-cluster at every level; pairs share theirs
    for lx, ly in zip(res.labels_x, res.labels_y, strict=True):
        assert ly.shape == (Y.shape[0],)
        assert (ly >= 0).all()
        assert np.array_equal(lx, ly[res.perm])
    assert res.n_matched == X.shape[0] == np.unique(res.perm).shape[0]
    # without the selection, the levels send the points at the cut across it
    monkeypatch.setattr(leftovers, "SAMPLE", 10**9)
    plain = hr.solve(X, Y, progress=False, polish=False, refine=False)
    assert "select" not in plain.timings
    assert plain.cost >= 1.3 * opt  # measured 47 % above


def test_selection_with_the_larger_cloud_first_and_the_default_finish(monkeypatch, cut):
    X, Y, opt = cut
    monkeypatch.setattr(leftovers, "SAMPLE", 512)
    res = hr.solve(Y, X, progress=False)
    assert "select" in res.timings
    assert res.n_matched == X.shape[0]
    assert np.array_equal(np.sort(res.perm[res.perm >= 0]), np.arange(X.shape[0]))
    assert res.cost == pytest.approx(opt, rel=1e-6)
    assert res.gap_bound <= 1e-4


def test_no_selection_where_the_larger_cloud_is_only_denser(monkeypatch):
    # X a random 90 % of the planted source: the points left over are scattered, not a region
    X, Y, _ = hr.datasets.planted_pair(4096, kind="density", seed=2)
    X = X[np.sort(np.random.default_rng(0).choice(4096, 3686, replace=False))]
    monkeypatch.setattr(leftovers, "SAMPLE", 512)
    res = hr.solve(X, Y, progress=False, polish=False, refine=False)
    assert "select" in res.timings  # it looked, and left the levels as they were
    monkeypatch.setattr(leftovers, "SAMPLE", 10**9)
    plain = hr.solve(X, Y, progress=False, polish=False, refine=False)
    assert np.array_equal(res.perm, plain.perm)
    assert res.schedule == plain.schedule


def test_a_schedule_that_fits_only_the_larger_cloud_matches_into_all_of_it(monkeypatch):
    X, Y = _cut_pair(1024, 1)
    monkeypatch.setattr(leftovers, "SAMPLE", 64)
    # no rank may exceed the smallest co-cluster it splits: 32 x 32 fits Y's 1,024 points, not X's 921
    schedule = [32, 32]
    res = hr.solve(X, Y, progress=False, schedule=schedule, leaf_size=1, polish=False, refine=False)
    assert "select" not in res.timings
    assert res.schedule == schedule
    fits = hr.solve(X, Y, progress=False, schedule=[2, 2, 2, 2], polish=False, refine=False)
    assert "select" in fits.timings


@pytest.mark.parametrize(("n", "m", "d", "expected"), [
    (9000, 10000, 2, True), (8192, 10000, 2, False), (9000, 9000, 2, False), (9000, 10**6, 128, False),
    (9000, 10000, 128, True),
])  # fmt: skip
def test_which_problems_are_selected_from(n, m, d, expected):
    assert leftovers.applies(n, m, d) is expected
