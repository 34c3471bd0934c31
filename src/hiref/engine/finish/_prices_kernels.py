"""The compiled pass of :func:`.prices._integration_system`: each edge's integral, gathered at both ends."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def edge_sums(Y, g, nb):  # pragma: no cover
    """``rhs`` and ``degree`` of the integration system over the edges ``(i, nb[i, t])``.

    Each edge's trapezoid integral ``(g_i + g_j) . (y_j - y_i) / 2`` is added at ``j`` and
    subtracted at ``i``; the sums run in edge order (row after row), each end's in its own
    accumulator, as ``np.bincount`` adds them.
    """
    m, d = Y.shape
    plus = np.zeros(m)
    minus = np.zeros(m)
    count = np.zeros(m, np.int64)
    for i in range(m):
        for t in range(nb.shape[1]):
            j = nb[i, t]
            along = 0.0
            for c in range(d):
                along += (g[i, c] + g[j, c]) * (Y[j, c] - Y[i, c])
            along *= 0.5
            plus[j] += along
            minus[i] += along
            count[i] += 1
            count[j] += 1
    return plus - minus, count + 1e-9
