"""Plotting: read what ``hr.tl`` stored and draw it; every function returns matplotlib Axes."""

from __future__ import annotations

from ._alignment import alignment, displacement
from ._hierarchy import hierarchy, level_costs
from ._stack import stack
from ._transfer import transfer
from ._transitions import transitions

__all__ = ["alignment", "displacement", "hierarchy", "level_costs", "stack", "transfer", "transitions"]
