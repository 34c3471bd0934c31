"""``hr.tl.transfer`` on tiny hand-made pairs whose every transferred value is known."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hiref as hr


def _pair():
    """A source of 3 cells, 3 genes, and a target of 4 cells: t0 <- s2, t2 <- s0, t3 <- s1, t1 unmatched."""
    source = ad.AnnData(
        X=np.arange(9, dtype=np.float32).reshape(3, 3),
        obs=pd.DataFrame(index=["s0", "s1", "s2"]),
        var=pd.DataFrame(index=["g0", "g1", "g2"]),
    )
    target = ad.AnnData(X=np.zeros((4, 3)), obs=pd.DataFrame(index=["t0", "t1", "t2", "t3"]))
    hr.tl.store_matching(source, target, np.array([2, 3, 0]), key_added="hand")
    return source, target


@pytest.mark.parametrize(("argument", "value"), [("genes", [1]), ("genes", ["g0", None]), ("obs", [("a",)])])
def test_names_that_are_not_strings_are_refused_by_name(argument, value):
    source, target = _pair()
    message = f"`{argument}` must be a string or a list of strings, got {value!r}."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        hr.tl.transfer(source, target, key="hand", **{argument: value})


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("genes", [None, ["g2", "g0"], ["g2", "g0", "g1"]])
def test_partners_with_empty_rows_between_them(genes, sparse):
    # Partner rows that are empty (s1), of one entry (s3) or missing (t1, t4 unmatched) sit between others.
    X = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 4.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    source = ad.AnnData(X=sp.csr_matrix(X) if sparse else X, obs=pd.DataFrame(index=["s0", "s1", "s2", "s3"]),
                        var=pd.DataFrame(index=["g0", "g1", "g2"]))  # fmt: skip
    target = ad.AnnData(X=np.zeros((6, 3)), obs=pd.DataFrame(index=[f"t{i}" for i in range(6)]))
    # t0 <- s2, t2 <- s1 (empty), t3 <- s3, t5 <- s0.
    hr.tl.store_matching(source, target, np.array([5, 2, 0, 3]), key_added="hand")
    pred = hr.tl.transfer(source, target, key="hand", genes=genes)
    columns = [0, 1, 2] if genes is None else [int(g[1]) for g in genes]
    # Unmatched cells: empty rows if sparse (float32 kept), NaN rows if dense (float64 then).
    expected = np.full((6, len(columns)), 0.0 if sparse else np.nan)
    for t, s in ((0, 2), (2, 1), (3, 3), (5, 0)):
        expected[t] = X[s, columns]
    assert sp.issparse(pred.X) == sparse
    assert pred.X.dtype == (np.float32 if sparse else np.float64)
    np.testing.assert_array_equal(pred.X.toarray() if sparse else pred.X, expected)
    if sparse:
        assert pred.X.has_canonical_format
    assert pred.obs["hand_matched"].tolist() == [True, False, True, True, False, True]
    assert pred.obs["hand_source"].iloc[[0, 2, 3, 5]].tolist() == ["s2", "s1", "s3", "s0"]
    assert pred.obs["hand_source"].iloc[[1, 4]].isna().all()
