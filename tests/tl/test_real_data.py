"""hiref on real slices from ../shared/data: transfer must clearly beat a random matching."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import hiref as hr


@pytest.fixture(scope="module")
def merfish(shared_data):
    rng = np.random.default_rng(0)
    out = []
    for name in ("merfish_hypothalamus_bregma0.26", "merfish_hypothalamus_bregma0.21"):
        adata = ad.read_h5ad(shared_data / f"{name}.h5ad")
        out.append(adata[np.sort(rng.choice(adata.n_obs, 2500, replace=False))].copy())
    return out


def random_transfer(source, target, seed=0):
    """The same transfer through a random matching (the chance level)."""
    perm = np.random.default_rng(seed).permutation(source.n_obs)[: target.n_obs]
    fake = target.copy()
    fake.X = source.X[perm]
    return fake


def test_merfish_adjacent_sections(merfish):
    a, b = (x.copy() for x in merfish)
    hr.tl.align(a, b, use_rep={"spatial": 1.0, "X_pca": 0.5}, progress=False)
    assert (b.uns["hiref"]["partner"] >= 0).all()
    genes = [g for g in ("Slc17a7", "Gad1", "Aqp4", "Mbp", "Sox4", "Ace2") if g in a.var_names]
    pred = hr.tl.transfer(a, b, genes=genes, obs="cell_class")
    score = hr.tl.cosine_similarity(pred, b, genes=genes, bins=30)["cosine_similarity"]
    chance = hr.tl.cosine_similarity(random_transfer(a[:, genes], b[:, genes]), b, genes=genes, bins=30)[
        "cosine_similarity"
    ]
    assert score.mean() > chance.mean() + 0.1
    assert (score > chance).mean() >= 0.8
    same_class = (pred.obs["cell_class"].astype(str) == b.obs["cell_class"].astype(str)).mean()
    assert same_class > 0.4  # 16 classes; a random matching agrees on about 0.15


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
    pred = hr.tl.transfer(a, b, genes=genes, spatial_key="spatial_registered")
    score = hr.tl.cosine_similarity(pred, b, genes=genes, bins=10, spatial_key="spatial_registered")
    fake = random_transfer(a[:, genes], b[:, genes])
    fake.obsm["spatial_registered"] = b.obsm["spatial_registered"]
    chance = hr.tl.cosine_similarity(fake, b, genes=genes, bins=10, spatial_key="spatial_registered")
    assert score["cosine_similarity"].mean() > chance["cosine_similarity"].mean() + 0.02
