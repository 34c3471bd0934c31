"""Per-cell cost and confidence stored by hr.tl.align, and hr.tl.label_agreement."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref.tl._confidence import matched_cost, spatial_confidence


def grid(n_side=20):
    xy = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side)), -1).reshape(-1, 2).astype(float)
    return xy


def test_confidence_columns_stored_and_round_trip(slices, tmp_path):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False, key_added="sp")
    for adata, _other in ((a, b), (b, a)):
        assert {"sp_cost", "sp_confidence"} <= set(adata.obs)
        partner = adata.uns["sp"]["partner"]
        cost = adata.obs["sp_cost"].to_numpy()
        assert np.isnan(cost[partner < 0]).all()
        assert np.isfinite(cost[partner >= 0]).all()
        conf = adata.obs["sp_confidence"].to_numpy()
        assert np.nanmin(conf) >= 0
        assert np.nanmax(conf) <= 1
        assert "sp_confidence" in adata.uns["sp"]["obs_keys"]
    # The stored cost is the squared distance between partners on the (single) representation.
    ok = a.uns["sp"]["partner"] >= 0
    d = ((a.obsm["spatial"][ok] - b.obsm["spatial"][a.uns["sp"]["partner"][ok]]) ** 2).sum(1)
    assert np.allclose(a.obs["sp_cost"].to_numpy()[ok], d)
    a.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_series_equal(back.obs["sp_confidence"], a.obs["sp_confidence"])
    assert list(back.uns["sp"]["obs_keys"]) == list(a.uns["sp"]["obs_keys"])


def test_confidence_is_low_on_a_scrambled_region():
    xy = grid(20)
    rng = np.random.default_rng(0)
    a = ad.AnnData(obs=pd.DataFrame(index=[f"a{i}" for i in range(len(xy))]), obsm={"spatial": xy})
    b = ad.AnnData(obs=pd.DataFrame(index=[f"b{i}" for i in range(len(xy))]), obsm={"spatial": xy.copy()})
    # Cells are matched by a feature equal to position, except in one corner of b, where the
    # features are shuffled: those cells get scattered partners.
    feat_b = xy.copy()
    region = (xy[:, 0] < 7) & (xy[:, 1] < 7)
    idx = np.flatnonzero(region)
    feat_b[idx] = xy[rng.permutation(len(xy))[: len(idx)]]
    a.obsm["feat"], b.obsm["feat"] = xy.copy(), feat_b
    hr.tl.align(a, b, use_rep="feat", progress=False)
    conf = b.obs["hiref_confidence"].to_numpy()
    inner = region & (xy[:, 0] < 6) & (xy[:, 1] < 6)
    far = (xy[:, 0] > 9) | (xy[:, 1] > 9)
    assert conf[inner].mean() < 0.4
    assert conf[far].mean() > 0.9


def test_confidence_helpers():
    xy = grid(6)
    perm = np.arange(len(xy))
    assert np.allclose(spatial_confidence(xy, xy, perm), 1.0)
    perm[0] = -1
    conf = spatial_confidence(xy, xy, perm)
    assert np.isnan(conf[0])
    assert np.allclose(conf[1:], 1.0)
    cost = matched_cost(xy, xy + 1.0, perm)
    assert np.isnan(cost[0])
    assert np.allclose(cost[1:], 2.0)
    assert np.allclose(matched_cost(xy, xy + 1.0, perm, root=True)[1:], np.sqrt(2.0))


def labelled_pair():
    a = ad.AnnData(obs=pd.DataFrame({"lab": ["x", "x", "y", "y"]}, index=list("abcd")))
    b = ad.AnnData(obs=pd.DataFrame({"lab": ["x", "y", "y", "NA", "x"]}, index=list("ABCDE")))
    partner_b = np.array([0, 1, 2, 3, -1])  # E is unmatched
    b.uns["hiref"] = {"partner": partner_b, "partner_names": np.array(["a", "b", "c", "d", ""])}
    a.uns["hiref"] = {"partner": np.arange(4), "partner_names": np.array(list("ABCD"))}
    return a, b


def test_label_agreement_counts():
    a, b = labelled_pair()
    df = hr.tl.label_agreement(a, b, obs="lab")
    # Kept (not NA): A x<-x ok, B y<-x no, C y<-y ok, E x unmatched -> no.
    assert df.loc["overall", "agreement"] == pytest.approx(2 / 4)
    assert df.loc["overall", "n_cells"] == 4
    assert df.loc["overall", "n_matched"] == 3
    assert df.loc["x", "agreement"] == pytest.approx(1 / 2)
    assert df.loc["y", "agreement"] == pytest.approx(1 / 2)
    assert "NA" not in df.index
    all_kept = hr.tl.label_agreement(a, b, obs="lab", na=None)
    assert all_kept.loc["overall", "n_cells"] == 5
    assert all_kept.loc["NA", "agreement"] == 0.0
    reverse = hr.tl.label_agreement(b, a, obs="lab")
    assert reverse.loc["overall", "agreement"] == pytest.approx(2 / 4)


def test_label_agreement_errors():
    a, b = labelled_pair()
    with pytest.raises(KeyError, match="cluster"):
        hr.tl.label_agreement(a, b, obs="cluster")
    with pytest.raises(KeyError, match="other"):
        hr.tl.label_agreement(a, b, obs="lab", key="other")
    with pytest.raises(ValueError, match="no longer match"):
        hr.tl.label_agreement(a[[1, 0, 2, 3]].copy(), b, obs="lab")


def test_confidence_can_be_plotted(slices):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    ax = hr.pl.alignment(a, b, color="hiref_confidence", show=False)
    values = [c.get_array() for c in ax.collections if c.get_array() is not None and len(c.get_array()) == a.n_obs]
    assert values
    assert np.allclose(np.asarray(values[0], dtype=float), a.obs["hiref_confidence"].to_numpy(), equal_nan=True)
