"""use_rep="auto": position and expression, the expression weight chosen from the data."""

from __future__ import annotations

import itertools
import json

import anndata as ad
import numpy as np
import pytest

import hiref as hr
from hiref.tl._auto import FAST_TOLERANCE, TOLERANCE, expression_weight


def test_auto_stores_its_choice(slices, tmp_path):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    params = b.uns["hiref"]["params"]
    assert params["use_rep"] == "auto"
    auto = json.loads(params["auto"])
    assert 0 <= auto["rho"] <= 1
    assert 0 < params["auto_weight"] <= 1
    assert auto["weight"] == params["auto_weight"]
    assert auto["weight"] == expression_weight(auto["rho"])
    assert "hiref_pca" in b.obsm  # the expression PCs it computed
    b.write_h5ad(tmp_path / "b.h5ad")
    assert ad.read_h5ad(tmp_path / "b.h5ad").uns["hiref"]["params"]["auto"] == params["auto"]


def test_auto_without_coordinates_is_expression_only(slices):
    a, b = slices
    del a.obsm["spatial"], b.obsm["spatial"]
    with pytest.warns(UserWarning, match="expression PCs alone"):  # the default key, missing: said aloud
        hr.tl.align(a, b, progress=False)
    params = b.uns["hiref"]["params"]
    assert params["use_rep"] == "auto"
    assert "no coordinates" in json.loads(params["auto"])["rule"]
    assert "hiref_confidence" not in b.obs  # no coordinates, no spatial confidence
    assert np.isfinite(b.obs["hiref_cost"].to_numpy()[b.uns["hiref"]["partner"] >= 0]).all()


def test_register_keeps_an_aligned_pair():
    a, b = hr.datasets.simulate_slices(n_obs=600, n_genes=20, rotation=0, translation=(0, 0), seed=3)
    hr.pp.register(a, b)
    info = b.uns["spatial_registered"]
    assert info["decision"] == "identity"
    np.testing.assert_array_equal(b.obsm["spatial_registered"], b.obsm["spatial"])
    assert info["margin"] >= 1.0
    assert len(info["candidate_scores"]) == len(info["candidate_angles"]) == 48


def _dropped_share(var, kept, weight):
    return weight * (var.sum() - var[kept].sum()) / var.sum() / (1 + weight)


def test_leading_pcs_keeps_all_but_the_tolerance():
    from hiref.tl._auto import MIN_KEPT_PCS, TOLERANCE, leading_pcs

    rng = np.random.default_rng(0)
    var = np.geomspace(3, 0.05, 30)[rng.permutation(30)] ** 2
    order = np.argsort(-var)
    for weight in (0.001, 0.01, 0.1, 1.0):
        kept, info = leading_pcs(var, weight)
        k = info["n_pcs_kept"]
        assert k >= MIN_KEPT_PCS
        np.testing.assert_array_equal(kept, order[:k])  # the most variable PCs
        assert info["dropped_share"] <= TOLERANCE + 1e-12
        assert np.isclose(info["dropped_share"], _dropped_share(var, kept, weight))
        if k > MIN_KEPT_PCS:  # the fewest: one PC less would drop too much
            assert _dropped_share(var, order[: k - 1], weight) > TOLERANCE
    assert len(leading_pcs(var, 1.0)[0]) > len(leading_pcs(var, 0.01)[0])
    assert len(leading_pcs(var, 0.0)[0]) == 0


def test_leading_pcs_stops_at_the_fast_dimensions_only_within_the_looser_tolerance():
    from hiref.tl._auto import FAST_TOLERANCE, TOLERANCE, leading_pcs

    var = np.linspace(1.0, 0.5, 60)  # a flat spectrum, like Visium's: many PCs for 0.5 %
    for weight in (0.005, 0.02, 0.05, 0.2, 1.0):
        free = leading_pcs(var, weight)[1]["n_pcs_kept"]
        kept, info = leading_pcs(var, weight, fast_pcs=14)
        k = info["n_pcs_kept"]
        fast_share = _dropped_share(var, np.argsort(-var)[:14], weight)
        if free > 14 and fast_share <= FAST_TOLERANCE:
            assert k == 14  # expression's detail is given up for the fast finish
            assert TOLERANCE < info["dropped_share"] <= FAST_TOLERANCE
        else:
            assert k == free  # within the tolerance already, or too much would be lost
        assert np.isclose(info["dropped_share"], _dropped_share(var, kept, weight))
    # both branches occur on this spectrum
    assert leading_pcs(var, 0.02, fast_pcs=14)[1]["n_pcs_kept"] == 14 < leading_pcs(var, 0.02)[1]["n_pcs_kept"]
    assert leading_pcs(var, 1.0, fast_pcs=14)[1]["n_pcs_kept"] > 14


def test_auto_stores_the_kept_pcs(slices):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    auto = json.loads(b.uns["hiref"]["params"]["auto"])
    assert 0 <= auto["dropped_share"] <= FAST_TOLERANCE
    if auto["dropped_share"] > TOLERANCE:  # only where the fast finish's 14 PCs (with 2-D position) drop little
        assert auto["n_pcs_kept"] == 14
    assert 1 <= auto["n_pcs_kept"] <= auto["n_pcs"]
    assert b.obsm["hiref_pca"].shape[1] == auto["n_pcs_kept"]  # the PCs it used


def test_auto_project_in_blocks_equals_whole():
    import scipy.sparse as sp

    from hiref.tl._auto import project

    rng = np.random.default_rng(1)
    X = sp.random(300, 40, density=0.2, format="csr", random_state=1)
    W, mean = rng.standard_normal((40, 5)), rng.standard_normal(40)
    whole = project(X, W, mean, chunk=10**6)
    np.testing.assert_allclose(project(X, W, mean, chunk=7), whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole, (X.toarray() - mean) @ W, rtol=1e-4, atol=1e-4)


def test_projected_variance_in_blocks():
    import scipy.sparse as sp

    from hiref.tl._auto import project, projected_variance

    rng = np.random.default_rng(2)
    X = sp.random(250, 30, density=0.3, format="csr", random_state=2)
    W, mean = rng.standard_normal((30, 4)), rng.standard_normal(30)
    expected = project(X, W, mean).astype(np.float64).var(0)
    np.testing.assert_allclose(projected_variance(X, W, mean, chunk=9), expected, rtol=1e-4)


def test_auto_uses_stored_x_pca_and_keeps_its_leading_columns(slices):
    a, b = (x.copy() for x in slices)
    rng = np.random.default_rng(0)
    for x in (a, b):  # column 3 carries most of the variance, then column 0
        x.obsm["X_pca"] = rng.standard_normal((x.n_obs, 6)) * np.array([2.0, 0.1, 0.1, 5.0, 0.1, 0.1])
    hr.tl.align(a, b, progress=False)
    auto = json.loads(b.uns["hiref"]["params"]["auto"])
    assert auto["n_pcs"] == 6
    assert 2 <= auto["n_pcs_kept"] <= 6
    assert "hiref_pca" not in b.obsm  # nothing computed: the user's PCs were used


def test_auto_with_zero_weight_is_position_only(slices, monkeypatch):
    import hiref.tl._auto as auto_module

    a, b = (x.copy() for x in slices)
    monkeypatch.setattr(auto_module, "choose_weight", lambda *args, **kwargs: (0.0, {"rho": 1.0}))
    hr.tl.align(a, b, progress=False)
    auto = json.loads(b.uns["hiref"]["params"]["auto"])
    assert auto["n_pcs_kept"] == 0
    assert auto["dropped_share"] == 0.0
    assert "hiref_pca" not in b.obsm
    c, d = (x.copy() for x in slices)
    hr.tl.align(c, d, use_rep="spatial", progress=False)  # the same matching as on position alone
    np.testing.assert_array_equal(b.uns["hiref"]["partner"], d.uns["hiref"]["partner"])


def test_expression_weight_leaves_position_alone_where_it_already_predicts_expression():
    # rho >= 0.8: every DLPFC case (benchmarks/recipe.py); expression weights there only lost accuracy.
    for rho in (0.8, 0.815, 0.9, 1.0):
        assert expression_weight(rho) == 0.0
    # rho <= 0.7: the square rule (simulated slices at 0.68: region agreement 0.64 -> 0.82 with it).
    for rho in (0.2, 0.5, 0.68, 0.7):
        assert expression_weight(rho) == pytest.approx(min(1.0, ((1 - rho) / rho) ** 2))
    assert expression_weight(0.0) == 1.0
    weights = [expression_weight(r) for r in np.linspace(0.0, 1.0, 101)]
    assert all(w1 >= w2 for w1, w2 in itertools.pairwise(weights))  # never more expression as rho grows
