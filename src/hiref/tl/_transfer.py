"""``hr.tl.transfer``: carry expression and annotations across a stored matching."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hiref._anndata import check_adata, check_in_memory, check_var_names, expression
from hiref._contract import transfer_writes, write
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


#: Entries gathered per chunk: bounds the temporary arrays of :func:`transfer` (about 8 to 30 bytes
#: per entry) next to its one output-size allocation.
CHUNK_ENTRIES = 1 << 16


def _index_dtype(*sizes: int) -> type:
    """The index dtype scipy gives a CSR matrix of these sizes (int32 while everything fits)."""
    return np.int32 if max(sizes, default=0) <= np.iinfo(np.int32).max else np.int64


def _chunks(offsets: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Row ranges ``(t0, t1)`` of about ``size`` entries each (at least one row), from cumulative offsets."""
    n = len(offsets) - 1
    bounds, t0 = [], 0
    while t0 < n:
        t1 = int(np.searchsorted(offsets, offsets[t0] + size, side="right")) - 1
        t1 = min(max(t1, t0 + 1), n)
        bounds.append((t0, t1))
        t0 = t1
    return bounds


def _positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` with one temporary array."""
    keep = lengths > 0
    starts, lengths = starts[keep].astype(np.int64), lengths[keep].astype(np.int64)
    pos = np.ones(int(lengths.sum()), dtype=np.int64)
    if len(pos):
        first = np.cumsum(lengths) - lengths
        pos[0] = starts[0]
        pos[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
        np.cumsum(pos, out=pos)
    return pos


def _row_counts(X: sp.csr_matrix, gene_idx: np.ndarray) -> np.ndarray:
    """Entries of every row of ``X`` in the columns ``gene_idx`` (with repeats), a chunk of rows at a time."""
    mult = np.bincount(gene_idx, minlength=X.shape[1])
    counts = np.zeros(X.shape[0], dtype=np.int64)
    for a, b in _chunks(X.indptr, CHUNK_ENTRIES):
        e0 = X.indptr[a]
        cum = np.concatenate([[0], np.cumsum(mult[X.indices[e0 : X.indptr[b]]])])
        counts[a:b] = cum[X.indptr[a + 1 : b + 1] - e0] - cum[X.indptr[a:b] - e0]
    return counts


def _take(source: np.ndarray, pos: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = source[pos]``, without a temporary array when the dtypes agree."""
    if source.dtype == out.dtype:
        np.take(source, pos, out=out, mode="clip")
    else:
        out[:] = source[pos]


def _gather_sparse(
    X: sp.spmatrix | sp.sparray, rows: np.ndarray, matched: np.ndarray, gene_idx: np.ndarray
) -> sp.csr_matrix:
    """Rows ``rows`` of ``X[:, gene_idx]`` (empty where not ``matched``) as CSR, with one output-size allocation.

    Float (and complex) data keep their dtype, anything else becomes float64, as the former
    ``diags(matched) @ X`` gave. Explicit zeros are dropped and duplicates summed; the result is
    canonical (sorted indices).
    """
    # CSC, COO and the other formats are converted once, to CSR (a CSR array or matrix is not copied).
    X = X if X.format == "csr" else X.tocsr()
    indptr, indices, data = X.indptr, X.indices, X.data
    dtype = data.dtype if data.dtype.kind in "fc" else np.dtype(np.float64)
    n_vars = X.shape[1]
    full = len(gene_idx) == n_vars and bool(np.array_equal(gene_idx, np.arange(n_vars)))
    length = np.where(matched, indptr[rows + 1] - indptr[rows], 0)  # entries of each partner row
    if full:
        taken = length
    else:  # a column mask: entries in the chosen genes, counted a chunk of source rows at a time
        taken = _row_counts(X, gene_idx)[rows]
        taken[~matched] = 0
    nnz = int(taken.sum())
    idx_dtype = _index_dtype(nnz, len(rows), len(gene_idx))
    out_indptr = np.zeros(len(rows) + 1, dtype=idx_dtype)
    np.cumsum(taken, out=out_indptr[1:])
    out_indices = np.empty(nnz, dtype=idx_dtype)
    out_data = np.empty(nnz, dtype=dtype)
    offsets = out_indptr if full else np.concatenate([[0], np.cumsum(length)])
    del taken
    for t0, t1 in _chunks(offsets, CHUNK_ENTRIES):
        pos = _positions(indptr[rows[t0:t1]], length[t0:t1])
        o0, o1 = int(out_indptr[t0]), int(out_indptr[t1])
        if not full:  # the chunk's partner rows, whose data are positions in X, then scipy's column selection
            chunk_indptr = np.asarray(offsets[t0 : t1 + 1] - offsets[t0], dtype=np.int64)
            chunk = sp.csr_matrix((pos, indices[pos].astype(np.int64), chunk_indptr), shape=(t1 - t0, n_vars))
            chunk = chunk[:, gene_idx]
            pos = chunk.data
            out_indices[o0:o1] = chunk.indices
        else:
            _take(indices, pos, out_indices[o0:o1])
        _take(data, pos, out_data[o0:o1])
    out = sp.csr_matrix((out_data, out_indices, out_indptr), shape=(len(rows), len(gene_idx)))
    out.sum_duplicates()  # in place; only sorts (and sums) when the source or the selection was not in order
    out.eliminate_zeros()
    return out


def _gather_dense(X: np.ndarray, rows: np.ndarray, matched: np.ndarray, gene_idx: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of ``X[:, gene_idx]``, NaN where not ``matched``, filled a chunk of rows at a time.

    Float data keep their dtype, anything else becomes float64; float64 as well when some rows are
    not matched.
    """
    X = np.asarray(X)
    dtype = X.dtype if np.issubdtype(X.dtype, np.floating) and matched.all() else np.dtype(np.float64)
    out = np.empty((len(rows), len(gene_idx)), dtype=dtype)
    full = len(gene_idx) == X.shape[1] and bool(np.array_equal(gene_idx, np.arange(X.shape[1])))
    step = max(1, CHUNK_ENTRIES // max(len(gene_idx), 1))
    for t0 in range(0, len(rows), step):
        part = rows[t0 : t0 + step]
        out[t0 : t0 + step] = X[part] if full else X[np.ix_(part, gene_idx)]
    if not matched.all():
        out[~matched] = np.nan
    return out


def _gather(
    X: np.ndarray | sp.spmatrix | sp.sparray, rows: np.ndarray, matched: np.ndarray, gene_idx: np.ndarray
) -> np.ndarray | sp.csr_matrix:
    """The partners' expression: sparse in, sparse out (CSR); memory about one output matrix."""
    gene_idx = np.asarray(gene_idx, dtype=np.int64)
    if sp.issparse(X):
        return _gather_sparse(X, rows, matched, gene_idx)
    return _gather_dense(X, rows, matched, gene_idx)


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
        The partner's expression. Sparse in, sparse out (CSR, sorted indices, no explicit
        zeros); memory about one output matrix, as the partners' rows are gathered a chunk at a
        time. Target cells without a partner (only when the target is the larger dataset) get
        NaN rows if dense, empty rows if sparse.
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
    taken = [c for c in columns if c in (TransferKeys(key).matched, TransferKeys(key).source)]
    if taken:
        msg = f"`obs` names {taken}, which transfer writes itself under `key`={key!r}; rename those columns first."
        raise ValueError(msg)

    X = _gather(expression(adata_source, layer, "adata_source"), rows, matched, gene_idx)

    from anndata import AnnData

    keys = TransferKeys(key)
    source_names = adata_source.obs_names.to_numpy()[rows]
    obs_values = {keys.matched: matched, keys.source: pd.Categorical(np.where(matched, source_names, None))}
    index = adata_target.obs_names.copy()
    obs_values |= {col: _carried(adata_source.obs[col], rows, matched, index) for col in columns}
    coords = spatial_key is not None and spatial_key in adata_target.obsm
    writes = transfer_writes(key, columns=tuple(columns), spatial_key=spatial_key if coords else None)
    out = AnnData(X=X, obs=pd.DataFrame(index=index), var=adata_source.var.iloc[gene_idx].copy())
    write(
        out, writes, record=params_record({"key": key, "layer": layer, "matched_key": keys.matched}), obs=obs_values,
        obsm={spatial_key: np.asarray(adata_target.obsm[spatial_key]).copy()} if coords else None,
    )  # fmt: skip
    return out
