"""Property-based checks of the engine's input validation (hypothesis).

Whatever the shapes, dtypes, NaN placement and options, :func:`hiref.solve` either returns a
valid matching or raises a ValueError/TypeError/KeyError whose message names an argument in
backticks, and it never changes its inputs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hiref as hr

NAMED = re.compile(r"`[A-Za-z_][^`]*`")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

DTYPES = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_, np.complex64, np.uint8])


@st.composite
def clouds(draw):
    n = draw(st.integers(0, 24))
    m = draw(st.integers(0, 24))
    d = draw(st.integers(0, 3))
    d2 = draw(st.sampled_from([d, d, d, d + 1]))
    dtype = draw(DTYPES)
    elements = st.floats(-1e3, 1e3, allow_nan=False, width=32) if np.dtype(dtype).kind in "fc" else None
    X = draw(hnp.arrays(dtype, (n, d), elements=elements))
    Y = draw(hnp.arrays(dtype, (m, d2), elements=elements))
    for P in (X, Y):
        if P.size and np.dtype(dtype).kind == "f" and draw(st.booleans()):
            P.flat[draw(st.integers(0, P.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    ndim = draw(st.sampled_from([2, 2, 2, 1, 3]))
    if ndim != 2:
        X = X.reshape(-1) if ndim == 1 else X[None]
    return X, Y


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "seed": st.one_of(st.integers(-5, 2**33), st.none(), st.floats(0, 3), st.just(np.int64(7))),
        "refine": st.sampled_from([True, False, "no", 0]),
        "unbalanced": st.sampled_from(["partial", "subsample", "drop"]),
        "leaf_size": st.one_of(st.integers(-1, 40), st.just(2.5)),
        "schedule": st.one_of(st.none(), st.lists(st.integers(0, 80), max_size=3), st.just("2,2")),
        "max_rank": st.integers(0, 100),
        "cost": st.sampled_from(["sqeuclidean", "euclidean", "cosine"]),
        "dtype": st.sampled_from([None, "float64", "float16"]),
        "n_iter": st.integers(-1, 5),
        "step": st.sampled_from([1.0, 0.0, float("nan"), -2.0]),
        "n_starts": st.integers(0, 3),
    },
)


def _snapshot(P):
    return P.copy() if isinstance(P, np.ndarray) else P.clone()


@SETTINGS
@given(pair=clouds(), options=OPTIONS, as_tensor=st.booleans())
def test_solve_returns_a_matching_or_names_the_argument(pair, options, as_tensor):
    X, Y = pair
    if as_tensor and X.dtype.kind != "u":
        X, Y = torch.from_numpy(X), torch.from_numpy(Y)
    before = (_snapshot(X), _snapshot(Y))
    error = m = None
    try:
        m = hr.solve(X, Y, progress=False, device="cpu", **options)
    except (ValueError, TypeError, KeyError) as err:
        error = err
    event("error" if error is not None else "matching")
    if error is not None:
        assert NAMED.search(str(error)), f"{type(error).__name__} names no argument: {error}"
    else:
        n, k = len(X), min(len(X), len(Y))
        assert m.perm.shape == (n,)
        matched = m.perm[m.perm >= 0]
        assert len(matched) == k
        assert len(np.unique(matched)) == k
    for old, new in zip(before, (X, Y), strict=True):
        if isinstance(old, np.ndarray):
            assert np.array_equal(old, new, equal_nan=old.dtype.kind == "f")
        else:
            assert torch.equal(old.nan_to_num(), new.nan_to_num())


@pytest.mark.parametrize("bad", [[[1.0, 2.0]], "points", None, np.array([["a", "b"]])])
def test_non_arrays_are_type_errors(bad):
    with pytest.raises(TypeError, match="`X` must"):
        hr.solve(bad, np.zeros((2, 2)), progress=False)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    d=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64, np.int32]),
    offset=st.sampled_from([0.0, 1e6]),
    unbalanced=st.sampled_from(["partial", "subsample"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_valid_inputs_always_give_a_matching(n, m, d, dtype, offset, unbalanced, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * 10 + offset).astype(dtype)
    Y = (rng.normal(size=(m, d)) * 10 + offset).astype(dtype)
    m_ = hr.solve(X, Y, progress=False, device="cpu", unbalanced=unbalanced, seed=seed)
    matched = m_.perm[m_.perm >= 0]
    assert len(matched) == min(n, m) == len(np.unique(matched))
    assert np.isfinite(m_.cost)
