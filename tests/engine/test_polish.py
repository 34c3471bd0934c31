"""The sparse exact polish: exact on its graph, never worse than its start, valid for any sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from hiref.engine.finish.polish import assign_sparse, candidate_arcs, polish_matching
from hiref.engine.geometry.costs import SqEuclidean


@pytest.mark.parametrize(("n", "m"), [(40, 40), (35, 48)])
def test_assign_sparse_on_a_complete_graph_is_exact(n, m):
    rng = np.random.default_rng(0)
    C = rng.random((n, m))
    rows, cols = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    start = rng.permutation(m)[:n]
    free = np.setdiff1d(np.arange(m), start)
    got = assign_sparse(rows, cols, C.ravel(), n, m, free, rng)
    r, c = linear_sum_assignment(C)
    assert len(np.unique(got)) == n
    assert np.isclose(C[np.arange(n), got].sum(), C[r, c].sum(), rtol=1e-9)


def test_candidate_arcs_hold_the_current_pairs_once():
    rng = np.random.default_rng(1)
    A, B = rng.random((50, 2)), rng.random((60, 2))
    perm = rng.permutation(60)[:50]
    rows, cols = candidate_arcs(A, B, perm, 5)
    pairs = set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert len(pairs) == len(rows)
    assert all((i, int(j)) in pairs for i, j in enumerate(perm))


@pytest.mark.parametrize("block", [8192, 64])
def test_polish_never_raises_the_cost_and_stays_a_matching(block):
    rng = np.random.default_rng(2)
    A, B = torch.as_tensor(rng.random((300, 2))), torch.as_tensor(rng.random((340, 2)))
    start = rng.permutation(340)[:300]
    before = ((A.numpy() - B.numpy()[start]) ** 2).sum(1).mean()
    perm, costs = polish_matching(
        SqEuclidean(), A, B, start, neighbours=8, passes=6, block=block, generator=torch.Generator().manual_seed(0)
    )
    assert len(np.unique(perm)) == 300
    after = ((A.numpy() - B.numpy()[perm]) ** 2).sum(1).mean()
    assert np.isclose(after, costs[-1])
    assert costs == sorted(costs, reverse=True)
    assert after < 0.5 * before  # a random start is far from optimal
    C = cdist(A.numpy(), B.numpy(), "sqeuclidean")
    r, c = linear_sum_assignment(C)
    if block > 300:  # one block: close to the optimum
        assert after <= C[r, c].mean() * 1.01


def test_polish_is_deterministic_per_seed():
    rng = np.random.default_rng(3)
    A, B = torch.as_tensor(rng.random((200, 3))), torch.as_tensor(rng.random((200, 3)))
    start = np.arange(200)
    runs = [
        polish_matching(SqEuclidean(), A, B, start, block=64, generator=torch.Generator().manual_seed(5))[0]
        for _ in range(2)
    ]
    assert np.array_equal(*runs)
