"""``hr.pl.transitions``: cell-type transitions between consecutive time points."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY
from hiref.tl import transitions as transition_tables

from ._utils import save_or_show

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


@doc_params(**DOC)
def transitions(
    data: Sequence[AnnData] | AnnData,
    *,
    obs: str,
    key: str = ALIGN_KEY,
    pair: str | None = None,
    normalize: bool = True,
    cmap: str = "Blues",
    annotate: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes | list[Axes] | None:
    """Heatmap of cell-type transitions from :func:`hiref.tl.transitions`.

    Parameters
    ----------
    data
        What :func:`hiref.tl.align_series` aligned (a list of AnnData, or one AnnData).
    obs
        ``.obs`` column of the cell types.
    key
        The ``key_added`` of :func:`hiref.tl.align_series`.
    pair
        Which consecutive pair (``"E9.5 -> E10.5"``, or ``"0 -> 1"`` for a list); default all,
        one heatmap each.
    normalize
        Fractions of each earlier type (rows sum to 1) instead of counts.
    cmap
        Colour map.
    annotate
        Write the values in the cells (tables of at most 15 x 15).
    ax
        Axes to draw into (only with one pair).
    {show_save}

    Returns
    -------
    The Axes (one per pair), unless shown.
    """
    import matplotlib.pyplot as plt

    tables = transition_tables(data, obs=obs, key=key, normalize=normalize)
    if pair is not None:
        if pair not in tables:
            msg = f"`pair` must be one of {list(tables)}, got {pair!r}."
            raise KeyError(msg)
        tables = {pair: tables[pair]}
    if ax is not None and len(tables) > 1:
        msg = "`ax` can only be given with a single `pair`."
        raise ValueError(msg)
    ax_given = ax is not None
    if ax is None:
        size = max(max(t.shape) for t in tables.values())
        side = min(3.5 + 0.35 * size, 12.0)
        _, axes = plt.subplots(1, len(tables), figsize=(side * len(tables), side), layout="constrained", squeeze=False)
        axes = axes.ravel().tolist()
    else:
        axes = [ax]
    for a, (name, table) in zip(axes, tables.items(), strict=True):
        values = table.to_numpy(dtype=float)
        image = a.imshow(values, cmap=cmap, vmin=0, vmax=1 if normalize else None, aspect="auto")
        a.set_xticks(np.arange(table.shape[1]), [str(c) for c in table.columns], rotation=60, ha="right")
        a.set_yticks(np.arange(table.shape[0]), [str(i) for i in table.index])
        a.set_xlabel(f"{obs}, later")
        a.set_ylabel(f"{obs}, earlier")
        a.set_title(name)
        if annotate and max(table.shape) <= 15:
            for (i, j), v in np.ndenumerate(values):
                if v > 0:
                    text = f"{v:.2f}" if normalize else f"{int(v)}"
                    a.text(j, i, text, ha="center", va="center", fontsize=7,
                           color="white" if v > 0.6 * np.nanmax(values) else "black")  # fmt: skip
        a.figure.colorbar(image, ax=a, label="fraction of earlier type" if normalize else "cells", shrink=0.8)
    return save_or_show(axes if len(axes) > 1 else axes[0], show=show, save=save, ax_given=ax_given)
