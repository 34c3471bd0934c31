"""The representation cells are compared by, read from (or computed for) two AnnData objects.

Shared by ``hr.pp`` and ``hr.tl``; the description it returns goes into ``params`` through
:func:`hiref._params.params_record` (mappings become JSON strings there).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from hiref._anndata import check_var_names, expression, obsm_array, require_finite
from hiref._logging import logger

if TYPE_CHECKING:
    from anndata import AnnData

#: ``use_rep`` for the data-driven recipe of :func:`hiref.tl.align`.
AUTO = "auto"
#: The ``.obsm`` key whose absence makes a joint PCA.
PCA_KEY = "X_pca"


@dataclass(frozen=True)
class Rep:
    """``use_rep`` parsed once: the ``"auto"`` recipe, or ``.obsm`` keys (or ``"X"``) with weights.

    Attributes
    ----------
    weights
        Keys to positive weights, in the order given (empty for ``"auto"``).
    auto
        The ``"auto"`` recipe.
    """

    weights: dict[str, float] = field(default_factory=dict)
    auto: bool = False

    @property
    def recorded(self) -> str | dict[str, float]:
        """What ``params["use_rep"]`` records: ``"auto"``, the one key, or the keys with their weights."""
        if self.auto:
            return AUTO
        return dict(self.weights) if len(self.weights) > 1 else next(iter(self.weights))

    def joint_pca(self, adata1: AnnData, adata2: AnnData) -> bool:
        """Whether a joint PCA may be computed (and stored): ``"X_pca"`` is asked for and one object lacks it."""
        missing = PCA_KEY not in adata1.obsm or PCA_KEY not in adata2.obsm
        return missing and (self.auto or PCA_KEY in self.weights)


def parse_rep(use_rep: object, *, allow_auto: bool = True) -> Rep:
    """``use_rep`` as a :class:`Rep`, checked (an error naming ``use_rep`` otherwise).

    Parameters
    ----------
    use_rep
        ``"auto"`` (with ``allow_auto``), an ``.obsm`` key or ``"X"``, a non-empty dict of those
        keys to positive weights, or a :class:`Rep` (returned as is).
    allow_auto
        Read ``"auto"`` as the recipe; otherwise it is an ``.obsm`` key like any other.
    """
    if isinstance(use_rep, Rep):
        return use_rep
    if isinstance(use_rep, str):
        return Rep(auto=True) if allow_auto and use_rep == AUTO else Rep({use_rep: 1.0})
    if not (isinstance(use_rep, Mapping) and use_rep):
        msg = f"`use_rep` must be a key (str) or a non-empty dict of keys to weights, got {use_rep!r}."
        raise TypeError(msg)
    for key, w in use_rep.items():
        if not isinstance(key, str):
            msg = f"`use_rep` keys must be strings, got {key!r}."
            raise TypeError(msg)
        if isinstance(w, bool) or not isinstance(w, int | float) or not np.isfinite(w) or w <= 0:
            msg = f"`use_rep` weights must be positive numbers, got {key!r}: {w!r}."
            raise ValueError(msg)
    return Rep(dict(use_rep))


def _looks_like_counts(X: np.ndarray | sp.spmatrix) -> bool:
    data = X.data if sp.issparse(X) else np.asarray(X)
    sample = data[:100_000]
    return bool(sample.size) and bool((sample >= 0).all()) and bool(np.allclose(sample, np.round(sample)))


#: Entries (rows x genes, an upper bound on the non-zeros) normalised at a time: bounds the temporaries.
_CHUNK_ENTRIES = 2**21


def _stack_csr(parts: list[sp.spmatrix | sp.sparray], n_cols: int) -> sp.csr_matrix:
    """The rows of ``parts`` stacked into one float32 CSR matrix: a single copy of the entries.

    What ``sp.vstack([sp.csr_matrix(p, dtype=np.float32) for p in parts], format="csr")`` gives,
    without the intermediate copies; indices are 32-bit where they fit.
    """
    parts = [p if p.format == "csr" else sp.csr_matrix(p) for p in parts]
    nnz = sum(int(p.indptr[-1]) for p in parts)
    n_rows = sum(p.shape[0] for p in parts)
    idx_dtype = np.int32 if max(nnz, n_rows, n_cols) <= np.iinfo(np.int32).max else np.int64
    data = np.empty(nnz, dtype=np.float32)
    indices = np.empty(nnz, dtype=idx_dtype)
    indptr = np.empty(n_rows + 1, dtype=idx_dtype)
    indptr[0] = 0
    pos = row = 0
    for p in parts:
        start, stop = int(p.indptr[0]), int(p.indptr[-1])
        data[pos : pos + stop - start] = p.data[start:stop]
        indices[pos : pos + stop - start] = p.indices[start:stop]
        indptr[row + 1 : row + 1 + p.shape[0]] = p.indptr[1:] - start + pos
        pos += stop - start
        row += p.shape[0]
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def _normalize_total_csr(X: sp.csr_matrix, target_sum: float) -> None:
    """``sc.pp.normalize_total(target_sum=target_sum)`` on a float32 CSR matrix, in place, in row chunks.

    The same arithmetic as scanpy's (float64 row sums rounded to float32, float32 division; cells
    without counts are left as they are, with scanpy's warning), without its copies of the entries.
    """
    n_rows = X.shape[0]
    step = max(1, _CHUNK_ENTRIES // max(1, X.shape[1]))
    empty = False
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        lengths = np.diff(X.indptr[start : stop + 1])
        block = X.data[X.indptr[start] : X.indptr[stop]]
        rows = np.repeat(np.arange(stop - start), lengths)
        counts = np.bincount(rows, weights=block, minlength=stop - start).astype(np.float32)
        factor = counts / np.float32(target_sum)
        empty |= bool((factor == 0).any())
        factor += factor == 0
        np.divide(block, factor[rows], out=block)
    if empty:
        warnings.warn("Some cells have zero counts", UserWarning, stacklevel=2)


def _log1p(X: np.ndarray | sp.csr_matrix) -> None:
    """``sc.pp.log1p`` in place (float32 data)."""
    data = X.data if sp.issparse(X) else X
    np.log1p(data, out=data)


def _shared_parts(adata1: AnnData, adata2: AnnData, layer: str | None) -> tuple[list[np.ndarray | sp.spmatrix], int]:
    """Both objects' expression of the genes they share (not copied where the genes are the same)."""
    check_var_names(adata1, "adata1")
    check_var_names(adata2, "adata2")
    shared = adata1.var_names.intersection(adata2.var_names, sort=False)
    if len(shared) == 0:
        msg = "`adata1` and `adata2` share no genes (var_names), so no joint PCA can be computed; pass `use_rep=`."
        raise ValueError(msg)
    parts = []
    for name, adata in (("adata1", adata1), ("adata2", adata2)):
        view = adata if adata.var_names.equals(shared) else adata[:, shared]
        X = expression(view, layer, name)
        require_finite(X, f"`{name}` expression")
        parts.append(X)
    return parts, len(shared)


def _preprocessing(parts: list[np.ndarray | sp.spmatrix]) -> list[str]:
    """The steps :func:`joint_matrix` applies to these parts stacked, decided without stacking them."""
    if any(sp.issparse(p) for p in parts):
        pieces = [sp.csr_matrix(p) if not sp.issparse(p) or p.format != "csr" else p for p in parts]
        datas = [p.data[p.indptr[0] : p.indptr[-1]] for p in pieces]
    else:
        datas = [np.asarray(p) for p in parts]
    sample, left = [], 100_000
    for d in datas:  # the first 100,000 entries (rows, if dense) of the stack
        sample.append(d[:left])
        left -= len(sample[-1])
    if _looks_like_counts(np.concatenate(sample)):
        return ["normalize_total(1e4)", "log1p"]
    sizes = [d.size for d in datas]
    if (
        sum(sizes)
        and min(float(d.min()) for d in datas if d.size) >= 0
        and max(float(d.max()) for d in datas if d.size) > 20
    ):
        return ["log1p"]
    return []


def _apply(X: np.ndarray | sp.csr_matrix, steps: list[str]) -> np.ndarray | sp.csr_matrix:
    """``steps`` applied in place to a float32 matrix (its own copy); returns it."""
    if "normalize_total(1e4)" in steps:
        if sp.issparse(X):
            _normalize_total_csr(X, 1e4)
        else:
            import anndata as ad
            import scanpy as sc

            block = ad.AnnData(X=X)
            sc.pp.normalize_total(block, target_sum=1e4)
            X = block.X
    if "log1p" in steps:
        _log1p(X)
    return X


class JointRows:
    """The shared genes of two objects stacked (adata1 first), preprocessed a block of rows at a time.

    Row for row what :func:`joint_matrix` holds, without a copy of every entry: indexing with a
    slice or an array of row numbers returns those rows, copied to float32 (CSR if either object's
    expression is sparse) and preprocessed (the steps are per row, so blocks agree with the whole).

    Parameters
    ----------
    adata1, adata2
        The objects.
    layer
        Expression layer (``None``: ``.X``).
    """

    def __init__(self, adata1: AnnData, adata2: AnnData, *, layer: str | None) -> None:
        parts, self.n_genes = _shared_parts(adata1, adata2, layer)
        self.sparse = any(sp.issparse(p) for p in parts)
        if self.sparse:
            parts = [p if sp.issparse(p) and p.format == "csr" else sp.csr_matrix(p) for p in parts]
        self.parts = parts
        self.n1 = parts[0].shape[0]
        self.steps = _preprocessing(parts)
        self.shape = (self.n1 + parts[1].shape[0], self.n_genes)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray | sp.csr_matrix:
        rows = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else np.asarray(rows)
        if len(rows) > 1 and (np.diff(rows) < 0).any():  # blocks are built in order, then reordered
            ordered, inverse = np.unique(rows, return_inverse=True)
            return self[ordered][inverse]
        first, second = rows[rows < self.n1], rows[rows >= self.n1] - self.n1
        pieces = [self.parts[0][first], self.parts[1][second]]
        if self.sparse:
            block = _stack_csr(pieces, self.n_genes)
        else:
            block = np.concatenate([np.asarray(p, np.float32) for p in pieces])
        return _apply(block, self.steps)


def joint_matrix(adata1: AnnData, adata2: AnnData, *, layer: str | None) -> tuple[AnnData, list[str], int]:
    """The shared genes of both objects stacked (adata1 first) and preprocessed as :func:`joint_pca` does.

    The expression is copied once, into a float32 matrix (CSR if either object's is sparse), and
    normalised in place there: the inputs are left untouched. :class:`JointRows` gives the same
    rows a block at a time.

    Returns
    -------
    The stacked AnnData, the preprocessing steps and the number of shared genes.
    """
    import anndata as ad

    parts, n_shared = _shared_parts(adata1, adata2, layer)
    steps = _preprocessing(parts)
    if any(sp.issparse(p) for p in parts):
        stacked = _stack_csr([p if sp.issparse(p) else sp.csr_matrix(np.asarray(p)) for p in parts], n_shared)
    else:
        stacked = np.concatenate([np.asarray(p, np.float32) for p in parts])
    del parts
    joint = ad.AnnData(X=stacked)
    joint.X = _apply(joint.X, steps)
    if "log1p" in steps:
        joint.uns["log1p"] = {"base": None}
    return joint, steps, n_shared


def joint_pca(
    adata1: AnnData,
    adata2: AnnData,
    *,
    n_pcs: int,
    layer: str | None,
    random_state: int,
    prepared: tuple[AnnData, list[str], int] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """PCA of the genes both objects share, fitted on both together, the way scanpy would.

    Raw counts are normalised to 10,000 per cell and log1p-transformed first; non-negative,
    non-integer data with values above 20 are log1p-transformed; anything else is used as is.
    ``prepared``: the output of :func:`joint_matrix`, if already computed.

    Returns
    -------
    The PCs of adata1 and adata2, and a description of what was done.
    """
    import scanpy as sc

    joint, steps, n_shared = prepared if prepared is not None else joint_matrix(adata1, adata2, layer=layer)
    n_comps = int(min(n_pcs, n_shared - 1, joint.n_obs - 1))
    if n_comps < 1:
        msg = (
            f"`use_rep`='X_pca' is missing, and a joint PCA of `adata1` and `adata2` needs at least 2 shared genes "
            f"and 2 cells, got {n_shared} and {joint.n_obs}; pass another `use_rep`."
        )
        raise ValueError(msg)
    # On the matrix, not the AnnData: the same PCA, written nowhere (``prepared`` stays as it is).
    pcs = sc.pp.pca(joint.X, n_comps=n_comps, random_state=random_state)
    logger.info(
        "computed a joint PCA (%d PCs) of the %d shared genes (%s)", n_comps, n_shared, ", ".join(steps) or "as is"
    )
    info = {"n_pcs": n_comps, "n_shared_genes": n_shared, "preprocessing": steps}
    return pcs[: adata1.n_obs], pcs[adata1.n_obs :], info


def _one(adata: AnnData, rep: str, layer: str | None, name: str) -> np.ndarray:
    if rep == "X":
        X = expression(adata, layer, name)
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        return X.astype(np.float64, copy=False)
    hint = " Run `sc.pp.pca` or `sc.tl.*` first, or pass another `use_rep`." if rep.startswith("X_") else ""
    return obsm_array(adata, rep, name, hint=hint)


def _standardised(R1: np.ndarray, R2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre = np.concatenate([R1, R2]).mean(0)
    A, B = R1 - centre, R2 - centre
    scale = np.sqrt(((A**2).sum() + (B**2).sum()) / (len(A) + len(B)))
    scale = scale if scale > 0 else 1.0
    return A / scale, B / scale


def representations(
    adata1: AnnData,
    adata2: AnnData,
    use_rep: str | Mapping[str, float] | Rep,
    *,
    layer: str | None,
    n_pcs: int,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray, dict, tuple[np.ndarray, np.ndarray] | None]:
    """The arrays to align, a description for the stored parameters, and a joint PCA if one was computed.

    Parameters
    ----------
    adata1, adata2
        The objects.
    use_rep
        See :func:`hiref.tl.align`.
    layer
        Expression layer for ``"X"`` and for a joint PCA.
    n_pcs
        Number of PCs of a joint PCA.
    random_state
        Seed of the PCA.
    """
    rep = parse_rep(use_rep, allow_auto=False)
    if rep.auto:
        msg = "`use_rep`='auto' is read by hiref.tl._auto.auto_representation, not here."
        raise ValueError(msg)
    weights = rep.weights
    pieces1, pieces2 = [], []
    computed = None
    info: dict = {"use_rep": rep.recorded}
    for key, w in weights.items():
        if key == PCA_KEY and (PCA_KEY not in adata1.obsm or PCA_KEY not in adata2.obsm):
            R1, R2, pca_info = joint_pca(adata1, adata2, n_pcs=n_pcs, layer=layer, random_state=random_state)
            computed = (R1, R2)
            info["joint_pca"] = pca_info
        else:
            R1, R2 = _one(adata1, key, layer, "adata1"), _one(adata2, key, layer, "adata2")
        if R1.shape[1] != R2.shape[1]:
            msg = f"`use_rep` {key!r} has {R1.shape[1]} columns in adata1 but {R2.shape[1]} in adata2."
            raise ValueError(msg)
        require_finite(R1, f"`adata1` representation {key!r}")
        require_finite(R2, f"`adata2` representation {key!r}")
        if len(weights) > 1:
            R1, R2 = _standardised(R1, R2)
            R1, R2 = np.sqrt(w) * R1, np.sqrt(w) * R2
        pieces1.append(R1)
        pieces2.append(R2)
    return np.concatenate(pieces1, 1), np.concatenate(pieces2, 1), info, computed
