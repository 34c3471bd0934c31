"""Readers of what :func:`hiref.tl.transfer` and :func:`hiref.tl.bin_spatial` store on the AnnData they return."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hiref._keys import BinKeys, TransferKeys

if TYPE_CHECKING:
    from anndata import AnnData


def matched_mask(adata: AnnData) -> np.ndarray | None:
    """Which cells of a transfer's result had a partner, or None if ``adata`` is not such a result."""
    info = adata.uns.get(TransferKeys.uns)
    if isinstance(info, dict) and info.get("matched_key") in adata.obs:
        return adata.obs[info["matched_key"]].to_numpy(dtype=bool)
    return None


def bin_grid(binned: AnnData, gene: str) -> np.ndarray:
    """The bin means of ``gene`` of a :func:`hiref.tl.bin_spatial` result as an image (rows: y), NaN where empty."""
    nx, ny = (int(v) for v in binned.uns[BinKeys.uns]["bins"])
    image = np.full((ny, nx), np.nan)
    values = np.asarray(binned[:, gene].X).ravel()
    image[binned.obs[BinKeys.bin_y].to_numpy(), binned.obs[BinKeys.bin_x].to_numpy()] = values
    return image
