"""The tiled scan for the smallest entries of each row (row minima over all pairs above 16 dimensions)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from hiref.engine.finish.neighbours import candidate_neighbours, nearest
from hiref.engine.geometry import scan
from hiref.engine.geometry.costs import SqEuclidean, Transposed


def brute(Q: torch.Tensor, P: torch.Tensor, bias: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest values of every row, by the whole matrix in float64."""
    D = bias.double()[None, :] - 2.0 * Q.double() @ P.double().T
    return torch.topk(D, k, dim=1, largest=False).values


def check(Q: torch.Tensor, P: torch.Tensor, bias: torch.Tensor, k: int) -> None:
    values, indices = scan.smallest(Q, P, bias, k)
    expect = brute(Q, P, bias, k)
    tol = 1e-9 if Q.dtype == torch.float64 else 1e-3
    assert values.shape == indices.shape == (Q.shape[0], k)
    # smallest first, the right values, and each index holds its value
    assert torch.all(values[:, 1:] >= values[:, :-1])
    np.testing.assert_allclose(values.double().numpy(), expect.numpy(), atol=tol, rtol=0)
    at = bias.double()[indices] - 2.0 * (Q.double()[:, None, :] * P.double()[indices]).sum(-1)
    np.testing.assert_allclose(at.numpy(), expect.numpy(), atol=tol, rtol=0)
    assert all(len(set(row)) == k for row in indices.tolist())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 9, 40])
def test_smallest_over_tiles_equals_the_whole_matrix(dtype, k):
    g = torch.Generator().manual_seed(k)
    m = scan._TILED_MIN_COLS + 1234  # tiled, with a short last tile
    P = torch.randn(m, 20, generator=g, dtype=dtype)
    Q = torch.randn(scan._TILE_ROWS + 77, 20, generator=g, dtype=dtype)
    bias = (P * P).sum(1) + torch.rand(m, generator=g, dtype=dtype)
    check(Q, P, bias, k)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("openmp", [True, False])
def test_the_scan_shares_rows_out_to_threads_and_restores_torchs_count(monkeypatch, threads, openmp):
    g = torch.Generator().manual_seed(threads)
    m = scan._TILED_MIN_COLS + 99
    P = torch.randn(m, 20, generator=g, dtype=torch.float64)
    Q = torch.randn(2 * scan._LEAST_ROWS + 5, 20, generator=g, dtype=torch.float64)  # chunks of unequal sizes
    monkeypatch.setattr(scan, "_openmp", lambda: openmp)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check(Q, P, (P * P).sum(1), 7)
        # the count holds here and in threads started later (which take the process's default)
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert torch.get_num_threads() == later[0] == threads
    finally:
        torch.set_num_threads(previous)


def test_rows_whose_threshold_fails_are_computed_again(monkeypatch):
    g = torch.Generator().manual_seed(0)
    m = scan._TILED_MIN_COLS
    # ties: a sixth of the columns are one point, the nearest to every query (fewer than k pass
    # a threshold that equals their value) ...
    P = torch.randn(m, 20, generator=g, dtype=torch.float64)
    P[: m // 6] = 0.0
    Q = 0.01 * torch.randn(300, 20, generator=g, dtype=torch.float64)
    bias = (P * P).sum(1)
    check(Q, P, bias, 9)
    # ... and too little room for the entries that pass
    monkeypatch.setattr(scan, "_ROOM", 0.02)
    P = torch.randn(m, 20, generator=g, dtype=torch.float64)
    check(Q, P, (P * P).sum(1), 9)


def test_cheapest_and_neighbours_use_the_scan_exactly():
    rng = np.random.default_rng(1)
    m = scan._TILED_MIN_COLS + 5
    B = rng.normal(size=(m, 24))
    A = rng.normal(size=(400, 24))
    shift = rng.uniform(0, 5, size=m)
    cost = SqEuclidean()
    exact = ((A[:, None, :] - B[None]) ** 2).sum(-1) + shift[None, :]
    best = np.sort(exact, axis=1)[:, :3]
    for geometry in (cost, Transposed(cost)):
        found = geometry.cheapest(torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(shift), 3).numpy()
        np.testing.assert_allclose(np.take_along_axis(exact, found, 1), best, rtol=1e-12)
    ranked, approx, delta = cost.cheapest_float32(torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(shift), 8)
    truth = np.take_along_axis(exact, ranked, 1)
    assert np.all(np.abs(approx - truth) <= delta[:, None])
    assert np.all(truth.min(1) <= np.sort(exact, axis=1)[:, 0] + 2 * delta)
    near = nearest(B, A, 5)
    dist = ((A[:, None, :] - B[near]) ** 2).sum(-1)
    np.testing.assert_allclose(dist, np.sort(((A[:, None, :] - B[None]) ** 2).sum(-1), axis=1)[:, :5], rtol=1e-12)
    # float32 candidates: the right neighbours up to float32 near-ties
    loose = candidate_neighbours(B, A, 5)
    assert np.mean(loose == near) > 0.95


def test_the_compiled_pass_is_found_again_in_a_new_process():
    # numba's disk cache must answer a new process (a kernel made inside a function and calling
    # another made there missed it every time: 0.7-1.5 s of compilation a dtype a process)
    script = (
        "import numpy as np\n"
        "from hiref.engine.geometry import scan\n"
        "collect = scan._collect_kernel()\n"
        "for dtype in (np.float32, np.float64):\n"
        "    D = np.arange(40, dtype=dtype).reshape(2, 20)\n"
        "    cols, vals = np.zeros((2, 8), np.int64), np.zeros((2, 8), dtype)\n"
        "    counts = np.zeros(2, np.int64)\n"
        "    collect(D, np.array([3, 23], dtype), 0, cols, vals, counts, 0, 2)\n"
        "    assert counts.tolist() == [3, 3], counts\n"
        "print(collect.stats.cache_hits.total(), collect.stats.cache_misses.total())\n"
    )
    exec(script, {})  # here first: compiled, or found, and saved
    run = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    hits, misses = (int(x) for x in run.stdout.split())
    assert (hits, misses) == (2, 0)
