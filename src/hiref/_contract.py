"""The AnnData contract: what a tool writes, who owns it, and the one way it is written.

Every tool that writes results into an AnnData (``hr.tl.align``, ``align_series``, ``trace``,
``stack``, ``store_matching``, ``transfer``, ``transfer_labels``, ``bin_spatial``,
``hr.pp.register``) follows the same steps:

1. describe, per object, what it will write: a :class:`Writes` built from ``key_added``
   through :mod:`hiref._keys` (its ``.uns`` record, ``.obs`` columns, ``.obsm``/``.obsp``
   arrays);
2. call :func:`check_writable` **before computing**: every name is either absent or was
   written by hiref (listed in a record of the same tool), anything else is refused with one
   error naming each entry, and the object is left unchanged;
3. compute;
4. call :func:`write`: it removes the tool's own stale entries (listed in the old record but
   not written again), writes the new ones and records ``params`` through
   :func:`hiref._params.params_record`.

A record is recognised as the tool's own by its ``signature`` (fields every record of that
tool holds); the names it owns are those its record lists (``obs_key``, ``obs_keys``,
``obsm_keys``, ``obsp_keys``) and the ``implied`` ones, which every record of the tool comes
with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hiref._anndata import actualize
from hiref._keys import BinKeys, Keys, LabelKeys, RegisterKeys, SeriesKeys, StackKeys, TraceKeys, TransferKeys
from hiref._params import params_record

if TYPE_CHECKING:
    from anndata import AnnData

#: The slots of an AnnData a tool may write, besides its ``.uns`` record.
SLOTS = ("obs", "obsm", "obsp")
#: Fields of a record that list the names it owns, per slot (``obs_key``: records before ``obs_keys``).
LISTING_FIELDS = {"obs": ("obs_key", "obs_keys"), "obsm": ("obsm_keys",), "obsp": ("obsp_keys",)}

#: Fields that every record of :func:`hiref.tl.align` (and ``store_matching``, ``align_series`` pairs) holds.
ALIGNMENT_SIGNATURE = ("partner", "params")


@dataclass(frozen=True)
class Writes:
    """What one tool writes on one AnnData, every name derived from ``key`` through :mod:`hiref._keys`.

    Attributes
    ----------
    tool
        The tool's public name, for messages (``"hr.tl.align"``).
    key
        The ``key_added`` the names come from, for messages.
    uns
        ``.uns`` key of the tool's record (also read to tell which entries the tool owns).
    signature
        Fields every record of the tool holds: a record with all of them is the tool's own.
    obs, obsm, obsp
        Every name the call may write in that slot.
    implied
        ``(slot, name)`` pairs owned by any record of the tool, listed or not.
    listed
        Slots whose written names :func:`write` lists in the record (``"obs"`` -> ``obs_keys``), in
        the order of the description.
    record
        Whether the call writes its ``.uns`` record on this object (``False``: it only reads it).
    argument
        The argument that chose ``key``, named in the error.
    """

    tool: str
    key: str
    uns: str | None = None
    signature: tuple[str, ...] = ()
    obs: tuple[str, ...] = ()
    obsm: tuple[str, ...] = ()
    obsp: tuple[str, ...] = ()
    implied: tuple[tuple[str, str], ...] = ()
    listed: tuple[str, ...] = ()
    record: bool = True
    argument: str = "key_added"

    def names(self) -> list[tuple[str, str]]:
        """Every ``(slot, name)`` the call may write, the ``.uns`` record first."""
        out = [("uns", self.uns)] if self.uns is not None and self.record else []
        return out + [(slot, name) for slot in SLOTS for name in getattr(self, slot)]


def _as_names(value: object) -> list[str]:
    """The names in a listing field (a str, a list, or an array as read back from h5ad or zarr)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(np.asarray(value, dtype=object))]


def own_record(adata: AnnData, writes: Writes) -> Mapping | None:
    """``adata.uns[writes.uns]`` if it is a record of the tool (it holds every field of the signature)."""
    if writes.uns is None:
        return None
    entry = adata.uns.get(writes.uns)
    if isinstance(entry, Mapping) and all(field in entry for field in writes.signature):
        return entry
    return None


def owned(adata: AnnData, writes: Writes) -> set[tuple[str, str]]:
    """The ``(slot, name)`` entries of ``adata`` that the tool wrote: its record and what the record lists."""
    record = own_record(adata, writes)
    if record is None:
        return set()
    out = {("uns", str(writes.uns)), *writes.implied}
    for slot, fields in LISTING_FIELDS.items():
        out |= {(slot, name) for field in fields for name in _as_names(record.get(field))}
    return out


def _present(adata: AnnData, slot: str, name: str) -> bool:
    if slot == "obs":
        return name in adata.obs.columns
    return name in getattr(adata, slot)


def _equal(current: object, value: object) -> bool:
    try:
        return bool(np.array_equal(np.asarray(current), np.asarray(value)))
    except (TypeError, ValueError):
        return False


def clashes(adata: AnnData, writes: Writes, *, unchanged: Mapping[tuple[str, str], object] | None = None) -> list[str]:
    """The entries a call would overwrite that the tool did not write, as ``.slot['name']``.

    ``unchanged`` maps ``(slot, name)`` to a value known before computing: an entry already
    holding exactly that value loses nothing and is not a clash.
    """
    mine = owned(adata, writes)
    same = unchanged or {}
    out = []
    for slot, name in writes.names():
        if not _present(adata, slot, name) or (slot, name) in mine:
            continue
        if (slot, name) in same and _equal(getattr(adata, slot)[name], same[(slot, name)]):
            continue
        out.append(f".{slot}[{name!r}]")
    return out


def check_writable(
    adata: AnnData, writes: Writes, name: str, *, unchanged: Mapping[tuple[str, str], object] | None = None
) -> None:
    """Refuse the call if it would overwrite an entry of ``adata`` that the tool did not write.

    Run before computing; raises a ValueError naming the argument and every offending entry,
    and changes nothing. For several objects at once, see :func:`check_all_writable`.

    Parameters
    ----------
    adata
        The object to write into.
    writes
        What the call writes on it.
    name
        The object's name in messages (``"adata1"``, ``"data[2]"``).
    unchanged
        See :func:`clashes`.
    """
    check_all_writable([(adata, writes, name)], unchanged={name: unchanged} if unchanged else None)


def check_all_writable(
    targets: Sequence[tuple[AnnData, Writes, str]],
    *,
    unchanged: Mapping[str, Mapping[tuple[str, str], object]] | None = None,
) -> None:
    """:func:`check_writable` for every ``(adata, writes, name)`` of one call: one error naming every clash.

    ``unchanged`` maps an object's name to its :func:`clashes` ``unchanged``.
    """
    found = []
    for adata, writes, name in targets:
        entries = clashes(adata, writes, unchanged=(unchanged or {}).get(name))
        if entries:
            found.append((writes, f"{', '.join(entries)} of `{name}`"))
    if found:
        writes = found[0][0]
        msg = (
            f"`{writes.argument}`={writes.key!r} would overwrite {'; '.join(text for _, text in found)}, which "
            f"{writes.tool} did not write; pass another `{writes.argument}` (or remove those entries)."
        )
        raise ValueError(msg)


def write(
    adata: AnnData,
    writes: Writes,
    *,
    record: Mapping[str, Any] | None = None,
    params: Mapping[str, object] | None = None,
    obs: Mapping[str, object] | None = None,
    obsm: Mapping[str, object] | None = None,
    obsp: Mapping[str, object] | None = None,
) -> None:
    """Write a tool's results into ``adata`` (a view becomes an actual object), after :func:`check_writable`.

    Entries of an earlier call of the tool that this one does not write again are removed, so
    that the record lists exactly what is present.

    Parameters
    ----------
    adata
        The object.
    writes
        What the call writes (every name given below must be in it).
    record
        The ``.uns[writes.uns]`` record (``None``: none written).
    params
        Stored in the record as ``params``, through :func:`hiref._params.params_record`.
    obs, obsm, obsp
        Names to values.
    """
    new = {"obs": dict(obs or {}), "obsm": dict(obsm or {}), "obsp": dict(obsp or {})}
    allowed = set(writes.names())
    unknown = [f".{slot}[{name!r}]" for slot, values in new.items() for name in values if (slot, name) not in allowed]
    if unknown or (record is not None and not writes.record):
        msg = f"{writes.tool} writes {unknown or '.uns'} which its description does not list."
        raise RuntimeError(msg)
    actualize(adata)
    rewritten = {(slot, name) for slot, values in new.items() for name in values}
    for slot, name in owned(adata, writes) - rewritten:
        if slot != "uns" and _present(adata, slot, name):
            del getattr(adata, slot)[name]
    if record is not None:
        entry = dict(record)
        if params is not None:
            entry["params"] = params_record(params)
        for slot in writes.listed:  # in the order of the description
            entry[f"{slot}_keys"] = [name for name in getattr(writes, slot) if name in new[slot]]
        adata.uns[writes.uns] = entry
    for slot, values in new.items():
        for name, value in values.items():
            getattr(adata, slot)[name] = value


# ------------------------------------------------------------------ the descriptions of hiref's tools


def alignment_writes(
    key: str,
    *,
    spatial: bool,
    pca: bool = False,
    labels: bool = True,
    quality: bool = True,
    tool: str = "hr.tl.align",
) -> Writes:
    """What :func:`hiref.tl.align` (or ``store_matching``, or a pair of ``align_series``) writes on one object.

    Parameters
    ----------
    key
        The alignment's ``key_added``.
    spatial
        Both objects have coordinates: the partner's coordinates (and, with ``quality``, the
        confidence) are written.
    pca
        A joint PCA may be computed and stored.
    labels
        The co-clusters of every level are written.
    quality
        The per-cell cost (and confidence) columns are written.
    tool
        The tool's public name, for messages.
    """
    keys = Keys(key)
    obs = (keys.match, *((keys.confidence,) if quality and spatial else ()), *((keys.cost,) if quality else ()))
    obsm = (*((keys.labels,) if labels else ()), *((keys.partner_spatial,) if spatial else ()),
            *((keys.pca,) if pca else ()))  # fmt: skip
    return Writes(
        tool=tool, key=key, uns=keys.uns, signature=ALIGNMENT_SIGNATURE, obs=obs, obsm=obsm,
        implied=(("obs", keys.match),), listed=("obs", "obsm"),
    )  # fmt: skip


def series_writes(key: str) -> Writes:
    """What :func:`hiref.tl.align_series` writes on one AnnData holding every time point."""
    keys = SeriesKeys(key)
    return Writes(
        tool="hr.tl.align_series", key=key, uns=keys.uns, signature=("time_key", "order", "pairs"),
        obs=(keys.next, keys.prev), implied=(("obs", keys.next), ("obs", keys.prev)),
    )  # fmt: skip


def trace_writes(key: str, sections: list[int]) -> Writes:
    """What :func:`hiref.tl.trace` writes on the start section (one column per target section)."""
    keys = TraceKeys(key)
    obs = tuple(keys.partner(j) for j in sections)
    return Writes(tool="hr.tl.trace", key=key, uns=keys.uns, signature=("obs_keys", "start"), obs=obs, listed=("obs",))


def stack_writes(key: str) -> Writes:
    """What :func:`hiref.tl.stack` writes on every section."""
    keys = StackKeys(key)
    return Writes(
        tool="hr.tl.stack", key=key, uns=keys.uns, signature=("section", "rotation"), obsm=(keys.obsm,),
        implied=(("obsm", keys.obsm),),
    )  # fmt: skip


def register_writes(key: str, *, moving: bool) -> Writes:
    """What :func:`hiref.pp.register` writes on the moving slice (``moving``) or on the reference.

    The reference gets the registered coordinates only (its own); they count as hiref's if it
    holds a record of an earlier registration as the moving slice.
    """
    keys = RegisterKeys(key)
    return Writes(
        tool="hr.pp.register", key=key, uns=keys.uns, signature=("rotation", "translation", "decision"),
        obsm=(keys.obsm,), implied=(("obsm", keys.obsm),), record=moving,
    )  # fmt: skip


def transfer_writes(key: str, *, columns: tuple[str, ...], spatial_key: str | None) -> Writes:
    """What :func:`hiref.tl.transfer` writes on the AnnData it returns (``columns``: the carried ``.obs``)."""
    keys = TransferKeys(key)
    return Writes(
        tool="hr.tl.transfer", key=key, uns=keys.uns, obs=(keys.matched, keys.source, *columns),
        obsm=(spatial_key,) if spatial_key is not None else (), argument="key",
    )  # fmt: skip


def label_writes(key: str) -> Writes:
    """What :func:`hiref.tl.transfer_labels` writes on the target."""
    keys = LabelKeys(key)
    return Writes(
        tool="hr.tl.transfer_labels", key=key, uns=keys.uns, signature=("label", "alignment", "n_neighbors"),
        obs=(keys.obs, keys.agreement), listed=("obs",),
    )  # fmt: skip


def bin_writes() -> Writes:
    """What :func:`hiref.tl.bin_spatial` writes on the AnnData it returns."""
    return Writes(
        tool="hr.tl.bin_spatial", key=BinKeys.uns, uns=BinKeys.uns, obs=(BinKeys.bin_x, BinKeys.bin_y, BinKeys.n_cells),
        obsm=(BinKeys.spatial,),
    )  # fmt: skip
