"""hiref: one-to-one alignment of datasets by Hierarchical Refinement optimal transport."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import datasets, engine, get, pl, pp, tl
from .engine import Matching, rank_schedule, solve

try:
    __version__ = version("hiref")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["Matching", "__version__", "datasets", "engine", "get", "pl", "pp", "rank_schedule", "solve", "tl"]
