"""hiref on real slices from ../shared/data, scored against references measured in the same test.

The references are stored matchings scored exactly as hiref's: random ones (chance) and scipy's
optimal matching on position alone. A constant margin over chance would let a random matching
pass (chance itself moves by 0.1 between seeds on these small sections).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import hiref as hr

from helpers import store_exact_matching, store_random_matching

SEEDS = range(3)


@pytest.fixture(scope="module")
def merfish(shared_data):
    rng = np.random.default_rng(0)
    out = []
    for name in ("merfish_hypothalamus_bregma0.26", "merfish_hypothalamus_bregma0.21"):
        adata = ad.read_h5ad(shared_data / f"{name}.h5ad")
        out.append(adata[np.sort(rng.choice(adata.n_obs, 2500, replace=False))].copy())
    return out


def _scores(a, b, key, genes, bins, spatial_key="spatial"):
    """Mean cosine similarity of the transfer through the matching under ``key``, and per gene."""
    pred = hr.tl.transfer(a, b, key=key, genes=genes, spatial_key=spatial_key)
    return hr.tl.cosine_similarity(pred, b, genes=genes, bins=bins, spatial_key=spatial_key)["cosine_similarity"]


def _chance(a, b, genes, bins, spatial_key="spatial", obs=None):
    """The best of a few random matchings: cosine per gene (and label agreement with ``obs``)."""
    cosine, labels = [], []
    for seed in SEEDS:
        store_random_matching(a, b, key_added="random", seed=seed, spatial_key=spatial_key)
        cosine.append(_scores(a, b, "random", genes, bins, spatial_key))
        if obs:
            labels.append(hr.tl.label_agreement(a, b, obs=obs, key="random").loc["overall", "agreement"])
    best = max(cosine, key=lambda s: s.mean())
    return (best, max(labels)) if obs else best


def test_merfish_adjacent_sections(merfish):
    a, b = (x.copy() for x in merfish)
    hr.tl.align(a, b, use_rep={"spatial": 1.0, "X_pca": 0.5}, progress=False)
    assert (b.uns["hiref"]["partner"] >= 0).all()
    genes = [g for g in ("Slc17a7", "Gad1", "Aqp4", "Mbp", "Sox4", "Ace2") if g in a.var_names]
    score = _scores(a, b, "hiref", genes, 30)
    same_class = hr.tl.label_agreement(a, b, obs="cell_class").loc["overall", "agreement"]
    chance, chance_class = _chance(a, b, genes, 30, obs="cell_class")
    store_exact_matching(a, b, rep="spatial", key_added="position")
    position = _scores(a, b, "position", genes, 30)
    position_class = hr.tl.label_agreement(a, b, obs="cell_class", key="position").loc["overall", "agreement"]
    # Measured: chance 0.29 / 0.18 (classes), position alone 0.36 / 0.21, hiref 0.58 / 0.70. The
    # sections are 50 um apart and not registered, so expression has to carry the matching: hiref's
    # gain over chance must be at least twice that of the exact position-only matching.
    assert position.mean() > chance.mean()
    assert score.mean() - chance.mean() > 2 * (position.mean() - chance.mean())
    assert (score > chance).mean() >= 0.8
    assert position_class > chance_class
    assert same_class - chance_class > 2 * (position_class - chance_class)
    assert same_class - chance_class > 0.5 * (1 - chance_class)


def test_paste_consecutive_sections(shared_data):
    a = ad.read_h5ad(shared_data / "paste_breast_slice1.h5ad")
    b = ad.read_h5ad(shared_data / "paste_breast_slice2.h5ad")
    hr.pp.register(a, b, n_sample=250)
    hr.tl.align(a, b, use_rep={"X_pca": 1.0, "spatial_registered": 1.0}, spatial_key="spatial_registered",
                progress=False)  # fmt: skip
    assert (b.uns["hiref"]["partner"] >= 0).all()  # 254 -> 251: the smaller side is fully matched
    shared = a.var_names.intersection(b.var_names)
    top = np.asarray(b[:, shared].X.sum(0)).ravel().argsort()[::-1][:20]
    genes = list(shared[top])
    key = "spatial_registered"
    score = _scores(a, b, "hiref", genes, 10, key).mean()
    chance = _chance(a, b, genes, 10, key).mean()
    store_exact_matching(a, b, rep=key, key_added="position", spatial_key=key)
    position = _scores(a, b, "position", genes, 10, key).mean()
    # Measured: chance 0.67 (random matchings, seeds 0-2), position alone 0.88, hiref 0.92. The
    # registered sections are close, so position alone is a strong reference: hiref must close at
    # least 90 % of the way from chance to it.
    assert position > chance
    assert score - chance >= 0.9 * (position - chance)
