"""The compiled loop of :meth:`.costs.SqEuclidean.paired_at`: squared distances of indexed pairs."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def squared_distances_at(X, Y, rows, cols, out):  # pragma: no cover
    """``out[e] = |X[rows[e]] - Y[cols[e]]|^2`` in float64, the coordinates summed in order."""
    d = X.shape[1]
    for e in range(rows.shape[0]):
        i, j = rows[e], cols[e]
        total = 0.0
        for a in range(d):
            diff = np.float64(X[i, a]) - np.float64(Y[j, a])
            total += diff * diff
        out[e] = total
