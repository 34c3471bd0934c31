from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hiref as hr


@pytest.mark.parametrize("sparse", [True, False])
def test_transfer_copies_partner_rows(slices, sparse):
    a, b = slices
    if not sparse:
        a.X = a.X.toarray()
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    pred = hr.tl.transfer(a, b, genes=["gene3", "gene1"], obs=["region", "slice"])
    partner = b.uns["hiref"]["partner"]
    X = pred.X.toarray() if sp.issparse(pred.X) else pred.X
    assert sp.issparse(pred.X) == sparse
    source = a[:, ["gene3", "gene1"]].X
    source = source.toarray() if sp.issparse(source) else source
    assert np.allclose(X, source[partner])
    assert list(pred.obs_names) == list(b.obs_names)
    assert list(pred.var_names) == ["gene3", "gene1"]
    assert pred.obs["hiref_matched"].all()
    assert (pred.obs["region"].to_numpy() == a.obs["region"].to_numpy()[partner]).all()
    assert list(pred.obs["region"].cat.categories) == list(a.obs["region"].cat.categories)
    assert np.allclose(pred.obsm["spatial"], b.obsm["spatial"])


def test_transfer_to_the_larger_object_marks_unmatched(slices):
    a, b = slices
    a.X = a.X.toarray()
    a.obs["size"] = np.arange(a.n_obs, dtype=float)
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    pred = hr.tl.transfer(b, a, obs=["region"])
    unmatched = ~pred.obs["hiref_matched"].to_numpy()
    assert unmatched.sum() == a.n_obs - b.n_obs
    assert pred.obs["region"][unmatched].isna().all()
    assert pred.obs["hiref_source"][unmatched].isna().all()
    dense = hr.tl.transfer(hr.tl.transfer(a, b), a)  # dense source: NaN rows
    assert np.isnan(dense.X[unmatched]).all()


def test_transfer_errors(slices):
    a, b = slices
    with pytest.raises(KeyError, match=r"run hr\.tl\.align first"):
        hr.tl.transfer(a, b)
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    with pytest.raises(KeyError, match="`genes` not in adata_source"):
        hr.tl.transfer(a, b, genes=["nope"])
    with pytest.raises(KeyError, match="`obs` columns not in"):
        hr.tl.transfer(a, b, obs="nope")
    with pytest.raises(KeyError, match="layers"):
        hr.tl.transfer(a, b, layer="counts")


def test_bin_spatial_means_on_a_tiny_grid():
    X = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]])
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=list("abcd")))
    adata.obsm["spatial"] = np.array([[0.1, 0.1], [0.2, 0.3], [0.9, 0.1], [0.8, 0.9]])
    binned = hr.tl.bin_spatial(adata, bins=2, extent=(0, 1, 0, 1))
    assert list(binned.obs_names) == ["0_0", "1_0", "1_1"]
    assert np.allclose(binned.X, [[2.0, 1.0], [5.0, 4.0], [7.0, 6.0]])
    assert binned.obs["n_cells"].tolist() == [2, 1, 1]
    assert np.allclose(binned.obsm["spatial"], [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75]])
    sparse = adata.copy()
    sparse.X = sp.csr_matrix(X)
    assert np.allclose(hr.tl.bin_spatial(sparse, bins=2, extent=(0, 1, 0, 1)).X, binned.X)
    with pytest.raises(ValueError, match="`extent`"):
        hr.tl.bin_spatial(adata, extent=(1, 0, 0, 1))
    with pytest.raises(ValueError, match="`bins`"):
        hr.tl.bin_spatial(adata, bins=0)


def test_cosine_similarity(slices):
    a, b = slices
    genes = list(a.var_names[:6])
    same = hr.tl.cosine_similarity(b, b, genes=genes, bins=20)
    assert np.allclose(same["cosine_similarity"], 1.0)
    hr.tl.align(a, b, use_rep={"X": 1.0, "spatial": 1.0}, progress=False)
    pred = hr.tl.transfer(a, b)
    score = hr.tl.cosine_similarity(pred, b, genes=genes, bins=20)
    shuffled = pred.copy()
    shuffled.obsm["spatial"] = shuffled.obsm["spatial"][np.random.default_rng(0).permutation(b.n_obs)]
    chance = hr.tl.cosine_similarity(shuffled, b, genes=genes, bins=20)
    assert (score["cosine_similarity"] > chance["cosine_similarity"]).all()
    assert ((score["cosine_similarity"] >= -1) & (score["cosine_similarity"] <= 1)).all()
    with pytest.raises(KeyError, match="`genes` not in"):
        hr.tl.cosine_similarity(pred, b, genes=["nope"])


def _tiny_transfer():
    """A transfer onto 5 target cells from 4 source cells, by hand: target cell t2 has no partner."""
    genes = pd.DataFrame(index=["g1", "g2"])
    source = ad.AnnData(X=np.array([[2.0, 0.0], [4.0, 1.0], [6.0, 3.0], [8.0, 8.0]]),
                        obs=pd.DataFrame(index=["s0", "s1", "s2", "s3"]), var=genes)  # fmt: skip
    target = ad.AnnData(X=np.array([[1.0, 1.0], [3.0, 0.0], [9.0, 9.0], [0.0, 4.0], [5.0, 2.0]]),
                        obs=pd.DataFrame(index=["t0", "t1", "t2", "t3", "t4"]), var=genes.copy())  # fmt: skip
    source.obsm["spatial"] = np.array([[0.1, 0.1], [0.2, 0.3], [0.7, 0.8], [0.8, 0.2]])
    # On the 2 x 2 grid over the unit square: bin (0, 0) holds t0, t1, t2; bin (1, 1) t3; bin (1, 0) t4.
    target.obsm["spatial"] = np.array([[0.1, 0.1], [0.2, 0.3], [0.3, 0.2], [0.7, 0.8], [0.8, 0.2]])
    hr.tl.store_matching(source, target, np.array([0, 1, 3, 4]))  # s0->t0, s1->t1, s2->t3, s3->t4
    return hr.tl.transfer(source, target), target


def test_cosine_similarity_by_hand():
    """Bin means (not sums) of matched cells only (t2 has no partner and is left out of the prediction)."""
    pred, target = _tiny_transfer()
    assert pred.obs["hiref_matched"].tolist() == [True, True, False, True, True]
    out = hr.tl.cosine_similarity(pred, target, genes=["g1", "g2"], bins=2, extent=(0, 1, 0, 1))
    # bins in the order (0,0), (1,0), (1,1); prediction: mean of t0, t1 (s0, s1); s3; s2
    P = np.array([[3.0, 0.5], [8.0, 8.0], [6.0, 3.0]])
    # truth: mean of t0, t1, t2; t4; t3
    T = np.array([[13.0 / 3.0, 10.0 / 3.0], [5.0, 2.0], [0.0, 4.0]])
    expected = (P * T).sum(0) / (np.linalg.norm(P, axis=0) * np.linalg.norm(T, axis=0))
    np.testing.assert_allclose(out["cosine_similarity"].to_numpy(), expected, rtol=1e-12)
    assert out["n_bins_pred"].tolist() == [3, 3]
    assert out["n_bins_true"].tolist() == [3, 3]


def test_cosine_similarity_empty_bins_count_as_zero():
    pred, target = _tiny_transfer()
    # Move t4 (prediction only) into a bin of its own: the truth has nothing there.
    pred.obsm["spatial"] = pred.obsm["spatial"].copy()
    pred.obsm["spatial"][4] = [0.2, 0.8]
    out = hr.tl.cosine_similarity(pred, target, genes=["g1"], bins=2, extent=(0, 1, 0, 1))
    P = np.array([3.0, 0.0, 6.0, 8.0])  # bins (0,0), (1,0), (1,1), (0,1)
    T = np.array([13.0 / 3.0, 5.0, 0.0, 0.0])
    expected = P @ T / (np.linalg.norm(P) * np.linalg.norm(T))
    assert out.loc["g1", "cosine_similarity"] == pytest.approx(expected, rel=1e-12)
    assert out.loc["g1", "n_bins_pred"] == 3
