"""``hr.tl.bin_spatial`` by hand: rectangular grids, masks, cells outside, genes, layers, errors."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hiref as hr


@pytest.fixture
def cells():
    """Six cells on the box [0, 3] x [0, 2], genes g1..g3."""
    X = np.array([[1, 0, 2], [3, 1, 0], [5, 2, 2], [7, 3, 0], [9, 4, 2], [11, 5, 0]], dtype=float)
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=[f"c{i}" for i in range(6)]),
                       var=pd.DataFrame({"kind": ["a", "b", "c"]}, index=["g1", "g2", "g3"]))  # fmt: skip
    adata.obsm["spatial"] = np.array([[0.5, 0.5], [0.6, 1.5], [1.5, 0.2], [2.5, 1.9], [2.9, 1.1], [0.1, 0.4]])
    adata.layers["double"] = 2 * X
    return adata


def test_rectangular_grid_by_hand(cells):
    binned = hr.tl.bin_spatial(cells, bins=(3, 2), extent=(0, 3, 0, 2))
    # bins (i, j) = (column, row): c0, c5 -> (0, 0); c1 -> (0, 1); c2 -> (1, 0); c3, c4 -> (2, 1)
    assert binned.obs_names.tolist() == ["0_0", "0_1", "1_0", "2_1"]
    assert binned.obs["bin_x"].tolist() == [0, 0, 1, 2]
    assert binned.obs["bin_y"].tolist() == [0, 1, 0, 1]
    assert binned.obs["n_cells"].tolist() == [2, 1, 1, 2]
    np.testing.assert_allclose(binned.X, [[6, 2.5, 1], [3, 1, 0], [5, 2, 2], [8, 3.5, 1]])
    np.testing.assert_allclose(binned.obsm["spatial"], [[0.5, 0.5], [0.5, 1.5], [1.5, 0.5], [2.5, 1.5]])
    assert binned.var_names.tolist() == ["g1", "g2", "g3"]
    assert binned.var["kind"].tolist() == ["a", "b", "c"]
    grid = binned.uns["bin_spatial"]
    assert grid["bins"].tolist() == [3, 2]
    assert grid["extent"].tolist() == [0, 3, 0, 2]
    assert grid["spatial_key"] == "spatial"
    as_ints = hr.tl.bin_spatial(cells, bins=[np.int64(3), 2], extent=(0, 3, 0, 2))
    np.testing.assert_array_equal(as_ints.X, binned.X)


def test_default_extent_is_the_cells_bounds(cells):
    binned = hr.tl.bin_spatial(cells, bins=1)
    assert binned.obs["n_cells"].tolist() == [6]  # the right- and top-most cells are inside
    np.testing.assert_allclose(binned.X, [cells.X.mean(0)])
    lo, hi = cells.obsm["spatial"].min(0), cells.obsm["spatial"].max(0)
    np.testing.assert_allclose(binned.obsm["spatial"], [(lo + hi) / 2], rtol=1e-6)


def test_cells_outside_the_extent_and_masked_cells_are_left_out(cells):
    binned = hr.tl.bin_spatial(cells, bins=1, extent=(0.2, 2.9, 0.3, 1.9))
    # left out: c5 (x < 0.2), c2 (y < 0.3), c3 (y = 1.9, the open upper edge), c4 (x = 2.9)
    assert binned.obs["n_cells"].tolist() == [2]
    np.testing.assert_allclose(binned.X, [cells.X[[0, 1]].mean(0)])
    mask = np.array([True, False, True, False, False, True])
    masked = hr.tl.bin_spatial(cells, bins=1, extent=(0, 3, 0, 2), mask=mask)
    np.testing.assert_allclose(masked.X, [cells.X[mask].mean(0)])
    with pytest.raises(ValueError, match=r"^`mask` must be a boolean array of length 6, got shape \(5,\)\.$"):
        hr.tl.bin_spatial(cells, mask=mask[:5])


def test_genes_layer_key_and_sparse(cells):
    one = hr.tl.bin_spatial(cells, bins=1, genes="g2", extent=(0, 3, 0, 2))
    assert one.var_names.tolist() == ["g2"]
    np.testing.assert_allclose(one.X, [[2.5]])
    two = hr.tl.bin_spatial(cells, bins=1, genes=["g3", "g1"], layer="double", extent=(0, 3, 0, 2))
    np.testing.assert_allclose(two.X, [[2 * 1.0, 2 * 6.0]])
    cells.obsm["xy"] = cells.obsm["spatial"]
    cells.X = sp.csr_matrix(cells.X)
    other = hr.tl.bin_spatial(cells, bins=1, spatial_key="xy", extent=(0, 3, 0, 2))
    np.testing.assert_allclose(other.X, [[6.0, 2.5, 1.0]])
    assert other.uns["bin_spatial"]["spatial_key"] == "xy"
    with pytest.raises(KeyError, match=r"`genes` not in adata.var_names: \['g9'\]"):
        hr.tl.bin_spatial(cells, genes=["g1", "g9"])


@pytest.mark.parametrize(
    ("bins", "error"),
    [(True, TypeError), ("3", TypeError), (2.0, TypeError), ((2, 2.0), TypeError), ((2, True), TypeError),
     ((2, 2, 2), ValueError), ((2, 0), ValueError), (0, ValueError), (-1, ValueError), ({"a": 1}, TypeError)],
)  # fmt: skip
def test_bad_bins(cells, bins, error):
    message = f"`bins` must be a positive int or a pair of them, got {bins!r}."
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        hr.tl.bin_spatial(cells, bins=bins)


@pytest.mark.parametrize(
    "extent", [(0, 1, 0), (1, 1, 0, 1), (0, 1, 1, 1), (0, 1, 1, 0), (0, np.inf, 0, 1), ("a", 1, 0, 1), None, 3]
)
def test_bad_extent(cells, extent):
    if extent is None:  # None is the default: the cells' bounds
        assert hr.tl.bin_spatial(cells, extent=extent).n_obs > 0
        return
    message = f"`extent` must be (xmin, xmax, ymin, ymax) with finite xmin < xmax and ymin < ymax, got {extent!r}."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        hr.tl.bin_spatial(cells, extent=extent)


def test_other_errors(cells, tmp_path):
    with pytest.raises(TypeError, match="`adata` must be an AnnData"):
        hr.tl.bin_spatial(cells.X)
    with pytest.raises(KeyError, match=r"`adata` has no .obsm\['xy'\].*Pass `spatial_key=`"):
        hr.tl.bin_spatial(cells, spatial_key="xy")
    cells.write_h5ad(tmp_path / "c.h5ad")
    backed = ad.read_h5ad(tmp_path / "c.h5ad", backed="r")
    with pytest.raises(ValueError, match="`adata` is backed by"):
        hr.tl.bin_spatial(backed)
    backed.file.close()
    dup = cells.copy()
    dup.var_names = ["g1", "g1", "g3"]
    with pytest.raises(ValueError, match="`adata` has duplicated var_names"):
        hr.tl.bin_spatial(dup, genes=["g3"])


def test_default_grid_is_75_a_side(cells):
    # Cells 0.0132 apart on a unit-wide box share a bin of 75 (0.0132 * 75 < 1), not one of 76.
    cells.obsm["spatial"] = np.array([[0.0, 0.0], [0.0132, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0], [0.0, 1.0]])
    assert hr.tl.bin_spatial(cells).n_obs == 5
    assert hr.tl.bin_spatial(cells, bins=76).n_obs == 6
    assert hr.tl.bin_spatial(cells).uns["bin_spatial"]["bins"].tolist() == [75, 75]


def test_missing_genes_are_named_ten_at_most(cells):
    missing = [f"x{i}" for i in range(11)]
    with pytest.raises(KeyError) as err:
        hr.tl.bin_spatial(cells, genes=["g1", *missing])
    assert err.value.args[0] == f"`genes` not in adata.var_names: {missing[:10]}."


def test_missing_coordinates_and_layer_get_whole_messages(cells):
    with pytest.raises(KeyError) as err:
        hr.tl.bin_spatial(cells, spatial_key="xy")
    assert err.value.args[0] == "`adata` has no .obsm['xy'] (available: ['spatial']). Pass `spatial_key=`."
    with pytest.raises(KeyError) as err:
        hr.tl.bin_spatial(cells, layer="counts")
    assert err.value.args[0] == "`adata` has no .layers['counts'] (available: ['double'])."
