"""The DLPFC pair (adjacent Visium sections 151673 -> 151674, manual layers) from ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest

import hiref as hr

from helpers import store_random_matching, wrong_perm

NOISE = 0.005  # layer accuracy moves by about this much between the solver's seeds


def _layer_accuracy(a, b, key):
    return hr.tl.label_agreement(a, b, obs="layer", key=key).loc["overall", "agreement"]


def _check_layer_accuracy(accuracy, references):
    """Passes when ``accuracy`` reaches the exact position-only optimum, up to the solver's noise."""
    assert references["position"] > references["chance"] + 0.5  # measured: 0.86 against 0.18
    assert accuracy >= references["position"] - NOISE


def test_default_recipe_layer_accuracy(dlpfc_aligned, dlpfc_references):
    a, b = dlpfc_aligned
    params = b.uns["hiref"]["params"]
    assert params["use_rep"] == "auto"
    assert params["auto_weight"] < 0.1  # position leads on adjacent Visium sections
    # At least the exact position-only optimum (scipy on these sections, measured here).
    _check_layer_accuracy(_layer_accuracy(a, b, "hiref"), dlpfc_references)
    conf = b.obs["hiref_confidence"].to_numpy()
    assert np.nanmedian(conf) > 0.9


@pytest.mark.parametrize("kind", ["random", "half"])
def test_layer_accuracy_check_catches_a_wrong_matching(dlpfc_aligned, dlpfc_references, kind):
    # A random matching (another seed than the references'), or hiref's with half of its pairs mixed up.
    a, b = dlpfc_aligned
    if kind == "random":
        store_random_matching(a, b, key_added="wrong", seed=11)
    else:
        perm = wrong_perm(hr.get.matching(a, b).perm, "half", seed=3)
        hr.tl.store_matching(a, b, perm, key_added="wrong")
    with pytest.raises(AssertionError):
        _check_layer_accuracy(_layer_accuracy(a, b, "wrong"), dlpfc_references)


def test_register_leaves_the_aligned_pair_alone(dlpfc):
    a, b = (x.copy() for x in dlpfc)
    hr.pp.register(a, b)
    info = b.uns["spatial_registered"]
    assert info["decision"] == "identity"
    # The registered frame is the original one, so every alignment (and its accuracy) is unchanged.
    np.testing.assert_array_equal(b.obsm["spatial_registered"], b.obsm["spatial"])


def test_register_brings_back_a_rotated_mirrored_copy(dlpfc):
    _, b = dlpfc
    rng = np.random.default_rng(0)
    moved = b[np.sort(rng.choice(b.n_obs, 2000, replace=False))].copy()
    t = np.deg2rad(30)
    motion = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1.0, -1.0])
    moved.obsm["spatial"] = moved.obsm["spatial"] @ motion.T + np.array([800.0, -300.0])
    ref = b.copy()
    hr.pp.register(ref, moved)
    info = moved.uns["spatial_registered"]
    assert info["decision"] == "moved"
    assert info["reflected"]
    back = info["rotation"] @ motion
    assert abs(np.rad2deg(np.arctan2(back[1, 0], back[0, 0]))) < 1.0
    truth = ref.obsm["spatial"][ref.obs_names.get_indexer(moved.obs_names)]
    spacing = 6.2  # Visium spot spacing in these coordinates
    # Within about a spot (on a lattice, a shift by one spot is nearly as good a fit).
    assert np.median(np.linalg.norm(moved.obsm["spatial_registered"] - truth, axis=1)) < 1.5 * spacing


def test_register_brings_a_turned_mirrored_adjacent_section_back(dlpfc):
    # The real pair, not a copy of one slice: 151674 turned by 30 degrees and mirrored, onto 151673
    # (random samples of 1,000 spots missed by 1.3 degrees here; evenly spread ones by 0.1).
    a, b = (x.copy() for x in dlpfc)
    t = np.deg2rad(30)
    motion = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1.0, -1.0])
    b.obsm["spatial"] = b.obsm["spatial"] @ motion.T + np.array([800.0, -300.0])
    hr.pp.register(a, b)
    info = b.uns["spatial_registered"]
    assert info["decision"] == "moved"
    assert info["reflected"]
    back = info["rotation"] @ motion
    assert abs(np.rad2deg(np.arctan2(back[1, 0], back[0, 0]))) < 1.0
