"""Tissue benchmark: gap to the exact optimum on real sections and hard synthetic clouds.

For every case, the exact optimum comes from scipy's ``linear_sum_assignment`` on the dense
cost (rectangular when the sections differ in size: every point of the smaller side matched),
in the same run. Then, over seeds 0-4 (``--seeds``), three settings of ``hr.solve``:

- ``hierarchy``: ``polish=False, refine=False``, the engine before polishing (the old default);
- ``default``: the defaults (polish up to 16 dimensions, windows above);
- ``strong``: ``polish=True, refine=True, polish_neighbours=32``.

It prints the max and median gap (%) of each setting, its median time, and the ratio of
times in the same run (exact / default, default / hierarchy). Cases (coordinates centred):

- real pairs from ``../shared/data`` (or ``$HIREF_SHARED_DATA``), position only, at their true
  unequal sizes: MERFISH Bregma 0.26 -> 0.21, DLPFC 151673 -> 151674, PASTE breast 1->2, 2->3, 3->4;
  MERFISH at equal n (the first 5,578 cells of each); MERFISH on 30 joint PCs + position,
  each part standardised to unit variance, weighted 1:1 (32 dimensions);
- the uniform 4 x 4 checkerboard of the engine issue (unit squares centred at the origin, X on
  the even squares from ``default_rng(0)``, Y on the odd ones from ``default_rng(1)``), n = 1024, 4096;
- a Gaussian mixture in d = 30, n = 4096 (8 components, means 3 N(0, I); Y's means scaled by
  1.1 and shifted by 0.5);
- the paper's three synthetic pairs at n = 1024 and 4096 (``--paper``; the exact solver needs
  30-120 s each at 4096).

``--emd`` also times POT's exact network simplex ``ot.emd`` (cost matrix included, as for scipy)
on the cases of equal sizes, in the same run (``emd_s``, ``emd/default``; needs ``pip install pot``).

``--scale 16 18 20`` adds time and peak resident memory at 2**k points per side (a tissue-like
pair: two uniform samples of the unit square, one stretched by 2 %), each setting in a fresh
process, with its cost relative to the hierarchy's (no exact optimum at that size); beyond
2**18, where the defaults skip the polish, ``strong`` is ``polish=True`` alone.

Examples
--------
    python benchmarks/tissue.py --json benchmarks/results/tissue_cpu.json
    python benchmarks/tissue.py --cases merfish dlpfc --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.datasets import checkerboard, halfmoon_scurve, maf_moons_rings

from _common import print_table, write_json

SETTINGS = {
    "hierarchy": {"polish": False, "refine": False},
    "default": {},
    "strong": {"polish": True, "refine": True, "polish_neighbours": 32},
}


def _data_dir() -> Path:
    root = Path(__file__).resolve().parents[1]
    for c in (os.environ.get("HIREF_SHARED_DATA"), root.parent / "shared" / "data"):
        if c and Path(c, "dlpfc_151673.h5ad").exists():
            return Path(c)
    msg = "real sections not found: put them in ../shared/data or set HIREF_SHARED_DATA"
    raise SystemExit(msg)


def _read(name: str) -> ad.AnnData:
    return ad.read_h5ad(_data_dir() / name)


def _centred(a: ad.AnnData) -> np.ndarray:
    xy = np.asarray(a.obsm["spatial"], dtype=np.float64)
    return xy - xy.mean(0)


def _pair(first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
    return _centred(_read(first)), _centred(_read(second))


MERFISH = ("merfish_hypothalamus_bregma0.26.h5ad", "merfish_hypothalamus_bregma0.21.h5ad")


def _merfish_equal() -> tuple[np.ndarray, np.ndarray]:
    X, Y = _pair(*MERFISH)
    n = min(len(X), len(Y))
    return X[:n], Y[:n]


def _merfish_joint() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    a, b = (_read(f) for f in MERFISH)
    genes = a.var_names.intersection(b.var_names)
    expr = np.log1p(np.vstack([a[:, genes].X.toarray(), b[:, genes].X.toarray()]))
    pcs = PCA(30, random_state=0).fit_transform(expr - expr.mean(0))
    xy = np.vstack([_centred(a), _centred(b)])

    def unit(Z: np.ndarray) -> np.ndarray:
        Z = Z - Z.mean(0)
        return Z / np.sqrt((Z**2).sum(1).mean())

    joint = np.hstack([unit(pcs), unit(xy)])
    return joint[: a.n_obs], joint[a.n_obs :]


def _uniform_checkerboard(n: int) -> tuple[np.ndarray, np.ndarray]:
    squares = np.array([(c, r) for c in range(4) for r in range(4)], dtype=float)
    parity = squares.sum(1) % 2

    def draw(seed: int, odd: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        cells = squares[parity == odd]
        return cells[rng.integers(0, len(cells), n)] + rng.random((n, 2)) - 2.0

    return draw(0, 0), draw(1, 1)


def _gaussian_mixture_30d(n: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    means = 3 * rng.standard_normal((8, 30))
    X = means[rng.integers(0, 8, n)] + rng.standard_normal((n, 30))
    rng = np.random.default_rng(1)
    Y = (1.1 * means + 0.5)[rng.integers(0, 8, n)] + rng.standard_normal((n, 30))
    return X, Y


CASES = {
    "merfish": lambda: _pair(*MERFISH),
    "merfish_equal": _merfish_equal,
    "merfish_joint30": _merfish_joint,
    "dlpfc": lambda: _pair("dlpfc_151673.h5ad", "dlpfc_151674.h5ad"),
    "paste_1_2": lambda: _pair("paste_breast_slice1.h5ad", "paste_breast_slice2.h5ad"),
    "paste_2_3": lambda: _pair("paste_breast_slice2.h5ad", "paste_breast_slice3.h5ad"),
    "paste_3_4": lambda: _pair("paste_breast_slice3.h5ad", "paste_breast_slice4.h5ad"),
    "uniform_checker_1024": lambda: _uniform_checkerboard(1024),
    "uniform_checker_4096": lambda: _uniform_checkerboard(4096),
    "gaussian_mixture_30d": _gaussian_mixture_30d,
}
PAPER = {
    f"{name}_{n}": (lambda make=make, n=n: tuple(np.asarray(P, dtype=np.float64) for P in make(n, seed=0)))
    for name, make in (("halfmoon", halfmoon_scurve), ("checkerboard", checkerboard), ("maf", maf_moons_rings))
    for n in (1024, 4096)
}


def run_case(name: str, X: np.ndarray, Y: np.ndarray, seeds: list[int], *, emd: bool = False) -> dict:
    t0 = time.perf_counter()
    C = cdist(X, Y, "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    best = float(C[rows, cols].sum() / min(C.shape))
    exact_s = time.perf_counter() - t0
    del C
    row: dict = {"case": name, "n_x": len(X), "n_y": len(Y), "d": X.shape[1], "exact_s": exact_s}
    for setting, options in SETTINGS.items():
        gaps, times = [], []
        for seed in seeds:
            t0 = time.perf_counter()
            m = hr.solve(X, Y, seed=seed, progress=False, **options)
            times.append(time.perf_counter() - t0)
            gaps.append(100 * (m.cost / best - 1))
        row[f"{setting}_gap_max"] = max(gaps)
        row[f"{setting}_gap_med"] = float(np.median(gaps))
        row[f"{setting}_s"] = float(np.median(times))
        row[f"{setting}_gaps"] = gaps
    row["exact/default"] = exact_s / row["default_s"]
    if emd and len(X) == len(Y):
        import _peers as peers

        got = peers.emd(X, Y, "sqeuclidean")
        row["emd_s"], row["emd_converged"] = got["seconds"], got["converged"]
        row["emd/default"] = got["seconds"] / row["default_s"]
    row["default/hierarchy"] = row["default_s"] / row["hierarchy_s"]
    return row


def _scale_child(log2n: int, setting: str) -> None:
    """One solve at 2**log2n points in this (fresh) process; prints seconds, cost and peak RSS as JSON."""
    rng = np.random.default_rng(0)
    n = 1 << log2n
    X, Y = rng.random((n, 2)), rng.random((n, 2)) * [1.02, 0.98]
    options = SCALE_SETTINGS[setting] if log2n > 18 and setting in SCALE_SETTINGS else SETTINGS[setting]
    t0 = time.perf_counter()
    m = hr.solve(X, Y, seed=0, progress=False, **options)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "cost": m.cost, "rss_gb": _peak_rss_gb()}))


def _peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


#: Beyond 2**18 the defaults skip the polish: the strong setting is the forced polish alone there
#: (its window passes would take minutes).
SCALE_SETTINGS = {"strong": {"polish": True}}


def run_scale(log2ns: list[int]) -> list[dict]:
    rows = []
    for log2n in log2ns:
        row: dict = {"log2n": log2n}
        for setting in SETTINGS:
            cmd = [sys.executable, __file__, "--scale-child", str(log2n), setting]
            got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            row[f"{setting}_s"] = got["seconds"]
            row[f"{setting}_rss_gb"] = got["rss_gb"]
            base = row.setdefault("hierarchy_cost", got["cost"])
            row[f"{setting}_cost_vs_hierarchy_%"] = 100 * (got["cost"] / base - 1)
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=[*CASES, *PAPER])
    parser.add_argument("--paper", action="store_true", help="add the paper's synthetic pairs at 1024 and 4096")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--emd", action="store_true", help="time POT's exact ot.emd too (equal sizes)")
    parser.add_argument("--scale", nargs="*", type=int, default=[], help="log2 sizes of the scale section")
    parser.add_argument("--scale-child", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args()
    if args.scale_child:
        _scale_child(int(args.scale_child[0]), args.scale_child[1])
        return
    names = list(args.cases) + (list(PAPER) if args.paper else [])
    rows = []
    for name in names:
        X, Y = {**CASES, **PAPER}[name]()
        rows.append(run_case(name, X, Y, args.seeds, emd=args.emd))
        gaps = "  ".join(f"{s} {rows[-1][f'{s}_gap_max']:.3f}/{rows[-1][f'{s}_gap_med']:.3f}" for s in SETTINGS)
        print(f"{name}: gap max/median % {gaps}", flush=True)
    columns = ["case", "n_x", "n_y", "d"]
    for setting in SETTINGS:
        columns += [f"{setting}_gap_max", f"{setting}_gap_med", f"{setting}_s"]
    print_table(
        rows,
        [*columns, "exact_s", "exact/default", *(["emd_s", "emd/default"] if args.emd else []), "default/hierarchy"],
        f"gap to exact (%), seeds {args.seeds}",
    )
    payload = {"seeds": args.seeds, "settings": SETTINGS, "rows": rows} if rows else {}
    if args.scale:
        payload["scale"] = run_scale(args.scale)
        print_table(payload["scale"], list(payload["scale"][-1]), "time (s), peak RSS (GB), cost vs the hierarchy (%)")
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
