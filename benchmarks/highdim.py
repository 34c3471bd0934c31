"""High-dimensional benchmark: hiref against mini-batch exact OT, in the same run.

Two Gaussian mixtures (``hiref.datasets.gaussian_mixtures``: shared components, different
weights, moved and rescaled), n points per side in d dimensions, squared Euclidean cost.
Mini-batch OT pairs random batches of ``--batch`` points of X and Y and solves each pair
exactly (scipy ``linear_sum_assignment``); it is the usual scalable baseline. In high
dimension its exact solves are slow (minutes per 4096-batch at d = 2048), so ``--max-batches``
solves a few random batches only: their mean cost estimates the full run's without bias, and
the reported time is scaled to all batches. Every solver runs in a fresh process; its peak
resident memory (``peak_rss_GB``, Linux ``VmHWM``) is reset once the data are made, so it is the
solve's own, data included (``baseline_rss_GB``: the process with the data, before the solve;
``data_peak_rss_GB``: the peak while making them).

Examples
--------
    python benchmarks/highdim.py                         # n = 65,536; d = 50 and 2048
    python benchmarks/highdim.py --n 16384 --d 50 --json benchmarks/results/highdim.json
    python benchmarks/highdim.py --priced --json benchmarks/results/highdim_priced_cpu.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import hiref as hr

from _common import print_table, reset_peak, rss_gb, write_json


def _data(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    X, Y = hr.datasets.gaussian_mixtures(n, d, seed=0)
    return X.astype(np.float32), Y.astype(np.float32)


def minibatch_cost(
    X: np.ndarray, Y: np.ndarray, batch: int, max_batches: int | None = None, seed: int = 0
) -> tuple[float, int]:
    """Mean cost of mini-batch exact OT: random batches of X and Y matched exactly.

    With ``max_batches``, only that many of the ``n / batch`` batches are solved: every random
    batch has the same expected cost, so their mean estimates the full mean without bias.
    Returns the mean cost per pair and the number of batches solved.
    """
    n = len(X)
    rng = np.random.default_rng(seed)
    px, py = rng.permutation(n), rng.permutation(n)
    total, count, solved = 0.0, 0, 0
    for lo in range(0, n, batch):
        if max_batches is not None and solved >= max_batches:
            break
        xb = torch.as_tensor(X[px[lo : lo + batch]], dtype=torch.float64)
        yb = torch.as_tensor(Y[py[lo : lo + batch]], dtype=torch.float64)
        C = ((xb * xb).sum(1)[:, None] + (yb * yb).sum(1)[None, :] - 2 * xb @ yb.T).clamp_min(0).numpy()
        reduced = C - C.min(1, keepdims=True)
        reduced -= reduced.min(0, keepdims=True)
        rows, cols = linear_sum_assignment(reduced)
        total += C[rows, cols].sum()
        count += len(rows)
        solved += 1
    return total / count, solved


def _worker(solver: str, n: int, d: int, options: dict, queue: mp.Queue) -> None:
    X, Y = _data(n, d)
    data_peak = rss_gb("VmHWM")  # generating the mixtures in float64 peaks higher than some solvers
    baseline = rss_gb("VmRSS")
    own_peak = reset_peak()
    t0 = time.perf_counter()
    if solver == "minibatch":
        cost, solved = minibatch_cost(X, Y, options["batch"], options.get("max_batches"))
        total = -(-n // options["batch"])
        extra = {"batches_solved": solved, "batches_total": total}
    else:
        options = dict(options)
        if "pricing_limit_log2" in options:  # the finish's pricing limit of an older version
            from hiref.engine import driver

            driver.BOUND_BUDGET_CPU = 2.0 ** options.pop("pricing_limit_log2")
        m = hr.solve(X, Y, progress=False, **options)
        cost = m.cost
        extra = {"schedule": m.schedule, "timings": m.timings, "lower_bound": m.lower_bound, "gap_bound": m.gap_bound}
    seconds = time.perf_counter() - t0
    if solver == "minibatch":
        seconds *= extra["batches_total"] / extra["batches_solved"]  # time of the full mini-batch run
    peak = rss_gb("VmHWM") if own_peak else max(data_peak, rss_gb("VmHWM"))
    queue.put(
        {
            "solver": solver,
            "n": n,
            "d": d,
            "options": options,
            "cost": cost,
            "seconds": seconds,
            "peak_rss_GB": peak,
            "baseline_rss_GB": baseline,
            "data_peak_rss_GB": data_peak,
            **extra,
        }
    )


def run(solver: str, n: int, d: int, options: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(solver, n, d, options, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run_priced(sizes: list[str], json_path: str | None) -> None:
    """hiref's default, whose finish prices every point up to 2^40, against the last limit (2^36).

    Each run reports its cost and certificate; ``above_best_bound_%`` is its cost above the
    best lower bound of the runs of its size (the priced run's is within ``gap_bound`` of the
    optimum, so this is the other run's distance from the optimum, up to that). Sizes within
    the last limit run once (both limits price them).
    """
    rows = []
    for size in sizes:
        n, d = (int(v) for v in size.split(":"))
        pair = []
        runs = [("hiref", {})]
        if float(n) * n * d > 2.0**36:
            runs.insert(0, ("hiref, limit 2^36", {"pricing_limit_log2": 36}))
        for solver, options in runs:
            result = run("hiref", n, d, options)
            result["solver"] = solver
            pair.append(result)
            print(f"  n={n:6d} d={d:5d} {solver:18s} cost {result['cost']:.6f}  {result['seconds']:7.1f} s  "
                  f"gap_bound {result['gap_bound']}", flush=True)  # fmt: skip
        best = max(r["lower_bound"] or -np.inf for r in pair)
        for r in pair:
            r["above_best_bound_%"] = 100 * (r["cost"] / best - 1)
        rows += pair
    print_table(
        rows,
        ["n", "d", "solver", "cost", "above_best_bound_%", "gap_bound", "seconds", "peak_rss_GB"],
        "high dimension, the finish's pricing limit: Gaussian mixtures, squared Euclidean, defaults",
    )
    if json_path:
        write_json(json_path, {"priced": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--d", type=int, nargs="+", default=[50, 2048])
    parser.add_argument("--batch", type=int, default=4096, help="mini-batch size of the baseline")
    parser.add_argument(
        "--max-batches", type=int, default=None,
        help="solve only this many mini-batches (unbiased estimate of the cost; time scaled up)",
    )  # fmt: skip
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--priced", nargs="*", default=None, metavar="N:D",
        help="instead: hiref's default with the finish's pricing limit of this version and of the last "
        "(2^36 pair-dimension products), on these sizes (default 4096:2048 16384:100 32768:30 46000:30 "
        "65536:50 84172:98)",
    )  # fmt: skip
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.priced is not None:
        run_priced(args.priced or ["4096:2048", "16384:100", "32768:30", "46000:30", "65536:50", "84172:98"], args.json)
        return
    rows = []
    for d in args.d:
        configs = [
            ("minibatch", {"batch": args.batch, "max_batches": args.max_batches}),
            ("hiref", {"device": args.device}),
            ("hiref+refine", {"device": args.device, "refine": True}),
        ]
        for solver, options in configs:
            result = run("minibatch" if solver == "minibatch" else "hiref", args.n, d, options)
            result["solver"] = solver
            rows.append(result)
            print(
                f"  d={d:5d} {solver:13s} cost {result['cost']:.4f}  {result['seconds']:7.1f} s  "
                f"peak RSS {result['peak_rss_GB']:.2f} GB",
                flush=True,
            )
        base = next(r for r in rows if r["d"] == d and r["solver"] == "minibatch")
        for r in rows:
            if r["d"] == d:
                r["vs_minibatch_%"] = 100 * (r["cost"] / base["cost"] - 1)
    print_table(
        rows,
        ["d", "solver", "cost", "vs_minibatch_%", "seconds", "peak_rss_GB", "baseline_rss_GB"],
        f"high dimension: n = {args.n} per side, Gaussian mixtures, squared Euclidean; "
        f"mini-batch = exact OT on random batches of {args.batch}",
    )
    if args.json:
        write_json(args.json, {"highdim": rows})


if __name__ == "__main__":
    main()
