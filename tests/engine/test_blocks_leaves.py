from __future__ import annotations

import itertools

import numpy as np
import torch
from helpers import exact_matching

from hiref.engine.blocks import Blocks, child_capacities
from hiref.engine.consistency import broken_pairs
from hiref.engine.costs import SqEuclidean
from hiref.engine.leaves import solve_leaves


def test_child_capacities_floor_ceil():
    caps = child_capacities(torch.tensor([10, 11, 3]), 3)
    assert caps.tolist() == [[4, 3, 3], [4, 4, 3], [1, 1, 1]]


def test_refine_groups_children_contiguously():
    blocks = Blocks(torch.arange(10), torch.arange(10).flip(0), torch.tensor([6, 4]))
    pos, mask = blocks.padded()
    assert pos.shape == (2, 6)
    assert mask.sum().item() == 10
    lab = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 0]])
    caps = torch.tensor([[3, 3], [2, 2]])
    child = blocks.refine(pos, mask, lab, lab, caps)
    assert child.sizes.tolist() == [3, 3, 2, 2]
    assert child.ix.tolist() == [1, 3, 5, 0, 2, 4, 6, 9, 7, 8]
    lx, ly = child.labels()
    assert torch.equal(lx[child.ix], torch.repeat_interleave(torch.arange(4), child.sizes))
    assert torch.equal(ly[child.iy], lx[child.ix])


def test_leaves_are_solved_exactly():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(90, 2)))
    Y = torch.tensor(rng.normal(size=(90, 2)))
    ix, iy = torch.randperm(90), torch.randperm(90)
    blocks = Blocks(ix, iy, torch.tensor([30, 31, 29]))
    perm = solve_leaves(SqEuclidean(), X, Y, blocks)
    offsets = [0, 30, 61, 90]
    for lo, hi in itertools.pairwise(offsets):
        xs, ys = ix[lo:hi].numpy(), iy[lo:hi].numpy()
        local, _best = exact_matching(X[xs].numpy(), Y[ys].numpy())
        assert np.array_equal(perm[xs], ys[local])


def test_broken_pairs_counts_separated_monge_pairs():
    rng = np.random.default_rng(1)
    X = torch.tensor(rng.normal(size=(1, 200, 2)))
    Y = X + 0.01  # the Monge map is the identity
    mask = torch.ones(1, 200, dtype=torch.bool)
    same = (X[0, :, 0] > 0).long()[None]
    random = torch.tensor(rng.integers(0, 2, 200))[None]
    labels_x = torch.cat([same, same])
    labels_y = torch.cat([same, random])
    gen = torch.Generator().manual_seed(0)
    dense = SqEuclidean().dense
    out = broken_pairs(
        dense, X.repeat(2, 1, 1), Y.repeat(2, 1, 1), mask.repeat(2, 1), labels_x, labels_y, 2, gen, n_eval=100
    )
    # Independent subsamples of X and Y pair up near, not exact, partners: a few pairs straddle
    # even a consistent cut, half of them straddle a random one.
    assert out[0] < 0.12
    assert 0.35 < out[1] < 0.65
