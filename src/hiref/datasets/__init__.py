"""Datasets: synthetic point-cloud pairs of the HiRef paper and simulated tissue slices."""

from __future__ import annotations

from ._simulate import simulate_slices
from ._synthetic import checkerboard, gaussian_mixtures, halfmoon_scurve, maf_moons_rings, uniform_checkerboard

__all__ = [
    "checkerboard",
    "gaussian_mixtures",
    "halfmoon_scurve",
    "maf_moons_rings",
    "simulate_slices",
    "uniform_checkerboard",
]
