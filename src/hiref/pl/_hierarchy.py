"""``hr.pl.hierarchy`` and ``hr.pl.level_costs``: how the refinement zooms in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY, Keys
from hiref.get._matching import partners, stored, stored_params

from ._alignment import _size, _two_names, stored_spatial_key
from ._utils import palette, save_or_show, spatial, spatial_axes, with_user_kwargs

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


def _cluster_colors(n: int, seed: int = 0) -> np.ndarray:
    """Distinct colours for ``n`` co-clusters; a fixed shuffle keeps neighbouring ids apart."""
    from matplotlib.colors import to_rgba

    base = np.array([to_rgba(c) for c in palette(min(n, 102))])
    order = np.random.default_rng(seed).permutation(n)
    return base[order % len(base)]


@doc_params(**DOC)
def hierarchy(
    adata1: AnnData,
    adata2: AnnData,
    *,
    key: str = ALIGN_KEY,
    level: int | None = None,
    spatial_key: str | None = None,
    names: Sequence[str] = ("adata1", "adata2"),
    size: float | None = None,
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **scatter_kwargs: Any,
) -> list[Axes] | None:
    """The co-clusters of one level, in matching colours on both slices.

    Each co-cluster of the hierarchy pairs a set of cells of ``adata1`` with a set of cells of
    ``adata2``, and the hierarchy's own matching pairs cells within co-clusters. The exact
    finish that follows (``polish``, on by default up to 2**23 cells in low dimensions) re-solves the matching
    over all cells at once, so some final pairs cross co-clusters: the left panel's title
    counts them at the level drawn (none with ``polish=False, refine=False``). Drawing a level
    shows how far the refinement has zoomed in.

    Parameters
    ----------
    {aligned_pair}
    level
        Level to draw, from 1; default the deepest level with at most 32 co-clusters.
    {spatial_key_stored}
    names
        Names of the two slices (the panels' titles).
    size
        Marker size (default: scaled to the number of cells).
    ax
        Two Axes to draw into (one per slice); each panel shows its slice's own coordinates.
    {show_save}
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`; they win over the plot's own settings.

    Returns
    -------
    The two Axes, unless shown.
    """
    import matplotlib.pyplot as plt

    perm = partners(adata1, adata2, key, name="adata1", other_name="adata2")
    names = _two_names(names)
    keys = Keys(key)
    for adata in (adata1, adata2):
        if keys.labels not in adata.obsm:
            # The alignment exists (checked above): it simply had no level to store.
            msg = (
                f"the alignment {key!r} has no levels: all cells fit in one exactly solved leaf. "
                "Pass a smaller `leaf_size` to hr.tl.align to see a hierarchy."
            )
            raise ValueError(msg)
    L1, L2 = np.asarray(adata1.obsm[keys.labels]), np.asarray(adata2.obsm[keys.labels])
    n_levels = L1.shape[1]
    if level is None:
        counts = [len(np.unique(L1[:, j][L1[:, j] >= 0])) for j in range(n_levels)]
        level = max([j + 1 for j, c in enumerate(counts) if c <= 32] or [1])
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or not 1 <= level <= n_levels:
        msg = f"`level` must be an int from 1 to {n_levels}, got {level!r}."
        raise ValueError(msg)
    spatial_key = stored_spatial_key(adata1, key, spatial_key)
    P1, P2 = spatial(adata1, spatial_key, "adata1"), spatial(adata2, spatial_key, "adata2")
    lab1, lab2 = L1[:, level - 1], L2[:, level - 1]
    n_clusters = int(max(lab1.max(), lab2.max())) + 1
    colours = _cluster_colors(n_clusters)
    ax_given = ax is not None
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(11.0, 5.0), layout="constrained")
    axes = list(ax)
    if len(axes) != 2:
        msg = f"`ax` must hold two Axes (one per slice), got {len(axes)}."
        raise ValueError(msg)
    size = _size(len(P1) + len(P2), size)
    n_crossing, n_pairs = crossing_pairs(perm, lab1, lab2)
    for a, P, lab, name in ((axes[0], P1, lab1, names[0]), (axes[1], P2, lab2, names[1])):
        c = np.where((lab >= 0)[:, None], colours[np.maximum(lab, 0)], np.array([0.8, 0.8, 0.8, 1.0]))
        own = {"s": size, "linewidths": 0, "rasterized": len(P) > 10_000}
        a.scatter(*P.T, c=c, **with_user_kwargs(own, scatter_kwargs))
        spatial_axes(a, f"{spatial_key} 1", f"{spatial_key} 2")
        a.set_title(f"{name}: {n_clusters} co-clusters after level {level} of {n_levels}", fontsize="medium")
    axes[0].set_title(
        f"{axes[0].get_title()}\n{n_crossing:,} of {n_pairs:,} matched pairs cross co-clusters", fontsize="medium"
    )
    return save_or_show(axes, show=show, save=save, ax_given=ax_given)


def crossing_pairs(perm: np.ndarray, labels1: np.ndarray, labels2: np.ndarray) -> tuple[int, int]:
    """How many matched pairs join cells of different co-clusters, and how many pairs there are."""
    matched = np.flatnonzero(perm >= 0)
    return int((labels1[matched] != labels2[perm[matched]]).sum()), len(matched)


@doc_params(**DOC)
def level_costs(
    adata: AnnData,
    *,
    key: str = ALIGN_KEY,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes | None:
    """Cost of the block coupling at every level of the hierarchy (the paper's Prop. 3.4 trend).

    Level 0 spreads every cell over all cells of the other slice; each level spreads it over
    its co-cluster only, so good splits lower the cost towards that of the final matching
    (drawn last).

    Parameters
    ----------
    adata
        One of the objects aligned by :func:`hiref.tl.align`.
    key
        The ``key_added`` of the alignment.
    ax
        Axes to draw into.
    {show_save}

    Returns
    -------
    The Axes, unless shown.
    """
    from hiref._anndata import check_adata

    from ._utils import new_axes

    check_adata(adata, "adata")
    entry = stored(adata, key, "adata")
    costs = np.asarray(entry["level_costs"], dtype=float)
    params = stored_params(adata, key, "adata")
    schedule = [int(r) for r in np.asarray(params["schedule"])]
    ax_given = ax is not None
    ax = new_axes(ax, figsize=(6.0, 4.0))
    levels = np.arange(len(costs) - 1)
    ax.plot(levels, costs[:-1], marker="o", color="#1f77b4", label="block coupling of the level")
    ax.plot([levels[-1] + 1], [costs[-1]], marker="*", markersize=12, color="#d62728", linestyle="none",
            label="final matching")  # fmt: skip
    ax.set_yscale("log")
    ticks = ["0\n(all)"] + [f"{i + 1}\n(r={r})" for i, r in enumerate(schedule)] + ["leaves"]
    ax.set_xticks(np.arange(len(costs)), ticks[: len(costs)])
    ax.set_xlabel("level (rank)")
    ax.set_ylabel(f"mean cost ({params['cost']})")
    ax.set_title(f"{key}: cost per refinement level")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3, which="both")
    return save_or_show(ax, show=show, save=save, ax_given=ax_given)
