"""``hr.tl.transfer``: carry expression and annotations across a stored matching."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hiref._anndata import check_adata, check_in_memory, check_var_names, expression
from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY, TransferKeys
from hiref._params import params_record
from hiref.get._matching import partners

if TYPE_CHECKING:
    from anndata import AnnData


def _names(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) for v in names):
        msg = f"`{what}` must be a string or a list of strings, got {value!r}."
        raise TypeError(msg)
    return names


def _nullable(dtype: np.dtype) -> str | np.dtype:
    """The dtype that can hold missing values next to values of ``dtype`` (pandas' nullable types)."""
    if dtype.kind == "b":
        return "boolean"
    if dtype.kind in "iu":
        return f"{'U' if dtype.kind == 'u' else ''}Int{8 * dtype.itemsize}"
    return dtype


def _carried(values: pd.Series, rows: np.ndarray, matched: np.ndarray, index: pd.Index) -> pd.Series | pd.Categorical:
    """The partners' ``values`` (missing for unmatched cells), keeping the dtype and missing values.

    Categorical columns keep their categories; bool and int columns stay bool and int (pandas'
    nullable ``boolean``/``Int64`` when some cells are unmatched); other columns (strings) become
    categorical. Missing values (``None``, ``NaN``, ``pd.NA``) stay missing.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.where(matched, values.cat.codes.to_numpy()[rows], -1)
        return pd.Categorical.from_codes(codes, categories=values.cat.categories)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        taken = values.iloc[rows].reset_index(drop=True)
        taken.index = index
        if not matched.all():
            if isinstance(taken.dtype, np.dtype):
                taken = taken.astype(_nullable(taken.dtype))
            taken[~matched] = np.nan if taken.dtype.kind == "f" and isinstance(taken.dtype, np.dtype) else pd.NA
        return taken
    items = values.to_numpy(dtype=object)[rows]
    present = matched & ~pd.isna(items)
    return pd.Categorical(np.where(present, [str(v) for v in items], None))


@doc_params(**DOC)
def transfer(
    adata_source: AnnData,
    adata_target: AnnData,
    *,
    key: str = ALIGN_KEY,
    genes: str | Sequence[str] | None = None,
    layer: str | None = None,
    obs: str | Sequence[str] | None = None,
    spatial_key: str | None = "spatial",
) -> AnnData:
    """Predict the target's cells from their partners in the source.

    Every cell of ``adata_target`` receives the expression (and, with ``obs``, the
    annotations) of the cell of ``adata_source`` it was matched to by :func:`hiref.tl.align`.
    The result is a new AnnData with the target's cells and the source's genes, ready to
    compare with the target (:func:`hiref.tl.cosine_similarity`) or to plot in the target's
    frame.

    Parameters
    ----------
    adata_source
        Where expression and annotations come from.
    adata_target
        Whose cells are predicted; aligned with ``adata_source`` under ``key``.
    key
        The ``key_added`` of :func:`hiref.tl.align`.
    genes
        Source genes to carry (default: all).
    {layer}
    obs
        Source ``.obs`` columns to carry. Categorical, bool and numeric columns keep their dtype
        (bool and int become pandas' nullable ``boolean``/``Int64`` when some target cells have no
        partner); other columns become categorical. Missing values stay missing.
    spatial_key
        Target ``.obsm`` key of coordinates copied into the result (``None``: none).

    Returns
    -------
    AnnData with ``adata_target``'s obs_names and the chosen source genes:

    ``.X``
        The partner's expression (sparse stays sparse). Target cells without a partner (only
        when the target is the larger dataset) get NaN rows if dense, empty rows if sparse.
    ``.obs[f"{{key}}_matched"]``
        Whether the cell has a partner.
    ``.obs[f"{{key}}_source"]``
        The partner's obs name (missing if none).
    ``.obs[col]``
        For every ``obs`` column, the partner's value (missing if none).
    ``.obsm[spatial_key]``
        The target's coordinates.
    ``.uns["hiref_transfer"]``
        ``key``, ``layer`` and the name of the matched column.

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=400, seed=0)
    >>> hr.tl.align(a, b, use_rep="X_pca", progress=False)
    >>> pred = hr.tl.transfer(a, b, obs="region")
    >>> pred.shape == (b.n_obs, a.n_vars)
    True
    """
    check_adata(adata_source, "adata_source")
    check_adata(adata_target, "adata_target")
    check_in_memory(adata_source, "adata_source")
    check_in_memory(adata_target, "adata_target")
    partner = partners(adata_target, adata_source, key, name="adata_target", other_name="adata_source")
    matched = partner >= 0
    rows = np.maximum(partner, 0)

    gene_list = _names(genes, "genes")
    if gene_list is None:
        gene_idx = np.arange(adata_source.n_vars)
    else:
        check_var_names(adata_source, "adata_source")
        missing = [g for g in gene_list if g not in adata_source.var_names]
        if missing:
            msg = f"`genes` not in adata_source.var_names: {missing[:10]}{' ...' if len(missing) > 10 else ''}."
            raise KeyError(msg)
        gene_idx = adata_source.var_names.get_indexer(gene_list)
    columns = _names(obs, "obs") or []
    missing = [c for c in columns if c not in adata_source.obs.columns]
    if missing:
        msg = f"`obs` columns not in adata_source.obs: {missing} (available: {list(adata_source.obs.columns)})."
        raise KeyError(msg)

    X = expression(adata_source, layer, "adata_source")
    if sp.issparse(X):
        X = sp.csr_matrix(X)[:, gene_idx][rows]
        X = sp.diags(matched.astype(X.dtype)) @ X
        X.eliminate_zeros()
    else:
        X = np.asarray(X)[:, gene_idx][rows].astype(
            np.float64 if not np.issubdtype(np.asarray(X).dtype, np.floating) else np.asarray(X).dtype
        )
        if not matched.all():
            X = X.astype(np.float64)
            X[~matched] = np.nan

    frame = pd.DataFrame(index=adata_target.obs_names.copy())
    keys = TransferKeys(key)
    frame[keys.matched] = matched
    source_names = adata_source.obs_names.to_numpy()[rows]
    frame[keys.source] = pd.Categorical(np.where(matched, source_names, None))
    for col in columns:
        frame[col] = _carried(adata_source.obs[col], rows, matched, frame.index)

    from anndata import AnnData

    out = AnnData(X=X, obs=frame, var=adata_source.var.iloc[gene_idx].copy())
    if spatial_key is not None and spatial_key in adata_target.obsm:
        out.obsm[spatial_key] = np.asarray(adata_target.obsm[spatial_key]).copy()
    out.uns[keys.uns] = params_record({"key": key, "layer": layer, "matched_key": keys.matched})
    return out
