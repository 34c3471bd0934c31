"""``hr.get.coupling``: a stored matching as a sparse 0/1 coupling matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from hiref._keys import ALIGN_KEY

from ._matching import matching

if TYPE_CHECKING:
    from anndata import AnnData
    from numpy.typing import DTypeLike


def perm_to_coupling(perm: np.ndarray, n_other: int, dtype: DTypeLike = np.float32) -> sp.csr_matrix:
    """``len(perm) x n_other`` CSR matrix with a 1 at ``(i, perm[i])`` for every ``perm[i] >= 0``."""
    perm = np.asarray(perm, dtype=np.int64)
    matched = perm >= 0
    indptr = np.zeros(len(perm) + 1, dtype=np.int64)
    np.cumsum(matched, out=indptr[1:])
    data = np.ones(int(indptr[-1]), dtype=dtype)
    return sp.csr_matrix((data, perm[matched], indptr), shape=(len(perm), n_other))


def coupling(
    adata1: AnnData, adata2: AnnData, *, key: str = ALIGN_KEY, dtype: DTypeLike = np.float32, normalize: bool = False
) -> sp.csr_matrix:
    """The one-to-one matching stored under ``key`` as a sparse coupling matrix.

    The reverse of :func:`hiref.tl.store_matching`. The matching is read with
    :func:`hiref.get.matching`, so objects subset or reordered since the alignment are refused.

    Parameters
    ----------
    adata1, adata2
        The aligned objects, in any order (rows are the cells of ``adata1``).
    key
        The ``key_added`` of the alignment (:func:`hiref.tl.align`, one pair of
        :func:`hiref.tl.align_series`, or :func:`hiref.tl.store_matching`).
    dtype
        Data type of the entries.
    normalize
        Divide the entries by the number of pairs, so that they sum to 1 like the couplings of
        moscot (``transport_matrix``) and PASTE (``pairwise_align``), for code that expects a
        probability coupling (weighted means, push-forwards of distributions).

    Returns
    -------
    ``adata1.n_obs x adata2.n_obs`` CSR matrix with a 1 (``1 / n_pairs`` with ``normalize``)
    where a cell of ``adata1`` (row) is matched to a cell of ``adata2`` (column): at most one
    entry per row and per column; the rows of unmatched cells are empty. Rows are the source,
    columns the target, as in moscot and PASTE, so ``P.T @ X`` carries a per-cell array ``X``
    of ``adata1`` to the partners in ``adata2`` (zeros for unmatched cells).

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=300, seed=0)
    >>> hr.tl.align(a, b, use_rep="spatial", progress=False)
    >>> P = hr.get.coupling(a, b)
    >>> P.shape == (a.n_obs, b.n_obs), int(P.sum()) == a.uns["hiref"]["n_matched"]
    (True, True)
    """
    perm = matching(adata1, adata2, key=key).perm
    P = perm_to_coupling(perm, adata2.n_obs, dtype)
    if normalize and P.nnz:
        P.data /= P.nnz
    return P
