"""Re-solves by shortest augmenting paths: a solved graph given a few new arcs, made optimal again.

After pricing adds arcs to a graph whose matching and prices were optimal (every row within
``eps`` of its best), only the rows given new arcs can have lost that. The auction would free
them and bid from the start ``eps`` down again; but each freed row leaves an object behind that
some chain of exchanges must reach, and the bids that find it walk the graph by small price
rises, over the whole region (3·10^5-cell recipe: 4,073 rows freed, 2.8 million bids in the
first phase, then ~200,000 rows freed in every later phase).

Here each freed row instead finds its cheapest chain at once (Dijkstra on the reduced costs
``c(i, j) + p(j) - c(i, mate(i)) - p(mate(i))``, the successive shortest paths of the Hungarian
method), to the nearest object that nobody holds; the prices of the objects it scanned rise so
that the chain is tight and no reduced cost turns negative. Prices only rise, so the rows not
on a chain keep their slackness. The work is the region each search scans, not the graph: most
scan a handful of objects; where the cost landscape is flat, a row whose new arc beats its
object by much raises prices over a wide region, and its search scans all of it.

Reduced costs down to ``-eps`` (the slackness the matching came with) count as zero: the result
keeps that ``eps``-slackness. Balanced problems only: with more objects than rows, the objects
left over must all end the cheapest, which a chain that ends at one of them breaks; restoring
that by the auction's reverse bids after the searches was measured slower than the auction alone
(2.7·10^5 cells into 3·10^5 whose hierarchy ends 60 % above the optimum: no end in nine minutes
for the 194,000 rows of the first re-solve, against about 14 s). Exact searches for the partial
problem were measured too (the objects left over held by stand-in rows of cost 0 that share
the lowest price, one node of the search, from which a stand-in may take any other object,
cheapest first): equal to ``linear_sum_assignment`` on random rectangular graphs, but where the
cost landscape is flat each search reaches that node and scans far (the same cells, the
re-solve after pricing for 90,134 rows: 45 s and 93 million objects scanned, against 31 s by
the auction; the whole finish to the optimum 368 s against 132 s; 0.2 s against 0.5 s for
1,101 rows on a planted pair of 2**18 points cut at 90 %).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from hiref.engine.finish.auction import Graph


@cache
def _kernels() -> tuple[Callable, Callable]:
    """The compiled searches and release (compiled once, cached on disk; numba is imported here)."""
    from hiref.engine.finish import _augment_kernels

    return _augment_kernels.augment, _augment_kernels.release


def reassign(
    graph: Graph, mate: np.ndarray, prices: np.ndarray, rows: np.ndarray, eps: float, *, max_pops: int | None = None
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Make a matching with ``eps``-slackness on ``graph`` but for ``rows`` whole again, by shortest augmenting paths.

    Parameters
    ----------
    graph
        The problem, balanced (``graph.m == graph.n``); every row assignable.
    mate
        Object of every row (``-1``: none); every row not in ``rows`` holds its object within
        ``eps`` of its best under ``prices``.
    prices
        Prices of the objects, (m,).
    rows
        Rows that may have lost their slackness (e.g. given new arcs); those that did are freed
        and assigned again, with the rows already free.
    eps
        The slackness the matching keeps.
    max_pops
        Most objects scanned in all before giving up (``None``: no limit).

    Returns
    -------
    The object of every row, the prices and the number of objects scanned; ``None`` instead of
    the first two when the searches gave up.
    """
    if graph.m != graph.n:
        msg = f"reassign needs as many objects as rows, got {graph.n} rows and {graph.m} objects"
        raise ValueError(msg)
    mate = np.asarray(mate, dtype=np.int64).copy()
    prices = np.asarray(prices, dtype=np.float64).copy()
    owner = np.full(graph.m, -1, dtype=np.int64)
    assigned = mate >= 0
    owner[mate[assigned]] = np.flatnonzero(assigned)
    augment, release = _kernels()
    release(graph.indptr, graph.cols, graph.costs, prices, mate, owner, np.asarray(rows, dtype=np.int64), eps)
    free_rows = np.flatnonzero(mate < 0)
    limit = np.iinfo(np.int64).max if max_pops is None else int(max_pops)
    pops = augment(graph.indptr, graph.cols, graph.costs, prices, mate, owner, free_rows, limit)
    if pops < 0:  # -2: out of pops (all of them spent), -1: a row with no augmenting path
        return None, None, limit if pops == -2 else 0
    return mate, prices, int(pops)
