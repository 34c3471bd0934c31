"""benchmarks/workflow.py simulates its sections with this checkout's simulator, whichever source tree it times."""

from __future__ import annotations

import numpy as np

import hiref as hr

from helpers import load_benchmark


def test_the_checkout_simulator_loads_and_draws_the_package_sections():
    simulate = load_benchmark("workflow")._simulator()
    a, b = simulate(n_obs=300, n_genes=5, seed=3)
    a_ref, b_ref = hr.datasets.simulate_slices(n_obs=300, n_genes=5, seed=3)
    for got, ref in ((a, a_ref), (b, b_ref)):
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got.obsm["spatial"], ref.obsm["spatial"])
        np.testing.assert_array_equal(got.X.toarray(), ref.X.toarray())
