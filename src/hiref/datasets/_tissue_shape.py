"""The simulated tissue's geometry (numpy only): where :func:`.simulate_slices` puts its cells.

Kept apart from the expression so that benchmarks running with only the engine installed (no
anndata, e.g. ``benchmarks/gpu_finish.py`` on a GPU machine) make the same sections.
"""

from __future__ import annotations

import numpy as np


def tissue_positions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` cells uniform in an ellipse of semi-axes 50 x 35 with a lobe on one side, (n, 2).

    The lobe breaks the symmetry: a rotated or mirrored copy does not look the same.
    """
    pos = np.empty((0, 2))
    while len(pos) < n:
        cand = rng.uniform((-50, -35), (75, 55), size=(2 * n, 2))
        ellipse = (cand[:, 0] / 50) ** 2 + (cand[:, 1] / 35) ** 2 <= 1
        lobe = ((cand[:, 0] - 45) ** 2 + (cand[:, 1] - 30) ** 2) <= 22**2
        pos = np.concatenate([pos, cand[ellipse | lobe]])
    return pos[:n]


def bent(pos: np.ndarray, rng: np.random.Generator, deformation: float, jitter: float) -> np.ndarray:
    """``pos`` bent by a smooth field of amplitude ``deformation`` (relative to the tissue's 100 units), jittered."""
    bend = deformation * 100.0
    warped = pos + bend * np.column_stack([np.sin(pos[:, 1] / 25.0), np.sin(pos[:, 0] / 30.0)])
    return warped + jitter * rng.standard_normal(warped.shape)


def rotation_matrix(degrees: float) -> np.ndarray:
    """The 2 x 2 matrix of a rotation by ``degrees``."""
    theta = np.deg2rad(degrees)
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
