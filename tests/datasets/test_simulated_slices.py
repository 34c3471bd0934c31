from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hiref.datasets._simulated_slices as sim


def _digest(adata) -> str:
    h = hashlib.sha256()
    for arr in (adata.X.data, adata.X.indices, adata.X.indptr, adata.obsm["spatial"]):
        h.update(str(arr.dtype).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    for col in adata.obs.columns:
        h.update("|".join(map(str, adata.obs[col])).encode())
    h.update("|".join(adata.obs_names).encode())
    h.update("|".join(adata.var_names).encode())
    return h.hexdigest()[:16]


def _assert_same(a, b):
    assert isinstance(a.X, sp.csr_matrix)
    assert isinstance(b.X, sp.csr_matrix)
    for attr in ("data", "indices", "indptr"):
        x, y = getattr(a.X, attr), getattr(b.X, attr)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert a.X.shape == b.X.shape
    pd.testing.assert_frame_equal(a.obs, b.obs, check_exact=True)
    pd.testing.assert_frame_equal(a.var, b.var, check_exact=True)
    assert list(a.obsm) == list(b.obsm)
    for key in a.obsm:
        np.testing.assert_array_equal(a.obsm[key], b.obsm[key])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_obs": 300, "n_genes": 40, "missing": 0.0, "seed": 0},
        {"n_obs": 257, "n_genes": 7, "missing": 0.3, "seed": 3},
        {"n_obs": 50, "n_genes": 1, "n_regions": 3, "missing": 0.5, "seed": 1},
    ],
)
def test_chunked_equals_unchunked(monkeypatch, kwargs):
    monkeypatch.setattr(sim, "_CHUNK_ENTRIES", 10**9)
    whole = sim.simulate_slices(**kwargs)
    for entries in (1, 7, 100):
        monkeypatch.setattr(sim, "_CHUNK_ENTRIES", entries)
        chunked = sim.simulate_slices(**kwargs)
        _assert_same(whole[0], chunked[0])
        _assert_same(whole[1], chunked[1])


def test_values_pinned():
    """The slices of a seed stay what they were when drawn as one dense array (plots and tests rely on them)."""
    a, b = sim.simulate_slices(n_obs=400, n_genes=25, missing=0.2, seed=7)
    assert (_digest(a), _digest(b)) == ("e3dba85af10a609f", "292fbd01eeb1abe9")


def test_layout():
    a, b = sim.simulate_slices(n_obs=200, n_genes=12, missing=0.25, seed=2)
    assert (a.n_obs, b.n_obs) == (200, 150)
    for adata in (a, b):
        assert adata.X.dtype == np.float32
        assert adata.X.indices.dtype == adata.X.indptr.dtype == np.int32
        assert adata.X.has_sorted_indices
        assert (adata.X.data > 0).all()
        assert adata.obs_names.is_unique
        assert isinstance(adata.obs["region"].dtype, pd.CategoricalDtype)
    assert b.obs["true_match"].isin(a.obs_names).all()
    np.testing.assert_array_equal(b.obs_names.str.removeprefix("b_"), b.obs["true_match"])


def test_mean_count_sets_the_depth():
    import hiref as hr

    a, _ = hr.datasets.simulate_slices(n_obs=3000, n_genes=200, mean_count=0.5, seed=2)
    dense, _ = hr.datasets.simulate_slices(n_obs=3000, n_genes=200, seed=2)
    per_gene = a.X.sum() / (a.n_obs * a.n_vars)
    assert 0.3 < per_gene < 0.8  # gamma profiles of 6 regions: the mean is near, not at, 0.5
    assert a.X.nnz < dense.X.nnz / 2  # sparse counts
    with pytest.raises(ValueError, match="mean_count"):
        hr.datasets.simulate_slices(n_obs=10, mean_count=0)
