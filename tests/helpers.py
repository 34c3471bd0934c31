"""Helpers shared by the tests (on the path through pytest's ``pythonpath`` setting)."""

from __future__ import annotations

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
