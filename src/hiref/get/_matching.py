"""``hr.get.matching``: the matching stored by :func:`hiref.tl.align`, checked against the objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hiref._anndata import check_adata, str_array
from hiref._keys import Keys
from hiref.engine import Matching

if TYPE_CHECKING:
    from anndata import AnnData


def stored(adata: AnnData, key: str, name: str) -> dict:
    """``adata.uns[key]`` written by :func:`hiref.tl.align`, with a clear error if it is missing."""
    entry = adata.uns.get(key)
    if not isinstance(entry, dict) or "partner" not in entry:
        found = sorted(k for k, v in adata.uns.items() if isinstance(v, dict) and "partner" in v)
        msg = (
            f"`{name}` has no alignment under key {key!r}: run hr.tl.align first"
            f"{' (alignments found: ' + str(found) + ')' if found else ''}."
        )
        raise KeyError(msg)
    return entry


def partners(adata: AnnData, other: AnnData, key: str, *, name: str = "adata", other_name: str = "other") -> np.ndarray:
    """Position in ``other`` of every cell's partner (``-1`` if unmatched), checked by obs name.

    Raises a ValueError if either object was subset or reordered since the alignment.
    """
    entry = stored(adata, key, name)
    partner = np.asarray(entry["partner"], dtype=np.int64)
    names = str_array(entry["partner_names"])
    if partner.shape[0] != adata.n_obs:
        msg = (
            f"`{name}` has {adata.n_obs} cells but the alignment {key!r} was stored for {partner.shape[0]}: "
            "the object was subset or extended since hr.tl.align; align again."
        )
        raise ValueError(msg)
    matched = partner >= 0
    if matched.any() and (partner.max() >= other.n_obs or not np.array_equal(
        str_array(other.obs_names.to_numpy()[partner[matched]]), names[matched]
    )):  # fmt: skip
        msg = (
            f"the obs_names of `{other_name}` no longer match the partners stored in `{name}`.uns[{key!r}] "
            "(subset, reordered or renamed since hr.tl.align, or not the object it was aligned to); align again."
        )
        raise ValueError(msg)
    _check_own_order(adata, other, key, partner, names, name=name, other_name=other_name)
    return partner


def _check_own_order(
    adata: AnnData, other: AnnData, key: str, partner: np.ndarray, names: np.ndarray, *, name: str, other_name: str
) -> None:
    """Raise if ``adata``'s own rows were reordered or renamed since the alignment.

    ``uns[key]["partner"]`` does not follow a reordering of the rows while ``.obs`` does, so the
    rows are checked against the ``.obs`` column of partner names and against the partner
    names stored on ``other``.
    """
    msg = (
        f"the obs_names of `{name}` no longer match the alignment stored under {key!r} (its rows were "
        f"reordered, subset or renamed since hr.tl.align, or `{other_name}` is not the object it was aligned "
        "to); align again."
    )
    column = Keys(key).match
    if column in adata.obs.columns:
        values = adata.obs[column]
        present = values.notna().to_numpy()
        if not np.array_equal(present, partner >= 0) or not np.array_equal(
            str_array(values.to_numpy()[present]), names[present]
        ):
            raise ValueError(msg)
    entry = other.uns.get(key)
    if isinstance(entry, dict) and "partner" in entry and "partner_names" in entry:
        back = np.asarray(entry["partner"], dtype=np.int64)
        back_names = str_array(entry["partner_names"])
        if back.shape[0] != other.n_obs or back_names.shape != back.shape:
            return  # ``other``'s own check reports this
        hit = back >= 0
        if hit.any() and (
            back.max() >= adata.n_obs
            or not np.array_equal(str_array(adata.obs_names.to_numpy()[back[hit]]), back_names[hit])
        ):
            raise ValueError(msg)


def matching(adata1: AnnData, adata2: AnnData, *, key: str = "hiref") -> Matching:
    """Rebuild the :class:`~hiref.Matching` that :func:`hiref.tl.align` stored on two objects.

    Parameters
    ----------
    adata1, adata2
        The aligned objects, in any order (``perm`` maps cells of ``adata1`` to ``adata2``).
    key
        The ``key_added`` of the alignment.

    Returns
    -------
    The matching: ``perm``, ``cost``, ``schedule``, per-level co-clusters, level costs and the
    runtime (``timings["total"]``).

    Raises
    ------
    KeyError
        If the alignment is missing.
    ValueError
        If either object was subset, reordered or renamed since the alignment.
    """
    check_adata(adata1, "adata1")
    check_adata(adata2, "adata2")
    perm = partners(adata1, adata2, key, name="adata1", other_name="adata2")
    partners(adata2, adata1, key, name="adata2", other_name="adata1")
    entry = adata1.uns[key]
    keys = Keys(key)

    def labels(adata: AnnData) -> list[np.ndarray]:
        if keys.labels not in adata.obsm:
            return []
        values = np.asarray(adata.obsm[keys.labels])
        return [values[:, j].astype(np.int64) for j in range(values.shape[1])]

    params = entry.get("params", {})
    return Matching(
        perm=perm,
        cost=float(entry["cost"]),
        schedule=[int(r) for r in np.asarray(params.get("schedule", []))],
        labels_x=labels(adata1),
        labels_y=labels(adata2),
        level_costs=[float(c) for c in np.asarray(entry.get("level_costs", []))],
        timings={"total": float(entry.get("runtime", np.nan))},
        cost_name=str(params.get("cost", "")),
        n_y=adata2.n_obs,
    )
