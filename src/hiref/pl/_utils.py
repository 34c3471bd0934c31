"""Helpers shared by the plotting functions: colours, values, figure handling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


def palette(n: int) -> list[str]:
    """Scanpy's default palette for ``n`` categories."""
    from scanpy.plotting import palettes

    if n <= 20:
        return list(palettes.default_20[:n])
    if n <= 28:
        return list(palettes.default_28[:n])
    return [palettes.default_102[i % len(palettes.default_102)] for i in range(n)]


def category_colors(adatas: list[AnnData], column: str) -> dict[str, str]:
    """One colour per category of ``column`` across several objects (their stored colours first)."""
    from matplotlib.colors import is_color_like

    categories: list[str] = []
    for adata in adatas:
        values = adata.obs[column]
        cats = values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype) else pd.unique(values.dropna())
        categories += [str(c) for c in cats if str(c) not in categories]
    mapping: dict[str, str] = {}
    for adata in adatas:
        stored = adata.uns.get(f"{column}_colors")
        values = adata.obs[column]
        if stored is not None and isinstance(values.dtype, pd.CategoricalDtype):
            stored = list(stored)
            if len(stored) == len(values.cat.categories) and all(is_color_like(c) for c in stored):
                for cat, col in zip(values.cat.categories, stored, strict=True):
                    mapping.setdefault(str(cat), col)
    defaults = iter(c for c in palette(len(categories) + len(mapping)) if c not in mapping.values())
    for cat in categories:
        if cat not in mapping:
            mapping[cat] = next(defaults, "#888888")
    return mapping


def color_values(adata: AnnData, color: str, name: str) -> tuple[str, np.ndarray]:
    """``("category", labels)`` or ``("continuous", values)`` for an obs column or a gene."""
    if color in adata.obs.columns:
        values = adata.obs[color]
        if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
            return "category", values.astype("object").to_numpy()
        return "continuous", values.to_numpy(dtype=float)
    if color in adata.var_names:
        X = adata[:, color].X
        return "continuous", np.asarray(X.toarray() if sp.issparse(X) else X, dtype=float).ravel()
    msg = f"`color` {color!r} is neither a column of {name}.obs nor a gene of {name}.var_names."
    raise KeyError(msg)


def spatial(adata: AnnData, key: str, name: str) -> np.ndarray:
    """2-D coordinates of ``adata.obsm[key]`` with a clear error."""
    if key not in adata.obsm:
        msg = f"`{name}` has no .obsm[{key!r}] (available: {sorted(adata.obsm.keys())}); pass `spatial_key=`."
        raise KeyError(msg)
    return np.asarray(adata.obsm[key], dtype=float)[:, :2]


def new_axes(ax: Axes | None, *, figsize: tuple[float, float] = (6.0, 5.0)) -> Axes:
    """``ax``, or the Axes of a new figure (never the implicit current one)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def save_or_show(
    axes: Axes | list[Axes], *, show: bool | None, save: str | Path | None, ax_given: bool
) -> Axes | list[Axes] | None:
    """Save and show as scanpy does: return the Axes unless they were shown."""
    import matplotlib.pyplot as plt

    first = axes[0] if isinstance(axes, list) else axes
    fig = first.figure
    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if show is None:
        show = not ax_given
    if show:
        plt.show()
        return None
    return axes


def spatial_axes(ax: Axes, xlabel: str = "x", ylabel: str = "y") -> None:
    """Equal aspect and coordinate labels for a spatial panel."""
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
