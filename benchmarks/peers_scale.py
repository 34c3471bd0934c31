"""hiref and its peers as the problem grows: planted pairs whose optimum is known, until each peer stops.

The planted pair of ``hr.datasets.planted_pair(n, kind=--kind)`` (``density``: a smooth
non-uniform density on an irregular outline, MERFISH-like) has a known optimal matching for the
squared Euclidean cost at any ``n``, so every method's gap to the optimum can be measured where
no exact solver can run. For every ``n`` of ``--n`` (ascending) each method of ``--methods`` runs
in its own process, which the parent watches: it is stopped when it passes ``--limit`` seconds or
its resident memory passes ``--mem-gb``; a method that stopped (or failed) is not run at larger
``n``, and its last row says why.

Methods:

- ``hiref``: ``hr.solve(X, Y)`` with its defaults (a bijection);
- ``scipy_lsa``: scipy's exact ``linear_sum_assignment`` on the dense cost matrix;
- ``pot_emd``: POT's exact network simplex ``ot.emd`` on the dense cost matrix, uniform weights;
- ``moscot_sinkhorn``: moscot ``SinkhornProblem`` on the points with its defaults (``epsilon=1e-3``
  relative to the mean cost, balanced); its coupling is dense (``n x n``);
- ``moscot_lowrank``: the same with ``rank=50``; its coupling is kept as factors.

PASTE is left out: it aligns expression profiles (fused Gromov-Wasserstein on expression and
position), which these point clouds do not have, and on one Visium pair (3,639 spots) it already
takes minutes (see ``benchmarks/peers_real.py``).

Scores per row: ``seconds`` (from the points to the output, in a process of its own, imports and
data generation excluded; the time limit is on the whole process's wall time), ``cpu_s`` (that
process's CPU time over the same span), ``rss_gb`` (the process's peak resident memory), ``gap_pct`` (the
output's cost over the optimum, in percent: for a bijection its mean squared distance, for a
coupling its transport cost ``<P, C>``), ``true_pct`` (share of points given their true partner:
for a coupling, every Y point takes the X point carrying most of its mass, the PASTE convention),
and ``status`` (``ok``; ``stopped: ...`` with the limit it passed; ``not run``).

Examples
--------
    python benchmarks/peers_scale.py --json benchmarks/results/peers_scale.json \\
        --plot benchmarks/results/peers_scale.png
    python benchmarks/peers_scale.py --n 4096 16384 --methods hiref,scipy_lsa --limit 60 --mem-gb 4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("hiref", "scipy_lsa", "pot_emd", "moscot_sinkhorn", "moscot_lowrank")
NEEDS = {"pot_emd": "ot", "moscot_sinkhorn": "moscot", "moscot_lowrank": "moscot"}
PRELOAD = {"hiref": ("hiref",), "scipy_lsa": ("scipy.optimize",), "pot_emd": ("ot",),
           "moscot_sinkhorn": ("moscot.problems.generic",), "moscot_lowrank": ("moscot.problems.generic",)}  # fmt: skip
STYLE = {"hiref": ("C3", "o"), "scipy_lsa": ("k", "s"), "pot_emd": ("0.45", "D"), "moscot_sinkhorn": ("C0", "^"),
         "moscot_lowrank": ("C2", "v")}  # fmt: skip
LABEL = {"hiref": "hiref (hr.solve)", "scipy_lsa": "scipy linear_sum_assignment (exact)",
         "pot_emd": "POT ot.emd (exact)", "moscot_sinkhorn": "moscot SinkhornProblem",
         "moscot_lowrank": "moscot SinkhornProblem, rank 50"}  # fmt: skip
#: The time the figure shows: the CPU time of the method's process (the machine is shared, so its
#: wall time also counts other jobs).
TIME = "cpu_s"
SHORT = {"scipy_lsa": "scipy", "pot_emd": "POT", "moscot_sinkhorn": "moscot", "moscot_lowrank": "moscot r50"}
COLUMNS = ["n", "method", "seconds", "cpu_s", "rss_gb", "gap_pct", "true_pct", "one_to_one", "status"]


def _sq_cost(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(X, Y, "sqeuclidean")


def _coupling_scores(rows_of, n: int, X: np.ndarray, Y: np.ndarray, block: int = 2048) -> tuple[float, np.ndarray]:
    """Transport cost ``<P, C> / sum(P)`` and the argmax of every column, a row block of P at a time.

    ``rows_of(lo, hi)`` returns the rows ``lo:hi`` of the coupling as a numpy array.
    """
    total = mass = 0.0
    best = np.full(n, -np.inf)
    arg = np.zeros(n, np.int64)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        P = np.asarray(rows_of(lo, hi), np.float64)
        total += float((P * _sq_cost(X[lo:hi], Y)).sum())
        mass += float(P.sum())
        i = P.argmax(0)
        v = P[i, np.arange(n)]
        better = v > best
        best[better], arg[better] = v[better], lo + i[better]
    return total / mass, arg


def _moscot(X: np.ndarray, Y: np.ndarray, rank: int) -> dict:
    import anndata as ad
    import pandas as pd
    from moscot.problems.generic import SinkhornProblem

    n = len(X)
    obs = pd.DataFrame({"batch": pd.Categorical(["src"] * n + ["tgt"] * n, categories=["src", "tgt"])},
                       index=[f"c{i}" for i in range(2 * n)])  # fmt: skip
    # moscot refuses an AnnData without variables: one column of zeros (the points are in obsm)
    joint = ad.AnnData(X=np.zeros((2 * n, 1), np.float32), obs=obs,
                       obsm={"spatial": np.concatenate([X, Y]).astype(np.float32)})  # fmt: skip
    problem = SinkhornProblem(joint).prepare(key="batch", joint_attr={"attr": "obsm", "key": "spatial"})
    problem = problem.solve(rank=rank) if rank > 0 else problem.solve()
    solution = problem.solutions[("src", "tgt")]
    out = solution._output  # ott's output: low-rank factors (q, r, g) or Sinkhorn potentials
    if rank > 0:
        q, r, g = (np.asarray(v, np.float64) for v in (out.q, out.r, out.g))
        rows_of = lambda lo, hi: (q[lo:hi] / g) @ r.T  # noqa: E731
    else:
        P = np.asarray(solution.transport_matrix)  # the dense n x n coupling
        rows_of = lambda lo, hi: P[lo:hi]  # noqa: E731
    return {"rows_of": rows_of, "converged": bool(solution.converged)}


def solve(method: str, X: np.ndarray, Y: np.ndarray, seed: int) -> dict:
    """Run ``method``; a ``perm`` (bijection X -> Y) or a ``rows_of`` reader of a coupling."""
    if method == "hiref":
        import hiref as hr

        return {"perm": hr.solve(X, Y, progress=False, seed=seed).perm}
    if method == "scipy_lsa":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(_sq_cost(X, Y))
        perm = np.empty(len(X), np.int64)
        perm[rows] = cols
        return {"perm": perm}
    if method == "pot_emd":
        import ot

        n = len(X)
        P, log = ot.emd(np.full(n, 1 / n), np.full(n, 1 / n), _sq_cost(X, Y), numItermax=10**9, log=True)
        return {"rows_of": lambda lo, hi: P[lo:hi], "converged": log["result_code"] == 1}
    if method in ("moscot_sinkhorn", "moscot_lowrank"):
        return _moscot(X, Y, rank=50 if method == "moscot_lowrank" else -1)
    msg = f"unknown method {method!r}"
    raise ValueError(msg)


def child(method: str, n: int, kind: str, seed: int) -> dict:
    """One method at one size in this process: its row."""
    import importlib

    import hiref as hr

    sys.path.insert(0, str(HERE))
    from _common import rss_gb

    X, Y, truth = hr.datasets.planted_pair(n, kind=kind, seed=seed)
    opt = float(((X - Y[truth]) ** 2).sum(1).mean())
    for module in PRELOAD[method]:
        importlib.import_module(module)
    t0, c0 = time.perf_counter(), time.process_time()
    out = solve(method, X, Y, seed)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"n": n, "method": method, "seconds": seconds, "cpu_s": cpu}
    if "perm" in out:
        perm = out["perm"]
        row["gap_pct"] = 100 * (float(((X - Y[perm]) ** 2).sum(1).mean()) / opt - 1)
        row["true_pct"] = 100 * float(np.mean(perm == truth))
        row["one_to_one"] = bool(len(np.unique(perm)) == n)
    else:
        value, arg = _coupling_scores(out["rows_of"], n, X, Y)
        inverse = np.empty(n, np.int64)
        inverse[truth] = np.arange(n)  # Y[j]'s true partner is X[inverse[j]]
        row["gap_pct"] = 100 * (value / opt - 1)
        row["true_pct"] = 100 * float(np.mean(arg == inverse))
        row["one_to_one"] = bool(len(np.unique(arg)) == n)
        row["converged"] = out.get("converged")
    row["rss_gb"] = rss_gb("VmHWM")
    row["status"] = "ok"
    return row


def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    return 0.0


def run_one(method: str, n: int, kind: str, seed: int, limit: float, mem_gb: float) -> dict:
    """``child`` in a fresh process, stopped past ``limit`` seconds or ``mem_gb`` resident GB."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", method, str(n), "--kind", kind,
               "--seed", str(seed)]  # fmt: skip
    t0 = time.perf_counter()
    peak = 0.0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        reason = None
        while proc.poll() is None:
            peak = max(peak, _rss_gb(proc.pid))
            if peak > mem_gb:
                reason = f"stopped: memory over {mem_gb:g} GB"
            elif time.perf_counter() - t0 > limit:
                reason = f"stopped: over {limit:g} s"
            if reason:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        stdout, stderr = proc.communicate()
    base = {"n": n, "method": method}
    if reason:
        return {**base, "seconds": time.perf_counter() - t0, "rss_gb": peak, "status": reason}
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["?"])[-1][:200]
        return {**base, "rss_gb": peak, "status": f"failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def stops(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method: the largest n it finished and the row where it stopped, with the reason."""
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        done = [r["n"] for r in mine if r.get("status") == "ok"]
        stop = next((r for r in mine if r.get("status") != "ok"), None)
        out.append({"method": method, "largest_n_done": max(done) if done else None,
                    "stopped_at_n": stop["n"] if stop else None,
                    "why": stop["status"] if stop else "finished every n"})  # fmt: skip
    return out


def plot(rows: list[dict], path: str | Path, limits: str) -> None:
    """Time and gap to the optimum against n (log-log), one line per method, a cross where it stopped."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_g) = plt.subplots(1, 2, figsize=(10, 4.2))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    labelled: dict[tuple, int] = {}  # stop labels already written at one spot: the next one goes below
    for method in methods:
        color, marker = STYLE.get(method, ("C7", "x"))
        ok = sorted((r for r in rows if r["method"] == method and r.get("status") == "ok"), key=lambda r: r["n"])
        stop = next((r for r in rows if r["method"] == method and r.get("status", "").startswith(("stopped", "fail"))),
                    None)  # fmt: skip
        if ok:
            ns = [r["n"] for r in ok]
            ax_t.plot(ns, [r[TIME] for r in ok], marker=marker, color=color, label=LABEL.get(method, method))
            ax_g.plot(ns, [r["gap_pct"] for r in ok], marker=marker, color=color)
        if stop:
            word = "memory" if "memory" in stop["status"] else ("time" if "over" in stop["status"] else "failed")
            # the cross sits at the time spent when stopped (the limit, for a time-out), at the n it failed
            y = stop.get("seconds") or (ok[-1][TIME] if ok else 1.0)
            if ok:
                ax_t.plot([ok[-1]["n"], stop["n"]], [ok[-1][TIME], y], ":", color=color)
            else:
                ax_t.plot([], [], marker=marker, color=color, label=LABEL.get(method, method))
            ax_t.plot(stop["n"], y, "x", color=color, ms=10, mew=2)
            spot = (stop["n"], round(float(np.log10(y)), 1))
            k = labelled[spot] = labelled.get(spot, -1) + 1
            ax_t.annotate(f"{SHORT.get(method, method)}: {word}", (stop["n"], y),
                          textcoords="offset points", xytext=(8, -3 - 10 * k), fontsize=7, color=color)  # fmt: skip
    for ax in (ax_t, ax_g):
        ax.set_xscale("log", base=2)
    ax_t.set_yscale("log")
    # symmetric log: 0 for an exact solver, and a coupling whose marginals are off (not converged)
    # can cost less than the optimum
    ax_g.set_yscale("symlog", linthresh=1e-3)
    ax_g.axhline(0, color="0.6", lw=0.8)
    gaps = [r["gap_pct"] for r in rows if r.get("gap_pct") is not None]
    if gaps:
        ax_g.set_ylim(min(-1e-3, 3 * min(gaps)), max(1.0, 3 * max(gaps)))
        if min(gaps) < 0:
            ax_g.annotate("below 0: a coupling whose marginals are off\n(Sinkhorn not converged)", (0.3, 0.1),
                          xycoords="axes fraction", fontsize=7, color="0.3")  # fmt: skip
    for ax in (ax_t, ax_g):
        ax.set_xlabel("points per side, n")
        ax.grid(alpha=0.3, which="both")
    ax_t.set_ylabel("CPU seconds (one core); x: wall time when stopped")
    ax_g.set_ylabel("cost over the optimum (%, symlog)")
    ax_t.set_title("time to a matching / coupling", fontsize=10)
    ax_g.set_title("gap to the known optimum", fontsize=10)
    fig.legend(loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"planted density pairs; {limits}", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=140)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[2**k for k in range(12, 21)])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--kind", default="density", choices=["density", "lattice"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds before a method is stopped")
    parser.add_argument("--mem-gb", type=float, default=20.0, help="resident GB before a method is stopped")
    parser.add_argument("--limit-for", nargs="*", default=[], metavar="METHOD=SECONDS",
                        help="another time limit for some methods (e.g. hiref=400)")  # fmt: skip
    parser.add_argument("--machine-note", default="", help="a line on the machine (cores, sharing)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--replot", type=Path, default=None, help="only draw --plot from this JSON file of an earlier run"
    )
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], int(args.child[1]), args.kind, args.seed)), flush=True)
        return {}
    if args.replot:
        old = json.loads(args.replot.read_text())
        s = old["settings"]
        extra = "".join(f", {m} {v:g} s" for m, v in s.get("limit_s_for", {}).items())
        plot(old["rows"], args.plot, f"limits: {s['limit_s']:g} s and {s['mem_gb']:g} GB resident per run{extra}")
        return old
    sys.path.insert(0, str(HERE))
    from _common import machine, print_table, write_json

    methods = args.methods.split(",")
    limit_for = {m: float(v) for m, v in (item.split("=") for item in args.limit_for)}
    rows: list[dict] = []
    stopped: set[str] = set()
    t_all = time.perf_counter()
    for n in sorted(args.n):
        for method in methods:
            if method in NEEDS and importlib.util.find_spec(NEEDS[method]) is None:
                if n == min(args.n):
                    rows.append({"n": n, "method": method, "status": f"skipped: {NEEDS[method]} not installed"})
                    stopped.add(method)
                continue
            if method in stopped:
                continue
            row = run_one(method, n, args.kind, args.seed, limit_for.get(method, args.limit), args.mem_gb)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row.get("status") != "ok":
                stopped.add(method)
    total = time.perf_counter() - t_all
    print_table(rows, COLUMNS, f"planted {args.kind} pairs: hiref and peers until each stops")
    table = stops(rows, methods)
    print_table(table, list(table[0]), "where each method stops")
    limits = f"limits: {args.limit:g} s and {args.mem_gb:g} GB resident per run" + "".join(
        f", {m} {v:g} s" for m, v in limit_for.items()
    )
    payload = {"settings": {"kind": args.kind, "seed": args.seed, "limit_s": args.limit, "mem_gb": args.mem_gb,
                            "limit_s_for": limit_for,
                            "machine_note": args.machine_note, "total_seconds": total},
               "stops": table, "rows": rows}  # fmt: skip
    if args.json:
        write_json(args.json, {"machine": {**machine(), "note": args.machine_note}, **payload})
    if args.plot:
        plot(rows, args.plot, limits)
    return payload


if __name__ == "__main__":
    main()
