"""``hr.pl.stack``: serial sections in one 3-D view (or side by side), after ``hr.tl.stack``."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hiref._anndata import check_adata
from hiref._docs import DOC, doc_params
from hiref._keys import STACK_KEY, TraceKeys

from ._alignment import _size
from ._utils import category_colors, color_values, colour_scale, save_or_show, with_user_kwargs

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

#: Colours of the sections when ``color`` is None (Tableau 10, then grey).
SECTION_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                   "#bcbd22", "#7f7f7f")  # fmt: skip


def _points(adatas: list[AnnData], basis: str) -> list[np.ndarray]:
    """(n, 3) coordinates of every section: ``obsm[basis]``, z = the section's position if it has 2 columns."""
    out = []
    for i, adata in enumerate(adatas):
        if basis not in adata.obsm:
            msg = (
                f"`data[{i}]` has no .obsm[{basis!r}] (available: {sorted(adata.obsm.keys())}): run "
                "hr.tl.stack first, or pass `basis=`."
            )
            raise KeyError(msg)
        P = np.asarray(adata.obsm[basis], dtype=float)
        if P.ndim != 2 or P.shape[1] < 2:
            msg = f"`data[{i}].obsm[{basis!r}]` must hold 2 or 3 columns, got shape {P.shape}."
            raise ValueError(msg)
        out.append(P[:, :3] if P.shape[1] >= 3 else np.column_stack([P, np.full(len(P), float(i))]))
    return out


def _colours(adatas: list[AnnData], color: str | None, cmap: str) -> tuple[str, list, dict | tuple]:
    """Per-section colours, and their kind: ``"section"``, ``"category"`` (+ mapping) or ``"continuous"`` (+ range)."""
    if color is None:
        return "section", [SECTION_COLOURS[i % len(SECTION_COLOURS)] for i in range(len(adatas))], {}
    kinds, values = zip(*(color_values(a, color, f"data[{i}]") for i, a in enumerate(adatas)), strict=True)
    if len(set(kinds)) > 1:
        msg = f"`color` {color!r} is categorical in some sections and continuous in others."
        raise ValueError(msg)
    if kinds[0] == "category":
        mapping = category_colors(adatas, color)
        colours = [
            [mapping.get(str(v), "#cccccc") if v is not None and v == v else "#cccccc" for v in vals] for vals in values
        ]
        return "category", colours, mapping
    return "continuous", list(values), ()


def _trace_lines(
    adatas: list[AnnData], points: list[np.ndarray], trace_key: str, n_lines: int, seed: int, cells: object
) -> list:
    """Segments joining a sample of traced cells to their partners, section after section."""
    keys = TraceKeys(trace_key)
    home = next((i for i, a in enumerate(adatas) if isinstance(a.uns.get(keys.uns), dict)), None)
    if home is None:
        msg = f"no section has .uns[{keys.uns!r}]: run hr.tl.trace first (or pass `trace_key=None`)."
        raise KeyError(msg)
    info = adatas[home].uns[keys.uns]
    start = int(info["start"])
    sections = sorted({start, *(int(s) for s in np.atleast_1d(info["sections"]))})
    pool = np.arange(adatas[start].n_obs)
    if cells is not None:
        names = np.asarray(cells, dtype=object).ravel()
        pool = adatas[start].obs_names.get_indexer(names)
        if (pool < 0).any():
            missing = list(names[pool < 0][:3])
            msg = f"`trace_cells` names cells that are not in the start section data[{start}]: {missing}."
            raise KeyError(msg)
    rows = np.random.default_rng(seed).choice(pool, size=min(n_lines, len(pool)), replace=False)
    position = {}
    for j in sections:
        if j == start:
            position[j] = rows
            continue
        column = adatas[start].obs[keys.partner(j)].to_numpy()[rows]
        found = adatas[j].obs_names.get_indexer(np.where(column == column, column, "\0").astype(object))
        position[j] = found
    segments = []
    for a, b in itertools.pairwise(sections):
        ok = (position[a] >= 0) & (position[b] >= 0)
        segments += [
            np.stack([points[a][p], points[b][q]]) for p, q in zip(position[a][ok], position[b][ok], strict=True)
        ]
    return segments


@doc_params(**DOC)
def stack(
    data: Sequence[AnnData],
    *,
    basis: str = STACK_KEY,
    color: str | None = None,
    kind: Literal["3d", "panels"] = "3d",
    trace_key: str | None = None,
    n_lines: int = 100,
    trace_cells: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    size: float | None = None,
    cmap: str = "viridis",
    elev: float = 22.0,
    azim: float = -60.0,
    random_state: int = 0,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **scatter_kwargs: Any,
) -> Axes | list[Axes] | None:
    """Serial sections stacked in one 3-D view, or side by side in their common frame.

    Reads the coordinates :func:`hiref.tl.stack` stored, and the partners
    :func:`hiref.tl.trace` stored for the lines.

    Parameters
    ----------
    data
        The sections, in order.
    basis
        ``.obsm`` key of the coordinates: (x, y, z) from :func:`hiref.tl.stack`; with two
        columns (e.g. ``"spatial"``) section ``k`` is drawn at ``z = k``.
    color
        ``.obs`` column (categorical: one palette shared by all sections, or
        ``.uns[f"{{color}}_colors"]``) or gene (one colour scale) to colour cells by; ``None``
        colours each section in its own colour.
    kind
        ``"3d"``: one :class:`~mpl_toolkits.mplot3d.axes3d.Axes3D`; ``"panels"``: one 2-D panel per
        section (x, y of ``basis``, shared limits), for print.
    trace_key
        The ``key_added`` of :func:`hiref.tl.trace`: join a sample of traced cells to their
        partners, section after section (``"3d"`` only). ``None``: no lines.
    n_lines
        Traced cells drawn (a random sample of the start section).
    trace_cells
        Obs names of the start section to draw the sample from (default: all its cells).
    names
        Title (panels) or legend name (3-D, ``color=None``) of every section; default
        ``"section 0"``, ...
    size
        Marker size (default: scaled to the number of cells).
    cmap
        Colour map of continuous values.
    elev, azim
        Viewing angles of the 3-D view (degrees).
    random_state
        Seed of the sample of lines.
    ax
        ``"3d"``: a 3-D Axes to draw into (``projection="3d"``); ``"panels"``: one Axes per section.
    {show_save}
    **scatter_kwargs
        Passed to ``scatter``; they win over the plot's own settings.

    Returns
    -------
    The 3-D Axes (``"3d"``) or the list of Axes (``"panels"``), unless shown.

    Examples
    --------
    >>> import hiref as hr
    >>> sections = [hr.datasets.simulate_slices(n_obs=200, seed=s)[0] for s in range(3)]
    >>> _ = hr.tl.stack(sections, spacing=0.5, register_options={{"use_rep": None}})
    >>> ax = hr.pl.stack(sections, color="region", show=False)
    >>> ax.name
    '3d'
    """
    if isinstance(data, str) or not isinstance(data, Sequence) or len(data) == 0:
        msg = f"`data` must be the list of sections, got {type(data).__name__}."
        raise TypeError(msg)
    adatas = [check_adata(a, f"data[{i}]") for i, a in enumerate(data)]
    if kind not in ("3d", "panels"):
        msg = f"`kind` must be '3d' or 'panels', got {kind!r}."
        raise ValueError(msg)
    labels = [f"section {i}" for i in range(len(adatas))] if names is None else [str(n) for n in names]
    if len(labels) != len(adatas):
        msg = f"`names` must hold one name per section ({len(adatas)}), got {len(labels)}."
        raise ValueError(msg)
    points = _points(adatas, basis)
    mode, colours, extra = _colours(adatas, color, cmap)
    size = _size(sum(len(P) for P in points), size)
    segments = (
        _trace_lines(adatas, points, trace_key, n_lines, random_state, trace_cells) if trace_key is not None else []
    )
    own = {"s": size, "linewidths": 0, "rasterized": True}
    bar: dict = {}
    if mode == "continuous":
        scale = colour_scale(np.concatenate(colours), color, vmin=scatter_kwargs.get("vmin"),
                             vmax=scatter_kwargs.get("vmax"))  # fmt: skip
        own.update(cmap=cmap, vmin=scale.vmin, vmax=scale.vmax)
        bar = {"label": scale.label(color), "extend": scale.extend} if "norm" not in scatter_kwargs else {}
    shared = with_user_kwargs(own, scatter_kwargs)
    style = _Style(mode, colours, extra, labels, color, shared, bar)
    if kind == "panels":
        axes = _draw_panels(points, style, ax)
        return save_or_show(axes, show=show, save=save, ax_given=ax is not None)
    drawn = _draw_3d(points, segments, style, ax, view=(basis, elev, azim))
    return save_or_show(drawn, show=show, save=save, ax_given=ax is not None)


@dataclass
class _Style:
    """How the sections are coloured and labelled (see :func:`stack`)."""

    mode: str  # "section", "category" or "continuous"
    colours: list
    extra: dict | tuple
    labels: list[str]
    color: str | None
    shared: dict
    bar: dict

    def scatter_colour(self, i: int) -> dict:
        """The colour argument of section ``i``'s scatter."""
        return {"color": self.colours[i]} if self.mode == "section" else {"c": self.colours[i]}

    def legend(self, target: Any, *, fig_level: bool) -> None:
        """A legend of the sections or categories on a figure or Axes (none for continuous values)."""
        from matplotlib.lines import Line2D

        if self.mode == "continuous":
            return
        if self.mode == "section":
            items, title = list(zip(self.labels, self.colours, strict=True)), None
        else:
            items, title = list(self.extra.items()), self.color
        handles = [Line2D([], [], marker="o", ls="", color=c, label=lab, markersize=6) for lab, c in items]
        where = {"loc": "outside right upper"} if fig_level else {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)}
        target.legend(handles=handles, title=title, frameon=False, ncol=1 if len(handles) <= 16 else 2, **where)


def _panel_axes(n: int, ax: Axes | Sequence[Axes] | None) -> tuple[Any, list[Axes]]:
    """The figure and one Axes per section: new ones in a grid, or ``ax`` checked."""
    import matplotlib.pyplot as plt

    if ax is None:
        ncols = min(n, 4)
        nrows = int(np.ceil(n / ncols))
        fig, grid = plt.subplots(nrows, ncols, figsize=(2.9 * ncols + 1.6, 2.9 * nrows + 0.3), layout="constrained",
                                 squeeze=False, sharex=True, sharey=True)  # fmt: skip
        axes = list(grid.ravel())
        for extra_ax in axes[n:]:
            extra_ax.set_visible(False)
        return fig, axes[:n]
    axes = list(ax) if isinstance(ax, Sequence) else [ax]
    if len(axes) != n:
        msg = f"`ax` must hold one Axes per section ({n}) with kind='panels', got {len(axes)}."
        raise ValueError(msg)
    return axes[0].figure, axes


def _draw_panels(points: list[np.ndarray], style: _Style, ax: Axes | Sequence[Axes] | None) -> list[Axes]:
    """``kind="panels"``: one 2-D panel per section, on shared limits."""
    fig, axes = _panel_axes(len(points), ax)
    allxy = np.concatenate([P[:, :2] for P in points])
    lo, hi = allxy.min(0), allxy.max(0)
    pad = 0.04 * (hi - lo).max()
    for i, (a, P) in enumerate(zip(axes, points, strict=True)):
        sc = a.scatter(P[:, 0], P[:, 1], **style.scatter_colour(i), **style.shared)
        a.set_xlim(lo[0] - pad, hi[0] + pad)
        a.set_ylim(lo[1] - pad, hi[1] + pad)
        a.set_aspect("equal", adjustable="box")
        a.set_title(style.labels[i])
        a.set_xticks([])
        a.set_yticks([])
    if style.mode == "continuous":
        fig.colorbar(sc, ax=axes, **{"label": style.color, **style.bar}, shrink=0.8)
    elif style.mode == "category":
        style.legend(fig, fig_level=True)
    return axes


def _draw_3d(
    points: list[np.ndarray], segments: list, style: _Style, ax: Axes | None, *, view: tuple[str, float, float]
) -> Axes:
    """``kind="3d"``: every section at its z in one 3-D Axes, with the traced links."""
    import matplotlib.pyplot as plt

    basis, elev, azim = view
    if ax is None:
        fig = plt.figure(figsize=(7.5, 6.0), layout="constrained")
        ax = fig.add_subplot(projection="3d")
    elif getattr(ax, "name", "") != "3d":
        msg = "`ax` must be a 3-D Axes (e.g. fig.add_subplot(projection='3d')) with kind='3d'."
        raise ValueError(msg)
    for i, P in enumerate(points):
        label = {"label": style.labels[i]} if style.mode == "section" else {}
        sc = ax.scatter(P[:, 0], P[:, 1], P[:, 2], **style.scatter_colour(i), **label, depthshade=False, **style.shared)
    if segments:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        ax.add_collection3d(Line3DCollection(segments, colors="0.2", linewidths=0.6, alpha=0.6))
    span = np.ptp(np.concatenate(points), axis=0)
    span = np.where(span > 0, span, 1.0)
    ax.set_box_aspect((span[0], span[1], max(span[2], 0.6 * max(span[0], span[1]))))
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel(f"{basis} x")
    ax.set_ylabel(f"{basis} y")
    ax.set_zlabel(f"{basis} z")
    if style.mode == "continuous":
        ax.figure.colorbar(sc, ax=ax, **{"label": style.color, **style.bar}, shrink=0.6, pad=0.08)
    else:
        style.legend(ax, fig_level=False)
    ax.set_title(f"{len(points)} sections" + (f", {len(segments)} links of traced cells" if segments else ""))
    return ax
