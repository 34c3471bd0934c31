"""``hr.tl.trace``: follow every cell of one section through the consecutive matchings of a series."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hiref._anndata import check_adata
from hiref._contract import check_writable, trace_writes, write
from hiref._keys import ALIGN_KEY, TRACE_KEY, SeriesKeys, TraceKeys
from hiref._logging import logger
from hiref.engine.checks import check_bool
from hiref.get._matching import partners
from hiref.get._series import stored_series

if TYPE_CHECKING:
    from anndata import AnnData

#: What to run when a pair of the series has no stored alignment.
HINT = "run hr.tl.align_series (or hr.tl.align) first"


def sections_of(data: object) -> list[AnnData]:
    """The list of sections, checked (a single AnnData is refused with a hint)."""
    from anndata import AnnData

    if isinstance(data, AnnData) or not isinstance(data, Sequence) or isinstance(data, str):
        msg = (
            f"`data` must be the list of sections that hr.tl.align_series aligned, got {type(data).__name__}; "
            "for one AnnData holding every time point, split it by its time column first."
        )
        raise TypeError(msg)
    adatas = list(data)
    if len(adatas) < 2:
        msg = f"`data` must hold at least two sections, got {len(adatas)}."
        raise ValueError(msg)
    for i, adata in enumerate(adatas):
        check_adata(adata, f"data[{i}]")
    return adatas


def pair_keys(n_sections: int, keys: Sequence[str] | None, key: str) -> list[str]:
    """Key of every consecutive pair: ``keys`` as given (align_series' return value), or derived from ``key``."""
    if keys is None:
        return [SeriesKeys(key).pair(i) for i in range(n_sections - 1)]
    if isinstance(keys, str) or not isinstance(keys, Sequence) or not all(isinstance(k, str) for k in keys):
        msg = f"`keys` must be a list of strings (what hr.tl.align_series returned), got {keys!r}."
        raise TypeError(msg)
    if len(keys) != n_sections - 1:
        msg = f"`keys` must hold one key per consecutive pair ({n_sections - 1}), got {len(keys)}."
        raise ValueError(msg)
    return list(keys)


def compose(
    n: int, start: int, targets: Sequence[int], step_of: Callable[[int, int], np.ndarray]
) -> dict[int, np.ndarray]:
    """Partner of each of the ``n`` cells of section ``start`` in each target section (``-1``: lost on the way).

    ``step_of(k, j)`` is the matching of section ``k`` to its neighbour ``j`` (position in ``j``
    of every cell of ``k``, ``-1``: none). Walks once forward and once backward from ``start``,
    composing the matchings as integer index arrays: O(n) memory per step.
    """
    out: dict[int, np.ndarray] = {}
    if start in targets:
        out[start] = np.arange(n, dtype=np.int64)
    for direction, last in ((1, max(targets)), (-1, min(targets))):
        current = np.arange(n, dtype=np.int64)
        k = start
        while (k < last) if direction == 1 else (k > last):
            j = k + direction
            perm = step_of(k, j)
            alive = current >= 0
            nxt = np.full(n, -1, dtype=np.int64)
            nxt[alive] = perm[current[alive]]
            current = nxt
            k = j
            if k in targets:
                out[k] = current
    return {j: out[j] for j in targets}


def _list_steps(adatas: list[AnnData], keys: list[str]) -> Callable[[int, int], np.ndarray]:
    def step_of(k: int, j: int) -> np.ndarray:
        return partners(adatas[k], adatas[j], keys[min(k, j)], name=f"data[{k}]", other_name=f"data[{j}]", hint=HINT)

    return step_of


def single_series(adata: AnnData, key: str) -> tuple[list[str], list[np.ndarray], Callable[[int, int], np.ndarray]]:
    """Stages, rows of every stage, and the step function of a series stored on one AnnData by align_series."""
    info = stored_series(adata, key)
    names = SeriesKeys(key)
    order = [str(s) for s in np.atleast_1d(np.asarray(info["order"], dtype=object))]
    time_key = str(info["time_key"])
    if time_key not in adata.obs.columns:
        msg = f"`data` has no .obs[{time_key!r}] (the time column of the series stored under {key!r})."
        raise KeyError(msg)
    stage = adata.obs[time_key].astype(str).to_numpy()
    members = [np.flatnonzero(stage == s) for s in order]
    local = np.full(adata.n_obs, -1, dtype=np.int64)
    for rows in members:
        local[rows] = np.arange(len(rows))

    def positions(column: str) -> np.ndarray:
        values = adata.obs[column]
        present = values.notna().to_numpy()
        found = np.full(adata.n_obs, -1, dtype=np.int64)
        found[present] = adata.obs_names.get_indexer(values[present].astype(str).to_numpy())
        if (found[present] < 0).any():
            msg = (
                f"`data`.obs[{column!r}] names cells that are no longer in `data` (subset or renamed since "
                "hr.tl.align_series); align again."
            )
            raise ValueError(msg)
        return found

    forward, backward = positions(names.next), positions(names.prev)

    def step_of(k: int, j: int) -> np.ndarray:
        target = (forward if j > k else backward)[members[k]]
        hit = target >= 0
        if (stage[target[hit]] != order[j]).any():
            msg = f"`data`.obs partners of stage {order[k]!r} are not all in stage {order[j]!r}; align again."
            raise ValueError(msg)
        return np.where(hit, local[np.maximum(target, 0)], -1)

    return order, members, step_of


def check_sections(value: object, n_sections: int, name: str) -> list[int]:
    """Section positions (negative ones count from the end), checked."""
    items = [value] if isinstance(value, int | np.integer) else value
    if isinstance(items, str) or not isinstance(items, Sequence | np.ndarray) or len(items) == 0:
        msg = f"`{name}` must be a section position or a non-empty list of them, got {value!r}."
        raise TypeError(msg)
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            msg = f"`{name}` must hold int positions of sections, got {item!r}."
            raise TypeError(msg)
        if not -n_sections <= item < n_sections:
            msg = f"`{name}` holds {item}, outside the {n_sections} sections of `data`."
            raise ValueError(msg)
        out.append(int(item) % n_sections)
    return out


def trace(
    data: Sequence[AnnData] | AnnData,
    *,
    start: int = 0,
    sections: int | Sequence[int] | None = None,
    key: str = ALIGN_KEY,
    keys: Sequence[str] | None = None,
    key_added: str = TRACE_KEY,
    inplace: bool = True,
) -> pd.DataFrame:
    """Follow every cell of one section to its partner in every other section of a series.

    Composes the consecutive matchings that :func:`hiref.tl.align_series` stored (section
    ``i`` to ``i + 1``, or back), as integer index arrays: a cell of section ``start`` is
    matched to a cell of ``start + 1``, which is matched to one of ``start + 2``, and so on.
    A cell whose chain breaks (it, or one of its partners on the way, was left unmatched
    because the sections differ in size) is kept, marked unmatched from there on. Runs in
    O(n) memory per section; the stored matchings are checked against the objects on the
    way (subset or reordered sections are refused, as by :func:`hiref.get.matching`).

    Parameters
    ----------
    data
        What :func:`hiref.tl.align_series` aligned: the list of sections in order, or the one
        AnnData holding every time point (then the "sections" are its time points, in the
        series' ``order``, and everything is written on it).
    start
        Position of the section (time point) whose cells are followed (negative: from the end).
    sections
        Positions of the sections to trace to (later or earlier ones); default every other
        section.
    key
        The ``key_added`` of :func:`hiref.tl.align_series`: the pair ``i, i + 1`` of a list is
        read from ``f"{key}_{i}_{i+1}"``; one AnnData's series from ``.uns[key]`` and
        ``.obs[f"{key}_next"]`` / ``.obs[f"{key}_prev"]``.
    keys
        For a list: the pair keys themselves, one per consecutive pair (what ``align_series``
        returned, or any alignments stored with :func:`hiref.tl.align` /
        :func:`hiref.tl.store_matching`).
    key_added
        Prefix of the ``.obs`` columns written on the start section, and its ``.uns`` key.
    inplace
        Write the columns (and ``.uns`` entry) into ``data[start]``; ``False``: only return the
        table.

    Returns
    -------
    A tidy table, one row per cell of the start section and target section, ordered by
    section then cell: ``cell`` (obs name in the start section), ``section`` (position of the
    target section), ``partner`` (obs name of the traced partner there; missing if unmatched),
    ``partner_index`` (its position there, ``-1`` if unmatched; for one AnnData its row in it)
    and ``matched``. With ``inplace=True`` also writes on ``data[start]`` (on ``data`` for one
    AnnData):

    ``.obs[f"{key_added}_{j}"]``
        For every target section ``j``: the traced partner's obs name there (categorical,
        missing if unmatched, and for one AnnData on the rows of other time points).
    ``.uns[key_added]``
        ``start``, ``sections``, ``keys`` (the pair keys composed; for one AnnData ``[key]``),
        ``n_matched`` (per target section), ``obs_keys`` (the columns above) and, for one
        AnnData, ``order`` (the time points).

    Examples
    --------
    >>> import hiref as hr
    >>> sections = [hr.datasets.simulate_slices(n_obs=200, seed=s)[0] for s in range(3)]
    >>> for s, a in enumerate(sections):
    ...     a.obs_names = [f"s{s}_{n}" for n in a.obs_names]
    >>> keys = hr.tl.align_series(sections, use_rep="spatial", progress=False)
    >>> table = hr.tl.trace(sections, keys=keys)
    >>> sorted(table["section"].unique().tolist()), "hiref_trace_2" in sections[0].obs
    ([1, 2], True)
    """
    t0 = time.perf_counter()
    check_bool(inplace, "inplace")
    series = _open_series(data, key, keys)
    start = check_sections(start, series.n_sections, "start")[0]
    targets = [j for j in range(series.n_sections) if j != start] if sections is None else check_sections(
        sections, series.n_sections, "sections"
    )  # fmt: skip
    targets = list(dict.fromkeys(targets))
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty string, got {key_added!r}."
        raise ValueError(msg)
    home, where = series.home(start), "data" if series.single else f"data[{start}]"
    writes = trace_writes(key_added, targets)
    if inplace:
        check_writable(home, writes, where)
    n = len(series.members[start])
    logger.info("tracing %d cells of section %d to sections %s", n, start, targets)
    traced = compose(n, start, targets, series.step_of)
    rows = {j: series.rows(j, traced[j]) for j in targets}
    if inplace:
        record = {
            "start": start,
            "sections": np.asarray(targets, dtype=np.int64),
            "keys": list(series.pairs),
            "n_matched": np.asarray([int((traced[j] >= 0).sum()) for j in targets], dtype=np.int64),
            **({"order": series.order} if series.single else {}),
        }
        write(home, writes, record=record, obs=_columns(series, start, rows, TraceKeys(key_added)))
    logger.info(
        "finished (%.1f s)%s", time.perf_counter() - t0,
        f": added .obs{list(writes.obs)} and .uns[{writes.uns!r}] on `{where}`" if inplace else "",
    )  # fmt: skip
    return _table(series, start, targets, traced, rows)


@dataclass
class _Series:
    """The sections of a series to trace through: a list of AnnData, or the time points of one AnnData."""

    adatas: list[AnnData]
    members: list[np.ndarray]
    pairs: list[str]
    step_of: Callable[[int, int], np.ndarray]
    order: list[str] | None = None

    @property
    def single(self) -> bool:
        """One AnnData holding every time point (``adatas`` is that one object)."""
        return self.order is not None

    @property
    def n_sections(self) -> int:
        """Number of sections (time points)."""
        return len(self.members)

    def home(self, j: int) -> AnnData:
        """The AnnData holding section ``j``."""
        return self.adatas[0] if self.single else self.adatas[j]

    def rows(self, j: int, perm: np.ndarray) -> np.ndarray:
        """Rows of the home of section ``j`` of the cells at positions ``perm`` in it (``-1`` stays)."""
        if not self.single:
            return perm
        return np.where(perm >= 0, self.members[j][np.maximum(perm, 0)], -1)


def _open_series(data: Sequence[AnnData] | AnnData, key: str, keys: Sequence[str] | None) -> _Series:
    """The sections of ``data`` and the step between neighbours, checked (see :func:`trace`)."""
    from anndata import AnnData

    if isinstance(data, AnnData):
        home = check_adata(data, "data")
        if keys is not None:
            msg = "`keys` applies to a list of sections; for one AnnData the series is read from `key`."
            raise TypeError(msg)
        order, members, step_of = single_series(home, key)
        return _Series([home], members, [str(key)], step_of, order)
    adatas = sections_of(data)
    pairs = pair_keys(len(adatas), keys, key)
    return _Series(adatas, [np.arange(a.n_obs) for a in adatas], pairs, _list_steps(adatas, pairs))


def _columns(series: _Series, start: int, rows: dict[int, np.ndarray], names: TraceKeys) -> dict[str, pd.Categorical]:
    """The ``.obs`` column of every target section on the start section (see :func:`trace`)."""
    home = series.home(start)
    out = {}
    for j, partner_rows in rows.items():
        if series.single:  # partners among the object's own cells; other stages' rows stay missing
            codes = np.full(home.n_obs, -1, dtype=np.int64)
            codes[series.members[start]] = partner_rows
        else:
            codes = partner_rows
        out[names.partner(j)] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(series.home(j).obs_names))
    return out


def _table(
    series: _Series, start: int, targets: list[int], traced: dict[int, np.ndarray], rows: dict[int, np.ndarray]
) -> pd.DataFrame:
    """The tidy table :func:`trace` returns."""
    n = len(series.members[start])
    partner_parts = []
    for j in targets:
        perm, members = traced[j], series.members[j]
        names = series.home(j).obs_names.to_numpy()
        values = names[members[np.maximum(perm, 0)]] if len(members) else np.full(n, None)
        values[perm < 0] = None
        partner_parts.append(values)
    index = np.concatenate([rows[j] for j in targets])
    return pd.DataFrame(
        {
            "cell": pd.Categorical.from_codes(
                np.tile(series.members[start], len(targets)), dtype=pd.CategoricalDtype(series.home(start).obs_names)
            ),
            "section": np.repeat(np.asarray(targets, dtype=np.int64), n),
            "partner": np.concatenate(partner_parts) if partner_parts else np.empty(0, dtype=object),
            "partner_index": index,
            "matched": index >= 0,
        }
    )


def traced_pair(data: Sequence[AnnData], i: int, j: int, *, key: str, keys: Sequence[str] | None = None) -> np.ndarray:
    """Partner in section ``j`` of every cell of section ``i`` (``-1``: none), through the consecutive matchings."""
    adatas = sections_of(data)
    i, j = check_sections([i, j], len(adatas), "pairs")
    return compose(adatas[i].n_obs, i, [j], _list_steps(adatas, pair_keys(len(adatas), keys, key)))[j]
