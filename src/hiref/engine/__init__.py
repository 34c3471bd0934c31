"""The HiRef engine: arrays in, arrays out (numpy/torch); no AnnData here."""

from __future__ import annotations

from .schedule import rank_schedule
from .solve import Matching, solve

__all__ = ["Matching", "rank_schedule", "solve"]
