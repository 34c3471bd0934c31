from __future__ import annotations

import numpy as np
import pytest

from hiref.datasets import checkerboard, halfmoon_scurve, maf_moons_rings, uniform_checkerboard

GENERATORS = [checkerboard, halfmoon_scurve, maf_moons_rings, uniform_checkerboard]


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda f: f.__name__)
def test_shapes_and_seeds(gen):
    X, Y = gen(101, seed=3)
    assert X.shape == Y.shape == (101, 2)
    assert np.isfinite(X).all()
    assert np.isfinite(Y).all()
    X2, Y2 = gen(101, seed=3)
    assert np.array_equal(X, X2)
    assert np.array_equal(Y, Y2)
    X3, _ = gen(101, seed=4)
    assert not np.array_equal(X, X3)


def test_laws():
    X, Y = checkerboard(4000, seed=0)
    centres = 5.0 * np.array([[0, 0], [1, 1], [-1, 1], [-1, -1], [1, -1]])
    nearest = np.linalg.norm(X[:, None] - centres[None], axis=-1).min(1)
    assert nearest.max() < 2.0  # 8 standard deviations
    _, Y = maf_moons_rings(400, seed=0)
    radii = np.sort(np.unique(np.round(np.linalg.norm(Y, axis=1) / 3, 1)))
    assert len(radii) >= 4
    X, Y = uniform_checkerboard(2000, cells=4, seed=0)
    cell_x = np.floor(X * 4).sum(1) % 2
    cell_y = np.floor(Y * 4).sum(1) % 2
    assert (cell_x == 0).all()
    assert (cell_y == 1).all()


@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_n(n, error):
    with pytest.raises(error, match="`n`"):
        halfmoon_scurve(n)
