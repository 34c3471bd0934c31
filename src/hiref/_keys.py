"""Names of everything hiref writes into AnnData, derived from one ``key_added``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """The AnnData entries of one alignment stored under ``key``.

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
