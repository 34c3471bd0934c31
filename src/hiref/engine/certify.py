"""How a certificate reads in a summary line (shared by ``hr.tl.align`` and the ``hiref`` command)."""

from __future__ import annotations

import math


def describe_bound(gap_bound: float | None) -> str:
    """A summary phrase for :attr:`hiref.engine.Matching.gap_bound`.

    Examples
    --------
    >>> describe_bound(2.5e-7)
    'at most 0.00002 % above the optimum (certified)'
    >>> describe_bound(None)
    'no optimality bound computed'
    """
    if gap_bound is None or (isinstance(gap_bound, float) and math.isnan(gap_bound)):
        return "no optimality bound computed"
    if math.isinf(gap_bound):
        return "no useful optimality bound (the dual bound is not positive)"
    return f"at most {100 * gap_bound:.5f} % above the optimum (certified)"
