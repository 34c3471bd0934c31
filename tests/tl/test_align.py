from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr

from helpers import assert_same_adata_content


def test_align_stores_both_directions(slices):
    a, b = slices
    # Without the polish, matched pairs share their co-cluster (checked on the labels below).
    assert hr.tl.align(a, b, use_rep="spatial", progress=False, polish=False) is None
    pa, pb = a.uns["hiref"]["partner"], b.uns["hiref"]["partner"]
    assert pa.dtype == np.int64
    assert (pb >= 0).all()  # b is the smaller: all matched
    assert (pa >= 0).sum() == b.n_obs == len(np.unique(pa[pa >= 0]))
    matched = np.flatnonzero(pa >= 0)
    assert np.array_equal(pb[pa[matched]], matched)
    assert (a.obs["hiref_match"].astype(str).to_numpy()[matched] == b.obs_names[pa[matched]]).all()
    assert a.obs["hiref_match"].isna().sum() == a.n_obs - b.n_obs
    assert a.uns["hiref"]["role"] == "source"
    assert b.uns["hiref"]["role"] == "target"
    labels = a.obsm["hiref_labels"]
    assert labels.shape[0] == a.n_obs
    assert np.array_equal(labels[matched], b.obsm["hiref_labels"][pa[matched]])
    partner_xy = a.obsm["hiref_partner_spatial"]
    assert np.allclose(partner_xy[matched], b.obsm["spatial"][pa[matched]])
    assert np.isnan(partner_xy[pa < 0]).all()
    params = a.uns["hiref"]["params"]
    assert params["use_rep"] == "spatial"
    assert params["random_state"] == 0
    assert params["hiref_version"] == hr.__version__
    assert a.uns["hiref"]["cost"] > 0


def test_key_added_copy_and_views(slices):
    a, b = slices
    before_a, before_b = a.copy(), b.copy()
    out = hr.tl.align(a, b, use_rep="spatial", key_added="mine", copy=True, progress=False)
    a2, b2 = out
    assert "mine" in a2.uns
    assert "mine_match" in b2.obs
    assert_same_adata_content(a, before_a)
    assert_same_adata_content(b, before_b)
    view = a[:300]
    hr.tl.align(view, b, use_rep="spatial", progress=False)
    assert not view.is_view
    assert view.uns["hiref"]["partner"].shape == (300,)


def test_joint_pca_when_x_pca_is_missing(slices):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    assert "hiref_pca" in a.obsm
    assert a.obsm["hiref_pca"].shape[1] == b.obsm["hiref_pca"].shape[1]
    assert "joint_pca" in a.uns["hiref"]["params"]
    # Same region cells are matched far more often than by chance (6 regions).
    same = a.obs["region"].to_numpy()[b.uns["hiref"]["partner"]] == b.obs["region"].to_numpy()
    assert same.mean() > 0.8


def test_combined_representation_and_unbalanced_modes(slices):
    a, b = slices
    hr.tl.align(a, b, use_rep={"spatial": 1.0, "X": 0.5}, progress=False)
    assert a.uns["hiref"]["params"]["use_rep"] == '{"spatial": 1.0, "X": 0.5}'
    hr.tl.align(a, b, use_rep="spatial", unbalanced="subsample", key_added="sub", progress=False)
    assert (a.uns["sub"]["partner"] >= 0).sum() == b.n_obs


def test_h5ad_round_trip(slices, tmp_path):
    a, b = slices
    hr.tl.align(a, b, use_rep={"spatial": 1.0, "X": 1.0}, progress=False)
    a.write_h5ad(tmp_path / "a.h5ad")
    b.write_h5ad(tmp_path / "b.h5ad")
    a2, b2 = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad")
    m1, m2 = hr.get.matching(a, b), hr.get.matching(a2, b2)
    assert np.array_equal(m1.perm, m2.perm)
    assert m1.cost == m2.cost
    assert m1.schedule == m2.schedule
    for x, y in zip(m1.labels_x, m2.labels_x, strict=True):
        assert np.array_equal(x, y)
    t1 = hr.tl.transfer(a, b, obs="region")
    t2 = hr.tl.transfer(a2, b2, obs="region")
    assert np.array_equal(t1.X.toarray(), t2.X.toarray())
    assert t1.obs.equals(t2.obs)


def test_get_matching_detects_subsets(slices):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    with pytest.raises(ValueError, match="subset"):
        hr.get.matching(a[:100].copy(), b)
    with pytest.raises(ValueError, match="no longer match"):
        hr.get.matching(a, b[::-1].copy())
    with pytest.raises(KeyError, match=r"run hr\.tl\.align first"):
        hr.get.matching(a, b, key="other")


@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "match"),
    [
        (None, {"use_rep": "X_umap"}, KeyError, "no .obsm\\['X_umap'\\].*available"),
        (None, {"use_rep": 3}, TypeError, "`use_rep` must be a key"),
        (None, {"use_rep": {"spatial": -1.0}}, ValueError, "weights must be positive"),
        (None, {"key_added": ""}, ValueError, "`key_added`"),
        ("nan", {"use_rep": "spatial"}, ValueError, "NaN or infinite"),
        ("dims", {"use_rep": "X"}, ValueError, "columns in adata1"),
        ("dup", {"use_rep": "spatial"}, ValueError, "duplicated obs_names"),
        ("genes", {}, ValueError, "share no genes"),
    ],
)
@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_errors_leave_inputs_untouched(slices, mutate, kwargs, error, match):
    a, b = slices
    if mutate == "nan":
        b.obsm["spatial"][3, 0] = np.nan
    elif mutate == "dims":
        b.obsm["spatial"] = np.column_stack([b.obsm["spatial"], np.zeros(b.n_obs)])
    elif mutate == "dup":
        b.obs_names = ["same"] * b.n_obs
    elif mutate == "genes":
        b.var_names = [f"other{i}" for i in range(b.n_vars)]
    before_a, before_b = a.copy(), b.copy()
    with pytest.raises(error, match=match):
        hr.tl.align(a, b, progress=False, **kwargs)
    assert_same_adata_content(a, before_a)
    assert_same_adata_content(b, before_b)
    assert "hiref" not in a.uns


def test_wrong_types():
    with pytest.raises(TypeError, match="`adata1` must be an AnnData"):
        hr.tl.align(np.zeros((3, 2)), ad.AnnData(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="no observations"):
        hr.tl.align(ad.AnnData(np.zeros((0, 2))), ad.AnnData(np.zeros((3, 2))))
    frame = pd.DataFrame(index=["a", "b"])
    with pytest.raises(TypeError, match="`adata1` must be an AnnData, got DataFrame"):
        hr.tl.align(frame, frame)
    with pytest.raises(TypeError, match="`adata2` must be an AnnData, got ndarray"):
        hr.tl.align(ad.AnnData(np.zeros((3, 2))), np.zeros((3, 2)))


def test_solver_options_object_dict_and_keywords_agree():
    a, b = hr.datasets.simulate_slices(n_obs=600, seed=4)
    opts = hr.engine.SolveOptions(leaf_size=32, n_starts=4, polish=False)
    by_object = hr.tl.align(a, b, use_rep="spatial", solver=opts, progress=False, copy=True)[0]
    by_dict = hr.tl.align(a, b, use_rep="spatial", solver={"leaf_size": 32, "n_starts": 4, "polish": False},
                          progress=False, copy=True)[0]  # fmt: skip
    by_keywords = hr.tl.align(a, b, use_rep="spatial", leaf_size=32, n_starts=4, polish=False, progress=False,
                              copy=True)[0]  # fmt: skip
    overridden = hr.tl.align(a, b, use_rep="spatial", solver=opts.replace(leaf_size=64), leaf_size=32, progress=False,
                             copy=True)[0]  # fmt: skip
    for other in (by_dict, by_keywords, overridden):
        np.testing.assert_array_equal(other.uns["hiref"]["partner"], by_object.uns["hiref"]["partner"])
    stored = json.loads(by_object.uns["hiref"]["params"]["engine_options"])
    assert stored == {"polish": False, "leaf_size": 32, "n_starts": 4}
    with pytest.raises(TypeError, match="unknown solver option"):
        hr.tl.align(a, b, use_rep="spatial", leafsize=32, progress=False, copy=True)
