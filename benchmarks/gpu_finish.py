"""The whole solve on a GPU, finish included, against the same machine's CPU cores, on planted pairs.

Runs where only the engine is installed (the device machine has no anndata): put an
engine-only copy on ``PYTHONPATH`` (``bash ../shared/tools/gpu/prepare.sh`` builds one in
``.gpu/site``); the planted generator is read from this checkout's ``src/hiref/datasets``.

First, stacks of leaf-like problems (64 points each) solved in lockstep on the device against the
compiled solver on the host (``leaf_stack``: ``secs`` against ``host_s``, the transfer counted).
Then for every size it solves the planted density pair (known optimum: the identity) with the
defaults on CUDA and reports seconds, the stages of the finish (``polish_neighbours``,
``polish_prices``, ``polish_solve``, ``polish_pricing``), the batched auction rounds and the bids
left to the host (``HOST_TAIL``), the gap, true partners, ``gap_bound`` and peak GPU memory; then
with every auction on the host and with every auction's tail on the device (``all_host``,
``all_device``: for the choice of ``HOST_TAIL``), the levels alone with and without
CUDA graphs of the mirror-descent step (``hiref.engine.repeat``) and with the leaves solved by the
compiled solver on the host instead of in lockstep on the device (``STACK_ON_DEVICE``;
``lockstep_steps``), then the CPU cores on the same pairs for the ratio; then two independent
samples of the density kind (``two_samples``: the hard case of two real sections for the finish; no
known optimum, the bound only) and two sections of the recipe's simulated tissue, registered
(``sections``, 2^18 also on the CPU cores; the bound only), and the same at 2^18 with 5 % of the
first section's cells dropped (``sections_partial``: a partial matching, whose auction runs on the
host); last, while time is left, Gaussian mixtures in 30 and 100 dimensions (exact pricing over all
pairs, ranked in float32) on both, and the paper's MERFISH size (84,172 points in 98 dimensions) on
the device. One JSON line per run in ``$OUT/gpu_finish.jsonl``; a table at the end.

    PYTHONPATH=.gpu/site BUDGET_S=420 python benchmarks/gpu_finish.py
    SMALL=1 PYTHONPATH=.gpu/site python benchmarks/gpu_finish.py   # a check on a machine without CUDA
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

T0 = time.time()
BUDGET = float(os.environ.get("BUDGET_S", "420"))
OUT = Path(os.environ.get("OUT", "/tmp"))
SMALL = os.environ.get("SMALL", "0") == "1"
ROOT = Path(__file__).resolve().parents[1]


def _datasets(module: str):
    """A module of ``hiref.datasets`` without importing the rest of it (no anndata here)."""
    if "hiref.datasets" not in sys.modules:
        package = types.ModuleType("hiref.datasets")
        package.__path__ = [str(ROOT / "src" / "hiref" / "datasets")]
        sys.modules["hiref.datasets"] = package
    return importlib.import_module(f"hiref.datasets.{module}")


def planted_pair(n: int, seed: int = 0):
    """``hr.datasets.planted_pair`` (density kind)."""
    return _datasets("_planted").planted_pair(n, kind="density", seed=seed)


def two_samples(n: int):
    """Two independent samples, as two sections of one tissue: the density kind's ``X`` of seed 0
    and the image ``Y`` of seed 1's (optimum unknown: ``truth`` is ``None``; see ``sections.py``)."""
    return planted_pair(n, seed=0)[0], planted_pair(n, seed=1)[1], None


def sections_pair(n: int, seed: int = 0, drop: float = 0.0):
    """Two sections of one tissue, registered: the positions of ``hr.datasets.simulate_slices``.

    Its tissue (an ellipse with a lobe, about 100 x 70 units), the second section bent by the
    same smooth field (5 units), jittered (0.5 units), rotated by 30 degrees and shifted, then
    moved back by the exact inverse of that rotation and shift (``sections.py`` registers with
    ``hr.pp.register``, which needs anndata). The positions only, from the same module. The optimal
    prices are not a quadratic: the batched price search starts from each cell's partner and
    tilts its nodes (``BatchedPriceSearch.search``). Optimum unknown: the bound only.
    """
    shape = _datasets("_tissue_shape")
    rng = np.random.default_rng(seed)
    pos = shape.tissue_positions(rng, n)
    rot, shift = shape.rotation_matrix(30.0), np.array([40.0, -25.0])
    moved = shape.bent(pos, rng, 0.05, 0.5) @ rot.T + shift
    registered = (moved - shift) @ rot
    if drop:  # the first section loses a random share of its cells (a partial matching, as real sections)
        pos = pos[np.sort(rng.choice(n, round((1 - drop) * n), replace=False))]
    return pos, registered[rng.permutation(n)], None


def run_mixture(n: int, d: int, device: str, log) -> dict:
    """A Gaussian mixture in ``d`` dimensions (no known optimum: the certificate says how far)."""
    import hiref as hr

    X, Y = (P.astype(np.float32) for P in _datasets("_point_clouds").gaussian_mixtures(n, d, seed=0))
    t = time.perf_counter()
    m = hr.solve(X, Y, device=device, progress=False, seed=0)
    if device == "cuda":
        torch.cuda.synchronize()
    row = {
        "case": f"mixture_{d}d", "n": n, "device": device, "secs": round(time.perf_counter() - t, 3),
        "finish_s": m.timings.get("polish"),
        **{k: round(v, 3) for k, v in m.timings.items() if k.startswith("polish_")},
        "bound_pct": None if m.gap_bound is None else 100 * m.gap_bound, "t": round(time.time() - T0, 1),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    log.write(json.dumps(row) + "\n")
    log.flush()
    return row


def run_stacks(problems: int, device: str, log) -> dict:
    """Leaf-like stacks (64 points matched to a shifted, jittered copy): lockstep on the device against the host."""
    from hiref.engine._assign import assign_many
    from hiref.engine.finish.lockstep import assign_lockstep

    gen = torch.Generator().manual_seed(problems)
    X = torch.rand((problems, 64, 2), generator=gen, dtype=torch.float64)
    Y = X + 0.3 + 0.05 * torch.randn((problems, 64, 2), generator=gen, dtype=torch.float64)
    C = torch.cdist(X, Y).square().to(device)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    cols, steps = assign_lockstep(C)
    cols = cols.cpu()
    on_device = time.perf_counter() - t
    t = time.perf_counter()
    host = torch.as_tensor(assign_many(C.cpu().numpy()))  # the transfer counted, as in the solve
    on_host = time.perf_counter() - t
    cost = lambda c: float(C.cpu().gather(2, c[..., None]).sum())  # noqa: E731
    row = {
        "case": "leaf_stack", "n": problems, "device": device, "secs": round(on_device, 3),
        "host_s": round(on_host, 3), "lockstep_steps": steps,
        "same_cost": abs(cost(cols) - cost(host)) <= 1e-9 * abs(cost(host)), "t": round(time.time() - T0, 1),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    log.write(json.dumps(row) + "\n")
    log.flush()
    return row


def left() -> float:
    return BUDGET - (time.time() - T0)


class Counters:
    """Counts the batched auction's rounds, the bids of the host's auction and the lockstep leaf steps of one solve."""

    def __init__(self) -> None:
        from hiref.engine.finish import auction, polish

        self.auction, self.polish = auction, polish
        self.rounds = self.host_bids = self.stacks = self.steps = 0
        self._round, self._host, self._lockstep = auction._bid_round, polish.auction_cpu, auction.assign_lockstep

        def counted_round(*args):
            self.rounds += 1
            return self._round(*args)

        def counted_host(*args, **kwargs):
            out = self._host(*args, **kwargs)
            self.host_bids += out[2]
            return out

        def counted_lockstep(*args, **kwargs):
            out = self._lockstep(*args, **kwargs)
            self.stacks += 1
            self.steps += out[1]
            return out

        auction._bid_round, polish.auction_cpu, auction.assign_lockstep = counted_round, counted_host, counted_lockstep

    def close(self) -> dict:
        self.auction._bid_round, self.polish.auction_cpu = self._round, self._host
        self.auction.assign_lockstep = self._lockstep
        return {
            "device_rounds": self.rounds, "host_bids": self.host_bids, "lockstep_stacks": self.stacks,
            "lockstep_steps": self.steps,
        }  # fmt: skip


def run(case: str, X, Y, truth, device: str, log, **setting) -> dict:
    import hiref as hr
    from hiref.engine import repeat
    from hiref.engine.finish import auction, polish

    tail, capture, stacks = polish.HOST_TAIL, repeat.CAPTURE, auction.STACK_ON_DEVICE
    if setting.pop("all_host", False):
        polish.HOST_TAIL = 1 << 62
    if setting.pop("all_device", False):
        polish.HOST_TAIL = 0
    if not setting.pop("graphs", True):
        repeat.CAPTURE = False
    auction.STACK_ON_DEVICE = setting.pop("stacks_on_device", stacks)
    opt = None if truth is None else float(((X.astype(np.float64) - Y[truth]) ** 2).sum(1).mean())
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    counters = Counters()
    t = time.perf_counter()
    try:
        m = hr.solve(X, Y, device=device, progress=False, seed=0, **setting)
        if device == "cuda":
            torch.cuda.synchronize()
    finally:
        secs = time.perf_counter() - t
        counts = counters.close()
        polish.HOST_TAIL, repeat.CAPTURE, auction.STACK_ON_DEVICE = tail, capture, stacks
    timings = {k: round(v, 3) for k, v in m.timings.items()}
    row = {
        "case": case, "n": len(X), "device": device, "secs": round(secs, 3),
        "levels_s": round(sum(v for k, v in m.timings.items() if k.startswith("level_")), 3),
        "leaves_s": timings.get("leaves"), "finish_s": timings.get("polish"),
        **{k: v for k, v in timings.items() if k.startswith("polish_")}, **counts,
        "gap_pct": None if opt is None else 100 * (m.cost / opt - 1),
        "true_pct": None if truth is None else 100 * float(np.mean(m.perm == truth)),
        "bound_pct": None if m.gap_bound is None else 100 * m.gap_bound,
        "cuda_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if device == "cuda" else None,
        "t": round(time.time() - T0, 1),
    }  # fmt: skip
    line = json.dumps(row)
    print(line, flush=True)
    log.write(line + "\n")
    log.flush()
    return row


def main() -> None:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    OUT.mkdir(parents=True, exist_ok=True)
    log = (OUT / "gpu_finish.jsonl").open("a")
    try:  # the finish's host parts are compiled by numba
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = None
    env = {
        "torch": torch.__version__, "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_threads": torch.get_num_threads(), "python": sys.version.split()[0], "numba": numba_version,
    }  # fmt: skip
    print(json.dumps(env), flush=True)
    log.write(json.dumps(env) + "\n")
    if numba_version is None:
        sys.exit("numba is missing: install its wheels (numba, llvmlite) with the engine-only copy")
    if not cuda:  # a check of the script: the device's batched path, forced on the CPU
        from hiref.engine.finish import auction, batched_search

        batched_search.on_device = lambda d: True
        auction.LOCKSTEP_MIN_WORK = 1  # the small pairs' stacks in lockstep too
    sizes = [1 << 11, 1 << 12, 1 << 13, 1 << 14] if SMALL else [1 << 16, 1 << 18, 1 << 20, 1 << 22]
    rows, pairs = [], {}
    # 0. the leaves alone: stacks of 64-point leaf-like problems, in lockstep here against the host's solver
    # on the host (the leaves of 2^18, 2^20 and 2^22 points)
    for problems in (256, 1024) if SMALL else (1 << 12, 1 << 14, 1 << 16):
        rows.append(run_stacks(problems, device, log))
    for n in sizes[:3]:  # 1. the defaults on the device (the largest sizes come last)
        if left() < 60:
            break
        pairs[n] = planted_pair(n)
        rows.append(run("default", *pairs[n], device, log))
    for n in sizes[1:3]:  # 2. every auction on the host, then none, for the choice of HOST_TAIL
        if left() < 90 or n not in pairs:
            break
        rows.append(run("all_host", *pairs[n], device, log, all_host=True))
        if left() >= 90:  # and the tails too in batched rounds (HOST_TAIL = 0)
            rows.append(run("all_device", *pairs[n], device, log, all_device=True))
    for n in sizes[1:3]:  # 3. the levels alone, with and without CUDA graphs of the mirror-descent step
        if left() < 90 or n not in pairs:
            break
        for graphs in (True, False):
            case = f"levels_graphs_{graphs}"
            rows.append(run(case, *pairs[n], device, log, polish=False, refine=False, graphs=graphs))
        # the leaves and the candidates' subsamples on the host (default: in lockstep on the device)
        case = "levels_stacks_on_host"
        rows.append(run(case, *pairs[n], device, log, polish=False, refine=False, stacks_on_device=False))
    if cuda:  # 4. the same machine's CPU cores, for the ratio
        for n in sizes[:3]:
            if left() < 150 or n not in pairs:
                break
            rows.append(run("default", *pairs[n], "cpu", log))
    for n, needs in ((sizes[3], 120), (1 << 24, 240)):  # 5. 2^22, then 2^24, while time is left
        if not cuda or left() < needs:
            break
        rows.append(run("default", *planted_pair(n), device, log))
    # 5b. two independent samples (real sections' hard case for the finish): gap unknown, bound reported
    for n in sizes[1:3]:
        if left() < 120:
            break
        rows.append(run("two_samples", *two_samples(n), device, log))
    # 5c. two sections of one tissue, registered (the recipe's case; its prices defeat the quadratic
    # part of the batched search), on the device and, at the smaller size, the CPU cores
    for n in sizes[1:3]:
        for on in (device, "cpu") if cuda and n == sizes[1] else (device,):
            if left() < 120:
                break
            rows.append(run("sections", *sections_pair(n), on, log))
    # 5d. the same with 5 % of the first section's cells dropped (n != m, as between real sections): a
    # partial matching's auction runs on the host on every device (host_bids says how much of it)
    for on in (device, "cpu") if cuda else (device,):
        if left() < 120:
            break
        rows.append(run("sections_partial", *sections_pair(sizes[1], drop=0.05), on, log))
    # 6. high dimensions: exact pricing over all pairs (float32 ranking), on the device and the CPU
    for n, d in ((1 << 12, 30),) if SMALL else ((1 << 15, 30), (1 << 14, 100)):
        for on in (device, "cpu") if cuda else (device,):
            if left() < 90:
                break
            rows.append(run_mixture(n, d, on, log))
    # the paper's MERFISH size (its reference code: 600 s on a GPU; 2 CPU cores: 113 s), device only
    if cuda and not SMALL and left() >= 90:
        rows.append(run_mixture(84172, 98, device, log))
    columns = ["case", "n", "device", "secs", "host_s", "levels_s", "leaves_s", "finish_s", "polish_neighbours",
               "polish_prices", "polish_solve", "polish_pricing", "device_rounds", "host_bids", "lockstep_steps",
               "gap_pct", "true_pct", "bound_pct", "cuda_peak_gb"]  # fmt: skip
    print(" | ".join(columns))
    for r in rows:
        print(" | ".join(f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c)) for c in columns))


if __name__ == "__main__":
    main()
