from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.datasets import halfmoon_scurve


def exact_partial(X, Y):
    C = cdist(X, Y, "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    return C[rows, cols].mean()


@pytest.mark.parametrize(("n", "m"), [(300, 420), (420, 300), (257, 64)])
def test_partial_matches_every_point_of_the_smaller_side(n, m):
    X, _ = halfmoon_scurve(n, seed=0)
    _, Y = halfmoon_scurve(m, seed=1)
    res = hr.solve(X, Y, progress=False, leaf_size=32, refine=True)
    matched = res.perm[res.perm >= 0]
    assert res.n_matched == min(n, m) == len(np.unique(matched))
    assert res.perm.shape == (n,)
    assert res.perm_y.shape == (m,)
    assert (res.perm_y >= 0).sum() == min(n, m)
    assert np.array_equal(res.perm_y[matched], np.flatnonzero(res.perm >= 0))
    assert np.isclose(res.cost, ((X[res.perm >= 0] - Y[matched]) ** 2).sum(1).mean())
    best = exact_partial(X, Y) if n <= m else exact_partial(Y, X)
    assert best <= res.cost <= best * 1.05
    # Without refinement or polish, matched points share their co-cluster at every level.
    plain = hr.solve(X, Y, progress=False, leaf_size=32, polish=False)
    matched = plain.perm >= 0
    for lx, ly in zip(plain.labels_x, plain.labels_y, strict=True):
        assert lx.shape == (n,)
        assert ly.shape == (m,)
        assert np.array_equal(lx[matched], ly[plain.perm[matched]])


def test_partial_leaves_out_the_points_without_counterpart():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(400, 2))
    extra = rng.normal(loc=(6.0, 6.0), scale=0.2, size=(100, 2))  # tissue only in Y
    Y = np.concatenate([rng.uniform(size=(400, 2)), extra])
    res = hr.solve(X, Y, progress=False, leaf_size=32)
    unmatched = np.flatnonzero(res.perm_y < 0)
    assert len(unmatched) == 100
    assert (unmatched >= 400).mean() > 0.9


@pytest.mark.parametrize("cost", ["euclidean", hr.engine.Power(1.5), hr.engine.Custom(lambda x, y: torch.cdist(x, y))])
def test_partial_with_a_sampled_cost_and_a_region_in_the_larger_cloud_only(cost):
    # A co-cluster can then hold points of the larger cloud only; the sampled factorisation of
    # the costs drew rows from its empty side ("invalid multinomial distribution"): a partial
    # matching by the Euclidean distance failed wherever one section had extra tissue.
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(600, 2))
    Y = np.concatenate([rng.uniform(size=(600, 2)), 5.0 + 0.2 * rng.uniform(size=(100, 2))])
    res = hr.solve(X, Y, cost=cost, progress=False)
    C = cdist(X, Y)
    rows, cols = linear_sum_assignment(C)
    assert res.cost <= C[rows, cols].mean() * (1 + 1e-6)
    assert (res.perm_y[600:] < 0).all()


def test_subsample_mode_drops_random_points():
    X, _ = halfmoon_scurve(500, seed=0)
    _, Y = halfmoon_scurve(380, seed=1)
    res = hr.solve(X, Y, progress=False, leaf_size=32, unbalanced="subsample", seed=3)
    assert res.dropped.shape == (120,)
    assert (res.perm[res.dropped] == -1).all()
    kept = np.setdiff1d(np.arange(500), res.dropped)
    assert np.array_equal(np.sort(res.perm[kept]), np.arange(380))
    assert (res.labels_x[0][res.dropped] == -1).all()
    again = hr.solve(X, Y, progress=False, leaf_size=32, unbalanced="subsample", seed=3)
    assert np.array_equal(res.dropped, again.dropped)
    partial = hr.solve(X, Y, progress=False, leaf_size=32)
    assert partial.cost < res.cost  # keeping the best partners beats keeping random ones
