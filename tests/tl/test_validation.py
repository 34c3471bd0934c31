"""Bad and unusual inputs to the AnnData API (issue 18): clear errors before any write."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr

from helpers import assert_same_adata_content

# ------------------------------------------------------------------------- backed objects (item 3)


@pytest.fixture
def backed(slices, tmp_path):
    a, b = slices
    b.write_h5ad(tmp_path / "b.h5ad")
    return a, ad.read_h5ad(tmp_path / "b.h5ad", backed="r")


@pytest.mark.parametrize("copy", [False, True])
def test_align_refuses_backed_before_writing(backed, copy):
    a, b = backed
    before = a.copy()
    with pytest.raises(ValueError, match=r"`adata2` is backed.*to_memory"):
        hr.tl.align(a, b[:250], use_rep="spatial", key_added="kk", progress=False, copy=copy)
    assert_same_adata_content(a, before)
    assert "kk" not in a.uns
    assert "kk" not in b.uns


def test_transfer_and_register_refuse_backed(backed, tmp_path):
    a, b = backed
    b_mem = b.to_memory()
    hr.tl.align(a, b_mem, use_rep="spatial", progress=False)
    b_mem.write_h5ad(tmp_path / "b2.h5ad")
    b2 = ad.read_h5ad(tmp_path / "b2.h5ad", backed="r")
    with pytest.raises(ValueError, match="`adata_target` is backed"):
        hr.tl.transfer(a, b2)
    with pytest.raises(ValueError, match="`adata_source` is backed"):
        hr.tl.transfer(b2, a)
    with pytest.raises(ValueError, match="`adata` is backed"):
        hr.tl.bin_spatial(b2)
    with pytest.raises(ValueError, match="`adata_mov` is backed"):
        hr.pp.register(a, b2, use_rep=None)


# ---------------------------------------------------------------------- key_added reuse (item 4)


def test_realign_removes_stale_arrays(slices):
    a, b = slices
    hr.tl.align(a, b, progress=False)  # joint PCA and partner coordinates
    assert {"hiref_pca", "hiref_partner_spatial"} <= set(a.obsm)
    hr.tl.align(a, b, use_rep="spatial", spatial_key=None, progress=False)
    for adata in (a, b):
        listed = set(adata.uns["hiref"]["obsm_keys"])
        present = {k for k in adata.obsm if k.startswith("hiref_")}
        assert present == listed
        assert "hiref_pca" not in adata.obsm
        assert "hiref_partner_spatial" not in adata.obsm


def test_key_added_refuses_foreign_entries(slices):
    a, b = slices
    a.obsm["hiref_partner_spatial"] = np.zeros((a.n_obs, 2))
    before = a.copy()
    with pytest.raises(ValueError, match=r"`key_added`='hiref' would overwrite .obsm\['hiref_partner_spatial'\]"):
        hr.tl.align(a, b, use_rep="spatial", progress=False)
    assert_same_adata_content(a, before)
    assert (a.obsm["hiref_partner_spatial"] == 0).all()

    a, b = (x.copy() for x in (before, b))
    del a.obsm["hiref_partner_spatial"]
    b.uns["spatial"] = {"library": {"scalefactors": {"spot_diameter_fullres": 1.0}}}
    with pytest.raises(ValueError, match=r"would overwrite .uns\['spatial'\] of `adata2`"):
        hr.tl.align(a, b, use_rep="spatial", key_added="spatial", progress=False)
    assert "library" in b.uns["spatial"]

    a.obs["mine_match"] = "x"
    with pytest.raises(ValueError, match=r"would overwrite .obs\['mine_match'\]"):
        hr.tl.align(a, b, use_rep="spatial", key_added="mine", progress=False)


# ---------------------------------------------------------------------- transfer dtypes (item 5)


def test_transfer_keeps_missing_values_and_dtypes(slices):
    a, b = slices
    a.obs["text"] = pd.Series(["x", None, pd.NA, "y"] * (a.n_obs // 4), index=a.obs_names, dtype=object)
    a.obs["flag"] = np.arange(a.n_obs) % 2 == 0
    a.obs["count"] = np.arange(a.n_obs)
    a.obs["small"] = np.arange(a.n_obs, dtype=np.uint16)
    a.obs["nullable"] = pd.array([1, None] * (a.n_obs // 2), dtype="Int64")
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    cols = ["text", "flag", "count", "small", "nullable"]
    pred = hr.tl.transfer(a, b, obs=cols)  # every cell of b (the smaller) has a partner
    partner = b.uns["hiref"]["partner"]
    assert pred.obs["flag"].dtype == bool
    assert pred.obs["count"].dtype == np.int64
    assert pred.obs["small"].dtype == np.uint16
    assert pred.obs["nullable"].dtype == "Int64"
    assert (pred.obs["count"].to_numpy() == partner).all()
    text = pred.obs["text"]
    assert set(text.cat.categories) == {"x", "y"}
    assert (text.isna().to_numpy() == a.obs["text"].isna().to_numpy()[partner]).all()

    back = hr.tl.transfer(b, a, obs=["hiref_match"])  # a is larger: some cells unmatched
    assert back.obs["hiref_match"].isna().sum() == a.n_obs - b.n_obs
    b.obs["flag"] = np.ones(b.n_obs, dtype=bool)
    b.obs["count"] = np.arange(b.n_obs)
    b.obs["small"] = np.arange(b.n_obs, dtype=np.uint16)
    back = hr.tl.transfer(b, a, obs=["flag", "count", "small"])
    unmatched = ~back.obs["hiref_matched"].to_numpy()
    assert back.obs["flag"].dtype == "boolean"
    assert back.obs["count"].dtype == "Int64"
    assert back.obs["small"].dtype == "UInt16"
    for col in ("flag", "count", "small"):
        assert back.obs[col].isna().to_numpy().tolist() == unmatched.tolist()


def test_transferred_nullable_columns_survive_h5ad(slices, tmp_path):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    b.obs["count"] = np.arange(b.n_obs)
    b.obs["flag"] = np.ones(b.n_obs, dtype=bool)
    pred = hr.tl.transfer(b, a, obs=["count", "flag"])
    pred.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    assert back.obs["count"].isna().sum() == a.n_obs - b.n_obs


# -------------------------------------------------------------------- duplicate var_names (item 7)


@pytest.mark.filterwarnings("ignore:Variable names are not unique:UserWarning")
def test_duplicate_var_names_are_named(slices):
    a, b = slices
    names = list(a.var_names)
    names[1] = names[0]
    a.var_names = names
    with pytest.raises(ValueError, match=r"`adata1` has duplicated var_names"):
        hr.tl.align(a, b, progress=False)
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    with pytest.raises(ValueError, match=r"`adata_source` has duplicated var_names"):
        hr.tl.transfer(a, b, genes=[names[0]])
    with pytest.raises(ValueError, match=r"`adata` has duplicated var_names"):
        hr.tl.bin_spatial(a, genes=[names[0]])


# ------------------------------------------------------------------------------------ seeds (item 8)


@pytest.mark.parametrize("seed", [np.int64(3), None, np.random.default_rng(0)])
def test_align_accepts_every_seed_kind_and_records_it(slices, seed):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", random_state=seed, progress=False)
    recorded = a.uns["hiref"]["params"]["random_state"]
    assert isinstance(recorded, int)
    assert 0 <= recorded < 2**32
    if isinstance(seed, np.integer):
        assert recorded == 3
    a2, b2 = (x.copy() for x in slices)
    hr.tl.align(a2, b2, use_rep="spatial", random_state=recorded, progress=False)
    assert np.array_equal(a2.uns["hiref"]["partner"], a.uns["hiref"]["partner"])  # reproducible from .uns


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (2**64, ValueError), (1.5, TypeError)])
def test_bad_random_state_names_the_argument(slices, seed, error):
    a, b = slices
    with pytest.raises(error, match=r"`random_state` must be an int in \[0, 2\*\*32\)"):
        hr.tl.align(a, b, random_state=seed, progress=False)
    with pytest.raises(error, match=r"`random_state` must be an int in \[0, 2\*\*32\)"):
        hr.pp.register(a, b, random_state=seed)
    assert "hiref" not in a.uns


# ------------------------------------------------------------------- messages that name the cause (item 9)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"n_pcs": 0}, ValueError, "`n_pcs` must be at least 1"),
        ({"n_pcs": 2.5}, TypeError, "`n_pcs` must be an int"),
        ({"refine": "no"}, TypeError, "`refine` must be True or False"),
        ({"copy": "yes"}, TypeError, "`copy` must be True or False"),
    ],
)
def test_align_option_messages(slices, options, error, message):
    a, b = slices
    with pytest.raises(error, match=message):
        hr.tl.align(a, b, progress=False, **options)
    assert "hiref" not in a.uns


@pytest.mark.parametrize("which", ["adata1", "adata2"])
def test_align_of_a_single_cell_names_the_object(slices, which):
    # (it failed deep inside with "Cannot take a larger sample than population", or, with
    # use_rep="spatial", an IndexError from the neighbours of the confidence column)
    a, b = slices
    one = {"adata1": a, "adata2": b}[which][:1].copy()
    pair = (one, b) if which == "adata1" else (a, one)
    for use_rep in ("auto", "spatial"):
        with pytest.raises(ValueError, match=f"`{which}` has a single cell"):
            hr.tl.align(*pair, use_rep=use_rep, progress=False)
        assert "hiref" not in one.uns


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"n_sample": 0}, ValueError, "`n_sample` must be at least 2"),
        ({"rep_weight": -1}, ValueError, "`rep_weight` must be a finite number > 0"),
        ({"rep_weight": float("nan")}, ValueError, "`rep_weight` must be a finite number > 0"),
        ({"angle": float("nan")}, ValueError, "`angle` must be None or a finite number"),
    ],
)
def test_register_option_messages(slices, options, error, message):
    a, b = slices
    with pytest.raises(error, match=message):
        hr.pp.register(a, b, **options)
    assert "spatial_registered" not in b.obsm


def test_coordinate_messages(slices):
    a, b = slices
    a.obsm["spatial"][3, 0] = np.nan
    with pytest.raises(ValueError, match=r"`adata.obsm\['spatial'\]` contains 1 NaN"):
        hr.tl.bin_spatial(a)
    with pytest.raises(ValueError, match=r"`adata_pred.obsm\['spatial'\]` contains 1 NaN"):
        hr.tl.cosine_similarity(a, b, genes=["gene1"])
    a.obsm["line"] = np.zeros((a.n_obs, 1))
    with pytest.raises(ValueError, match=r"`adata.obsm\['line'\]` must have at least 2 columns"):
        hr.tl.bin_spatial(a, spatial_key="line")
    for bins, error in (((3,), ValueError), ((3, 4, 5), ValueError), ("ab", TypeError), ((3, 2.5), TypeError)):
        with pytest.raises(error, match="`bins` must be a positive int or a pair"):
            hr.tl.bin_spatial(b, bins=bins)
    with pytest.raises(ValueError, match="`extent` must be"):
        hr.tl.bin_spatial(b, extent=(0, np.nan, 0, 1))


def test_obsm_dataframe_with_strings_names_the_key(slices):
    a, b = slices
    for adata in (a, b):
        adata.obsm["table"] = pd.DataFrame(
            {"x": np.arange(adata.n_obs, dtype=float), "label": ["t"] * adata.n_obs}, index=adata.obs_names
        )
    with pytest.raises(TypeError, match=r"`adata1.obsm\['table'\]` must hold numbers"):
        hr.tl.align(a, b, use_rep="table", progress=False)
