"""The HiRef engine: arrays in, arrays out (numpy/torch); no AnnData here."""

from __future__ import annotations

from hiref.engine.distributed.comm import row_ranges
from hiref.engine.geometry.costs import Cost, Custom, Power, SqEuclidean
from hiref.engine.labels import LevelLabels
from hiref.engine.matching import Matching
from hiref.engine.options import SolveOptions
from hiref.engine.schedule import rank_schedule
from hiref.engine.solve import solve

__all__ = [
    "Cost",
    "Custom",
    "LevelLabels",
    "Matching",
    "Power",
    "SolveOptions",
    "SqEuclidean",
    "rank_schedule",
    "row_ranges",
    "solve",
]
