"""Exact assignment of many small dense problems (shortest augmenting paths, Jonker-Volgenant)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from scipy.optimize import linear_sum_assignment

from hiref.engine.threads import in_slices

#: Fewest cost entries in a stack for the compiled solver; smaller stacks go to scipy, so that
#: small problems do not wait for its compilation at first use after install (the built-in
#: demo's first run took 8.8 s with it, 6.5 s without). On 2 cores the compiled solver took
#: 0.042 s for 8 planar problems of 384 points (1.2 million entries) and scipy 0.078 s.
COMPILED_MIN_ENTRIES = 1 << 21


@cache
def _compiled() -> Callable:
    """The compiled solver of a slice of a stack (compiled once, cached on disk; numba is imported here)."""
    from hiref.engine._assign_kernels import solve_slice

    return solve_slice


def _columns(cost: np.ndarray) -> np.ndarray:
    # scipy's solver. Where the costs are finite, subtracting row minima (and, when every column
    # is used, column minima) leaves the optimal assignment unchanged and gives the solver a
    # better starting dual (about 1.5x faster). With more columns than rows, some columns stay
    # unused, so a column shift would change which ones: it is skipped there. (Costs not all
    # finite go as they are: scipy says whether the problem has an assignment.)
    if np.isfinite(cost).all():
        cost = cost - cost.min(1, keepdims=True)
        if cost.shape[0] == cost.shape[1]:
            cost -= cost.min(0, keepdims=True)
    return linear_sum_assignment(cost)[1]


def assign_many(costs: np.ndarray) -> np.ndarray:
    """Optimal assignment of every cost matrix of a stack.

    Solved by a compiled shortest-augmenting-path solver (:mod:`._assign_kernels`, the method of
    :func:`scipy.optimize.linear_sum_assignment`), a contiguous slice of the stack per thread
    (torch's thread count). Stacks of fewer than :data:`COMPILED_MIN_ENTRIES` entries, and
    those with costs that are not all finite, go to scipy (which also says when a problem has
    no assignment).

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
    costs = np.ascontiguousarray(costs, dtype=np.float64)
    if costs.size < COMPILED_MIN_ENTRIES or not np.isfinite(costs).all():
        return np.stack([_columns(c) for c in costs])
    out = np.empty(costs.shape[:2], dtype=np.int64)
    ok = np.empty(len(costs), dtype=np.bool_)
    solve = _compiled()
    in_slices(len(costs), lambda lo, hi: solve(costs[lo:hi], out[lo:hi], ok[lo:hi]))
    for b in np.flatnonzero(~ok):  # (not reached with finite costs; scipy's error if ever)
        out[b] = _columns(costs[b])
    return out
