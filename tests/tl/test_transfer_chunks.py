"""``hr.tl.transfer`` gathers the partners' rows a chunk at a time: same result, bounded memory."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hiref as hr
from hiref.tl import _transfer

GENES = {
    "all": None,
    "subset": ["g7", "g0", "g3"],
    "repeated": ["g2", "g5", "g2"],
    "reversed": [f"g{j}" for j in range(12)][::-1],
}


def _source(n: int, kind: str, dtype: type, rng: np.random.Generator) -> np.ndarray | sp.spmatrix:
    values = rng.random((n, 12))
    values[values < 0.6] = 0
    values = (values * 10).astype(dtype)
    if kind == "dense":
        return values
    X = sp.csr_matrix(values)
    # an explicit zero and a duplicate entry: neither survives, as before
    X = sp.csr_matrix(
        (np.r_[X.data, np.zeros(1, dtype), np.ones(1, dtype)], np.r_[X.indices, 0, 1], np.r_[X.indptr[:-1], X.nnz + 2]),
        shape=X.shape,
    )
    return X.tocsc() if kind == "csc" else X


def _pair(n_source: int, n_target: int, kind: str, dtype: type, *, layer: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = _source(n_source, kind, dtype, rng)
    a = ad.AnnData(
        X=np.zeros((n_source, 12)) if layer else X,
        obs=pd.DataFrame({"region": rng.choice(["x", "y"], n_source)}, index=[f"s{i}" for i in range(n_source)]),
        var=pd.DataFrame({"mean": np.arange(12.0)}, index=[f"g{j}" for j in range(12)]),
    )
    if layer:
        a.layers["counts"] = X
    b = ad.AnnData(
        X=np.zeros((n_target, 3)),
        obs=pd.DataFrame(index=[f"t{i}" for i in range(n_target)]),
        var=pd.DataFrame(index=["u", "v", "w"]),
    )
    b.obsm["spatial"] = rng.random((n_target, 2))
    partner = np.full(n_source, -1)
    m = min(n_source, n_target)
    partner[rng.permutation(n_source)[:m]] = rng.permutation(n_target)[:m]
    hr.tl.store_matching(a, b, partner)
    return a, b, X


def _reference(X, partner_of_target: np.ndarray, gene_idx: np.ndarray, *, sparse: bool) -> np.ndarray:
    """The obvious gather: one target cell at a time, from the dense source."""
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    floating = np.issubdtype(dense.dtype, np.floating)
    if sparse:
        dtype = dense.dtype if floating else np.float64
    else:
        dtype = dense.dtype if floating and (partner_of_target >= 0).all() else np.float64
    ref = np.empty((len(partner_of_target), len(gene_idx)), dtype=dtype)
    for t, p in enumerate(partner_of_target):
        ref[t] = dense[p, gene_idx] if p >= 0 else (0 if sparse else np.nan)
    return ref


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize("chunk", [7, None])
@pytest.mark.parametrize("genes", list(GENES))
@pytest.mark.parametrize("sizes", [(30, 30), (30, 41), (41, 30)])
@pytest.mark.parametrize(
    ("kind", "dtype"),
    [
        ("csr", np.float32),
        ("csr", np.int64),
        ("csc", np.float64),
        ("dense", np.float32),
        ("dense", np.int32),
        ("dense", np.float64),
    ],
)
def test_transfer_matches_the_obvious_gather(monkeypatch, chunk, genes, sizes, kind, dtype):
    if chunk is not None:
        monkeypatch.setattr(_transfer, "CHUNK_ENTRIES", chunk)
    layer = sizes == (30, 41)
    a, b, X = _pair(*sizes, kind, dtype, layer=layer)
    pred = hr.tl.transfer(a, b, genes=GENES[genes], obs="region", layer="counts" if layer else None)

    partner = np.asarray(b.uns["hiref"]["partner"])
    gene_idx = np.arange(12) if GENES[genes] is None else a.var_names.get_indexer(GENES[genes])
    ref = _reference(X, partner, gene_idx, sparse=kind != "dense")
    assert sp.issparse(pred.X) == (kind != "dense")
    assert pred.X.dtype == ref.dtype
    if kind == "dense":
        assert isinstance(pred.X, np.ndarray)
        np.testing.assert_array_equal(pred.X, ref)
    else:
        assert isinstance(pred.X, sp.csr_matrix)
        assert pred.X.has_canonical_format
        assert pred.X.nnz == np.count_nonzero(ref)  # explicit zeros dropped, duplicates summed
        np.testing.assert_array_equal(pred.X.toarray(), ref)
        assert pred.X.indices.dtype == np.int32
    matched = partner >= 0
    assert list(pred.obs_names) == list(b.obs_names)
    assert (pred.obs["hiref_matched"].to_numpy() == matched).all()
    names = np.where(matched, a.obs_names.to_numpy()[np.maximum(partner, 0)], None)
    assert list(pred.obs["hiref_source"].astype(object).where(matched, None)) == list(names)
    assert list(pred.obs["region"].astype(object).where(matched, None)) == list(
        np.where(matched, a.obs["region"].to_numpy()[np.maximum(partner, 0)], None)
    )
    pd.testing.assert_frame_equal(pred.var, a.var.iloc[gene_idx])
    np.testing.assert_array_equal(pred.obsm["spatial"], b.obsm["spatial"])
    assert pred.uns["hiref_transfer"]["layer"] == ("counts" if layer else "")


def test_transfer_of_a_csr_array_and_unmatched_rows_with_nan_in_the_source():
    a, b, X = _pair(20, 25, "csr", np.float64, layer=False)
    X = X.toarray()
    X[:, 0] = np.nan  # every source row, row 0 (what unmatched cells point at) included
    a.X = sp.csr_array(X)
    pred = hr.tl.transfer(a, b)
    unmatched = ~pred.obs["hiref_matched"].to_numpy()
    assert unmatched.sum() == 5
    assert isinstance(pred.X, sp.csr_matrix)
    assert pred.X[unmatched].nnz == 0
    assert np.isnan(pred.X[~unmatched].toarray()[:, 0]).all()


def test_sparse_transfer_allocates_about_one_output():
    """Peak memory of a sparse transfer stays near the output's size (it was 2.08 times as large).

    40 entries a cell, so that the output, not the per-cell ``.obs`` bookkeeping, dominates.
    """
    rng = np.random.default_rng(0)
    n, g = 100_000, 200
    X = sp.random(n, g, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    a = ad.AnnData(X=X, obs=pd.DataFrame(index=np.arange(n).astype(str)))
    b = ad.AnnData(X=np.zeros((n, 1), dtype=np.float32), obs=pd.DataFrame(index=np.arange(n).astype(str)))
    hr.tl.store_matching(a, b, rng.permutation(n))
    tracemalloc.start()
    try:
        pred = hr.tl.transfer(a, b, spatial_key=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = pred.X.data.nbytes + pred.X.indices.nbytes + pred.X.indptr.nbytes
    assert pred.X.nnz == X.nnz
    assert peak < 1.6 * out, f"peak {peak / 1e6:.0f} MB for an output of {out / 1e6:.0f} MB"


@pytest.mark.parametrize("size", [2**31 - 1, 2**31])
def test_index_dtype_is_the_one_scipy_gives_at_the_int32_limit(size):
    # scipy's own choice for an empty CSR matrix with `size` columns (no entries allocated).
    empty = sp.csr_matrix((np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(2, dtype=np.int64)), shape=(1, size))
    assert _transfer._index_dtype(3, size, 5) == empty.indices.dtype
