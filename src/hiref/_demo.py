"""The built-in demo: align a synthetic pair, compare with the exact optimum, draw the result."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._io import atomic_outputs
from .datasets import checkerboard, halfmoon_scurve, maf_moons_rings, uniform_checkerboard
from .engine import Matching, solve

PAIRS = {
    "halfmoon_scurve": halfmoon_scurve,
    "checkerboard": checkerboard,
    "maf_moons_rings": maf_moons_rings,
    "uniform_checkerboard": uniform_checkerboard,
}

#: Largest n for which the demo also solves the problem exactly (dense O(n^2) memory, O(n^3) time).
EXACT_LIMIT = 4096


def exact_cost(X: np.ndarray, Y: np.ndarray) -> float:
    """Mean squared-Euclidean cost of the optimal matching, by scipy's exact solver."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    C = cdist(X, Y, "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    return float(C[rows, cols].mean())


def draw(
    X: np.ndarray, Y: np.ndarray, matching: Matching, path: str | Path, *, n_lines: int = 300, seed: int = 0
) -> None:
    """Draw matched pairs and the co-clusters of one level; write the figure atomically to ``path``."""
    import matplotlib as mpl

    mpl.use("Agg", force=False)
    import matplotlib.pyplot as plt

    level = min(4, len(matching.labels_x)) - 1
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6), constrained_layout=True)
    rng = np.random.default_rng(seed)
    pick = rng.choice(matching.n, size=min(n_lines, matching.n), replace=False)
    ax = axes[0]
    ax.scatter(*X.T, s=3, color="#1f77b4", label="X (source)", rasterized=True)
    ax.scatter(*Y.T, s=3, color="#ff7f0e", label="Y (target)", rasterized=True)
    segments = np.stack([X[pick], Y[matching.perm[pick]]], 1)
    ax.add_collection(mpl.collections.LineCollection(segments, colors="0.3", linewidths=0.4, alpha=0.6))
    ax.set_title(f"{len(pick)} of {matching.n} matched pairs")
    ax.legend(loc="best", markerscale=4, frameon=False)
    if level >= 0:
        labels_x, labels_y = matching.labels_x[level], matching.labels_y[level]
        n_clusters = int(labels_x.max()) + 1
        colours = plt.get_cmap("tab20")(np.arange(n_clusters) % 20)
        for ax, P, lab, name in ((axes[1], X, labels_x, "X"), (axes[2], Y, labels_y, "Y")):
            ax.scatter(*P.T, s=3, c=colours[lab], rasterized=True)
            ax.set_title(f"{name}: the {n_clusters} co-clusters after level {level + 1}")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    path = Path(path)
    try:
        with atomic_outputs([path], overwrite=True) as (tmp,):
            fig.savefig(tmp, dpi=110, format=path.suffix[1:].lower() or "png")
    finally:
        plt.close(fig)


def run(
    *,
    dataset: str = "halfmoon_scurve",
    n: int = 2048,
    seed: int = 0,
    out: str | Path = "hiref_demo.png",
    device: str | None = None,
    exact: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """Run the demo and print a short report; returns the figures it printed."""
    if dataset not in PAIRS:
        msg = f"`dataset` must be one of {sorted(PAIRS)}, got {dataset!r}."
        raise ValueError(msg)
    X, Y = PAIRS[dataset](n, seed=seed)
    t0 = time.perf_counter()
    matching = solve(X, Y, seed=seed, device=device, progress=progress)
    elapsed = time.perf_counter() - t0
    report = {"n": float(n), "cost": matching.cost, "time_s": elapsed}
    print(f"hiref demo: {dataset}, n = {n} points per side, d = 2, squared Euclidean cost")
    print(f"  hiref        cost {matching.cost:.6f}   time {elapsed:7.2f} s   schedule {matching.schedule}")
    if exact and n <= EXACT_LIMIT:
        t0 = time.perf_counter()
        best = exact_cost(X, Y)
        t_exact = time.perf_counter() - t0
        gap = 100.0 * (matching.cost / best - 1.0)
        report.update(exact_cost=best, exact_time_s=t_exact, gap_percent=gap)
        print(f"  exact (LSA)  cost {best:.6f}   time {t_exact:7.2f} s")
        print(f"  gap to exact: {gap:.3f} %")
    elif exact:
        print(f"  (exact solution skipped: n > {EXACT_LIMIT})")
    draw(X, Y, matching, out, seed=seed)
    print(f"  figure: {out}")
    return report
