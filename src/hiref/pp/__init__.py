"""Preprocessing: bring two slices into one frame before aligning them."""

from __future__ import annotations

from ._register import register

__all__ = ["register"]
