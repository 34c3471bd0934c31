"""Readers of a transfer's and a binning's result (``hiref.get._transfer``), on hand-made inputs."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

import hiref as hr
from hiref.get._transfer import bin_grid, matched_mask


def test_bin_grid_puts_every_bin_mean_at_its_row_and_column():
    # 4 cells on a 3 x 2 grid (x in [0, 3), y in [0, 2)): bins (0, 0), (2, 0) twice, (1, 1).
    cells = ad.AnnData(
        X=np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]]),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(4)]),
        var=pd.DataFrame(index=["g0", "g1"]),
    )
    cells.obsm["spatial"] = np.array([[0.5, 0.5], [2.5, 0.2], [2.1, 0.9], [1.5, 1.5]])
    binned = hr.tl.bin_spatial(cells, bins=(3, 2), extent=(0, 3, 0, 2))
    for gene, column in (("g0", 0), ("g1", 1)):
        expected = np.full((2, 3), np.nan)  # rows: y, columns: x
        expected[0, 0] = cells.X[0, column]
        expected[0, 2] = cells.X[[1, 2], column].mean()
        expected[1, 1] = cells.X[3, column]
        np.testing.assert_array_equal(bin_grid(binned, gene), expected)


def test_matched_mask_reads_the_transfer_column_and_nothing_else():
    source = ad.AnnData(X=np.eye(3), obs=pd.DataFrame(index=["s0", "s1", "s2"]))
    target = ad.AnnData(X=np.zeros((4, 3)), obs=pd.DataFrame(index=["t0", "t1", "t2", "t3"]))
    # t0 <- s2, t2 <- s0, t3 <- s1; t1 has no partner.
    hr.tl.store_matching(source, target, np.array([2, 3, 0]), key_added="mine")
    pred = hr.tl.transfer(source, target, key="mine")
    np.testing.assert_array_equal(matched_mask(pred), [True, False, True, True])
    assert matched_mask(pred).dtype == bool
    assert matched_mask(target) is None  # not a transfer's result
    pred.obs = pred.obs.drop(columns="mine_matched")
    assert matched_mask(pred) is None  # the record names a column that is gone
