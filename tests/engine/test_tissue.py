"""Near-optimal matchings on tissue-like clouds: uniform densities, lattices, unequal sizes, 20-D.

Each case compares the default engine with scipy's exact solver; the hierarchy alone
(``polish=False, refine=False``) is 5-60 % above the optimum on these clouds.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr

from helpers import exact_matching, shared_data_dir


def uniform_square(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniform samples of the unit square, the second slightly stretched."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 2)), rng.random((n, 2)) * [1.03, 0.97]


def hex_lattice_pair(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A hexagonal lattice and a shifted, jittered copy of it (two Visium-like sections)."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    X = np.stack([j + 0.5 * (i % 2), i * np.sqrt(3) / 2], -1).reshape(-1, 2).astype(float)
    Y = X + [0.37, -0.21] + 0.15 * rng.standard_normal(X.shape)
    return X, Y


def gaussian_mixture_20d(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eight unit Gaussians in 20-D; Y's means scaled by 1.1 and shifted by 0.5."""
    rng = np.random.default_rng(seed)
    means = 3 * rng.standard_normal((8, 20))
    X = means[rng.integers(0, 8, n)] + rng.standard_normal((n, 20))
    Y = (1.1 * means + 0.5)[rng.integers(0, 8, n)] + rng.standard_normal((n, 20))
    return X, Y


def gap(matching: hr.Matching, best: float) -> float:
    return matching.cost / best - 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: uniform_square(900, seed=0), id="uniform-square"),
        pytest.param(lambda: hex_lattice_pair(28, 30, seed=0), id="hex-lattice"),
        pytest.param(lambda: gaussian_mixture_20d(1200, seed=0), id="gaussian-20d"),
    ],
)
def test_default_is_within_3_percent_of_exact_for_several_seeds(make):
    X, Y = make()
    _, best = exact_matching(X, Y)
    gaps = [gap(hr.solve(X, Y, seed=seed, progress=False), best) for seed in range(3)]
    assert max(gaps) <= 0.03, gaps
    assert min(gaps) >= -1e-9


def test_hierarchy_alone_is_far_off_on_a_uniform_square():
    # Guards the test above against data on which any matching would pass.
    X, Y = uniform_square(900, seed=0)
    _, best = exact_matching(X, Y)
    plain = hr.solve(X, Y, seed=0, progress=False, polish=False, refine=False)
    polished = hr.solve(X, Y, seed=0, progress=False)
    assert gap(plain, best) > 0.03
    assert polished.cost <= plain.cost
    assert "polish" in polished.timings
    assert polished.refine_costs == sorted(polished.refine_costs, reverse=True)


@pytest.mark.parametrize(("n", "m"), [(700, 760), (760, 700)])
def test_unequal_sizes_reach_the_exact_partial_optimum(n, m):
    rng = np.random.default_rng(1)
    X, Y = rng.random((n, 2)), rng.random((m, 2))
    C = cdist(X, Y, "sqeuclidean")
    r, c = linear_sum_assignment(C)
    best = C[r, c].mean()
    res = hr.solve(X, Y, progress=False)
    matched = res.perm >= 0
    assert matched.sum() == min(n, m)
    assert len(np.unique(res.perm[matched])) == min(n, m)
    assert res.cost <= best * 1.01


def test_real_merfish_crop_is_near_exact():
    data = shared_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data")
    clouds = []
    for name in ("merfish_hypothalamus_bregma0.26.h5ad", "merfish_hypothalamus_bregma0.21.h5ad"):
        xy = np.asarray(ad.read_h5ad(data / name).obsm["spatial"], dtype=float)
        keep = (np.abs(xy[:, 0]) < 700) & (np.abs(xy[:, 1]) < 700)  # a central crop, density kept
        clouds.append(xy[keep])
    X, Y = clouds
    C = cdist(X, Y, "sqeuclidean")
    r, c = linear_sum_assignment(C)
    best = C[r, c].sum() / min(C.shape)
    for seed in (0, 1):
        res = hr.solve(X, Y, seed=seed, progress=False)
        assert res.cost <= best * 1.02
