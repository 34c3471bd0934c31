"""``hr.tl.stack``: serial sections registered into the first one's frame, with a z coordinate."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hiref._anndata import check_in_memory, coordinates
from hiref._contract import check_all_writable, stack_writes, write
from hiref._keys import STACK_KEY, StackKeys
from hiref._logging import logger
from hiref.engine.checks import check_bool

from ._trace import sections_of

if TYPE_CHECKING:
    from anndata import AnnData

#: Options of :func:`hiref.pp.register` that ``stack`` sets itself.
_OWN_OPTIONS = ("spatial_key", "key_added", "copy")


def compose_motions(steps: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Motions of every section into the first one's frame, from the motions between consecutive sections.

    ``steps[k] = (R, t)`` maps section ``k + 1`` into the frame of section ``k``
    (``x_k = R @ x_{k+1} + t``). Returns ``(R, t)`` per section (the first: the identity), with
    ``x_0 = R @ x + t``: the products ``R_0 R_1 ... R_{k-1}`` and the matching translations.
    """
    R, t = np.eye(2), np.zeros(2)
    out = [(R, t)]
    for R_step, t_step in steps:
        R, t = R @ np.asarray(R_step, dtype=np.float64), R @ np.asarray(t_step, dtype=np.float64) + t
        out.append((R, t))
    return out


def _number(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
    ):
        msg = f"`{name}` must be a finite number, got {value!r}."
        raise ValueError(msg)
    return float(value)


def _heights(n: int, spacing: float | None, z: Sequence[float] | None) -> np.ndarray:
    if spacing is not None and z is not None:
        msg = "pass either `spacing` or `z`, not both."
        raise ValueError(msg)
    if z is None:
        step = 1.0 if spacing is None else _number(spacing, "spacing")
        if step <= 0:
            msg = f"`spacing` must be > 0, got {spacing!r}."
            raise ValueError(msg)
        return np.arange(n, dtype=np.float64) * step
    if isinstance(z, str) or not isinstance(z, Sequence | np.ndarray):
        msg = f"`z` must be a list of one position per section, got {z!r}."
        raise TypeError(msg)
    values = np.array([_number(v, "z") for v in z], dtype=np.float64)
    if len(values) != n:
        msg = f"`z` must hold one position per section ({n}), got {len(values)}."
        raise ValueError(msg)
    return values


def _proxy(adata: AnnData, xy: np.ndarray, spatial_key: str, use_rep: str | None) -> AnnData:
    """A light AnnData sharing ``adata``'s expression, for :func:`hiref.pp.register` to write into."""
    import pandas as pd
    from anndata import AnnData

    obsm = {spatial_key: xy}
    if use_rep is not None and use_rep in adata.obsm:
        obsm[use_rep] = adata.obsm[use_rep]
    X = adata.X if use_rep is not None and use_rep not in adata.obsm else None
    var = pd.DataFrame(index=adata.var_names) if X is not None else None
    return AnnData(X=X, obs=pd.DataFrame(index=adata.obs_names), var=var, obsm=obsm)


def stack(
    data: Sequence[AnnData],
    *,
    spacing: float | None = None,
    z: Sequence[float] | None = None,
    spatial_key: str = "spatial",
    key_added: str = STACK_KEY,
    register_options: Mapping[str, Any] | None = None,
    inplace: bool = True,
) -> list[dict[str, np.ndarray | float]]:
    """Stack serial sections in 3-D: register each into the first one's frame and add a z coordinate.

    Runs :func:`hiref.pp.register` on every consecutive pair (section ``k + 1`` onto section
    ``k``) and composes the motions (rotation, possibly a reflection, and translation), so that
    every section lands in the frame of the first: ``x_0 = R x + t`` with ``R`` the product of
    the consecutive rotations. Registering neighbours (not every section onto the first) keeps
    each fit between similar sections. Everything is computed and checked before anything is
    written.

    Parameters
    ----------
    data
        The sections, in order (first = reference frame), each with 2-D
        ``.obsm[spatial_key]``.
    spacing
        Distance between consecutive sections along z, in the units of the coordinates
        (default 1): section ``k`` is placed at ``z = k * spacing``.
    z
        Or the z position of every section (e.g. measured depths).
    spatial_key
        ``.obsm`` key of the 2-D coordinates of every section.
    key_added
        ``.obsm`` key of the 3-D coordinates and ``.uns`` key of the motion, on every section.
    register_options
        Passed to :func:`hiref.pp.register` (``use_rep``, ``reflection``, ``n_sample``,
        ``random_state``, ...).
    inplace
        Write the results into the sections; ``False``: only return the motions.

    Returns
    -------
    The motion of every section into the first one's frame: a dict with ``rotation`` (2 x 2,
    a reflection if its determinant is -1), ``translation`` (2,) and ``z``. With
    ``inplace=True`` also writes, on every section:

    ``.obsm[key_added]``
        (n_obs, 3) float64: ``rotation @ xy + translation`` and ``z``.
    ``.uns[key_added]``
        ``rotation``, ``translation``, ``z``, ``section`` (its position), ``step`` (the motion
        onto the previous section as :func:`hiref.pp.register` found it: ``rotation``,
        ``translation``, ``angle``, ``reflected``, ``decision``; absent on the first) and
        ``params`` (``spatial_key``, ``register_options``).

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=400, rotation=30, deformation=0, seed=0)
    >>> motions = hr.tl.stack([a, b], spacing=5.0, register_options={"use_rep": None})
    >>> b.obsm["spatial_3d"].shape[1], float(motions[1]["z"])
    (3, 5.0)
    """
    t0 = time.perf_counter()
    adatas = sections_of(data)
    check_bool(inplace, "inplace")
    if not isinstance(spatial_key, str) or not spatial_key:
        msg = f"`spatial_key` must be a non-empty string, got {spatial_key!r}."
        raise ValueError(msg)
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty string, got {key_added!r}."
        raise ValueError(msg)
    options = dict(register_options or {})
    if register_options is not None and not isinstance(register_options, Mapping):
        msg = f"`register_options` must be a dict of hr.pp.register options, got {register_options!r}."
        raise TypeError(msg)
    bad = [k for k in options if k in _OWN_OPTIONS]
    if bad:
        msg = f"`register_options` cannot set {bad}: stack sets them itself (pass `spatial_key=` / `key_added=`)."
        raise ValueError(msg)
    heights = _heights(len(adatas), spacing, z)
    xys = []
    for i, adata in enumerate(adatas):
        check_in_memory(adata, f"data[{i}]")
        hint = " Every section needs 2-D coordinates; pass `spatial_key=`."
        xy = coordinates(adata, spatial_key, f"data[{i}]", hint=hint)
        width = adata.obsm[spatial_key].shape[1]
        if width != 2:
            msg = f"`data[{i}].obsm[{spatial_key!r}]` must hold 2-D coordinates, got {width} columns."
            raise ValueError(msg)
        xys.append(xy)
    names = StackKeys(key_added)
    writes = stack_writes(key_added)
    if inplace:
        check_all_writable([(adata, writes, f"data[{i}]") for i, adata in enumerate(adatas)])

    from hiref.pp import register

    use_rep = options.get("use_rep", "X_pca")
    logger.info("stacking %d sections", len(adatas))
    steps, found = [], []
    for k in range(len(adatas) - 1):
        ref = _proxy(adatas[k], xys[k], spatial_key, use_rep)
        mov = _proxy(adatas[k + 1], xys[k + 1], spatial_key, use_rep)
        register(ref, mov, spatial_key=spatial_key, key_added=names.uns, **options)
        motion = mov.uns[names.uns]
        steps.append(
            (np.asarray(motion["rotation"], dtype=np.float64), np.asarray(motion["translation"], dtype=np.float64))
        )
        found.append(motion)
    motions = compose_motions(steps)
    result = [{"rotation": R, "translation": t, "z": float(heights[i])} for i, (R, t) in enumerate(motions)]
    if inplace:
        params = {"spatial_key": spatial_key, "register_options": {k: str(v) for k, v in options.items()}}
        for i, (adata, (R, t)) in enumerate(zip(adatas, motions, strict=True)):
            entry = {"rotation": R, "translation": t, "z": float(heights[i]), "section": i}
            if i:
                m = found[i - 1]
                entry["step"] = {
                    "rotation": steps[i - 1][0], "translation": steps[i - 1][1], "angle": float(m["angle"]),
                    "reflected": bool(m["reflected"]), "decision": str(m["decision"]),
                }  # fmt: skip
            coords = np.column_stack([xys[i] @ R.T + t, np.full(len(xys[i]), heights[i])])
            write(adata, writes, record=entry, params=params, obsm={names.obsm: coords})
    logger.info(
        "finished (%.1f s)%s", time.perf_counter() - t0,
        f": added .obsm[{names.obsm!r}] and .uns[{names.uns!r}] on every section" if inplace else "",
    )  # fmt: skip
    return result
