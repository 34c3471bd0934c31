"""benchmarks/device_ops.py counts the GPU path's launches on the CPU and leaves the engine as it found it."""

from __future__ import annotations

import numpy as np
import torch

import hiref as hr
from hiref.engine import driver
from hiref.engine import repeat as repeat_module
from hiref.engine.finish import batched_search, integrate, lockstep
from hiref.engine.split import balance, lowrank

from helpers import load_benchmark


def _load():
    return load_benchmark("device_ops")


def test_counts_a_small_solve_and_restores_the_engine():
    bench = _load()
    patched = lambda: (  # noqa: E731
        torch.Tensor.numpy, batched_search.on_device, balance._by_selection, driver._block_groups, lowrank.repeat,
        lockstep.repeat_until,
    )  # fmt: skip
    before = patched()
    row = bench.count(2048, "density", 0, top=3)
    # every launch belongs to one stage, the device path's answer is the planted optimum
    assert row["launches"] == row["levels"] + row["leaves"] + row["finish"] > 0
    assert 0 < row["finish_syncs"] <= row["syncs"]
    assert abs(row["gap_pct"]) < 1e-6
    assert row["true_pct"] == 100.0
    assert len(row["top_sites"]) == 3
    assert patched() == before
    assert integrate.repeat_until is repeat_module.repeat_until
    # steps replayed from graphs are counted once per replay: fewer launches than run eagerly
    X, Y, _ = hr.datasets.planted_pair(2048, kind="density", seed=0)
    tally = bench.Tally()
    with bench.Counting(tally):
        hr.solve(X, Y, seed=0, progress=False, polish=False, refine=False)
    assert row["levels"] < tally.launches["levels"]
    assert np.isfinite(row["launch_floor_s"])
