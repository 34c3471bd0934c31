"""``hr.pp.register``: bring a slice into the frame of another (rotation, reflection, translation)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from hiref._anndata import actualize, check_adata, check_in_memory, obsm_array
from hiref._docs import DOC, doc_params
from hiref._logging import logger
from hiref.engine import solve
from hiref.engine.checks import check_bool, check_positive_float, check_positive_int, check_seed
from hiref.tl._rep import representations

if TYPE_CHECKING:
    from anndata import AnnData


def _rotation(degrees: float, *, reflect: bool) -> np.ndarray:
    t = np.deg2rad(degrees)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return R @ np.diag([1.0, -1.0]) if reflect else R


def _procrustes(A: np.ndarray, B: np.ndarray, *, reflect: bool) -> tuple[np.ndarray, np.ndarray]:
    """``R``, ``t`` minimising ``sum |a - (R b + t)|^2``, ``R`` a rotation (a reflection if ``reflect``)."""
    ca, cb = A.mean(0), B.mean(0)
    U, _, Vt = np.linalg.svd((A - ca).T @ (B - cb))
    D = np.eye(A.shape[1])
    D[-1, -1] = -1.0 if reflect else 1.0
    if not reflect and np.linalg.det(U @ Vt) < 0:
        D[-1, -1] = -1.0
    if reflect and np.linalg.det(U @ Vt) > 0:
        D[-1, -1] = -1.0
    elif reflect:
        D[-1, -1] = 1.0
    R = U @ D @ Vt
    return R, ca - R @ cb


def _match(P: np.ndarray, M: np.ndarray, EP: np.ndarray | None, EM: np.ndarray | None, seed: int):
    """Per-pair squared distance (coordinates alone) and matching of the one-to-one alignment used to fit motions."""
    A = P if EP is None else np.concatenate([P, EP], 1)
    B = M if EM is None else np.concatenate([M, EM], 1)
    # The hierarchy's own matching (no polish, no windows): a motion is fitted to many such matchings of
    # subsamples, so speed matters more here than the last percent of transport cost.
    perm = solve(A, B, progress=False, seed=seed, n_starts=4, polish=False, refine=False).perm
    return ((P - M[perm]) ** 2).sum(1), perm


SEARCH_SAMPLE = 500
NN_ROUNDS = 10


def spread_of(X: np.ndarray) -> float:
    """Root mean squared distance to the centroid."""
    return float(np.sqrt(((X - X.mean(0)) ** 2).sum(1).mean()))


def _chamfer(P: np.ndarray, moved: np.ndarray, De: np.ndarray | None) -> np.ndarray:
    """Symmetric nearest-neighbour cost of every candidate motion at once.

    ``moved`` is (n_candidates, k, 2): the sampled moving cells under each motion; ``De`` the
    (k_ref, k) squared expression distances (the same for every motion). For each candidate,
    the mean over both slices of every cell's smallest squared distance to the other slice
    (coordinates plus expression).
    """
    out = np.empty(len(moved))
    for i, Mi in enumerate(moved):
        D = ((P[:, None, :] - Mi[None, :, :]) ** 2).sum(-1)
        if De is not None:
            D += De
        out[i] = 0.5 * (D.min(1).mean() + D.min(0).mean())
    return out


@doc_params(**DOC)
def register(
    adata_ref: AnnData,
    adata_mov: AnnData,
    *,
    spatial_key: str = "spatial",
    key_added: str = "spatial_registered",
    angle: float | None = None,
    reflection: bool | None = None,
    use_rep: str | None = "X_pca",
    rep_weight: float = 1.0,
    n_angles: int = 24,
    n_sample: int = 1000,
    n_iter: int = 3,
    min_gain: float = 0.1,
    random_state: int | np.random.Generator | None = 0,
    copy: bool = False,
) -> tuple[AnnData, AnnData] | None:
    """Rotate and shift a slice onto another, so that both share one coordinate frame.

    Finds the rigid motion (rotation, optionally a reflection, and translation) that maps the
    cells of ``adata_mov`` onto those of ``adata_ref``, in three steps on ``n_sample`` cells
    per slice:

    1. search: ``n_angles`` rotations about the centroids (each mirrored too with
       ``reflection=None``) are scored all at once by a symmetric nearest-neighbour cost (every
       cell's squared distance to the closest cell of the other slice, by position and, with
       ``use_rep``, expression);
    2. fit: from the best one, one-to-one hiref matchings alternate with Procrustes fits until
       the motion settles;
    3. decide: the motion is kept only if its matching cost beats that of leaving the slice
       where it is by a significant margin (more than twice the standard error and at least
       ``min_gain``); otherwise the slice stays put, so an already aligned pair is left alone.

    The slices must show the same tissue, up to deformation and missing parts.

    Parameters
    ----------
    adata_ref
        The slice that stays put.
    adata_mov
        The slice to move.
    spatial_key
        ``.obsm`` key of the 2-D coordinates of both slices.
    key_added
        ``.obsm`` key of the registered coordinates (written on both slices: the reference's
        are a copy of its own) and ``.uns`` key of the motion (on ``adata_mov``).
    angle
        Skip the search: rotate by this many degrees about the centroids (then refine by
        Procrustes unless ``n_iter=0``).
    reflection
        ``False``: rotations only; ``True``: reflected slice; ``None``: try both.
    use_rep
        Also compare cells by this representation when matching them (as in
        :func:`hiref.tl.align`; a missing ``"X_pca"`` becomes a joint PCA of the shared
        genes), which tells apart rotations that leave the tissue outline alike. ``None``:
        coordinates only.
    rep_weight
        Weight of ``use_rep`` against the coordinates (both scaled to the same spread).
    n_angles
        Rotations tried by the search (every ``360 / n_angles`` degrees).
    n_sample
        Cells per slice used to score and fit (the motion is then applied to all).
    n_iter
        Most one-to-one matching + Procrustes rounds after the search (which are preceded by
        a few cheap nearest-neighbour rounds); 0 and an ``angle``: no refinement.
    min_gain
        Smallest relative drop of the matching cost (against no motion) for which the slice is
        moved.
    {random_state}
    {copy}

    Returns
    -------
    ``None``, or with ``copy=True`` the modified copies ``(adata_ref, adata_mov)``. Writes:

    ``.obsm[key_added]``
        On both slices: the registered coordinates (the reference's are a copy of its own).
    ``adata_mov.uns[key_added]``
        ``rotation`` (2 x 2, a reflection if ``reflected``), ``translation`` (registered =
        ``rotation @ x + translation``), ``angle`` (degrees), ``reflected``, ``cost`` (mean
        squared distance of the matched sampled cells after registration), ``identity_cost``
        (the same without moving), ``gain`` (``1 - cost / identity_cost`` of the motion found),
        ``decision`` (``"moved"``, or ``"identity"`` when the motion was not worth it: then
        ``rotation`` is the identity), ``margin`` (how clearly the search preferred its
        rotation: the score of the best candidate at least 45 degrees away, or mirrored,
        divided by the best score; near 1 means an ambiguous rotation),
        ``candidate_angles``, ``candidate_reflected`` and ``candidate_scores`` (the search),
        ``runtime`` (s) and ``params``.

    Examples
    --------
    >>> import hiref as hr
    >>> ref, mov = hr.datasets.simulate_slices(n_obs=800, rotation=30, deformation=0, seed=0)
    >>> hr.pp.register(ref, mov)
    >>> round(mov.uns["spatial_registered"]["angle"])
    -30
    """
    t0 = time.perf_counter()
    check_adata(adata_ref, "adata_ref")
    check_adata(adata_mov, "adata_mov")
    check_in_memory(adata_ref, "adata_ref")
    check_in_memory(adata_mov, "adata_mov")
    P = obsm_array(adata_ref, spatial_key, "adata_ref", hint=" Pass `spatial_key=`.")
    M = obsm_array(adata_mov, spatial_key, "adata_mov", hint=" Pass `spatial_key=`.")
    for name, X in (("adata_ref", P), ("adata_mov", M)):
        if X.shape[1] != 2:
            msg = f"`{name}.obsm[{spatial_key!r}]` must hold 2-D coordinates, got {X.shape[1]} columns."
            raise ValueError(msg)
        if not np.isfinite(X).all():
            msg = f"`{name}.obsm[{spatial_key!r}]` contains NaN or infinite coordinates."
            raise ValueError(msg)
    if reflection not in (True, False, None):
        msg = f"`reflection` must be True, False or None, got {reflection!r}."
        raise ValueError(msg)
    if isinstance(n_angles, bool) or not isinstance(n_angles, int) or n_angles < 1:
        msg = f"`n_angles` must be a positive int, got {n_angles!r}."
        raise ValueError(msg)
    n_sample = check_positive_int(n_sample, "n_sample", minimum=2)
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    rep_weight = check_positive_float(rep_weight, "rep_weight")
    if isinstance(min_gain, bool) or not isinstance(min_gain, int | float | np.integer | np.floating) or min_gain < 0:
        msg = f"`min_gain` must be a number >= 0 (a share of the cost), got {min_gain!r}."
        raise ValueError(msg)
    random_state = check_seed(random_state, "random_state")
    check_bool(copy, "copy")
    if angle is not None and (
        isinstance(angle, bool)
        or not isinstance(angle, int | float | np.integer | np.floating)
        or not np.isfinite(angle)
    ):
        msg = f"`angle` must be None or a finite number of degrees, got {angle!r}."
        raise ValueError(msg)
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty string, got {key_added!r}."
        raise ValueError(msg)

    rng = np.random.default_rng(random_state)
    k = min(n_sample, P.shape[0], M.shape[0])
    pick_p = rng.choice(P.shape[0], k, replace=False)  # random order: the first ones make the search sample
    pick_m = rng.choice(M.shape[0], k, replace=False)
    Ps, Ms = P[pick_p], M[pick_m]
    EP = EM = De = None
    if use_rep is not None:
        # Expression, scaled to `rep_weight` times the spatial spread, breaks the ties of
        # symmetric tissue shapes; the motion itself is fitted on coordinates only.
        # (A joint PCA, if one is needed, is fitted on the sampled cells only.)
        E1, E2, _, _ = representations(
            adata_ref[pick_p], adata_mov[pick_m], use_rep, layer=None, n_pcs=20, random_state=random_state
        )
        centre = np.concatenate([E1, E2]).mean(0)
        spread = np.sqrt((((Ps - Ps.mean(0)) ** 2).sum(1).mean() + ((Ms - Ms.mean(0)) ** 2).sum(1).mean()) / 2)
        e_scale = np.sqrt(np.concatenate([(E1 - centre) ** 2, (E2 - centre) ** 2]).sum(1).mean())
        factor = np.sqrt(rep_weight) * spread / (e_scale if e_scale > 0 else 1.0)
        EP, EM = (E1 - centre) * factor, (E2 - centre) * factor
        De = (EP**2).sum(1)[:, None] + (EM**2).sum(1)[None, :] - 2 * EP @ EM.T
    cP, cM = Ps.mean(0), Ms.mean(0)
    reflects = [False, True] if reflection is None else [bool(reflection)]
    angles = [float(angle)] if angle is not None else list(np.arange(n_angles) * 360.0 / n_angles)
    # Every candidate motion (rotation about the centroids, then centroid onto centroid), scored
    # at once by a cheap nearest-neighbour criterion on the subsample.
    candidates = [(a, f, _rotation(a, reflect=f)) for f in reflects for a in angles]
    q = min(k, SEARCH_SAMPLE)
    moved = np.stack([Ms[:q] @ R.T + (cP - R @ cM) for _, _, R in candidates])
    scores = _chamfer(Ps[:q], moved, None if De is None else De[:q, :q])
    order = np.argsort(scores)
    best_angle, reflect, R = candidates[order[0]]
    t = cP - R @ cM
    # Margin: the best candidate's score against the best one at least 45 degrees away (or mirrored).
    far = [i for i in order[1:] if candidates[i][1] != reflect
           or abs((candidates[i][0] - best_angle + 180) % 360 - 180) >= 45]  # fmt: skip
    margin = float(scores[far[0]] / scores[order[0]]) if far and scores[order[0]] > 0 else float("inf")
    # Fast rounds with nearest neighbours (both ways), then one-to-one hiref matchings.
    A = Ps if EP is None else np.concatenate([Ps, EP], 1)
    tree = cKDTree(A)
    for i in range(n_iter + NN_ROUNDS if n_iter > 0 else 0):
        Mt = Ms @ R.T + t
        if i < NN_ROUNDS:
            B = Mt if EM is None else np.concatenate([Mt, EM], 1)
            to_ref = tree.query(B)[1]
            to_mov = cKDTree(B).query(A)[1]
            src, dst = np.concatenate([Ms, Ms[to_mov]]), np.concatenate([Ps[to_ref], Ps])
        else:
            perm = _match(Ps, Mt, EP, EM, random_state)[1]
            src, dst = Ms[perm], Ps
        R_new, t_new = _procrustes(dst, src, reflect=reflect)
        moved_deg = np.abs(np.rad2deg(np.arctan2(R_new[1, 0], R_new[0, 0]) - np.arctan2(R[1, 0], R[0, 0])))
        shift = np.linalg.norm(t_new - t)
        R, t = R_new, t_new
        if i >= NN_ROUNDS and min(moved_deg, 360 - moved_deg) < 1e-2 and shift < 1e-3 * spread_of(Ps):
            break
    pair_cost, _ = _match(Ps, Ms @ R.T + t, EP, EM, random_state)
    cost = float(pair_cost.mean())
    # Keep the slice where it is unless the motion found is significantly better than none.
    identity_cost, _ = _match(Ps, Ms, EP, EM, random_state)
    gain = 1.0 - cost / float(identity_cost.mean()) if identity_cost.mean() > 0 else 0.0
    noise = 2.0 * np.sqrt(pair_cost.var() / k + identity_cost.var() / k)
    significant = identity_cost.mean() - cost > noise and gain >= min_gain
    decision = "moved" if significant or angle is not None else "identity"
    if decision == "identity":
        R, t, reflect, cost = np.eye(2), np.zeros(2), False, float(identity_cost.mean())
    rotation_part = R @ np.diag([1.0, -1.0]) if reflect else R
    degrees = float(np.rad2deg(np.arctan2(rotation_part[1, 0], rotation_part[0, 0])))
    registered = M @ R.T + t

    if copy:
        adata_ref, adata_mov = adata_ref.copy(), adata_mov.copy()
    actualize(adata_ref)
    actualize(adata_mov)
    adata_ref.obsm[key_added] = P.copy()
    adata_mov.obsm[key_added] = registered
    adata_mov.uns[key_added] = {
        "rotation": R,
        "translation": t,
        "angle": degrees,
        "reflected": bool(reflect),
        "cost": float(cost),
        "identity_cost": float(identity_cost.mean()),
        "gain": float(gain),
        "decision": decision,
        "margin": margin,
        "candidate_angles": np.array([c[0] for c in candidates]),
        "candidate_reflected": np.array([c[1] for c in candidates]),
        "candidate_scores": scores,
        "runtime": float(time.perf_counter() - t0),
        "params": {"spatial_key": spatial_key, "n_angles": n_angles, "n_sample": k, "random_state": random_state,
                   "searched": angle is None, "reflection": "both" if reflection is None else bool(reflection),
                   "min_gain": float(min_gain), "use_rep": use_rep or ""},
    }  # fmt: skip
    logger.info(
        "finished (%.1f s): rotation %.2f degrees%s, translation %s; added .obsm[%r] on both, .uns[%r] on adata_mov",
        time.perf_counter() - t0, degrees, " (reflected)" if reflect else "", np.round(t, 3), key_added, key_added,
    )  # fmt: skip
    return (adata_ref, adata_mov) if copy else None
