"""Levels split in groups of blocks on the CPU (``driver.LEVEL_GROUP_CPU``) give the same quality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import hiref as hr
from hiref.engine import driver
from hiref.engine.split import level


@pytest.mark.parametrize("group", [1, 100, 512, 1 << 30])
def test_groups_cover_every_block_once_within_the_limit(monkeypatch, group):
    monkeypatch.setattr(driver, "LEVEL_GROUP_CPU", group)
    for n_blocks, width in [(1, 5000), (7, 64), (300, 33), (64, 512)]:
        groups = driver._block_groups((n_blocks, width), torch.device("cpu"))
        assert groups[0][0] == 0
        assert groups[-1][1] == n_blocks
        assert all(hi == lo for (_, hi), (lo, _) in itertools.pairwise(groups))
        assert all(hi > lo and ((hi - lo) * width <= group or hi - lo == 1) for lo, hi in groups)
    assert driver._block_groups((300, 33), torch.device("meta")) == [(0, 300)]


def _solve(X, Y, monkeypatch, group, **options):
    monkeypatch.setattr(driver, "LEVEL_GROUP_CPU", group)
    calls = []
    original = level.split_level

    def counted(*args, **kwargs):
        calls.append(kwargs.get("level_blocks"))
        return original(*args, **kwargs)

    monkeypatch.setattr(driver, "split_level", counted)
    options = {"seed": 0, **options}
    return hr.solve(X, Y, progress=False, **options), calls


def test_grouped_levels_match_as_well_as_whole_levels(monkeypatch):
    # The hierarchy's gap varies a lot from seed to seed (4-23 % at this size), so compare the
    # mean over seeds; a block given another block's children would cost many times more.
    X, Y, truth = hr.datasets.planted_pair(8192, kind="density", seed=0)
    opt = float(((X - Y[truth]) ** 2).sum(1).mean())
    gaps = {}
    for group in (1 << 30, 256):
        gaps[group] = []
        for seed in range(4):
            m, calls = _solve(X, Y, monkeypatch, group, polish=False, refine=False, seed=seed)
            assert np.array_equal(np.sort(m.perm), np.arange(len(X)))
            gaps[group].append(m.cost / opt - 1)
        if group == 256:  # the levels really were split in groups
            assert len(calls) > 3 * len(m.schedule)
    assert np.mean(gaps[256]) < 1.5 * np.mean(gaps[1 << 30]), gaps


def test_grouped_levels_restart_only_where_the_whole_level_would(monkeypatch):
    X, Y, truth = hr.datasets.planted_pair(4096, kind="lattice", seed=1)
    seen = []
    original = level.candidates

    def spy(geometry, s, caps_y, generator, opts, n_starts):
        seen.append((s.X.shape[0], n_starts))
        return original(geometry, s, caps_y, generator, opts, n_starts)

    monkeypatch.setattr(level, "candidates", spy)
    m, calls = _solve(X, Y, monkeypatch, 128)
    # Groups of one or two blocks are searched with many starts only on levels of at most
    # ``restart_blocks`` blocks in all.
    for level_blocks, (_, n_starts) in zip(calls, seen, strict=True):
        assert (n_starts > 1) == (level_blocks <= hr.SolveOptions().restart_blocks)
    assert any(n_starts == 1 and size < 4 for size, n_starts in seen)
    assert m.cost <= float(((X - Y[truth]) ** 2).sum(1).mean()) * (1 + 1e-9)
