"""Getters: read what ``hr.tl`` stored in AnnData objects."""

from __future__ import annotations

from ._coupling import coupling
from ._matching import matching

__all__ = ["coupling", "matching"]
