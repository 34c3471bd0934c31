"""What a new user runs into (issue 30): no silent fallback, no broken promise of the docs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref.get._matching import stored_params

from helpers import assert_same_adata_content


def _without_spatial(adata):
    adata = adata.copy()
    del adata.obsm["spatial"]
    return adata


# 1. coordinates asked for but missing
def test_explicit_spatial_key_missing_is_an_error(slices):
    a, b = slices
    before = a.copy(), b.copy()
    with pytest.raises(KeyError, match=r"`spatial_key`='spatal' is in neither object"):
        hr.tl.align(a, b, spatial_key="spatal", progress=False)
    assert_same_adata_content(a, before[0])  # nothing half-written
    assert_same_adata_content(b, before[1])


def test_spatial_key_in_one_object_only_is_an_error(slices):
    a, b = slices
    for x, y, missing in ((a, _without_spatial(b), "adata2"), (_without_spatial(a), b, "adata1")):
        with pytest.raises(KeyError, match=rf"in one object only: `{missing}` has no .obsm\['spatial'\]"):
            hr.tl.align(x, y, progress=False)
    b.obsm["spatial_registered"] = b.obsm["spatial"]
    with pytest.raises(KeyError, match="in one object only"):
        hr.tl.align(a, b, spatial_key="spatial_registered", progress=False)
    with pytest.raises(KeyError, match="in one object only"):  # whatever the representation
        hr.tl.align(a, _without_spatial(b), use_rep="X_pca", progress=False)


def test_default_spatial_key_missing_from_both_warns_and_says_what_was_used(slices):
    a, b = (_without_spatial(x) for x in slices)
    with pytest.warns(UserWarning, match=r"aligns on expression PCs alone.*no `hiref_confidence`"):
        hr.tl.align(a, b, progress=False)
    assert stored_params(b, "hiref")["use_rep"] == "auto"
    assert "hiref_confidence" not in b.obs
    # asked for explicitly: no warning (pytest turns warnings into errors)
    hr.tl.align(a, b, spatial_key=None, progress=False)
    hr.tl.align(a, b, use_rep="X_pca", progress=False)


# 6. the same object twice
def test_the_same_object_twice_is_refused(slices):
    a, _ = slices
    before = a.copy()
    with pytest.raises(ValueError, match=r"`adata1` and `adata2` are the same object.*adata\.copy\(\)"):
        hr.tl.align(a, a, progress=False)
    assert_same_adata_content(a, before)
    hr.tl.align(a, a.copy(), use_rep="spatial", progress=False)  # the way the message gives
    assert a.uns["hiref"]["role"] == "source"


# 5. n_pcs beyond what the data allow
@pytest.mark.parametrize("use_rep", ["auto", "X_pca"])
def test_capped_n_pcs_says_so(slices, use_rep):
    a, b = slices
    n_genes = a.n_vars
    with pytest.warns(UserWarning, match=rf"`n_pcs`=5000 is more than.*{n_genes} shared genes.*{n_genes - 1} PCs"):
        hr.tl.align(a, b, use_rep=use_rep, n_pcs=5000, progress=False)
    assert stored_params(a, "hiref")["joint_pca"]["n_pcs"] == n_genes - 1
    hr.tl.align(a, b, use_rep=use_rep, n_pcs=5, progress=False)  # within the limit: silent


# 4. text in a coordinate DataFrame
def test_numeric_text_in_coordinates_is_refused(slices):
    a, b = slices
    text = pd.DataFrame(np.asarray(b.obsm["spatial"]).astype(str), index=b.obs_names, columns=["x", "y"])
    b.obsm["spatial"] = text
    before = a.copy()
    with pytest.raises(TypeError, match=r"`adata2.obsm\['spatial'\]` must hold numbers.*\['x', 'y'\] hold text"):
        hr.tl.align(a, b, progress=False)
    assert_same_adata_content(a, before)
    with pytest.raises(TypeError, match="hold text"):
        hr.tl.align(a, b, use_rep="spatial", spatial_key=None, progress=False)
    b.obsm["spatial"] = text.astype(float)  # the conversion the message suggests
    hr.tl.align(a, b, progress=False)


def test_numbers_in_a_dataframe_are_still_coordinates(slices):
    a, b = slices
    b.obsm["spatial"] = pd.DataFrame(np.asarray(b.obsm["spatial"]), index=b.obs_names, columns=["x", "y"])
    hr.tl.align(a, b, progress=False)
    assert "hiref_confidence" in b.obs


# 8. what to pass: the preprocessing is documented where users look, and does what it says
def test_align_documents_what_to_pass():
    doc = hr.tl.align.__doc__
    assert "What to pass" in doc
    for words in ("raw counts or log-normalised", "10,000 per cell", "log1p", "above 20", "spatial_registered"):
        assert words in doc, words


@pytest.mark.parametrize(
    ("prepare", "steps"),
    [
        (lambda X: np.round(X), ["normalize_total(1e4)", "log1p"]),  # integer counts
        (lambda X: 30 * X + 0.5, ["log1p"]),  # non-integer, above 20
        (lambda X: np.log1p(X), []),  # log-normalised: used as is
    ],
)
def test_preprocessing_is_the_documented_rule(slices, prepare, steps):
    a, b = slices
    for x in (a, b):
        X = x.X.toarray() if hasattr(x.X, "toarray") else np.asarray(x.X)
        x.X = prepare(np.abs(X)).astype(np.float32)
    hr.tl.align(a, b, use_rep="X_pca", progress=False)
    assert list(stored_params(a, "hiref")["joint_pca"]["preprocessing"]) == steps
