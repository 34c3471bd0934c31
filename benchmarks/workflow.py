"""The whole AnnData recipe at atlas scale: time and peak memory of every step, and the concurrency cliff.

**Recipe** (README's): ``hr.pp.register(a, b)``, ``hr.tl.align(a, b,
spatial_key="spatial_registered")`` (the default ``use_rep="auto"``), ``hr.tl.transfer`` of every
gene, and ``write_h5ad`` of both objects. Data: ``hr.datasets.simulate_slices`` (this checkout's,
for every source tree) with ``n`` cells per side, ``--genes`` genes, Poisson counts: dense on
many genes by default, sparse with ``--depth`` (mean counts per cell, e.g. 150 for a 500-gene
imaging panel). Every case runs in a fresh process, once per
source tree given (``--src``, default this checkout's ``src``; pass an older checkout as a second
``--src`` to compare old and new in the same run). Reported per step: seconds, and the process's
peak resident memory after it (Linux ``ru_maxrss``; the data alone is the ``data`` row).
``--unregistered`` skips ``hr.pp.register`` and aligns the sections where they lie (the second
rotated and shifted): position alone then predicts expression poorly, so ``use_rep="auto"``
weights expression in, and the finish works in ~56 dimensions (position and joint PCs).

**Concurrency** (``--concurrency``): three solves of n = 4096 (half-moon -> S-curve) in one
process alone, then in two processes started together; the ratio of each process's time to the
time alone. A ratio near 1 means the engine shares the machine well (2 on a machine whose every
core the two processes need).

Examples
--------
    python benchmarks/workflow.py --n 10000 100000 1000000 --genes 60 --json benchmarks/results/workflow_cpu.json
    python benchmarks/workflow.py --n 100000 --genes 500 --depth 150 --src src --src /tmp/old/src
    python benchmarks/workflow.py --n 50000 --unregistered --src /tmp/old/src --src src
    python benchmarks/workflow.py --concurrency --n
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STEPS = ["data", "register", "align", "transfer", "write"]


def _peak_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def _simulator():
    """This checkout's ``simulate_slices``, whichever source tree runs the recipe (same data for all)."""
    import importlib
    import types

    # a package of its own around this checkout's datasets folder, so that the module's relative
    # imports (its tissue geometry) resolve there too
    package = types.ModuleType("_bench_datasets")
    package.__path__ = [str(HERE.parent / "src" / "hiref" / "datasets")]
    sys.modules.setdefault("_bench_datasets", package)
    return importlib.import_module("_bench_datasets._simulated_slices").simulate_slices


def _worker_recipe(n: int, genes: int, depth: float, out: Path, *, registered: bool = True) -> None:
    """One case of the recipe in this process; writes ``{step: [seconds, peak GB]}`` to ``out``."""
    import hiref as hr

    record: dict[str, list[float]] = {}

    def step(name: str, t0: float) -> None:
        record[name] = [time.perf_counter() - t0, _peak_gb()]
        print(f"  {name:9s} {record[name][0]:8.2f} s   peak {record[name][1]:.2f} GB", flush=True)

    t0 = time.perf_counter()
    depth_option = {"mean_count": depth / genes} if depth > 0 else {}
    a, b = _simulator()(n_obs=n, n_genes=genes, seed=0, **depth_option)
    step("data", t0)
    key = "spatial"
    if registered:
        t0 = time.perf_counter()
        hr.pp.register(a, b)
        step("register", t0)
        key = "spatial_registered"
    t0 = time.perf_counter()
    hr.tl.align(a, b, spatial_key=key, progress=False)
    step("align", t0)
    record["expression_weight"] = [float(a.uns["hiref"]["params"]["auto_weight"]), 0.0]
    record["gap_bound"] = [float(a.uns["hiref"]["gap_bound"] or float("nan")), 0.0]
    t0 = time.perf_counter()
    pred = hr.tl.transfer(a, b, spatial_key=key)
    step("transfer", t0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        a.write_h5ad(Path(tmp) / "a.h5ad")
        b.write_h5ad(Path(tmp) / "b.h5ad")
    step("write", t0)
    record["n_pred_genes"] = [float(pred.n_vars), 0.0]
    out.write_text(json.dumps(record))


def _worker_solves(out: Path) -> None:
    """Three solves of n = 4096; writes the seconds to ``out``."""
    import hiref as hr

    X, Y = hr.datasets.halfmoon_scurve(4096, seed=0)
    hr.solve(X[:256], Y[:256], progress=False)  # warm-up: imports, first-call set-up
    t0 = time.perf_counter()
    for seed in range(3):
        hr.solve(X, Y, seed=seed, progress=False)
    out.write_text(json.dumps(time.perf_counter() - t0))


def _spawn(src: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env or {}), "PYTHONPATH": src}
    return subprocess.Popen([sys.executable, __file__, *args], env=env)


def recipe(
    ns: list[int], genes: list[int], srcs: list[str], depth: float = 0.0, *, registered: bool = True
) -> list[dict]:
    """Run every case in a fresh process per source tree; one row per (case, tree)."""
    rows = []
    for g in genes:
        for n in ns:
            for src in srcs:
                print(f"n = {n:,} per side, {g} genes, src {src}", flush=True)
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "out.json"
                    t0 = time.perf_counter()
                    proc = _spawn(src, ["--worker-recipe", str(n), str(g), str(depth), str(int(registered)), str(out)])
                    status = proc.wait()
                    wall = time.perf_counter() - t0
                    record = json.loads(out.read_text()) if status == 0 and out.exists() else {}
                row = {"n": n, "genes": g, "depth": depth or "default", "registered": registered, "src": src}
                row["status"] = status
                for name in ("expression_weight", "gap_bound"):
                    if name in record:
                        row[name] = record[name][0]
                row["process_s"] = wall
                for name in STEPS:
                    if name in record:
                        row[f"{name}_s"], row[f"{name}_peak_GB"] = record[name]
                row["recipe_s"] = sum(row.get(f"{s}_s", 0.0) for s in STEPS if s != "data")
                row["peak_GB"] = max((row.get(f"{s}_peak_GB", 0.0) for s in STEPS), default=0.0)
                rows.append(row)
    return rows


def concurrency(srcs: list[str], thread_settings: list[str | None]) -> list[dict]:
    """Three solves alone, then two processes at once, per source tree and thread setting."""
    rows = []
    for src in srcs:
        for threads in thread_settings:
            env = {} if threads is None else {"HIREF_NUM_THREADS": threads}
            with tempfile.TemporaryDirectory() as tmp:
                outs = [Path(tmp) / f"{k}.json" for k in range(3)]
                _spawn(src, ["--worker-solves", str(outs[0])], env).wait()
                alone = json.loads(outs[0].read_text())
                procs = [_spawn(src, ["--worker-solves", str(o)], env) for o in outs[1:]]
                for p in procs:
                    p.wait()
                pair = [json.loads(o.read_text()) for o in outs[1:]]
            row = {"src": src, "HIREF_NUM_THREADS": threads or "(default)", "alone_s": alone}
            row.update({"pair_s": max(pair), "ratio": max(pair) / alone})
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000], help="cells per side")
    parser.add_argument("--genes", type=int, nargs="+", default=[60])
    parser.add_argument(
        "--depth",
        type=float,
        default=0.0,
        help="mean counts per cell (sparse counts, as imaging panels have); default: the simulator's 2.4 per gene",
    )
    parser.add_argument("--src", action="append", help="source tree(s) to run (default: this checkout's src)")
    parser.add_argument(
        "--unregistered", action="store_true", help="align the sections where they lie, without hr.pp.register"
    )
    parser.add_argument("--concurrency", action="store_true", help="also run the concurrency section")
    parser.add_argument("--threads", nargs="*", default=["default"], help="HIREF_NUM_THREADS values to compare")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker-recipe", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--worker-solves", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_recipe:
        n, genes, depth, registered, out = args.worker_recipe
        _worker_recipe(int(n), int(genes), float(depth), Path(out), registered=registered == "1")
        return
    if args.worker_solves:
        _worker_solves(Path(args.worker_solves))
        return
    from _common import print_table, write_json

    srcs = args.src or [str(HERE.parent / "src")]
    rows = recipe(args.n, args.genes, srcs, args.depth, registered=not args.unregistered) if args.n else []
    if rows:
        cols = ["n", "genes", "depth", "src", *[f"{s}_s" for s in STEPS], "recipe_s", "peak_GB"]
        cols += ["expression_weight", "gap_bound"]
        print_table(rows, cols, "the recipe: seconds per step, peak resident memory (GB)")
    conc = []
    if args.concurrency:
        conc = concurrency(srcs, [None if t == "default" else t for t in args.threads])
        print_table(conc, ["src", "HIREF_NUM_THREADS", "alone_s", "pair_s", "ratio"], "two processes at once")
    if args.json:
        write_json(args.json, {"recipe": rows, "concurrency": conc})


if __name__ == "__main__":
    main()
