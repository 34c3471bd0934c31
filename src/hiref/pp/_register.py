"""``hr.pp.register``: bring a slice into the frame of another (rotation, reflection, translation).

The public function validates, samples, then runs the three steps of :mod:`hiref.pp._motion`
(search, refine, decide) on the samples and writes the result.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from hiref._anndata import check_adata, check_in_memory, obsm_array
from hiref._contract import check_all_writable, register_writes, write
from hiref._docs import DOC, doc_params
from hiref._keys import REGISTER_KEY, RegisterKeys
from hiref._logging import logger
from hiref._rep import representations
from hiref._spatialdata import call as spatialdata_call
from hiref._spatialdata import given as spatialdata_given
from hiref.engine.checks import check_bool, check_positive_float, check_positive_int, check_seed, resolve_device

from ._motion import (
    Decision,
    Sample,
    Search,
    decide_motion,
    even_sample,
    refine_motion,
    search_motions,
)

if TYPE_CHECKING:
    from anndata import AnnData

#: Search margin under which a motion applied is reported as ambiguous (mirror-symmetric tissue).
AMBIGUOUS_MARGIN = 1.02


def _coordinates(adata_ref: AnnData, adata_mov: AnnData, spatial_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Both slices' ``.obsm[spatial_key]``, checked to exist, then to hold finite 2-D coordinates."""
    P = obsm_array(adata_ref, spatial_key, "adata_ref", hint=" Pass `spatial_key=`.")
    M = obsm_array(adata_mov, spatial_key, "adata_mov", hint=" Pass `spatial_key=`.")
    for name, X in (("adata_ref", P), ("adata_mov", M)):
        if X.shape[1] != 2:
            msg = f"`{name}.obsm[{spatial_key!r}]` must hold 2-D coordinates, got {X.shape[1]} columns."
            raise ValueError(msg)
        if not np.isfinite(X).all():
            msg = f"`{name}.obsm[{spatial_key!r}]` contains NaN or infinite coordinates."
            raise ValueError(msg)
    return P, M


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _check_search(*, reflection: object, n_angles: object) -> None:
    """Raise a ValueError if ``reflection`` or ``n_angles`` of :func:`register` is wrong."""
    if reflection not in (True, False, None):
        msg = f"`reflection` must be True, False or None, got {reflection!r}."
        raise ValueError(msg)
    if isinstance(n_angles, bool) or not isinstance(n_angles, int) or n_angles < 1:
        msg = f"`n_angles` must be a positive int, got {n_angles!r}."
        raise ValueError(msg)


def _check_min_gain(min_gain: object) -> None:
    if not _is_number(min_gain) or min_gain < 0:
        msg = f"`min_gain` must be a number >= 0 (a share of the cost), got {min_gain!r}."
        raise ValueError(msg)


def _check_angle_and_key(*, angle: object, key_added: object) -> None:
    """Raise a ValueError if ``angle`` or ``key_added`` of :func:`register` is wrong."""
    if angle is not None and (not _is_number(angle) or not np.isfinite(angle)):
        msg = f"`angle` must be None or a finite number of degrees, got {angle!r}."
        raise ValueError(msg)
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty string, got {key_added!r}."
        raise ValueError(msg)


def _sample(
    adata_ref: AnnData,
    adata_mov: AnnData,
    P: np.ndarray,
    M: np.ndarray,
    *,
    n_sample: int,
    use_rep: str | None,
    rep_weight: float,
    random_state: int,
) -> Sample:
    """``n_sample`` cells per slice, spread evenly (in random order: the first ones make the search sample).

    With ``use_rep``, expression, scaled to ``rep_weight`` times the spatial spread, breaks the
    ties of symmetric tissue shapes (a joint PCA, if one is needed, is fitted on the sampled
    cells only); the motion itself is fitted on coordinates only.
    """
    rng = np.random.default_rng(random_state)
    k = min(n_sample, P.shape[0], M.shape[0])
    pick_p, pick_m = even_sample(P, k, rng), even_sample(M, k, rng)
    Ps, Ms = P[pick_p], M[pick_m]
    if use_rep is None:
        return Sample(Ps, Ms)
    E1, E2, _, _ = representations(
        adata_ref[pick_p], adata_mov[pick_m], use_rep, layer=None, n_pcs=20, random_state=random_state
    )
    centre = np.concatenate([E1, E2]).mean(0)
    spread = np.sqrt((((Ps - Ps.mean(0)) ** 2).sum(1).mean() + ((Ms - Ms.mean(0)) ** 2).sum(1).mean()) / 2)
    e_scale = np.sqrt(np.concatenate([(E1 - centre) ** 2, (E2 - centre) ** 2]).sum(1).mean())
    factor = np.sqrt(rep_weight) * spread / (e_scale if e_scale > 0 else 1.0)
    return Sample(Ps, Ms, (E1 - centre) * factor, (E2 - centre) * factor)


def _motion_record(
    R: np.ndarray, t: np.ndarray, found: Search, decision: Decision, *, reflect: bool, runtime: float, params: dict
) -> dict:
    """``adata_mov.uns[key_added]`` (see :func:`register`)."""
    rotation_part = R @ np.diag([1.0, -1.0]) if reflect else R
    return {
        "rotation": R,
        "translation": t,
        "angle": float(np.rad2deg(np.arctan2(rotation_part[1, 0], rotation_part[0, 0]))),
        "reflected": bool(reflect),
        "cost": float(decision.cost if decision.moved else decision.identity_cost),
        "identity_cost": decision.identity_cost,
        "gain": decision.gain,
        "decision": "moved" if decision.moved else "identity",
        "margin": found.margin,
        "candidate_angles": found.angles,
        "candidate_reflected": found.reflected,
        "candidate_scores": found.scores,
        "runtime": runtime,
        "params": params,
    }


def _check_writable(adata_ref: AnnData, adata_mov: AnnData, key_added: str, P: np.ndarray) -> None:
    """Refuse ``key_added`` if it would overwrite entries hiref did not write (see :mod:`hiref._contract`).

    The reference's registered coordinates are a copy of its own: an entry that already holds
    exactly them loses nothing.
    """
    check_all_writable(
        [(adata_ref, register_writes(key_added, moving=False), "adata_ref"),
         (adata_mov, register_writes(key_added, moving=True), "adata_mov")],
        unchanged={"adata_ref": {("obsm", RegisterKeys(key_added).obsm): P}},
    )  # fmt: skip


def _write_registration(
    adata_ref: AnnData, adata_mov: AnnData, keys: RegisterKeys, P: np.ndarray, registered: np.ndarray, record: dict
) -> None:
    """Write the registered coordinates on both slices and the motion (with its ``params``) on the moving one."""
    write(adata_ref, register_writes(keys.key, moving=False), obsm={keys.obsm: P.copy()})
    params = record.pop("params")
    write(adata_mov, register_writes(keys.key, moving=True), record=record, params=params, obsm={keys.obsm: registered})


@doc_params(**DOC)
def register(
    adata_ref: AnnData,
    adata_mov: AnnData,
    *,
    spatial_key: str = "spatial",
    key_added: str = REGISTER_KEY,
    angle: float | None = None,
    reflection: bool | None = None,
    use_rep: str | None = "X_pca",
    rep_weight: float = 1.0,
    n_angles: int = 24,
    n_sample: int = 1000,
    n_iter: int = 3,
    min_gain: float = 0.1,
    random_state: int | np.random.Generator | None = 0,
    device: str | None = None,
    copy: bool = False,
    table_key: str | list[str] | None = None,
    coordinate_system: str = "global",
    coordinate_system_added: str = "hiref_aligned",
) -> tuple[AnnData, AnnData] | None:
    """Rotate and shift a slice onto another, so that both share one coordinate frame.

    Finds the rigid motion (rotation, optionally a reflection, and translation) that maps the
    cells of ``adata_mov`` onto those of ``adata_ref``, in three steps on ``n_sample`` cells
    per slice, spread evenly over it (one per square of a grid: two random samples of
    near-uniform tissue differ enough to turn the fit by degrees):

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
        Cells per slice used to score and fit, spread evenly (the motion is then applied to all).
    n_iter
        Most one-to-one matching + Procrustes rounds after the search (which are preceded by
        a few cheap nearest-neighbour rounds); 0 and an ``angle``: no refinement.
    min_gain
        Smallest relative drop of the matching cost (against no motion) for which the slice is
        moved.
    {random_state}
    {device}
    {copy}
    {spatialdata}
    coordinate_system_added
        Only for ``SpatialData`` objects: the coordinate system that every element of
        ``adata_mov`` in ``coordinate_system`` is given a transformation into (its own, then
        the motion found), and every element of ``adata_ref`` too (its own), so that images,
        shapes and points of both sections overlay there. A system of that name that
        ``register`` did not set is refused.

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
        divided by the best score; near 1 means an ambiguous rotation, and under 1.02 a
        motion applied is logged as a warning),
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
    if spatialdata_given(adata_ref, adata_mov):
        return spatialdata_call(register, locals())
    t0 = time.perf_counter()
    check_adata(adata_ref, "adata_ref")
    check_adata(adata_mov, "adata_mov")
    check_in_memory(adata_ref, "adata_ref")
    check_in_memory(adata_mov, "adata_mov")
    P, M = _coordinates(adata_ref, adata_mov, spatial_key)
    _check_search(reflection=reflection, n_angles=n_angles)
    n_sample = check_positive_int(n_sample, "n_sample", minimum=2)
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    rep_weight = check_positive_float(rep_weight, "rep_weight")
    _check_min_gain(min_gain)
    random_state = check_seed(random_state, "random_state")
    resolve_device(device)
    check_bool(copy, "copy")
    _check_angle_and_key(angle=angle, key_added=key_added)
    _check_writable(adata_ref, adata_mov, key_added, P)

    sample = _sample(adata_ref, adata_mov, P, M, n_sample=n_sample, use_rep=use_rep, rep_weight=rep_weight,
                     random_state=random_state)  # fmt: skip
    reflects = [False, True] if reflection is None else [bool(reflection)]
    angles = [float(angle)] if angle is not None else list(np.arange(n_angles) * 360.0 / n_angles)
    found = search_motions(sample, angles, reflects)
    reflect = bool(found.reflected[found.best])
    R, t = refine_motion(sample, found.rotation, found.translation, reflect=reflect, n_iter=n_iter, seed=random_state,
                         device=device)  # fmt: skip
    ratio = M.shape[0] / P.shape[0]
    decision = decide_motion(sample, R, t, min_gain=min_gain, forced=angle is not None, seed=random_state,
                             device=device, ratio=ratio)  # fmt: skip
    if not decision.moved:
        R, t, reflect = np.eye(2), np.zeros(2), False
    elif angle is None and found.margin < AMBIGUOUS_MARGIN:
        logger.warning(
            "register: the rotation found is ambiguous: a motion at least 45 degrees away (or mirrored) fits within "
            "%.1f %% of it (margin %.3f), as on mirror-symmetric tissue; if you know the orientation, pass `angle=` "
            "and `reflection=`", 100 * (found.margin - 1), found.margin,
        )  # fmt: skip
    params = {"spatial_key": spatial_key, "n_angles": n_angles, "n_sample": sample.k, "random_state": random_state,
              "searched": angle is None, "reflection": "both" if reflection is None else bool(reflection),
              "min_gain": float(min_gain), "use_rep": use_rep}  # fmt: skip
    record = _motion_record(R, t, found, decision, reflect=reflect, runtime=time.perf_counter() - t0, params=params)
    if copy:
        adata_ref, adata_mov = adata_ref.copy(), adata_mov.copy()
    _write_registration(adata_ref, adata_mov, RegisterKeys(key_added), P, M @ R.T + t, record)
    logger.info(
        "finished (%.1f s): rotation %.2f degrees%s, translation %s; added .obsm[%r] on both, .uns[%r] on adata_mov",
        time.perf_counter() - t0, record["angle"], " (reflected)" if reflect else "", np.round(t, 3), key_added,
        key_added,
    )  # fmt: skip
    return (adata_ref, adata_mov) if copy else None
