"""Peer solvers for the benchmarks: exact assignment, POT (network simplex, Sinkhorn, low-rank), mini-batch OT.

Every solver takes two point clouds of the same size ``n`` and a ground cost (``"sqeuclidean"``
or ``"euclidean"``) and returns a dict with its ``seconds`` and either a bijection ``perm``
(``perm[i]`` is the partner of ``X[i]`` in ``Y``) or a dense ``coupling`` (an ``(n, n)`` array
with total mass 1 and, up to convergence, uniform marginals ``1 / n``). Times include building
the dense cost matrix where a solver needs one (hiref never builds it).

Couplings become matchings by :func:`round_argmax` (every row's largest entry: cheap, but not a
bijection — several rows may pick the same column) or :func:`round_assignment` (an exact
assignment maximising the coupling's mass on the matching: a proper bijection, at the price of
one exact assignment on a dense ``n x n`` matrix).

POT (``import ot``) is imported lazily; without it, :func:`require_pot` stops with a message
telling how to install it (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

#: An entry of a dense coupling counts as non-zero above this fraction of the coupling's largest entry.
NNZ_RELATIVE = 1e-12


def require_pot() -> Any:
    """Import POT, or stop with an installation hint."""
    try:
        import ot
    except ImportError as err:
        msg = 'these benchmarks need POT (Python Optimal Transport): pip install -e ".[bench]"'
        raise SystemExit(msg) from err
    return ot


def dense_cost(X: np.ndarray, Y: np.ndarray, cost: str) -> np.ndarray:
    """The ``(n, m)`` cost matrix, float64."""
    if cost not in ("sqeuclidean", "euclidean"):
        msg = f"unknown cost {cost!r} (sqeuclidean or euclidean)"
        raise ValueError(msg)
    return cdist(np.asarray(X, np.float64), np.asarray(Y, np.float64), cost)


def matching_cost(C: np.ndarray, perm: np.ndarray) -> float:
    """Mean cost of the pairs ``(i, perm[i])``."""
    return float(C[np.arange(len(perm)), perm].mean())


def coupling_cost(C: np.ndarray, P: np.ndarray) -> float:
    """Transport cost ``<P, C>`` of a coupling of total mass 1 (for a bijection ``P = perm / n``: the mean cost)."""
    return float((P * C).sum() / P.sum())


def nnz(P: np.ndarray, relative: float = NNZ_RELATIVE) -> int:
    """Entries of a coupling above ``relative`` times its largest entry."""
    return int((relative * P.max() < P).sum())


def support_mass(P: np.ndarray, fraction: float = 0.99) -> int:
    """Fewest entries of a coupling that together carry ``fraction`` of its mass."""
    flat = np.sort(P, axis=None)[::-1]
    return int(np.searchsorted(np.cumsum(flat), fraction * flat.sum()) + 1)


def marginal_error(P: np.ndarray) -> float:
    """Largest relative deviation of the coupling's row and column sums from uniform ``1 / n``."""
    n, m = P.shape
    return float(max(np.abs(P.sum(1) * n - 1).max(), np.abs(P.sum(0) * m - 1).max()))


def exact(X: np.ndarray, Y: np.ndarray, cost: str) -> dict:
    """Exact optimum: scipy ``linear_sum_assignment`` on the dense cost matrix."""
    t0 = time.perf_counter()
    C = dense_cost(X, Y, cost)
    rows, cols = linear_sum_assignment(C)
    seconds = time.perf_counter() - t0
    perm = np.empty(len(X), np.int64)
    perm[rows] = cols
    return {"perm": perm, "seconds": seconds}


def emd(X: np.ndarray, Y: np.ndarray, cost: str, max_iter: int = 10**8) -> dict:
    """POT network simplex ``ot.emd`` with uniform weights.

    With uniform weights and ``n = m`` the optimal vertex is a permutation matrix divided by
    ``n``; ``perm`` reads it off row by row. ``converged`` is False if POT stopped early
    (iteration limit) — then its coupling is feasible but maybe not optimal.
    """
    ot = require_pot()
    n = len(X)
    t0 = time.perf_counter()
    C = dense_cost(X, Y, cost)
    a = np.full(n, 1.0 / n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P, log = ot.emd(a, np.full(len(Y), 1.0 / len(Y)), C, numItermax=max_iter, log=True)
    seconds = time.perf_counter() - t0
    perm = P.argmax(1)
    return {
        "perm": perm,
        "coupling": P,
        "seconds": seconds,
        "converged": log["result_code"] == 1,
        "note": "; ".join(str(w.message) for w in caught) or (log.get("warning") or ""),
    }


def sinkhorn(
    X: np.ndarray,
    Y: np.ndarray,
    cost: str,
    reg: float = 0.05,
    normalise: str = "max",
    max_iter: int = 1000,
    tol: float = 1e-9,
) -> dict:
    """POT ``ot.sinkhorn`` with uniform weights on the cost matrix divided by a scale.

    ``normalise`` is the scale the cost matrix is divided by before Sinkhorn sees it, so that
    ``reg`` is relative to it: ``"max"`` (its largest entry), ``"mean"`` (its mean entry, the
    convention of ott-jax's relative epsilon) or ``"none"`` (the raw cost). POT's plain
    Sinkhorn-Knopp (``method="sinkhorn"``) is used after normalisation; on raw costs the
    log-domain ``"sinkhorn_log"`` (``exp(-C / reg)`` would underflow). ``converged``: the
    marginal error POT tracks (``log["err"]``, checked every 10 iterations) fell below ``tol``
    within ``max_iter`` iterations.
    """
    ot = require_pot()
    n, m = len(X), len(Y)
    t0 = time.perf_counter()
    C = dense_cost(X, Y, cost)
    scale = {"max": C.max(), "mean": C.mean(), "none": 1.0}[normalise]
    method = "sinkhorn_log" if normalise == "none" else "sinkhorn"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        P, log = ot.sinkhorn(
            np.full(n, 1.0 / n), np.full(m, 1.0 / m), C / scale, reg, method=method,
            numItermax=max_iter, stopThr=tol, log=True,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    err = float(log["err"][-1]) if len(log["err"]) else float("nan")
    finite = bool(np.isfinite(P).all())
    return {
        "coupling": P,
        "seconds": seconds,
        "iterations": int(log.get("niter", max_iter)),
        "marginal_err": err,
        "converged": finite and err < tol,
        "cost_scale": float(scale),
        "note": "; ".join(sorted({str(w.message) for w in caught})) + ("" if finite else " non-finite coupling"),
    }


def lowrank(X: np.ndarray, Y: np.ndarray, rank: int = 40, seed: int = 0, max_iter: int = 2000) -> dict:
    """POT low-rank Sinkhorn ``ot.lowrank_sinkhorn`` (Scetbon et al. 2021), uniform weights.

    POT factorizes the squared Euclidean cost only, so for any other cost the coupling solves
    the squared Euclidean problem and is then evaluated under the requested cost. The dense
    coupling ``Q diag(1 / g) R^T`` is formed after the timed solve (its time is part of the
    rounding, not of the solver).
    """
    ot = require_pot()
    X64, Y64 = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Q, R, g = ot.lowrank_sinkhorn(X64, Y64, rank=rank, seed_init=seed, numItermax=max_iter)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    P = (Q / g) @ R.T
    return {
        "coupling": P,
        "seconds": seconds,
        "densify_s": time.perf_counter() - t0,
        "converged": not any("converge" in str(w.message).lower() for w in caught),
        "note": "; ".join(sorted({str(w.message) for w in caught})),
    }


def minibatch(X: np.ndarray, Y: np.ndarray, cost: str, batch: int, seed: int = 0) -> dict:
    """Mini-batch OT: random batches of ``batch`` points of X and of Y matched exactly; a bijection.

    X and Y are shuffled independently and cut into consecutive batches (the last one may be
    smaller); each batch pair is solved by ``linear_sum_assignment``.
    """
    n = len(X)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    px, py = rng.permutation(n), rng.permutation(n)
    perm = np.empty(n, np.int64)
    for lo in range(0, n, batch):
        ix, iy = px[lo : lo + batch], py[lo : lo + batch]
        rows, cols = linear_sum_assignment(dense_cost(X[ix], Y[iy], cost))
        perm[ix[rows]] = iy[cols]
    return {"perm": perm, "seconds": time.perf_counter() - t0}


def round_argmax(P: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Row-wise argmax of a coupling: the map, its number of duplicate columns, and the time."""
    t0 = time.perf_counter()
    cols = P.argmax(1)
    seconds = time.perf_counter() - t0
    return cols, int(len(cols) - len(np.unique(cols))), seconds


def round_assignment(P: np.ndarray) -> tuple[np.ndarray, float]:
    """The bijection carrying most of the coupling's mass (exact assignment on ``-P``), and the time."""
    t0 = time.perf_counter()
    rows, cols = linear_sum_assignment(-P)
    perm = np.empty(P.shape[0], np.int64)
    perm[rows] = cols
    return perm, time.perf_counter() - t0


def is_bijection(perm: np.ndarray) -> bool:
    """Whether ``perm`` is a permutation of ``0..n-1``."""
    return bool(np.array_equal(np.sort(perm), np.arange(len(perm))))
