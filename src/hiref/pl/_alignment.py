"""``hr.pl.alignment`` and ``hr.pl.displacement``: two slices and their matched cells."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY
from hiref.get._matching import partners, stored_params

from ._utils import (
    category_colors,
    color_values,
    colour_scale,
    even_sample,
    new_axes,
    save_or_show,
    spatial,
    spatial_axes,
    with_user_kwargs,
)

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


def stored_spatial_key(adata: AnnData, key: str, spatial_key: str | None) -> str:
    """The coordinates to draw: ``spatial_key``, else the one the alignment used, else ``"spatial"``."""
    if spatial_key is not None:
        return spatial_key
    return str(stored_params(adata, key, "adata1").get("spatial_key") or "spatial")


def matched_positions(
    adata1: AnnData, adata2: AnnData, key: str, spatial_key: str | None
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates' key, partner of every cell of ``adata1`` (``-1``: none), both slices' coordinates."""
    spatial_key = stored_spatial_key(adata1, key, spatial_key)
    perm = partners(adata1, adata2, key, name="adata1", other_name="adata2")
    return spatial_key, perm, spatial(adata1, spatial_key, "adata1"), spatial(adata2, spatial_key, "adata2")


def _size(n: int, size: float | None) -> float:
    return float(np.clip(120_000 / max(n, 1), 0.5, 30.0)) if size is None else size


def _draw_points(
    ax: Axes,
    points: list[np.ndarray],
    adatas: list[AnnData],
    color: str | None,
    names: Sequence[str],
    *,
    size: float,
    cmap: str,
    **kwargs: Any,
) -> list[np.ndarray] | None:
    """Scatter several point sets on one Axes, coloured by a shared obs column, a gene, or by set.

    ``kwargs`` (the user's) win over the plot's own settings, colour limits included. Returns
    every set's point colours for a categorical ``color`` (for lines drawn in them), else None.
    """
    rasterized = sum(len(p) for p in points) > 10_000
    base = {"s": size, "linewidths": 0, "rasterized": rasterized}
    if color is None:
        for P, name, c in zip(points, names, ("#1f77b4", "#ff7f0e", "#2ca02c"), strict=False):
            ax.scatter(*P.T, **with_user_kwargs({**base, "color": c, "label": name}, kwargs))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=max(1.0, 6 / np.sqrt(size)))
        return None
    kinds, values = zip(*(color_values(a, color, f"adata{i + 1}") for i, a in enumerate(adatas)), strict=True)
    if len(set(kinds)) > 1:
        msg = f"`color` {color!r} is categorical in one object and continuous in the other."
        raise ValueError(msg)
    if kinds[0] == "category":
        mapping = category_colors(adatas, color)
        point_colours = []
        for P, vals in zip(points, values, strict=True):
            labels = np.asarray(vals, dtype=object)
            colours = [mapping.get(str(v), "#cccccc") if v is not None and v == v else "#cccccc" for v in labels]
            ax.scatter(*P.T, c=colours, **with_user_kwargs(base, kwargs))
            point_colours.append(np.asarray(colours, dtype=object))
        handles = [ax.scatter([], [], s=30, color=c, label=cat) for cat, c in mapping.items()]
        ax.legend(handles=handles, title=color, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  ncol=1 if len(handles) <= 20 else 2)  # fmt: skip
        return point_colours
    scale = colour_scale(np.concatenate(values), color, vmin=kwargs.get("vmin"), vmax=kwargs.get("vmax"))
    style = with_user_kwargs({**base, "cmap": cmap, "vmin": scale.vmin, "vmax": scale.vmax}, kwargs)
    for P, vals in zip(points, values, strict=True):
        sc = ax.scatter(*P.T, c=vals, **style)
    if "norm" in kwargs:
        ax.figure.colorbar(sc, ax=ax, label=color, shrink=0.8)
    else:
        scale.colorbar(sc, name=color, ax=ax, shrink=0.8)
    return None


def line_sample(P1: np.ndarray, perm: np.ndarray, n_lines: int, seed: int) -> np.ndarray:
    """Matched cells of the first slice to draw lines from: at most ``n_lines``, spread evenly in space."""
    matched = np.flatnonzero(perm >= 0)
    return matched[even_sample(P1[matched], n_lines, seed)]


@doc_params(**DOC)
def alignment(
    adata1: AnnData,
    adata2: AnnData,
    *,
    key: str = ALIGN_KEY,
    color: str | None = None,
    n_lines: int = 300,
    spatial_key: str | None = None,
    layout: Literal["side", "overlay"] = "side",
    names: Sequence[str] = ("adata1", "adata2"),
    size: float | None = None,
    cmap: str = "viridis",
    random_state: int = 0,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **scatter_kwargs: Any,
) -> Axes | None:
    """Two aligned slices with lines joining a sample of matched cells.

    Lines are drawn from a spatially even sample of the first slice's matched cells (one per
    cell of a grid, so dense regions do not hide the rest), thin and translucent, in the colour
    of the first cell's category when ``color`` is categorical. The title names both slices
    (``names``). With ``layout="side"`` the second slice is drawn shifted to the right of the
    first, in its own coordinates plus a shift stated in the x label.

    Parameters
    ----------
    {aligned_pair}
    color
        ``.obs`` column (categorical: scanpy's palettes or ``.uns[f"{{color}}_colors"]``, shared by
        both slices) or gene (continuous, one colour scale) to colour cells by; ``None`` colours
        each slice in its own colour.
    n_lines
        Matched pairs to join with a line (a random sample).
    {spatial_key_stored}
    layout
        ``"side"``: the second slice to the right of the first; ``"overlay"``: both in place
        (after :func:`hiref.pp.register`).
    names
        Names of the two slices, for the title and the legend (``color=None``).
    size
        Marker size (default: scaled to the number of cells).
    cmap
        Colour map of continuous values. Their colour scale runs over the 1st-99th percentile
        of both slices' values (a ``*confidence`` column: 0-1), unless ``vmin``/``vmax`` are
        given; clipped values are counted in the colour bar's label.
    random_state
        Seed of the sample of lines.
    ax
        Axes to draw into.
    {show_save}
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``vmin``, ``vmax``, ``norm``,
        ``alpha``, ``marker``); they win over the plot's own settings.

    Returns
    -------
    The Axes, unless shown.
    """
    from matplotlib.collections import LineCollection

    spatial_key, perm, P1, P2 = matched_positions(adata1, adata2, key, spatial_key)
    names = _two_names(names)
    shift = 0.0
    if layout == "side":
        width = max(np.ptp(P1[:, 0]), np.ptp(P2[:, 0]))
        shift = float(P1[:, 0].max() - P2[:, 0].min() + 0.15 * width)
        P2 = P2 + np.array([shift, 0.0])
    elif layout != "overlay":
        msg = f"`layout` must be 'side' or 'overlay', got {layout!r}."
        raise ValueError(msg)
    ax_given = ax is not None
    ax = new_axes(ax, figsize=(11.0, 5.0) if layout == "side" else (7.0, 6.0))
    size = _size(len(P1) + len(P2), size)
    colours = _draw_points(ax, [P1, P2], [adata1, adata2], color, names, size=size, cmap=cmap, **scatter_kwargs)
    pick = line_sample(P1, perm, n_lines, random_state)
    many = len(pick) > 100
    lines = LineCollection(
        np.stack([P1[pick], P2[perm[pick]]], 1), colors="0.2" if colours is None else list(colours[0][pick]),
        linewidths=0.45 if many else 0.8, alpha=0.45 if many else 0.7, zorder=3,
    )  # fmt: skip
    ax.add_collection(lines)
    xlabel = f"{spatial_key} 1" + (f" ({names[1]} drawn shifted by {shift:+.4g})" if layout == "side" else "")
    spatial_axes(ax, xlabel, f"{spatial_key} 2")
    n_matched = int((perm >= 0).sum())
    where = (" (left)", " (right)") if layout == "side" else ("", "")
    title = f"{names[0]}{where[0]} and {names[1]}{where[1]}: {n_matched:,} matched pairs"
    title += f" ({len(pick)} drawn)" if len(pick) else ""
    ax.set_title(title)
    return save_or_show(ax, show=show, save=save, ax_given=ax_given)


def _two_names(names: Sequence[str]) -> tuple[str, str]:
    if isinstance(names, str) or len(names) != 2:
        msg = f"`names` must hold two names (one per slice), got {names!r}."
        raise ValueError(msg)
    return str(names[0]), str(names[1])


@doc_params(**DOC)
def displacement(
    adata1: AnnData,
    adata2: AnnData,
    *,
    key: str = ALIGN_KEY,
    spatial_key: str | None = None,
    n_arrows: int = 400,
    grid: int | None = None,
    cmap: str = "magma",
    random_state: int = 0,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **quiver_kwargs: Any,
) -> Axes | None:
    """Arrows from cells of the first slice to their partners in the second.

    Both slices' coordinates must share one frame (e.g. after :func:`hiref.pp.register`).

    Parameters
    ----------
    {aligned_pair}
    {spatial_key_stored}
    n_arrows
        Cells drawn (a random sample), when ``grid`` is None.
    grid
        Average the displacements on a ``grid x grid`` lattice and draw one arrow per
        non-empty bin (a vector field) instead.
    cmap
        Colour map of the arrow lengths.
    random_state
        Seed of the sample.
    ax
        Axes to draw into.
    {show_save}
    **quiver_kwargs
        Passed to :meth:`matplotlib.axes.Axes.quiver`; they win over the plot's own settings.

    Returns
    -------
    The Axes, unless shown.
    """
    spatial_key, perm, P1, P2 = matched_positions(adata1, adata2, key, spatial_key)
    matched = np.flatnonzero(perm >= 0)
    start, vec = P1[matched], P2[perm[matched]] - P1[matched]
    if grid is not None:
        lo, hi = start.min(0), start.max(0)
        cell = np.clip(((start - lo) / np.maximum(hi - lo, 1e-12) * grid).astype(int), 0, grid - 1)
        ids = cell[:, 0] * grid + cell[:, 1]
        _used, inverse = np.unique(ids, return_inverse=True)
        count = np.bincount(inverse)
        vec = np.stack([np.bincount(inverse, vec[:, j]) / count for j in range(2)], 1)
        start = np.stack([np.bincount(inverse, start[:, j]) / count for j in range(2)], 1)
    elif len(start) > n_arrows:
        pick = np.random.default_rng(random_state).choice(len(start), n_arrows, replace=False)
        start, vec = start[pick], vec[pick]
    ax_given = ax is not None
    ax = new_axes(ax, figsize=(7.0, 6.0))
    ax.scatter(*P1.T, s=_size(len(P1), None) * 0.5, color="0.8", linewidths=0, rasterized=len(P1) > 10_000, zorder=1)
    import matplotlib as mpl
    from matplotlib.colors import ListedColormap

    length = np.linalg.norm(vec, axis=1)
    # Drop the palest end of the colour map: arrows are drawn on a light background.
    colours = ListedColormap(mpl.colormaps[cmap](np.linspace(0.0, 0.85, 256)))
    own = {"angles": "xy", "scale_units": "xy", "scale": 1.0, "cmap": colours, "width": 0.003, "zorder": 2}
    q = ax.quiver(*start.T, *vec.T, length, **with_user_kwargs(own, quiver_kwargs))
    ax.figure.colorbar(q, ax=ax, label=f"displacement ({spatial_key} units)", shrink=0.8)
    spatial_axes(ax, f"{spatial_key} 1", f"{spatial_key} 2")
    ax.set_title(f"{key}: cell to partner" + (f", mean over a {grid}x{grid} grid" if grid else ""))
    return save_or_show(ax, show=show, save=save, ax_given=ax_given)
