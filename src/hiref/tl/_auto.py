"""``use_rep="auto"``: position and expression, weighted by how much position tells about expression.

The rule, measured on a subsample with held-out genes (so that matching on noise earns nothing):

1. split the shared genes at random into two halves, A and B; PCA each half;
2. match cells by position alone, and by the PCs of half A alone;
   (on at most 2,000 random cells per dataset: thinning makes position look a little less
   informative than at the data's full density, so on large data the weight errs on the
   side of expression);
3. score each matching by how well a cell's partner predicts its half-B PCs (mean squared
   error), next to a random matching (the chance level);
4. ``rho`` = the share of expression's gain over chance that position already gets:
   ``(chance - position) / (chance - expression)``, in [0, 1];
5. expression weight ``w = min(1, ((1 - rho) / rho) ** 2) * taper(rho)`` against position (both
   scaled to unit mean squared norm), where ``taper`` falls linearly from 1 at ``rho = 0.7`` to
   0 at ``rho = 0.8`` (``RHO_TAPER``): position alone where it already gets most of what
   expression could (adjacent Visium sections, ``rho`` 0.8-0.93), and expression gets at most an
   equal say where position predicts little at single-cell resolution (MERFISH sections 50 µm
   apart, ``rho`` near 0.2: ``w = 1``), so partners stay spatially plausible. The taper was
   added when the rule was measured on more cases than one pair (``benchmarks/recipe.py``): on
   DLPFC in both directions, cropped to 70 % of either side and subsampled by half, ``rho``
   was 0.815-0.932 and every expression weight of 0.01 or more fell below the exact matching on
   position alone (by up to 0.011 of layer accuracy at ``rho`` 0.815, ``w`` 0.05; an unseen
   DLPFC pair at ``rho`` 0.81-0.83 lost 0.02), while no weight beat it by more than 0.004; on
   the simulated slices (``rho`` 0.68) expression is what finds the regions (region agreement
   0.64 on position alone, 0.82 at the rule's ``w`` 0.23), and the breast sections and MERFISH
   (``rho`` 0-0.59) keep the weight they had;
6. the weighted PCs are cut to the fewest leading ones whose dropped variance is at most
   ``TOLERANCE`` (0.5 %) of the whole representation's (position's and the weighted PCs'), at
   least ``MIN_KEPT_PCS``: the cost between any two cells changes by that share on average;
7. where that leaves more dimensions than the engine finishes fast (16 in all: a k-d tree
   polish alone, instead of window re-solves and exact distances) but keeping only 16 would drop
   at most ``FAST_TOLERANCE`` (2 %), only those are kept. This is the case where expression has
   a small weight (adjacent Visium sections, ``w`` 0.01-0.03: 5-14 PCs instead of 52-59, the
   same layer accuracy under the exact optimum, and register + align in under 4 s instead of
   10 s); with an equal say (MERFISH, ``w = 1``) 14 PCs would drop a fifth of the variance and
   96 are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from hiref._logging import logger
from hiref.engine import solve
from hiref.engine.options import WINDOWS_MIN_DIM

if TYPE_CHECKING:
    from anndata import AnnData

    from hiref._rep import JointRows

    Rows = np.ndarray | sp.spmatrix | JointRows  # rows of the preprocessed shared genes

MAX_CELLS = 2000
MIN_GENES = 10
TOLERANCE = 0.005
FAST_TOLERANCE = 0.02
AUTO_N_PCS = 100
CELLS_PER_PC = 20
DEFAULT_N_PCS = 50
PROJECT_ENTRIES = 1 << 24  # rows x genes made dense at a time
MIN_KEPT_PCS = 2
WEIGHT_POWER = 2
RHO_TAPER = (0.7, 0.8)


def _unit(E: np.ndarray) -> np.ndarray:
    """Centred, scaled to unit mean squared norm."""
    E = E - E.mean(0)
    scale = np.sqrt((E**2).sum(1).mean())
    return E / (scale if scale > 0 else 1.0)


def _top_axes(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The ``n`` leading right singular vectors (as columns) of centred ``X``.

    A randomized SVD in float32 (torch's, seeded, leaving torch's global generator as it was):
    3-5 times faster than scikit-learn's in float64 on a few thousand cells.
    """
    import torch

    T = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        _, _, V = torch.svd_lowrank(T, q=min(n + 10, *T.shape), niter=3)
    finally:
        torch.random.set_rng_state(state)
    return V[:, :n].numpy().astype(np.float64)


def _dense(X: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _pcs(X: np.ndarray | sp.spmatrix, n_pcs: int, seed: int) -> np.ndarray:
    """Scores of ``X``'s rows on their ``n_pcs`` leading PCs."""
    X = _dense(X)
    X = X - X.mean(0)
    return X @ _top_axes(X, int(min(n_pcs, X.shape[1] - 1, X.shape[0] - 1)), seed)


def fit_pca(X: Rows, n_fit: int, n_pcs: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """A PCA of ``X`` fitted on at most ``n_fit`` random rows (fast on many cells).

    Returns
    -------
    The components as columns (genes x PCs), the fitted mean, and a description.
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], min(n_fit, X.shape[0]), replace=False))
    fit = _dense(X[rows])
    mean = fit.mean(0)
    n = int(min(n_pcs, X.shape[1] - 1, len(rows) - 1))
    info = {"n_pcs": n, "fitted_on_cells": len(rows), "n_shared_genes": int(X.shape[1])}
    return _top_axes(fit - mean, n, seed), mean, info


def _rows_per_block(X: Rows) -> int:
    return max(1, PROJECT_ENTRIES // max(X.shape[1], 1))


def _rows_times(X: Rows, lo: int, hi: int, W: np.ndarray) -> np.ndarray:
    """``X[lo:hi] @ W`` in float32; a sparse block is made dense first (BLAS beats a sparse product on few genes)."""
    block = X[lo:hi]
    if sp.issparse(block):
        block = block.toarray()
    return np.asarray(block, dtype=np.float32) @ W.astype(np.float32)


def projected_variance(X: Rows, W: np.ndarray, mean: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """The variance over all rows of each column of ``(X - mean) @ W``, a block of rows at a time.

    (A PCA fitted on a subsample overstates the variance of its trailing PCs on the rest.)
    """
    chunk = chunk or _rows_per_block(X)
    total = np.zeros(W.shape[1])
    squares = np.zeros(W.shape[1])
    for lo in range(0, X.shape[0], chunk):
        block = _rows_times(X, lo, lo + chunk, W).astype(np.float64)
        total += block.sum(0)
        squares += (block**2).sum(0)
    n = max(X.shape[0], 1)
    return np.maximum(squares / n - (total / n) ** 2, 0.0)


def project(X: Rows, W: np.ndarray, mean: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """``(X - mean) @ W`` in float32, a block of rows at a time (``X`` is never densified whole)."""
    chunk = chunk or _rows_per_block(X)
    out = np.empty((X.shape[0], W.shape[1]), dtype=np.float32)
    offset = mean @ W
    for lo in range(0, X.shape[0], chunk):
        out[lo : lo + chunk] = _rows_times(X, lo, lo + chunk, W) - offset
    return out


#: PCs of :func:`joint_pcs` (the doubt summary's and the label transfer's expression).
JOINT_N_PCS = 20


def joint_pcs(
    adata1: AnnData, adata2: AnnData, *, layer: str | None, seed: int, n_pcs: int = JOINT_N_PCS
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both objects' leading PCs of their preprocessed shared genes (fitted on at most 2,000 cells).

    Parameters
    ----------
    adata1, adata2
        The two objects.
    layer
        ``.layers`` key of the expression (``None``: ``.X``).
    seed
        Seed of the fitted cells and of the randomized SVD.
    n_pcs
        PCs wanted (fewer where the genes or cells are fewer).

    Returns
    -------
    The PCs of ``adata1`` and of ``adata2`` (float64), or None with fewer than ``MIN_GENES``
    shared genes (or no expression to read).
    """
    from hiref._rep import JointRows

    try:
        X = JointRows(adata1, adata2, layer=layer)
    except (KeyError, ValueError):
        return None
    if X.shape[1] < MIN_GENES:
        return None
    W, mean, _ = fit_pca(X, MAX_CELLS, n_pcs, seed)
    E = project(X, W, mean).astype(np.float64)
    return E[: adata1.n_obs], E[adata1.n_obs :]


def _heldout_error(T1: np.ndarray, T2: np.ndarray, partner_of_2: np.ndarray, scored: np.ndarray) -> float:
    ok = (partner_of_2 >= 0) & scored
    return float(((T2[ok] - T1[partner_of_2[ok]]) ** 2).sum(1).mean())


def expression_weight(rho: float) -> float:
    """The expression weight for ``rho`` (rule 5 of the module docstring)."""
    if rho <= 0:
        return 1.0
    lo, hi = RHO_TAPER
    taper = float(np.clip((hi - rho) / (hi - lo), 0.0, 1.0))
    return float(min(1.0, ((1.0 - rho) / rho) ** WEIGHT_POWER)) * taper


def choose_weight(
    S1: np.ndarray,
    S2: np.ndarray,
    X: Rows,
    n1: int,
    *,
    n_pcs: int = 20,
    random_state: int = 0,
    device: str | None = None,
) -> tuple[float, dict]:
    """The expression weight of ``use_rep="auto"`` (see the module docstring).

    Parameters
    ----------
    S1, S2
        Coordinates of both datasets (standardised together).
    X
        Preprocessed expression of the shared genes, both datasets stacked (``n1`` rows first).
    n1
        Number of cells of the first dataset.
    n_pcs
        PCs per gene half.
    random_state
        Seed of the subsample, the split and the matchings.
    device
        Torch device of the matchings.

    Returns
    -------
    The weight and a description (``rho``, the three held-out errors, sizes).
    """
    rng = np.random.default_rng(random_state)
    if X.shape[1] < 2 * MIN_GENES:
        info = {"rule": "too few shared genes to hold half out: equal weights", "n_genes": int(X.shape[1])}
        return 1.0, info
    n2 = X.shape[0] - n1
    frac = min(1.0, MAX_CELLS / max(n1, n2))
    i1 = np.sort(rng.choice(n1, max(2, round(n1 * frac)), replace=False))
    i2 = np.sort(rng.choice(n2, max(2, round(n2 * frac)), replace=False))
    inner = np.ones(len(i2), bool)
    rows = np.concatenate([i1, n1 + i2])
    Xs = X[rows]
    genes = rng.permutation(X.shape[1])
    half_a, half_b = genes[: X.shape[1] // 2], genes[X.shape[1] // 2 :]
    Ea = _unit(_pcs(Xs[:, half_a], n_pcs, random_state))
    Eb = _unit(_pcs(Xs[:, half_b], n_pcs, random_state))
    k1 = len(i1)
    T1, T2 = Eb[:k1], Eb[k1:]
    # The criterion compares two cheap matchings (the hierarchy's own, as the rule was tuned on);
    # the final alignment gets the engine's full polish.
    options = {"progress": False, "seed": random_state, "device": device, "n_starts": 4}
    options.update(polish=False, refine=False)
    pos = solve(S1[i1], S2[i2], **options).perm_y
    expr = solve(Ea[:k1], Ea[k1:], **options).perm_y
    err_pos = _heldout_error(T1, T2, pos, inner)
    err_expr = _heldout_error(T1, T2, expr, inner)
    T2i = T2[inner]
    err_chance = float((T1**2).sum(1).mean() + (T2i**2).sum(1).mean() - 2 * T1.mean(0) @ T2i.mean(0))
    gain = err_chance - err_expr
    # Expression that predicts held-out genes no better than chance leaves position alone (rho = 1).
    rho = 1.0 if gain <= 0 else float(np.clip((err_chance - err_pos) / gain, 0.0, 1.0))
    weight = expression_weight(rho)
    info = {
        "rule": (
            f"w = min(1, ((1 - rho) / rho)^{WEIGHT_POWER}) * clip(({RHO_TAPER[1]} - rho) / "
            f"{RHO_TAPER[1] - RHO_TAPER[0]:.2g}, 0, 1), rho = (chance - position) / (chance - expression) on "
            "held-out genes"
        ),
        "rho": rho,
        "weight": weight,
        "heldout_error": {"position": err_pos, "expression": err_expr, "chance": err_chance},
        "n_sample": [int(k1), len(i2)],
        "n_genes": int(X.shape[1]),
    }
    logger.info("use_rep='auto': position explains %.2f of expression's held-out gain; expression weight %.3g",
                rho, weight)  # fmt: skip
    return weight, info


def _dropped(var: np.ndarray, weight: float) -> np.ndarray:
    """``d[k]``: share of the representation's variance left out when only the ``k`` most variable PCs are kept."""
    total = float(var.sum())
    tail = 1.0 - np.concatenate([[0.0], np.cumsum(np.sort(var)[::-1])]) / (total if total > 0 else 1.0)
    return weight * np.maximum(tail, 0.0) / (1.0 + weight)


def leading_pcs(
    var: np.ndarray,
    weight: float,
    tolerance: float = TOLERANCE,
    *,
    fast_pcs: int | None = None,
    fast_tolerance: float = FAST_TOLERANCE,
) -> tuple[np.ndarray, dict]:
    """The fewest PCs, by decreasing variance, that keep all but ``tolerance`` of the representation's variance.

    The representation is position (unit mean squared norm) next to the expression PCs scaled to
    unit mean squared norm and weighted by ``sqrt(weight)``; the variance left out is ``weight``
    times the share of the PCs' variance ``var`` in the dropped ones, against a total of
    ``1 + weight``.

    Parameters
    ----------
    var
        Variance of every PC.
    weight
        Expression weight against position.
    tolerance
        Largest share of the variance to leave out.
    fast_pcs
        The most PCs with which the engine still finishes fast (a k-d tree polish instead of
        window re-solves); when keeping only those leaves out at most ``fast_tolerance``, no more
        are kept. ``None``: no such limit.
    fast_tolerance
        Largest share left out to stay within ``fast_pcs``.

    Returns
    -------
    The indices of the kept PCs (most variable first), and a description (``n_pcs_kept``,
    ``n_pcs``, ``dropped_share``).
    """
    order = np.argsort(-var, kind="stable")
    dropped = _dropped(var, weight)
    fits = np.flatnonzero(dropped <= tolerance)
    k = int(min(len(var), max(MIN_KEPT_PCS, fits[0] if len(fits) else len(var))))
    if fast_pcs is not None and MIN_KEPT_PCS <= fast_pcs < k and dropped[fast_pcs] <= fast_tolerance:
        k = fast_pcs
    k = k if weight > 0 else 0  # expression has no say: position alone
    return order[:k], {"n_pcs_kept": k, "n_pcs": len(var), "dropped_share": float(dropped[k])}


def _expression(
    adata1: AnnData,
    adata2: AnnData,
    X: Rows,
    weight: float,
    *,
    n_pcs: int | None,
    random_state: int,
    fast_pcs: int | None = None,
) -> tuple[np.ndarray, dict, dict, tuple[np.ndarray, np.ndarray] | None]:
    """The kept expression PCs of both objects stacked, scaled by the whole PC set's root mean squared norm.

    Uses ``.obsm["X_pca"]`` when both objects have it, else a PCA of ``X`` (the preprocessed
    shared genes, both objects stacked); only the kept PCs are projected, in float32.
    ``fast_pcs`` is passed on to :func:`leading_pcs`.

    Returns
    -------
    The PCs, what :func:`leading_pcs` reports, the joint PCA's description (empty for
    ``X_pca``), and the kept PCs to store (``None`` for ``X_pca``).
    """
    from hiref._rep import representations

    n1 = adata1.n_obs
    if weight <= 0:  # expression has no say: no PCA to compute (a third of a second on 7,000 spots)
        return np.zeros((X.shape[0], 0), np.float32), {"n_pcs_kept": 0, "n_pcs": 0, "dropped_share": 0.0}, {}, None
    if "X_pca" in adata1.obsm and "X_pca" in adata2.obsm:
        E1, E2, _, _ = representations(adata1, adata2, "X_pca", layer=None, n_pcs=DEFAULT_N_PCS, random_state=0)
        E = np.concatenate([E1, E2])
        var = E.var(0)
        keep, kept = leading_pcs(var, weight, fast_pcs=fast_pcs)
        E = E[:, keep] - E[:, keep].mean(0)
        return E / np.sqrt(var.sum() or 1.0), kept, {}, None
    if n_pcs is None:  # PCs beyond about one per 20 fitted cells mostly fit noise (measured on PASTE's 250 spots)
        n_pcs = max(MIN_KEPT_PCS, min(AUTO_N_PCS, min(MAX_CELLS, X.shape[0]) // CELLS_PER_PC))
    W, mean, pca_info = fit_pca(X, MAX_CELLS, n_pcs, random_state)
    var = projected_variance(X, W, mean)
    keep, kept = leading_pcs(var, weight, fast_pcs=fast_pcs)
    E = project(X, W[:, keep], mean)
    E -= E.mean(0)
    computed = (E[:n1], E[n1:]) if len(keep) else None
    return E / np.float32(np.sqrt(var.sum()) or 1.0), kept, pca_info, computed


def auto_representation(
    adata1: AnnData,
    adata2: AnnData,
    *,
    spatial_key: str | None,
    layer: str | None,
    n_pcs: int | None,
    random_state: int,
    device: str | None,
    weight: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict, tuple[np.ndarray, np.ndarray] | None]:
    """Arrays for ``use_rep="auto"``: standardised coordinates next to weighted expression PCs.

    Without coordinates in both objects this is expression alone (the joint PCA, or
    ``.obsm["X_pca"]`` when both have it), the recipe for time courses. ``weight`` skips the
    rule and uses that expression weight (to rebuild a stored alignment's arrays).
    """
    from hiref._rep import JointRows, representations

    have_space = spatial_key is not None and spatial_key in adata1.obsm and spatial_key in adata2.obsm
    if not have_space:
        R1, R2, info, computed = representations(
            adata1, adata2, "X_pca", layer=layer, n_pcs=n_pcs or DEFAULT_N_PCS, random_state=random_state
        )
        info["use_rep"] = "auto"
        info["auto"] = {"rule": "no coordinates in both objects: expression PCs only"}
        return R1, R2, info, computed
    S1, S2, info, _ = representations(
        adata1, adata2, spatial_key, layer=None, n_pcs=DEFAULT_N_PCS, random_state=random_state
    )
    centre = np.concatenate([S1, S2]).mean(0)
    S1, S2 = S1 - centre, S2 - centre
    scale = np.sqrt(((S1**2).sum() + (S2**2).sum()) / (len(S1) + len(S2)))
    S1, S2 = S1 / (scale or 1.0), S2 / (scale or 1.0)
    X = JointRows(adata1, adata2, layer=layer)  # preprocessed a block of rows at a time: no copy of the whole
    if weight is None:
        weight, auto = choose_weight(S1, S2, X, adata1.n_obs, random_state=random_state, device=device)
    else:
        auto = {"rule": "weight given", "weight": float(weight)}
    # Up to WINDOWS_MIN_DIM dimensions in all, the engine finishes with a k-d tree polish alone.
    fast_pcs = max(0, WINDOWS_MIN_DIM - S1.shape[1])
    E, kept, pca_info, computed = _expression(
        adata1, adata2, X, weight, n_pcs=n_pcs, random_state=random_state, fast_pcs=fast_pcs
    )
    auto.update(kept)
    if pca_info:
        info["joint_pca"] = {**pca_info, "preprocessing": X.steps}
    n1 = adata1.n_obs
    R1 = np.concatenate([S1, np.sqrt(weight) * E[:n1]], 1)
    R2 = np.concatenate([S2, np.sqrt(weight) * E[n1:]], 1)
    info["use_rep"] = "auto"
    info["auto"] = {**auto, "weight": weight, "spatial_key": spatial_key}
    info["auto_weight"] = float(weight)
    return R1, R2, info, computed
