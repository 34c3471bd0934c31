"""Real slices (../shared/data): gene transfer by hiref against simple peers, in one run.

For each pair of consecutive or adjacent sections, cells of the first are matched to cells of
the second and expression is carried over (``hr.tl.transfer``); the prediction is compared
with the measured expression of the second section by the HiRef paper's evaluation: cosine
similarity per gene on a spatial grid (``hr.tl.cosine_similarity``). Methods:

- ``hiref``: the default recipe, ``hr.pp.register`` then ``hr.tl.align`` with its default
  ``use_rep="auto"`` (registered space and expression PCs, the expression weight chosen from
  the data); its time includes registration; ``--seeds 0,1,2`` repeats it (registration too)
  with other seeds, since on real tissue the result varies from seed to seed;
- ``hiref_space``: the same on space only; ``hiref_expr``: on expression PCs only (the
  time-course recipe); ``hiref_equal``: space and expression PCs with equal weights (the
  former README recipe);
- ``exact_space``: the optimal one-to-one matching on registered position (scipy LSA);
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

Besides the binned cosine (``mean_cosine`` over the listed genes, ``cosine_all`` over all
shared genes), every row reports ``label_agreement`` (``hr.tl.label_agreement``: the share of
target cells whose partner carries the same label: DLPFC layer, MERFISH cell class),
``median_distance`` (between partners, in registered coordinates), ``cost``: the mean squared
Euclidean cost of its matched pairs on the representation of the default recipe — the objective
hiref minimises — and ``bijection``
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
from hiref.tl._auto import auto_representation

import _peers as peers
from _common import print_table, write_json

LABELS = {"dlpfc": "layer", "merfish": "cell_class"}
PAIRS = {
    "dlpfc 151673->151674": ("dlpfc_151673", "dlpfc_151674", 30),
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


def run_pair(
    data: Path,
    first: str,
    second: str,
    bins: int,
    *,
    rank: int = 40,
    exact: bool = False,
    seeds: tuple[int, ...] = (0,),
) -> list[dict]:
    a = ad.read_h5ad(data / f"{first}.h5ad")
    b = ad.read_h5ad(data / f"{second}.h5ad")
    shared = a.var_names.intersection(b.var_names)
    a, b = a[:, shared].copy(), b[:, shared].copy()
    raw = a.copy(), b.copy()  # for the default recipe's other seeds, registered afresh
    label = next((v for k, v in LABELS.items() if first.startswith(k)), None)
    t0 = time.perf_counter()
    hr.pp.register(a, b)
    t_register = time.perf_counter() - t0
    reg = b.uns["spatial_registered"]
    print(f"  register: {reg['decision']}, angle {reg['angle']:.2f}, gain {reg['gain']:.3f} ({t_register:.1f} s)")
    expr = np.asarray(b.X.sum(0)).ravel()
    genes = [g for g in ("Slc17a7", "Grm4", "Olig1", "Gad1", "Peg10") if g in shared] or list(
        shared[expr.argsort()[::-1][:20]]
    )
    all_genes = list(shared) if len(shared) <= 500 else list(shared[expr.argsort()[::-1][:500]])
    print(f"  {first} -> {second}: genes {genes}", flush=True)
    rows = []
    # The representation of the default recipe: every matching's cost is measured on it.
    A, B, _, _ = auto_representation(a, b, spatial_key="spatial_registered", layer=None, n_pcs=None, random_state=0,
                                     device=None)  # fmt: skip
    Pa, Pb = a.obsm["spatial_registered"], b.obsm["spatial_registered"]
    la = a.obs[label].astype(str).to_numpy() if label else None
    lb = b.obs[label].astype(str).to_numpy() if label else None

    def score(name, pred, seconds, partner, *, bijection=True):
        cos = hr.tl.cosine_similarity(pred, b, genes=genes, bins=bins, spatial_key="spatial_registered")
        keep = partner >= 0
        row = {"pair": f"{first}->{second}", "method": name, "n": f"{a.n_obs}x{b.n_obs}", "seconds": seconds,
               "mean_cosine": float(cos["cosine_similarity"].mean()), "cost": _pair_cost(A, B, partner),
               "median_distance": float(np.median(np.linalg.norm(Pb[keep] - Pa[partner[keep]], axis=1))),
               "bijection": bijection}  # fmt: skip
        if set(all_genes) <= set(pred.var_names):
            cos_all = hr.tl.cosine_similarity(pred, b, genes=all_genes, bins=bins, spatial_key="spatial_registered")
            row["cosine_all"] = float(cos_all["cosine_similarity"].mean())
        if label:
            counted = lb != "NA"
            row["label_agreement"] = float(((la[np.maximum(partner, 0)] == lb) & keep)[counted].mean())
        row.update({g: float(v) for g, v in cos["cosine_similarity"].items()})
        rows.append(row)
        print(f"  {row['pair']:45s} {name:12s} cosine {row['mean_cosine']:.4f} all {row.get('cosine_all', np.nan):.4f} "
              f"labels {row.get('label_agreement', np.nan):.3f} median dist {row['median_distance']:.1f} "
              f"cost {row['cost']:.4f} ({seconds:.1f} s)", flush=True)  # fmt: skip
        return row

    def score_partner(name, partner, seconds, *, bijection=True):
        """Transfer through target -> source partners (-1: unmatched target, left out of the prediction)."""
        keep = partner >= 0
        pred = _transfer_by(a, b, np.maximum(partner, 0), all_genes if len(all_genes) > len(genes) else genes)
        return score(name, pred[keep].copy(), seconds, partner, bijection=bijection)

    recipes = (
        ("hiref", "auto"),
        ("hiref_space", "spatial_registered"),
        ("hiref_expr", "X_pca"),
        ("hiref_equal", {"X_pca": 1.0, "spatial_registered": 1.0}),
    )
    for name, use_rep in recipes:
        t0 = time.perf_counter()
        hr.tl.align(a, b, use_rep=use_rep, spatial_key="spatial_registered", key_added=name, progress=False)
        seconds = time.perf_counter() - t0 + t_register
        row = score_partner(name, np.asarray(b.uns[name]["partner"]), seconds)
        row["reported_cost"] = float(b.uns[name]["cost"])  # hiref's own cost, on its own representation
        row["seed"] = 0
        if name == "hiref":
            row["auto_weight"] = float(b.uns[name]["params"]["auto_weight"])
            row["register_seconds"] = t_register
    t0 = time.perf_counter()
    nearest = cKDTree(Pa).query(Pb)[1]
    score_partner("nearest", nearest, time.perf_counter() - t0 + t_register, bijection=False)
    if exact or first.startswith(("dlpfc", "paste")):
        t0 = time.perf_counter()
        partner = _exact(Pa, Pb)
        score_partner("exact_space", partner, time.perf_counter() - t0 + t_register)
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
    rng = np.random.default_rng(0)
    random = rng.permutation(a.n_obs)[: b.n_obs]
    if len(random) < b.n_obs:
        random = np.concatenate([random, np.full(b.n_obs - len(random), -1)])[rng.permutation(b.n_obs)]
    score_partner("random", random, 0.0)
    for seed in seeds:
        if seed == 0:
            continue
        a_s, b_s = raw[0].copy(), raw[1].copy()
        t0 = time.perf_counter()
        hr.pp.register(a_s, b_s, random_state=seed)
        register_seconds = time.perf_counter() - t0
        hr.tl.align(a_s, b_s, spatial_key="spatial_registered", progress=False, random_state=seed)
        seconds = time.perf_counter() - t0
        # scored in this seed's registered frame (after every other method), like seed 0 in its own;
        # no cost: its representation is not seed 0's, on which the costs are measured
        a.obsm["spatial_registered"], b.obsm["spatial_registered"] = (x.obsm["spatial_registered"] for x in (a_s, b_s))
        Pa, Pb = a.obsm["spatial_registered"], b.obsm["spatial_registered"]
        row = score_partner("hiref", np.asarray(b_s.uns["hiref"]["partner"]), seconds)
        row.update(seed=seed, auto_weight=float(b_s.uns["hiref"]["params"]["auto_weight"]),
                   register_seconds=register_seconds, cost=float("nan"))  # fmt: skip
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
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of the default recipe (register + align)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seeds = tuple(int(x) for x in args.seeds.split(","))
    data = Path(args.data)
    rows = []
    for name in args.pairs.split(","):
        first, second, bins = PAIRS[name]
        rows += run_pair(data, first, second, bins, rank=args.rank, exact=args.exact, seeds=seeds)
    print_table(
        rows,
        [
            "pair",
            "method",
            "seed",
            "n",
            "label_agreement",
            "mean_cosine",
            "cosine_all",
            "median_distance",
            "cost",
            *(["gap_%"] if args.exact else []),
            "bijection",
            "seconds",
        ],
        "real slices: label agreement (DLPFC layer, MERFISH cell class), binned cosine similarity (listed genes, "
        "all genes), median partner distance; cost = mean squared Euclidean cost of the matched pairs on the default "
        "recipe's representation",
    )
    spread = seed_spread(rows)
    if len(seeds) > 1:
        print_table(spread, list(spread[0]), "the default recipe over seeds: median [min, max]")
    if args.json:
        write_json(args.json, {"real_data": rows, "default_over_seeds": spread})


def seed_spread(rows: list[dict]) -> list[dict]:
    """Per pair, the default recipe's scores over its seeds: median, min and max."""
    out = []
    for pair in dict.fromkeys(r["pair"] for r in rows):
        mine = [r for r in rows if r["pair"] == pair and r["method"] == "hiref"]
        row = {"pair": pair, "seeds": len(mine)}
        for key in ("label_agreement", "mean_cosine", "cosine_all", "median_distance", "seconds"):
            values = [r[key] for r in mine if key in r]
            if values:
                row[key] = f"{np.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"
        out.append(row)
    return out


if __name__ == "__main__":
    main()
