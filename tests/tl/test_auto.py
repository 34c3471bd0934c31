"""use_rep="auto": position and expression, the expression weight chosen from the data."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np

import hiref as hr


def test_auto_stores_its_choice(slices, tmp_path):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    params = b.uns["hiref"]["params"]
    assert params["use_rep"] == "auto"
    auto = json.loads(params["auto"])
    assert 0 <= auto["rho"] <= 1
    assert 0 < params["auto_weight"] <= 1
    assert auto["weight"] == params["auto_weight"]
    assert auto["weight"] == min(1.0, ((1 - auto["rho"]) / auto["rho"]) ** 2)
    assert "hiref_pca" in b.obsm  # the expression PCs it computed
    b.write_h5ad(tmp_path / "b.h5ad")
    assert ad.read_h5ad(tmp_path / "b.h5ad").uns["hiref"]["params"]["auto"] == params["auto"]


def test_auto_without_coordinates_is_expression_only(slices):
    a, b = slices
    del a.obsm["spatial"], b.obsm["spatial"]
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
