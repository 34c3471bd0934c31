"""The integration system of the warm prices: its compiled pass against the sums it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from hiref.engine.finish.prices import _integration_system


def _by_bincount(Y, g, nb):
    # the sums as np.bincount adds them: each end's in edge order
    m, d = Y.shape
    rows = np.repeat(np.arange(m), nb.shape[1])
    cols = nb.ravel()
    along = np.zeros(rows.shape[0])
    for c in range(d):
        along += (g[rows, c] + g[cols, c]) * (Y[cols, c] - Y[rows, c])
    along *= 0.5
    rhs = np.bincount(cols, along, minlength=m) - np.bincount(rows, along, minlength=m)
    degree = np.bincount(rows, minlength=m) + np.bincount(cols, minlength=m) + 1e-9
    return rhs, degree


@pytest.mark.parametrize("d", [2, 3, 7])
def test_integration_system_equals_the_bincount_sums(d):
    rng = np.random.default_rng(d)
    m = 3000
    Y = rng.standard_normal((m, d)) * 100 + 1e3
    g = rng.standard_normal((m, d))
    nb = rng.integers(0, m, (m, 6))
    nb[5, :3] = 5  # repeated edges, and edges from a point to itself
    rhs_ref, degree_ref = _by_bincount(Y, g, nb)
    L, rhs = _integration_system(Y, g, nb)
    np.testing.assert_array_equal(rhs, rhs_ref)
    np.testing.assert_array_equal(L.diagonal(), degree_ref - 2 * (nb == np.arange(m)[:, None]).sum(1))
    op, rhs_op = _integration_system(Y, g, nb, matrix=False)
    np.testing.assert_array_equal(rhs_op, rhs_ref)
    p = rng.standard_normal(m)
    np.testing.assert_allclose(op @ p, L @ p, rtol=1e-12, atol=1e-9)
    adjacency = np.zeros((m, m))
    np.add.at(adjacency, (np.repeat(np.arange(m), 6), nb.ravel()), 1.0)
    np.testing.assert_allclose(op @ p, degree_ref * p - adjacency @ p - adjacency.T @ p, rtol=1e-12, atol=1e-9)
