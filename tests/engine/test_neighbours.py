"""Nearest neighbours in the plane by a grid of cells, against an exact scan of all pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from hiref.engine.finish import neighbours
from hiref.engine.finish.neighbours import GRID_MIN, PlaneGrid, nearest, search_index


def _exact(P, Q, k):
    # nearest first, ties broken by index
    d = ((Q[:, None, :] - P[None, :, :]) ** 2).sum(-1)
    index = np.broadcast_to(np.arange(P.shape[0]), d.shape)
    return np.lexsort((index, d), axis=1)[:, :k]


def _clouds(kind, rng):
    m = GRID_MIN + 1000
    if kind == "uniform":
        P = rng.random((m, 2))
        return P, rng.random((600, 2))
    if kind == "lattice":  # integer points: exact ties in every search
        grid = np.stack(np.meshgrid(np.arange(80), np.arange(80)), -1).reshape(-1, 2).astype(np.float64)[:m]
        return grid, grid[rng.integers(0, m, 600)] + rng.integers(0, 2, (600, 2)) * 0.5
    if kind == "apart":  # two halves far apart; queries between them and far outside
        P = rng.random((m, 2))
        P[: m // 2, 0] += 6
        Q = np.concatenate([rng.random((400, 2)) * [8, 1], rng.random((100, 2)) * 200 - 100])
        return P, Q
    if kind == "strip":  # a thin strip, shifted far from the origin
        P = rng.random((m, 2)) * [1, 0.01] + 1e4
        return P, rng.random((600, 2)) * [1, 0.02] + 1e4
    P = rng.random((m, 2))  # a uniform cloud with 300 points repeated
    P[:300] = P[300:600]
    return P, P[rng.integers(0, m, 600)]


@pytest.mark.parametrize("kind", ["uniform", "lattice", "apart", "strip", "repeated"])
@pytest.mark.parametrize("k", [1, 7, 16])
@pytest.mark.parametrize("threads", [1, 2])
def test_grid_search_equals_an_exact_scan(kind, k, threads):
    rng = np.random.default_rng(k)
    P, Q = _clouds(kind, rng)
    grid = PlaneGrid.of(P)
    assert grid is not None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = grid.nearest(Q, k)
    finally:
        torch.set_num_threads(previous)
    expected = _exact(P, Q, k)
    dist = lambda idx: ((Q[:, None, :] - P[idx]) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_array_equal(dist(got), dist(expected))
    if kind != "apart":  # (there, queries far from every point go to the k-d tree, whose ties are its own)
        np.testing.assert_array_equal(got, expected)


def test_queries_far_from_every_point_go_to_the_tree(monkeypatch):
    rng = np.random.default_rng(0)
    P = rng.random((GRID_MIN, 2))
    grid = PlaneGrid.of(P)
    asked = []
    real = neighbours.nearest

    def spy(index, q, k, **kw):
        asked.append(len(q))
        return real(index, q, k, **kw)

    monkeypatch.setattr(neighbours, "nearest", spy)
    Q = np.concatenate([rng.random((50, 2)), rng.random((7, 2)) + 40])
    got = grid.nearest(Q, 3)
    assert asked == [7]
    np.testing.assert_array_equal(got, _exact(P, Q, 3))


def test_unevenly_spread_or_few_points_are_searched_in_a_tree():
    rng = np.random.default_rng(1)
    assert PlaneGrid.of(rng.random((GRID_MIN - 1, 2))) is None
    assert PlaneGrid.of(rng.random((GRID_MIN, 3))) is None
    clustered = rng.random((GRID_MIN * 2, 2)) ** 6  # most points in a corner
    assert isinstance(search_index(clustered), cKDTree)
    line = np.c_[rng.random(GRID_MIN), np.zeros(GRID_MIN)]  # no area
    assert isinstance(search_index(line), cKDTree)
    Q = rng.random((300, 2)) ** 6
    np.testing.assert_array_equal(nearest(clustered, Q, 4), _exact(clustered, Q, 4))


def test_a_denser_part_refines_the_cells():
    # a tissue-like outline that fills a fifth of its box: cells sized to the occupied area
    rng = np.random.default_rng(2)
    P = rng.random((6 * GRID_MIN, 2))
    P = P[np.hypot(P[:, 0] - 0.5, P[:, 1] - 0.5) < 0.25]
    grid = PlaneGrid.of(P)
    assert grid is not None
    assert P.shape[0] / np.count_nonzero(np.diff(grid.start)) <= 4
    np.testing.assert_array_equal(grid.nearest(P[:500], 9), _exact(P, P[:500], 9))
