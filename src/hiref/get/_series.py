"""Reader of the series that :func:`hiref.tl.align_series` stores on one AnnData."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hiref._keys import SeriesKeys

if TYPE_CHECKING:
    from anndata import AnnData


def stored_series(adata: AnnData, key: str) -> dict:
    """``adata.uns[key]`` written by :func:`hiref.tl.align_series` on one AnnData, with a clear error if missing."""
    keys = SeriesKeys(key)
    entry = adata.uns.get(keys.uns)
    if not isinstance(entry, dict) or "order" not in entry or keys.next not in adata.obs:
        msg = f"`data` has no aligned series under key {key!r}: run hr.tl.align_series first."
        raise KeyError(msg)
    return entry
