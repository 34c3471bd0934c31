"""Gap to the known optimum on planted tissue-like pairs of any size (``hr.datasets.planted_pair``).

Every run solves one pair in a fresh process (so that its peak memory is its own) and reports the
gap of the matching to the optimum, its share of true partners, the certified bound
(``Matching.gap_bound``, which must never be below the true gap), seconds and peak resident
memory; then max and median over seeds for every (kind, n, setting).

    python benchmarks/planted.py --kind density lattice --n 65536 262144 1048576 --seeds 0 1 2
    python benchmarks/planted.py --n 4194304 --seeds 0 --out results/planted_2p22_cpu.json
    python benchmarks/planted.py --n 1048576 --setting hierarchy  # polish=False: the levels alone
    python benchmarks/planted.py --kind lattice --n 8388608 --seeds 0 --setting finish \
        --out results/planted_2p23_cpu.json
    python benchmarks/planted.py --kind local --n 262144 1048576 --out results/planted_local_cpu.json
    python benchmarks/planted.py --kind density --cut 0.1 --n 65536 262144 --setting default hierarchy \
        --out results/planted_cut_cpu.json

``--cut``: X loses the tenth (say) of its points furthest right, Y keeps them: a section that
covers only part of the other. The truth restricted to the points of X left is then a matching
of at least the optimal cost (the optimum may trade a few partners at the cut for points left
over), so ``gap_pct`` is at most the true gap (it may be slightly negative) and ``bound_pct``
must still be at least it.

``--kind local``: a local deformation. The density kind's cloud, 69 % of it left in place and
the rest moved by a smooth bump (a tenth of the extent wide), again ``Y = grad phi(X)`` for a
strictly convex ``phi``, so the identity pairing is the optimum.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import max_and_median, print_table, write_json

#: ``finish``: the exact finish forced on (the default skips it above 2**23 points).
SETTINGS = {"default": {}, "hierarchy": {"polish": False, "refine": False}, "finish": {"polish": True}}
COLUMNS = ["kind", "n", "setting", "seed", "gap_pct", "true_pct", "bound_pct", "secs", "rss_gb", "levels_s", "finish_s"]

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import hiref as hr
kind, n, seed, setting = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
if kind == "local":  # a density cloud, 69 % left in place, the rest moved by a smooth bump
    X = hr.datasets.planted_pair(n, kind="density", seed=seed)[0]
    X = X - X.mean(0)
    width = 0.1 * np.abs(X).max()
    r = X - np.array([0.3, 0.2]) * np.abs(X).max()
    # Y = grad phi(X) with phi = |x|^2 / 2 + 0.5 width^2 exp(-|r|^2 / (2 width^2)), strictly convex
    Y0 = X - 0.5 * r * np.exp(-(r**2).sum(1) / (2 * width**2))[:, None]
    order = np.random.default_rng(seed).permutation(n)
    Y, truth = Y0[order], np.argsort(order)
else:
    X, Y, truth = hr.datasets.planted_pair(n, kind=kind, seed=seed)
if float(sys.argv[5]):  # a cut section: X keeps the points left of its (1 - cut) quantile of x
    keep = X[:, 0] < np.quantile(X[:, 0], 1 - float(sys.argv[5]))
    X, truth = X[keep], truth[keep]
X, Y = X.astype(np.float32), Y.astype(np.float32)
opt = float(((X.astype(np.float64) - Y[truth]) ** 2).sum(1).mean())
t = time.perf_counter()
m = hr.solve(X, Y, progress=False, seed=seed, **setting)
secs = time.perf_counter() - t
cost = float(((X.astype(np.float64) - Y[m.perm]) ** 2).sum(1).mean())
print(json.dumps({
    "gap_pct": 100 * (cost / opt - 1), "true_pct": 100 * float(np.mean(m.perm == truth)),
    "bound_pct": None if m.gap_bound is None else 100 * m.gap_bound, "secs": secs,
    "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "finish_s": m.timings.get("polish", m.timings.get("bound", 0.0)),
    "levels_s": sum(v for k, v in m.timings.items() if k.startswith("level_") or k == "leaves"),
}))
"""


def run_one(kind: str, n: int, seed: int, setting: str, cut: float = 0.0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(n), str(seed), json.dumps(SETTINGS[setting]), str(cut)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    if cut:
        kind = f"{kind}-cut{round(100 * cut)}"
    return {"kind": kind, "n": n, "setting": setting, "seed": seed, **json.loads(out.stdout.strip().splitlines()[-1])}


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for rs, row in max_and_median(rows, ("kind", "n", "setting"), ("gap_pct", "bound_pct", "secs", "rss_gb")):
        row["true_pct_min"] = min(r["true_pct"] for r in rs)
        row["bound_valid"] = all(r["bound_pct"] is None or r["bound_pct"] >= r["gap_pct"] - 1e-9 for r in rs)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", nargs="+", default=["density", "lattice"], choices=["density", "lattice", "local"])
    parser.add_argument("--n", nargs="+", type=int, default=[65536, 262144, 1048576])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--setting", nargs="+", default=["default"], choices=list(SETTINGS))
    parser.add_argument("--out", default="results/planted_cpu.json")
    parser.add_argument(
        "--cut", type=float, default=0.0,
        help="cut this share of X off at its right edge (x above its (1 - cut) quantile): Y keeps a region "
        "that X lacks; gaps are then to the truth restricted to X, at least the optimum",
    )  # fmt: skip
    args = parser.parse_args()
    rows = []
    for n in args.n:
        for kind in args.kind:
            for setting in args.setting:
                for seed in args.seeds:
                    rows.append(run_one(kind, n, seed, setting, args.cut))
                    print(json.dumps(rows[-1]), flush=True)
    print_table(rows, COLUMNS, "planted pairs: every run")
    table = summary(rows)
    cols = ["kind", "n", "setting", "seeds", "gap_pct_max", "gap_pct_median", "true_pct_min", "bound_pct_max",
            "bound_valid", "secs_max", "secs_median", "rss_gb_max"]  # fmt: skip
    print_table(table, cols, "planted pairs: max and median over seeds")
    write_json(Path(__file__).parent / args.out, {"summary": table, "_runs": rows})


if __name__ == "__main__":
    main()
