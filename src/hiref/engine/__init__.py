"""The HiRef engine: arrays in, arrays out (numpy/torch); no AnnData here."""

from __future__ import annotations

from .costs import Cost, Custom, Power, SqEuclidean
from .schedule import rank_schedule
from .solve import Matching, solve

__all__ = ["Cost", "Custom", "Matching", "Power", "SqEuclidean", "rank_schedule", "solve"]
