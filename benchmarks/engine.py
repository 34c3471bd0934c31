"""Engine benchmark: quality against the exact optimum, speed, and scale (issue: engine).

Sections (``--sections``, comma separated):

- ``quality``: the paper's synthetic pairs (and the hard uniform checkerboard) at n = 1024 and
  4096, d = 2, for each cost of ``--costs`` (squared Euclidean, Euclidean); hiref's cost with
  and without ``refine``, the exact optimum by scipy's ``linear_sum_assignment`` in the same
  run, the gaps, the times and the exact-to-hiref time ratio.
- ``factorization``: relative error of the sampled low-rank factorization of the Euclidean
  distance matrix (the one used above leaf size for non-squared costs).
- ``scale``: n = 2**20 points per side (``--scale-n``), time and peak resident memory per level,
  run in a fresh process so earlier sections do not inflate the memory peak.
- ``prime``: n = 100,003 (a prime): a valid bijection, time and cost.

Examples
--------
    python benchmarks/engine.py                           # everything, CPU
    python benchmarks/engine.py --sections quality --n 1024
    python benchmarks/engine.py --sections scale --scale-n 1048576 4194304 --device cuda
    python benchmarks/engine.py --json benchmarks/results/engine.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.datasets import checkerboard, halfmoon_scurve, maf_moons_rings, uniform_checkerboard
from hiref.engine import Power

from _common import print_table, write_json

PAIRS = {
    "halfmoon_scurve": halfmoon_scurve,
    "checkerboard": checkerboard,
    "maf_moons_rings": maf_moons_rings,
    "uniform_checkerboard": uniform_checkerboard,
}


def _exact(X: np.ndarray, Y: np.ndarray, metric: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    C = cdist(X, Y, metric)
    rows, cols = linear_sum_assignment(C)
    return float(C[rows, cols].mean()), time.perf_counter() - t0


def quality(ns: list[int], seeds: list[int], costs: list[str], device: str | None) -> list[dict]:
    rows = []
    hr.solve(*halfmoon_scurve(512, seed=0), progress=False, device=device)  # warm-up
    for cost in costs:
        for name, make in PAIRS.items():
            for n in ns:
                for seed in seeds:
                    X, Y = make(n, seed=seed)
                    plain = hr.solve(X, Y, cost=cost, seed=seed, progress=False, device=device)
                    refined = hr.solve(X, Y, cost=cost, seed=seed, progress=False, device=device, refine=True)
                    best, t_exact = _exact(X, Y, cost)
                    t_plain, t_refined = plain.timings["total"], refined.timings["total"]
                    rows.append(
                        {
                            "cost": cost,
                            "pair": name,
                            "n": n,
                            "seed": seed,
                            "exact": best,
                            "gap_%": 100 * (plain.cost / best - 1),
                            "refined_gap_%": 100 * (refined.cost / best - 1),
                            "hiref_s": t_plain,
                            "refined_s": t_refined,
                            "exact_s": t_exact,
                            "exact/hiref": t_exact / t_plain,
                        }
                    )
                    r = rows[-1]
                    print(
                        f"  {cost:11s} {name:22s} n={n:6d} seed={seed}  gap {r['gap_%']:7.3f} % "
                        f"({t_plain:5.2f} s)  refined {r['refined_gap_%']:7.3f} % ({t_refined:5.2f} s)  "
                        f"exact {t_exact:7.2f} s",
                        flush=True,
                    )
    return rows


def factorization(n: int = 2000) -> list[dict]:
    """Relative Frobenius error of the sampled factorization of |x - y| (one block of n points)."""
    rows = []
    data = {name: make(n, seed=0) for name, make in PAIRS.items()}
    data["gaussian_mixtures_d50"] = hr.datasets.gaussian_mixtures(n, 50, seed=0)
    for name, (X, Y) in data.items():
        tx, ty = torch.tensor(X)[None], torch.tensor(Y)[None]
        mask = torch.ones(1, n, dtype=torch.bool)
        for rank in (16, 32, 64):
            cost = Power(1.0, rank=rank)
            A, V = cost.factorize(tx, ty, mask, mask, torch.Generator().manual_seed(0))
            C = cost.dense(tx.double(), ty.double())
            err = torch.linalg.norm(A.double() @ V.double().transpose(1, 2) - C) / torch.linalg.norm(C)
            rows.append({"data": name, "n": n, "rank": rank, "relative_error": float(err)})
    print_table(rows, ["data", "n", "rank", "relative_error"], "factorization of the Euclidean distance matrix")
    return rows


def _scale_worker(n: int, device: str | None, queue: mp.Queue) -> None:
    X, Y = halfmoon_scurve(n, seed=0)
    t0 = time.perf_counter()
    m = hr.solve(X, Y, progress=False, device=device)
    total = time.perf_counter() - t0
    valid = bool(np.array_equal(np.sort(m.perm), np.arange(n)))
    queue.put(
        {
            "n": n,
            "time_s": total,
            "cost": m.cost,
            "valid": valid,
            "schedule": m.schedule,
            "timings": m.timings,
            "memory": m.memory,
        }
    )


def scale(ns: list[int], device: str | None) -> list[dict]:
    ctx = mp.get_context("spawn")
    out = []
    for n in ns:
        queue = ctx.Queue()
        proc = ctx.Process(target=_scale_worker, args=(n, device, queue))
        proc.start()
        result = queue.get()
        proc.join()
        out.append(result)
        levels = [k for k in result["timings"] if k.startswith("level_")] + ["leaves"]
        rows = [
            {
                "stage": k,
                "seconds": result["timings"][k],
                "peak_rss_GB": result["memory"].get(f"rss_{k}", float("nan")) / 2**30,
                **({"peak_cuda_GB": result["memory"][f"cuda_{k}"] / 2**30} if f"cuda_{k}" in result["memory"] else {}),
            }
            for k in levels
        ]
        print_table(
            rows,
            list(rows[0]),
            f"scale: n = {n} (halfmoon -> S-curve, d = 2), total {result['time_s']:.1f} s, "
            f"valid bijection: {result['valid']}, cost {result['cost']:.6f}",
        )
    return out


def prime(device: str | None, n: int = 100_003) -> dict:
    X, Y = checkerboard(n, seed=0)
    t0 = time.perf_counter()
    m = hr.solve(X, Y, progress=False, device=device)
    total = time.perf_counter() - t0
    valid = bool(np.array_equal(np.sort(m.perm), np.arange(n)))
    print(f"\nprime: n = {n}: valid bijection {valid}, time {total:.1f} s, cost {m.cost:.6f}, schedule {m.schedule}")
    return {"n": n, "valid": valid, "time_s": total, "cost": m.cost, "schedule": m.schedule}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="quality,factorization,scale,prime")
    parser.add_argument("--costs", default="sqeuclidean,euclidean", help="costs of the quality section")
    parser.add_argument("--n", type=int, nargs="+", default=[1024, 4096], help="sizes of the quality section")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the quality section")
    parser.add_argument("--scale-n", type=int, nargs="+", default=[2**20], help="sizes of the scale section")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    results: dict = {}
    if "quality" in sections:
        rows = quality(args.n, args.seeds, args.costs.split(","), args.device)
        columns = ["cost", "pair", "n", "seed", "exact", "gap_%", "refined_gap_%", "hiref_s", "refined_s"]
        print_table(
            rows,
            [*columns, "exact_s", "exact/hiref"],
            "quality: d = 2, exact = scipy linear_sum_assignment (same run)",
        )
        results["quality"] = rows
    if "factorization" in sections:
        results["factorization"] = factorization()
    if "scale" in sections:
        results["scale"] = scale(args.scale_n, args.device)
    if "prime" in sections:
        results["prime"] = prime(args.device)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
