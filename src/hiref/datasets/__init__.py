"""Datasets: synthetic point-cloud pairs with known structure (real-data loaders follow)."""

from __future__ import annotations

from ._synthetic import checkerboard, halfmoon_scurve, maf_moons_rings, uniform_checkerboard

__all__ = ["checkerboard", "halfmoon_scurve", "maf_moons_rings", "uniform_checkerboard"]
