from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

import hiref._rep as rep


def _scanpy_joint(X1, X2) -> sp.csr_matrix:
    """The preprocessing joint_matrix reproduces, done by scanpy on a stacked copy."""
    parts = [sp.csr_matrix(X, dtype=np.float32) for X in (X1, X2)]
    joint = ad.AnnData(X=sp.vstack(parts, format="csr"))
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    return joint.X


def _assert_csr_equal(X, Y):
    assert X.shape == Y.shape
    for attr in ("data", "indices", "indptr"):
        assert getattr(X, attr).dtype == getattr(Y, attr).dtype
        np.testing.assert_array_equal(getattr(X, attr), getattr(Y, attr))


@pytest.mark.parametrize("entries", [1, 50, 2**21])
@pytest.mark.parametrize("kind", ["float32", "int64", "csc", "dense2"])
def test_joint_matrix_is_scanpy_preprocessing(slices, monkeypatch, entries, kind):
    monkeypatch.setattr(rep, "_CHUNK_ENTRIES", entries)
    a, b = slices
    if kind == "int64":
        a.X = a.X.astype(np.int64)
    elif kind == "csc":
        b.X = sp.csc_matrix(b.X, dtype=np.float64)
    elif kind == "dense2":
        b.X = b.X.toarray()
    before = (a.X.copy(), b.X.copy())
    joint, steps, n_shared = rep.joint_matrix(a, b, layer=None)
    assert steps == ["normalize_total(1e4)", "log1p"]
    assert n_shared == a.n_vars
    assert isinstance(joint.X, sp.csr_matrix)
    assert joint.X.dtype == np.float32
    _assert_csr_equal(joint.X, _scanpy_joint(*before))
    assert joint.uns["log1p"] == {"base": None}
    for old, new in zip(before, (a.X, b.X), strict=True):  # the inputs are left as they were
        assert type(old) is type(new)
        dense = [m.toarray() if sp.issparse(m) else m for m in (old, new)]
        np.testing.assert_array_equal(*dense)


def test_joint_matrix_zero_count_cells_warn_like_scanpy(slices, monkeypatch):
    monkeypatch.setattr(rep, "_CHUNK_ENTRIES", 100)
    a, b = slices
    X = a.X.tolil()
    X[[0, 7, 499]] = 0
    a.X = sp.csr_matrix(X)
    a.X.eliminate_zeros()
    with pytest.warns(UserWarning, match="Some cells have zero counts"):
        expected = _scanpy_joint(a.X, b.X)
    with pytest.warns(UserWarning, match="Some cells have zero counts"):
        joint, _, _ = rep.joint_matrix(a, b, layer=None)
    _assert_csr_equal(joint.X, expected)


def test_joint_matrix_not_counts(slices):
    a, b = slices
    a.X, b.X = a.X * 3.7, b.X * 3.7  # non-integer, above 20: log1p only
    joint, steps, _ = rep.joint_matrix(a, b, layer=None)
    assert steps == ["log1p"]
    expected = sp.vstack([a.X, b.X], format="csr").astype(np.float32)
    expected.data = np.log1p(expected.data)
    _assert_csr_equal(joint.X, expected)
    a.X, b.X = a.X * 1e-3, b.X * 1e-3  # small values: used as they are
    joint, steps, _ = rep.joint_matrix(a, b, layer=None)
    assert steps == []
    _assert_csr_equal(joint.X, sp.vstack([a.X, b.X], format="csr").astype(np.float32))


def test_joint_pca_leaves_prepared_untouched(slices):
    a, b = slices
    prepared = rep.joint_matrix(a, b, layer=None)
    X = prepared[0].X.copy()
    R1, R2, info = rep.joint_pca(a, b, n_pcs=10, layer=None, random_state=0, prepared=prepared)
    S1, S2, _ = rep.joint_pca(a, b, n_pcs=10, layer=None, random_state=0)
    np.testing.assert_array_equal(R1, S1)
    np.testing.assert_array_equal(R2, S2)
    assert R1.shape == (a.n_obs, 10)
    assert info["preprocessing"] == ["normalize_total(1e4)", "log1p"]
    assert not prepared[0].obsm
    assert "pca" not in prepared[0].uns
    _assert_csr_equal(prepared[0].X, X)


@pytest.mark.parametrize("kind", ["counts", "dense_counts", "log_scale", "as_is"])
def test_joint_rows_equal_the_joint_matrix_row_for_row(slices, kind):
    a, b = (x.copy() for x in slices)
    if kind == "dense_counts":
        a.X, b.X = a.X.toarray(), b.X.toarray()
    elif kind == "log_scale":  # not counts, values above 20: log1p only
        a.X, b.X = a.X * 10.5, b.X * 10.5
    elif kind == "as_is":
        a.X, b.X = a.X.toarray() - 1.0, b.X.toarray() - 1.0
    whole, steps, _ = rep.joint_matrix(a, b, layer=None)
    rows = rep.JointRows(a, b, layer=None)
    assert rows.steps == steps
    assert rows.shape == whole.shape
    expected = whole.X.toarray() if sp.issparse(whole.X) else whole.X
    n1 = a.n_obs
    picks = [slice(0, 7), slice(n1 - 3, n1 + 4), slice(None), np.array([n1 + 5, 2, n1 - 1, 0, 2])]
    for pick in picks:
        block = rows[pick]
        assert sp.issparse(block) == sp.issparse(whole.X)
        block = block.toarray() if sp.issparse(block) else block
        np.testing.assert_array_equal(block, expected[pick])
