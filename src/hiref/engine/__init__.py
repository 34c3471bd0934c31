"""The HiRef engine: arrays in, arrays out (numpy/torch); no AnnData here."""

from __future__ import annotations

from ._labels import LevelLabels
from .costs import Cost, Custom, Power, SqEuclidean
from .distributed import row_ranges
from .schedule import rank_schedule
from .matching import Matching
from .options import SolveOptions
from .solve import solve

__all__ = ["Cost", "Custom", "LevelLabels", "Matching", "Power", "SolveOptions", "SqEuclidean", "rank_schedule", "row_ranges", "solve"]
