"""Datasets: synthetic point-cloud pairs of the HiRef paper and simulated tissue slices.

Real data: the small slices of ``../shared/data`` (:func:`merfish_hypothalamus`, :func:`paste_breast`), full public
datasets downloaded once with pooch (:func:`mosta`, :func:`merfish`) and a reader of Vizgen exports
(:func:`vizgen_receptor_map`).
"""

from __future__ import annotations

from ._downloads import merfish, mosta, vizgen_receptor_map
from ._planted import planted_pair
from ._point_clouds import checkerboard, gaussian_mixtures, halfmoon_scurve, maf_moons_rings, uniform_checkerboard
from ._shared_data import merfish_hypothalamus, paste_breast
from ._simulated_slices import simulate_slices

__all__ = [
    "checkerboard",
    "gaussian_mixtures",
    "halfmoon_scurve",
    "maf_moons_rings",
    "merfish",
    "merfish_hypothalamus",
    "mosta",
    "paste_breast",
    "planted_pair",
    "simulate_slices",
    "uniform_checkerboard",
    "vizgen_receptor_map",
]
