"""Exact assignment of many small dense problems (scipy's Jonker-Volgenant solver)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.optimize import linear_sum_assignment


def _columns(cost: np.ndarray) -> np.ndarray:
    # Subtracting row minima (and, when every column is used, column minima) leaves the optimal
    # assignment unchanged and gives the shortest-augmenting-path solver a better starting dual
    # (about 1.5x faster here). With more columns than rows, some columns stay unused, so a
    # column shift would change which ones: it is skipped there.
    cost = cost - cost.min(1, keepdims=True)
    if cost.shape[0] == cost.shape[1]:
        cost -= cost.min(0, keepdims=True)
    return linear_sum_assignment(cost)[1]


def assign_many(costs: np.ndarray) -> np.ndarray:
    """Optimal assignment of every cost matrix of a stack.

    Parameters
    ----------
    costs
        Shape (B, s, t) with ``s <= t``: every row is assigned to a distinct column.

    Returns
    -------
    (B, s) int array: row ``i`` of problem ``b`` goes to column ``out[b, i]``.
    """
    if len(costs) == 0:
        return np.empty((0, costs.shape[1] if costs.ndim == 3 else 0), dtype=np.int64)
    workers = max(1, min(4, os.cpu_count() or 1, len(costs)))
    if workers == 1:
        return _serial(costs)
    # scipy's solver releases the GIL, so threads run problems in parallel; each thread takes one
    # contiguous slice of the stack (a task per problem cost more in dispatch than the problem
    # itself: 16,384 problems of 64 points took 1.22 s that way, 0.53 s in slices, on 2 cores).
    cuts = np.linspace(0, len(costs), workers + 1).astype(np.int64)
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda i: _serial(costs[cuts[i] : cuts[i + 1]]), range(workers))
        return np.concatenate(list(parts))


def _serial(costs: np.ndarray) -> np.ndarray:
    return np.stack([_columns(c) for c in costs])
