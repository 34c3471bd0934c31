"""``hr.tl.cosine_similarity``: the paper's evaluation of a transfer on binned expression."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hiref._anndata import check_adata, check_in_memory, check_var_names, coordinates, spatial_extent
from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY
from hiref.get._matching import partners
from hiref.get._transfer import matched_mask

from ._bin import bin_spatial

if TYPE_CHECKING:
    from anndata import AnnData


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
        adata_pred, bins=bins, extent=extent, genes=gene_list, spatial_key=spatial_key, mask=matched_mask(adata_pred)
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


@doc_params(**DOC)
def label_agreement(
    adata_from: AnnData,
    adata_to: AnnData,
    *,
    obs: str,
    key: str = ALIGN_KEY,
    obs_to: str | None = None,
    na: str | Sequence[str] | None = "NA",
) -> pd.DataFrame:
    """Share of cells whose partner carries the same label: the label-transfer score of an alignment.

    For every cell of ``adata_to``, the label of its partner in ``adata_from`` (stored by
    :func:`hiref.tl.align` under ``key``) is compared with its own. Cells whose own label is
    ``na`` are left out; cells without a partner count as disagreeing (a one-to-one matching
    of a smaller ``adata_from`` leaves some cells of ``adata_to`` without one). On the DLPFC
    pair (layers of adjacent Visium sections) this is the layer accuracy that PASTE, PASTE2,
    SLAT and moscot report.

    Parameters
    ----------
    adata_from
        The object whose labels are carried over (the ``adata1`` of the alignment, or ``adata2``).
    adata_to
        The object whose labels are the truth.
    obs
        ``.obs`` column of the labels (in ``adata_from``, and in ``adata_to`` unless ``obs_to``).
    key
        The ``key_added`` of the alignment.
    obs_to
        ``.obs`` column of ``adata_to``'s labels, if it differs from ``obs``.
    na
        Label(s) of ``adata_to`` left out of the score (e.g. unannotated spots); ``None`` keeps all.

    Returns
    -------
    DataFrame indexed by label (``adata_to``'s, sorted) followed by ``"overall"``, with columns
    ``agreement`` (share of the cells with that label whose partner has it too), ``n_cells``
    and ``n_matched``. Writes nothing.

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=400, seed=0)
    >>> hr.tl.align(a, b, progress=False)
    >>> bool(hr.tl.label_agreement(a, b, obs="region").loc["overall", "agreement"] > 0.5)
    True
    """
    check_adata(adata_from, "adata_from")
    check_adata(adata_to, "adata_to")
    obs_to = obs if obs_to is None else obs_to
    for name, adata, column in (("adata_from", adata_from, obs), ("adata_to", adata_to, obs_to)):
        if column not in adata.obs:
            msg = f"`{name}` has no .obs[{column!r}] (columns: {list(adata.obs.columns)[:20]}); pass `obs=`."
            raise KeyError(msg)
    partner = partners(adata_to, adata_from, key, name="adata_to", other_name="adata_from")
    truth = adata_to.obs[obs_to].astype(str).to_numpy()
    given = adata_from.obs[obs].astype(str).to_numpy()
    matched = partner >= 0
    same = matched & (given[np.maximum(partner, 0)] == truth)
    skip = {na} if isinstance(na, str) else set(na or ())
    keep = ~np.isin(truth, list(skip))
    rows = {}
    for label in [*sorted(set(truth[keep])), "overall"]:
        sel = keep if label == "overall" else keep & (truth == label)
        n = int(sel.sum())
        rows[label] = {"agreement": float(same[sel].mean()) if n else np.nan, "n_cells": n,
                       "n_matched": int(matched[sel].sum())}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(obs_to)
