"""hiref against the tools users would pick instead (moscot, PASTE, exact solvers), on real sections.

Every (case, method) runs in its own process (so that its peak resident memory is its own) under
a wall-clock limit (``--limit``, seconds); a method that fails or passes the limit gets a row that
says so. Cases (``--cases``):

- ``dlpfc_fwd`` / ``dlpfc_rev``: DLPFC 151673 -> 151674 and back (layer labels);
- ``dlpfc_fwd_cropR``: the target (151674) cut to the right 70 % of its width, as users' sections
  rarely cover the same area (the crops of ``benchmarks/recipe.py``);
- ``merfish``: MERFISH hypothalamus Bregma 0.26 -> 0.21 (cell classes);
- ``breast_1_2``, ``breast_2_3``, ``breast_3_4``: the PASTE breast-cancer slices 1 -> 2, 2 -> 3
  and 3 -> 4 (no labels: gene transfer only).

Methods (``--methods``); every coupling is read as a matching by the argmax of each column (every
target cell takes the source cell carrying most of its mass: the PASTE convention), so several
target cells may share one partner:

- ``hiref_default``: ``hr.pp.register(a, b)`` then ``hr.tl.align(a, b, spatial_key="spatial_registered")``
  (the default recipe; its time includes the registration);
- ``hiref_position``: ``hr.tl.align(a, b, use_rep="spatial")``, position alone, no registration;
- ``moscot_sinkhorn``: moscot ``SinkhornProblem`` on ``obsm["spatial"]`` with its defaults
  (``epsilon=1e-3``, ``scale_cost="mean"``, balanced);
- ``moscot_lowrank``: the same with ``rank=50``;
- ``moscot_alignment``: moscot ``AlignmentProblem`` (fused Gromov-Wasserstein) with its defaults
  (``alpha=0.5``, ``epsilon=1e-2``, 30 PCs of log-normalised counts computed by moscot);
- ``paste``: PASTE ``paste.pairwise_align(a, b, alpha=0.1)`` on raw counts (its tutorial's call);
- ``pot_emd``: POT's exact ``ot.emd`` on the squared distance of positions, uniform weights (a
  balanced coupling, not a matching when the sizes differ);
- ``scipy_lsa``: scipy's exact ``linear_sum_assignment`` on the squared distance of positions
  (the optimal one-to-one matching on position; every cell of the smaller side gets a partner).

Scores: ``accuracy`` (labelled target cells whose partner carries the same label; DLPFC layer,
MERFISH cell class; target cells without a partner count as wrong), ``cosine`` (the HiRef paper's
gene-transfer score: partners' expression against the measured one, cosine per gene on a spatial
grid, ``hr.tl.cosine_similarity``, mean over the 20 genes with most counts in the target),
``median_dist`` (median distance between partners in the coordinates of the files, in the unit
of the slide: Visium pixels, µm, ST array units), ``distinct`` (distinct source cells used as
partners), ``seconds`` (the method's wall time from its inputs to the partners, in its own
process, imports and data loading excluded, just-in-time compilation included), ``cpu_s`` (the
CPU time of that process over the same span: on a shared machine, less sensitive to the other
jobs than ``seconds``) and ``rss_gb``
(the process's peak resident memory: data, libraries and the method).

Examples
--------
    python benchmarks/peers_real.py --json benchmarks/results/peers_real.json
    python benchmarks/peers_real.py --cases dlpfc_fwd --methods paste --limit 1200 \\
        --json benchmarks/results/peers_real.json --update
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
CASES = ("dlpfc_fwd", "dlpfc_rev", "dlpfc_fwd_cropR", "merfish", "breast_1_2", "breast_2_3", "breast_3_4")
METHODS = ("hiref_default", "hiref_position", "moscot_sinkhorn", "moscot_lowrank", "moscot_alignment", "paste",
           "pot_emd", "scipy_lsa")  # fmt: skip
#: The package each peer needs (the rest need only hiref, numpy and scipy).
NEEDS = {"moscot_sinkhorn": "moscot", "moscot_lowrank": "moscot", "moscot_alignment": "moscot", "paste": "paste",
         "pot_emd": "ot"}  # fmt: skip
#: Modules imported before the clock starts.
PRELOAD = {"hiref_default": ("hiref",), "hiref_position": ("hiref",), "moscot_sinkhorn": ("moscot.problems.generic",),
           "moscot_lowrank": ("moscot.problems.generic",), "moscot_alignment": ("scanpy", "moscot.problems.space"),
           "paste": ("paste",), "pot_emd": ("ot",), "scipy_lsa": ("scipy.optimize",)}  # fmt: skip
BINS = {"dlpfc": 30, "merfish": 75, "breast": 15}
COLUMNS = ["case", "method", "n_source", "n_target", "accuracy", "cosine", "median_dist", "distinct", "one_to_one",
           "seconds", "cpu_s", "rss_gb", "status"]  # fmt: skip


def load_case(name: str, data: Path = DATA) -> tuple[ad.AnnData, ad.AnnData, str | None, int]:
    """A case: (source, target, label column or None, bins of the cosine grid)."""
    if name.startswith("dlpfc"):
        sys.path.insert(0, str(HERE))
        from recipe import dlpfc_cases

        source, target, obs = dlpfc_cases(data)[name.removeprefix("dlpfc_")]
        return source, target, obs, BINS["dlpfc"]
    if name == "merfish":
        a = ad.read_h5ad(data / "merfish_hypothalamus_bregma0.26.h5ad")
        b = ad.read_h5ad(data / "merfish_hypothalamus_bregma0.21.h5ad")
        return a, b, "cell_class", BINS["merfish"]
    if name.startswith("breast"):
        i, j = name.split("_")[1:]
        a = ad.read_h5ad(data / f"paste_breast_slice{i}.h5ad")
        b = ad.read_h5ad(data / f"paste_breast_slice{j}.h5ad")
        genes = a.var_names.intersection(b.var_names)
        return a[:, genes].copy(), b[:, genes].copy(), None, BINS["breast"]
    if name == "tiny":  # for the tests: a small simulated pair, labelled
        import hiref as hr

        a, b = hr.datasets.simulate_slices(n_obs=200, rotation=0.0, translation=(0.0, 0.0), seed=0)
        return a, b, "region", 8
    msg = f"unknown case {name!r}"
    raise ValueError(msg)


# -- the methods: each returns (partner of every target cell in the source, -1 for none; notes) --


def _column_argmax(P: np.ndarray) -> np.ndarray:
    return np.asarray(P).argmax(0).astype(np.int64)


def _hiref(source: ad.AnnData, target: ad.AnnData, *, register: bool) -> tuple[np.ndarray, dict]:
    import hiref as hr

    s, t = source.copy(), target.copy()
    if register:
        hr.pp.register(s, t)
        hr.tl.align(s, t, spatial_key="spatial_registered", progress=False)
    else:
        hr.tl.align(s, t, use_rep="spatial", progress=False)
    return np.asarray(t.uns["hiref"]["partner"], np.int64), {}


def _moscot_data(source: ad.AnnData, target: ad.AnnData) -> ad.AnnData:
    joint = ad.concat({"src": source, "tgt": target}, label="batch", index_unique="-", join="inner")
    joint.obs["batch"] = joint.obs["batch"].astype("category").cat.reorder_categories(["src", "tgt"])
    return joint


def _moscot_linear(source: ad.AnnData, target: ad.AnnData, *, rank: int) -> tuple[np.ndarray, dict]:
    from moscot.problems.generic import SinkhornProblem

    joint = _moscot_data(source, target)
    problem = SinkhornProblem(joint).prepare(key="batch", joint_attr={"attr": "obsm", "key": "spatial"})
    problem = problem.solve(rank=rank) if rank > 0 else problem.solve()
    solution = problem.solutions[("src", "tgt")]
    P = np.asarray(solution.transport_matrix)
    return _column_argmax(P), {"converged": bool(solution.converged)}


def _moscot_alignment(source: ad.AnnData, target: ad.AnnData) -> tuple[np.ndarray, dict]:
    import scanpy as sc
    from moscot.problems.space import AlignmentProblem

    joint = _moscot_data(source, target)
    sc.pp.normalize_total(joint)
    sc.pp.log1p(joint)
    problem = AlignmentProblem(joint).prepare(batch_key="batch", spatial_key="spatial").solve()
    solution = problem.solutions[("src", "tgt")]
    return _column_argmax(np.asarray(solution.transport_matrix)), {"converged": bool(solution.converged)}


def _paste(source: ad.AnnData, target: ad.AnnData) -> tuple[np.ndarray, dict]:
    import paste

    P = paste.pairwise_align(source.copy(), target.copy(), alpha=0.1)
    return _column_argmax(P), {}


def _position_cost(source: ad.AnnData, target: ad.AnnData) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(source.obsm["spatial"], target.obsm["spatial"], "sqeuclidean")


def _pot_emd(source: ad.AnnData, target: ad.AnnData) -> tuple[np.ndarray, dict]:
    import ot

    n, m = source.n_obs, target.n_obs
    P, log = ot.emd(np.full(n, 1 / n), np.full(m, 1 / m), _position_cost(source, target), numItermax=10**8, log=True)
    return _column_argmax(P), {"converged": log["result_code"] == 1}


def _scipy_lsa(source: ad.AnnData, target: ad.AnnData) -> tuple[np.ndarray, dict]:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(_position_cost(source, target).T)
    partner = np.full(target.n_obs, -1, np.int64)
    partner[rows] = cols
    return partner, {}


RUNNERS = {
    "hiref_default": lambda s, t: _hiref(s, t, register=True),
    "hiref_position": lambda s, t: _hiref(s, t, register=False),
    "moscot_sinkhorn": lambda s, t: _moscot_linear(s, t, rank=-1),
    "moscot_lowrank": lambda s, t: _moscot_linear(s, t, rank=50),
    "moscot_alignment": _moscot_alignment,
    "paste": _paste,
    "pot_emd": _pot_emd,
    "scipy_lsa": _scipy_lsa,
}


def score(source: ad.AnnData, target: ad.AnnData, partner: np.ndarray, obs: str | None, bins: int) -> dict:
    """Accuracy, binned gene-transfer cosine, median partner distance and distinct partners of ``partner``."""
    import hiref as hr

    keep = partner >= 0
    out: dict = {"distinct": len(np.unique(partner[keep])), "matched": int(keep.sum())}
    out["one_to_one"] = out["distinct"] == out["matched"]
    if obs is not None:
        own = target.obs[obs].astype(str).to_numpy()
        theirs = source.obs[obs].astype(str).to_numpy()
        labelled = own != "NA"
        hit = keep & (theirs[np.maximum(partner, 0)] == own)
        out["accuracy"] = float(hit[labelled].mean())
    Ps, Pt = source.obsm["spatial"], target.obsm["spatial"]
    out["median_dist"] = float(np.median(np.linalg.norm(Pt[keep] - Ps[partner[keep]], axis=1)))
    counts = np.asarray(target.X.sum(0)).ravel()
    genes = list(target.var_names[np.argsort(counts)[::-1][:20]])
    X = source[:, genes].X
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    pred = ad.AnnData(X=X[partner[keep]], var=source[:, genes].var.copy(), obsm={"spatial": Pt[keep]})
    truth = target[keep].copy()
    cos = hr.tl.cosine_similarity(pred, truth, genes=genes, bins=bins)
    out["cosine"] = float(cos["cosine_similarity"].mean())
    return out


def child(case: str, method: str, data: Path) -> dict:
    """Run one method on one case in this process; the row of scores."""
    sys.path.insert(0, str(HERE))
    from _common import rss_gb

    source, target, obs, bins = load_case(case, data)
    for module in PRELOAD.get(method, ()):  # imports are not part of the timed run
        importlib.import_module(module)
    t0, c0 = time.perf_counter(), time.process_time()
    partner, notes = RUNNERS[method](source, target)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"case": case, "method": method, "n_source": source.n_obs, "n_target": target.n_obs, "seconds": seconds,
           "cpu_s": cpu}  # fmt: skip
    row.update(score(source, target, partner, obs, bins))
    row.update(notes)
    row["rss_gb"] = rss_gb("VmHWM")
    row["status"] = "ok"
    return row


def run_one(case: str, method: str, data: Path, limit: float) -> dict:
    """``child`` in a fresh process under ``limit`` seconds; a row saying why when it fails."""
    base = {"case": case, "method": method}
    if method in NEEDS and importlib.util.find_spec(NEEDS[method]) is None:
        return {**base, "status": f"skipped: {NEEDS[method]} not installed"}
    return {**_run_child(case, method, data, limit), "limit_s": limit}


def _run_child(case: str, method: str, data: Path, limit: float) -> dict:
    base = {"case": case, "method": method}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", case, method, "--data", str(data)]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {**base, "seconds": time.perf_counter() - t0, "status": f"stopped: over {limit:.0f} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {**base, "status": f"failed (exit {out.returncode}): {tail}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def summary(rows: list[dict]) -> list[dict]:
    """The short table: per case and method, the scores a user chooses by."""
    keys = ("case", "method", "accuracy", "cosine", "median_dist", "distinct", "one_to_one", "seconds", "cpu_s",
            "rss_gb", "status")  # fmt: skip
    return [{k: r.get(k) for k in keys if k in r or k in ("case", "method")} for r in rows]


#: The overview's columns: (title, case, score).
OVERVIEW = (("DLPFC fwd: layer acc.", "dlpfc_fwd", "accuracy"), ("DLPFC rev: layer acc.", "dlpfc_rev", "accuracy"),
            ("DLPFC fwd, target cropped to 70 %: layer acc.", "dlpfc_fwd_cropR", "accuracy"),
            ("MERFISH: class acc.", "merfish", "accuracy"), ("DLPFC fwd: gene cosine", "dlpfc_fwd", "cosine"),
            ("breast 1-2: gene cosine", "breast_1_2", "cosine"), ("breast 2-3: gene cosine", "breast_2_3", "cosine"),
            ("breast 3-4: gene cosine", "breast_3_4", "cosine"),
            ("DLPFC fwd: seconds", "dlpfc_fwd", "seconds"), ("DLPFC fwd: peak GB", "dlpfc_fwd", "rss_gb"))  # fmt: skip


def overview(rows: list[dict]) -> list[dict]:
    """One row per method, the scores a user chooses by in columns (a failed run says why; blank: not run)."""
    out = []
    cases = {r["case"] for r in rows}
    present = {r["method"] for r in rows}
    for method in [m for m in METHODS if m in present]:
        line: dict = {"method": method}
        for title, case, key in OVERVIEW:
            if case not in cases:
                continue
            row = next((r for r in rows if r["method"] == method and r["case"] == case), None)
            if row is None:
                line[title] = "not run"
            elif row.get("status") != "ok":
                line[title] = row["status"].split(":")[0] + (" (> limit)" if "over" in row["status"] else "")
            else:
                line[title] = round(row[key], 3) if key != "seconds" else round(row[key], 1)
        mine = [r for r in rows if r["method"] == method and r.get("status") == "ok"]
        line["one-to-one"] = all(r["one_to_one"] for r in mine) if mine else None
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--skip", default="", help="comma-separated case:method pairs not to run (dlpfc_rev:paste)")
    parser.add_argument("--limit", type=float, default=600.0, help="wall-clock limit of one method on one case (s)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--update", action="store_true", help="keep the other rows of an existing --json file")
    parser.add_argument("--machine-note", default="", help="a line on the machine (cores, sharing)")
    parser.add_argument("--left-out", nargs="*", default=[], metavar="CASE:METHOD=WHY",
                        help="pairs deliberately not run, and why (the JSON's left_out table)")  # fmt: skip
    parser.add_argument(
        "--rows-from",
        type=Path,
        default=None,
        help="rows this script printed earlier (one JSON object a line), kept unless run again",
    )
    parser.add_argument("--child", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args.data)), flush=True)
        return {}
    sys.path.insert(0, str(HERE))
    from _common import machine, print_table, write_json

    skip = set(filter(None, args.skip.split(",")))
    rows = []
    t_all = time.perf_counter()
    for case in filter(None, args.cases.split(",")):
        for method in filter(None, args.methods.split(",")):
            if f"{case}:{method}" in skip:
                continue
            row = run_one(case, method, args.data, args.limit)
            rows.append(row)
            print(json.dumps(row), flush=True)
    total = time.perf_counter() - t_all
    if args.rows_from:
        done = {(r["case"], r["method"]) for r in rows}
        earlier = [json.loads(line) for line in args.rows_from.read_text().splitlines() if line.startswith("{")]
        latest = {(r["case"], r["method"]): r for r in earlier}  # a later run of a case and method wins
        rows = [r for key, r in latest.items() if key not in done] + rows
        earlier = list(latest.values())
        total += sum(r.get("seconds", 0.0) for r in earlier)  # their methods' time (without process start)
    print_table(rows, COLUMNS, "hiref and its peers on real sections (partners: argmax of each coupling column)")
    payload = {"rows": rows}
    if args.json:
        left_out = {}
        if args.update and args.json.exists():
            old = json.loads(args.json.read_text())
            left_out = {(r["case"], r["method"]): r for r in old.get("left_out", [])}
            done = {(r["case"], r["method"]) for r in rows}
            kept = [r for r in old.get("_rows", []) if (r["case"], r["method"]) not in done]
            for r in kept:  # rows of earlier runs keep the limit they ran under
                r.setdefault("limit_s", old.get("settings", {}).get("limit_s"))
            rows = kept + rows
            total += old.get("settings", {}).get("total_seconds", 0.0)
        for item in args.left_out:
            pair, why = item.split("=", 1)
            case, method = pair.split(":")
            left_out[(case, method)] = {"case": case, "method": method, "why": why}
        ran = {(r["case"], r["method"]) for r in rows}
        left_out = [r for key, r in left_out.items() if key not in ran]
        order = {c: i for i, c in enumerate(CASES)}
        rows.sort(key=lambda r: (order.get(r["case"], 99), METHODS.index(r["method"])))
        settings = {"limit_s": args.limit, "machine_note": args.machine_note, "total_seconds": total,
                    "versions": _versions()}  # fmt: skip
        payload = {"machine": {**machine(), "note": args.machine_note}, "settings": settings,
                   "overview": overview(rows), "summary": summary(rows), "_rows": rows}  # fmt: skip
        if left_out:
            payload["left_out"] = left_out
        write_json(args.json, payload)
    return payload


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("hiref", "moscot", "ott-jax", "jax", "paste-bio", "pot", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


if __name__ == "__main__":
    main()
