from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import hiref as hr


@pytest.fixture
def aligned(slices):
    a, b = slices  # 500 and 450 cells: 50 cells of `a` stay unmatched
    hr.tl.align(a, b, use_rep="spatial", leaf_size=64, progress=False)
    return a, b


def test_coupling_is_the_stored_matching(aligned):
    a, b = aligned
    P = hr.get.coupling(a, b)
    perm = hr.get.matching(a, b).perm
    assert sp.issparse(P)
    assert P.format == "csr"
    assert P.shape == (a.n_obs, b.n_obs)
    assert set(np.unique(P.data)) == {1.0}
    rows, cols = P.nonzero()
    assert np.array_equal(cols, perm[rows])
    assert np.array_equal(np.sort(rows), np.flatnonzero(perm >= 0))
    row_counts = np.asarray(P.sum(1)).ravel()
    assert np.array_equal(row_counts, (perm >= 0).astype(float))  # unmatched rows empty
    assert np.asarray(P.sum(0)).max() == 1
    assert (hr.get.coupling(b, a) != P.T).nnz == 0


def test_coupling_normalized_sums_to_one(aligned):
    a, b = aligned
    P = hr.get.coupling(a, b)
    Q = hr.get.coupling(a, b, normalize=True, dtype=np.float64)
    assert Q.sum() == pytest.approx(1.0)
    assert np.array_equal(Q.nonzero()[1], P.nonzero()[1])
    assert np.allclose(Q.data, 1 / P.nnz)


@pytest.mark.parametrize("form", ["csr", "coo", "dense", "bool", "perm"])
def test_round_trip_align_coupling_store(aligned, form):
    a, b = aligned
    P = hr.get.coupling(a, b)
    perm = hr.get.matching(a, b).perm
    given = {
        "csr": P,
        "coo": P.tocoo(),
        "dense": P.toarray(),
        "bool": P.toarray().astype(bool),
        "perm": perm.astype(np.int32),
    }[form]
    hr.tl.store_matching(a, b, given, key_added="copy")
    assert np.array_equal(hr.get.matching(a, b, key="copy").perm, perm)
    assert np.array_equal(hr.get.matching(b, a, key="copy").perm, hr.get.matching(b, a).perm)
    assert (hr.get.coupling(a, b, key="copy") != P).nnz == 0
    assert a.obs["copy_match"].astype(object).equals(a.obs["hiref_match"].astype(object))
    assert np.allclose(a.obsm["copy_partner_spatial"], a.obsm["hiref_partner_spatial"], equal_nan=True)


def test_stored_matching_feeds_transfer_and_plots(aligned):
    a, b = aligned
    perm = hr.get.matching(a, b).perm
    hr.tl.store_matching(a, b, perm, key_added="mine")
    ours = hr.tl.transfer(a, b, key="hiref", genes=["gene0"], obs="region")
    theirs = hr.tl.transfer(a, b, key="mine", genes=["gene0"], obs="region")
    dense = [np.asarray(x.todense() if sp.issparse(x) else x) for x in (ours.X, theirs.X)]
    assert np.allclose(*dense, equal_nan=True)
    assert ours.obs["region"].astype(object).equals(theirs.obs["region"].astype(object))
    ax = hr.pl.alignment(a, b, key="mine", n_lines=20, show=False)
    assert "450 matched pairs" in ax.get_title()


def test_store_a_reversed_matching_by_hand(slices):
    a, b = slices
    n = b.n_obs
    perm = np.full(a.n_obs, -1)
    perm[:n] = np.arange(n)[::-1]
    hr.tl.store_matching(a, b, perm, key_added="rev", spatial_key=None)
    assert a.uns["rev"]["n_matched"] == n
    assert a.obs["rev_match"].iloc[0] == b.obs_names[n - 1]
    assert a.obs["rev_match"].iloc[n:].isna().all()
    assert b.obs["rev_match"].iloc[0] == a.obs_names[n - 1]
    assert "rev_partner_spatial" not in a.obsm
    assert np.isnan(a.uns["rev"]["cost"])


@pytest.mark.parametrize(
    ("coupling", "error", "match"),
    [
        (lambda n1, n2: np.ones((n1, n2)), ValueError, "several partners"),
        (lambda n1, n2: 0.5 * np.eye(n1, n2), ValueError, "all be 1"),
        (lambda n1, n2: sp.eye(n1 + 1, n2, format="csr"), ValueError, "shape"),
        (lambda n1, n2: np.zeros(n1, dtype=np.int64) , ValueError, "several cells"),
        (lambda n1, n2: np.full(n1, n2, dtype=np.int64), ValueError, r"\[-1, "),
        (lambda n1, n2: np.arange(n1 - 1), ValueError, "entries"),
        (lambda n1, n2: np.arange(n1, dtype=float), TypeError, "integer positions"),
        (lambda n1, n2: np.zeros((2, 2, 2)), ValueError, "dimensions"),
        (lambda n1, n2: sp.csr_matrix(np.vstack([np.eye(1, n2), np.eye(1, n2), np.zeros((n1 - 2, n2))])), ValueError,
         "column"),
    ],
)  # fmt: skip
def test_store_rejects_non_one_to_one(slices, coupling, error, match):
    a, b = slices
    before_a, before_b = set(a.uns), set(b.uns)
    with pytest.raises(error, match=match) as info:
        hr.tl.store_matching(a, b, coupling(a.n_obs, b.n_obs), key_added="bad")
    assert "`coupling`" in str(info.value)
    assert set(a.uns) == before_a
    assert set(b.uns) == before_b
    assert "bad_match" not in a.obs
    assert "bad_match" not in b.obs


def test_store_refuses_foreign_key_and_copy_leaves_inputs(slices):
    a, b = slices
    a.uns["taken"] = {"something": 1}
    perm = np.arange(b.n_obs)
    perm = np.concatenate([perm, -np.ones(a.n_obs - b.n_obs, dtype=np.int64)])
    with pytest.raises(ValueError, match="`key_added`='taken'"):
        hr.tl.store_matching(a, b, perm, key_added="taken")
    a2, b2 = hr.tl.store_matching(a, b, perm, key_added="k", copy=True)
    assert "k" not in a.uns
    assert "k" in a2.uns
    assert np.array_equal(hr.get.matching(a2, b2, key="k").perm, perm)


@pytest.mark.filterwarnings("ignore:Writing zarr v2:UserWarning")
@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_stored_matching_survives_writing(slices, tmp_path, fmt):
    import anndata as ad

    a, b = slices
    rng = np.random.default_rng(0)
    perm = np.full(a.n_obs, -1)
    perm[rng.choice(a.n_obs, b.n_obs, replace=False)] = rng.permutation(b.n_obs)
    hr.tl.store_matching(a, b, perm, key_added="stored")
    paths = [tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"]
    for obj, path in zip((a, b), paths, strict=True):
        getattr(obj, f"write_{fmt}")(path)
    a2, b2 = (getattr(ad, f"read_{fmt}")(path) for path in paths)
    assert np.array_equal(hr.get.matching(a2, b2, key="stored").perm, perm)
    assert (hr.get.coupling(a2, b2, key="stored") != hr.get.coupling(a, b, key="stored")).nnz == 0
