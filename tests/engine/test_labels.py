"""Level labels kept as the deepest level only (LevelLabels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hiref as hr
from hiref.engine import LevelLabels


def test_levels_follow_from_the_deepest_by_division():
    ranks = [2, 3, 2]
    deepest = np.array([0, 1, 5, 6, 11, -1])
    labels = LevelLabels(deepest, ranks)
    assert len(labels) == 3
    np.testing.assert_array_equal(labels[2], deepest)
    np.testing.assert_array_equal(labels[1], [0, 0, 2, 3, 5, -1])
    np.testing.assert_array_equal(labels[0], [0, 0, 0, 1, 1, -1])
    np.testing.assert_array_equal(labels[-3], labels[0])
    assert [list(x) for x in labels[1:]] == [list(labels[1]), list(labels[2])]
    assert len(list(labels)) == 3
    with pytest.raises(IndexError, match="level 3"):
        labels[3]
    torch_labels = LevelLabels(torch.as_tensor(deepest), ranks)
    np.testing.assert_array_equal(torch_labels[0].numpy(), labels[0])


@pytest.mark.parametrize("kwargs", [{}, {"max_rank": 4}, {"schedule": [3, 5]}])
def test_matching_labels_nest_and_match_the_blocks(kwargs):
    X, Y = hr.datasets.halfmoon_scurve(700, seed=0)
    m = hr.solve(X, Y, progress=False, polish=False, **kwargs)  # pairs stay in their co-clusters
    assert len(m.labels_x) == len(m.schedule)
    for level in range(len(m.schedule)):
        lx, ly = m.labels_x[level], m.labels_y[level]
        # Every co-cluster has as many points on both sides, and the matching stays inside the
        # deepest ones.
        assert np.array_equal(np.bincount(lx, minlength=ly.max() + 1), np.bincount(ly, minlength=lx.max() + 1))
        # Exactly balanced splits: every co-cluster holds floor or ceil of n over the number of
        # co-clusters of the level (a wrong level of the hierarchy would break this).
        n_blocks = int(np.prod(m.schedule[: level + 1]))
        sizes = np.bincount(lx, minlength=n_blocks)
        assert len(sizes) == n_blocks
        assert set(sizes.tolist()) <= {len(X) // n_blocks, -(-len(X) // n_blocks)}
    np.testing.assert_array_equal(m.labels_x[-1], m.labels_y[-1][m.perm])
