"""Checks and readers shared by the AnnData-facing functions (``hr.pp``, ``hr.tl``, ``hr.pl``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData


def check_adata(adata: object, name: str) -> AnnData:
    """Return ``adata`` after checking it is an AnnData with unique obs names."""
    from anndata import AnnData

    if not isinstance(adata, AnnData):
        msg = f"`{name}` must be an AnnData, got {type(adata).__name__}."
        if type(adata).__name__ == "SpatialData":
            msg += f" Pass its table (`{name}.tables[...]`); register, align and align_series take SpatialData."
        raise TypeError(msg)
    if adata.n_obs == 0:
        msg = f"`{name}` has no observations (cells)."
        raise ValueError(msg)
    if not adata.obs_names.is_unique:
        dup = adata.obs_names[adata.obs_names.duplicated()][:3].tolist()
        msg = (
            f"`{name}` has duplicated obs_names (e.g. {dup}); matches are stored by name, so they must be "
            f"unique: call `{name}.obs_names_make_unique()` first."
        )
        raise ValueError(msg)
    return adata


def check_in_memory(adata: AnnData, name: str) -> None:
    """Raise a ValueError if ``adata`` is backed by a file (``read_h5ad(..., backed="r")``)."""
    if adata.isbacked:
        msg = (
            f"`{name}` is backed by {adata.filename} (read with `backed=`); hiref needs it in memory: pass "
            f"`{name}.to_memory()` (or read it without `backed=`)."
        )
        raise ValueError(msg)


def obsm_array(adata: AnnData, key: str, name: str, *, hint: str = "") -> np.ndarray:
    """``adata.obsm[key]`` as a dense float array, with a clear error if it is missing."""
    if key not in adata.obsm:
        available = sorted(adata.obsm.keys())
        msg = f"`{name}` has no .obsm[{key!r}] (available: {available or 'none'}).{hint}"
        raise KeyError(msg)
    value = adata.obsm[key]
    _refuse_text(value, key, name)
    try:
        value = value.toarray() if sp.issparse(value) else np.asarray(value)
        if value.ndim != 2:
            msg = f"`{name}.obsm[{key!r}]` must be 2-D, got shape {value.shape}."
            raise ValueError(msg)
        if value.dtype.kind not in "biufO":
            msg = f"`{name}.obsm[{key!r}]` must hold numbers, got dtype {value.dtype}."
            raise TypeError(msg)
        return value.astype(np.float64, copy=False)
    except (TypeError, ValueError) as err:
        if f"obsm[{key!r}]" in str(err):
            raise
        msg = f"`{name}.obsm[{key!r}]` must hold numbers only: {err}."
        raise TypeError(msg) from err


def _refuse_text(value: object, key: str, name: str) -> None:
    """A TypeError naming the entry if an ``.obsm`` value holds text (columns of strings, even numeric ones)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        text = [
            str(c) for i, (c, dtype) in enumerate(value.dtypes.items())
            if not pd.api.types.is_numeric_dtype(dtype) and any(isinstance(v, str | bytes) for v in value.iloc[:, i])
        ]  # fmt: skip
        if text:
            msg = (
                f"`{name}.obsm[{key!r}]` must hold numbers, but its column(s) {text} hold text; convert them "
                f"first, e.g. `{name}.obsm[{key!r}] = {name}.obsm[{key!r}].astype(float)`."
            )
            raise TypeError(msg)
        return
    array = np.asarray(value) if not sp.issparse(value) else None
    if array is not None and array.dtype.kind in "USO" and any(isinstance(v, str | bytes) for v in array.ravel()):
        msg = f"`{name}.obsm[{key!r}]` must hold numbers, but it holds text (dtype {array.dtype}); convert it first."
        raise TypeError(msg)


def coordinates(adata: AnnData, key: str, name: str, *, hint: str = "") -> np.ndarray:
    """The first two columns of ``adata.obsm[key]``, checked to exist and to be finite."""
    coords = obsm_array(adata, key, name, hint=hint)
    if coords.shape[1] < 2:
        msg = f"`{name}.obsm[{key!r}]` must have at least 2 columns (x, y), got {coords.shape[1]}."
        raise ValueError(msg)
    require_finite(coords[:, :2], f"`{name}.obsm[{key!r}]`")
    return coords[:, :2]


def check_var_names(adata: AnnData, name: str) -> None:
    """Raise a ValueError if ``adata``'s var_names are not unique (genes are looked up by name)."""
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][:3].tolist()
        msg = (
            f"`{name}` has duplicated var_names (e.g. {dup}); genes are looked up by name, so they must be "
            f"unique: call `{name}.var_names_make_unique()` first."
        )
        raise ValueError(msg)


def expression(adata: AnnData, layer: str | None, name: str) -> np.ndarray | sp.spmatrix:
    """``adata.X`` or ``adata.layers[layer]`` (sparse stays sparse)."""
    if layer is None:
        if adata.X is None:
            msg = f"`{name}` has no .X; pass `layer=`."
            raise ValueError(msg)
        return adata.X
    if layer not in adata.layers:
        msg = f"`{name}` has no .layers[{layer!r}] (available: {sorted(adata.layers.keys()) or 'none'})."
        raise KeyError(msg)
    return adata.layers[layer]


def require_finite(values: np.ndarray | sp.spmatrix, what: str) -> None:
    """Raise a ValueError naming ``what`` if ``values`` holds NaN or infinity."""
    data = values.data if sp.issparse(values) else np.asarray(values)
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        msg = f"{what} contains {bad} NaN or infinite value(s); remove or impute them first."
        raise ValueError(msg)


def spatial_extent(*coords: np.ndarray) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` covering every set of 2-D coordinates given."""
    allc = np.concatenate([c[:, :2] for c in coords])
    xmin, ymin = allc.min(0)
    xmax, ymax = allc.max(0)
    pad_x = (xmax - xmin) * 1e-9 or 1.0
    pad_y = (ymax - ymin) * 1e-9 or 1.0
    return float(xmin), float(xmax + pad_x), float(ymin), float(ymax + pad_y)


def str_array(values: object) -> np.ndarray:
    """``values`` as a numpy array of Python-string dtype ``<U``.

    Works for what anndata reads back from h5ad (object or bytes arrays) and zarr (numpy's
    ``StringDType``, which ``.astype(str)`` cannot cast).
    """
    items = np.asarray(values)
    if items.dtype.kind == "U":
        return items
    items = items.tolist() if items.ndim else [items.item()]
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in items]
    return np.asarray(text, dtype=str) if text else np.empty(0, dtype=str)


def actualize(adata: AnnData) -> AnnData:
    """Turn a view into an actual AnnData in place (what scanpy does before writing to one)."""
    if adata.is_view:
        adata._init_as_actual(adata.copy())
    return adata
