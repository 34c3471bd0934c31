"""``hr.tl.cosine_similarity`` and ``hr.tl.label_agreement``: defaults, options and errors, by hand."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr


def _cells(X, xy, names, genes=("g1", "g2")):
    adata = ad.AnnData(X=np.asarray(X, dtype=float), obs=pd.DataFrame(index=list(names)),
                       var=pd.DataFrame(index=list(genes)))  # fmt: skip
    adata.obsm["spatial"] = np.asarray(xy, dtype=float)
    return adata


def _cosine(P, T):
    P, T = np.asarray(P, dtype=float), np.asarray(T, dtype=float)
    return (P * T).sum(0) / (np.linalg.norm(P, axis=0) * np.linalg.norm(T, axis=0))


@pytest.fixture
def pair():
    """Prediction and truth on the same 4 places (no transfer: every cell counts)."""
    xy = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    pred = _cells([[1, 2], [3, 0], [0, 5], [2, 2]], xy, "abcd")
    true = _cells([[2, 2], [1, 1], [1, 4], [0, 3]], xy, "wxyz")
    return pred, true


def test_cosine_defaults_grid_and_key(pair):
    pred, true = pair
    out = hr.tl.cosine_similarity(pred, true, genes=["g1", "g2"])
    # 75 x 75 bins over both objects: each cell its own bin, so the vectors are the cells themselves.
    np.testing.assert_allclose(out["cosine_similarity"], _cosine(pred.X, true.X), rtol=1e-12)
    assert out.index.name == "gene"
    assert list(out.columns) == ["cosine_similarity", "n_bins_pred", "n_bins_true"]
    assert out["n_bins_pred"].tolist() == [4, 4]
    # The default grid is 75 bins a side: two cells 0.0132 apart on a unit-wide extent share a bin
    # (0.0132 * 75 < 1) and do not on 76 bins.
    xy = np.array([[0.0, 0.0], [0.0132, 0.0], [1.0, 0.0], [1.0, 1.0]])
    near = _cells([[1, 0], [0, 1], [1, 1], [1, 1]], xy, "abcd")
    assert hr.tl.cosine_similarity(near, near, genes="g1")["n_bins_pred"].item() == 3
    assert hr.tl.cosine_similarity(near, near, genes="g1", bins=76)["n_bins_pred"].item() == 4


def test_cosine_layer_extent_and_key(pair):
    pred, true = pair
    true.layers["other"] = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    out = hr.tl.cosine_similarity(pred, true, genes="g1", layer="other")
    assert out.loc["g1", "cosine_similarity"] == pytest.approx(_cosine(pred.X[:, :1], true.layers["other"][:, :1])[0])
    # An extent that holds only the left column of cells (x = 0), on a 1 x 2 grid.
    left = hr.tl.cosine_similarity(pred, true, genes=["g1", "g2"], bins=(1, 2), extent=(-0.5, 0.5, -0.5, 1.5))
    np.testing.assert_allclose(left["cosine_similarity"], _cosine(pred.X[:2], true.X[:2]), rtol=1e-12)
    assert left["n_bins_true"].tolist() == [2, 2]
    for adata in (pred, true):
        adata.obsm["xy"] = adata.obsm.pop("spatial")
    moved = hr.tl.cosine_similarity(pred, true, genes=["g1", "g2"], spatial_key="xy")
    np.testing.assert_allclose(moved["cosine_similarity"], _cosine(pred.X, true.X), rtol=1e-12)


def test_cosine_of_a_gene_absent_everywhere_is_nan(pair):
    pred, true = pair
    pred.X[:, 1] = 0
    out = hr.tl.cosine_similarity(pred, true, genes=["g1", "g2"])
    assert np.isnan(out.loc["g2", "cosine_similarity"])
    assert out.loc["g1", "cosine_similarity"] == pytest.approx(_cosine(pred.X[:, :1], true.X[:, :1])[0])


def test_cosine_errors_name_the_argument(pair, tmp_path):
    pred, true = pair
    with pytest.raises(TypeError, match="`adata_pred` must be an AnnData"):
        hr.tl.cosine_similarity(pred.X, true, genes="g1")
    with pytest.raises(TypeError, match="`adata_true` must be an AnnData"):
        hr.tl.cosine_similarity(pred, true.X, genes="g1")
    with pytest.raises(KeyError, match=r"`genes` not in adata_pred.var_names: \['g9'\]"):
        hr.tl.cosine_similarity(pred, true, genes=["g1", "g9"])
    with pytest.raises(KeyError, match=r"`genes` not in adata_true.var_names: \['g3'\]"):
        hr.tl.cosine_similarity(_cells(np.ones((4, 3)), pred.obsm["spatial"], "abcd", ("g1", "g2", "g3")), true,
                                genes="g3")  # fmt: skip
    dup = pred.copy()
    dup.var_names = ["g1", "g1"]
    with pytest.raises(ValueError, match="`adata_pred` has duplicated var_names"):
        hr.tl.cosine_similarity(dup, true, genes="g1")
    dup = true.copy()
    dup.var_names = ["g1", "g1"]
    with pytest.raises(ValueError, match="`adata_true` has duplicated var_names"):
        hr.tl.cosine_similarity(pred, dup, genes="g1")
    with pytest.raises(KeyError, match=r"`adata_pred` has no .obsm\['xy'\].*Pass `spatial_key=`"):
        hr.tl.cosine_similarity(pred, true, genes="g1", spatial_key="xy")
    only_true = true.copy()
    only_true.obsm["xy"] = only_true.obsm["spatial"]
    with pytest.raises(KeyError, match=r"`adata_true` has no .obsm\['xy'\]"):
        hr.tl.cosine_similarity(only_true, pred, genes="g1", spatial_key="xy")
    for name, args in (("adata_pred", (0, 1)), ("adata_true", (1, 0))):
        path = tmp_path / f"{name}.h5ad"
        (pred, true)[args[0]].write_h5ad(path)
        backed = ad.read_h5ad(path, backed="r")
        objects = [backed, (pred, true)[args[1]]] if name == "adata_pred" else [(pred, true)[args[1]], backed]
        with pytest.raises(ValueError, match=f"`{name}` is backed by"):
            hr.tl.cosine_similarity(*objects, genes="g1")
        backed.file.close()


def _labelled(labels_from, labels_to, perm):
    a = _cells(
        np.zeros((len(labels_from), 2)), np.zeros((len(labels_from), 2)), [f"a{i}" for i in range(len(labels_from))]
    )
    b = _cells(np.zeros((len(labels_to), 2)), np.zeros((len(labels_to), 2)), [f"b{i}" for i in range(len(labels_to))])
    a.obs["lab"] = pd.Categorical(labels_from)
    b.obs["lab"] = pd.Categorical(labels_to)
    hr.tl.store_matching(a, b, np.asarray(perm), spatial_key=None)
    return a, b


def test_label_agreement_by_hand():
    # a0->b1, a1->b0, a2->b3; b2 has no partner
    a, b = _labelled(["x", "y", "z"], ["y", "x", "x", "q"], [1, 0, 3])
    out = hr.tl.label_agreement(a, b, obs="lab")
    assert out.index.name == "lab"
    assert out.index.tolist() == ["q", "x", "y", "overall"]
    assert out["agreement"].tolist() == [0.0, 0.5, 1.0, 0.5]
    assert out["n_cells"].tolist() == [1, 2, 1, 4]
    assert out["n_matched"].tolist() == [1, 1, 1, 3]
    # labels left out: one name or several; labels under another column of adata_to
    assert hr.tl.label_agreement(a, b, obs="lab", na="q").loc["overall", "agreement"] == pytest.approx(2 / 3)
    kept = hr.tl.label_agreement(a, b, obs="lab", na=["q", "y"])
    assert kept.index.tolist() == ["x", "overall"]
    assert kept.loc["overall", "n_cells"] == 2
    b.obs["truth"] = b.obs["lab"]
    del b.obs["lab"]
    np.testing.assert_array_equal(hr.tl.label_agreement(a, b, obs="lab", obs_to="truth")["agreement"],
                                  out["agreement"])  # fmt: skip
    assert hr.tl.label_agreement(a, b, obs="lab", obs_to="truth").index.name == "truth"


def test_label_agreement_na_and_key():
    a, b = _labelled(["x", "y"], ["x", "NA"], [0, 1])
    assert hr.tl.label_agreement(a, b, obs="lab").index.tolist() == ["x", "overall"]
    assert hr.tl.label_agreement(a, b, obs="lab", na=None).loc["NA", "n_cells"] == 1
    hr.tl.store_matching(a, b, np.array([1, 0]), key_added="other", spatial_key=None)
    assert hr.tl.label_agreement(a, b, obs="lab", key="other").loc["x", "agreement"] == 0.0
    assert hr.tl.label_agreement(a, b, obs="lab").loc["x", "agreement"] == 1.0


def test_label_agreement_errors_name_the_object():
    a, b = _labelled(["x", "y"], ["y", "x"], [1, 0])
    with pytest.raises(TypeError, match="`adata_from` must be an AnnData"):
        hr.tl.label_agreement(a.obs, b, obs="lab")
    with pytest.raises(TypeError, match="`adata_to` must be an AnnData"):
        hr.tl.label_agreement(a, b.obs, obs="lab")
    with pytest.raises(KeyError, match=r"`adata_from` has no .obs\['cell'\].*pass `obs=`"):
        hr.tl.label_agreement(a, b, obs="cell")
    b.obs["cell"] = b.obs["lab"]
    with pytest.raises(KeyError, match=r"`adata_to` has no .obs\['kind'\]"):
        hr.tl.label_agreement(a, b, obs="lab", obs_to="kind")


def test_cosine_default_extent_spans_both_objects():
    # The prediction covers x in [0, 0.9], the truth [0, 2]: one grid over [0, 2] x [0, 1], 2 x 1 bins,
    # so both predicted cells fall in the left bin (on a grid of their own they would not).
    pred = _cells([[1, 0], [0, 1]], [[0.0, 0.0], [0.9, 1.0]], "ab")
    true = _cells([[1, 1], [2, 0], [0, 3]], [[0.0, 0.0], [0.5, 0.5], [2.0, 1.0]], "xyz")
    out = hr.tl.cosine_similarity(pred, true, genes=["g1", "g2"], bins=(2, 1))
    P = [[0.5, 0.5], [0.0, 0.0]]  # a, b; nothing
    T = [[1.5, 0.5], [0.0, 3.0]]  # x, y; z
    np.testing.assert_allclose(out["cosine_similarity"], _cosine(P, T), rtol=1e-12)
    assert out["n_bins_pred"].tolist() == [1, 1]


def test_cosine_lists_at_most_ten_missing_genes(pair):
    pred, true = pair
    missing = [f"m{i:02d}" for i in range(12)]
    with pytest.raises(KeyError, match=r"\['m00', .*'m09'\]\.") as info:
        hr.tl.cosine_similarity(pred, true, genes=missing)
    assert "m10" not in str(info.value)


def test_label_agreement_lists_at_most_twenty_columns():
    a, b = _labelled(["x", "y"], ["y", "x"], [1, 0])
    for i in range(22):
        a.obs[f"c{i:02d}"] = 0
    with pytest.raises(KeyError, match=r"\(columns: \['lab', 'hiref_match', 'c00', .*'c17'\]\)") as info:
        hr.tl.label_agreement(a, b, obs="cell")
    assert "c18" not in str(info.value)


def test_label_agreement_errors_name_both_sides_of_a_moved_alignment():
    a, b = _labelled(["x", "y", "z"], ["y", "x", "z"], [1, 0, 2])
    with pytest.raises(ValueError, match="the obs_names of `adata_to` and `adata_from` no longer match"):
        hr.tl.label_agreement(a, b[[1, 0, 2]].copy(), obs="lab")
    with pytest.raises(KeyError, match="`adata_to` has no alignment under key 'other'"):
        hr.tl.label_agreement(a, b, obs="lab", key="other")


def test_missing_genes_coordinates_and_columns_get_whole_messages(pair):
    pred, true = pair
    with pytest.raises(KeyError) as err:
        hr.tl.cosine_similarity(pred, true, genes=["g1", "g9"])
    assert err.value.args[0] == "`genes` not in adata_pred.var_names: ['g9']."
    with pytest.raises(KeyError) as err:
        hr.tl.cosine_similarity(pred, true, genes="g1", spatial_key="xy")
    assert err.value.args[0] == "`adata_pred` has no .obsm['xy'] (available: ['spatial']). Pass `spatial_key=`."
    pred.obsm["xy"] = pred.obsm["spatial"]
    with pytest.raises(KeyError) as err:
        hr.tl.cosine_similarity(pred, true, genes="g1", spatial_key="xy")
    assert err.value.args[0] == "`adata_true` has no .obsm['xy'] (available: ['spatial']). Pass `spatial_key=`."
    a, b = _labelled(["x", "y"], ["y", "x"], [1, 0])
    with pytest.raises(KeyError) as err:
        hr.tl.label_agreement(a, b, obs="cell")
    assert err.value.args[0] == "`adata_from` has no .obs['cell'] (columns: ['lab', 'hiref_match']); pass `obs=`."
