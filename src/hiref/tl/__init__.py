"""Tools: align datasets, transfer across the matching, bin and evaluate."""

from __future__ import annotations

from ._align import align
from ._bin import bin_spatial
from ._evaluate import cosine_similarity, label_agreement
from ._labels import transfer_labels
from ._series import align_series, transitions
from ._stack import stack
from ._store import store_matching
from ._trace import trace
from ._transfer import transfer

__all__ = [
    "align",
    "align_series",
    "bin_spatial",
    "cosine_similarity",
    "label_agreement",
    "stack",
    "store_matching",
    "trace",
    "transfer",
    "transfer_labels",
    "transitions",
]
