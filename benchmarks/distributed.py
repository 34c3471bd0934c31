"""Distributed HiRef: one process against several, on the same data, in the same run.

For every ``n`` in ``--log2n`` (default 20 and 22) and every process count in ``--world``
(default 1 and 2), launches ``torchrun --nproc-per-node W`` on this script (gloo on CPU, NCCL
with ``--device cuda``), where every rank builds only its own rows of the half-moon -> S-curve
pair (d = 2, or ``--dim`` with noise coordinates; the rows come in 16 chunks with their own
seeds, so the data do not depend on the process count) and calls
``hr.solve(..., distributed=True)``. ``W = 1`` runs the plain single-process engine
(``distributed=False``) in one process. CPU threads are split evenly: ``--threads`` in total
(default: all cores), ``threads // W`` per process.

Reported per run: total time, cost and its difference to the single-process cost of the same
``n``; per rank: time and bytes exchanged per level (bytes this rank contributed to all-reduces
and all-gathers, plus the rows it sent in the shard exchange), peak resident memory (Linux
``VmHWM``) of each rank.

Examples
--------
    python benchmarks/distributed.py --json benchmarks/results/distributed_cpu.json
    python benchmarks/distributed.py --log2n 16 --world 1 2 3
    python benchmarks/distributed.py --log2n 20 --dim 64 --json benchmarks/results/distributed_d64_cpu.json
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

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

N_CHUNKS = 16


def _vmhwm() -> int:
    with open("/proc/self/status") as status:  # noqa: PTH123
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _rows(n: int, rank: int, world: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's rows of the benchmark pair: chunks ``[rank * 16 / world, (rank + 1) * 16 / world)``.

    Above 2 dimensions, every point gets ``dim - 2`` more coordinates of Gaussian noise (sd 0.1).
    """
    import hiref as hr

    bounds = [(n * k) // N_CHUNKS for k in range(N_CHUNKS + 1)]
    first, last = (rank * N_CHUNKS) // world, ((rank + 1) * N_CHUNKS) // world
    xs, ys = [], []
    for k in range(first, last):
        X, Y = hr.datasets.halfmoon_scurve(bounds[k + 1] - bounds[k], seed=1000 + k)
        if dim > 2:
            rng = np.random.default_rng(2000 + k)
            X = np.hstack([X, 0.1 * rng.standard_normal((len(X), dim - 2))])
            Y = np.hstack([Y, 0.1 * rng.standard_normal((len(Y), dim - 2))])
        xs.append(X)
        ys.append(Y)
    return np.concatenate(xs), np.concatenate(ys)


def worker(args: argparse.Namespace) -> None:
    """One rank of one run (started by torchrun, or alone for one process)."""
    import torch

    import hiref as hr

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(max(1, args.threads // world))
    X, Y = _rows(args.points, rank, world, args.dim)
    warm = hr.datasets.halfmoon_scurve(512, seed=0)
    hr.solve(*warm, progress=False, device=args.device)  # imports and kernels, outside the timing
    t0 = time.perf_counter()
    m = hr.solve(X, Y, distributed=world > 1, progress=False, device=args.device, refine=args.refine)
    elapsed = time.perf_counter() - t0
    record = {
        "rank": rank,
        "time_s": elapsed,
        "timings": m.timings,
        "communication": m.communication,
        "peak_rss_bytes": _vmhwm(),
        "rows": int(X.shape[0]),
    }
    if world > 1:
        import torch.distributed as dist

        records = [None] * world
        dist.all_gather_object(records, record)
        dist.destroy_process_group()
    else:
        records = [record]
    if rank == 0:
        valid = bool((np.sort(m.perm) == np.arange(args.points)).all())
        payload = {"n": args.points, "world": world, "cost": m.cost, "valid": valid, "schedule": m.schedule}
        payload["ranks"] = records
        Path(args.out).write_text(json.dumps(payload))


def run(n: int, world: int, args: argparse.Namespace) -> dict:
    """Launch one run and return what its rank 0 wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        common = [
            __file__, "--worker", "--points", str(n), "--threads", str(args.threads), "--out", str(out),
            "--device", args.device, "--dim", str(args.dim),
        ] + (["--refine"] if args.refine else [])  # fmt: skip
        if world == 1:
            cmd = [sys.executable, *common]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}", *common]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // world))}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log2n", type=int, nargs="+", default=[20, 22])
    parser.add_argument("--world", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=2, help="dimensions (extra ones are small noise; default 2)")
    parser.add_argument("--refine", action="store_true")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--from-json", help="print (and with --json rewrite) the tables of an earlier run's JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from _common import print_table, write_json

    raw: dict = {}
    if args.from_json:
        raw = json.loads(Path(args.from_json).read_text())
        results = raw.get("_runs", raw.get("runs"))
        args.log2n = []
    else:
        results = []
    for log2n in args.log2n:
        single = None
        for world in sorted(args.world):
            res = run(1 << log2n, world, args)
            if world == 1:
                single = res["cost"]
            res["cost_vs_single_pct"] = None if single is None else 100 * (res["cost"] / single - 1)
            results.append(res)
            diff = res["cost_vs_single_pct"]
            vs = "" if diff is None else f", {diff:+.3f} % vs 1 process"
            rss = [round(r["peak_rss_bytes"] / 2**30, 2) for r in res["ranks"]]
            print(f"n=2^{log2n} processes={world}: {res['ranks'][0]['time_s']:.1f} s, cost {res['cost']:.6f}{vs}, "
                  f"peak RSS per rank {rss} GB", flush=True)  # fmt: skip
    tables = summarize(results)
    print_table(tables["summary"], list(tables["summary"][0]), "Distributed HiRef (one row per rank)")
    print_table(tables["seconds_per_stage"], list(tables["seconds_per_stage"][0]), "Seconds per stage")
    if tables["MB_sent_per_stage"]:
        print_table(tables["MB_sent_per_stage"], list(tables["MB_sent_per_stage"][0]), "MB sent per stage")
    if args.json:
        # Rewritten tables keep the machine and settings of the run that measured them.
        kept = {k: raw[k] for k in ("machine", "threads", "dim") if k in raw} if args.from_json else {}
        write_json(args.json, {"threads": args.threads, "dim": args.dim, **kept, **tables, "_runs": results})


def _stages(timings: dict[str, float]) -> list[str]:
    levels = sorted((k for k in timings if k.startswith("level_")), key=lambda k: int(k[6:]))
    return (
        [k for k in ("sketch",) if k in timings]
        + levels
        + [k for k in ("shard", "leaves", "refine", "gather") if k in timings]
    )


def summarize(results: list[dict]) -> dict[str, list[dict]]:
    """The tables of a run: one row per rank, seconds per stage, MB sent per stage."""
    summary, seconds, sent = [], [], []
    for res in results:
        for rec in res["ranks"]:
            head = {"n": res["n"], "processes": res["world"], "rank": rec["rank"]}
            summary.append({
                **head, "time_s": rec["time_s"], "cost": res["cost"],
                "cost_vs_1_process_pct": res["cost_vs_single_pct"], "valid": res["valid"],
                "peak_rss_GB": rec["peak_rss_bytes"] / 2**30, "MB_sent": sum(rec["communication"].values()) / 2**20,
            })  # fmt: skip
            seconds.append({**head, **{k: round(rec["timings"][k], 3) for k in _stages(rec["timings"])}})
            if res["world"] > 1:
                sent.append({**head, **{k: round(v / 2**20, 3) for k, v in rec["communication"].items()}})
    # One set of columns for every row, in stage order (runs differ in their number of levels).
    head_keys = ("n", "processes", "rank")
    stages = _stages({k: 0.0 for row in seconds for k in row if k not in head_keys})
    seconds = [{**{k: row[k] for k in head_keys}, **{k: row.get(k) for k in stages}} for row in seconds]
    comm_stages = ["setup", *(k for k in stages if k in {s for row in sent for s in row})]
    sent = [{**{k: row[k] for k in head_keys}, **{k: row.get(k) for k in comm_stages}} for row in sent]
    return {"summary": summary, "seconds_per_stage": seconds, "MB_sent_per_stage": sent}


if __name__ == "__main__":
    main()
