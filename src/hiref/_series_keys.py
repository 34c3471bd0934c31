"""Names of the AnnData entries written by the multi-section tools (``trace``, ``stack``).

One frozen dataclass holds every name, so that they can move into the key registry of
:mod:`hiref._keys` later without touching the tools.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeriesKeys:
    """The AnnData entries of a series of sections.

    Attributes
    ----------
    series
        The ``key_added`` of :func:`hiref.tl.align_series` (its consecutive pairs).
    trace
        The ``key_added`` of :func:`hiref.tl.trace`.
    stack
        The ``key_added`` of :func:`hiref.tl.stack`.
    """

    series: str = "hiref"
    trace: str = "hiref_trace"
    stack: str = "spatial_3d"

    def pair(self, i: int) -> str:
        """Key of the alignment of sections ``i`` and ``i + 1`` (as :func:`hiref.tl.align_series` names it)."""
        return f"{self.series}_{i}_{i + 1}"

    @property
    def series_next(self) -> str:
        """``adata.obs[...]`` of a series on one AnnData: the partner's obs name in the next time point."""
        return f"{self.series}_next"

    @property
    def series_prev(self) -> str:
        """``adata.obs[...]`` of a series on one AnnData: the partner's obs name in the previous time point."""
        return f"{self.series}_prev"

    @property
    def trace_uns(self) -> str:
        """``adata.uns[...]`` of the start section: what was traced, and the columns written."""
        return self.trace

    def trace_partner(self, section: int) -> str:
        """``adata.obs[...]`` of the start section: the traced partner's obs name in ``section``."""
        return f"{self.trace}_{section}"

    @property
    def stack_obsm(self) -> str:
        """``adata.obsm[...]``: the (x, y, z) coordinates in the first section's frame."""
        return self.stack

    @property
    def stack_uns(self) -> str:
        """``adata.uns[...]``: the motion of the section into the first one's frame, and its z."""
        return self.stack


DEFAULT = SeriesKeys()
