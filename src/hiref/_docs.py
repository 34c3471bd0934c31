"""Shared docstring fragments, filled in with :func:`doc_params`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

DOC = {
    "adata_pair": """adata1, adata2
        The two datasets to align, e.g. two slices or two time points; cells are rows.""",
    "use_rep": """use_rep
        What to compare cells by. ``"auto"``: position (``spatial_key``) and expression PCs
        together, the expression weight chosen from the data (see :func:`hiref.tl.align`);
        expression PCs alone without coordinates. Or an ``.obsm`` key (``"X_pca"``,
        ``"spatial"``, ...), ``"X"``
        (expression, or ``layer``), or a dict of those keys to weights, e.g.
        ``{"X_pca": 1.0, "spatial": 0.5}``: each part is centred and scaled to unit mean
        squared norm over both datasets, then weighted, so the cost adds up the parts'
        squared distances in those proportions. If ``"X_pca"`` is asked for but missing, a
        joint PCA of the genes both datasets share is computed (and stored, see Returns).""",
    "spatial_key": """spatial_key
        ``.obsm`` key of the spatial coordinates (used by ``"auto"``, for the stored partner
        coordinates and confidence, and by plots); ``None`` if there are none. A key given
        explicitly must be in both objects (a :class:`KeyError` otherwise); the default
        ``"spatial"`` in one object only is a :class:`KeyError` too, and in neither a warning
        (``"auto"`` then aligns on expression alone).""",
    "key_added": """key_added
        Name under which results are stored (``.uns[key_added]``, ``.obs[f"{key_added}_match"]``,
        ``.obsm[f"{key_added}_..."]``). Entries of an earlier alignment under the same key are
        replaced; a key whose entries hiref did not write is refused.""",
    "copy": """copy
        Return modified copies instead of writing into the inputs.""",
    "random_state": """random_state
        Seed of every random choice, an int in ``[0, 2**32)``; the same seed on the same device gives
        the same result. ``None`` draws a fresh seed (recorded in ``.uns``), a
        :class:`numpy.random.Generator` gives one.""",
    "device": """device
        Torch device of the engine; ``None`` picks cuda when available, else cpu.""",
    "layer": """layer
        ``.layers`` key to read expression from instead of ``.X``.""",
    "aligned_pair": """adata1, adata2
        Objects aligned by :func:`hiref.tl.align` under ``key``.
    key
        The ``key_added`` of the alignment.""",
    "spatial_key_stored": """spatial_key
        ``.obsm`` key of the coordinates; default: the one the alignment stored.""",
    "spatialdata": """table_key
        Only for ``SpatialData`` objects (the ``spatialdata`` extra, see the docs' "SpatialData"
        page): the table whose rows are the cells, by default the object's only table; a list
        gives one per object. Results are written into that table as into an AnnData.
    coordinate_system
        Only for ``SpatialData`` objects: the coordinate system in which the cells' positions
        are read, from the elements (shapes, points, labels) the table annotates, never from a
        stored ``.obsm`` copy; they take the place of ``.obsm[spatial_key]``.""",
    "show_save": """show
        Show the figure (default: unless ``ax`` is given).
    save
        Path to save the figure to (``fig.savefig(save, bbox_inches="tight")``).""",
}


def doc_params(**fragments: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders of a docstring with shared fragments."""

    def decorate(func: F) -> F:
        func.__doc__ = func.__doc__.format(**fragments) if func.__doc__ else func.__doc__
        return func

    return decorate
