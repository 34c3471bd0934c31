"""SpatialData in and out: :func:`hiref.pp.register`, :func:`hiref.tl.align` and :func:`hiref.tl.align_series`.

Each of those functions hands a call that holds a ``SpatialData`` object to :func:`call`, which

1. finds the table of every SpatialData (``table_key``) and the position of each of its rows
   in ``coordinate_system``, read from the element the row annotates (the centre of a circle,
   the centroid of a polygon or of a label, the point itself), never from a stored ``.obsm``;
2. builds a working AnnData per table that shares the table's data and entries, with those
   positions as ``.obsm[spatial_key]``;
3. calls the same function on the working AnnData objects, so the AnnData contract
   (:mod:`hiref._contract`) checks and writes exactly as on AnnData;
4. copies what that call wrote back into the tables, and adds to each record it wrote a
   ``spatialdata`` entry (table, coordinate system, annotated elements);
5. for ``register``: sets the motion as a transformation of the moving section's elements into
   a new coordinate system (``coordinate_system_added``), and the reference's own
   transformation into it, so that both sections overlay there.

Every check is done before step 3, and step 3 writes nothing when it fails, so an error leaves
the objects unchanged. spatialdata is imported only here and only when a SpatialData object is
given: ``import hiref`` does not import it.
"""

from __future__ import annotations

import copy as copy_module
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np

from hiref._contract import own_record, register_writes

if TYPE_CHECKING:
    from anndata import AnnData

#: The oldest spatialdata hiref works with (the ``spatialdata`` extra's pin).
MIN_VERSION = (0, 7)
#: How to install it, for messages.
INSTALL = 'pip install "hiref[spatialdata]"'
#: The entry added to every ``.uns`` record written through a SpatialData object.
RECORD_FIELD = "spatialdata"
#: Spatial axes of the transformations hiref writes.
AXES = ("x", "y")


def is_spatialdata(obj: object) -> bool:
    """Whether ``obj`` is a ``spatialdata.SpatialData`` (told by its class, without importing spatialdata)."""
    return any(
        cls.__name__ == "SpatialData" and cls.__module__.split(".")[0] == "spatialdata" for cls in type(obj).__mro__
    )


def given(*objs: object) -> bool:
    """Whether any of ``objs`` (or of the items of a list or tuple among them) is a SpatialData object."""
    for obj in objs:
        items = obj if isinstance(obj, list | tuple) else [obj]
        if any(is_spatialdata(item) for item in items):
            return True
    return False


def require() -> Any:
    """The ``spatialdata`` module, or an ImportError naming the extra to install."""
    try:
        module = import_module("spatialdata")
        found = version("spatialdata")
    except (ImportError, PackageNotFoundError) as err:
        msg = f"SpatialData objects need the spatialdata package: {INSTALL}."
        raise ImportError(msg) from err
    parts = tuple(int(p) for p in found.split(".")[:2] if p.isdigit())
    if parts < MIN_VERSION:
        msg = f"SpatialData objects need spatialdata >= {'.'.join(map(str, MIN_VERSION))}, found {found}: {INSTALL}."
        raise ImportError(msg)
    return module


@dataclass
class Section:
    """One SpatialData object of a call: its table, the table's working AnnData, and where positions came from."""

    sdata: Any
    name: str
    table_key: str
    table: AnnData
    work: AnnData
    region: list[str]
    spatial_key: str | None

    def describe(self, coordinate_system: str) -> dict:
        """The ``spatialdata`` entry of the records written on this table."""
        return {"table_key": self.table_key, "coordinate_system": coordinate_system, "region": list(self.region)}


def _table_key(sdata: Any, name: str, table_key: object) -> str:
    """The name of the table of ``sdata`` to use: ``table_key``, or its only table."""
    tables = list(sdata.tables.keys())
    if table_key is None:
        if len(tables) == 1:
            return tables[0]
        msg = (
            f"`{name}` holds {len(tables)} tables ({tables}); pass `table_key=` to choose one."
            if tables
            else f"`{name}` holds no table; add one annotating its spots or cells (spatialdata.models.TableModel)."
        )
        raise ValueError(msg)
    if not isinstance(table_key, str) or table_key not in tables:
        msg = f"`table_key`={table_key!r} is not a table of `{name}` (its tables: {tables})."
        raise KeyError(msg)
    return table_key


def _annotated(sdata: Any, name: str, key: str) -> tuple[list[str], str, str]:
    """The elements the table ``key`` of ``sdata`` annotates, its region column and its instance column."""
    from spatialdata.models import TableModel

    attrs = sdata.tables[key].uns.get(TableModel.ATTRS_KEY)
    region = attrs.get(TableModel.REGION_KEY) if isinstance(attrs, Mapping) else None
    if region is None or len(np.atleast_1d(region)) == 0:
        msg = (
            f"`table_key`={key!r}: the table of `{name}` annotates no element (its .uns['spatialdata_attrs'] names "
            "no region), so its cells have no position; link it with spatialdata.models.TableModel.parse(table, "
            "region=..., region_key=..., instance_key=...) or pass another `table_key`."
        )
        raise ValueError(msg)
    regions = [str(r) for r in np.atleast_1d(region)]
    elements = [element_name for _, element_name, _ in sdata.gen_spatial_elements()]
    missing = [r for r in regions if r not in elements]
    if missing:
        msg = (
            f"`table_key`={key!r}: the table of `{name}` annotates {missing}, which `{name}` does not hold (its "
            f"elements: {elements}); pass another `table_key` or add the element."
        )
        raise ValueError(msg)
    return regions, str(attrs[TableModel.REGION_KEY_KEY]), str(attrs[TableModel.INSTANCE_KEY])


def _systems(element: Any) -> dict:
    from spatialdata.transformations import get_transformation

    return get_transformation(element, get_all=True)


def _check_system(sdata: Any, name: str, elements: Sequence[str], coordinate_system: object) -> None:
    """Raise a ValueError naming ``coordinate_system`` unless every element of ``elements`` is in it."""
    for element in elements:
        systems = sorted(_systems(sdata[element]))
        if not isinstance(coordinate_system, str) or coordinate_system not in systems:
            msg = (
                f"`coordinate_system`={coordinate_system!r} is not a coordinate system of {element!r} in `{name}` "
                f"(its coordinate systems: {systems})."
            )
            raise ValueError(msg)


def _positions(sdata: Any, name: str, table: AnnData, annotated: tuple, coordinate_system: str) -> np.ndarray:
    """(n_obs, 2) positions of the table's rows in ``coordinate_system``, from the elements they annotate."""
    spatialdata = require()
    regions, region_key, instance_key = annotated
    out = np.full((table.n_obs, 2), np.nan)
    region_of = table.obs[region_key].astype(str).to_numpy()
    instances = table.obs[instance_key].to_numpy()
    for element in regions:
        rows = np.flatnonzero(region_of == element)
        centres = spatialdata.get_centroids(sdata[element], coordinate_system=coordinate_system).compute()
        found = centres.reindex(instances[rows])
        absent = found.index[found["x"].isna()].unique()
        if len(absent):
            msg = (
                f"{len(absent)} row(s) of the table of `{name}` annotate instances that {element!r} does not hold, "
                f"e.g. {instance_key}={list(absent[:3])}."
            )
            raise ValueError(msg)
        out[rows] = found[list(AXES)].to_numpy(dtype=np.float64)
    unplaced = int(np.isnan(out[:, 0]).sum())
    if unplaced:
        msg = (
            f"{unplaced} row(s) of the table of `{name}` annotate none of its regions {regions} (.obs[{region_key!r}])."
        )
        raise ValueError(msg)
    return out


def _working(table: AnnData, spatial_key: str | None, positions: np.ndarray | None) -> AnnData:
    """An AnnData sharing the table's data and entries (not its ``.obs`` frame), with the positions added."""
    from anndata import AnnData

    obsm = dict(table.obsm)
    if spatial_key is not None and positions is not None:
        obsm[spatial_key] = positions
    return AnnData(
        X=table.X, obs=table.obs.copy(), var=table.var, uns=dict(table.uns), obsm=obsm, obsp=dict(table.obsp),
        layers=dict(table.layers), varm=dict(table.varm), varp=dict(table.varp),
    )  # fmt: skip


def _section(sdata: Any, name: str, table_key: object, coordinate_system: object, spatial_key: str | None) -> Section:
    """Check one SpatialData object of a call and build its table's working AnnData."""
    key = _table_key(sdata, name, table_key)
    table = sdata.tables[key]
    annotated = _annotated(sdata, name, key)
    positions = None
    if spatial_key is not None:
        _check_system(sdata, name, annotated[0], coordinate_system)
        positions = _positions(sdata, name, table, annotated, str(coordinate_system))
    return Section(sdata, name, key, table, _working(table, spatial_key, positions), annotated[0], spatial_key)


def _copy_back(section: Section, coordinate_system: str) -> None:
    """Write into the table what the call wrote into its working AnnData (the positions excepted)."""
    table, work = section.table, section.work
    written = []
    for slot in ("uns", "obsm", "obsp"):
        old, new = getattr(table, slot), getattr(work, slot)
        for name in [n for n in old if n not in new]:
            del old[name]
        for name, value in new.items():
            if slot == "obsm" and name == section.spatial_key:
                continue
            if name not in old or old[name] is not value:
                old[name] = value
                written.append((slot, name))
    for name in [c for c in table.obs.columns if c not in work.obs.columns]:
        del table.obs[name]
    for name in work.obs.columns:
        if name not in table.obs.columns or not table.obs[name].equals(work.obs[name]):
            table.obs[name] = work.obs[name]
    for slot, name in written:
        if slot == "uns" and isinstance(table.uns[name], Mapping):
            table.uns[name] = {**table.uns[name], RECORD_FIELD: section.describe(coordinate_system)}


# ------------------------------------------------------------------ register: the new coordinate system


def _matrix(transformation: Any) -> np.ndarray:
    return np.asarray(transformation.to_affine_matrix(input_axes=AXES, output_axes=AXES), dtype=np.float64)


def _recorded(table: AnnData, key_added: str) -> Mapping:
    """The ``spatialdata`` entry of the table's record of an earlier :func:`hiref.pp.register` under ``key_added``."""
    record = own_record(table, register_writes(key_added, moving=True))
    entry = record.get(RECORD_FIELD) if record is not None else None
    return entry if isinstance(entry, Mapping) else {}


def _check_added(ref: Section | None, mov: Section | None, options: dict, coordinate_system: str) -> str:
    """Check ``coordinate_system_added`` of :func:`hiref.pp.register`: the name, and that it is free or hiref's."""
    added = options["coordinate_system_added"]
    if not isinstance(added, str) or not added or added == coordinate_system:
        msg = (
            f"`coordinate_system_added` must be a non-empty string other than `coordinate_system` "
            f"({coordinate_system!r}), got {added!r}."
        )
        raise ValueError(msg)
    if ref is not None and mov is not None and ref.sdata is mov.sdata:
        msg = "`adata_ref` and `adata_mov` are the same SpatialData object; pass one SpatialData per section."
        raise ValueError(msg)
    clashes = []
    for section, moving in ((ref, False), (mov, True)):
        if section is None:
            continue
        ours = _recorded(section.table, options["key_added"]).get("coordinate_system_added") == added
        for _, element_name, element in section.sdata.gen_spatial_elements():
            systems = _systems(element)
            if added not in systems or ours:
                continue
            same = not moving and coordinate_system in systems
            if not (same and np.allclose(_matrix(systems[added]), _matrix(systems[coordinate_system]))):
                clashes.append(f"{element_name!r} of `{section.name}`")
    if clashes:
        msg = (
            f"`coordinate_system_added`={added!r} would replace the transformation of {', '.join(clashes)} into it, "
            "which hr.pp.register did not set; pass another `coordinate_system_added` (or remove it)."
        )
        raise ValueError(msg)
    return added


def _set_transformations(section: Section, motion: np.ndarray | None, coordinate_system: str, added: str) -> list:
    """Set every element's transformation into ``added``: into ``coordinate_system``, then ``motion`` (if any).

    Elements not in ``coordinate_system`` lose a transformation into ``added`` (an earlier
    registration's). Returns the names of the elements set.
    """
    from spatialdata.transformations import Affine, remove_transformation, set_transformation
    from spatialdata.transformations import Sequence as Chain

    done = []
    for _, element_name, element in section.sdata.gen_spatial_elements():
        systems = _systems(element)
        if coordinate_system not in systems:
            if added in systems:
                remove_transformation(element, added)
            continue
        base = copy_module.deepcopy(systems[coordinate_system])
        value = base if motion is None else Chain([base, Affine(motion, input_axes=AXES, output_axes=AXES)])
        set_transformation(element, value, to_coordinate_system=added)
        done.append(element_name)
    return done


def _motion(table: AnnData, key_added: str) -> np.ndarray:
    """The registration of the moving table as a 3 x 3 affine matrix (``registered = R @ x + t``)."""
    record = table.uns[key_added]
    matrix = np.eye(3)
    matrix[:2, :2] = np.asarray(record["rotation"], dtype=np.float64)
    matrix[:2, 2] = np.asarray(record["translation"], dtype=np.float64)
    return matrix


def _add_system(ref: Section | None, mov: Section | None, motion: np.ndarray, key_added: str, systems: tuple) -> None:
    """Give both sections' elements their transformation into the added system; record it on the moving table."""
    coordinate_system, added = systems
    if ref is not None:
        _set_transformations(ref, None, coordinate_system, added)
    if mov is not None:
        moved = _set_transformations(mov, motion, coordinate_system, added)
        entry = {**mov.describe(coordinate_system), "coordinate_system_added": added, "transformed": moved}
        mov.table.uns[key_added] = {**mov.table.uns[key_added], RECORD_FIELD: entry}


# ------------------------------------------------------------------ the dispatch


def _data_parameters(func: Callable) -> list[str]:
    """The parameters of ``func`` that take the data (those before the keyword-only ones)."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(func).parameters.values() if p.kind in kinds]


def _per_object(table_key: object, n: int) -> list:
    """``table_key`` for each of ``n`` objects: the same one, or one per object in a list or tuple."""
    if isinstance(table_key, list | tuple):
        if len(table_key) != n:
            msg = f"`table_key` must be a table name, or one per object ({n}), got {table_key!r}."
            raise ValueError(msg)
        return list(table_key)
    return [table_key] * n


def _copied(obj: Any) -> Any:
    if is_spatialdata(obj):
        return require().deepcopy(obj)
    return obj.copy()


def call(func: Callable, arguments: dict) -> Any:
    """Run ``func`` (register, align or align_series) on a call holding SpatialData objects (see the module).

    Parameters
    ----------
    func
        The public function on AnnData.
    arguments
        Its arguments as bound (``locals()`` at its top): the data, ``table_key``,
        ``coordinate_system``, and its other options (a ``**`` catch-all as a dict).

    Returns
    -------
    What ``func`` returns; with ``copy=True``, the copies of the objects given.
    """
    require()
    options = dict(arguments)
    names = _data_parameters(func)
    data = {name: options.pop(name) for name in names}
    variadic = [p.name for p in inspect.signature(func).parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    for name in variadic:
        options.update(options.pop(name))
    table_key, coordinate_system = options.pop("table_key"), options.pop("coordinate_system")
    spatial_key = options.get("spatial_key", "spatial")
    copy = options.get("copy", False) is True
    if copy:
        data = {
            name: [_copied(o) for o in v] if isinstance(v, list | tuple) else _copied(v) for name, v in data.items()
        }
        options["copy"] = False

    flat = [(f"{name}[{i}]", obj) for name, value in data.items() if isinstance(value, list | tuple)
            for i, obj in enumerate(value)]  # fmt: skip
    flat += [(name, value) for name, value in data.items() if not isinstance(value, list | tuple)]
    keys = _per_object(table_key, len(flat))
    sections = {
        label: _section(obj, label, key, coordinate_system, spatial_key)
        for (label, obj), key in zip(flat, keys, strict=True)
        if is_spatialdata(obj)
    }
    registering = "coordinate_system_added" in options
    if registering:
        added = _check_added(sections.get(names[0]), sections.get(names[1]), options, str(coordinate_system))
        options.pop("coordinate_system_added")

    def working(label: str, obj: Any) -> Any:
        return sections[label].work if label in sections else obj

    inputs = {
        name: [working(f"{name}[{i}]", o) for i, o in enumerate(value)] if isinstance(value, list | tuple)
        else working(name, value)
        for name, value in data.items()
    }  # fmt: skip
    result = func(*inputs.values(), table_key=None, coordinate_system=coordinate_system, **options)
    for section in sections.values():
        _copy_back(section, str(coordinate_system))
    if registering:
        moving = sections.get(names[1])
        motion = _motion(moving.table if moving else data[names[1]], options["key_added"])
        _add_system(sections.get(names[0]), moving, motion, options["key_added"], (str(coordinate_system), added))
    if copy:
        return tuple(data.values())
    return result
