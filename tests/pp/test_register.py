from __future__ import annotations

import numpy as np
import pytest
import torch

import hiref as hr


def angle_of(R):
    return np.rad2deg(np.arctan2(R[1, 0], R[0, 0]))


def test_rotation_and_shift_are_recovered():
    ref, mov = hr.datasets.simulate_slices(
        n_obs=800, n_genes=20, rotation=30, translation=(40, -25), deformation=0, seed=0
    )
    hr.pp.register(ref, mov, n_sample=800)
    info = mov.uns["spatial_registered"]
    assert abs(info["angle"] - (-30)) < 1.0
    assert not info["reflected"]
    # The same cells land where they were in the reference slice.
    true = ref.obsm["spatial"][ref.obs_names.get_indexer(mov.obs["true_match"])]
    assert np.abs(mov.obsm["spatial_registered"] - true).mean() < 1.5
    assert np.array_equal(ref.obsm["spatial_registered"], ref.obsm["spatial"])


def _distance_to_truth(ref, mov, coords):
    """Mean distance of each moved cell's position ``coords`` from its true partner's in the reference."""
    true = ref.obsm["spatial"][ref.obs_names.get_indexer(mov.obs["true_match"])]
    return np.linalg.norm(coords - true, axis=1).mean()


def _placed(ref, mov, coords):
    """``coords`` shifted so that their centroid is that of the true partners (the best shift for a known turn)."""
    true = ref.obsm["spatial"][ref.obs_names.get_indexer(mov.obs["true_match"])]
    return coords - coords.mean(0) + true.mean(0)


def test_reflection_is_undone_on_the_coordinates():
    ref, mov = hr.datasets.simulate_slices(n_obs=600, n_genes=20, rotation=0, deformation=0, seed=1)
    mov.obsm["spatial"] = mov.obsm["spatial"] * np.array([1.0, -1.0])  # mirrored slice
    out = hr.pp.register(ref, mov, reflection=None, n_sample=600, copy=True)
    info = out[1].uns["spatial_registered"]
    assert info["reflected"]
    assert np.linalg.det(info["rotation"]) == pytest.approx(-1.0)
    assert "spatial_registered" not in mov.obsm  # copy=True left the input alone
    # The cells land where they were: as close as by undoing the mirror by hand (the simulated positions are noisy),
    # where the mirrored slice left alone is far off. The stored motion is the one applied.
    by_hand = _distance_to_truth(ref, mov, _placed(ref, mov, mov.obsm["spatial"] * np.array([1.0, -1.0])))
    assert _distance_to_truth(ref, mov, out[1].obsm["spatial_registered"]) < 1.1 * by_hand
    assert _distance_to_truth(ref, mov, mov.obsm["spatial"]) > 10 * by_hand
    np.testing.assert_allclose(out[1].obsm["spatial_registered"],
                               mov.obsm["spatial"] @ info["rotation"].T + info["translation"])  # fmt: skip


@pytest.mark.parametrize("angle", [-90, 180])
def test_explicit_angle_turns_the_coordinates(angle):
    """With ``angle`` and ``n_iter=0`` the slice is turned by exactly that angle: checked on the coordinates."""
    ref, mov = hr.datasets.simulate_slices(n_obs=600, n_genes=20, rotation=-angle, deformation=0, seed=2)
    hr.pp.register(ref, mov, angle=angle, n_iter=0, use_rep=None, key_added="manual")
    assert abs(mov.uns["manual"]["angle"] - angle) < 1e-6
    moved = mov.obsm["manual"] - mov.obsm["manual"].mean(0)
    before = mov.obsm["spatial"] - mov.obsm["spatial"].mean(0)
    # (x, y) turned by -90 degrees is (y, -x); by 180 degrees (-x, -y).
    turned = before[:, [1, 0]] * np.array([1.0, -1.0]) if angle == -90 else -before
    np.testing.assert_allclose(moved, turned, atol=1e-8)
    assert not mov.uns["manual"]["reflected"]
    by_hand = _distance_to_truth(ref, mov, _placed(ref, mov, turned))
    assert _distance_to_truth(ref, mov, mov.obsm["manual"]) < 1.1 * by_hand


def test_explicit_angle_with_reflection():
    """``reflection=True`` mirrors the y axis, then turns by ``angle``: 180 degrees undoes a mirrored x axis."""
    ref, mov = hr.datasets.simulate_slices(n_obs=600, n_genes=20, rotation=0, deformation=0, seed=3)
    mov.obsm["spatial"] = mov.obsm["spatial"] * np.array([-1.0, 1.0])
    hr.pp.register(ref, mov, angle=180, reflection=True, n_iter=0, use_rep=None)
    info = mov.uns["spatial_registered"]
    assert info["reflected"]
    moved = mov.obsm["spatial_registered"] - mov.obsm["spatial_registered"].mean(0)
    before = mov.obsm["spatial"] - mov.obsm["spatial"].mean(0)
    np.testing.assert_allclose(moved, before * np.array([-1.0, 1.0]), atol=1e-8)
    by_hand = _distance_to_truth(ref, mov, _placed(ref, mov, before * np.array([-1.0, 1.0])))
    assert _distance_to_truth(ref, mov, mov.obsm["spatial_registered"]) < 1.1 * by_hand


def test_register_errors(slices):
    a, b = slices
    b.obsm["spatial"] = np.column_stack([b.obsm["spatial"], np.zeros(b.n_obs)])
    with pytest.raises(ValueError, match="2-D coordinates"):
        hr.pp.register(a, b)
    with pytest.raises(KeyError, match=r"no .obsm\[.xy.\]"):
        hr.pp.register(a, b, spatial_key="xy")
    with pytest.raises(ValueError, match="`reflection`"):
        hr.pp.register(a, a.copy(), reflection="yes")


def test_an_ambiguous_rotation_is_reported(caplog):
    import anndata as ad

    rng = np.random.default_rng(0)
    # a "T", mirror-symmetric about the y axis, and a copy turned by 90 degrees: turning it back, and
    # mirroring it as well, fit equally well
    half = np.concatenate([rng.uniform([0, 40], [60, 60], (140, 2)), rng.uniform([0, -60], [10, 40], (100, 2))])
    P = np.concatenate([half, half * np.array([-1.0, 1.0])])  # 480 cells: the search sees them all
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    M = P[rng.permutation(len(P))] @ turn.T
    ref = ad.AnnData(np.ones((len(P), 1), np.float32), obsm={"spatial": P})
    mov = ad.AnnData(np.ones((len(M), 1), np.float32), obsm={"spatial": M})
    with caplog.at_level("WARNING", logger="hiref"):
        hr.pp.register(ref, mov, use_rep=None, reflection=None)
    info = mov.uns["spatial_registered"]
    assert info["decision"] == "moved"
    assert info["margin"] < 1.02
    assert "ambiguous" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hiref"):  # told the orientation: no search, no warning
        hr.pp.register(ref, mov, use_rep=None, angle=-90, reflection=False)
    assert "ambiguous" not in caplog.text
    assert abs(angle_of(mov.uns["spatial_registered"]["rotation"]) + 90) < 2


def test_register_device():
    ref, mov = hr.datasets.simulate_slices(n_obs=300, rotation=30, deformation=0, seed=0)
    with pytest.raises(ValueError, match="`device`"):
        hr.pp.register(ref, mov, use_rep=None, n_sample=150, device="nope")
    assert "spatial_registered" not in mov.obsm
    out = hr.pp.register(ref, mov, use_rep=None, n_sample=150, device="cpu", copy=True)
    hr.pp.register(ref, mov, use_rep=None, n_sample=150)  # default: cuda when available, else cpu
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(out[1].obsm["spatial_registered"], mov.obsm["spatial_registered"])
    assert abs(out[1].uns["spatial_registered"]["angle"] + 30) < 2
