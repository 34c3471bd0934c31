"""``hr.tl.store_matching``: store a one-to-one coupling computed elsewhere as hiref stores its own."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from hiref._anndata import obsm_array
from hiref._contract import alignment_writes, check_all_writable
from hiref._keys import ALIGN_KEY
from hiref._logging import logger
from hiref._version import __version__
from hiref.engine.checks import check_bool

from ._align import _side, check_pair, write_alignment

if TYPE_CHECKING:
    from anndata import AnnData


def _fail(what: str) -> None:
    msg = (
        "`coupling` must be one-to-one (a 0/1 matrix with at most one 1 per row and per column, or a permutation "
        f"array with -1 for unmatched cells): {what}."
    )
    raise ValueError(msg)


def _n_repeated(values: np.ndarray, size: int) -> int:
    """How many entries of ``values`` (integers in ``[0, size)``) repeat an earlier one (linear time)."""
    return len(values) - int(np.count_nonzero(np.bincount(values, minlength=size))) if len(values) else 0


def coupling_to_perm(coupling: object, n1: int, n2: int) -> np.ndarray:
    """Partner of every row (``-1``: none) of a one-to-one coupling; ValueError naming ``coupling`` otherwise."""
    if sp.issparse(coupling):
        if coupling.shape != (n1, n2):
            _fail(f"shape {coupling.shape}, expected (adata1.n_obs, adata2.n_obs) = {(n1, n2)}")
        coo = sp.coo_matrix(coupling)
        keep = coo.data != 0
        rows, cols, data = coo.row[keep], coo.col[keep], coo.data[keep]
    else:
        array = np.asarray(coupling)
        if array.ndim == 1:
            if array.dtype.kind not in "iu":
                msg = f"`coupling` as a 1-D array must hold integer positions (-1: unmatched), got dtype {array.dtype}."
                raise TypeError(msg)
            if array.shape[0] != n1:
                _fail(f"{array.shape[0]} entries, expected adata1.n_obs = {n1}")
            perm = array.astype(np.int64)
            if (perm < -1).any() or (perm >= n2).any():
                _fail(f"positions must lie in [-1, {n2}) (adata2.n_obs = {n2})")
            repeated = _n_repeated(perm[perm >= 0], n2)
            if repeated:
                _fail(f"{repeated} cell(s) of adata2 are the partner of several cells")
            return perm
        if array.ndim != 2:
            msg = f"`coupling` must be a 1-D permutation array or a 2-D matrix, got {array.ndim} dimensions."
            raise ValueError(msg)
        if array.shape != (n1, n2):
            _fail(f"shape {array.shape}, expected (adata1.n_obs, adata2.n_obs) = {(n1, n2)}")
        if array.dtype.kind not in "biuf":
            msg = f"`coupling` must hold numbers, got dtype {array.dtype}."
            raise TypeError(msg)
        rows, cols = np.nonzero(array)
        data = array[rows, cols]
    if len(data) and not np.all(data == 1):
        _fail("its non-zero entries must all be 1 (a matching, not a fractional transport plan)")
    if _n_repeated(rows, n1):
        _fail("a row (cell of adata1) has several partners")
    if _n_repeated(cols, n2):
        _fail("a column (cell of adata2) has several partners")
    perm = np.full(n1, -1, dtype=np.int64)
    perm[rows] = cols
    return perm


def store_matching(
    adata1: AnnData,
    adata2: AnnData,
    coupling: sp.spmatrix | sp.sparray | np.ndarray,
    *,
    key_added: str = ALIGN_KEY,
    spatial_key: str | None = "spatial",
    copy: bool = False,
) -> tuple[AnnData, AnnData] | None:
    """Store a one-to-one matching computed elsewhere, in the form :func:`hiref.tl.align` stores.

    Afterwards :func:`hiref.get.matching`, :func:`hiref.get.coupling`, :func:`hiref.tl.transfer`,
    :func:`hiref.tl.trace` and :func:`hiref.pl.alignment` work on it as on an alignment of
    hiref's. The reverse of :func:`hiref.get.coupling`.

    Parameters
    ----------
    adata1, adata2
        The matched objects.
    coupling
        The matching: an ``adata1.n_obs x adata2.n_obs`` 0/1 matrix (scipy sparse or dense; at
        most one 1 per row and per column, rows and columns of unmatched cells empty), or an
        integer array of length ``adata1.n_obs`` holding the position in ``adata2`` of every
        cell's partner (``-1``: unmatched). Anything else (fractional entries, a cell with two
        partners) raises a ValueError naming ``coupling``.
    key_added
        Name under which it is stored (as in :func:`hiref.tl.align`). Entries of an earlier
        alignment under the same key are replaced; a key whose entries hiref did not write is
        refused.
    spatial_key
        ``.obsm`` key of the coordinates, for the stored partner coordinates; ``None``, or a key
        missing from either object: none stored.
    copy
        Return modified copies instead of writing into the inputs.

    Returns
    -------
    ``None``, or with ``copy=True`` the modified copies ``(adata1, adata2)``. On each object,
    as :func:`hiref.tl.align` writes them:

    ``.uns[key_added]``
        ``params`` (``method="stored"``, ``spatial_key``, ``hiref_version``), ``role``,
        ``partner``, ``cost`` (NaN: unknown), ``level_costs`` (empty), ``n_matched``,
        ``runtime`` (0) and the names of the entries below (``obs_key``, ``obs_keys``,
        ``obsm_keys``). The other entries of an earlier alignment under ``key_added`` (its
        per-cell cost and confidence, co-clusters, joint PCA) are removed.
    ``.obs[f"{key_added}_match"]``
        The partner's obs name (missing if unmatched).
    ``.obsm[f"{key_added}_partner_spatial"]``
        The partner's coordinates (NaN if unmatched), when both objects have ``spatial_key``.

    Examples
    --------
    >>> import numpy as np
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=100, missing=0.0, seed=0)
    >>> hr.tl.store_matching(a, b, np.arange(a.n_obs)[::-1], key_added="reversed")
    >>> int(hr.get.matching(a, b, key="reversed").perm[0]) == a.n_obs - 1
    True
    """
    check_pair(adata1, adata2, key_added)
    check_bool(copy, "copy")
    perm = coupling_to_perm(coupling, adata1.n_obs, adata2.n_obs)
    back = np.full(adata2.n_obs, -1, dtype=np.int64)
    back[perm[perm >= 0]] = np.flatnonzero(perm >= 0)
    spatial1 = spatial2 = None
    if spatial_key is not None and spatial_key in adata1.obsm and spatial_key in adata2.obsm:
        spatial1 = obsm_array(adata1, spatial_key, "adata1")
        spatial2 = obsm_array(adata2, spatial_key, "adata2")
    writes = alignment_writes(key_added, spatial=spatial1 is not None, labels=False, quality=False)
    check_all_writable([(adata1, writes, "adata1"), (adata2, writes, "adata2")])
    params = {
        "method": "stored",
        "spatial_key": spatial_key if spatial1 is not None else "",
        "hiref_version": __version__,
    }
    results = {
        "cost": float("nan"),
        "level_costs": np.zeros(0, dtype=np.float64),
        "n_matched": int((perm >= 0).sum()),
        "runtime": 0.0,
    }
    common = {"writes": writes, "params": params, "results": results, "pca": None}
    sides = [
        _side(perm, [], adata2, role="source", spatial=spatial2, **common),
        _side(back, [], adata1, role="target", spatial=spatial1, **common),
    ]
    if copy:
        adata1, adata2 = adata1.copy(), adata2.copy()
    t0 = time.perf_counter()
    for adata, side in zip((adata1, adata2), sides, strict=True):
        write_alignment(adata, side)
    logger.info(
        "stored a matching of %d pairs (%.2f s); added .uns[%r], .obs[%r]%s on both",
        results["n_matched"], time.perf_counter() - t0, writes.uns, writes.obs[0],
        f", .obsm{list(writes.obsm)}" if writes.obsm else "",
    )  # fmt: skip
    return (adata1, adata2) if copy else None
