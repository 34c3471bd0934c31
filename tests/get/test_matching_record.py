"""``hr.get.matching`` hands back every record the alignment stored, and nothing made up where none was."""

from __future__ import annotations

import numpy as np
import pytest

import hiref as hr


@pytest.fixture(scope="module")
def aligned():
    a, b = hr.datasets.simulate_slices(n_obs=16, n_genes=4, missing=0.0, seed=0)
    hr.tl.align(a, b, use_rep="spatial", schedule=[4, 4], cost="sqeuclidean", key_added="al", progress=False)
    return a, b


def test_matching_reads_the_schedule_cost_levels_runtime_and_bound_align_stored(aligned):
    a, b = aligned
    entry = a.uns["al"]
    m = hr.get.matching(a, b, key="al")
    np.testing.assert_array_equal(m.perm, entry["partner"])
    assert m.schedule == [4, 4]  # as asked
    assert m.cost_name == "sqeuclidean"  # as asked
    assert m.cost == entry["cost"]
    assert len(entry["level_costs"]) >= 2
    assert m.level_costs == list(entry["level_costs"])
    assert entry["runtime"] > 0
    assert m.timings == {"total": entry["runtime"]}
    assert np.isfinite(entry["lower_bound"])
    assert m.lower_bound == entry["lower_bound"]


def test_a_stored_matching_has_no_cost_name_bound_schedule_or_levels(slices):
    a, b = slices
    perm = np.where(np.arange(a.n_obs) < b.n_obs, np.arange(a.n_obs), -1)
    hr.tl.store_matching(a, b, perm, key_added="m")
    m = hr.get.matching(a, b, key="m")
    np.testing.assert_array_equal(m.perm, perm)
    assert m.cost_name == ""
    assert m.lower_bound is None
    assert m.schedule == []
    assert m.level_costs == []
    assert m.timings == {"total": 0.0}
