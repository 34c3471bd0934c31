"""The exact finish's coarse-to-fine start: prices from a subsample of the pairs solved first.

Large clouds only take this path (:data:`hiref.engine.finish.coarse_start.COARSE_MIN`); the tests
lower that limit so that small pairs, checked against exact solvers, go through it, nested.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.engine.finish import batched_search, coarse_start, polish, spatial_order
from hiref.engine.finish import prices as polish_prices
from hiref.engine.geometry.costs import SqEuclidean


def _local_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A density cloud and its image under a smooth bump (``Y = grad phi(X)``, phi strictly convex).

    Most points barely move; those under the bump move by up to a few percent of the extent,
    which the hierarchy follows only in part. Returns ``X``, ``Y`` (shuffled) and the optimum.
    """
    X = hr.datasets.planted_pair(n, kind="density", seed=seed)[0]
    X = X - X.mean(0)
    extent = np.abs(X).max()
    r = X - np.array([0.3, 0.2]) * extent
    Y = X - 0.5 * r * np.exp(-(r**2).sum(1) / (2 * (0.2 * extent) ** 2))[:, None]
    order = np.random.default_rng(seed).permutation(n)
    return X, Y[order], np.argsort(order)


def _slopes_at_y(X: np.ndarray, Y: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``-grad_y |x - y|^2 = 2 (x - y)`` at every point of ``Y`` for its partner under ``perm``."""
    owner = np.empty(perm.shape[0], dtype=np.int64)
    owner[perm] = np.arange(perm.shape[0])
    return 2.0 * (X[owner] - Y)


@pytest.mark.parametrize("seed", [0, 1])
def test_coarse_slopes_are_closer_to_the_optimum_than_the_hierarchys(seed):
    # The subsample's optimum has no share of the hierarchy's bias: its smoothed slopes must be
    # much nearer the optimal ones (measured: 0.37-0.42 of the hierarchy's error).
    X, Y, truth = _local_pair(16384, seed)
    perm = hr.solve(X, Y, progress=False, polish=False, refine=False, seed=seed).perm
    A, B = torch.as_tensor(X), torch.as_tensor(Y)
    order = spatial_order.SpatialOrder(batched_search.morton_order(A), batched_search.morton_order(B))
    (A_s, B_s), perm_s = order.clouds(A, B), order.to_sorted(perm)
    start, work = coarse_start.coarse_start(
        SqEuclidean(), A_s, B_s, perm_s, None, None, k=8, bound_budget=2.0**34, work_budget=None,
        finish=polish.exact_finish,
    )  # fmt: skip
    assert work > 0
    assert start.prices is None  # cells move about three spacings: the slopes, not the dual
    got = start.slopes
    b = order.b.numpy()
    want = _slopes_at_y(X, Y, truth)[b]
    hierarchy = _slopes_at_y(X, Y, perm)[b]
    assert got.shape == (16384, 2)
    error = np.sqrt(((got.numpy() - want) ** 2).sum(1).mean())
    error_hierarchy = np.sqrt(((hierarchy - want) ** 2).sum(1).mean())
    assert error < 0.48 * error_hierarchy  # unsmoothed: 0.51-0.55


def test_partial_coarse_slopes_are_flat_where_the_larger_cloud_is_left_out():
    # X is cut at its 90 % x-quantile, Y is whole: the partial optimum leaves out (about) the
    # image of the cut part, where the dual's prices are flat. The subsample includes points the
    # hierarchy leaves out, so its slopes vanish deep in that region and keep the displacement's
    # elsewhere; from a subsample of the hierarchy's pairs alone they took the slopes of the
    # nearest pairs there (ratio about 1).
    X, Y, truth = hr.datasets.planted_pair(8192, kind="density", seed=0)
    cut = X[:, 0] >= np.quantile(X[:, 0], 0.9)
    X_kept = X[~cut]
    perm = hr.solve(X_kept, Y, progress=False, polish=False, refine=False, seed=0).perm
    A, B = torch.as_tensor(X_kept, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    order = spatial_order.SpatialOrder(batched_search.morton_order(A), batched_search.morton_order(B))
    (A_s, B_s), perm_s = order.clouds(A, B), order.to_sorted(perm)
    start, work = coarse_start.coarse_start(
        SqEuclidean(), A_s, B_s, perm_s, None, None, k=8, bound_budget=2.0**34, work_budget=None,
        finish=polish.exact_finish,
    )  # fmt: skip
    assert work > 0
    got = start.slopes
    slopes = np.empty_like(got.numpy())
    slopes[order.b.numpy()] = got.numpy()
    length = np.sqrt((slopes**2).sum(1))
    deep = np.zeros(Y.shape[0], dtype=bool)
    deep[truth[X[:, 0] >= np.quantile(X[:, 0], 0.95)]] = True  # partners of the outer half of the cut
    kept = np.zeros(Y.shape[0], dtype=bool)
    kept[truth[X[:, 0] < np.quantile(X[:, 0], 0.8)]] = True
    assert np.median(length[deep]) < 0.1 * np.median(length[kept])


def _optimum(A: np.ndarray, B: np.ndarray) -> float:
    C = cdist(A, B, "sqeuclidean")
    r, c = linear_sum_assignment(C)
    return float(C[r, c].mean())


def _two_samples(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent samples of tissue-like densities, the second larger and moved by many spacings.

    Like two sections of one tissue: no point has a twin and the optimum moves every point far
    against the spacing, where a subsample's dual gives the starting prices.
    """
    X = hr.datasets.planted_pair(n, kind="density", seed=1)[0]
    Y = hr.datasets.planted_pair(m, kind="density", seed=2)[0]
    extent = np.ptp(X, axis=0).max()
    return X, 1.1 * Y + 0.3 * extent


def _assert_optimal_and_proved(X: np.ndarray, Y: np.ndarray, fin: polish.Finish) -> None:
    """A one-to-one matching within ``CERTIFIED`` of the optimum, a valid bound, from a coarse start."""
    opt = _optimum(X, Y)
    cost = float(((X - Y[fin.perm]) ** 2).sum(1).mean())
    assert len(np.unique(fin.perm)) == X.shape[0]
    # (pricing stops once the bound proves the matching within polish.CERTIFIED of the optimum)
    assert cost <= opt * (1 + polish.CERTIFIED)
    assert opt * (1 - 1e-4) <= fin.lower_bound <= opt * (1 + 1e-12)
    assert "coarse" in fin.timings


def _coarse_from_100_points(monkeypatch, *, on_device: bool, exact: bool = False) -> tuple[list[int], list[int]]:
    """Coarse starts from 100 points on (the device path forced or not); returns the lists that
    record the size of A at every coarse start and of B at every soft c-transform of a dual.

    Only the threshold of the path taken is lowered (``exact``: where exact minima price, high
    dimensions), the other is put out of reach: each path must read its own.
    """
    monkeypatch.setattr(coarse_start, "COARSE_MIN", 1 << 30 if exact else 100)
    monkeypatch.setattr(coarse_start, "COARSE_MIN_EXACT", 100 if exact else 1 << 30)
    monkeypatch.setattr(batched_search, "on_device", lambda device: on_device)
    starts, duals = [], []
    inner_start, inner_dual = coarse_start.coarse_start, coarse_start.prices_from_dual
    monkeypatch.setattr(
        coarse_start, "coarse_start", lambda *a, **k: starts.append(a[1].shape[0]) or inner_start(*a, **k)
    )
    monkeypatch.setattr(
        coarse_start, "prices_from_dual", lambda *a, **k: duals.append(a[1].shape[0]) or inner_dual(*a, **k)
    )
    return starts, duals


@pytest.mark.parametrize("path", ["host", "device path"])
@pytest.mark.parametrize("m", [1500, 1700])
@pytest.mark.parametrize("pair", ["local deformation", "two samples"])
def test_finish_from_nested_subsamples_reaches_the_optimum_and_proves_it(monkeypatch, path, m, pair):
    # Two nested coarse solves (1,500 -> 188 -> 24 points) from the hierarchy's matching; with
    # more points in Y, the subsamples are partial problems too. A local deformation moves
    # points about as far as their spacing: the slopes give the prices. Two samples moved far
    # against it: the subsample's dual does, for the whole cloud.
    starts, duals = _coarse_from_100_points(monkeypatch, on_device=path != "host")
    if pair == "local deformation":
        X, Y, _ = _local_pair(m, 3)
        X = X[:1500]
    else:
        X, Y = _two_samples(1500, m)
    start = hr.solve(X, Y, progress=False, polish=False, refine=False).perm
    fin = polish.exact_finish(SqEuclidean(), torch.as_tensor(X), torch.as_tensor(Y), start, generator=torch.Generator())
    assert starts == [1500, 188]
    if pair == "local deformation":
        assert duals == []
    else:
        assert duals[-1] == m
    _assert_optimal_and_proved(X, Y, fin)


@pytest.mark.parametrize("sorted_clouds", [False, True], ids=["as given", "spatial order"])
def test_a_finishs_prices_extend_to_themselves_by_the_c_transform(monkeypatch, sorted_clouds):
    # At an optimal dual, max_x u(x) - c(x, y) is y's own price for every matched y: the hard
    # c-transform of the finish's values gives back its prices, in the order of B as given
    # (the finish may solve the clouds in another order).
    monkeypatch.setattr(spatial_order, "SPATIAL_ORDER_MIN", 1 if sorted_clouds else 1 << 30)
    monkeypatch.setattr(polish, "CERTIFIED", 0.0)  # priced until no arc is missing
    monkeypatch.setattr(polish, "CERTIFIED_STALLED", 0.0)
    X, Y = _two_samples(600, 700)
    A, B = torch.as_tensor(X), torch.as_tensor(Y)
    start = hr.solve(X, Y, progress=False, polish=False, refine=False).perm
    fin = polish.exact_finish(SqEuclidean(), A, B, start, generator=torch.Generator())
    assert fin.exact
    assert fin.prices is not None
    u = ((X - Y[fin.perm]) ** 2).sum(1) / fin.scale + fin.prices[fin.perm]
    got = polish_prices.prices_from_dual(SqEuclidean(), B, A, u, scale=fin.scale, softness=1e-12)
    np.testing.assert_allclose(got[fin.perm], fin.prices[fin.perm], rtol=0, atol=1e-6)
    # a point nobody holds is priced at most as its c-transform says
    left = np.setdiff1d(np.arange(Y.shape[0]), fin.perm)
    assert (got[left] <= fin.prices[left] + 1e-6).all()


@pytest.mark.parametrize("d", [2, 20], ids=["price tree", "exact minima in float32"])
def test_soft_c_transform_lies_between_the_maximum_and_its_softened_bound(d):
    rng = np.random.default_rng(0)
    A_s, B = rng.normal(size=(300, d)), rng.normal(size=(500, d))
    u = rng.normal(scale=0.5, size=300)
    pieces = u[None, :] - cdist(B, A_s, "sqeuclidean")  # (m, s): u(x) - c(x, y), scale 1
    hard = pieces.max(1)
    # (in 20-D the terms are ranked in float32, valued in float64: rounding may only swap near ties)
    tol = 1e-9 if d == 2 else 1e-4
    for softness in (1e-9, 0.05, 1.0):
        got = polish_prices.prices_from_dual(
            SqEuclidean(), torch.as_tensor(B), torch.as_tensor(A_s), u, scale=1.0, softness=softness
        )
        assert (got >= hard - tol).all()
        assert (got <= hard + softness * np.log(polish_prices.SOFT_TERMS) + 1e-9).all()
    np.testing.assert_allclose(
        polish_prices.prices_from_dual(
            SqEuclidean(), torch.as_tensor(B), torch.as_tensor(A_s), u, scale=1.0, softness=1e-9
        ),
        hard,
        atol=1e-8 if d == 2 else tol,
    )


@pytest.mark.parametrize("path", ["host", "device path"])
@pytest.mark.parametrize("m", [1500, 1700])
def test_high_dimensional_finish_starts_from_a_subsamples_dual_and_reaches_the_optimum(monkeypatch, path, m):
    # Exact minima price in 30 dimensions; there the subsample's dual gives the starting prices at
    # every level whatever its spacing (integrated slopes left nearly every point short on
    # simulated sections), nested 1,500 -> 188 -> 24 points, partial when Y has more points.
    starts, duals = _coarse_from_100_points(monkeypatch, on_device=path != "host", exact=True)
    # from the dual the graph is the first pricing's arcs: no scans for each cloud's own neighbours
    withins = []
    inner_near = polish.Neighbourhoods

    def near(*a, **k):
        got = inner_near(*a, **k)
        withins.append((a[0].shape[0], got.near_a.shape[1], got.b_near_b.shape[1]))
        return got

    monkeypatch.setattr(polish, "Neighbourhoods", near)
    solves = []  # (how, rows) of every solve, in order
    monkeypatch.setattr(polish, "_SEARCHED_MOST", 1.0)  # searches for any share, but not the first re-solve
    inner_reassign, inner_solve = polish.reassign, polish._solve
    monkeypatch.setattr(
        polish, "reassign", lambda g, *a, **k: solves.append(("search", g.n)) or inner_reassign(g, *a, **k)
    )
    fewest = []  # the fewest arcs of a point in each solve's graph

    def solve(g, *a, **k):
        solves.append(("auction", g.n))
        fewest.append(int(np.diff(g.indptr).min()))
        return inner_solve(g, *a, **k)

    monkeypatch.setattr(polish, "_solve", solve)
    rng = np.random.default_rng(3)
    means = 3 * rng.standard_normal((6, 30))
    X = means[rng.integers(0, 6, 1500)] + rng.standard_normal((1500, 30))
    Y = (1.1 * means + 0.5)[rng.integers(0, 6, m)] + rng.standard_normal((m, 30))
    start = hr.solve(X, Y, progress=False, polish=False, refine=False).perm
    fin = polish.exact_finish(SqEuclidean(), torch.as_tensor(X), torch.as_tensor(Y), start, generator=torch.Generator())
    assert starts == [1500, 188]
    assert len(duals) == 2
    assert duals[-1] == m
    assert withins[-1] == (1500, 0, 0)  # the whole problem, from the subsample's dual
    assert withins[0][1] > 0  # the innermost subsample (24 points) solved from the hierarchy's own
    whole = [at for at, (_, rows) in enumerate(solves) if rows == 1500]
    # the first solve, and the first re-solve after pricing
    assert [solves[at][0] for at in whole[:2]] == ["auction", "auction"]
    # every point has its best arcs of the first pricing from the start, not only those short
    assert fewest[whole[0]] >= polish._START_ARCS_DUAL
    _assert_optimal_and_proved(X, Y, fin)
