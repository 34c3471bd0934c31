from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.datasets import checkerboard, gaussian_mixtures, halfmoon_scurve, maf_moons_rings
from hiref.engine import Custom, Power
from hiref.engine.geometry.costs import SqEuclidean, Transposed, get_cost

from helpers import exact_matching


def relative_error(cost, X, Y):
    mask = torch.ones(1, X.shape[0], dtype=torch.bool)
    A, V = cost.factorize(X[None], Y[None], mask, mask, torch.Generator().manual_seed(0))
    C = cost.dense(X[None].double(), Y[None].double())
    return float(torch.linalg.norm(A.double() @ V.double().transpose(1, 2) - C) / torch.linalg.norm(C))


def test_sampled_factorization_is_accurate():
    X, Y = (torch.tensor(a) for a in halfmoon_scurve(800, seed=0))
    assert relative_error(Power(1.0), X, Y) < 1e-4
    assert relative_error(Power(0.5), X, Y) < 1e-2
    Xh, Yh = (torch.tensor(a) for a in gaussian_mixtures(800, 20, seed=0))
    assert relative_error(Power(1.0), Xh, Yh) < 2e-2


def test_power_and_custom_dense_and_paired():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3))
    tx, ty = torch.tensor(X), torch.tensor(Y)
    assert np.allclose(Power(1.5).dense(tx, ty).numpy(), cdist(X, Y) ** 1.5)
    assert np.allclose(Power(1.0).paired(tx, ty[:7]).numpy(), np.linalg.norm(X - Y[:7], axis=1))
    manhattan = Custom(lambda x, y: (x[..., :, None, :] - y[..., None, :, :]).abs().sum(-1), name="l1")
    assert np.allclose(manhattan.dense(tx, ty).numpy(), cdist(X, Y, "cityblock"))
    assert np.allclose(manhattan.paired(tx, ty[:7]).numpy(), np.abs(X - Y[:7]).sum(1))


def test_custom_cost_errors():
    X = torch.zeros(2, 4, 2)
    with pytest.raises(ValueError, match="must return a tensor of shape"):
        Custom(lambda x, y: x.sum(-1)).dense(X, X)
    with pytest.raises(ValueError, match="NaN or infinite"):
        Custom(lambda x, y: torch.full(x.shape[:-1] + y.shape[-2:-1], float("nan"))).dense(X, X)
    with pytest.raises(TypeError, match="`fn` must be callable"):
        Custom(3)
    with pytest.raises(ValueError, match="`p` must be a number > 0"):
        Power(0)
    with pytest.raises(ValueError, match="`rank`"):
        Power(1.0, rank=0)
    assert isinstance(get_cost("euclidean"), Power)
    assert isinstance(get_cost(SqEuclidean()), SqEuclidean)


@pytest.mark.parametrize("pair", [halfmoon_scurve, checkerboard, maf_moons_rings], ids=lambda f: f.__name__)
def test_euclidean_cost_is_near_exact(pair):
    X, Y = pair(300, seed=2)
    m = hr.solve(X, Y, cost="euclidean", progress=False, leaf_size=32)
    _, best = exact_matching(X, Y, "euclidean")
    assert m.cost_name == "euclidean"
    assert np.isclose(m.cost, np.linalg.norm(X - Y[m.perm], axis=1).mean())
    assert m.cost <= best * 1.02


def test_power_and_custom_costs_in_solve():
    X, Y = halfmoon_scurve(300, seed=1)
    m = hr.solve(X, Y, cost=Power(1.5), progress=False, leaf_size=32)
    best = exact_matching(X, Y, "euclidean")[0]
    exact15 = (np.linalg.norm(X - Y[best], axis=1) ** 1.5).mean()
    assert m.cost <= exact15 * 1.03

    def sq(x, y):
        return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)

    custom = hr.solve(X, Y, cost=sq, progress=False, leaf_size=32)
    builtin = hr.solve(X, Y, progress=False, leaf_size=32)
    assert custom.cost <= builtin.cost * 1.02


def test_asymmetric_custom_cost_keeps_its_orientation():
    # c(x, y) = |x - y|^2 + 3 <x, w>: depends on which point is the source.
    w = torch.tensor([1.0, -2.0])

    def tilted(x, y):
        return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1) + 3 * (x @ w.to(x))[..., None]

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(120, 2)), rng.normal(size=(90, 2))  # X larger: solved transposed
    m = hr.solve(X, Y, cost=tilted, progress=False, leaf_size=16)
    matched = m.perm >= 0
    pairs = tilted(torch.tensor(X[matched])[:, None, :], torch.tensor(Y[m.perm[matched]])[:, None, :])
    assert np.isclose(m.cost, float(pairs.mean()))
    t = Transposed(Custom(tilted))
    tx, ty = torch.tensor(X[:3]), torch.tensor(Y[:4])
    assert torch.allclose(t.dense(ty, tx), Custom(tilted).dense(tx, ty).T)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("threads", [1, 2])
def test_costs_of_indexed_pairs_equal_the_paired_costs(d, dtype, index, threads):
    # the compiled pass (d <= 3 on the CPU) gives torch's chunked values bit for bit, in slices per thread
    rng = np.random.default_rng(d)
    X = torch.tensor(rng.standard_normal((3000, d)) * 1e3 + 5e4, dtype=dtype)
    Y = torch.tensor(rng.standard_normal((2000, d)) * 1e3 + 5e4, dtype=dtype)
    rows = rng.integers(0, 3000, 200_000).astype(index)
    cols = rng.integers(0, 2000, 200_000).astype(index)
    expected = SqEuclidean().paired(X[torch.as_tensor(rows)].double(), Y[torch.as_tensor(cols)].double()).numpy()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = SqEuclidean().paired_at(X, Y, rows, cols)
        out = np.full(rows.shape[0], np.nan)
        assert SqEuclidean().paired_at(X, Y, rows, cols, out=out) is out
        swapped = Transposed(SqEuclidean()).paired_at(Y, X, cols, rows)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(swapped, expected)


def test_costs_of_indexed_pairs_of_other_costs():
    rng = np.random.default_rng(0)
    X, Y = torch.tensor(rng.random((50, 2))), torch.tensor(rng.random((40, 2)))
    rows, cols = rng.integers(0, 50, 300), rng.integers(0, 40, 300)
    for cost in (Power(1.5), Transposed(Power(1.5))):
        dense = cost.dense(X, Y).numpy()
        np.testing.assert_allclose(cost.paired_at(X, Y, rows, cols), dense[rows, cols], rtol=1e-12)
