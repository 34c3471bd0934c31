"""The finish's batched device path (exact searches, price integral), run on the CPU.

On CUDA the finish searches neighbours and prices with batched tensor steps instead of the
compiled k-d trees, and integrates the starting prices by conjugate gradients instead of a
sparse factorisation. Those functions run on any device: here they are checked on the CPU
against brute force and against the host path, and the whole solve is run with the device path
forced on.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spl
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.engine.finish import batched_search, integrate, polish, spatial_order
from hiref.engine.finish import prices as warm_prices
from hiref.engine.finish.batched_search import BatchedPriceSearch
from hiref.engine.finish.neighbours import nearest, nearest_on_device
from hiref.engine.finish.prices import _integration_system, price_guess
from hiref.engine.geometry.costs import SqEuclidean
from hiref.engine.repeat import repeat


@pytest.fixture
def device_path(monkeypatch):
    """Every exact search and price integral of the finish takes the device's batched path."""
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)


def _check_best(found, a, b, prices, k):
    value = cdist(a, b, "sqeuclidean") + prices[None, :]
    got = value[np.arange(a.shape[0])[:, None], found]
    np.testing.assert_allclose(got, np.sort(value, 1)[:, :k], rtol=0, atol=1e-9)
    assert all(len(set(row)) == k for row in found.tolist())  # k distinct points


@pytest.mark.parametrize("d", [1, 2, 3, 8])
@pytest.mark.parametrize("k", [1, 3, 9])
def test_batched_search_finds_the_exact_best_for_any_later_prices(d, k):
    rng = np.random.default_rng(d + 10 * k)
    # queries partly outside the points' box, far from the origin
    a, b = rng.normal(size=(700, d)) * 1.5 + 1e3, rng.uniform(-2, 2, size=(900, d)) + 1e3
    first = np.sin(3 * b[:, 0]) + 0.2 * rng.normal(size=900)
    search = BatchedPriceSearch(torch.as_tensor(b), first)
    later = (first, first - 5 * b[:, 0] - ((b - 1e3) ** 2).sum(1) + rng.normal(size=900), -first, np.zeros(900))
    for prices in later:
        search.update(prices)
        _check_best(search.best(a, k), a, b, prices, k)


@pytest.mark.parametrize("d", range(1, 10))
def test_morton_codes_interleave_every_bit(d):
    # bit b of coordinate c must land at bit b * d + c of the code, for every width up to the widest
    rng = np.random.default_rng(d)
    widest = max(1, min(21, 63 // d))
    for bits in sorted({1, 2, widest // 2 + 1, widest}):
        q = rng.integers(0, 1 << bits, size=(500, d))
        q[0], q[1] = (1 << bits) - 1, 0
        want = np.zeros(500, dtype=np.int64)
        for b in range(bits):
            for c in range(d):
                want |= ((q[:, c] >> b) & 1) << (b * d + c)
        np.testing.assert_array_equal(batched_search.morton_codes(torch.as_tensor(q), bits).numpy(), want)


def test_batched_search_on_degenerate_clouds():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 2))
    line = np.column_stack([np.linspace(0, 1, 50), np.zeros(50)])  # no extent along one axis
    _check_best(BatchedPriceSearch(torch.as_tensor(line), 2 * line[:, 0]).best(a, 2), a, line, 2 * line[:, 0], 2)
    few = np.repeat(rng.normal(size=(3, 2)), 2, axis=0)  # fewer points than a leaf, each twice
    found = BatchedPriceSearch(torch.as_tensor(few)).best(a, 8)
    assert found.shape == (40, 6)
    np.testing.assert_array_equal(np.sort(found, 1), np.tile(np.arange(6), (40, 1)))
    one = BatchedPriceSearch(torch.as_tensor(few[:1]), np.zeros(1)).best(a, 3)
    np.testing.assert_array_equal(one, np.zeros((40, 1)))


@pytest.mark.parametrize("off", [1e-13, 1e-9])
def test_batched_search_is_exact_on_an_axis_almost_without_extent(off):
    # (the nodes' tilts along that axis put the shifted queries ~1e13 away: every leaf pruned for
    # some queries, and the search failed with an IndexError)
    rng = np.random.default_rng(0)
    b = np.column_stack([rng.uniform(0, 30, size=(3000, 2)), off * rng.normal(size=3000)])
    a = np.column_stack([b[:1500, :2] + rng.normal(size=(1500, 2)), off * rng.normal(size=1500)])
    prices = 5 * np.sin(b[:, 0] / 3) + 0.3 * rng.normal(size=3000)
    _check_best(BatchedPriceSearch(torch.as_tensor(b), prices).best(a, 2), a, b, prices, 2)


def test_batched_search_in_slices_is_exact(monkeypatch):
    # a small cap on the pairs held at once: the queries are searched in many slices, halved on overflow
    monkeypatch.setattr(batched_search, "MAX_PAIRS", 3000)
    monkeypatch.setattr(batched_search, "_MIN_SLICE", 16)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1000, 2)), rng.normal(size=(1200, 2))
    prices = 0.3 * rng.normal(size=1200)
    _check_best(BatchedPriceSearch(torch.as_tensor(b), prices).best(a, 4), a, b, prices, 4)


@pytest.mark.parametrize("d", [2, 3])
def test_batched_search_from_any_anchor_is_exact(d):
    # the anchors only set where pruning starts: far, repeated or random, the answer is the same
    rng = np.random.default_rng(40 + d)
    a, b = rng.normal(size=(500, d)), rng.uniform(-2, 2, size=(800, d))
    prices = 3 * np.sin(4 * b[:, 0]) * np.cos(3 * b[:, -1])
    search = BatchedPriceSearch(torch.as_tensor(b), prices)
    prices[rng.choice(800, 40, replace=False)] = np.inf  # priced out: never among the best, no tilt
    search.update(prices)
    far = np.full(500, int(np.argmax(b[:, 0])))
    for anchor in (None, rng.integers(0, 800, size=500), far):
        for k in (1, 5):
            _check_best(search.best(a, k, anchor=anchor), a, b, prices, k)


def test_batched_search_anchored_at_the_best_prunes_more():
    # prices that the quadratic part cannot absorb (two sections of a tissue): each query's best
    # lie away from it, and the points next to the query bound the search loosely
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-2, 2, size=(2000, 2)), rng.uniform(-2, 2, size=(4000, 2))
    prices = 2 * np.sin(3 * b[:, 0]) + 2 * np.cos(3 * b[:, 1])
    best = np.argmin(cdist(a, b, "sqeuclidean") + prices[None, :], axis=1)
    search = BatchedPriceSearch(torch.as_tensor(b), prices)
    kept = []
    bounds = search._bounds

    def counting(level, node, x):
        out = bounds(level, node, x)
        kept.append(int(node.shape[0]))
        return out

    search._bounds = counting
    pairs = {}
    for name, anchor in (("query", None), ("best", best)):
        kept.clear()
        _check_best(search.best(a, 2, anchor=anchor), a, b, prices, 2)
        pairs[name] = sum(kept)
    assert pairs["best"] < 0.8 * pairs["query"]


@pytest.mark.parametrize("d", [2, 20])
def test_nearest_on_device_equals_the_k_d_tree(d):
    rng = np.random.default_rng(d)
    P, Q = rng.normal(size=(3000, d)), rng.normal(size=(500, d))
    got = nearest_on_device(torch.as_tensor(P), torch.as_tensor(Q), 7)
    ref = nearest(cKDTree(P), Q, 7)
    dist = lambda idx: ((Q[:, None, :] - P[idx]) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(dist(got), dist(ref), rtol=1e-12, atol=1e-12)


def _integration_problem(m, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.uniform(size=(m, 2))
    g = np.column_stack([np.sin(3 * Y[:, 1]), Y[:, 0] ** 2]) + 0.05 * rng.normal(size=(m, 2))
    nb = nearest(cKDTree(Y), Y, 7)[:, 1:]
    return Y, g, nb


def _integral(Y, g, nb):
    return integrate.integrate(
        torch.as_tensor(Y), torch.as_tensor(g), torch.as_tensor(nb), generator=torch.Generator().manual_seed(0)
    ).numpy()


def _error_to_exact(got, Y, g, nb):
    """Largest difference to the sparse factorisation's solution, relative to its spread (constants aside)."""
    L, rhs = _integration_system(Y, g, nb)
    exact = spl.spsolve(L.tocsc(), rhs)
    return np.abs((got - got.mean()) - (exact - exact.mean())).max() / (exact.max() - exact.min())


def test_integration_operator_applies_the_same_system_as_the_matrix():
    # repeated and mutual edges included: the operator must add them up as the matrix does
    Y, g, nb = _integration_problem(500, seed=3)
    nb[:50, 1] = nb[:50, 0]
    L, rhs = _integration_system(Y, g, nb)
    op, rhs_op = _integration_system(Y, g, nb, matrix=False)
    np.testing.assert_array_equal(rhs_op, rhs)
    p = np.random.default_rng(0).normal(size=500)
    np.testing.assert_allclose(op @ p, L @ p, rtol=1e-12, atol=1e-12)


def test_integral_on_the_device_solves_the_system():
    Y, g, nb = _integration_problem(3000)
    assert _error_to_exact(_integral(Y, g, nb), Y, g, nb) <= 1e-6


@pytest.mark.parametrize("steps", [1, 7, 30, 50])
def test_conjugate_gradients_take_at_most_the_steps_asked(steps):
    # blocks of 25 steps where 25 divides the count, else one block: never more steps than asked,
    # and every step lowers the energy of the system (a step too many or too few shows)
    Y, g, nb = _integration_problem(2000, seed=4)
    L, rhs = integrate._system(torch.as_tensor(Y), torch.as_tensor(g), torch.as_tensor(nb))

    def energy(x):
        return float(0.5 * (x * L(x)).sum() - (x * rhs).sum())

    zero = torch.zeros_like(rhs)
    runs = [integrate.conjugate_gradients(L, rhs, zero, steps=k, rtol=0.0) for k in (steps - 1, steps, steps + 1)]
    assert energy(runs[0]) > energy(runs[1]) > energy(runs[2])
    assert zero.abs().max() == 0  # the start is not written to


def test_coarse_to_fine_integral_is_close_to_the_exact_one(monkeypatch):
    # coarse levels below 1,000 points: two of them for 40,000 points, then 30 smoothing steps
    monkeypatch.setattr(integrate, "BASE_POINTS", 1000)
    Y, g, nb = _integration_problem(40_000, seed=1)
    error = _error_to_exact(_integral(Y, g, nb), Y, g, nb)
    assert error <= 0.02
    # ... and much closer than the coarse guess without smoothing
    monkeypatch.setattr(integrate, "SMOOTHING_STEPS", 0)
    assert 4 * error < _error_to_exact(_integral(Y, g, nb), Y, g, nb) <= 0.15


def test_coarse_to_fine_guess_integrates_a_constant_field_exactly(monkeypatch):
    # prices c.y have the constant gradient c: every level and every extension is exact, unsmoothed
    monkeypatch.setattr(integrate, "BASE_POINTS", 500)
    monkeypatch.setattr(integrate, "SMOOTHING_STEPS", 0)
    Y, _, nb = _integration_problem(20_000, seed=2)
    c = np.array([0.7, -1.9])
    got = _integral(Y, np.tile(c, (20_000, 1)), nb)
    want = Y @ c
    np.testing.assert_allclose(got - got.mean(), want - want.mean(), atol=1e-7)


def test_coarse_to_fine_integral_on_the_host_factorises_only_small_levels(monkeypatch):
    # the host's path recurses as the device's does: 40,000 points -> 5,000 -> 625, only the
    # last factorised; near the exact integral after smoothing, and exact on a constant field
    monkeypatch.setattr(warm_prices, "_DIRECT_MAX_POINTS", 1000)
    sizes = []
    factorise = spl.spsolve

    def recorded(L, rhs, **kwargs):
        sizes.append(L.shape[0])
        return factorise(L, rhs, **kwargs)

    monkeypatch.setattr(warm_prices.spl, "spsolve", recorded)
    Y, g, nb = _integration_problem(40_000, seed=1)
    got = warm_prices._integrate_on_host(Y, g, nb, 1.0)
    assert sizes == [625]
    monkeypatch.setattr(warm_prices.spl, "spsolve", factorise)
    # (unpreconditioned on the host, and smoothed once a level: about 0.06 and 0.16 unsmoothed)
    error = _error_to_exact(got, Y, g, nb)
    assert error <= 0.1
    monkeypatch.setattr(warm_prices, "_SMOOTHING_STEPS", 0)
    assert 2 * error < _error_to_exact(warm_prices._integrate_on_host(Y, g, nb, 1.0), Y, g, nb) <= 0.3
    c = np.array([0.7, -1.9])
    flat = warm_prices._integrate_on_host(Y, np.tile(c, (40_000, 1)), nb, 1.0)
    np.testing.assert_allclose(flat - flat.mean(), Y @ c - (Y @ c).mean(), atol=1e-7)


def _far_flung(X: np.ndarray, truth: np.ndarray, count: int = 10) -> np.ndarray:
    """``truth`` with the partners of the ``count`` leftmost and rightmost points of X exchanged."""
    order = np.argsort(X[:, 0])
    left, right = order[:count], order[-count:]
    perm = truth.copy()
    perm[left], perm[right] = truth[right], truth[left]
    return perm


@pytest.mark.parametrize("matching", ["optimal", "far-flung pairs"])
def test_price_guess_is_the_same_on_both_paths(monkeypatch, matching):
    X, Y, truth = hr.datasets.planted_pair(3000, kind="density", seed=2)
    perm = truth if matching == "optimal" else _far_flung(X, truth)
    A, B = torch.as_tensor(X), torch.as_tensor(Y)
    nb = nearest(cKDTree(Y), Y, 7)[:, 1:]
    host = price_guess(SqEuclidean(), A, B, perm, nb, scale=0.01)
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)
    device = price_guess(SqEuclidean(), A, B, perm, nb, scale=0.01)
    np.testing.assert_allclose(device - device.mean(), host - host.mean(), atol=1e-6 * np.ptp(host))


def test_trusted_slopes_fill_steep_and_unmatched_points_from_trusted_neighbours():
    from hiref.engine.finish.prices import _trusted_slopes

    idx = torch.arange(10)
    nb = torch.stack([(idx - 1).clamp_min(0), (idx + 1).clamp_max(9)], 1)  # a path
    g = torch.ones(10, 2, dtype=torch.float64)
    g[5] = 100.0  # steep
    g[7:9] = 0.0  # two unmatched points side by side: the inner one is filled on the second ring
    matched = torch.ones(10, dtype=torch.bool)
    matched[7:9] = False
    out = _trusted_slopes(g.clone(), matched, nb)
    torch.testing.assert_close(out, torch.ones(10, 2, dtype=torch.float64))
    still = torch.zeros(10, 2, dtype=torch.float64)  # nothing moved: nothing is steep
    torch.testing.assert_close(_trusted_slopes(still.clone(), torch.ones(10, dtype=torch.bool), nb), still)


def test_trusted_slopes_keep_a_local_deformation_when_most_points_stay():
    # 70 % of the points barely move and a smooth bump moves the rest: its slopes are far above
    # the median, but they are no outliers; only a far-flung pair is.
    from hiref.engine.finish import prices

    rng = np.random.default_rng(0)
    m = 2000
    g = torch.as_tensor(rng.normal(size=(m, 2)) * 1e-6)
    bump = torch.arange(m) >= int(0.7 * m)
    g[bump] = torch.as_tensor(rng.uniform(0.5, 1.5, size=(int(bump.sum()), 1)) * np.array([1.0, 0.5]))
    g[m - 1] = 1e4  # one pair sent across the cloud
    nb = torch.stack([(torch.arange(m) - 1).clamp_min(0), (torch.arange(m) + 1).clamp_max(m - 1)], 1)
    out = prices._trusted_slopes(g.clone(), torch.ones(m, dtype=torch.bool), nb)
    kept = (out == g).all(1)
    assert int((~kept).sum()) <= prices._STEEP_SHARE * m
    assert bool(kept[bump].float().mean() > 0.97)
    assert float(out[m - 1].norm()) < 10.0  # the far-flung slope was replaced by its neighbours'


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device path"])
def test_price_guess_ignores_a_few_pairs_sent_across_the_cloud(monkeypatch, on_device):
    # Twenty exchanged partners must not raise a bump in the prices: every slope counted, the
    # guess moved by 30 mean costs near them (on a range of 58); the auction then wears such a
    # bump down by small bids (minutes on a planted lattice of 2**21 points).
    X, Y, truth = hr.datasets.planted_pair(4096, kind="lattice", seed=0)
    A, B = torch.as_tensor(X), torch.as_tensor(Y)
    nb = nearest(cKDTree(Y), Y, 7)[:, 1:]
    scale = float(((X - Y[truth]) ** 2).sum(1).mean())
    monkeypatch.setattr(batched_search, "on_device", lambda device: on_device)
    want = price_guess(SqEuclidean(), A, B, truth, nb, scale=scale)
    got = price_guess(SqEuclidean(), A, B, _far_flung(X, truth), nb, scale=scale)
    moved = got - want
    assert np.ptp(want) > 20.0
    assert np.abs(moved - np.median(moved)).max() < 0.5


@pytest.mark.parametrize(
    ("morton", "d"), [(False, 2), (True, 2), (False, 24)], ids=["given order", "Morton order", "24-D"]
)
@pytest.mark.parametrize("unbalanced", [False, True])
def test_solve_with_the_device_path_is_exact_and_certified(device_path, monkeypatch, unbalanced, morton, d):
    # (in 24 dimensions the first pricing gives the candidates of the other cloud)
    if morton:
        monkeypatch.setattr(spatial_order, "SPATIAL_ORDER_MIN", 1)
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(600, d)), rng.normal(size=(650 if unbalanced else 600, d)) * 1.1 + 0.2
    m = hr.solve(X, Y, progress=False)
    C = cdist(X, Y, "sqeuclidean")
    r, c = linear_sum_assignment(C)
    opt = C[r, c].mean()
    assert m.cost / opt - 1 <= 1e-6
    assert m.cost / opt - 1 <= m.gap_bound <= 1e-4
    assert len(np.unique(m.perm)) == 600


@pytest.mark.parametrize("host_tail", [polish.HOST_TAIL, 0], ids=["tails on the host", "batched only"])
def test_planted_pair_with_the_device_path_matches_the_host_path(monkeypatch, host_tail):
    X, Y, truth = hr.datasets.planted_pair(8192, kind="lattice", seed=3)
    host = hr.solve(X, Y, progress=False)
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)
    monkeypatch.setattr(polish, "HOST_TAIL", host_tail)
    device = hr.solve(X, Y, progress=False)
    opt = float(((X - Y[truth]) ** 2).sum(1).mean())
    assert device.cost / opt - 1 <= 1e-5
    assert device.cost == pytest.approx(host.cost, rel=1e-9)
    assert device.cost / opt - 1 <= device.gap_bound <= 5e-3


def test_repeat_runs_the_step_as_often_as_asked():
    state = torch.zeros(3)

    def step():
        state.add_(1.0)

    for times in (0, 1, 2, 60):
        state.zero_()
        repeat(step, times, device=state.device)
        assert state.tolist() == [float(times)] * 3


@pytest.mark.gpu
def test_captured_levels_give_the_eager_matching_on_cuda(monkeypatch):
    from hiref.engine import repeat as repeat_module

    X, Y, _ = hr.datasets.planted_pair(16_384, kind="density", seed=4)
    captured = hr.solve(X, Y, device="cuda", progress=False, polish=False, refine=False)
    assert repeat_module.CAPTURE  # no capture failed
    monkeypatch.setattr(repeat_module, "CAPTURE", False)
    eager = hr.solve(X, Y, device="cuda", progress=False, polish=False, refine=False)
    # the same kernels in the same order: the same labels (up to rare float ties)
    assert np.mean(captured.perm == eager.perm) >= 0.999
    assert captured.cost == pytest.approx(eager.cost, rel=1e-6)


@pytest.mark.gpu
def test_captured_integral_on_cuda_matches_the_cpu(monkeypatch):
    # the conjugate-gradient blocks run from CUDA graphs there: the same prices as eagerly on the CPU
    from hiref.engine import repeat as repeat_module

    monkeypatch.setattr(integrate, "BASE_POINTS", 1000)
    Y, g, nb = _integration_problem(40_000, seed=1)
    args = [torch.as_tensor(a, device="cuda") for a in (Y, g, nb)]
    got = integrate.integrate(*args, generator=torch.Generator().manual_seed(0)).cpu().numpy()
    assert repeat_module.CAPTURE  # no capture failed
    np.testing.assert_allclose(got, _integral(Y, g, nb), rtol=0, atol=1e-9)


@pytest.mark.gpu
def test_device_path_on_cuda_matches_the_cpu():
    X, Y, truth = hr.datasets.planted_pair(65_536, kind="density", seed=5)
    cuda = hr.solve(X, Y, device="cuda", progress=False)
    cpu = hr.solve(X, Y, progress=False)
    opt = float(((X - Y[truth]) ** 2).sum(1).mean())
    assert cuda.cost / opt - 1 <= 1e-4
    assert cuda.cost / opt - 1 <= cuda.gap_bound <= 5e-3
    assert cuda.cost == pytest.approx(cpu.cost, rel=1e-4)
