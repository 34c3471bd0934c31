"""``hr.tl.bin_spatial``: average expression on a regular spatial grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hiref._anndata import check_adata, check_in_memory, check_var_names, coordinates, expression, spatial_extent
from hiref._contract import bin_writes, write
from hiref._docs import DOC, doc_params
from hiref._keys import BinKeys
from hiref._params import params_record

if TYPE_CHECKING:
    from anndata import AnnData


def _grid(bins: int | tuple[int, int]) -> tuple[int, int]:
    msg = f"`bins` must be a positive int or a pair of them, got {bins!r}."
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
        pair = (bins, bins)
    elif isinstance(bins, str) or not isinstance(bins, Sequence | np.ndarray):
        raise TypeError(msg)
    else:
        pair = tuple(bins)
    if len(pair) != 2:
        raise ValueError(msg)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(msg)
        if v < 1:
            raise ValueError(msg)
    return int(pair[0]), int(pair[1])


def check_extent(extent: object) -> tuple[float, float, float, float]:
    """``extent`` as four floats, checked to be a finite, non-empty box."""
    msg = f"`extent` must be (xmin, xmax, ymin, ymax) with finite xmin < xmax and ymin < ymax, got {extent!r}."
    try:
        values = tuple(float(v) for v in extent)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise ValueError(msg) from err
    if len(values) != 4 or not all(np.isfinite(values)) or not (values[1] > values[0] and values[3] > values[2]):
        raise ValueError(msg)
    return values  # type: ignore[return-value]


@doc_params(**DOC)
def bin_spatial(
    adata: AnnData,
    *,
    bins: int | tuple[int, int] = 75,
    extent: Sequence[float] | None = None,
    genes: Sequence[str] | None = None,
    layer: str | None = None,
    spatial_key: str = "spatial",
    mask: np.ndarray | None = None,
) -> AnnData:
    """Average expression on a regular grid of spatial bins (the paper's 75 x 75 evaluation).

    Parameters
    ----------
    adata
        Cells with coordinates in ``.obsm[spatial_key]``.
    bins
        Bins along x and y (one int for both).
    extent
        ``(xmin, xmax, ymin, ymax)`` of the grid; default: the cells' bounds. Give two slices
        the same extent to bin them on one grid (cells outside are left out).
    genes
        Genes to keep (default: all).
    {layer}
    spatial_key
        ``.obsm`` key of the coordinates (the first two columns are used).
    mask
        Boolean array of the cells to use (default: all).

    Returns
    -------
    AnnData with one observation per non-empty bin, named ``"{{i}}_{{j}}"`` (column ``i``, row
    ``j``): ``.X`` the mean expression of its cells, ``.obs`` ``bin_x``, ``bin_y``, ``n_cells``,
    ``.obsm["spatial"]`` the bin centres, ``.uns["bin_spatial"]`` the grid (``bins``,
    ``extent``).
    """
    from anndata import AnnData

    check_adata(adata, "adata")
    check_in_memory(adata, "adata")
    nx, ny = _grid(bins)
    coords = coordinates(adata, spatial_key, "adata", hint=" Pass `spatial_key=`.")
    xmin, xmax, ymin, ymax = check_extent(spatial_extent(coords) if extent is None else extent)
    keep = np.ones(adata.n_obs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != (adata.n_obs,):
        msg = f"`mask` must be a boolean array of length {adata.n_obs}, got shape {keep.shape}."
        raise ValueError(msg)
    fx = (coords[:, 0] - xmin) / (xmax - xmin)
    fy = (coords[:, 1] - ymin) / (ymax - ymin)
    inside = keep & (fx >= 0) & (fx < 1) & (fy >= 0) & (fy < 1)
    ix = np.clip((fx * nx).astype(np.int64), 0, nx - 1)
    iy = np.clip((fy * ny).astype(np.int64), 0, ny - 1)
    bin_id = ix * ny + iy
    used, inverse = np.unique(bin_id[inside], return_inverse=True)
    cells = np.flatnonzero(inside)
    counts = np.bincount(inverse, minlength=len(used)).astype(np.float64)
    average = sp.csr_matrix((1.0 / counts[inverse], (inverse, cells)), shape=(len(used), adata.n_obs))

    X = expression(adata, layer, "adata")
    if genes is not None:
        check_var_names(adata, "adata")
        genes = [genes] if isinstance(genes, str) else list(genes)
    gene_idx = np.arange(adata.n_vars) if genes is None else adata.var_names.get_indexer(list(genes))
    if (gene_idx < 0).any():
        missing = [g for g, i in zip(genes, gene_idx, strict=True) if i < 0]
        msg = f"`genes` not in adata.var_names: {missing[:10]}."
        raise KeyError(msg)
    X = X[:, gene_idx]
    binned = average @ (sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X, dtype=np.float64))
    binned = np.asarray(binned.todense()) if sp.issparse(binned) else np.asarray(binned)
    bx, by = used // ny, used % ny
    out = AnnData(X=binned, obs=pd.DataFrame(index=[f"{i}_{j}" for i, j in zip(bx, by, strict=True)]),
                  var=adata.var.iloc[gene_idx].copy())  # fmt: skip
    centres = np.column_stack([xmin + (bx + 0.5) * (xmax - xmin) / nx, ymin + (by + 0.5) * (ymax - ymin) / ny])
    grid = {"bins": np.array([nx, ny]), "extent": np.array([xmin, xmax, ymin, ymax]), "spatial_key": spatial_key}
    write(
        out, bin_writes(), record=params_record(grid), obsm={BinKeys.spatial: centres},
        obs={BinKeys.bin_x: bx, BinKeys.bin_y: by, BinKeys.n_cells: counts.astype(np.int64)},
    )  # fmt: skip
    return out
