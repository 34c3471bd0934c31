"""``hr.tl.transfer`` on tiny hand-made pairs whose every transferred value is known."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hiref as hr


def _pair():
    """A source of 3 cells, 3 genes, and a target of 4 cells: t0 <- s2, t2 <- s0, t3 <- s1, t1 unmatched."""
    source = ad.AnnData(
        X=np.arange(9, dtype=np.float32).reshape(3, 3),
        obs=pd.DataFrame(index=["s0", "s1", "s2"]),
        var=pd.DataFrame(index=["g0", "g1", "g2"]),
    )
    target = ad.AnnData(X=np.zeros((4, 3)), obs=pd.DataFrame(index=["t0", "t1", "t2", "t3"]))
    hr.tl.store_matching(source, target, np.array([2, 3, 0]), key_added="hand")
    return source, target


@pytest.mark.parametrize(("argument", "value"), [("genes", [1]), ("genes", ["g0", None]), ("obs", [("a",)])])
def test_names_that_are_not_strings_are_refused_by_name(argument, value):
    source, target = _pair()
    message = f"`{argument}` must be a string or a list of strings, got {value!r}."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        hr.tl.transfer(source, target, key="hand", **{argument: value})


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("genes", [None, ["g2", "g0"], ["g2", "g0", "g1"]])
def test_partners_with_empty_rows_between_them(genes, sparse):
    # Partner rows that are empty (s1), of one entry (s3) or missing (t1, t4 unmatched) sit between others.
    X = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 4.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    source = ad.AnnData(X=sp.csr_matrix(X) if sparse else X, obs=pd.DataFrame(index=["s0", "s1", "s2", "s3"]),
                        var=pd.DataFrame(index=["g0", "g1", "g2"]))  # fmt: skip
    target = ad.AnnData(X=np.zeros((6, 3)), obs=pd.DataFrame(index=[f"t{i}" for i in range(6)]))
    # t0 <- s2, t2 <- s1 (empty), t3 <- s3, t5 <- s0.
    hr.tl.store_matching(source, target, np.array([5, 2, 0, 3]), key_added="hand")
    pred = hr.tl.transfer(source, target, key="hand", genes=genes)
    columns = [0, 1, 2] if genes is None else [int(g[1]) for g in genes]
    # Unmatched cells: empty rows if sparse (float32 kept), NaN rows if dense (float64 then).
    expected = np.full((6, len(columns)), 0.0 if sparse else np.nan)
    for t, s in ((0, 2), (2, 1), (3, 3), (5, 0)):
        expected[t] = X[s, columns]
    assert sp.issparse(pred.X) == sparse
    assert pred.X.dtype == (np.float32 if sparse else np.float64)
    np.testing.assert_array_equal(pred.X.toarray() if sparse else pred.X, expected)
    if sparse:
        assert pred.X.has_canonical_format
    assert pred.obs["hand_matched"].tolist() == [True, False, True, True, False, True]
    assert pred.obs["hand_source"].iloc[[0, 2, 3, 5]].tolist() == ["s2", "s1", "s3", "s0"]
    assert pred.obs["hand_source"].iloc[[1, 4]].isna().all()


@pytest.mark.parametrize("n_missing", [10, 11])
def test_missing_genes_are_named_ten_at_most(n_missing):
    source, target = _pair()
    missing = [f"x{i}" for i in range(n_missing)]
    message = f"`genes` not in adata_source.var_names: {missing[:10]}{' ...' if n_missing == 11 else ''}."
    with pytest.raises(KeyError) as err:
        hr.tl.transfer(source, target, key="hand", genes=["g1", *missing])
    assert err.value.args[0] == message


def test_missing_obs_columns_are_named_with_those_available():
    source, target = _pair()
    source.obs["region"] = ["r0", "r1", "r0"]
    with pytest.raises(KeyError) as err:
        hr.tl.transfer(source, target, key="hand", obs=["region", "nope"])
    assert err.value.args[0] == "`obs` columns not in adata_source.obs: ['nope'] (available: ['hand_match', 'region'])."


@pytest.mark.parametrize("column", ["hand_matched", "hand_source"])
def test_obs_columns_named_like_what_transfer_writes_are_refused(column):
    source, target = _pair()
    source.obs[column] = ["r0", "r1", "r0"]
    source.obs["region"] = ["r0", "r1", "r2"]
    message = f"`obs` names ['{column}'], which transfer writes itself under `key`='hand'; rename those columns first."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        hr.tl.transfer(source, target, key="hand", obs=["region", column])
    pred = hr.tl.transfer(source, target, key="hand", obs="region")  # not asked for: no conflict
    region = pred.obs["region"].astype(object)
    assert region.where(region.notna(), None).tolist() == ["r2", None, "r0", "r1"]


@pytest.mark.parametrize("which", ["adata_source", "adata_target"])
def test_an_argument_that_is_not_an_anndata_is_named(which):
    source, target = _pair()
    args = ("cells", target) if which == "adata_source" else (source, "cells")
    with pytest.raises(TypeError, match=f"^`{which}` must be an AnnData, got str.$"):
        hr.tl.transfer(*args, key="hand")


def test_the_record_names_key_layer_and_matched_column_and_coordinates_follow_spatial_key():
    source, target = _pair()
    source.layers["counts"] = source.X * 2
    target.obsm["xy"] = np.arange(8.0).reshape(4, 2)
    pred = hr.tl.transfer(source, target, key="hand", layer="counts", spatial_key="xy")
    assert dict(pred.uns["hiref_transfer"]) == {"key": "hand", "layer": "counts", "matched_key": "hand_matched"}
    np.testing.assert_array_equal(pred.obsm["xy"], target.obsm["xy"])
    np.testing.assert_array_equal(pred.X[[0, 2, 3]], source.layers["counts"][[2, 0, 1]])
    assert list(pred.obsm) == ["xy"]
    assert list(hr.tl.transfer(source, target, key="hand", spatial_key=None).obsm) == []
    assert list(hr.tl.transfer(source, target, key="hand").obsm) == []  # the target has no "spatial"


def test_a_subset_or_reordered_target_is_named_in_the_message():
    source, target = _pair()
    with pytest.raises(ValueError, match="has 3 cells") as err:
        hr.tl.transfer(source, target[:3].copy(), key="hand")
    assert str(err.value) == (
        "`adata_target` has 3 cells but the alignment 'hand' was stored for 4: the object was subset or extended "
        "since hr.tl.align; align again."
    )
    with pytest.raises(ValueError, match="no longer match") as err:
        hr.tl.transfer(source, target[[2, 1, 0, 3]].copy(), key="hand")
    assert str(err.value) == (
        "the obs_names of `adata_target` and `adata_source` no longer match the alignment stored under 'hand': one "
        "of them was subset, reordered or renamed since hr.tl.align, or they are not the objects that were aligned; "
        "align again."
    )


def test_a_missing_layer_is_named_with_the_source():
    source, target = _pair()
    with pytest.raises(KeyError) as err:
        hr.tl.transfer(source, target, key="hand", layer="counts")
    assert err.value.args[0] == "`adata_source` has no .layers['counts'] (available: none)."
