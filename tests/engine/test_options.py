"""SolveOptions: one typed, frozen, self-checking object for every algorithmic option of hr.solve."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hiref as hr
from hiref.engine import SolveOptions


def test_options_are_frozen_and_replace_checks():
    opts = SolveOptions(leaf_size=128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.leaf_size = 64
    assert opts.replace(n_starts=4) == SolveOptions(leaf_size=128, n_starts=4)
    with pytest.raises(ValueError, match="leaf_size"):
        opts.replace(leaf_size=0)


@pytest.mark.parametrize(
    ("changes", "error", "pattern"),
    [
        ({"leaf_size": 0}, ValueError, "leaf_size"),
        ({"n_iter": -1}, ValueError, "n_iter"),
        ({"step": 0.0}, ValueError, "step"),
        ({"unbalanced": "drop"}, ValueError, "unbalanced"),
        ({"cost": "manhattan"}, ValueError, "cost"),
        ({"refine": "yes"}, TypeError, "refine"),
        ({"schedule": "2,2"}, TypeError, "schedule"),
        ({"schedule": [2, 1]}, ValueError, "schedule"),
        ({"max_rank": 1000}, ValueError, "max_rank"),
        ({"dtype": "float16"}, ValueError, "dtype"),
        ({"refine": True, "refine_passes": 0}, ValueError, "refine_passes"),
    ],
)
def test_bad_options_raise_when_made(changes, error, pattern):
    with pytest.raises(error, match=pattern):
        SolveOptions(**changes)


def test_unknown_option_names_the_valid_ones():
    X, Y = hr.datasets.halfmoon_scurve(100, seed=0)
    with pytest.raises(TypeError, match=r"unknown solver option\(s\) \['leafsize'\].*leaf_size"):
        hr.solve(X, Y, leafsize=32, progress=False)
    with pytest.raises(TypeError, match="options"):
        SolveOptions.make(42)


def test_options_object_dict_and_keywords_give_the_same_matching():
    X, Y = hr.datasets.halfmoon_scurve(1500, seed=2)
    kw = {"leaf_size": 128, "n_starts": 4, "polish": False}
    by_keywords = hr.solve(X, Y, progress=False, **kw)
    by_object = hr.solve(X, Y, SolveOptions(**kw), progress=False)
    by_dict = hr.solve(X, Y, kw, progress=False)
    overridden = hr.solve(X, Y, SolveOptions(leaf_size=64, n_starts=4, polish=True), progress=False, **kw)
    for m in (by_object, by_dict, overridden):
        np.testing.assert_array_equal(m.perm, by_keywords.perm)
        assert m.cost == by_keywords.cost
    default = hr.solve(X, Y, progress=False)
    assert default.cost < by_keywords.cost  # the polish did run by default and not here


def test_plan_resolves_dimension_dependent_defaults():
    opts = SolveOptions()
    assert opts.plan(2).leaf_size == 64
    assert opts.plan(30).leaf_size == 512
    assert opts.plan(500).leaf_size == 2048
    assert opts.plan(30).refine_window == 1024
    assert SolveOptions(leaf_size=100).plan(2).refine_window == 200
    assert opts.plan(30).finishing(5000) == (True, True)
    # where the finish prices every point it finds what the windows would: no windows unless asked
    assert opts.plan(30).finishing(5000, priced=True) == (False, True)
    assert SolveOptions(refine=True).plan(30).finishing(5000, priced=True) == (True, True)
    assert SolveOptions(polish=False).plan(30).finishing(5000, priced=True) == (True, False)
    assert opts.plan(2).finishing(5000) == (False, True)
    assert opts.plan(2).finishing(1 << 23) == (False, True)  # the exact finish, on by default up to 2**23
    assert opts.plan(2).finishing((1 << 23) + 1) == (False, False)
    # the automatic finish also stops at 2**24 points x dimensions (exact distances grow with d)
    assert opts.plan(50).finishing(65_536) == (True, True)
    assert opts.plan(98).finishing(85_000) == (True, True)  # a MERFISH atlas pair, expression weight 1
    assert opts.plan(2048).finishing(65_536) == (False, False)
    assert opts.plan(2048).finishing(8_192) == (True, True)
    assert opts.plan(16).finishing(1 << 18) == (False, True)  # up to 64 dims, 2**18 points as before
    assert opts.plan(65).finishing(1 << 18) == (False, False)
    assert SolveOptions(polish=True, refine=True).plan(2048).finishing(65_536) == (True, True)


def test_changed_lists_only_non_defaults():
    assert SolveOptions().changed() == {}
    assert SolveOptions(leaf_size=32, schedule=[2, 2]).changed() == {"leaf_size": 32, "schedule": (2, 2)}
