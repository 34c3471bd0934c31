"""Getters: read what ``hr.tl`` stored in AnnData objects."""

from __future__ import annotations

from ._matching import matching

__all__ = ["matching"]
