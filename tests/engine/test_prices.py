"""The integration system of the warm prices: its compiled pass against the numpy passes."""

from __future__ import annotations

import numpy as np
import pytest

from hiref.engine.finish import prices
from hiref.engine.finish.prices import _edge_sums_numpy, _integration_system


@pytest.mark.parametrize("d", [2, 3, 7])
def test_integration_system_equals_the_bincount_sums(d, monkeypatch):
    # the compiled pass (large systems) against the numpy passes (small ones), bit for bit
    monkeypatch.setattr(prices, "COMPILED_EDGES_MIN", 0)
    rng = np.random.default_rng(d)
    m = 3000
    Y = rng.standard_normal((m, d)) * 100 + 1e3
    g = rng.standard_normal((m, d))
    nb = rng.integers(0, m, (m, 6))
    nb[5, :3] = 5  # repeated edges, and edges from a point to itself
    rhs_ref, degree_ref = _edge_sums_numpy(Y, g, nb)
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
