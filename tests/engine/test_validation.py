"""Engine input validation (issue 18): one seed rule, booleans, schedule limits, centring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hiref as hr
from hiref.datasets import halfmoon_scurve
from hiref.engine.schedule import MAX_RANK


@pytest.fixture(scope="module")
def pair():
    return halfmoon_scurve(128, seed=0)


@pytest.mark.parametrize("seed", [np.int64(3), np.uint32(3), 3])
def test_numpy_integer_seeds_are_ints(pair, seed):
    X, Y = pair
    assert np.array_equal(hr.solve(X, Y, seed=seed, progress=False).perm, hr.solve(X, Y, seed=3, progress=False).perm)


def test_none_and_generator_seeds(pair):
    X, Y = pair
    for seed in (None, np.random.default_rng(0)):
        perm = hr.solve(X, Y, seed=seed, progress=False).perm
        assert np.array_equal(np.sort(perm), np.arange(len(X)))


@pytest.mark.parametrize(
    ("seed", "error"),
    [(1.5, TypeError), ("1", TypeError), (True, TypeError), (-1, ValueError), (2**64, ValueError), (2**32, ValueError)],
)
def test_bad_seeds_name_the_argument(pair, seed, error):
    X, Y = pair
    with pytest.raises(error, match=r"`seed` must be an int in \[0, 2\*\*32\)"):
        hr.solve(X, Y, seed=seed, progress=False)


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name in ("refine", "polish", "progress") for value in ("no", 1)] + [("progress", None)],
)
def test_booleans_are_checked(pair, name, value):
    X, Y = pair
    with pytest.raises(TypeError, match=f"`{name}` must be True or False"):
        hr.solve(X, Y, **{name: value})


def test_large_ranks_are_refused_with_the_limit():
    X, Y = halfmoon_scurve(400, seed=0)
    with pytest.raises(ValueError, match=rf"`schedule` ranks must be at most {MAX_RANK}, got 400"):
        hr.solve(X, Y, schedule=[400], progress=False)
    with pytest.raises(ValueError, match=rf"`max_rank` must be at most {MAX_RANK}"):
        hr.solve(X, Y, max_rank=1000, progress=False)
    with pytest.raises(ValueError, match="`max_rank` must be at least 2"):
        hr.solve(X, Y, max_rank=1, progress=False)


def test_large_offset_costs_the_same_as_centred_data():
    X, Y = halfmoon_scurve(512, seed=0)
    centred = hr.solve(X, Y, progress=False)
    shifted = hr.solve(X + 1e7, Y + 1e7, progress=False)
    assert shifted.cost == pytest.approx(centred.cost, rel=1e-3)
    assert np.array_equal(shifted.perm, centred.perm)


def test_centring_leaves_inputs_and_custom_costs_alone():
    X, Y = halfmoon_scurve(64, seed=0)
    X, Y = X + 1e6, Y + 1e6
    X0, Y0 = X.copy(), Y.copy()
    Xt = torch.from_numpy(X.astype(np.float32))
    hr.solve(Xt, Y.astype(np.float32), progress=False)
    hr.solve(X, Y, progress=False)
    assert np.array_equal(X, X0)
    assert np.array_equal(Y, Y0)
    assert torch.equal(Xt, torch.from_numpy(X0.astype(np.float32)))
    seen = []

    def cost(x, y):
        seen.append(float(x.min()))
        return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)

    hr.solve(X, Y, cost=cost, progress=False)
    assert min(seen) > 1e5  # a custom cost sees the data as given
