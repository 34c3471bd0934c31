"""Helpers shared by the tests (on the path through pytest's ``pythonpath`` setting)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def exact_matching(X: np.ndarray, Y: np.ndarray, metric: str = "sqeuclidean") -> tuple[np.ndarray, float]:
    """Optimal matching by scipy's exact solver: (perm, mean cost)."""
    C = cdist(X, Y, metric)
    rows, cols = linear_sum_assignment(C)
    perm = np.empty(len(X), dtype=np.int64)
    perm[rows] = cols
    return perm, float(C[rows, cols].mean())


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def shared_data_dir() -> Path | None:
    """``$HIREF_SHARED_DATA``, else ``../shared/data`` next to the repository, if it exists."""
    candidates = [os.environ.get("HIREF_SHARED_DATA")]
    root = Path(__file__).resolve().parents[1]
    candidates += [str(root.parent / "shared" / "data"), str(root / "shared" / "data")]
    for c in candidates:
        if c and Path(c, "merfish_hypothalamus_bregma0.26.h5ad").exists():
            return Path(c)
    return None


def assert_same_adata_content(a, b) -> None:
    """Two AnnData objects hold the same obs, obsm keys and uns keys (used after errors)."""
    assert list(a.obs.columns) == list(b.obs.columns)
    assert set(a.obsm.keys()) == set(b.obsm.keys())
    assert set(a.uns.keys()) == set(b.uns.keys())
