"""The stored-matching reader on hand-made broken alignments: each is refused, or read, as it should be."""

from __future__ import annotations

import numpy as np
import pytest

import hiref as hr
from hiref.get._matching import partners


@pytest.fixture
def stored(slices):
    a, b = slices  # 500 and 450 cells
    perm = np.where(np.arange(a.n_obs) < b.n_obs, np.arange(a.n_obs)[::-1] % b.n_obs, -1)
    hr.tl.store_matching(a, b, perm, key_added="m")
    return a, b, perm


def test_an_alignment_that_matches_no_cell_is_read(slices):
    a, b = slices
    hr.tl.store_matching(a, b, np.full(a.n_obs, -1), key_added="none")
    np.testing.assert_array_equal(partners(a, b, "none"), -1)
    np.testing.assert_array_equal(partners(b, a, "none"), -1)


@pytest.mark.parametrize("past", [0, 1])
def test_a_partner_past_the_other_end_is_refused(stored, past):
    a, b, _ = stored
    entry = a.uns["m"]
    cell = int(np.flatnonzero(entry["partner"] >= 0)[0])
    entry["partner"] = entry["partner"].copy()
    entry["partner"][cell] = b.n_obs + past  # just past the end, then further
    with pytest.raises(ValueError, match="no longer match the alignment stored under 'm'"):
        partners(a, b, "m", name="adata1", other_name="adata2")


def test_old_form_names_of_the_wrong_length_are_refused(stored):
    a, b, _ = stored
    names = a.obs["m_match"].astype(object).fillna("").to_numpy()
    del a.obs["m_match"]
    a.uns["m"]["partner_names"] = names[:-1]  # hiref before 0.2 kept them here
    with pytest.raises(ValueError, match="no longer match the alignment stored under 'm'"):
        partners(a, b, "m", name="adata1", other_name="adata2")
    a.uns["m"]["partner_names"] = names  # the right length reads again
    assert (partners(a, b, "m", name="adata1", other_name="adata2") >= 0).any()


def test_a_subset_object_gets_the_whole_message(stored):
    a, b, _ = stored
    with pytest.raises(ValueError, match="has 100 cells") as err:
        partners(a[:100].copy(), b, "m", name="adata1", other_name="adata2")
    assert str(err.value) == (
        f"`adata1` has 100 cells but the alignment 'm' was stored for {a.n_obs}: the object was subset or extended "
        "since hr.tl.align; align again."
    )
