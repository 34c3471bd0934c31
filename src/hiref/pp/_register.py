"""``hr.pp.register``: bring a slice into the frame of another (rotation, reflection, translation)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from hiref._anndata import actualize, check_adata, check_in_memory, obsm_array
from hiref._docs import DOC, doc_params
from hiref._logging import logger
from hiref.engine import solve
from hiref.engine._validate import check_bool, check_positive_float, check_positive_int, check_seed
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


def _match(P: np.ndarray, M: np.ndarray, EP: np.ndarray | None, EM: np.ndarray | None, seed: int, *, quick: bool):
    """Cost (of the coordinates alone) and matching of the cheap alignment used to score motions."""
    A = P if EP is None else np.concatenate([P, EP], 1)
    B = M if EM is None else np.concatenate([M, EM], 1)
    m = solve(A, B, progress=False, seed=seed, n_starts=2 if quick else 8, leaf_size=64)
    return float(((P - M[m.perm]) ** 2).sum(1).mean()) if EP is not None else m.cost, m.perm


@doc_params(**DOC)
def register(
    adata_ref: AnnData,
    adata_mov: AnnData,
    *,
    spatial_key: str = "spatial",
    key_added: str = "spatial_registered",
    angle: float | None = None,
    reflection: bool | None = False,
    use_rep: str | None = "X_pca",
    rep_weight: float = 1.0,
    n_angles: int = 24,
    n_sample: int = 1500,
    n_iter: int = 10,
    random_state: int | np.random.Generator | None = 0,
    copy: bool = False,
) -> tuple[AnnData, AnnData] | None:
    """Rotate and shift a slice onto another, so that both share one coordinate frame.

    Finds the rigid motion (rotation, optionally a reflection, and translation) that maps the
    cells of ``adata_mov`` onto those of ``adata_ref``. With ``angle=None`` it tries
    ``n_angles`` rotations about the centroids, scores each by the cost of a quick hiref
    matching of ``n_sample`` cells per slice (by position and, with ``use_rep``, expression),
    then alternates matching and Procrustes fits from the best one until the motion settles.
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
        Most matching + Procrustes rounds after the search.
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
        squared distance of the matched sampled cells after registration) and ``params``.

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
    pick_p = rng.choice(P.shape[0], k, replace=False)
    pick_m = rng.choice(M.shape[0], k, replace=False)
    Ps, Ms = P[pick_p], M[pick_m]
    EP = EM = None
    if use_rep is not None:
        # Expression, scaled to `rep_weight` times the spatial spread, breaks the ties of
        # symmetric tissue shapes; the motion itself is fitted on coordinates only.
        R1, R2, _, _ = representations(adata_ref, adata_mov, use_rep, layer=None, n_pcs=20, random_state=random_state)
        E1, E2 = R1[pick_p], R2[pick_m]
        centre = np.concatenate([E1, E2]).mean(0)
        spread = np.sqrt((((Ps - Ps.mean(0)) ** 2).sum(1).mean() + ((Ms - Ms.mean(0)) ** 2).sum(1).mean()) / 2)
        e_scale = np.sqrt(np.concatenate([(E1 - centre) ** 2, (E2 - centre) ** 2]).sum(1).mean())
        factor = np.sqrt(rep_weight) * spread / (e_scale if e_scale > 0 else 1.0)
        EP, EM = (E1 - centre) * factor, (E2 - centre) * factor
    cP, cM = Ps.mean(0), Ms.mean(0)
    reflects = [False, True] if reflection is None else [bool(reflection)]
    angles = [float(angle)] if angle is not None else list(np.arange(n_angles) * 360.0 / n_angles)
    best = None
    for reflect in reflects:
        for a in angles:
            R = _rotation(a, reflect=reflect)
            t = cP - R @ cM
            cost, _ = _match(Ps, Ms @ R.T + t, EP, EM, random_state, quick=True)
            if best is None or cost < best[0]:
                best = (cost, R, t, reflect)
    cost, R, t, reflect = best
    for _ in range(n_iter):
        cost_new, perm = _match(Ps, Ms @ R.T + t, EP, EM, random_state, quick=False)
        R_new, t_new = _procrustes(Ps, Ms[perm], reflect=reflect)
        moved = np.abs(np.rad2deg(np.arctan2(R_new[1, 0], R_new[0, 0]) - np.arctan2(R[1, 0], R[0, 0])))
        R, t, cost = R_new, t_new, cost_new
        if min(moved, 360 - moved) < 1e-3:
            break
    cost = _match(Ps, Ms @ R.T + t, EP, EM, random_state, quick=False)[0]
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
        "params": {"spatial_key": spatial_key, "n_angles": n_angles, "n_sample": k, "random_state": random_state,
                   "searched": angle is None},
    }  # fmt: skip
    logger.info(
        "finished (%.1f s): rotation %.2f degrees%s, translation %s; added .obsm[%r] on both, .uns[%r] on adata_mov",
        time.perf_counter() - t0, degrees, " (reflected)" if reflect else "", np.round(t, 3), key_added, key_added,
    )  # fmt: skip
    return (adata_ref, adata_mov) if copy else None
