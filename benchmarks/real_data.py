"""Real slices (../shared/data): gene transfer by hiref against simple peers, in one run.

For each pair of consecutive or adjacent sections, cells of the first are matched to cells of
the second and expression is carried over (``hr.tl.transfer``); the prediction is compared
with the measured expression of the second section by the HiRef paper's evaluation: cosine
similarity per gene on a spatial grid (``hr.tl.cosine_similarity``). Methods:

- ``hiref``: ``hr.tl.align`` on space and expression PCs (equal weights), after ``hr.pp.register``;
- ``hiref_space``: the same on space only;
- ``nearest``: every target cell takes its nearest source cell in (registered) space — not a
  matching: a source cell may be used many times;
- ``minibatch``: exact OT on random batches of 1024 cells per side, on the same representation
  as hiref (for the small PASTE slices one batch holds every spot: it is the exact optimum);
- ``lowrank``: POT low-rank Sinkhorn (``ot.lowrank_sinkhorn``, rank ``--rank``, 40) on the same
  representation, its coupling turned into a matching by exact assignment on the negative
  coupling (every cell of the smaller slice gets a distinct partner); needs POT
  (``pip install -e ".[bench]"``), skipped with a message without it;
- ``exact`` (only with ``--exact``; minutes for MERFISH): the optimal matching on the same
  representation (scipy ``linear_sum_assignment`` on the dense, rectangular cost matrix);
- ``random``: a random matching (chance level).

Besides the binned cosine, every row reports ``cost``: the mean squared Euclidean cost of its
matched pairs on hiref's joint representation (expression PCs and registered space, each
centred, scaled and weighted alike) — the objective hiref minimises — and ``bijection``
(whether the method is one-to-one). ``nearest`` is not (a source cell may serve many targets),
so its cost is no competitor's; ``hiref_space`` optimises space only, its cost shows what
ignoring expression costs. With ``--exact``, ``gap_%`` is each cost's excess over the optimum.

Examples
--------
    python benchmarks/real_data.py --data ../shared/data --json benchmarks/results/real_data.json
    python benchmarks/real_data.py --pairs "paste 1->2" --exact
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import anndata as ad
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

import hiref as hr
from hiref.tl._rep import representations

import _peers as peers
from _common import print_table, write_json

PAIRS = {
    "merfish 0.26->0.21": ("merfish_hypothalamus_bregma0.26", "merfish_hypothalamus_bregma0.21", 75),
    "paste 1->2": ("paste_breast_slice1", "paste_breast_slice2", 15),
    "paste 2->3": ("paste_breast_slice2", "paste_breast_slice3", 15),
    "paste 3->4": ("paste_breast_slice3", "paste_breast_slice4", 15),
}


def _transfer_by(source, target, partner_of_target, genes, key="bench"):
    """A transfer through any assignment (target cell -> source position)."""
    pred = target[:, []].copy()
    X = source[:, genes].X
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    return ad.AnnData(X=X[partner_of_target], obs=pred.obs[[]], var=source[:, genes].var.copy(),
                      obsm={"spatial_registered": target.obsm["spatial_registered"]})  # fmt: skip


def _minibatch(A, B, batch=1024, seed=0):
    """Target -> source partners by exact OT on random batches (the larger side keeps extras unmatched)."""
    rng = np.random.default_rng(seed)
    n, m = len(A), len(B)
    pa, pb = rng.permutation(n), rng.permutation(m)
    partner = np.full(m, -1)
    k = min(n, m)
    for lo in range(0, k, batch):
        ia, ib = pa[lo : lo + batch], pb[lo : lo + batch]
        C = ((A[ia, None, :] - B[None, ib, :]) ** 2).sum(-1)
        r, c = linear_sum_assignment(C)
        partner[ib[c]] = ia[r]
    return partner


def _lowrank(A, B, rank=40, seed=0):
    """Target -> source partners from POT's low-rank coupling, by exact assignment on the negative coupling."""
    res = peers.lowrank(A, B, rank=rank, seed=seed)
    P = res["coupling"]  # (n_source, n_target)
    rows, cols = linear_sum_assignment(-P.T)  # rectangular: every cell of the smaller side gets a partner
    partner = np.full(len(B), -1)
    partner[rows] = cols
    info = {"coupling_cost": peers.coupling_cost(_sq_cost(A, B), P), "converged": res["converged"]}
    return partner, info


def _exact(A, B):
    """Target -> source partners of the optimal matching (rectangular assignment)."""
    rows, cols = linear_sum_assignment(_sq_cost(A, B).T)
    partner = np.full(len(B), -1)
    partner[rows] = cols
    return partner


def _sq_cost(A, B):
    return cdist(np.asarray(A, np.float64), np.asarray(B, np.float64), "sqeuclidean")


def _pair_cost(A, B, partner):
    """Mean squared Euclidean cost of the pairs (partner[j], j) over the matched targets j."""
    keep = partner >= 0
    return float(((A[partner[keep]] - B[keep]) ** 2).sum(1).mean())


def run_pair(data: Path, first: str, second: str, bins: int, *, rank: int = 40, exact: bool = False) -> list[dict]:
    a = ad.read_h5ad(data / f"{first}.h5ad")
    b = ad.read_h5ad(data / f"{second}.h5ad")
    t0 = time.perf_counter()
    hr.pp.register(a, b, n_sample=1500)
    t_register = time.perf_counter() - t0
    shared = a.var_names.intersection(b.var_names)
    expr = np.asarray(b[:, shared].X.sum(0)).ravel()
    genes = [g for g in ("Slc17a7", "Grm4", "Olig1", "Gad1", "Peg10") if g in shared] or list(
        shared[expr.argsort()[::-1][:20]]
    )
    rep = {"X_pca": 1.0, "spatial_registered": 1.0}
    print(f"  {first} -> {second}: genes {genes}", flush=True)
    rows = []
    # The same representation as hiref's (each part centred, scaled and weighted alike): every
    # matching's cost is measured on it.
    A, B, _, _ = representations(a, b, rep, layer=None, n_pcs=50, random_state=0)

    def score(name, pred, seconds, partner, *, bijection=True):
        cos = hr.tl.cosine_similarity(pred, b, genes=genes, bins=bins, spatial_key="spatial_registered")
        row = {"pair": f"{first}->{second}", "method": name, "n": f"{a.n_obs}x{b.n_obs}", "seconds": seconds,
               "mean_cosine": float(cos["cosine_similarity"].mean()), "cost": _pair_cost(A, B, partner),
               "bijection": bijection}  # fmt: skip
        row.update({g: float(v) for g, v in cos["cosine_similarity"].items()})
        rows.append(row)
        print(f"  {row['pair']:60s} {name:12s} mean cosine {row['mean_cosine']:.4f}  cost {row['cost']:.4f}  "
              f"({seconds:.1f} s)", flush=True)  # fmt: skip
        return row

    def score_partner(name, partner, seconds):
        """Transfer through target -> source partners (-1: unmatched target, left out of the prediction)."""
        keep = partner >= 0
        pred = _transfer_by(a, b, np.maximum(partner, 0), genes)
        return score(name, pred[keep].copy(), seconds, partner)

    for name, use_rep in (("hiref", rep), ("hiref_space", "spatial_registered")):
        t0 = time.perf_counter()
        hr.tl.align(a, b, use_rep=use_rep, spatial_key="spatial_registered", key_added=name, progress=False)
        seconds = time.perf_counter() - t0 + t_register
        row = score(name, hr.tl.transfer(a, b, key=name, genes=genes, spatial_key="spatial_registered"), seconds,
                    np.asarray(b.uns[name]["partner"]))  # fmt: skip
        row["reported_cost"] = float(b.uns[name]["cost"])  # hiref's own cost, on its own representation
    t0 = time.perf_counter()
    nearest = cKDTree(a.obsm["spatial_registered"]).query(b.obsm["spatial_registered"])[1]
    score("nearest", _transfer_by(a, b, nearest, genes), time.perf_counter() - t0 + t_register, nearest,
          bijection=False)  # fmt: skip
    t0 = time.perf_counter()
    partner = _minibatch(A, B)
    score_partner("minibatch", partner, time.perf_counter() - t0 + t_register)
    if importlib.util.find_spec("ot") is None:
        print('  lowrank skipped: POT is not installed (pip install -e ".[bench]")', flush=True)
    else:
        t0 = time.perf_counter()
        partner, info = _lowrank(A, B, rank=rank)
        row = score_partner("lowrank", partner, time.perf_counter() - t0 + t_register)
        row.update(info)
    if exact:
        t0 = time.perf_counter()
        partner = _exact(A, B)
        score_partner("exact", partner, time.perf_counter() - t0 + t_register)
    random = np.random.default_rng(0).permutation(a.n_obs)[: b.n_obs] if a.n_obs >= b.n_obs else None
    if random is not None:
        score("random", _transfer_by(a, b, random, genes), 0.0, random)
    optimum = next((r["cost"] for r in rows if r["method"] == "exact"), None)
    for r in rows:
        r["gap_%"] = 100 * (r["cost"] / optimum - 1) if optimum else float("nan")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated names of pairs to run")
    parser.add_argument("--rank", type=int, default=40, help="rank of POT's low-rank Sinkhorn")
    parser.add_argument("--exact", action="store_true", help="also the optimal matching (slow for MERFISH)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = Path(args.data)
    rows = []
    for name in args.pairs.split(","):
        first, second, bins = PAIRS[name]
        rows += run_pair(data, first, second, bins, rank=args.rank, exact=args.exact)
    print_table(
        rows,
        ["pair", "method", "n", "mean_cosine", "cost", *(["gap_%"] if args.exact else []), "bijection", "seconds"],
        "gene transfer: binned cosine similarity; cost = mean squared Euclidean cost of the matched pairs on "
        "hiref's joint representation (expression PCs + registered space)",
    )
    if args.json:
        write_json(args.json, {"real_data": rows})


if __name__ == "__main__":
    main()
