"""Simulated pairs of tissue slices with a known cell-to-cell correspondence."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hiref._keys import SimulatedKeys

if TYPE_CHECKING:
    from anndata import AnnData


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
    if not 0.0 <= missing < 1.0:
        msg = f"`missing` must be in [0, 1), got {missing!r}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)

    # Cells uniform in an ellipse of semi-axes 50 x 35 with a lobe on one side, so that the
    # tissue has no symmetry (a rotated or mirrored copy does not look the same).
    pos = np.empty((0, 2))
    while len(pos) < n_obs:
        cand = rng.uniform((-50, -35), (75, 55), size=(2 * n_obs, 2))
        ellipse = (cand[:, 0] / 50) ** 2 + (cand[:, 1] / 35) ** 2 <= 1
        lobe = ((cand[:, 0] - 45) ** 2 + (cand[:, 1] - 30) ** 2) <= 22**2
        pos = np.concatenate([pos, cand[ellipse | lobe]])
    pos = pos[:n_obs]
    centres = pos[rng.choice(n_obs, n_regions, replace=False)]
    region = np.argmin(((pos[:, None] - centres[None]) ** 2).sum(-1), 1)

    profiles = rng.gamma(0.6, 1.0, size=(n_regions, n_genes)) * 4.0
    size1 = rng.lognormal(0.0, 0.3, n_obs)
    size2 = rng.lognormal(0.0, 0.3, n_obs)
    counts1 = rng.poisson(profiles[region] * size1[:, None]).astype(np.float32)
    counts2 = rng.poisson(profiles[region] * size2[:, None]).astype(np.float32)

    bend = deformation * 100.0
    warped = pos + bend * np.column_stack([np.sin(pos[:, 1] / 25.0), np.sin(pos[:, 0] / 30.0)])
    warped += jitter * rng.standard_normal(warped.shape)
    theta = np.deg2rad(rotation)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pos2 = warped @ rot.T + np.asarray(translation, dtype=float)

    names1 = np.array([f"cell{i}" for i in range(n_obs)])
    keep = np.sort(rng.choice(n_obs, n_obs - round(missing * n_obs), replace=False))
    genes = pd.Index([f"gene{g}" for g in range(n_genes)])
    categories = [f"region{r}" for r in range(n_regions)]

    def make(counts: np.ndarray, coords: np.ndarray, rows: np.ndarray, prefix: str, label: str) -> AnnData:
        obs = pd.DataFrame(
            {
                SimulatedKeys.region: pd.Categorical(np.array(categories)[region[rows]], categories=categories),
                SimulatedKeys.slice: pd.Categorical([label] * len(rows)),
            },
            index=[f"{prefix}{i}" for i in rows],
        )
        adata = AnnData(X=sp.csr_matrix(counts[rows]), obs=obs, var=pd.DataFrame(index=genes))
        adata.obsm[SimulatedKeys.spatial] = coords[rows]
        return adata

    adata1 = make(counts1, pos, np.arange(n_obs), "cell", "slice1")
    adata2 = make(counts2, pos2, keep, "b_cell", "slice2")
    adata2.obs[SimulatedKeys.true_match] = names1[keep]
    return adata1, adata2
