"""Scaling with n (HiRef paper, Fig. S2): time and peak memory of hiref and of the dense peers.

Half-moon -> S-curve (``hiref.datasets.halfmoon_scurve``), d = 2, squared Euclidean cost
(``--cost``), n = 2**k points per side for k from ``--min-log2n`` (10) to ``--max-log2n`` (20;
22 is fine for hiref). Every solve runs in a fresh process (like the ``scale`` section of
``engine.py``), so its peak resident memory (Linux ``VmHWM``) is its own; ``baseline_rss_GB`` is
that process's peak before the solve (interpreter, imports, the data and, for hiref, a warm-up
solve of 512 points), ``peak_rss_GB`` the peak including the solve.

Solvers (``--solvers``):

- ``hiref``: ``hr.solve`` (``--refine`` adds ``hiref+refine``), every size;
- ``exact``: scipy ``linear_sum_assignment`` on the dense cost matrix;
- ``emd``: POT network simplex ``ot.emd``, uniform weights;
- ``sinkhorn``: POT ``ot.sinkhorn``, reg 0.05 on the cost divided by its largest entry, at most
  1000 iterations (the time to the coupling, without rounding it to a matching).

A peer stops at the first size that exceeds ``--peer-timeout`` seconds (default 120; the process
is killed) or whose dense matrices would not fit in ``--peer-max-gb`` (estimated beforehand:
8 n^2 bytes per dense n x n float64 array, 2 arrays for exact, 5 for emd, 6 for Sinkhorn; by
default 75 % of the machine's memory), or that dies; larger sizes are skipped, and the JSON
records where and why it stopped. The plot (``--plot``) shows time against n on log-log axes,
with the slope of a least-squares fit of log time on log n (over n >= ``--fit-from``, 4096 by
default, or all points if fewer than two qualify) in the legend, and peak memory beside it.

Examples
--------
    python benchmarks/scaling.py --json benchmarks/results/scaling_cpu.json --plot benchmarks/results/scaling_cpu.png
    python benchmarks/scaling.py --max-log2n 13 --peer-timeout 30
    python benchmarks/scaling.py --solvers hiref --max-log2n 22 --device cuda
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_module
import resource
import time

import numpy as np

# Heavy imports (torch, hiref, POT) happen inside the functions: every solve runs in a spawned
# process that imports this module, and a peer's memory peak should not include torch.

SOLVERS = ("hiref", "exact", "emd", "sinkhorn")
DENSE_ARRAYS = {"exact": 2, "emd": 5, "sinkhorn": 6}  # measured: ~8, ~38 and ~45 bytes per entry


def _rss() -> int:
    """Peak resident memory of this process in bytes.

    Linux's ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` (the fallback
    elsewhere) would also count the parent's memory at the fork that preceded the spawn.
    """
    try:
        with open("/proc/self/status") as status:  # noqa: PTH123
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(solver: str, X: np.ndarray, Y: np.ndarray, options: dict, queue: mp.Queue) -> None:
    n = len(X)
    extra: dict = {}
    if solver.startswith("hiref"):
        import torch

        import hiref as hr

        if options.get("torch_threads"):
            torch.set_num_threads(options["torch_threads"])
        hr.solve(X[:512], Y[:512], cost=options["cost"], refine=options["refine"], device=options["device"],
                 progress=False)  # fmt: skip  # warm-up
        queue.put({"started": True, "baseline": _rss()})
        t0 = time.perf_counter()
        m = hr.solve(X, Y, cost=options["cost"], refine=options["refine"], device=options["device"], progress=False)
        seconds = time.perf_counter() - t0
        peak = _rss()
        cost, perm = m.cost, m.perm
        extra = {"timings": m.timings, "schedule": m.schedule, "torch_threads": torch.get_num_threads()}
        cuda = [v for k, v in m.memory.items() if k.startswith("cuda")]
        if cuda:
            extra["peak_cuda_GB"] = max(cuda) / 2**30
    else:
        import _peers as peers

        if solver != "exact":
            peers.require_pot()
        queue.put({"started": True, "baseline": _rss()})
        if solver == "exact":
            res = peers.exact(X, Y, options["cost"])
        elif solver == "emd":
            res = peers.emd(X, Y, options["cost"])
        else:
            res = peers.sinkhorn(X, Y, options["cost"], reg=0.05, normalise="max", max_iter=1000)
            extra = {"iterations": res["iterations"], "converged": res["converged"]}
        seconds = res["seconds"]
        peak = _rss()  # before the evaluation below builds its own cost matrix
        C = peers.dense_cost(X, Y, options["cost"])
        perm = res.get("perm")
        cost = peers.matching_cost(C, perm) if perm is not None else peers.coupling_cost(C, res["coupling"])
    valid = None if perm is None else bool(np.array_equal(np.sort(perm), np.arange(n)))
    queue.put({"seconds": seconds, "peak": peak, "cost": float(cost), "valid": valid, **extra})


def run_one(solver: str, X: np.ndarray, Y: np.ndarray, options: dict, timeout: float | None) -> dict:
    """One solve in a fresh process; ``status`` is ``ok``, ``timeout`` (killed) or ``died``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(solver, X, Y, options, queue))
    proc.start()
    started, baseline, result = None, None, None
    while result is None:
        try:
            msg = queue.get(timeout=1.0)
        except queue_module.Empty:
            if not proc.is_alive():
                proc.join()
                return {"status": "died", "reason": f"process exited with code {proc.exitcode} (out of memory?)"}
            if started is not None and timeout is not None and time.perf_counter() - started > timeout:
                proc.kill()
                proc.join()
                return {"status": "timeout", "reason": f"no result within {timeout:g} s (killed)"}
            continue
        if msg.get("started"):
            started, baseline = time.perf_counter(), msg["baseline"]
        else:
            result = msg
    proc.join()
    return {
        "status": "ok",
        "seconds": result.pop("seconds"),
        "peak_rss_GB": result.pop("peak") / 2**30,
        "baseline_rss_GB": baseline / 2**30,
        **result,
    }


def _memory_limit_gb() -> float:
    return 0.75 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def fit_slope(rows: list[dict], fit_from: int) -> float | None:
    """Slope of log(seconds) against log(n) over the successful sizes (n >= fit_from if two or more)."""
    ok = [(r["n"], r["seconds"]) for r in rows if r["status"] == "ok"]
    use = [p for p in ok if p[0] >= fit_from]
    use = use if len(use) >= 2 else ok
    if len(use) < 2:
        return None
    n, t = np.log([p[0] for p in use]), np.log([p[1] for p in use])
    return float(np.polyfit(n, t, 1)[0])


def plot(rows: list[dict], slopes: dict, path: str, title: str) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from hiref.engine.options import AUTO_FINISH_MAX

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.3))
    for i, solver in enumerate(dict.fromkeys(r["solver"] for r in rows)):
        mine = [r for r in rows if r["solver"] == solver]
        ok = [r for r in mine if r["status"] == "ok"]
        slope = slopes.get(solver)
        label = solver + (f" (slope {slope:.2f})" if slope is not None else "")
        color = f"C{i}"
        ax_t.plot([r["n"] for r in ok], [r["seconds"] for r in ok], "o-", color=color, label=label)
        ax_m.plot([r["n"] for r in ok], [r["peak_rss_GB"] for r in ok], "o-", color=color, label=solver)
        for r in mine:
            if r["status"] not in ("ok", "skipped"):
                y = r["limit_s"] if r["status"] == "timeout" else (ok[-1]["seconds"] if ok else 1.0)
                ax_t.plot(r["n"], y, "x", color=color, ms=9)
                ax_t.annotate(r["status"], (r["n"], y), fontsize=7, color=color, xytext=(3, 3),
                              textcoords="offset points")  # fmt: skip
    for ax, label in ((ax_t, "time (s)"), (ax_m, "peak resident memory (GB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n (points per side)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if any(r["solver"] == "hiref" and r["n"] > AUTO_FINISH_MAX for r in rows):
        ax_t.axvline(AUTO_FINISH_MAX, color="0.5", ls=":", lw=1)
        where = {"xycoords": ("data", "axes fraction"), "xytext": (-3, 0), "textcoords": "offset points"}
        note = "hiref polishes by default\nup to here"
        ax_t.annotate(note, (AUTO_FINISH_MAX, 0.02), fontsize=7, color="0.35", ha="right", **where)
    ax_t.set_title("time (x: stopped: time cap, memory or crash)", fontsize=9)
    ax_m.set_title("peak RSS of the solving process", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-log2n", type=int, default=10)
    parser.add_argument("--max-log2n", type=int, default=20)
    parser.add_argument("--solvers", default=",".join(SOLVERS), help=f"comma-separated subset of {','.join(SOLVERS)}")
    parser.add_argument("--refine", action="store_true", help="also time hiref with refine=True")
    parser.add_argument("--cost", default="sqeuclidean", choices=["sqeuclidean", "euclidean"])
    parser.add_argument("--peer-timeout", type=float, default=120.0, help="seconds per peer solve before it stops")
    parser.add_argument("--peer-max-gb", type=float, default=None, help="memory a peer may plan for (GB)")
    parser.add_argument("--fit-from", type=int, default=4096, help="smallest n of the slope fits")
    parser.add_argument("--device", default=None, help="torch device of hiref (default: cuda if available)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for hiref")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()

    from hiref.datasets import halfmoon_scurve

    from _common import print_table, write_json

    solvers = args.solvers.split(",")
    unknown = set(solvers) - set(SOLVERS)
    if unknown:
        parser.error(f"unknown solvers {sorted(unknown)}; choose from {SOLVERS}")
    if set(solvers) & {"emd", "sinkhorn"}:
        import _peers

        _peers.require_pot()
    if "hiref" in solvers and args.refine:
        solvers.insert(solvers.index("hiref") + 1, "hiref+refine")
    max_gb = args.peer_max_gb if args.peer_max_gb is not None else _memory_limit_gb()
    sizes = [2**k for k in range(args.min_log2n, args.max_log2n + 1)]
    options = {"cost": args.cost, "device": args.device, "torch_threads": args.torch_threads}
    rows: list[dict] = []
    stops: dict[str, dict] = {}
    for solver in solvers:
        peer = not solver.startswith("hiref")
        for n in sizes:
            row: dict = {"solver": solver, "n": n}
            if solver in stops:
                rows.append({**row, "status": "skipped", "reason": f"stopped at n = {stops[solver]['n']}"})
                continue
            need = DENSE_ARRAYS.get(solver, 0) * 8 * n * n / 2**30
            if peer and need > max_gb:
                result = {"status": "memory", "reason": f"needs ~{need:.1f} GB of dense arrays > {max_gb:.1f} GB"}
            else:
                X, Y = halfmoon_scurve(n, seed=0)
                result = run_one(solver.split("+")[0], X, Y, {**options, "refine": solver == "hiref+refine"},
                                 args.peer_timeout if peer else None)  # fmt: skip
            row.update(result)
            if peer:
                row["limit_s"] = args.peer_timeout
            rows.append(row)
            if row["status"] == "ok":
                print(f"  {solver:13s} n = 2^{n.bit_length() - 1:<2d} {row['seconds']:9.3f} s  "
                      f"peak RSS {row['peak_rss_GB']:6.2f} GB (baseline {row['baseline_rss_GB']:.2f})  "
                      f"cost {row['cost']:.6f}", flush=True)  # fmt: skip
            else:
                stops[solver] = {"n": n, "status": row["status"], "reason": row["reason"]}
                print(f"  {solver:13s} n = 2^{n.bit_length() - 1:<2d} stopped: {row['reason']}", flush=True)
    slopes = {s: fit_slope([r for r in rows if r["solver"] == s], args.fit_from) for s in solvers}
    shown = [r for r in rows if r["status"] != "skipped"]
    print_table(
        shown,
        ["solver", "n", "status", "seconds", "peak_rss_GB", "baseline_rss_GB", "cost"],
        f"scaling: halfmoon -> S-curve, d = 2, {args.cost}; peers capped at {args.peer_timeout:g} s",
    )
    print("\nfitted slopes (log time vs log n): " + ", ".join(f"{s} {v:.2f}" for s, v in slopes.items() if v))
    for solver, stop in stops.items():
        print(f"{solver} stopped at n = {stop['n']}: {stop['reason']}")
    settings = {
        "pair": "halfmoon_scurve",
        "cost": args.cost,
        "peer_timeout_s": args.peer_timeout,
        "peer_max_gb": max_gb,
        "fit_from": args.fit_from,
        "device": args.device,
        "sinkhorn": {"reg": 0.05, "normalise": "max", "max_iter": 1000, "stopThr": 1e-9},
    }
    if args.json:
        write_json(args.json, {"settings": settings, "scaling": rows, "slopes": slopes, "stops": stops})
    if args.plot:
        plot(rows, slopes, args.plot, f"halfmoon -> S-curve, d = 2, {args.cost}")


if __name__ == "__main__":
    main()
