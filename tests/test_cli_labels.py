"""``hiref labels``: the API's result in a file, and errors as one line with exit status 2."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref.cli import main


@pytest.fixture
def aligned(tmp_path):
    a, b = hr.datasets.simulate_slices(n_obs=300, seed=1)
    a.write_h5ad(tmp_path / "a.h5ad")
    b.write_h5ad(tmp_path / "b.h5ad")
    files = [str(tmp_path / name) for name in ("a.h5ad", "b.h5ad", "A.h5ad", "B.h5ad")]
    assert main(["align", files[0], files[1], "--out", files[2], "--out-b", files[3]]) == 0
    return tmp_path


def test_writes_what_the_api_computes(aligned, capsys):
    out = aligned / "L.h5ad"
    assert main(["labels", str(aligned / "A.h5ad"), str(aligned / "B.h5ad"), "--obs", "region", "--out", str(out),
                 "--n-neighbors", "5"]) == 0  # fmt: skip
    got = ad.read_h5ad(out)
    a, b = ad.read_h5ad(aligned / "A.h5ad"), ad.read_h5ad(aligned / "B.h5ad")
    hr.tl.transfer_labels(a, b, "region", n_neighbors=5)
    pd.testing.assert_series_equal(got.obs["hiref_region"], b.obs["hiref_region"])
    np.testing.assert_array_equal(got.obs["hiref_region_agreement"], b.obs["hiref_region_agreement"])
    assert got.uns["hiref_region"]["n_neighbors"] == 5
    # The rest of the target is what was read.
    assert list(got.obs.columns) == [*ad.read_h5ad(aligned / "B.h5ad").obs.columns, "hiref_region",
                                     "hiref_region_agreement"]  # fmt: skip
    printed = capsys.readouterr().out
    assert f"{(b.obs['hiref_region_agreement'] == 1).mean():.0%}" in printed
    assert f"expression weight {b.uns['hiref_region']['expression_weight']:g} (5-fold cross-validation" in printed


def test_expression_weight_is_passed_on(aligned):
    out = aligned / "L.h5ad"
    assert main(["labels", str(aligned / "A.h5ad"), str(aligned / "B.h5ad"), "--obs", "region", "--out", str(out),
                 "--expression-weight", "0"]) == 0  # fmt: skip
    got = ad.read_h5ad(out)
    a, b = ad.read_h5ad(aligned / "A.h5ad"), ad.read_h5ad(aligned / "B.h5ad")
    hr.tl.transfer_labels(a, b, "region", expression_weight=0)
    pd.testing.assert_series_equal(got.obs["hiref_region"], b.obs["hiref_region"])
    assert got.uns["hiref_region"]["expression_weight"] == 0


def test_key_added_renames(aligned):
    out = aligned / "L.h5ad"
    assert main(["labels", str(aligned / "A.h5ad"), str(aligned / "B.h5ad"), "--obs", "region", "--out", str(out),
                 "--key-added", "carried"]) == 0  # fmt: skip
    got = ad.read_h5ad(out)
    assert {"carried", "carried_agreement"} <= set(got.obs.columns)
    assert "hiref_region" not in got.obs


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--obs", "nope"], r"`obs`='nope' is not a column of adata_source\.obs .*\(adata_source = .*A\.h5ad\)"),
        (["--obs", "region", "--key", "other"], r"has no alignment under key 'other'"),
        (["--obs", "region", "--n-neighbors", "0"], r"`n_neighbors`"),
        (["--obs", "region", "--expression-weight", "-1"], r"`expression_weight` must be 'auto' or a finite"),
    ],
)
def test_errors_exit_2_and_write_nothing(aligned, capsys, extra, message):
    out = aligned / "L.h5ad"
    code = main(["labels", str(aligned / "A.h5ad"), str(aligned / "B.h5ad"), "--out", str(out), *extra])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiref labels: error:")
    assert len(err.splitlines()) == 1
    assert re.search(message, err)
    assert not out.exists()
