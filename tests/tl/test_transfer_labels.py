"""hr.tl.transfer_labels: votes of the aligned neighbourhood, checked by hand, against brute force and on DLPFC."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.tl._labels import mapped, weighted_votes

from helpers import assert_same_adata_content


def test_votes_weighed_by_hand():
    # Source cells on a line at 0, 1, 2, 10 with labels a, a, b, (missing); spacing 1 (median
    # distance to the nearest other cell: 1, 1, 1, 8). Target points at 1.9 and 9.0, two votes each.
    R_source = np.array([[0.0], [1.0], [2.0], [10.0]])
    looked_up = np.array([[1.9], [9.0]])
    codes = np.array([0, 0, 1, -1])
    votes = weighted_votes(R_source, looked_up, codes, n_categories=2, n_neighbors=2, bandwidth=0.8)
    # Weights relative to the nearest voter: exp(-(d^2 - d_nearest^2) / (2 * 0.8^2)).
    # Point 0: source 2 (b) at 0.1 (weight 1), source 1 (a) at 0.9.
    # Point 1: source 3 (missing, no vote) at 1, source 2 (b) at 7.
    w = lambda d, d0: np.exp(-(d**2 - d0**2) / (2 * 0.8**2))  # noqa: E731
    np.testing.assert_allclose(votes, [[w(0.9, 0.1), 1.0], [0.0, w(7.0, 1.0)]])


def test_short_moves_are_dropped_and_long_ones_kept():
    # A grid of spacing 1; the matching shifts every cell by 1.5, 2.5 and 3.5 spacings along x:
    # dropped below 2, kept whole from 3, half of it at 2.5.
    g = np.stack(np.meshgrid(np.arange(12.0), np.arange(12.0)), -1).reshape(-1, 2)
    partner = np.arange(len(g))
    for shift, moved in ((1.5, 0.0), (2.5, 1.25), (3.5, 3.5)):
        target = g - [shift, 0.0]  # partner minus itself: +shift along x
        np.testing.assert_allclose(mapped(g, target, partner) - target, [[moved, 0.0]] * len(g), atol=1e-12)
    # With coordinates first, only they move: the third column (expression) stays the cell's own.
    source = np.column_stack([g, np.arange(len(g), dtype=float)])
    target = np.column_stack([g - [3.5, 0.0], np.zeros(len(g))])
    at = mapped(source, target, partner, n_space=2)
    np.testing.assert_allclose(at[:, :2] - target[:, :2], [[3.5, 0.0]] * len(g), atol=1e-12)
    np.testing.assert_array_equal(at[:, 2], 0.0)


def _brute_force(R_source, R_target, partner, labels, k, n_smooth=32, floor=2.0, full=3.0, bandwidth=0.8):
    own = cdist(R_target, R_target)
    spacing = np.median(np.sort(cdist(R_source, R_source), 1)[:, 1])
    at = R_target.astype(float).copy()
    for i in range(len(R_target)):
        near = [j for j in np.argsort(own[i], kind="stable")[:n_smooth] if partner[j] >= 0]
        shift = np.mean([R_source[partner[j]] - R_target[j] for j in near], axis=0)
        at[i] += shift * min(1.0, max(0.0, (np.linalg.norm(shift) / spacing - floor) / (full - floor)))
    out = []
    for i in range(len(R_target)):
        dist = np.linalg.norm(R_source - at[i], axis=1)
        voters = np.argsort(dist)[:k]
        weights = pd.Series(np.exp(-0.5 * (dist[voters] / (bandwidth * spacing)) ** 2)).groupby(labels[voters]).sum()
        weights = weights.sort_values(ascending=False)
        out.append((weights.index[0], weights.iloc[0] / weights.sum()))
    return out


def test_equals_brute_force_on_an_alignment_by_position(slices):
    a, b = slices
    b = b[: b.n_obs - 37].copy()  # the source is larger: every target cell has a partner, not every source cell
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    hr.tl.transfer_labels(a, b, "region", n_neighbors=5, expression_weight=0)
    partner = np.full(b.n_obs, -1)
    perm = hr.get.matching(a, b).perm
    partner[perm[perm >= 0]] = np.flatnonzero(perm >= 0)
    expected = _brute_force(a.obsm["spatial"], b.obsm["spatial"], partner, a.obs["region"].to_numpy(), 5)
    agreement = b.obs["hiref_region_agreement"].to_numpy()
    got = b.obs["hiref_region"].astype(str).to_numpy()
    for i, (label, share) in enumerate(expected):
        assert agreement[i] == pytest.approx(share)
        if share > 0.5 + 1e-9:  # a strict majority (ties may go either way)
            assert got[i] == label
    assert b.obs["hiref_region"].cat.categories.tolist() == a.obs["region"].cat.categories.tolist()


def test_follows_a_warp_that_the_nearest_cell_misses():
    # A pair bent by 10 % of the tissue: the labels must follow the matching's move, not stay put.
    a, b = hr.datasets.simulate_slices(n_obs=1500, deformation=0.10, seed=0)
    hr.pp.register(a, b, random_state=0)
    hr.tl.align(a, b, spatial_key="spatial_registered", random_state=0, progress=False)
    hr.tl.transfer_labels(a, b, "region")
    carried = (b.obs["hiref_region"].astype(str) == b.obs["region"].astype(str)).mean()
    nearest = cKDTree(a.obsm["spatial_registered"]).query(b.obsm["spatial_registered"])[1]
    by_nearest = (a.obs["region"].astype(str).to_numpy()[nearest] == b.obs["region"].astype(str).to_numpy()).mean()
    assert carried >= by_nearest + 0.05


def test_representation_is_the_alignments_own(slices):
    # The rebuilt arrays must give back the per-cell costs the alignment stored (``use_rep="auto"``,
    # expression and position).
    from hiref.get._matching import stored_params
    from hiref.tl._labels import _rebuild

    a, b = slices
    hr.tl.align(a, b, progress=False)
    params = stored_params(a, "hiref")
    assert params["auto_weight"] > 0
    R1, R2, how, n_space = _rebuild(a, b, params, None)
    assert "auto" in how
    assert n_space == 2  # the coordinates lead; the expression PCs follow
    assert R1.shape[1] > 2  # position and expression
    perm = hr.get.matching(a, b).perm
    matched = perm >= 0
    cost = ((R1[matched] - R2[perm[matched]]) ** 2).sum(1)
    np.testing.assert_allclose(cost, a.obs["hiref_cost"].to_numpy()[matched], rtol=1e-4, atol=1e-6)


def test_either_order_of_the_alignment(slices):
    a, b = slices
    hr.tl.align(b, a, progress=False)  # the target was adata1
    forward = hr.tl.transfer_labels(a, b, "region", copy=True)
    a2, b2 = (x.copy() for x in slices)
    hr.tl.align(a2, b2, progress=False)
    hr.tl.transfer_labels(a2, b2, "region")
    # Same data, the alignment computed the other way round: the same labels, at least as right as the
    # partners' own (measured: 0.887 against 0.820 on this pair).
    partner = hr.tl.label_agreement(a2, b2, obs="region").loc["overall", "agreement"]
    acc = [(x.obs["hiref_region"] == x.obs["region"]).mean() for x in (forward, b2)]
    assert min(acc) >= partner + 0.03
    assert (forward.obs["hiref_region"] == b2.obs["hiref_region"]).mean() > 0.95


def test_dlpfc_beats_the_partner_and_the_nearest_spot(dlpfc_aligned):
    a, b = dlpfc_aligned
    hr.tl.transfer_labels(a, b, "layer")
    labelled = b.obs["layer"].astype(str) != "NA"
    truth = b.obs["layer"].astype(str)[labelled].to_numpy()
    accuracy = (b.obs["hiref_layer"].astype(str)[labelled].to_numpy() == truth).mean()
    # References measured here: the partner's own label, and the nearest source spot in space.
    partner = hr.tl.label_agreement(a, b, obs="layer").loc["overall", "agreement"]
    nearest = cKDTree(a.obsm["spatial"]).query(b.obsm["spatial"][labelled.to_numpy()])[1]
    by_nearest = (a.obs["layer"].astype(str).to_numpy()[nearest] == truth).mean()
    # Measured: 0.876 against 0.857-0.861 and 0.867.
    assert accuracy >= max(partner, by_nearest) + 0.003
    # Cells whose votes agree are right more often than those whose votes split.
    agreement = b.obs["hiref_layer_agreement"].to_numpy()[labelled.to_numpy()]
    right = b.obs["hiref_layer"].astype(str)[labelled].to_numpy() == truth
    assert right[agreement == 1].mean() > right[agreement < 0.75].mean() + 0.2


def _scattered_types(seed: int, n: int = 700, n_genes: int = 30) -> ad.AnnData:
    """Cells of three types strewn at random over a square, each type with its own genes (counts)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    rates = np.full((3, n_genes), 2.0)
    for k in range(3):
        rates[k, 10 * k : 10 * k + 10] = 6.0
    adata = ad.AnnData(X=rng.poisson(rates[kind]).astype(np.float32))
    adata.obsm["spatial"] = rng.uniform(0, 30, (n, 2))
    adata.obs["kind"] = pd.Categorical([f"type{k}" for k in kind])
    return adata


def test_expression_decides_where_position_says_nothing():
    # Types strewn at random: the votes of neighbours are right a third of the time; expression
    # tells the types apart, and the cross-validation on the source must give it the say.
    a, b = _scattered_types(0), _scattered_types(1)
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    alone = hr.tl.transfer_labels(a, b, "kind", expression_weight=0, copy=True)
    hr.tl.transfer_labels(a, b, "kind")
    truth = b.obs["kind"].astype(str)
    by_votes = (alone.obs["hiref_kind"].astype(str) == truth).mean()
    carried = (b.obs["hiref_kind"].astype(str) == truth).mean()
    record = b.uns["hiref_kind"]
    assert by_votes < 0.5
    assert carried > 0.9
    assert record["expression_weight"] >= 0.4
    assert record["expression"]["heldout_accuracy"].max() > record["expression"]["heldout_accuracy"][0] + 0.3


def test_expression_without_signal_leaves_the_votes_their_say(slices):
    # Genes that are noise, unrelated to the regions: whatever weight the cross-validation picks
    # among near-equal candidates, the classifier's posterior is near its prior, so the labels
    # stay those of the votes.
    a, b = (x.copy() for x in slices)
    rng = np.random.default_rng(3)
    for x in (a, b):
        x.X = rng.poisson(3.0, x.shape).astype(np.float32)
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    alone = hr.tl.transfer_labels(a, b, "region", expression_weight=0, copy=True)
    hr.tl.transfer_labels(a, b, "region")
    truth = b.obs["region"].astype(str)
    by_votes = (alone.obs["hiref_region"].astype(str) == truth).mean()
    assert (b.obs["hiref_region"] == alone.obs["hiref_region"]).mean() > 0.98
    assert (b.obs["hiref_region"].astype(str) == truth).mean() >= by_votes - 0.01


def test_contract_refuses_user_columns_and_rewrites_its_own(slices):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    b.obs["hiref_region"] = "mine"
    before = b.copy()
    with pytest.raises(ValueError, match=r"`key_added`='hiref_region' would overwrite \.obs\['hiref_region'\]"):
        hr.tl.transfer_labels(a, b, "region")
    assert_same_adata_content(b, before)
    assert (b.obs["hiref_region"] == "mine").all()
    hr.tl.transfer_labels(a, b, "region", key_added="carried")
    hr.tl.transfer_labels(a, b, "region", key_added="carried", n_neighbors=3)  # its own entries: rewritten
    assert b.uns["carried"]["n_neighbors"] == 3
    assert b.uns["carried"]["obs_keys"] == ["carried", "carried_agreement"]


def test_copy_leaves_the_target_alone_and_survives_h5ad(slices, tmp_path):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    before = b.copy()
    out = hr.tl.transfer_labels(a, b, "region", copy=True)
    assert_same_adata_content(b, before)
    assert "hiref_region" not in b.obs
    out.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad")
    pd.testing.assert_series_equal(back.obs["hiref_region"], out.obs["hiref_region"])
    np.testing.assert_array_equal(back.obs["hiref_region_agreement"], out.obs["hiref_region_agreement"])
    hr.tl.transfer_labels(a, back, "region")  # the read-back record is recognised as its own


def test_missing_labels_cast_no_vote(slices):
    a, b = slices
    hr.tl.align(a, b, progress=False)
    a.obs["some"] = a.obs["region"].astype(object)
    a.obs.loc[a.obs["region"] == "region0", "some"] = np.nan
    hr.tl.transfer_labels(a, b, "some")
    assert "region0" not in b.obs["hiref_some"].cat.categories
    # Cells all of whose voters lack a label get none, and no agreement; they lie in region0.
    missing = b.obs["hiref_some"].isna().to_numpy()
    np.testing.assert_array_equal(np.isnan(b.obs["hiref_some_agreement"].to_numpy()), missing)
    assert 0 < missing.sum() < 1.5 * (b.obs["region"] == "region0").sum()
    assert (b.obs["region"][missing] == "region0").mean() > 0.75


def test_stored_matching_falls_back_to_coordinates(slices):
    a, b = slices
    perm = np.where(np.arange(a.n_obs) < b.n_obs, np.arange(a.n_obs), -1)
    hr.tl.store_matching(a, b, perm)
    hr.tl.transfer_labels(a, b, "region")
    assert "spatial" in b.uns["hiref_region"]["representation"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"obs": "nope"}, KeyError, r"`obs`='nope' is not a column of adata_source\.obs"),
        ({"obs": ["region"]}, TypeError, r"`obs` must be the name of one \.obs column"),
        ({"obs": "region", "n_neighbors": 0}, ValueError, r"`n_neighbors`"),
        ({"obs": "region", "use_rep": "auto"}, ValueError, r"`use_rep`='auto' would choose a new expression weight"),
        ({"obs": "region", "key": "other"}, KeyError, r"other"),
        ({"obs": "region", "key_added": ""}, TypeError, r"`key_added` must be a non-empty str"),
        ({"obs": "region", "copy": "yes"}, TypeError, r"`copy` must be True or False"),
        ({"obs": "region", "expression_weight": "high"}, ValueError, r"`expression_weight` must be 'auto' or a"),
        ({"obs": "region", "expression_weight": -0.1}, ValueError, r"`expression_weight` must be 'auto' or a"),
        ({"obs": "region", "expression_weight": True}, ValueError, r"`expression_weight` must be 'auto' or a"),
        ({"obs": "region", "expression_weight": float("nan")}, ValueError, r"`expression_weight`"),
    ],
)
def test_bad_arguments_name_themselves(slices, kwargs, error, match):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    before = b.copy()
    obs = kwargs.pop("obs")
    with pytest.raises(error, match=match):
        hr.tl.transfer_labels(a, b, obs, **kwargs)
    assert_same_adata_content(b, before)


def test_a_subset_target_is_refused(slices):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    with pytest.raises(ValueError, match="subset"):
        hr.tl.transfer_labels(a, b[:100].copy(), "region")
