"""hr.get.matching checks partner names by categorical codes, and falls back to strings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref.tl._align import partner_column


@pytest.fixture
def stored(slices):
    a, b = slices  # 500 and 450 cells
    rng = np.random.default_rng(0)
    perm = np.full(a.n_obs, -1)
    perm[rng.choice(a.n_obs, 400, replace=False)] = rng.choice(b.n_obs, 400, replace=False)
    hr.tl.store_matching(a, b, perm, key_added="m")
    return a, b, perm


def test_unchanged(stored):
    a, b, perm = stored
    np.testing.assert_array_equal(hr.get.matching(a, b, key="m").perm, perm)


@pytest.mark.parametrize("which", ["a", "b"])
def test_renamed_partner_is_refused(stored, which):
    a, b, _ = stored
    x = a if which == "a" else b
    names = x.obs_names.to_numpy().copy()
    names[np.flatnonzero(x.uns["m"]["partner"] >= 0)[3]] = "renamed"
    x.obs_names = names
    with pytest.raises(ValueError, match="no longer match"):
        hr.get.matching(a, b, key="m")


def test_swapped_rows_are_refused(stored):
    a, b, _ = stored
    order = np.arange(b.n_obs)
    order[[0, 1]] = [1, 0]
    with pytest.raises(ValueError, match="reordered") as err:
        hr.get.matching(a, b[order].copy(), key="m")
    assert str(err.value) == (
        "the obs_names of `adata1` and `adata2` no longer match the alignment stored under 'm': one of them was "
        "subset, reordered or renamed since hr.tl.align, or they are not the objects that were aligned; align again."
    )


def test_swapped_rows_are_refused_with_names_kept_the_old_way(stored):
    a, b, _ = stored
    for x in (a, b):  # hiref before 0.2: the partner names in .uns, no column
        x.uns["m"]["partner_names"] = x.obs["m_match"].astype(object).fillna("").to_numpy()
        del x.obs["m_match"]
    order = np.arange(b.n_obs)
    order[[0, 1]] = [1, 0]
    with pytest.raises(ValueError, match="reordered"):
        hr.get.matching(a, b[order].copy(), key="m")


def test_missing_name_at_a_matched_cell_is_refused(stored):
    a, b, perm = stored
    column = a.obs["m_match"].copy()
    column.iloc[np.flatnonzero(perm >= 0)[0]] = np.nan
    a.obs["m_match"] = column
    with pytest.raises(ValueError, match="no longer match"):
        hr.get.matching(a, b, key="m")


def test_missing_name_of_the_last_category_is_refused(stored):
    # The cell whose partner's name is the last category loses it: the name is gone from every
    # matched cell, and the category's slot would still hold that partner's position.
    a, b, _ = stored
    column = a.obs["m_match"].copy()
    last = column.cat.categories[-1]
    column[column == last] = np.nan
    assert last in column.cat.categories
    a.obs["m_match"] = column
    with pytest.raises(ValueError, match="no longer match"):
        hr.get.matching(a, b, key="m")


@pytest.mark.parametrize("form", ["strings", "reordered categories", "unused categories", "old uns names"])
def test_other_forms_of_the_column_still_read(stored, form):
    a, b, perm = stored
    for x in (a, b):
        column = x.obs["m_match"]
        if form == "strings":
            x.obs["m_match"] = column.astype(object)
        elif form == "reordered categories":
            x.obs["m_match"] = column.cat.reorder_categories(column.cat.categories[::-1])
        elif form == "unused categories":
            x.obs["m_match"] = column.cat.add_categories(["elsewhere"])
        else:  # hiref before 0.2
            x.uns["m"]["partner_names"] = column.astype(object).fillna("").to_numpy()
            del x.obs["m_match"]
    np.testing.assert_array_equal(hr.get.matching(a, b, key="m").perm, perm)


def test_partner_column_from_codes():
    names = pd.Index([f"c{i}" for i in range(6)])
    perm = np.array([4, -1, 0, 5, 2])
    column = partner_column(perm, names)
    assert list(column.categories) == ["c0", "c2", "c4", "c5"]
    np.testing.assert_array_equal(column.codes, [2, -1, 0, 3, 1])
    assert list(column.astype(object)) == ["c4", np.nan, "c0", "c5", "c2"]
