"""Helpers shared by the plotting functions: colours, values, figure handling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def with_user_kwargs(defaults: dict[str, Any], user: dict[str, Any], *, colour_arg: str = "color") -> dict[str, Any]:
    """The plot's own keyword arguments, overridden by the user's (the user's always win).

    ``c`` is refused with a pointer to ``colour_arg`` (the plot sets colours itself), and a
    ``norm`` given by the user replaces the plot's own ``vmin``/``vmax``.
    """
    if "c" in user:
        msg = f"pass the values to colour by as `{colour_arg}=` (an .obs column or a gene), not `c=`."
        raise TypeError(msg)
    merged = {**defaults, **user}
    if "norm" in user:
        for limit in ("vmin", "vmax"):
            if limit not in user:
                merged.pop(limit, None)
    return merged


@dataclass(frozen=True)
class ColourScale:
    """The limits of a continuous colour scale, and what the colour bar should say about them.

    Attributes
    ----------
    vmin, vmax
        The limits.
    extend
        ``"neither"``, ``"min"``, ``"max"`` or ``"both"``: which ends clip values (arrows on the colour bar).
    note
        Text for the colour bar's label saying what was clipped ("" when nothing was).
    """

    vmin: float
    vmax: float
    extend: str
    note: str

    def label(self, name: str) -> str:
        """The colour bar's label: ``name``, and the clipping on a second line."""
        return f"{name}\n({self.note})" if self.note else name

    def colorbar(self, mappable: Any, *, name: str, **kwargs: Any) -> Any:
        """A colour bar for ``mappable`` labelled with ``name`` and the clipping (arrows at clipped ends)."""
        return mappable.figure.colorbar(mappable, label=self.label(name), extend=self.extend, **kwargs)


def colour_scale(
    values: np.ndarray, name: str, *, vmin: float | None = None, vmax: float | None = None, percentiles=(1, 99)
) -> ColourScale:
    """Limits of a continuous colour scale: the user's, else the 1st and 99th percentile, saying what is clipped.

    A share in ``[0, 1]`` (a column named ``*confidence``) keeps the whole range ``0-1``, so that
    a low value never looks like a high one.
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return ColourScale(0.0 if vmin is None else vmin, 1.0 if vmax is None else vmax, "neither", "")
    share = name.endswith("confidence") and finite.min() >= 0 and finite.max() <= 1
    lo, hi = (0.0, 1.0) if share else (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    below, above = int((finite < lo).sum()), int((finite > hi).sum())
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max"}.get((below > 0, above > 0), "both")
    if not below and not above:
        return ColourScale(lo, hi, extend, "")
    chosen = vmin is not None or vmax is not None
    rule = "at vmin/vmax" if chosen else f"at the {_ordinal(percentiles[0])}-{_ordinal(percentiles[1])} percentile"
    beyond = ", ".join(
        part
        for part in (f"{below:,} below {lo:.3g}" if below else "", f"{above:,} above {hi:.3g}" if above else "")
        if part
    )
    return ColourScale(lo, hi, extend, f"scale clipped {rule}: {beyond}")


def _ordinal(n: float) -> str:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def even_sample(points: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of at most ``n`` rows of ``points`` spread evenly in space (one per occupied grid cell).

    The grid is refined until it has at least ``n`` occupied cells; one random point is drawn
    from each, then ``n`` of those at random. Dense regions thus get no more lines than sparse
    ones, and lines drawn from the sample do not hide each other.
    """
    rng = np.random.default_rng(seed)
    if n <= 0 or len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(points) <= n:
        return rng.permutation(len(points))
    xy = points[:, :2]
    lo, span = xy.min(0), np.maximum(np.ptp(xy, 0), 1e-12)
    order = rng.permutation(len(points))
    grid = max(1, int(np.sqrt(n)))
    while True:
        cells = np.minimum(((xy[order] - lo) / span * grid).astype(np.int64), grid - 1)
        _, first = np.unique(cells[:, 0] * grid + cells[:, 1], return_index=True)
        if len(first) >= n or grid >= 4096:
            break
        grid = int(np.ceil(grid * 1.25)) + 1
    picked = order[first]
    return np.sort(rng.choice(picked, size=min(n, len(picked)), replace=False))
