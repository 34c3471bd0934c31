"""The registration's search scores every candidate motion in one batch, as one by one would."""

from __future__ import annotations

import numpy as np

import hiref as hr
from hiref.pp import _motion


def one_by_one(sample, angles, reflects):
    """The search's scores, evaluating one candidate motion at a time."""
    cP, cM = sample.P.mean(0), sample.M.mean(0)
    q = min(sample.k, _motion.SEARCH_SAMPLE)
    De = sample.expression_distances(q)
    scores = []
    for f in reflects:
        for a in angles:
            R = _motion.rotation(a, reflect=f)
            moved = (sample.M[:q] @ R.T + (cP - R @ cM))[None]
            scores.append(_motion.chamfer_scores(sample.P[:q], moved, De)[0])
    return np.array(scores)


def test_batched_search_equals_one_by_one(monkeypatch):
    rng = np.random.default_rng(7)
    P = rng.uniform(-50, 50, (300, 2))
    theta = np.deg2rad(40)
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    M = P[rng.permutation(300)] @ R.T + np.array([5.0, -3.0]) + rng.normal(0, 0.5, (300, 2))
    sample = _motion.Sample(P, M, rng.normal(size=(300, 3)), rng.normal(size=(300, 3)))
    angles = list(np.arange(24) * 15.0)
    monkeypatch.setattr(_motion, "CHAMFER_BLOCK", 5 * 300 * 300)  # several batches of 5 candidates
    found = _motion.search_motions(sample, angles, [False, True])
    expected = one_by_one(sample, angles, [False, True])
    np.testing.assert_array_equal(found.scores, expected)
    assert found.best == int(np.argmin(expected))
    assert abs(found.angles[found.best] - 315.0) < 1e-9  # undoes the 40 degree rotation, to the nearest 15
    assert not found.reflected[found.best]


def test_register_search_matches_one_by_one():
    ref, mov = hr.datasets.simulate_slices(n_obs=400, n_genes=20, rotation=60, deformation=0, seed=4)
    hr.pp.register(ref, mov, n_sample=400, use_rep=None)
    info = mov.uns["spatial_registered"]
    rng = np.random.default_rng(0)  # register's default random_state draws the same sample
    pick_p = _motion.even_sample(ref.obsm["spatial"], 400, rng)
    pick_m = _motion.even_sample(mov.obsm["spatial"], 400, rng)
    sample = _motion.Sample(ref.obsm["spatial"][pick_p], mov.obsm["spatial"][pick_m])
    angles = list(np.arange(24) * 15.0)
    expected = one_by_one(sample, angles, [False, True])
    np.testing.assert_array_equal(info["candidate_scores"], expected)
    best = int(np.argmin(expected))
    assert info["candidate_angles"][best] == 300.0
    assert not info["candidate_reflected"][best]


def _gap_spread(P):
    """Coefficient of variation of the nearest-neighbour distances (0 on a perfect lattice)."""
    from scipy.spatial import cKDTree

    d = cKDTree(P).query(P, 2)[0][:, 1]
    return d.std() / d.mean()


def test_even_sample_spreads_the_cells():
    rng = np.random.default_rng(0)
    P = np.concatenate([rng.uniform(0, 10, (3000, 2)), rng.uniform(10, 100, (3000, 2))])  # a dense corner
    picked = _motion.even_sample(P, 500, rng)
    assert len(np.unique(picked)) == len(picked) == 500
    assert (P[picked] < 10).all(1).mean() < 0.05  # a random sample puts half in the corner (1 % of the area)
    U = rng.uniform(0, 100, (6000, 2))
    assert _gap_spread(U[_motion.even_sample(U, 500, rng)]) < _gap_spread(U[rng.choice(6000, 500, replace=False)])
    assert sorted(_motion.even_sample(U[:50], 80, rng)) == list(range(50))  # fewer cells than asked: all of them
    assert len(np.unique(_motion.even_sample(np.zeros((20, 2)), 5, rng))) == 5  # no spread: random cells


def test_chamfer_scores_equal_the_direct_distances_far_from_the_origin():
    rng = np.random.default_rng(8)
    P = rng.uniform(-50, 50, (120, 2)) + 1e5  # Visium-like units far from 0: no digits lost
    moved = rng.uniform(-50, 50, (7, 90, 2)) + 1e5
    moved[0, :5] = P[:5]  # coincident cells score exactly 0, never below
    De = rng.random((120, 90))
    for expression in (None, De):
        D = ((P[None, :, None, :] - moved[:, None, :, :]) ** 2).sum(-1)
        if expression is not None:
            D = D + expression[None]
        direct = 0.5 * (D.min(2).mean(1) + D.min(1).mean(1))
        np.testing.assert_allclose(_motion.chamfer_scores(P, moved, expression), direct, rtol=1e-9)
