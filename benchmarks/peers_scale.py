"""hiref and its peers as the problem grows: planted pairs whose optimum is known, until each peer stops.

The planted pair of ``hr.datasets.planted_pair(n, kind=--kind)`` (``density``: a smooth
non-uniform density on an irregular outline, MERFISH-like) has a known optimal matching for the
squared Euclidean cost at any ``n``, so every method's gap to the optimum can be measured where
no exact solver can run. The methods of ``--methods`` run one after the other, each over the
sizes of ``--n`` in ascending order, every run in its own process, which the parent watches: it
is killed when it passes ``--limit`` seconds (wall time of the process), when its resident memory
passes ``--mem-gb``, or when the machine's available memory (``MemAvailable``) falls below
``--free-gb`` (a safety margin on a shared machine); that row is a *measured* stop. Before each
run, the method's time and peak memory at the new size are predicted from its two largest
measured sizes (growth per doubling of ``n``; the memory at least the dense ``n x n`` matrices
the method must hold): a run predicted past ``--margin`` times a limit is not started and its row
is a *predicted* stop, with the prediction and the growth it came from. A method that stopped
(or failed) is not run at larger ``n``. hiref runs at every seed of ``--hiref-seeds`` (the
summary ``hiref_seeds`` gives the median and the worst over them); the peers, deterministic or
nearly so, at one seed (``--seed``). ``--budget`` bounds the whole run: a run predicted to end
past it is not started, and one still running when it ends is killed (status ``not run`` /
``not finished``: a budget cut, not a stop of the method). The JSON file is rewritten after
every size, so an interrupted run keeps what it measured.

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
``status`` (``ok``; ``stopped: ...`` with the limit it passed or is predicted to pass; ``not run``)
and ``stop`` (``measured``, ``predicted`` or ``budget``). The figure draws the median over seeds,
a filled marker where a method was stopped at a limit and an open one where its stop was
predicted.

Examples
--------
    python benchmarks/peers_scale.py --json benchmarks/results/peers_scale.json \\
        --plot benchmarks/results/peers_scale.png
    python benchmarks/peers_scale.py --n 4096 16384 --methods hiref,scipy_lsa --limit 60 --mem-gb 4
    python benchmarks/peers_scale.py --replot benchmarks/results/peers_scale.json \\
        --plot benchmarks/results/peers_scale.png
    # hiref again after an engine change, the peers' rows kept from the earlier run
    python benchmarks/peers_scale.py --methods hiref --keep benchmarks/results/peers_scale.json \\
        --json benchmarks/results/peers_scale.json --plot benchmarks/results/peers_scale.png
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
#: The time the figure shows: the wall time of the method (the one its limit and its predicted stop
#: are on); the CPU time is in the rows (``cpu_s``), lower where other jobs shared the core.
TIME = "seconds"
SHORT = {"scipy_lsa": "scipy", "pot_emd": "POT", "moscot_sinkhorn": "moscot", "moscot_lowrank": "moscot r50"}
COLUMNS = ["n", "method", "seed", "seconds", "cpu_s", "rss_gb", "gap_pct", "true_pct", "one_to_one", "status"]


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


def mem_available_gb() -> float:
    """The machine's available memory (``MemAvailable`` of ``/proc/meminfo``) in GB; infinity where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    return float("inf")


def run_one(method: str, n: int, kind: str, seed: int, limit: float, mem_gb: float, free_gb: float = 1.5) -> dict:
    """``child`` in a fresh process, stopped past ``limit`` seconds or ``mem_gb`` resident GB.

    It is also stopped when the machine's available memory falls below ``free_gb`` (a safety
    margin on a shared machine); its row says which of the three stopped it.
    """
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
            elif mem_available_gb() < free_gb:
                reason = f"stopped: machine's free memory under {free_gb:g} GB (at {peak:.1f} GB resident)"
            if reason:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        stdout, stderr = proc.communicate()
    base = {"n": n, "method": method, "seed": seed}
    if reason:
        return {**base, "seconds": time.perf_counter() - t0, "rss_gb": peak, "status": reason, "stop": "measured"}
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["?"])[-1][:200]
        return {**base, "rss_gb": peak, "status": f"failed (exit {proc.returncode}): {tail}", "stop": "measured"}
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "seed": seed}


#: Dense ``n x n`` float64 matrices a method holds at once (its memory floor): scipy the cost,
#: POT the cost and the coupling, moscot the float32 coupling (half a float64 matrix).
DENSE = {"scipy_lsa": 1.0, "pot_emd": 2.0, "moscot_sinkhorn": 0.5}


def predict(rows: list[dict], method: str, n: int) -> dict | None:
    """Time and peak memory of ``method`` at ``n`` from its two largest measured sizes; None with fewer.

    Per doubling of ``n`` the time grows by ``g = (t1 / t0) ** (1 / log2(n1 / n0))`` (at least 1),
    so ``t(n) = t1 * g ** log2(n / n1)``; the resident memory likewise, but never less than the
    dense ``n x n`` matrices the method must hold (:data:`DENSE`). With several seeds at one size
    the median is used.
    """
    done: dict[int, list[dict]] = {}
    for r in rows:
        if r["method"] == method and r.get("status") == "ok" and r["n"] < n:
            done.setdefault(r["n"], []).append(r)
    if len(done) < 2:
        return None
    n0, n1 = sorted(done)[-2:]
    t0, t1 = (float(np.median([r["seconds"] for r in done[k]])) for k in (n0, n1))
    m0, m1 = (float(np.median([r["rss_gb"] for r in done[k]])) for k in (n0, n1))
    steps = np.log2(n1 / n0)
    ahead = np.log2(n / n1)
    g_t = max(1.0, (t1 / t0) ** (1 / steps))
    g_m = max(1.0, (m1 / m0) ** (1 / steps))
    floor = DENSE.get(method, 0.0) * 8 * float(n) ** 2 / 1e9
    return {"seconds": float(t1 * g_t**ahead), "growth_t": float(g_t), "rss_gb": float(max(m1 * g_m**ahead, floor)),
            "growth_m": float(g_m),
            "dense_gb": floor, "from_n": [n0, n1]}  # fmt: skip


def predicted_stop(
    rows: list[dict], method: str, n: int, limit: float, mem_gb: float, margin: float = 1.5
) -> dict | None:
    """The row of a predicted stop when the prediction passes ``margin`` times a limit; else None (run it)."""
    guess = predict(rows, method, n)
    if guess is None:
        return None
    base = {"n": n, "method": method, "stop": "predicted", "predicted_s": guess["seconds"],
            "predicted_gb": guess["rss_gb"], "growth_per_doubling": guess["growth_t"]}  # fmt: skip
    if guess["rss_gb"] > margin * mem_gb:
        why = (f"stopped: predicted ~{guess['rss_gb']:.0f} GB > {mem_gb:g} GB limit (measured growth "
               f"x{guess['growth_m']:.1f} per doubling; dense n x n matrices alone "
               f"{guess['dense_gb']:.0f} GB)")  # fmt: skip
        return {**base, "status": why}
    if guess["seconds"] > margin * limit:
        why = (f"stopped: predicted ~{guess['seconds']:.0f} s > {limit:g} s limit "
               f"(measured growth x{guess['growth_t']:.1f} per doubling)")  # fmt: skip
        return {**base, "status": why}
    return None


def stops(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method: the largest n it finished and the row where it stopped, with the reason (measured or predicted)."""
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        done = [r["n"] for r in mine if r.get("status") == "ok"]
        stop = next((r for r in mine if r.get("status") != "ok"), None)
        out.append({"method": method, "largest_n_done": max(done) if done else None,
                    "stopped_at_n": stop["n"] if stop else None,
                    "why": stop["status"] if stop else "finished every n",
                    "stop": stop.get("stop") if stop else None})  # fmt: skip
    return out


def seed_summary(rows: list[dict], method: str = "hiref") -> list[dict]:
    """Per n, over the seeds of ``method``: median and worst of the seconds, the gap and the share of true partners."""
    out = []
    for n in sorted({r["n"] for r in rows if r["method"] == method and r.get("status") == "ok"}):
        mine = [r for r in rows if r["method"] == method and r["n"] == n and r.get("status") == "ok"]
        s, c, g, t = (np.array([r[k] for r in mine]) for k in ("seconds", "cpu_s", "gap_pct", "true_pct"))
        out.append({"n": n, "method": method, "seeds": len(mine), "seconds_median": float(np.median(s)),
                    "seconds_max": float(s.max()), "cpu_s_median": float(np.median(c)), "cpu_s_max": float(c.max()),
                    "gap_pct_median": float(np.median(g)), "gap_pct_max": float(g.max()),
                    "true_pct_median": float(np.median(t)), "true_pct_min": float(t.min()),
                    "rss_gb_max": float(max(r["rss_gb"] for r in mine))})  # fmt: skip
    return out


def _curve(rows: list[dict], method: str, key: str) -> tuple[list[int], list[float]]:
    """The median of ``key`` over the seeds at every n the method finished."""
    ns = sorted({r["n"] for r in rows if r["method"] == method and r.get("status") == "ok"})
    ys = [float(np.median([r[key] for r in rows if r["method"] == method and r["n"] == n and r.get("status") == "ok"]))
          for n in ns]  # fmt: skip
    return ns, ys


def plot(rows: list[dict], path: str | Path, limits: str, limit_s: float | None = None) -> None:
    """Time and gap to the optimum against n (log-log), one line per method (the median over seeds).

    Where a method stops: a filled marker for a measured stop (killed at a limit, at the time it
    had run), an open one for a predicted stop (at the predicted time), joined by a dotted line.
    """
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from hiref.engine.options import AUTO_POLISH_MAX  # above it, hr.solve's default leaves out the exact finish

    fig, (ax_t, ax_g) = plt.subplots(1, 2, figsize=(11, 4.8))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    labelled: dict[tuple, int] = {}  # stop labels already written at one spot: the next one goes below
    for method in methods:
        color, marker = STYLE.get(method, ("C7", "x"))
        ns, ts = _curve(rows, method, TIME)
        _, gs = _curve(rows, method, "gap_pct")
        stop = next((r for r in rows if r["method"] == method and r.get("status", "").startswith(("stopped", "fail"))),
                    None)  # fmt: skip
        label = LABEL.get(method, method)
        if method == "hiref" and len({r.get("seed") for r in rows if r["method"] == method}) > 1:
            label += ", median of seeds"
        if ns:
            ax_t.plot(ns, ts, marker=marker, color=color, label=label, ms=5)
            ax_g.plot(ns, gs, marker=marker, color=color, ms=5)
        else:
            ax_t.plot([], [], marker=marker, color=color, label=label)
        big = [(n, g) for n, g in zip(ns, gs, strict=True) if n > AUTO_POLISH_MAX]
        if method == "hiref" and big:  # where its default leaves out the exact finish
            ax_g.annotate(f"hiref's default skips its exact\nfinish above 2^{AUTO_POLISH_MAX.bit_length() - 1}", big[0],
                          textcoords="offset points", xytext=(-150, 8), fontsize=7, color=color)  # fmt: skip
        cut = next((r for r in rows if r["method"] == method and r.get("stop") == "budget"), None)
        if cut and ns and not stop:  # the run's time budget ended it, no limit: a note at its last point
            ax_t.annotate(f"{SHORT.get(method, method)}: not run further (time budget)", (ns[-1], ts[-1]),
                          textcoords="offset points", xytext=(8, -10), fontsize=7, color=color)  # fmt: skip
        if not stop:
            continue
        predicted = stop.get("stop") == "predicted"
        s = stop["status"]
        word = "memory" if ("memory" in s or " GB" in s) else ("time" if ("over" in s or " s limit" in s) else "failed")
        y = stop.get("predicted_s") if predicted else stop.get("seconds")
        y = y or (ts[-1] if ts else 1.0)
        if ns:
            ax_t.plot([ns[-1], stop["n"]], [ts[-1], y], ":", color=color)
        face = "white" if predicted else color
        ax_t.plot(stop["n"], y, marker=marker, ms=10, mew=1.8, color=color, mfc=face, ls="none")
        spot = (stop["n"], round(float(np.log10(y)), 0))
        k = labelled[spot] = labelled.get(spot, -1) + 1
        text = f"{SHORT.get(method, method)}: {word}" + (" (predicted)" if predicted else "")
        right = stop["n"] * 8 >= max(r["n"] for r in rows)  # near the right edge: the label goes under it
        ax_t.annotate(text, (stop["n"], y), textcoords="offset points", xytext=(0, -18) if right else (10, -3 - 11 * k),
                      ha="center" if right else "left", fontsize=7, color=color,
                      bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5})  # fmt: skip
    if limit_s:
        ax_t.axhline(limit_s, color="0.5", lw=0.8, ls="--")
        ax_t.annotate(f"time limit {limit_s:g} s", (0.02, limit_s), xycoords=("axes fraction", "data"),
                      textcoords="offset points", xytext=(0, 3), fontsize=7, color="0.4")  # fmt: skip
    for ax in (ax_t, ax_g):
        ax.set_xscale("log", base=2)
    ax_t.set_yscale("log")
    # symmetric log: 0 for an exact solver, and a coupling whose marginals are off (not converged)
    # can cost less than the optimum
    ax_g.set_yscale("symlog", linthresh=1e-2)
    ax_g.axhline(0, color="0.6", lw=0.8)
    gaps = [r["gap_pct"] for r in rows if r.get("gap_pct") is not None]
    if gaps:
        ax_g.set_ylim(min(-1e-2, 3 * min(gaps)), max(1.0, 3 * max(gaps)))
        if min(gaps) < 0:
            ax_g.annotate("below 0: a coupling whose marginals are off\n(Sinkhorn not converged)", (0.22, 0.04),
                          xycoords="axes fraction", fontsize=7, color="0.3")  # fmt: skip
    for ax in (ax_t, ax_g):
        ax.set_xlabel("points per side, n")
        ax.grid(alpha=0.3, which="both")
    ax_t.set_ylabel("wall seconds on one core")
    ax_g.set_ylabel("cost over the optimum (%, symlog; 0 = optimal)")
    ax_t.set_title("time to a matching / coupling", fontsize=10)
    ax_g.set_title("gap to the known optimum", fontsize=10)
    handles, labels = ax_t.get_legend_handles_labels()
    kinds = {r.get("stop") for r in rows if r.get("status", "").startswith(("stopped", "fail"))}
    if "measured" in kinds:
        handles.append(Line2D([], [], marker="o", color="0.3", ls="none", ms=8))
        labels.append("stopped at a limit (measured)")
    if "predicted" in kinds:
        handles.append(Line2D([], [], marker="o", color="0.3", mfc="white", ls="none", ms=8))
        labels.append("stop predicted from the growth, not run")
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"planted density pairs; {limits}", fontsize=9)
    fig.tight_layout(rect=(0, 0.13, 1, 0.95))
    fig.savefig(path, dpi=140)
    print(f"wrote {path}")


def _limits_line(s: dict) -> str:
    extra = "".join(f", {m} {v:g} s" for m, v in s.get("limit_s_for", {}).items())
    return f"limits {s['limit_s']:g} s and {s['mem_gb']:g} GB resident per run{extra}; {s.get('machine_short', '')}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[2**k for k in range(11, 21)])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--kind", default="density", choices=["density", "lattice"])
    parser.add_argument("--seed", type=int, default=0, help="the seed of the peers' runs (they are deterministic)")
    parser.add_argument("--hiref-seeds", type=int, nargs="+", default=[0, 1, 2], help="hiref's seeds at every n")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds before a method is stopped")
    parser.add_argument("--mem-gb", type=float, default=20.0, help="resident GB before a method is stopped")
    parser.add_argument("--free-gb", type=float, default=1.5,
                        help="a run is also stopped when the machine's available memory falls below this")  # fmt: skip
    parser.add_argument("--margin", type=float, default=1.5,
                        help="a run predicted past this times a limit is not started")  # fmt: skip
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run: a run predicted to end past it is not started")  # fmt: skip
    parser.add_argument("--limit-for", nargs="*", default=[], metavar="METHOD=SECONDS",
                        help="another time limit for some methods (e.g. hiref=400)")  # fmt: skip
    parser.add_argument("--machine-note", default="", help="a line on the machine (cores, sharing)")
    parser.add_argument("--machine-short", default="", help="a few words on the machine for the figure's title")
    parser.add_argument("--json", type=Path, default=None, help="written after every run (and at the end)")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--replot", type=Path, default=None, help="only draw --plot from this JSON file of an earlier run"
    )
    parser.add_argument(
        "--keep", type=Path, default=None,
        help="an earlier run's JSON: its rows of the methods not run now are kept (their settings noted)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], int(args.child[1]), args.kind, args.seed)), flush=True)
        return {}
    if args.replot:
        old = json.loads(args.replot.read_text())
        plot(old["rows"], args.plot, _limits_line(old["settings"]), old["settings"]["limit_s"])
        return old
    sys.path.insert(0, str(HERE))
    from _common import machine, print_table, write_json

    methods = args.methods.split(",")
    limit_for = {m: float(v) for m, v in (item.split("=") for item in args.limit_for)}
    settings = {"kind": args.kind, "seed": args.seed, "hiref_seeds": args.hiref_seeds, "limit_s": args.limit,
                "mem_gb": args.mem_gb, "free_gb": args.free_gb, "margin": args.margin, "budget_s": args.budget,
                "limit_s_for": limit_for, "machine_note": args.machine_note, "machine_short": args.machine_short,
                "rule": "methods run one after the other, each over ascending n; before a run the time and peak "
                        "memory are predicted from the method's two largest measured sizes (growth per doubling; "
                        "memory at least the dense n x n matrices it holds); a run predicted past margin x a limit "
                        "is not started (stop: predicted); any other run is killed past the time limit, the "
                        "resident-memory limit, or when the machine's available memory falls below free_gb "
                        "(stop: measured); peers run one seed (they are deterministic), hiref every seed"}  # fmt: skip
    rows: list[dict] = []
    if args.keep:
        earlier = json.loads(args.keep.read_text())
        rows = [r for r in earlier["rows"] if r["method"] not in methods]
        kept = sorted({r["method"] for r in rows})
        settings["kept"] = {"methods": kept, "from": earlier.get("machine", {}).get("date"),
                            "settings": earlier["settings"]}  # fmt: skip
        methods = kept + methods
    t_all = time.perf_counter()

    def payload() -> dict:
        settings["total_seconds"] = time.perf_counter() - t_all
        return {"settings": settings, "stops": stops(rows, methods), "hiref_seeds": seed_summary(rows), "rows": rows}

    for method in methods:
        if args.keep and method in settings["kept"]["methods"]:
            continue
        if method in NEEDS and importlib.util.find_spec(NEEDS[method]) is None:
            rows.append({"n": min(args.n), "method": method, "status": f"skipped: {NEEDS[method]} not installed"})
            continue
        limit = limit_for.get(method, args.limit)
        for n in sorted(args.n):
            row = predicted_stop(rows, method, n, limit, args.mem_gb, args.margin)
            guess = predict(rows, method, n)
            left = None if args.budget is None else args.budget - (time.perf_counter() - t_all)
            if row is None and left is not None and (left <= 0 or (guess and guess["seconds"] > left)):
                row = {"n": n, "method": method, "stop": "budget",
                       "status": f"not run: {max(left, 0):.0f} s left of the {args.budget:g} s budget"}  # fmt: skip
            if row is not None:
                rows.append(row)
                print(json.dumps(row), flush=True)
                break
            seeds = args.hiref_seeds if method == "hiref" else [args.seed]
            for seed in seeds:
                left = None if args.budget is None else args.budget - (time.perf_counter() - t_all)
                now = limit if left is None else max(1.0, min(limit, left))
                row = run_one(method, n, args.kind, seed, now, args.mem_gb, args.free_gb)
                if now < limit and row.get("status", "").startswith("stopped: over"):  # the budget, not the limit
                    why = f"not finished: the run's {args.budget:g} s budget ran out after {row['seconds']:.0f} s"
                    row.update(stop="budget", status=f"{why} (limit {limit:g} s not reached)")
                rows.append(row)
                print(json.dumps(row), flush=True)
                if row.get("status") != "ok":
                    break
            if args.json:
                write_json(args.json, {"machine": {**machine(), "note": args.machine_note}, **payload()})
            if row.get("status") != "ok":
                break
    out = payload()
    print_table(rows, COLUMNS, f"planted {args.kind} pairs: hiref and peers until each stops")
    print_table(out["stops"], list(out["stops"][0]), "where each method stops")
    if args.json:
        write_json(args.json, {"machine": {**machine(), "note": args.machine_note}, **out})
    if args.plot:
        plot(rows, args.plot, _limits_line(settings), args.limit)
    return out


if __name__ == "__main__":
    main()
