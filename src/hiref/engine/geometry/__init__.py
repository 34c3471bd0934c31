"""Costs and the clouds the levels see.

How costs are computed and factorized (:mod:`.costs`), and the working copies of the clouds
(:mod:`.sketch`: centring, principal-axes projection).
"""

from __future__ import annotations

from hiref.engine.geometry.costs import Cost, Custom, Power, SqEuclidean, Transposed, get_cost

__all__ = ["Cost", "Custom", "Power", "SqEuclidean", "Transposed", "get_cost"]
