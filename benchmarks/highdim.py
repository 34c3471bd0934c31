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
        m = hr.solve(X, Y, progress=False, **options)
        cost = m.cost
        extra = {"schedule": m.schedule, "timings": m.timings}
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
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
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
