"""Kernel launches and host synchronisations of a whole solve on the GPU path, counted on the CPU.

No GPU is needed: the finish's device path (batched searches, lockstep leaves, the batched
auction, conjugate gradients) is forced on (``batched_search.on_device``), and so are the
levels' choices for a device (two-way splits by a sort, all blocks of a level in one group);
the solve runs on the CPU, and a dispatch counter (``TorchDispatchMode``) counts every tensor operation that computes
(views and bare allocations left out): each is at least one kernel launch on CUDA. The steps
that ``hiref.engine.repeat`` runs from a CUDA graph count as one launch per replay after their
first eager run, as on CUDA. Host synchronisations are the operations whose result size or value
the host must wait for (``.item()``, ``nonzero``, boolean indexing, ``unique``, ...), and host
copies the tensors turned into numpy arrays or lists. Every count is attributed to a stage
(``levels``, ``leaves``, ``finish``) by the engine function that issued it, and the sites
issuing most are listed.

On a GPU a launch costs a few microseconds and a synchronisation some tens (it drains the
queue), so ``launch_floor_s`` (5 us per launch, 20 us per synchronisation: a model, not a
measurement) is the least time the GPU path can take whatever the device's speed. The counts
also say whether the path stays batched: a per-leaf or per-point loop shows up as counts that
grow with ``n``. The answers (gap to the planted optimum, true partners, ``gap_bound``) are
those of the device path, which must equal the CPU path's.

    python benchmarks/device_ops.py --n 16384 65536 262144 --out benchmarks/results/device_ops_cpu.json
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import hiref as hr
from hiref.engine import driver
from hiref.engine import repeat as repeat_module
from hiref.engine.finish import batched_search
from hiref.engine.split import balance

from _common import print_table, write_json

#: Operations that make the host wait for the device (their output's size or value is read).
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_consecutive", "equal",
           "is_nonzero", "repeat_interleave", "masked_scatter"}  # fmt: skip
#: Operations that launch no kernel (besides views): metadata or an allocation only.
NO_KERNEL = {"_unsafe_view", "empty", "empty_strided", "empty_like", "detach", "alias", "lift_fresh"}
#: Modelled costs on CUDA (seconds): one launch, one synchronisation.
LAUNCH_S, SYNC_S = 5e-6, 20e-6
ENGINE = str(Path("hiref") / "engine") + os.sep
COLUMNS = ["kind", "n", "launches", "syncs", "host_copies", "levels", "leaves", "finish", "finish_syncs",
           "launch_floor_s", "gap_pct", "true_pct", "bound_pct", "cpu_s"]  # fmt: skip


class Tally:
    """Counts per stage and per issuing site; ``replaying`` while a CUDA graph would run the step."""

    def __init__(self) -> None:
        self.launches: collections.Counter = collections.Counter()
        self.syncs: collections.Counter = collections.Counter()
        self.copies: collections.Counter = collections.Counter()
        self.sites: collections.Counter = collections.Counter()
        self.sync_sites: collections.Counter = collections.Counter()
        self.replaying = False

    def where(self) -> tuple[str, str]:
        """(stage, site) of the engine frame nearest the caller."""
        frame, site, stage = sys._getframe(2), None, "levels"
        while frame is not None:
            name = frame.f_code.co_filename
            if ENGINE in name:
                here = name.split(ENGINE)[1] + ":" + frame.f_code.co_name
                site = site or here
                if here.startswith("finish/leaves.py"):
                    stage = "leaves"
                if here.startswith(("finish/polish.py", "finish/windows.py")):
                    stage = "finish"
                    break
            frame = frame.f_back
        return stage, site or "?"


class Counting(TorchDispatchMode):
    """Counts every dispatched operation into ``tally`` (none while a graph replays)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self.tally = tally

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        if not self.tally.replaying and not func.is_view and name not in NO_KERNEL:
            stage, site = self.tally.where()
            self.tally.launches[stage] += 1
            self.tally.sites[site] += 1
            indices = args[1] if name in ("index", "index_put", "index_put_") and len(args) > 1 else ()
            boolean = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
            if name in SYNCING or boolean:
                self.tally.syncs[stage] += 1
                self.tally.sync_sites[site] += 1
        return func(*args, **(kwargs or {}))


def _graphs(tally: Tally):
    """``repeat`` and ``repeat_until`` that count as on CUDA: the first run eagerly, then one launch per replay."""
    eager_repeat = repeat_module.repeat

    def repeat(step, times, *, device, capture=True):
        if times < 3 or not capture:
            return eager_repeat(step, times, device=device, capture=capture)
        step()
        tally.launches[tally.where()[0]] += times - 1
        tally.replaying = True
        try:
            for _ in range(times - 1):
                step()
        finally:
            tally.replaying = False
        return None

    def repeat_until(step, done, *, every, most, device, capture=True):
        every, steps = max(1, int(every)), 0
        while True:
            if steps >= most:
                msg = f"no end after {steps} steps (at most {most} expected)"
                raise RuntimeError(msg)
            if steps and capture:
                tally.launches[tally.where()[0]] += 1
                tally.replaying = True
            try:
                for _ in range(every):
                    step()
            finally:
                tally.replaying = False
            steps += every
            if done():
                return steps

    return repeat, repeat_until


def _swap(replacements: dict) -> dict:
    """Replace every engine module's imported ``repeat``/``repeat_until`` by ``replacements``; returns the old."""
    import hiref.engine

    for info in pkgutil.walk_packages(hiref.engine.__path__, "hiref.engine."):  # the lazily imported ones too
        importlib.import_module(info.name)
    old = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("hiref.engine.") and module is not None and module is not repeat_module:
            for attr, new in replacements.items():
                if getattr(module, attr, None) is getattr(repeat_module, attr):
                    old[(module, attr)] = getattr(module, attr)
                    setattr(module, attr, new)
    return old


def count(n: int, kind: str, seed: int, top: int) -> dict:
    """Solve a planted pair with the device path forced on, counting; one result row."""
    X, Y, truth = hr.datasets.planted_pair(n, kind=kind, seed=seed)
    tally = Tally()
    repeat, repeat_until = _graphs(tally)
    copies = {}
    for method in ("numpy", "tolist", "item"):
        original = copies[method] = getattr(torch.Tensor, method)

        def copied(self, *a, _original=original, _method=method, **k):
            stage, site = tally.where()
            tally.copies[stage] += 1
            tally.sync_sites[f"{_method} {site}"] += 1
            return _original(self, *a, **k)

        setattr(torch.Tensor, method, copied)
    eager = _swap({"repeat": repeat, "repeat_until": repeat_until})
    # what differs between the CPU and another device: the finish's searches, the two-way
    # splits (a sort, not a partial selection) and the levels' blocks (one group, not several)
    on_device = {
        (batched_search, "on_device"): lambda device: True,
        (balance, "_by_selection"): lambda device: False,
        (driver, "_block_groups"): lambda shape, device: [(0, shape[0])],
    }
    on_device = {key: value for key, value in on_device.items() if hasattr(*key)}  # (an older engine lacks some)
    host = {key: getattr(*key) for key in on_device}
    for (module, attr), replacement in on_device.items():
        setattr(module, attr, replacement)
    t = time.perf_counter()
    try:
        with Counting(tally):
            matching = hr.solve(X, Y, seed=seed, progress=False)
    finally:
        for (module, attr), original in host.items():
            setattr(module, attr, original)
        for (module, attr), original in eager.items():
            setattr(module, attr, original)
        for method, original in copies.items():
            setattr(torch.Tensor, method, original)
    secs = time.perf_counter() - t
    optimum = float(((X - Y[truth]) ** 2).sum(1).mean())
    launches, syncs = sum(tally.launches.values()), sum(tally.syncs.values())
    print(f"\n{kind} n={n}: sites issuing most launches (steps replayed from CUDA graphs counted once)")
    for site, c in tally.sites.most_common(top):
        print(f"  {c:9,d}  {site}")
    print("sites issuing most synchronisations and host copies")
    for site, c in tally.sync_sites.most_common(top):
        print(f"  {c:9,d}  {site}")
    return {
        "kind": kind, "n": n, "seed": seed, "launches": launches, "syncs": syncs,
        "host_copies": sum(tally.copies.values()), **{s: tally.launches[s] for s in ("levels", "leaves", "finish")},
        "finish_syncs": tally.syncs["finish"], "launch_floor_s": round(launches * LAUNCH_S + syncs * SYNC_S, 3),
        "gap_pct": 100 * (matching.cost - optimum) / optimum, "true_pct": 100 * float(np.mean(matching.perm == truth)),
        "bound_pct": None if matching.gap_bound is None else 100 * matching.gap_bound, "cpu_s": round(secs, 1),
        "top_sites": dict(tally.sites.most_common(top)), "top_sync_sites": dict(tally.sync_sites.most_common(top)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--kind", default="density", choices=["density", "lattice", "local"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=8, help="sites listed per run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [count(n, args.kind, args.seed, args.top) for n in args.n]
    print_table(rows, COLUMNS, "GPU path counted on the CPU (launches with CUDA graphs; floor: a model)")
    if args.out is not None:
        write_json(args.out, {"rows": rows, "sites": sites_of(rows), "launch_s": LAUNCH_S, "sync_s": SYNC_S})


def sites_of(rows: list[dict]) -> list[dict]:
    """The sites issuing most, one row each (taken out of ``rows``: flat rows make readable tables)."""
    out = []
    for row in rows:
        for what, key in (("launches", "top_sites"), ("syncs and copies", "top_sync_sites")):
            out += [{"n": row["n"], "what": what, "site": s, "count": c} for s, c in row.pop(key).items()]
    return out


if __name__ == "__main__":
    main()
