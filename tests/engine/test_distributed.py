"""Distributed runs (torch.distributed, gloo on loopback): same answer as one process, no hangs."""

from __future__ import annotations

import importlib.util
import itertools
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

import hiref as hr
from hiref.engine.distributed.comm import Comm, row_ranges
from hiref.engine.distributed.sharding import assign_blocks

WORKER = Path(__file__).with_name("distributed_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """Run every case of ``distributed_worker.py`` on 2 local processes (bounded in time)."""
    out = tmp_path_factory.mktemp("distributed")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(WORKER), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}


def _load(out: Path, name: str) -> list[dict]:
    return [dict(np.load(out / f"{name}_rank{k}.npz")) for k in range(2)]


CASES = ["default", "polish", "swapped", "rank3", "sketch", "refine"]


@pytest.mark.parametrize("name", CASES)
def test_every_rank_gets_the_same_valid_matching(two_ranks, name):
    first, second = _load(two_ranks, name)
    for key in ("perm", "labels_x", "labels_y", "cost", "level_costs"):
        np.testing.assert_array_equal(first[key], second[key])
    X, Y, _ = _worker_module().cases()[name]
    perm = first["perm"]
    matched = perm >= 0
    assert matched.sum() == min(len(X), len(Y))
    assert len(np.unique(perm[matched])) == matched.sum()
    exact_cost = ((X[matched] - Y[perm[matched]]) ** 2).sum(1).mean()
    assert first["cost"] == pytest.approx(exact_cost, rel=1e-9)
    assert int(first["world"]) == 2
    assert int(first["sent"]) > 0
    # Co-clusters nest: a child never mixes points of two parents.
    for parent, child in zip(first["labels_x"][:-1], first["labels_x"][1:], strict=True):
        assert all(len(np.unique(parent[child == c])) == 1 for c in np.unique(child[:2000]))


@pytest.mark.parametrize(("name", "tolerance"), [("default", 0.1), ("polish", 0.1), ("refine", 0.1),
                                                 ("swapped", 1.0), ("rank3", 1.0), ("sketch", 1.0)])  # fmt: skip
def test_cost_matches_one_process(two_ranks, name, tolerance):
    X, Y, options = _worker_module().cases()[name]
    single = hr.solve(X, Y, progress=False, seed=0, **options)
    levels_only = hr.solve(X, Y, progress=False, seed=0, **{**options, "polish": False, "refine": False})
    (dist_run, _) = _load(two_ranks, name)
    cost = float(dist_run["cost"])
    # One process finishes on one graph of all points; every process of a distributed run
    # finishes its own co-clusters, so its cost lies between the one-process result (never
    # below its certified bound) and the levels alone (below the first level the processes
    # draw other random numbers, which moves the cost like a change of seed: within 0.1 % in
    # 2-D, up to ~1.5 % in the harder cases).
    if single.lower_bound is not None:
        assert cost >= single.lower_bound * (1 - 1e-9)
    assert (cost / levels_only.cost - 1) * 100 <= tolerance
    assert (cost / single.cost - 1) * 100 >= -tolerance
    # The first level is computed by both processes together: the same split as one process.
    np.testing.assert_array_equal(dist_run["labels_x"][0], single.labels_x[0])
    np.testing.assert_array_equal(dist_run["labels_y"][0], single.labels_y[0])
    assert dist_run["labels_x"].shape == np.stack(single.labels_x).shape


def test_bad_input_on_one_rank_raises_everywhere(two_ranks):
    errors = [str(np.load(two_ranks / f"nan_rank{k}.npz")["error"]) for k in range(2)]
    assert errors[1].startswith("ValueError")
    assert "NaN" in errors[1]
    assert errors[0].startswith("RuntimeError")
    assert "rank(s) [1]" in errors[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_process_group():
    group_started = not dist.is_initialized()
    if group_started:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield dist.group.WORLD
    if group_started:
        dist.destroy_process_group()


def test_one_process_group_equals_the_plain_engine(one_process_group):
    X, Y = hr.datasets.halfmoon_scurve(2000, seed=0)
    plain = hr.solve(X, Y, progress=False)
    grouped = hr.solve(X, Y, progress=False, distributed=one_process_group)
    np.testing.assert_array_equal(plain.perm, grouped.perm)
    assert grouped.cost == pytest.approx(plain.cost, rel=1e-12)
    assert grouped.world_size == 1


def test_unsupported_options_raise(one_process_group):
    X, Y = hr.datasets.halfmoon_scurve(300, seed=0)
    with pytest.raises(ValueError, match="sqeuclidean"):
        hr.solve(X, Y, cost="euclidean", distributed=True, progress=False)
    with pytest.raises(ValueError, match="partial"):
        hr.solve(X, Y[:200], unbalanced="subsample", distributed=True, progress=False)


def test_distributed_needs_a_process_group(monkeypatch):
    if dist.is_initialized():
        pytest.skip("a process group is already running")
    monkeypatch.delenv("RANK", raising=False)
    X, Y = hr.datasets.halfmoon_scurve(100, seed=0)
    with pytest.raises(RuntimeError, match="torchrun"):
        hr.solve(X, Y, distributed=True)
    with pytest.raises(TypeError, match="distributed"):
        hr.solve(X, Y, distributed="yes")


def test_row_ranges_cover_every_row_once():
    for n, world in [(10, 3), (7, 7), (5, 8), (1 << 20, 6)]:
        ranges = row_ranges(n, world)
        assert ranges[0][0] == 0
        assert ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        sizes = [hi - lo for lo, hi in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_assign_blocks_balances_loads():
    rng = np.random.default_rng(0)
    loads = torch.as_tensor(rng.integers(1, 100, size=37))
    owner = assign_blocks(loads, 4)
    per_rank = torch.zeros(4, dtype=loads.dtype).index_add_(0, owner, loads)
    # Largest-first greedy is within 4/3 of the optimum, and the optimum is at least the mean.
    assert per_rank.max() <= 4 / 3 * max(loads.sum() / 4, loads.max()) + 1
    assert torch.equal(owner, assign_blocks(loads, 4))  # the same on every process


def test_comm_reports_bytes(one_process_group):
    comm = Comm(one_process_group)
    before = comm.sent
    out = comm.sum(torch.ones(10, dtype=torch.float64))
    assert torch.equal(out, torch.ones(10, dtype=torch.float64))
    assert comm.sent - before == 80


def test_cli_align_distributed(tmp_path):
    import anndata as ad

    a, b = hr.datasets.simulate_slices(n_obs=600, n_genes=20, missing=0.1, seed=1)
    a.write_h5ad(tmp_path / "a.h5ad")
    b.write_h5ad(tmp_path / "b.h5ad")
    out = tmp_path / "out" / "a_aligned.h5ad"
    out.parent.mkdir()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hiref.cli",
        "align", str(tmp_path / "a.h5ad"), str(tmp_path / "b.h5ad"), "--out", str(out), "--use-rep", "spatial",
        "--distributed", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("hiref align:") == 1  # rank 0 reports and writes, rank 1 does not
    assert sorted(p.name for p in out.parent.iterdir()) == ["a_aligned.h5ad", "a_aligned_b.h5ad"]
    aligned = ad.read_h5ad(out)
    partner = aligned.uns["hiref"]["partner"]
    matched = partner >= 0
    assert matched.sum() == min(a.n_obs, b.n_obs)
    assert len(np.unique(partner[matched])) == matched.sum()
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    assert aligned.uns["hiref"]["cost"] <= 1.02 * a.uns["hiref"]["cost"]


def test_local_device(one_process_group):
    from hiref.engine.distributed.comm import local_device

    comm = Comm(one_process_group)
    assert comm.device == torch.device("cpu")  # gloo
    assert local_device(comm, None) == torch.device("cpu")
    assert local_device(comm, torch.device("cpu")) == torch.device("cpu")
