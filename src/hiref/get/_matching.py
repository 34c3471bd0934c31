"""``hr.get.matching``: the matching stored by :func:`hiref.tl.align`, checked against the objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hiref._anndata import check_adata, str_array
from hiref._keys import ALIGN_KEY, Keys
from hiref._params import read_params
from hiref.engine import Matching

if TYPE_CHECKING:
    from anndata import AnnData

#: What to run when no alignment is stored.
ALIGN_HINT = "run hr.tl.align first"


def is_alignment(entry: object) -> bool:
    """Whether a ``.uns`` entry is an alignment stored by hiref (``align``, ``align_series``, ``store_matching``)."""
    return isinstance(entry, Mapping) and "partner" in entry


def stored(adata: AnnData, key: str, name: str, *, hint: str = ALIGN_HINT) -> dict:
    """``adata.uns[key]`` written by :func:`hiref.tl.align`, with a clear error if it is missing.

    ``hint`` says what to run first.
    """
    entry = adata.uns.get(key)
    if not is_alignment(entry):
        found = sorted(k for k, v in adata.uns.items() if is_alignment(v))
        msg = (
            f"`{name}` has no alignment under key {key!r}: {hint}"
            f"{' (alignments found: ' + str(found) + ')' if found else ''}."
        )
        raise KeyError(msg)
    return entry


def partner_names(adata: AnnData, keys: Keys) -> np.ndarray | None:
    """The partner's obs name of every cell (``""`` if unmatched), or None if none are stored.

    Read from ``.obs[keys.match]``; alignments stored by hiref before 0.2 also kept them as
    ``.uns[key]["partner_names"]``, read when the column is missing.
    """
    if keys.match in adata.obs.columns:
        values = adata.obs[keys.match]
        present = values.notna().to_numpy()
        names = np.full(adata.n_obs, "", dtype=object)
        names[present] = str_array(values.to_numpy()[present]).astype(object)
        return names.astype(str) if adata.n_obs else np.empty(0, dtype=str)
    entry = adata.uns.get(keys.uns)
    if isinstance(entry, dict) and "partner_names" in entry:
        return str_array(entry["partner_names"])
    return None


def _moved_message(key: str, name: str, other_name: str) -> str:
    """The error for objects whose rows no longer match their alignment.

    Partner names are stored once, in ``.obs`` (which follows a reordering of the rows) next to
    positions in ``.uns`` (which do not), so either object may be the one that changed.
    """
    return (
        f"the obs_names of `{name}` and `{other_name}` no longer match the alignment stored under {key!r}: one "
        "of them was subset, reordered or renamed since hr.tl.align, or they are not the objects that were "
        "aligned; align again."
    )


def _categories_match(partner: np.ndarray, matched: np.ndarray, column: pd.Series, other: AnnData) -> bool:
    """Whether a categorical column of partner names surely names ``other``'s cells at ``partner``.

    Compared once per category, not per cell: every matched cell's code must point to a single
    partner position, whose obs name must equal the category. False means "not shown" (a
    missing name at a matched cell, a name given to two partners, names that are not strings, or
    a real mismatch); the caller then compares the strings cell by cell.
    """
    codes = column.cat.codes.to_numpy()[matched]
    positions = partner[matched]
    categories = column.cat.categories
    if codes.min() < 0 or categories.inferred_type != "string" or other.obs_names.inferred_type != "string":
        return False
    at = np.full(len(categories), -1, dtype=np.int64)
    at[codes] = positions
    if not np.array_equal(at[codes], positions):
        return False
    used = np.flatnonzero(at >= 0)
    ours = categories.to_numpy(dtype=object)[used]
    theirs = other.obs_names.to_numpy(dtype=object)[at[used]]
    return bool((ours == theirs).all())


def _names_match(partner: np.ndarray, adata: AnnData, keys: Keys, other: AnnData) -> bool:
    """Whether ``other``'s obs names at ``partner`` are the partner names stored on ``adata`` (where matched).

    True where ``adata`` stores no names; False where a matched cell's name is missing. A
    categorical ``.obs[keys.match]`` (what hr.tl.align writes) is checked by its codes (fast);
    otherwise, or when that does not show a match, the names are compared as strings.
    """
    matched = partner >= 0
    if not matched.any():
        return True
    if partner.max() >= other.n_obs:
        return False
    column = adata.obs[keys.match] if keys.match in adata.obs.columns else None
    if (
        column is not None
        and isinstance(column.dtype, pd.CategoricalDtype)
        and len(column) == len(partner)
        and _categories_match(partner, matched, column, other)
    ):
        return True
    names = partner_names(adata, keys)
    if names is None:
        return True
    if names.shape != partner.shape:
        return False
    if column is not None and column.isna().to_numpy()[matched].any():
        return False  # a matched cell without its partner's name (stored as "", the name a partner may have)
    return np.array_equal(str_array(other.obs_names.to_numpy()[partner[matched]]), names[matched])


def partners(
    adata: AnnData, other: AnnData, key: str, *, name: str = "adata", other_name: str = "other", hint: str = ALIGN_HINT
) -> np.ndarray:
    """Position in ``other`` of every cell's partner (``-1`` if unmatched), checked by obs name.

    The one reader of a stored matching (``hr.get``, ``hr.tl`` and ``hr.pl`` all use it). Raises
    a KeyError (saying ``hint``) if there is none, and a ValueError if either object was subset,
    reordered or renamed since the alignment.
    """
    entry = stored(adata, key, name, hint=hint)
    partner = np.asarray(entry["partner"], dtype=np.int64)
    if partner.shape[0] != adata.n_obs:
        msg = (
            f"`{name}` has {adata.n_obs} cells but the alignment {key!r} was stored for {partner.shape[0]}: "
            "the object was subset or extended since hr.tl.align; align again."
        )
        raise ValueError(msg)
    if not _names_match(partner, adata, Keys(key), other):
        raise ValueError(_moved_message(key, name, other_name))
    _check_own_order(adata, other, key, name=name, other_name=other_name)
    return partner


def _check_own_order(adata: AnnData, other: AnnData, key: str, *, name: str, other_name: str) -> None:
    """Raise if ``adata``'s own rows were reordered or renamed since the alignment.

    ``uns[key]["partner"]`` does not follow a reordering of the rows while ``.obs`` does; the
    partner names stored on ``other`` tell whether ``adata``'s rows are still where they were
    (this also catches a reordered ``adata`` whose own column of partner names was removed).
    """
    entry = other.uns.get(key)
    if not is_alignment(entry):
        return
    back = np.asarray(entry["partner"], dtype=np.int64)
    keys = Keys(key)
    if back.shape[0] != other.n_obs:
        return  # ``other``'s own check reports this
    if keys.match not in other.obs.columns:  # names kept in ``.uns`` by hiref before 0.2
        back_names = partner_names(other, keys)
        if back_names is not None and back_names.shape != back.shape:
            return
    if not _names_match(back, other, keys, adata):
        raise ValueError(_moved_message(key, name, other_name))


def level_labels(adata: AnnData, keys: Keys) -> list[np.ndarray]:
    """The co-cluster of every cell at every level (``.obsm[keys.labels]``), one array per level."""
    if keys.labels not in adata.obsm:
        return []
    values = np.asarray(adata.obsm[keys.labels])
    return [values[:, j].astype(np.int64) for j in range(values.shape[1])]


def stored_params(adata: AnnData, key: str, name: str = "adata") -> dict:
    """The ``params`` of the alignment under ``key``, decoded by :func:`hiref._params.read_params`."""
    return read_params(stored(adata, key, name).get("params"))


def matching(adata1: AnnData, adata2: AnnData, *, key: str = ALIGN_KEY) -> Matching:
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

    params = read_params(entry.get("params"))
    return Matching(
        perm=perm,
        cost=float(entry["cost"]),
        schedule=[int(r) for r in np.asarray(params.get("schedule", []), dtype=np.int64)],
        labels_x=level_labels(adata1, keys),
        labels_y=level_labels(adata2, keys),
        level_costs=[float(c) for c in np.asarray(entry.get("level_costs", []))],
        timings={"total": float(entry.get("runtime", np.nan))},
        cost_name=str(params.get("cost") or ""),
        n_y=adata2.n_obs,
        lower_bound=_stored_bound(entry),
    )


def _stored_bound(entry: dict) -> float | None:
    """The stored lower bound on the optimal cost, or ``None`` (absent, or NaN: none was computed)."""
    value = float(entry.get("lower_bound", np.nan))
    return None if np.isnan(value) else value
