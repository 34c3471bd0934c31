"""The partner names stored with a matching, checked cell by cell on small hand-made pairs.

``a`` (6 cells ``a0``..``a5``) is matched to ``b`` (5 cells ``b0``..``b4``) by
``PERM = [3, -1, 0, 4, 1, -1]``: ``a2``'s partner is ``b``'s first cell and ``b3``'s is ``a``'s
first, so a check that skips position 0 is caught.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref.get._matching import _categories_match, partners, stored_params
from hiref.get._series import stored_series

PERM = np.array([3, -1, 0, 4, 1, -1])


def _moved(first: str, second: str) -> str:
    """The whole moved-rows message for the key ``"m"`` (written out here, not taken from hiref)."""
    return (
        f"the obs_names of `{first}` and `{second}` no longer match the alignment stored under 'm': one of them "
        "was subset, reordered or renamed since hr.tl.align, or they are not the objects that were aligned; align "
        "again."
    )


def _pair(b_names: list[str] | None = None) -> tuple[ad.AnnData, ad.AnnData]:
    """``a`` and ``b`` with ``PERM`` stored under ``"m"``."""
    a = ad.AnnData(X=np.zeros((6, 1)), obs=pd.DataFrame(index=[f"a{i}" for i in range(6)]))
    b = ad.AnnData(X=np.zeros((5, 1)), obs=pd.DataFrame(index=b_names or [f"b{i}" for i in range(5)]))
    hr.tl.store_matching(a, b, PERM, key_added="m", spatial_key=None)
    return a, b


def _read(a: ad.AnnData, b: ad.AnnData) -> np.ndarray:
    """The checked partners of ``a``'s cells in ``b``, named as ``hr.get.matching`` names them."""
    return partners(a, b, "m", name="adata1", other_name="adata2")


def _refused(a: ad.AnnData, b: ad.AnnData) -> None:
    """Check that reading ``a``'s partners in ``b`` raises the whole moved-rows message."""
    with pytest.raises(ValueError, match="no longer match") as err:
        _read(a, b)
    assert str(err.value) == _moved("adata1", "adata2")


@pytest.mark.parametrize("form", ["as stored", "reordered categories", "unused category"])
def test_categorical_names_of_an_unchanged_pair_show_the_match(form):
    # The fast check must show a match it can show (else every read falls back to comparing strings).
    a, b = _pair()
    for x, y in ((a, b), (b, a)):
        column = x.obs["m_match"]
        if form == "reordered categories":
            column = column.cat.reorder_categories(column.cat.categories[::-1])
        elif form == "unused category":
            column = column.cat.add_categories(["elsewhere"])
        partner = x.uns["m"]["partner"]
        assert _categories_match(partner, partner >= 0, column, y) is True


@pytest.mark.parametrize("which", ["a", "b"])
def test_a_renamed_first_cell_is_refused(which):
    a, b = _pair()
    if which == "b":  # a2's partner
        b.obs_names = ["renamed", "b1", "b2", "b3", "b4"]
    else:  # b3's partner, the first cell of a
        a.obs_names = ["renamed", "a1", "a2", "a3", "a4", "a5"]
    _refused(a, b)
    np.testing.assert_array_equal(_read(*_pair()), PERM)  # unchanged, it reads


@pytest.mark.parametrize("cell", [0, 3])
def test_one_partner_name_given_to_two_cells_is_refused(cell):
    # a0 (partner b3) and a3 (partner b4) both name one partner: the one of a0, then the one of a3.
    a, b = _pair()
    column = a.obs["m_match"].copy()
    column.iloc[cell] = "b4" if cell == 0 else "b3"
    a.obs["m_match"] = column
    _refused(a, b)


def test_a_missing_name_is_refused_even_where_the_partner_is_named_empty():
    a, b = _pair(["", "b1", "b2", "b3", "b4"])
    np.testing.assert_array_equal(_read(a, b), PERM)
    column = a.obs["m_match"].copy()
    column.iloc[2] = np.nan  # a2, matched to b's cell named ""
    a.obs["m_match"] = column
    _refused(a, b)


def test_an_alignment_without_its_column_of_names_reads_and_is_checked_from_the_other_side():
    a, b = _pair()
    del a.obs["m_match"]
    np.testing.assert_array_equal(_read(a, b), PERM)
    np.testing.assert_array_equal(hr.get.matching(a, b, key="m").perm, PERM)
    a.obs_names = ["a0", "a1", "renamed", "a3", "a4", "a5"]  # b0's partner: b's names show it
    with pytest.raises(ValueError, match="no longer match") as err:
        hr.get.matching(a, b, key="m")
    assert str(err.value) == _moved("adata1", "adata2")


def test_the_default_names_in_messages_are_adata_and_other():
    a, b = _pair()
    with pytest.raises(ValueError, match="has 3 cells") as err:
        partners(a[:3].copy(), b, "m")
    assert str(err.value) == (
        "`adata` has 3 cells but the alignment 'm' was stored for 6: the object was subset or extended since "
        "hr.tl.align; align again."
    )
    b.obs_names = ["renamed", "b1", "b2", "b3", "b4"]
    with pytest.raises(ValueError, match="no longer match") as err:
        partners(a, b, "m")
    assert str(err.value) == _moved("adata", "other")


def _names_kept_the_old_way(x: ad.AnnData) -> None:
    """Move ``x``'s partner names from ``.obs`` to ``.uns`` (where hiref before 0.2 kept them)."""
    x.uns["m"]["partner_names"] = x.obs["m_match"].astype(object).fillna("").to_numpy()
    del x.obs["m_match"]


def test_old_form_names_of_the_wrong_length_are_reported_by_their_own_object():
    a, b = _pair()
    _names_kept_the_old_way(b)
    b.uns["m"]["partner_names"] = b.uns["m"]["partner_names"][:-1]
    np.testing.assert_array_equal(_read(a, b), PERM)  # b's names say nothing about a's rows
    with pytest.raises(ValueError, match="no longer match") as err:
        hr.get.matching(a, b, key="m")
    assert str(err.value) == _moved("adata2", "adata1")


def test_old_form_names_on_the_other_object_show_a_renamed_cell():
    a, b = _pair()
    _names_kept_the_old_way(b)
    np.testing.assert_array_equal(hr.get.matching(a, b, key="m").perm, PERM)
    a.obs_names = ["a0", "a1", "renamed", "a3", "a4", "a5"]  # b0's partner
    with pytest.raises(ValueError, match="no longer match") as err:
        hr.get.matching(a, b, key="m")
    assert str(err.value) == _moved("adata1", "adata2")


def test_a_partner_array_of_the_wrong_length_on_the_second_object_is_named():
    a, b = _pair()
    b.uns["m"]["partner"] = b.uns["m"]["partner"][:-1]
    with pytest.raises(ValueError, match="has 5 cells") as err:
        hr.get.matching(a, b, key="m")
    assert str(err.value) == (
        "`adata2` has 5 cells but the alignment 'm' was stored for 4: the object was subset or extended since "
        "hr.tl.align; align again."
    )


@pytest.mark.parametrize("which", ["adata1", "adata2"])
def test_matching_names_the_argument_that_is_not_an_anndata(which):
    a, b = _pair()
    args = ("cells", b) if which == "adata1" else (a, "cells")
    with pytest.raises(TypeError, match="must be an AnnData") as err:
        hr.get.matching(*args, key="m")
    assert str(err.value) == f"`{which}` must be an AnnData, got str."


def test_stored_params_reads_the_params_and_names_the_object_when_missing():
    a, _ = _pair()
    assert stored_params(a, "m")["method"] == "stored"
    with pytest.raises(KeyError) as err:
        stored_params(a, "nope")
    assert (
        err.value.args[0]
        == "`adata` has no alignment under key 'nope': run hr.tl.align first (alignments found: ['m'])."
    )


def test_a_missing_series_gets_the_whole_message():
    a, _ = _pair()
    with pytest.raises(KeyError) as err:
        stored_series(a, "s")
    assert err.value.args[0] == "`data` has no aligned series under key 's': run hr.tl.align_series first."
