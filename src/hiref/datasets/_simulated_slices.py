"""Simulated pairs of tissue slices with a known cell-to-cell correspondence."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hiref._keys import SimulatedKeys

from ._tissue_shape import bent, rotation_matrix, tissue_positions

if TYPE_CHECKING:
    from anndata import AnnData

#: Counts (rows x genes) drawn at a time: bounds each dense temporary to about 8 MB.
_CHUNK_ENTRIES = 2**20


def _chunk_rows(n_genes: int) -> int:
    return max(1, _CHUNK_ENTRIES // n_genes)


def _poisson_csr(
    rng: np.random.Generator, profiles: np.ndarray, region: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson counts of mean ``profiles[region] * size[:, None]``, drawn in row chunks, in CSR form.

    ``Generator.poisson`` draws an array's entries one after the other in C order, so drawing the
    rows chunk after chunk gives exactly the counts of one draw of the whole matrix, without the
    dense ``n x genes`` array.

    Returns
    -------
    The non-zero counts (float32), their genes (int32) and the number of them in every row.
    """
    n, n_genes = len(region), profiles.shape[1]
    data = np.empty(0, dtype=np.float32)
    indices = np.empty(0, dtype=np.int32)
    row_nnz = np.empty(n, dtype=np.int64)
    nnz = 0
    step = _chunk_rows(n_genes)
    for start in range(0, n, step):
        stop = min(start + step, n)
        counts = rng.poisson(profiles[region[start:stop]] * size[start:stop, None])
        nonzero = counts != 0
        flat = np.flatnonzero(nonzero)
        end = nnz + len(flat)
        if end > len(data):
            # Room for the projected total: pages not written to are never resident, and
            # resizing a large buffer in place moves no data (realloc on mmap'ed memory).
            capacity = max(end, int(end / stop * n * 1.05) + 1024)
            data.resize(capacity, refcheck=False)
            indices.resize(capacity, refcheck=False)
        data[nnz:end] = counts.ravel()[flat]
        indices[nnz:end] = flat % n_genes
        row_nnz[start:stop] = np.count_nonzero(nonzero, axis=1)
        nnz = end
    data.resize(nnz, refcheck=False)
    indices.resize(nnz, refcheck=False)
    return data, indices, row_nnz


def _keep_rows(
    data: np.ndarray, indices: np.ndarray, row_nnz: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows ``keep`` (sorted positions) of a CSR matrix, compacted in place in row chunks."""
    mask = np.zeros(len(row_nnz), dtype=bool)
    mask[keep] = True
    src = out = 0
    step = _chunk_rows(max(1, int(row_nnz.max(initial=0))))
    for start in range(0, len(row_nnz), step):
        stop = min(start + step, len(row_nnz))
        width = int(row_nnz[start:stop].sum())
        kept = np.repeat(mask[start:stop], row_nnz[start:stop])
        n_kept = int(np.count_nonzero(kept))
        # Fancy indexing copies first, and ``out <= src``: nothing unread is overwritten.
        data[out : out + n_kept] = data[src : src + width][kept]
        indices[out : out + n_kept] = indices[src : src + width][kept]
        src += width
        out += n_kept
    data.resize(out, refcheck=False)
    indices.resize(out, refcheck=False)
    return data, indices, row_nnz[mask]


def _csr(data: np.ndarray, indices: np.ndarray, row_nnz: np.ndarray, n_genes: int) -> sp.csr_matrix:
    """A CSR matrix of the parts, with 32-bit indices where they fit (as scipy would choose)."""
    idx_dtype = np.int32 if max(len(data), len(row_nnz), n_genes) <= np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(len(row_nnz) + 1, dtype=idx_dtype)
    np.cumsum(row_nnz, out=indptr[1:])
    return sp.csr_matrix((data, indices.astype(idx_dtype, copy=False), indptr), shape=(len(row_nnz), n_genes))


def simulate_slices(
    n_obs: int = 2000,
    n_genes: int = 60,
    *,
    n_regions: int = 6,
    rotation: float = 30.0,
    translation: tuple[float, float] = (40.0, -25.0),
    deformation: float = 0.05,
    jitter: float = 0.5,
    missing: float = 0.0,
    mean_count: float = 2.4,
    seed: int = 0,
) -> tuple[AnnData, AnnData]:
    """Two slices of one simulated tissue, the second moved, deformed and resampled.

    Slice 1 has ``n_obs`` cells spread over an asymmetric tissue (an ellipse of about 100 x 70
    units with a lobe), split into ``n_regions`` regions (cell types) by a Voronoi partition; every region has its own
    mean expression over ``n_genes`` genes, of which counts are drawn (Poisson with a
    per-cell size factor). Slice 2 holds the same cells, with fresh counts, positions bent by a
    smooth deformation (relative amplitude ``deformation``), jittered by ``jitter`` units,
    rotated by ``rotation`` degrees and shifted by ``translation``; a fraction ``missing`` of its
    cells is removed. The truth is in ``adata2.obs["true_match"]``: the obs name of the same
    cell in slice 1.

    Parameters
    ----------
    n_obs
        Cells of slice 1.
    n_genes
        Genes.
    n_regions
        Regions (cell types).
    rotation
        Rotation of slice 2, in degrees, about the tissue centre.
    translation
        Shift of slice 2 after the rotation.
    deformation
        Amplitude of the smooth bend of slice 2, relative to the tissue size.
    jitter
        Standard deviation of the per-cell position noise of slice 2.
    missing
        Fraction of the cells left out of slice 2, in ``[0, 1)``.
    mean_count
        Mean count of a gene in a cell (over genes and regions); e.g. ``150 / n_genes`` for a
        fixed depth of about 150 counts per cell, as imaging panels of hundreds of genes have
        (sparse counts), where the default gives dense counts on many genes.
    seed
        Seed of the random generator.

    Returns
    -------
    ``(adata1, adata2)`` with raw counts in ``.X`` (sparse), ``.obsm["spatial"]``,
    ``.obs["region"]`` (categorical), ``.obs["slice"]``, and ``adata2.obs["true_match"]``.

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=300, missing=0.1, seed=1)
    >>> a.n_obs, b.n_obs
    (300, 270)
    """
    from anndata import AnnData

    for name, value in (("n_obs", n_obs), ("n_genes", n_genes), ("n_regions", n_regions)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            msg = f"`{name}` must be a positive int, got {value!r}."
            raise ValueError(msg)
    if isinstance(mean_count, bool) or not isinstance(mean_count, int | float) or not 0 < mean_count < np.inf:
        msg = f"`mean_count` must be a positive number, got {mean_count!r}."
        raise ValueError(msg)
    if not 0.0 <= missing < 1.0:
        msg = f"`missing` must be in [0, 1), got {missing!r}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)

    pos = tissue_positions(rng, n_obs)
    centres = pos[rng.choice(n_obs, n_regions, replace=False)]
    region = np.argmin(((pos[:, None] - centres[None]) ** 2).sum(-1), 1)

    # gamma(0.6) has mean 0.6: the scale is 4 at the default 2.4 (4 * 2.4 / 2.4 is exactly 4)
    profiles = rng.gamma(0.6, 1.0, size=(n_regions, n_genes)) * (4.0 * mean_count / 2.4)
    size1 = rng.lognormal(0.0, 0.3, n_obs)
    size2 = rng.lognormal(0.0, 0.3, n_obs)
    counts1 = _poisson_csr(rng, profiles, region, size1)
    counts2 = _poisson_csr(rng, profiles, region, size2)

    pos2 = bent(pos, rng, deformation, jitter) @ rotation_matrix(rotation).T + np.asarray(translation, dtype=float)

    names1 = np.array([f"cell{i}" for i in range(n_obs)], dtype=object)
    keep = np.sort(rng.choice(n_obs, n_obs - round(missing * n_obs), replace=False))
    genes = pd.Index([f"gene{g}" for g in range(n_genes)])
    categories = [f"region{r}" for r in range(n_regions)]

    def make(X: sp.csr_matrix, coords: np.ndarray, rows: np.ndarray, names: np.ndarray, label: str) -> AnnData:
        obs = pd.DataFrame(
            {
                SimulatedKeys.region: pd.Categorical.from_codes(region[rows], categories=categories),
                SimulatedKeys.slice: pd.Categorical.from_codes(np.zeros(len(rows), dtype=np.int8), categories=[label]),
            },
            index=names,
        )
        adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
        adata.obsm[SimulatedKeys.spatial] = coords[rows]
        return adata

    all_rows = np.arange(n_obs)
    adata1 = make(_csr(*counts1, n_genes), pos, all_rows, names1, "slice1")
    del counts1
    if len(keep) < n_obs:
        counts2 = _keep_rows(*counts2, keep)
    adata2 = make(
        _csr(*counts2, n_genes), pos2, keep, np.array([f"b_cell{i}" for i in keep.tolist()], dtype=object), "slice2"
    )
    adata2.obs[SimulatedKeys.true_match] = names1[keep]  # the same string objects as adata1's names
    return adata1, adata2
