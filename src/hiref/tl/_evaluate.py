"""``hr.tl.cosine_similarity``: the paper's evaluation of a transfer on binned expression."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hiref._anndata import check_adata, check_in_memory, check_var_names, coordinates
from hiref._docs import DOC, doc_params

from ._bin import bin_spatial, spatial_extent
from ._transfer import TRANSFER_KEY

if TYPE_CHECKING:
    from anndata import AnnData


def _matched(adata: AnnData) -> np.ndarray | None:
    info = adata.uns.get(TRANSFER_KEY)
    if isinstance(info, dict) and info.get("matched_key") in adata.obs:
        return adata.obs[info["matched_key"]].to_numpy(dtype=bool)
    return None


@doc_params(**DOC)
def cosine_similarity(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    genes: str | Sequence[str],
    bins: int | tuple[int, int] = 75,
    extent: Sequence[float] | None = None,
    layer: str | None = None,
    spatial_key: str = "spatial",
) -> pd.DataFrame:
    """Cosine similarity of predicted and true expression, per gene, on a shared spatial grid.

    Both objects are binned on one grid (:func:`hiref.tl.bin_spatial`; by default spanning both)
    and, for every gene, the vectors of bin means are compared (empty bins count as 0). This is
    the HiRef paper's MERFISH evaluation (75 x 75 bins). Cells of a transfer that had no
    partner are left out of the prediction's bins.

    Parameters
    ----------
    adata_pred
        Predicted expression, e.g. from :func:`hiref.tl.transfer`, with coordinates.
    adata_true
        Measured expression of the same tissue, with coordinates in the same frame.
    genes
        Genes to evaluate; present in both.
    bins
        Bins along x and y.
    extent
        ``(xmin, xmax, ymin, ymax)`` of the grid; default: spanning both objects.
    layer
        ``.layers`` key of ``adata_true`` to compare with instead of ``.X``.
    spatial_key
        ``.obsm`` key of the coordinates in both objects.

    Returns
    -------
    DataFrame indexed by gene with columns ``cosine_similarity``, ``n_bins_pred`` and
    ``n_bins_true`` (non-empty bins). Writes nothing.
    """
    check_adata(adata_pred, "adata_pred")
    check_in_memory(adata_pred, "adata_pred")
    check_adata(adata_true, "adata_true")
    check_in_memory(adata_true, "adata_true")
    gene_list = [genes] if isinstance(genes, str) else list(genes)
    for name, adata in (("adata_pred", adata_pred), ("adata_true", adata_true)):
        missing = [g for g in gene_list if g not in adata.var_names]
        if missing:
            msg = f"`genes` not in {name}.var_names: {missing[:10]}."
            raise KeyError(msg)
    check_var_names(adata_pred, "adata_pred")
    check_var_names(adata_true, "adata_true")
    coords_pred = coordinates(adata_pred, spatial_key, "adata_pred", hint=" Pass `spatial_key=`.")
    coords_true = coordinates(adata_true, spatial_key, "adata_true", hint=" Pass `spatial_key=`.")
    if extent is None:
        extent = spatial_extent(coords_pred, coords_true)
    pred = bin_spatial(
        adata_pred, bins=bins, extent=extent, genes=gene_list, spatial_key=spatial_key, mask=_matched(adata_pred)
    )
    true = bin_spatial(adata_true, bins=bins, extent=extent, genes=gene_list, layer=layer, spatial_key=spatial_key)
    names = pred.obs_names.union(true.obs_names)
    P = pd.DataFrame(pred.X, index=pred.obs_names, columns=gene_list).reindex(names, fill_value=0.0).to_numpy()
    T = pd.DataFrame(true.X, index=true.obs_names, columns=gene_list).reindex(names, fill_value=0.0).to_numpy()
    norms = np.linalg.norm(P, axis=0) * np.linalg.norm(T, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, (P * T).sum(0) / norms, np.nan)
    return pd.DataFrame(
        {"cosine_similarity": cosine, "n_bins_pred": pred.n_obs, "n_bins_true": true.n_obs},
        index=pd.Index(gene_list, name="gene"),
    )
