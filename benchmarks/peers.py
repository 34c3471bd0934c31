"""hiref against its peers on the paper's synthetic pairs (HiRef paper, Table S4 and Fig. 3), in one run.

For every cost of ``--costs``, pair of ``--pairs`` (checkerboard, MAF moons & rings, half-moon &
S-curve; d = 2) and size of ``--n``, the same point clouds go to every solver, each timed:

- ``exact``: scipy ``linear_sum_assignment`` on the dense cost matrix (the reference of the gaps);
- ``emd``: POT network simplex ``ot.emd``, uniform weights (also exact; its optimal vertex is a
  permutation matrix, read off as a bijection);
- ``sinkhorn``: POT ``ot.sinkhorn``, ``reg = --sinkhorn-reg`` (0.05) on the cost matrix divided
  by its largest entry (``--sinkhorn-norm max``; ``mean`` divides by the mean entry, as ott-jax's
  relative epsilon does, ``none`` keeps the raw cost), at most ``--sinkhorn-iters`` iterations,
  stopping when POT's marginal error is below 1e-9 (``converged`` says whether it was);
- ``minibatch_B``: mini-batch OT, X and Y shuffled and cut into batches of B points
  (``--batches``, only B < n), each batch pair matched exactly: a bijection;
- ``lowrank``: POT low-rank Sinkhorn ``ot.lowrank_sinkhorn``, rank ``--rank`` (40). POT factorizes
  the squared Euclidean cost only: for the Euclidean cost its coupling solves the squared
  Euclidean problem and is evaluated under the Euclidean cost;
- ``hiref``, ``hiref+refine`` and ``hiref+refine_L256``: ``hr.solve`` with its defaults, with
  ``refine=True``, and with ``refine=True, leaf_size=256`` (slower, closer to exact); torch
  warmed up first.

Couplings (Sinkhorn, low-rank) appear three times: the coupling itself (``output = coupling``,
its transport cost ``<P, C>``), its row-wise argmax (``output = argmax``: every X point sent to
its heaviest Y partner — not a bijection, ``duplicates`` counts the Y points taken more than
once, so its cost may fall below the optimum), and a proper bijection (``output = assignment``:
the exact assignment maximising the coupling's mass, ``linear_sum_assignment(-P)``). Times of
rounded rows include the solver and the rounding. ``nnz`` is the size of the support: n for a
bijection; for a dense coupling the entries above 1e-12 times its largest entry, and
``support_99`` the fewest entries carrying 99 % of its mass.

``value`` is the mean cost of the matched pairs (the transport cost for couplings), ``gap_%`` its
excess over the exact optimum in percent (scipy's; POT ``emd``'s when ``exact`` is not run).
Printed: one line per solver as it finishes, the full table, and a targets table (hiref within
1 % of exact; below the bijections of Sinkhorn and low-rank (assignment rounding) and of every
mini-batch size; at the largest n faster than Sinkhorn's coupling). ``--plot`` draws gap
against time at the largest n, one panel per pair and cost.

Examples
--------
    python benchmarks/peers.py --n 512 1024 4096 --json benchmarks/results/peers_cpu.json \\
        --plot benchmarks/results/peers_cpu.png
    python benchmarks/peers.py --n 1024 --costs sqeuclidean --methods exact,sinkhorn,hiref
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import hiref as hr
from hiref.datasets import checkerboard, halfmoon_scurve, maf_moons_rings

import _peers as peers
from _common import print_table, write_json

PAIRS = {"checkerboard": checkerboard, "maf_moons_rings": maf_moons_rings, "halfmoon_scurve": halfmoon_scurve}
METHODS = ("exact", "emd", "sinkhorn", "minibatch", "lowrank", "hiref")
# hiref's defaults, with refinement, and a slower setting (leaves of 256, refinement windows of 512).
HIREF_VARIANTS = {
    "hiref": {},
    "hiref+refine": {"refine": True},
    "hiref+refine_L256": {"refine": True, "leaf_size": 256},
}
COLUMNS = ["cost", "pair", "n", "method", "output", "value", "gap_%", "seconds", "nnz", "duplicates", "converged"]


def _row(case: dict, method: str, output: str, value: float, seconds: float, support: int, **extra) -> dict:
    return {**case, "method": method, "output": output, "value": value, "seconds": seconds, "nnz": support, **extra}


def _coupling_rows(case: dict, name: str, C: np.ndarray, result: dict) -> list[dict]:
    """The coupling itself, its row-wise argmax and its exact rounding to a bijection."""
    P = result["coupling"]
    n = len(P)
    base = {k: result[k] for k in ("converged", "note", "iterations", "marginal_err", "cost_scale") if k in result}
    base["coupling_marginal_err"] = peers.marginal_error(P)
    solve_s = result["seconds"]
    densify_s = result.get("densify_s", 0.0)
    rows = [
        _row(case, name, "coupling", peers.coupling_cost(C, P), solve_s, peers.nnz(P),
             support_99=peers.support_mass(P), **base),
    ]  # fmt: skip
    cols, duplicates, argmax_s = peers.round_argmax(P)
    rows.append(_row(case, name, "argmax", peers.matching_cost(C, cols), solve_s + densify_s + argmax_s, n,
                     duplicates=duplicates, **base))  # fmt: skip
    perm, assign_s = peers.round_assignment(P)
    rows.append(_row(case, name, "assignment", peers.matching_cost(C, perm), solve_s + densify_s + assign_s, n,
                     duplicates=0, round_s=densify_s + assign_s, **base))  # fmt: skip
    return rows


def run_case(cost: str, pair: str, n: int, seed: int, args: argparse.Namespace) -> list[dict]:
    X, Y = PAIRS[pair](n, seed=seed)
    C = peers.dense_cost(X, Y, cost)  # for evaluating the outputs only; every solver builds its own
    case = {"cost": cost, "pair": pair, "n": n, "seed": seed}
    methods = args.methods
    rows: list[dict] = []

    def report(new: list[dict]) -> None:
        rows.extend(new)
        for r in new:
            extra = f" dup {r['duplicates']}" if r.get("duplicates") else ""
            extra += "" if r.get("converged", True) else " NOT CONVERGED"
            print(f"  {cost:11s} {pair:16s} n={n:5d} {r['method']:14s} {r['output']:10s} "
                  f"cost {r['value']:.6g}  {r['seconds']:8.3f} s{extra}", flush=True)  # fmt: skip

    if "exact" in methods:
        res = peers.exact(X, Y, cost)
        report([_row(case, "exact", "bijection", peers.matching_cost(C, res["perm"]), res["seconds"], n,
                     converged=True)])  # fmt: skip
    if "emd" in methods:
        res = peers.emd(X, Y, cost, max_iter=args.emd_iters)
        support = peers.nnz(res["coupling"])
        if peers.is_bijection(res["perm"]) and support == n:
            output, value = "bijection", peers.matching_cost(C, res["perm"])
        else:  # a degenerate vertex: report the coupling
            output, value = "coupling", peers.coupling_cost(C, res["coupling"])
        row = _row(case, "emd", output, value, res["seconds"], support, converged=res["converged"], note=res["note"])
        report([row])
    if "sinkhorn" in methods:
        res = peers.sinkhorn(X, Y, cost, reg=args.sinkhorn_reg, normalise=args.sinkhorn_norm,
                             max_iter=args.sinkhorn_iters)  # fmt: skip
        report(_coupling_rows(case, "sinkhorn", C, res))
    if "minibatch" in methods:
        for batch in args.batches:
            if batch >= n:
                continue
            res = peers.minibatch(X, Y, cost, batch, seed=seed)
            report([_row(case, f"minibatch_{batch}", "bijection", peers.matching_cost(C, res["perm"]),
                         res["seconds"], n)])  # fmt: skip
    if "lowrank" in methods:
        res = peers.lowrank(X, Y, rank=args.rank, seed=seed)
        report(_coupling_rows(case, f"lowrank_{args.rank}", C, res))
    if "hiref" in methods:
        for name, options in HIREF_VARIANTS.items():
            t0 = time.perf_counter()
            m = hr.solve(X, Y, cost=cost, seed=seed, device=args.device, progress=False, **options)
            seconds = time.perf_counter() - t0
            value = peers.matching_cost(C, m.perm)
            assert peers.is_bijection(m.perm), "hiref returned no bijection"
            report([_row(case, name, "bijection", value, seconds, n, converged=True, reported_cost=float(m.cost))])
    ref = next((r["value"] for r in rows if r["method"] == "exact"), None)
    if ref is None:
        ref = next((r["value"] for r in rows if r["method"] == "emd" and r["converged"]), None)
    for r in rows:
        r["gap_%"] = 100 * (r["value"] / ref - 1) if ref else float("nan")
    return rows


def targets(rows: list[dict], n_max: int) -> list[dict]:
    """Per case and hiref variant: is it within 1 % of exact, below each peer's bijection, faster than Sinkhorn?

    Couplings are compared through their assignment rounding (a bijection); their argmax maps are
    not one-to-one and can cost less than the optimum, so no bijection is compared with them.
    Speed: hiref's time against Sinkhorn's time to its coupling (without rounding), at the largest n.
    """
    out = []
    cases = sorted({(r["cost"], r["pair"], r["n"], r["seed"]) for r in rows}, key=lambda c: (c[0], c[1], c[2], c[3]))
    for cost, pair, n, seed in cases:
        group = [r for r in rows if (r["cost"], r["pair"], r["n"], r["seed"]) == (cost, pair, n, seed)]

        def pick(method: str, output: str | None = None, *, group: list[dict] = group) -> dict | None:
            return next((r for r in group if r["method"] == method and output in (None, r["output"])), None)

        sink_assign = pick("sinkhorn", "assignment")
        exact = pick("exact")
        low_assign = next((r for r in group if r["method"].startswith("lowrank") and r["output"] == "assignment"), None)
        batches = [r for r in group if r["method"].startswith("minibatch")]
        sink = pick("sinkhorn", "coupling")
        for variant in HIREF_VARIANTS:
            h = pick(variant)
            if h is None:
                continue

            def below(other: dict | None, h: dict = h) -> str:
                return "-" if other is None else ("yes" if h["value"] < other["value"] else "NO")

            out.append(
                {
                    "cost": cost,
                    "pair": pair,
                    "n": n,
                    "seed": seed,
                    "variant": variant,
                    "gap_%": h["gap_%"],
                    "within_1%": "-" if np.isnan(h["gap_%"]) else ("yes" if h["gap_%"] <= 1 else "NO"),
                    "<sinkhorn_assign": below(sink_assign),
                    "<all_minibatch": below(min(batches, key=lambda b: b["value"]) if batches else None),
                    "<lowrank_assign": below(low_assign),
                    "exact_s/hiref_s": exact["seconds"] / h["seconds"] if exact else float("nan"),
                    "sinkhorn_s/hiref_s": sink["seconds"] / h["seconds"] if sink else float("nan"),
                    "faster_than_sinkhorn": "-"
                    if sink is None or n != n_max
                    else ("yes" if h["seconds"] < sink["seconds"] else "NO"),
                }
            )
    return out


def plot(rows: list[dict], path: str, n: int) -> None:
    """Gap against time at size ``n``: one panel per (cost, pair); filled markers are bijections."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["n"] == n and r["seed"] == rows[0]["seed"] and r["output"] != "argmax"]
    costs = list(dict.fromkeys(r["cost"] for r in rows))
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    fig, axes = plt.subplots(len(costs), len(pairs), figsize=(4.2 * len(pairs), 3.6 * len(costs)), squeeze=False)
    style = {"exact": ("k", "s"), "emd": ("0.5", "D"), "sinkhorn": ("C0", "o"), "lowrank": ("C2", "^"),
             "minibatch": ("C1", "v"), "hiref": ("C3", "*"), "hiref+refine": ("C4", "P"),
             "hiref+refine_L256": ("C5", "X")}  # fmt: skip
    for i, cost in enumerate(costs):
        for j, pair in enumerate(pairs):
            ax = axes[i][j]
            group = [r for r in rows if r["cost"] == cost and r["pair"] == pair]
            mb = sorted((r for r in group if r["method"].startswith("minibatch")), key=lambda r: r["seconds"])
            if mb:
                ax.plot([r["seconds"] for r in mb], [r["gap_%"] for r in mb], "-", color="C1", alpha=0.5)
                for r in mb:
                    ax.annotate(r["method"].split("_")[1], (r["seconds"], r["gap_%"]), fontsize=6, color="C1")
            seen = set()
            for r in group:
                key = "minibatch" if r["method"].startswith("minibatch") else r["method"].split("_")[0]
                if r["method"] in HIREF_VARIANTS:
                    key = r["method"]
                color, marker = style.get(key, ("C7", "x"))
                label = r["method"] if key != "minibatch" else "minibatch (batch size)"
                label += {"coupling": " coupling", "assignment": " -> assignment"}.get(r["output"], "")
                ax.plot(r["seconds"], r["gap_%"], marker, color=color, ms=8 if key.startswith("hiref") else 6,
                        mfc=color if r["output"] != "coupling" else "none",
                        label=None if label in seen else label, linestyle="none")  # fmt: skip
                seen.add(label)
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=0.01)
            gaps = [r["gap_%"] for r in group if np.isfinite(r["gap_%"])]
            if gaps:
                ax.set_ylim(min(0.0, 1.5 * min(gaps)), 2 * max(max(gaps), 1.0))
            ax.axhline(1.0, color="0.7", lw=0.8, ls=":")
            ax.set_title(f"{pair}, {cost}, n = {n}", fontsize=9)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("gap to exact (%)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7, frameon=False)
    fig.suptitle("hiref and peers: cost gap vs time (filled: bijection, hollow: coupling; argmax maps omitted)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=130)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[512, 1024, 4096])
    parser.add_argument("--costs", default="sqeuclidean,euclidean")
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--sinkhorn-reg", type=float, default=0.05)
    parser.add_argument("--sinkhorn-norm", choices=["max", "mean", "none"], default="max",
                        help="divide the cost matrix by its max / mean entry (or not) before Sinkhorn")  # fmt: skip
    parser.add_argument("--sinkhorn-iters", type=int, default=1000, help="iteration cap of Sinkhorn")
    parser.add_argument("--emd-iters", type=int, default=10**8, help="iteration cap of the network simplex")
    parser.add_argument("--rank", type=int, default=40, help="rank of POT's low-rank Sinkhorn")
    parser.add_argument("--device", default=None, help="torch device of hiref (default: cuda if available)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for hiref (default: torch's choice, one per core)")  # fmt: skip
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None, help="write the gap-vs-time figure (largest n) here")
    args = parser.parse_args()
    args.methods = args.methods.split(",")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if set(args.methods) & {"emd", "sinkhorn", "lowrank"}:
        peers.require_pot()
    costs, pairs = args.costs.split(","), args.pairs.split(",")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if "hiref" in args.methods:  # warm up torch (and each cost's code path) before timing
        for cost in costs:
            for refine in (False, True):
                hr.solve(*halfmoon_scurve(512, seed=0), cost=cost, refine=refine, device=args.device, progress=False)
    rows = []
    for cost in costs:
        for pair in pairs:
            for n in args.n:
                for seed in args.seeds:
                    rows += run_case(cost, pair, n, seed, args)
    print_table(
        rows,
        [*COLUMNS, "support_99"],
        "peers: d = 2; value = mean cost of the matching (transport cost for couplings); gap to exact (scipy LSA); "
        "argmax = row-wise argmax of the coupling (not a bijection), assignment = exact rounding to a bijection",
    )
    goals = targets(rows, max(args.n))
    if goals:
        print_table(goals, list(goals[0]), "targets (yes / NO; - = peer not run)")
    settings = {
        "sinkhorn": {"reg": args.sinkhorn_reg, "normalise": args.sinkhorn_norm, "max_iter": args.sinkhorn_iters,
                     "stopThr": 1e-9, "method": "sinkhorn_log" if args.sinkhorn_norm == "none" else "sinkhorn"},
        "lowrank": {"rank": args.rank, "solved_cost": "sqeuclidean (POT supports no other)"},
        "emd": {"numItermax": args.emd_iters},
        "nnz_relative_threshold": peers.NNZ_RELATIVE,
        "batches": args.batches,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    if args.json:
        write_json(args.json, {"settings": settings, "peers": rows, "targets": goals})
    if args.plot:
        plot(rows, args.plot, max(args.n))


if __name__ == "__main__":
    main()
