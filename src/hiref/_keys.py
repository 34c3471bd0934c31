"""Names of everything hiref writes into AnnData, each derived here from the user's key.

One class per tool, after squidpy's ``Key`` pattern: a frozen dataclass holding the
``key_added`` (or ``key``) of a call, whose properties spell the ``.uns``, ``.obs``,
``.obsm`` and ``.var`` names that the tool writes and that ``hr.get``, ``hr.pl`` and the
command line read. No other module spells such a name.

To add a tool: add a frozen dataclass with a ``key: str`` field (and a module constant for
its default key, if it has one), one property per entry it writes, each with a one-line
docstring naming where the entry lives, and use it both where the entry is written and where
it is read.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Default ``key_added`` of :func:`hiref.tl.align` and :func:`hiref.tl.align_series`.
ALIGN_KEY = "hiref"
#: Default ``key_added`` of :func:`hiref.pp.register`.
REGISTER_KEY = "spatial_registered"
#: Default ``key_added`` of :func:`hiref.tl.trace`.
TRACE_KEY = "hiref_trace"
#: Default ``key_added`` of :func:`hiref.tl.stack`.
STACK_KEY = "spatial_3d"


@dataclass(frozen=True)
class Keys:
    """The AnnData entries of one alignment (:func:`hiref.tl.align`) stored under ``key``.

    Attributes
    ----------
    key
        The ``key_added`` of :func:`hiref.tl.align`.
    """

    key: str

    @property
    def uns(self) -> str:
        """``adata.uns[...]``: parameters and results of the alignment."""
        return self.key

    @property
    def match(self) -> str:
        """``adata.obs[...]``: the partner's obs name (missing when unmatched)."""
        return f"{self.key}_match"

    @property
    def labels(self) -> str:
        """``adata.obsm[...]``: co-cluster of every cell at every level, (n_obs, n_levels)."""
        return f"{self.key}_labels"

    @property
    def partner_spatial(self) -> str:
        """``adata.obsm[...]``: the partner's spatial coordinates (NaN when unmatched)."""
        return f"{self.key}_partner_spatial"

    @property
    def pca(self) -> str:
        """``adata.obsm[...]``: the joint PCA computed when ``use_rep='X_pca'`` was missing."""
        return f"{self.key}_pca"

    @property
    def cost(self) -> str:
        """``adata.obs[...]``: cost of every cell's pair on the aligned representation (NaN when unmatched)."""
        return f"{self.key}_cost"

    @property
    def confidence(self) -> str:
        """``adata.obs[...]``: share of a cell's spatial neighbours whose partners lie near its own partner."""
        return f"{self.key}_confidence"


@dataclass(frozen=True)
class TransferKeys:
    """The entries of the AnnData returned by :func:`hiref.tl.transfer` from the alignment ``key``.

    Attributes
    ----------
    key
        The ``key`` of the alignment the transfer followed.
    """

    key: str

    #: ``result.uns[...]``: ``key``, ``layer`` and the name of the matched column (the same for every key).
    uns = "hiref_transfer"

    @property
    def matched(self) -> str:
        """``result.obs[...]``: whether the cell has a partner."""
        return f"{self.key}_matched"

    @property
    def source(self) -> str:
        """``result.obs[...]``: the partner's obs name in the source (missing if none)."""
        return f"{self.key}_source"


@dataclass(frozen=True)
class LabelKeys:
    """The entries written by :func:`hiref.tl.transfer_labels` on the target under ``key``.

    Attributes
    ----------
    key
        The ``key_added`` of :func:`hiref.tl.transfer_labels` (default ``f"{alignment key}_{obs}"``).
    """

    key: str

    @classmethod
    def default(cls, alignment_key: str, obs: str) -> LabelKeys:
        """The entries under the default ``key_added``: ``f"{alignment_key}_{obs}"``."""
        return cls(f"{alignment_key}_{obs}")

    @property
    def obs(self) -> str:
        """``adata_target.obs[...]``: the transferred label, categorical."""
        return self.key

    @property
    def agreement(self) -> str:
        """``adata_target.obs[...]``: the share of the votes that went to the transferred label."""
        return f"{self.key}_agreement"

    @property
    def uns(self) -> str:
        """``adata_target.uns[...]``: what was transferred (source column, alignment key, neighbours, params)."""
        return self.key


@dataclass(frozen=True)
class SeriesKeys:
    """The entries written by :func:`hiref.tl.align_series` under ``key``.

    Attributes
    ----------
    key
        The ``key_added`` of :func:`hiref.tl.align_series`.
    """

    key: str

    def pair(self, i: int) -> str:
        """``key_added`` of the alignment of items ``i`` and ``i + 1`` of a list (see :class:`Keys`)."""
        return f"{self.key}_{i}_{i + 1}"

    @property
    def uns(self) -> str:
        """``adata.uns[...]`` of one AnnData: ``time_key``, ``order``, per-pair results and ``params``."""
        return self.key

    @property
    def next(self) -> str:
        """``adata.obs[...]`` of one AnnData: the partner's obs name in the next time point."""
        return f"{self.key}_next"

    @property
    def prev(self) -> str:
        """``adata.obs[...]`` of one AnnData: the partner's obs name in the previous time point."""
        return f"{self.key}_prev"


@dataclass(frozen=True)
class BinKeys:
    """The entries of the AnnData returned by :func:`hiref.tl.bin_spatial` (fixed names)."""

    #: ``result.uns[...]``: the grid (``bins``, ``extent``, ``spatial_key``).
    uns = "bin_spatial"
    #: ``result.obs[...]``: column index of the bin.
    bin_x = "bin_x"
    #: ``result.obs[...]``: row index of the bin.
    bin_y = "bin_y"
    #: ``result.obs[...]``: number of cells averaged.
    n_cells = "n_cells"
    #: ``result.obsm[...]``: bin centres.
    spatial = "spatial"


@dataclass(frozen=True)
class RegisterKeys:
    """The entries written by :func:`hiref.pp.register` under ``key``.

    Attributes
    ----------
    key
        The ``key_added`` of :func:`hiref.pp.register`.
    """

    key: str = REGISTER_KEY

    @property
    def obsm(self) -> str:
        """``adata.obsm[...]`` of both slices: the registered coordinates."""
        return self.key

    @property
    def uns(self) -> str:
        """``adata_mov.uns[...]``: the motion, the search and ``params``."""
        return self.key


@dataclass(frozen=True)
class SimulatedKeys:
    """The entries of the slices made by :func:`hiref.datasets.simulate_slices` (fixed names)."""

    #: ``adata.obs[...]``: the region (cell type), categorical.
    region = "region"
    #: ``adata.obs[...]``: which slice, categorical.
    slice = "slice"
    #: ``adata2.obs[...]``: the obs name of the same cell in slice 1.
    true_match = "true_match"
    #: ``adata.obsm[...]``: the coordinates.
    spatial = "spatial"


@dataclass(frozen=True)
class TraceKeys:
    """The entries written by :func:`hiref.tl.trace` on the start section under ``key``.

    Attributes
    ----------
    key
        The ``key_added`` of :func:`hiref.tl.trace`.
    """

    key: str

    @property
    def uns(self) -> str:
        """``adata.uns[...]`` of the start section: what was traced, and the columns written."""
        return self.key

    def partner(self, section: int) -> str:
        """``adata.obs[...]`` of the start section: the traced partner's obs name in ``section``."""
        return f"{self.key}_{section}"


@dataclass(frozen=True)
class StackKeys:
    """The entries written by :func:`hiref.tl.stack` on every section under ``key``.

    Attributes
    ----------
    key
        The ``key_added`` of :func:`hiref.tl.stack`.
    """

    key: str

    @property
    def obsm(self) -> str:
        """``adata.obsm[...]``: the (x, y, z) coordinates in the first section's frame."""
        return self.key

    @property
    def uns(self) -> str:
        """``adata.uns[...]``: the motion of the section into the first one's frame, and its z."""
        return self.key
