from __future__ import annotations

import numpy as np

import hiref as hr
from hiref.datasets import gaussian_mixtures, uniform_checkerboard

from helpers import exact_matching


def test_refine_only_lowers_the_cost_and_closes_the_gap():
    X, Y = uniform_checkerboard(1024, seed=1)
    plain = hr.solve(X, Y, progress=False, polish=False)
    refined = hr.solve(X, Y, progress=False, refine=True, polish=False)
    _, best = exact_matching(X, Y)
    assert np.array_equal(np.sort(refined.perm), np.arange(1024))
    assert best <= refined.cost <= plain.cost
    assert refined.refine_costs == sorted(refined.refine_costs, reverse=True)
    assert refined.refine_costs[-1] == refined.cost
    assert refined.cost - best < 0.5 * (plain.cost - best)
    assert "refine" in refined.timings


def test_high_dimension_with_and_without_sketch():
    X, Y = gaussian_mixtures(600, 300, seed=0)
    _, best = exact_matching(X, Y)
    sketched = hr.solve(X, Y, progress=False, leaf_size=128)
    full = hr.solve(X, Y, progress=False, leaf_size=128, sketch_dim=None)
    assert "sketch" in sketched.timings
    assert "sketch" not in full.timings
    for m in (sketched, full):
        assert np.array_equal(np.sort(m.perm), np.arange(600))
        assert m.cost <= best * 1.08
    refined = hr.solve(X, Y, progress=False, leaf_size=128, refine=True)
    assert refined.cost <= best * 1.03
