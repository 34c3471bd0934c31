"""``hr.pl.transfer``: predicted against measured expression in space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hiref._anndata import spatial_extent
from hiref._docs import DOC, doc_params
from hiref.get._transfer import bin_grid, matched_mask
from hiref.tl import bin_spatial, cosine_similarity

from ._utils import color_values, colour_scale, save_or_show, spatial, spatial_axes, with_user_kwargs

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


def _panel_size(n: int, size: float | None) -> float:
    return float(np.clip(30_000 / max(n, 1), 0.5, 20.0)) if size is None else size


@doc_params(**DOC)
def transfer(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    genes: str | Sequence[str],
    bins: int | None = None,
    spatial_key: str = "spatial",
    cmap: str = "viridis",
    size: float | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **scatter_kwargs: Any,
) -> list[Axes] | None:
    """Predicted and measured expression side by side, one row per gene, cosine in the title.

    Parameters
    ----------
    adata_pred
        Prediction, e.g. from :func:`hiref.tl.transfer`.
    adata_true
        Measured expression, coordinates in the same frame.
    genes
        Genes to draw (one row each).
    bins
        Draw bin means on a ``bins x bins`` grid shared by both (the paper's view, and the
        grid of the cosine in the title); ``None`` draws cells, and the cosine uses 75 bins.
    spatial_key
        ``.obsm`` key of the coordinates in both objects.
    cmap
        Colour map (one scale per gene, shared by its two panels).
    size
        Marker size of cells.
    {show_save}
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter` when cells are drawn; they win over the
        plot's own settings. The colour scale (cells or bins) runs from 0 to the 99th
        percentile of the values drawn unless ``vmin``/``vmax`` are given; what it clips is
        counted in the colour bar's label.

    Returns
    -------
    The Axes, row by row (predicted, measured), unless shown.
    """
    import matplotlib.pyplot as plt

    gene_list = [genes] if isinstance(genes, str) else list(genes)
    cosine = cosine_similarity(adata_pred, adata_true, genes=gene_list, bins=bins or 75, spatial_key=spatial_key)
    P1, P2 = spatial(adata_pred, spatial_key, "adata_pred"), spatial(adata_true, spatial_key, "adata_true")
    _, axes = plt.subplots(len(gene_list), 2, figsize=(9.0, 4.0 * len(gene_list)), layout="constrained", squeeze=False)
    keep = matched_mask(adata_pred)
    keep = np.ones(adata_pred.n_obs, dtype=bool) if keep is None else keep
    if bins:
        extent = spatial_extent(P1, P2)
        binned = [
            bin_spatial(adata_pred, bins=bins, extent=extent, genes=gene_list, spatial_key=spatial_key, mask=keep),
            bin_spatial(adata_true, bins=bins, extent=extent, genes=gene_list, spatial_key=spatial_key),
        ]
    for row, gene in enumerate(gene_list):
        values = [
            color_values(adata_pred, gene, "adata_pred")[1][keep],
            color_values(adata_true, gene, "adata_true")[1],
        ]
        shown = np.concatenate([bin_grid(b, gene).ravel() for b in binned] if bins else values)
        top = float(np.nanpercentile(shown, 99)) or 1.0
        scale = colour_scale(shown, gene, vmin=scatter_kwargs.get("vmin", 0.0), vmax=scatter_kwargs.get("vmax", top))
        if "vmax" not in scatter_kwargs and scale.note:  # the plot's own 99th percentile
            scale = replace(scale, note=scale.note.replace("at vmin/vmax", "at the 99th percentile"))
        for col, (title, P, vals) in enumerate((("predicted", P1[keep], values[0]), ("measured", P2, values[1]))):
            ax = axes[row, col]
            if bins:
                art = ax.imshow(bin_grid(binned[col], gene), origin="lower", extent=extent, cmap=cmap, vmin=scale.vmin,
                                vmax=scale.vmax, aspect="equal", interpolation="nearest")  # fmt: skip
            else:
                own = {"s": _panel_size(len(P), size), "cmap": cmap, "vmin": scale.vmin, "vmax": scale.vmax,
                       "linewidths": 0, "rasterized": len(P) > 10_000}  # fmt: skip
                art = ax.scatter(*P.T, c=vals, **with_user_kwargs(own, scatter_kwargs, colour_arg="genes"))
            spatial_axes(ax, f"{spatial_key} 1", f"{spatial_key} 2")
            ax.set_title(f"{gene}, {title}")
        scale.colorbar(art, name=f"{gene} expression" + (" (bin mean)" if bins else ""), ax=axes[row, :].tolist(),
                       shrink=0.8)  # fmt: skip
        axes[row, 0].set_title(f"{gene}, predicted (cosine {cosine.loc[gene, 'cosine_similarity']:.3f})")
    return save_or_show(axes.ravel().tolist(), show=show, save=save, ax_given=False)
