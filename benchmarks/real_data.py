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
- ``random``: a random matching (chance level).

Examples
--------
    python benchmarks/real_data.py --data ../shared/data --json benchmarks/results/real_data.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

import hiref as hr
from hiref.tl._rep import representations

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


def run_pair(data: Path, first: str, second: str, bins: int) -> list[dict]:
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

    def score(name, pred, seconds):
        cos = hr.tl.cosine_similarity(pred, b, genes=genes, bins=bins, spatial_key="spatial_registered")
        row = {"pair": f"{first}->{second}", "method": name, "n": f"{a.n_obs}x{b.n_obs}", "seconds": seconds,
               "mean_cosine": float(cos["cosine_similarity"].mean())}  # fmt: skip
        row.update({g: float(v) for g, v in cos["cosine_similarity"].items()})
        rows.append(row)
        print(f"  {row['pair']:60s} {name:12s} mean cosine {row['mean_cosine']:.4f}  ({seconds:.1f} s)", flush=True)

    for name, use_rep in (("hiref", rep), ("hiref_space", "spatial_registered")):
        t0 = time.perf_counter()
        hr.tl.align(a, b, use_rep=use_rep, spatial_key="spatial_registered", key_added=name, progress=False)
        seconds = time.perf_counter() - t0 + t_register
        score(name, hr.tl.transfer(a, b, key=name, genes=genes, spatial_key="spatial_registered"), seconds)
    t0 = time.perf_counter()
    nearest = cKDTree(a.obsm["spatial_registered"]).query(b.obsm["spatial_registered"])[1]
    score("nearest", _transfer_by(a, b, nearest, genes), time.perf_counter() - t0 + t_register)
    # The same representation as hiref's (each part centred, scaled and weighted alike).
    A, B, _, _ = representations(a, b, rep, layer=None, n_pcs=50, random_state=0)
    t0 = time.perf_counter()
    partner = _minibatch(A, B)
    keep = partner >= 0
    pred = _transfer_by(a, b, np.maximum(partner, 0), genes)
    pred = pred[keep].copy()
    score("minibatch", pred, time.perf_counter() - t0 + t_register)
    random = np.random.default_rng(0).permutation(a.n_obs)[: b.n_obs] if a.n_obs >= b.n_obs else None
    if random is not None:
        score("random", _transfer_by(a, b, random, genes), 0.0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated names of pairs to run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = Path(args.data)
    rows = []
    for name in args.pairs.split(","):
        first, second, bins = PAIRS[name]
        rows += run_pair(data, first, second, bins)
    print_table(rows, ["pair", "method", "n", "mean_cosine", "seconds"], "gene transfer, binned cosine similarity")
    if args.json:
        write_json(args.json, {"real_data": rows})


if __name__ == "__main__":
    main()
