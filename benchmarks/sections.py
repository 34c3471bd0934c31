"""Two sections of one tissue, as a user aligns them: how far the default ends from the optimum, and how fast.

The planted pairs (``planted.py``) move every point of one cloud by a smooth map, so the
hierarchy's matching is nearly right everywhere and the finish has little to mend. Two real
sections are two samples of a tissue: no cell has a twin, and the optimal matching moves mass
over long chains of small exchanges. This script makes such pairs with the recipe's simulator
(``hr.datasets.simulate_slices``: two sections of one simulated tissue, the second rotated,
shifted and sampled anew), registers them (``hr.pp.register``) and matches the registered
positions (what ``hr.tl.align`` matches here: its ``use_rep="auto"`` gives expression no weight
on these sections).

The optimum is not known, but every run's certificate is a valid lower bound on it
(``cost / (1 + gap_bound)``), so for each pair the best bound of all its runs and the cheapest
matching of all its runs bracket every run's gap: ``gap_at_least_pct`` (to the cheapest
matching found) <= the true gap <= ``gap_at_most_pct`` (to the best lower bound). Run the
``exact`` setting (``polish=True``: the finish without a work budget) on the same pairs to
close the bracket. Every run is a fresh process (its own peak memory); ``--src`` runs other
source trees on the same pairs, in the same invocation, for a before/after comparison.

    python benchmarks/sections.py --n 100000 300000 --setting default exact --seeds 0
    python benchmarks/sections.py --n 1000000 --setting default --seeds 0 --out results/sections_1m_cpu.json
    python benchmarks/sections.py --n 100000 --src /tmp/base/src src --setting default exact
    python benchmarks/sections.py --n 300000 --drop 0.05 --setting default   # n != m: 285,000 cells into 300,000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import max_and_median, print_table, write_json

HERE = Path(__file__).resolve().parent
#: ``exact``: the finish without a work budget (to the optimum or its round limit).
SETTINGS = {"default": {}, "exact": {"polish": True}, "hierarchy": {"polish": False, "refine": False}}
COLUMNS = ["src", "n", "drop", "setting", "seed", "secs", "levels_s", "finish_s", "rss_gb", "bound_pct",
           "gap_at_least_pct", "gap_at_most_pct"]  # fmt: skip

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import hiref as hr
n, seed, setting, drop = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
a, b = hr.datasets.simulate_slices(n_obs=n, n_genes=60, seed=seed)
hr.pp.register(a, b)
X, Y = a.obsm["spatial_registered"], b.obsm["spatial_registered"]
if drop:  # the first section loses a random share of its cells: n != m, as in any two real sections
    keep = np.random.default_rng(seed + 1000).choice(len(X), int(round((1 - drop) * len(X))), replace=False)
    X = X[np.sort(keep)]
t = time.perf_counter()
m = hr.solve(X, Y, progress=False, seed=seed, **setting)
secs = time.perf_counter() - t
print(json.dumps({
    "n_x": len(X), "n_y": len(Y), "cost": float(m.cost), "secs": secs,
    "bound_pct": None if m.gap_bound is None else 100 * m.gap_bound,
    "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "finish_s": m.timings.get("polish", m.timings.get("bound", 0.0)),
    "levels_s": sum(v for k, v in m.timings.items() if k.startswith("level_") or k == "leaves"),
}))
"""


def run_one(src: str, n: int, seed: int, setting: str, drop: float = 0.0) -> dict:
    """One solve in a fresh process with ``src`` first on the path (``drop``: see ``--drop``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), str(seed), json.dumps(SETTINGS[setting]), str(drop)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    row = {"src": src, "n": n, "drop": drop, "setting": setting, "seed": seed}
    return {**row, **json.loads(out.stdout.strip().splitlines()[-1])}


def bracket(rows: list[dict]) -> None:
    """Add ``gap_at_least_pct`` and ``gap_at_most_pct`` to every row (in place), from all runs of its pair."""
    pairs: dict[tuple[int, float, int], list[dict]] = {}
    for r in rows:
        pairs.setdefault((r["n"], r.get("drop", 0.0), r["seed"]), []).append(r)
    for runs in pairs.values():
        cheapest = min(r["cost"] for r in runs)
        bounds = [r["cost"] / (1 + r["bound_pct"] / 100) for r in runs if r["bound_pct"] is not None]
        best_bound = max(bounds) if bounds else None
        for r in runs:
            r["gap_at_least_pct"] = 100 * (r["cost"] / cheapest - 1)
            r["gap_at_most_pct"] = None if best_bound is None else 100 * (r["cost"] / best_bound - 1)


def summary(rows: list[dict]) -> list[dict]:
    """Max and median over seeds for every (source, n, setting)."""
    keys = ("secs", "rss_gb", "bound_pct", "gap_at_least_pct", "gap_at_most_pct")
    return [row for _, row in max_and_median(rows, ("src", "n", "drop", "setting"), keys)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", nargs="+", type=int, default=[100000, 300000], help="cells per section")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--setting", nargs="+", default=["default", "exact"], choices=list(SETTINGS))
    parser.add_argument("--src", nargs="+", default=[str(HERE.parent / "src")], help="source trees to run")
    parser.add_argument(
        "--drop", nargs="+", type=float, default=[0.0],
        help="share of the first section's cells dropped at random (a partial matching, as between real sections)",
    )  # fmt: skip
    parser.add_argument("--out", default="results/sections_cpu.json")
    args = parser.parse_args()
    rows = []
    for n, drop, seed, setting, src in itertools.product(args.n, args.drop, args.seeds, args.setting, args.src):
        rows.append(run_one(src, n, seed, setting, drop))
        print(json.dumps(rows[-1]), flush=True)
    bracket(rows)
    print_table(rows, COLUMNS, "two sections of one tissue: every run")
    table = summary(rows)
    cols = ["src", "n", "drop", "setting", "seeds", "secs_max", "secs_median", "rss_gb_max", "bound_pct_max",
            "gap_at_least_pct_max", "gap_at_most_pct_max"]  # fmt: skip
    print_table(table, cols, "two sections of one tissue: max and median over seeds")
    write_json(HERE / args.out, {"summary": table, "_runs": rows})


if __name__ == "__main__":
    main()
