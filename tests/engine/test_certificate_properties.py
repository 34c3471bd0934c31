"""Property-based checks of the answer itself (hypothesis): exact, and a certificate that holds.

Whatever the clouds' shapes, sizes, units per axis (down to axes of almost no extent), offsets
and cost, :func:`hiref.solve` with its defaults returns a one-to-one matching within 1e-5 of the
optimum of scipy's ``linear_sum_assignment``, a ``lower_bound`` never above that optimum and a
``gap_bound`` never below the true gap. (An axis 1e-13 of the others' extent once made the
bound hundreds of times the optimum: see ``test_finish.py``.)
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
#: Extent of an axis relative to the others: as they are, far larger or smaller, or almost none.
AXIS_SCALES = st.sampled_from([1.0, 1.0, 1.0, 1e3, 1e-3, 1e-7, 1e-13])
COSTS = st.sampled_from(["sqeuclidean", "sqeuclidean", "euclidean", hr.engine.Power(1.5)])


@st.composite
def problems(draw):
    d = draw(st.sampled_from([1, 2, 2, 3, 3, 5, 20]))
    n = draw(st.integers(30, 300))
    m = draw(st.sampled_from([n, n, n + draw(st.integers(1, 80)), max(2, n - draw(st.integers(1, 25)))]))
    scales = np.array([draw(AXIS_SCALES) for _ in range(d)])
    unit = 10.0 ** draw(st.integers(-6, 6))
    offset = draw(st.sampled_from([0.0, 0.0, 1e4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["gauss", "uniform", "clusters"]))

    def cloud(k):
        if kind == "gauss":
            points = rng.normal(size=(k, d))
        elif kind == "uniform":
            points = rng.uniform(size=(k, d))
        else:
            points = 0.1 * rng.normal(size=(k, d)) + rng.integers(0, 4, size=(k, 1))
        return (points * scales + offset) * unit

    return cloud(n), cloud(m) * 1.1, draw(COSTS)


@SETTINGS
@given(problems())
def test_default_solve_is_exact_and_its_certificate_holds(problem):
    X, Y, cost = problem
    found = hr.solve(X, Y, cost=cost, progress=False)
    D = cdist(X, Y)
    C = D**2 if cost == "sqeuclidean" else D if cost == "euclidean" else D**cost.p
    rows, cols = linear_sum_assignment(C)
    opt = C[rows, cols].mean()
    n, m = C.shape
    perm = np.asarray(found.perm)
    if n <= m:
        assert np.unique(perm).size == n
        cost_found = C[np.arange(n), perm].mean()
    else:
        back = np.asarray(found.perm_y)
        assert np.unique(back).size == m
        cost_found = C[back, np.arange(m)].mean()
    gap = cost_found / opt - 1 if opt > 0 else 0.0
    assert gap <= 1e-5
    assert found.gap_bound is not None
    assert found.lower_bound <= opt * (1 + 1e-10) + 1e-300
    assert gap <= found.gap_bound * (1 + 1e-9) + 1e-10
