"""``hr.tl.align_series`` and ``hr.tl.transitions``: consecutive time points or slices."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hiref._anndata import check_adata
from hiref._contract import check_all_writable, check_writable, series_writes, write
from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY, SeriesKeys
from hiref._logging import logger
from hiref._spatialdata import call as spatialdata_call
from hiref._spatialdata import given as spatialdata_given
from hiref.engine.checks import check_seed
from hiref.get._matching import partners
from hiref.get._series import stored_series

from ._align import AlignRequest, compute_alignment, write_alignment

if TYPE_CHECKING:
    from anndata import AnnData


def _stages(adata: AnnData, time_key: str, order: Sequence | None) -> list:
    if time_key not in adata.obs.columns:
        msg = f"`time_key` {time_key!r} is not a column of adata.obs (available: {list(adata.obs.columns)})."
        raise KeyError(msg)
    column = adata.obs[time_key]
    present = list(column.cat.categories) if isinstance(column.dtype, pd.CategoricalDtype) else sorted(column.unique())
    present = [s for s in present if (column == s).any()]
    stages = present if order is None else list(order)
    missing = [s for s in stages if not (column == s).any()]
    if missing:
        msg = f"`order` names stages with no cells in adata.obs[{time_key!r}]: {missing} (present: {present})."
        raise ValueError(msg)
    if len(stages) < 2:
        msg = f"need at least two stages in adata.obs[{time_key!r}] to align a series, got {stages}."
        raise ValueError(msg)
    return stages


@doc_params(**DOC)
def align_series(
    data: Sequence[AnnData] | AnnData,
    *,
    time_key: str | None = None,
    order: Sequence | None = None,
    key_added: str = ALIGN_KEY,
    table_key: str | list[str] | None = None,
    coordinate_system: str = "global",
    **align_options: Any,
) -> list[str] | None:
    """Align consecutive time points (or slices) of a series.

    Parameters
    ----------
    data
        Either a list of AnnData objects in order (e.g. one per embryo stage), or one AnnData
        holding every time point, told apart by ``.obs[time_key]``.
    time_key
        With one AnnData: the ``.obs`` column of the time point.
    order
        With one AnnData: the time points in order (default: the categories' order, or sorted).
    key_added
        Name of the results (see Returns).
    {spatialdata}
    **align_options
        Passed to :func:`hiref.tl.align` (``use_rep``, ``cost``, ``refine``, ...). ``use_rep``
        defaults to ``"X_pca"`` here: stages of a time course share no coordinate frame, so
        they are matched on expression alone.

    Returns
    -------
    For a list: the keys written, one per consecutive pair ``i, i + 1``:
    ``f"{{key_added}}_{{i}}_{{i+1}}"``, each a full :func:`hiref.tl.align` result on both objects of
    the pair. For one AnnData: ``None``; it gets ``.obs[f"{{key_added}}_next"]`` and
    ``.obs[f"{{key_added}}_prev"]`` (the partner's obs name in the next and previous time point)
    and ``.uns[key_added]`` (``time_key``, ``order``, and per pair its cost, number of matched
    cells and runtime). Every pair is computed before anything is written.
    """
    if spatialdata_given(data):
        return spatialdata_call(align_series, locals())
    for forbidden in ("copy", "key_added"):
        if forbidden in align_options:
            msg = f"`{forbidden}` cannot be passed to align_series."
            raise TypeError(msg)
    if "random_state" in align_options:  # one drawn seed for every pair, recorded as given to each
        align_options["random_state"] = check_seed(align_options["random_state"], "random_state")
    align_options.setdefault("use_rep", "X_pca")
    if isinstance(data, Sequence) and not isinstance(data, str):
        adatas = list(data)
        if len(adatas) < 2:
            msg = f"`data` must hold at least two AnnData objects, got {len(adatas)}."
            raise ValueError(msg)
        for i, adata in enumerate(adatas):
            check_adata(adata, f"data[{i}]")
        keys = [SeriesKeys(key_added).pair(i) for i in range(len(adatas) - 1)]
        requests = [AlignRequest.from_options(key_added=key, **align_options) for key in keys]
        targets = []  # every pair is checked before any is computed
        for i, request in enumerate(requests):
            writes = request.writes(adatas[i], adatas[i + 1])
            targets += [(adatas[i], writes, f"data[{i}]"), (adatas[i + 1], writes, f"data[{i + 1}]")]
        check_all_writable(targets)
        sides = [compute_alignment(adatas[i], adatas[i + 1], r, check=False) for i, r in enumerate(requests)]
        for i, (first, second) in enumerate(sides):
            write_alignment(adatas[i], first)
            write_alignment(adatas[i + 1], second)
        return keys

    adata = check_adata(data, "data")
    if time_key is None:
        msg = "`time_key` is required when `data` is a single AnnData."
        raise ValueError(msg)
    stages = _stages(adata, time_key, order)
    request = AlignRequest.from_options(key_added="pair", **align_options)
    check_writable(adata, series_writes(key_added), "data")
    _align_stages(adata, time_key, stages, SeriesKeys(key_added), (request, align_options))
    return None


def _align_stages(
    adata: AnnData, time_key: str, stages: list, keys: SeriesKeys, options: tuple[AlignRequest, dict]
) -> None:
    """Align consecutive stages of one AnnData, then write the partners and a summary (see :func:`align_series`)."""
    request, align_options = options
    column = adata.obs[time_key]
    subsets = [adata[(column == s).to_numpy()].copy() for s in stages]
    next_name = pd.Series(pd.NA, index=adata.obs_names, dtype="object")
    prev_name = pd.Series(pd.NA, index=adata.obs_names, dtype="object")
    pairs = {}
    for i in range(len(stages) - 1):
        first, second = compute_alignment(subsets[i], subsets[i + 1], request, check=False)  # our own copies
        for side, subset, target in ((first, subsets[i], next_name), (second, subsets[i + 1], prev_name)):
            names = side.column.astype(object)
            target.loc[subset.obs_names] = np.where(pd.isna(names), pd.NA, names)
        pairs[str(i)] = {
            "from": str(stages[i]),
            "to": str(stages[i + 1]),
            "cost": first.record["cost"],
            "n_matched": first.record["n_matched"],
            "runtime": first.record["runtime"],
        }
        logger.info("aligned %s -> %s", stages[i], stages[i + 1])
    record = {"time_key": time_key, "order": [str(s) for s in stages], "pairs": pairs}
    partners_of = {keys.next: pd.Categorical(next_name.to_numpy()), keys.prev: pd.Categorical(prev_name.to_numpy())}
    write(adata, series_writes(keys.key), record=record, params=align_options, obs=partners_of)


def transitions(
    data: Sequence[AnnData] | AnnData,
    *,
    obs: str,
    key: str = ALIGN_KEY,
    normalize: bool = True,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Cell-type transitions between consecutive time points, from an aligned series.

    For every pair of consecutive time points, counts how the cells of each type (``.obs[obs]``)
    of the earlier one are matched to the types of the later one.

    Parameters
    ----------
    data
        What :func:`hiref.tl.align_series` aligned: the list of AnnData, or the one AnnData.
    obs
        Categorical ``.obs`` column of the cell types (in every object).
    key
        The ``key_added`` of :func:`hiref.tl.align_series`.
    normalize
        Fractions of each earlier type (rows sum to 1) instead of counts.
    pairs
        The sections ``(i, j)`` to compare, any two (``(0, 3)``, or ``(3, 0)``
        backwards), through the composed consecutive matchings (see :func:`hiref.tl.trace`;
        cells whose chain breaks on the way are left out); for one AnnData, positions of its
        time points in the series' order. Default: the consecutive pairs.

    Returns
    -------
    One DataFrame per pair (consecutive, or of ``pairs``), keyed ``"<earlier> -> <later>"`` (the stage names, or
    the list positions): rows are the earlier types, columns the later ones. Writes nothing.
    """
    tables = {}
    if isinstance(data, Sequence) and not isinstance(data, str):
        adatas = list(data)
        if pairs is not None:
            return _traced_tables(adatas, pairs, obs=obs, key=key, normalize=normalize)
        for i in range(len(adatas) - 1):
            k = SeriesKeys(key).pair(i)
            for j in (i, i + 1):
                _column(adatas[j], obs, f"data[{j}]")
            perm = partners(adatas[i], adatas[i + 1], k, name=f"data[{i}]", other_name=f"data[{i + 1}]")
            matched = perm >= 0
            early = adatas[i].obs[obs].to_numpy()[matched]
            late = adatas[i + 1].obs[obs].to_numpy()[perm[matched]]
            tables[f"{i} -> {i + 1}"] = _table(early, late, normalize, obs)
        return tables
    adata = check_adata(data, "data")
    if pairs is not None:
        return _traced_tables(adata, pairs, obs=obs, key=key, normalize=normalize)
    info = stored_series(adata, key)
    column = _column(adata, obs, "data")
    time = adata.obs[info["time_key"]].astype(str)
    nxt = adata.obs[SeriesKeys(key).next]
    position = pd.Series(np.arange(adata.n_obs), index=adata.obs_names)
    order = list(info["order"])
    for a, b in itertools.pairwise(order):
        cells = (time == a).to_numpy() & nxt.notna().to_numpy()
        late = column.to_numpy()[position.loc[nxt[cells].astype(str)].to_numpy()]
        tables[f"{a} -> {b}"] = _table(column.to_numpy()[cells], late, normalize, obs)
    return tables


def _traced_tables(
    data: list[AnnData] | AnnData, pairs: Sequence[tuple[int, int]], *, obs: str, key: str, normalize: bool
) -> dict[str, pd.DataFrame]:
    from ._trace import check_sections, compose, single_series, traced_pair

    if (
        isinstance(pairs, str)
        or not isinstance(pairs, Sequence)
        or not all(isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in pairs)
    ):
        msg = f"`pairs` must be a list of (i, j) section positions, got {pairs!r}."
        raise TypeError(msg)
    tables = {}
    if not isinstance(data, list):  # one AnnData: the time points of its stored series
        order, members, step_of = single_series(data, key)
        column = _column(data, obs, "data").to_numpy()
        for pair in pairs:
            i, j = check_sections(list(pair), len(order), "pairs")
            perm = compose(len(members[i]), i, [j], step_of)[j]
            matched = perm >= 0
            early, late = column[members[i][matched]], column[members[j][perm[matched]]]
            tables[f"{order[i]} -> {order[j]}"] = _table(early, late, normalize, obs)
        return tables
    adatas = data
    for pair in pairs:
        i, j = check_sections(list(pair), len(adatas), "pairs")
        perm = traced_pair(adatas, i, j, key=key)
        early_col = _column(adatas[i], obs, f"data[{i}]").to_numpy()
        late_col = _column(adatas[j], obs, f"data[{j}]").to_numpy()
        matched = perm >= 0
        tables[f"{i} -> {j}"] = _table(early_col[matched], late_col[perm[matched]], normalize, obs)
    return tables


def _column(adata: AnnData, obs: str, name: str) -> pd.Series:
    if obs not in adata.obs.columns:
        msg = f"`obs` {obs!r} is not a column of {name}.obs (available: {list(adata.obs.columns)})."
        raise KeyError(msg)
    return adata.obs[obs]


def _table(early: np.ndarray, late: np.ndarray, normalize: bool, obs: str) -> pd.DataFrame:  # noqa: FBT001
    table = pd.crosstab(pd.Series(early, name=f"{obs} (earlier)"), pd.Series(late, name=f"{obs} (later)"), dropna=False)
    if normalize:
        table = table.div(table.sum(1).replace(0, np.nan), axis=0).fillna(0.0)
    return table
