"""The one way hiref stores ``adata.uns[...]["params"]`` (and other small records), and reads it back.

Every value is turned into a type that ``write_h5ad`` and ``write_zarr`` store and read back
unchanged, by one rule per kind of value (see :func:`h5ad_value`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

#: What an unset value (``None``) is stored as: anndata before 0.12 cannot write ``None``.
UNSET = ""


def _jsonable(value: object) -> object:
    """``value`` with numpy scalars and arrays made plain Python, for :func:`json.dumps`."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _sequence(value: list | tuple | np.ndarray) -> np.ndarray | list[str] | str:
    """A list, tuple or array: numbers/bools as an array, strings as a list of str, else JSON."""
    items = list(value) if not isinstance(value, np.ndarray) else value
    if all(isinstance(v, str | np.str_) for v in items) and (len(items) or not isinstance(value, np.ndarray)):
        return [str(v) for v in items]
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return array.astype(bool)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        return array.astype(np.float64)
    return json.dumps(_jsonable(value), default=str)


def h5ad_value(value: object) -> Any:
    """``value`` as stored in a ``params`` record.

    Parameters
    ----------
    value
        Anything given to a tool.

    Returns
    -------
    ``None``
        :data:`UNSET` (``""``).
    bool, int, float, str (numpy scalars too)
        The plain Python scalar.
    list, tuple, numpy array
        Of bools or numbers: a numpy array (bool, int64 or float64); of strings: a list of str;
        of anything else (mixed, nested): a JSON string.
    mapping
        A JSON string (keys as strings, numpy values made plain, anything else by ``str``), so
        that a record stays a flat mapping of names to scalars and arrays and reads back the
        same from h5ad and zarr; :func:`read_params` decodes it.
    anything else (a callable cost, an object)
        ``str(value)``.
    """
    if value is None:
        return UNSET
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps(_jsonable(value), default=str)
    if isinstance(value, list | tuple | np.ndarray):
        return _sequence(value)
    return str(value)


def params_record(params: Mapping[str, object]) -> dict[str, Any]:
    """The ``params`` entry to store for ``params``, every value converted by :func:`h5ad_value`.

    Parameters
    ----------
    params
        Names of the parameters to the values used.

    Returns
    -------
    A new dict with string keys and h5ad/zarr-safe values.
    """
    return {str(name): h5ad_value(value) for name, value in params.items()}


def _decoded(value: object) -> object:
    if isinstance(value, str):
        if value == UNSET:
            return None
        if value[:1] in "{[":
            try:
                return json.loads(value)
            except ValueError:
                return value
    return value


def read_params(params: Mapping[str, object] | None) -> dict[str, Any]:
    """A stored ``params`` record with :func:`h5ad_value`'s encodings undone where they can be.

    ``""`` becomes ``None`` and JSON objects/lists become dicts/lists; arrays and scalars are
    returned as read. Records written by older hiref versions (JSON strings, ``str()`` values)
    read the same way.

    Parameters
    ----------
    params
        ``adata.uns[key]["params"]`` (``None`` or missing: an empty record).

    Returns
    -------
    A new dict.
    """
    if not isinstance(params, Mapping):
        return {}
    return {str(name): _decoded(value) for name, value in params.items()}
