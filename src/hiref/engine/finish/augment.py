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
for the 194,000 rows of the first re-solve, against about 14 s).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from hiref.engine.finish.auction import Graph


@cache
def _kernels() -> tuple[Callable, Callable]:
    """The compiled searches (compiled once, cached on disk)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def push(heap_d, heap_j, size, d, j):  # pragma: no cover
        at = size
        while at > 0:
            up = (at - 1) >> 1
            if heap_d[up] <= d:
                break
            heap_d[at], heap_j[at] = heap_d[up], heap_j[up]
            at = up
        heap_d[at], heap_j[at] = d, j
        return size + 1

    @numba.njit(cache=True, nogil=True)
    def pop(heap_d, heap_j, size):  # pragma: no cover
        # removes the root; the caller read it before
        size -= 1
        d, j = heap_d[size], heap_j[size]
        at = 0
        while True:
            child = 2 * at + 1
            if child >= size:
                break
            if child + 1 < size and heap_d[child + 1] < heap_d[child]:
                child += 1
            if heap_d[child] >= d:
                break
            heap_d[at], heap_j[at] = heap_d[child], heap_j[child]
            at = child
        if size > 0:
            heap_d[at], heap_j[at] = d, j
        return size

    @numba.njit(cache=True, nogil=True)
    def compact(heap_d, heap_j, size, dist, done):  # pragma: no cover
        # drops stale entries (an object scanned, or pushed again since at a lower distance)
        kept = 0
        for t in range(size):
            j = heap_j[t]
            if not done[j] and heap_d[t] == dist[j]:
                kept = push(heap_d, heap_j, kept, heap_d[t], j)
        return kept

    @numba.njit(cache=True, nogil=True)
    def augment(indptr, cols, costs, prices, mate, owner, free_rows, max_pops):  # pragma: no cover
        m = prices.shape[0]
        dist = np.full(m, np.inf)
        pred = np.full(m, -1, dtype=np.int64)
        pred_cost = np.empty(m)  # cost of the arc by which an object was reached
        held = np.zeros(mate.shape[0])  # cost of every row's arc to its object
        for i in range(mate.shape[0]):
            for k in range(indptr[i], indptr[i + 1]):
                if cols[k] == mate[i]:
                    held[i] = costs[k]
                    break
        done = np.zeros(m, dtype=np.bool_)
        seen = np.empty(m, dtype=np.int64)  # objects reached in this search
        heap_d, heap_j = np.empty(m + 1), np.empty(m + 1, dtype=np.int64)
        pops = 0
        for start in free_rows:
            n_seen, size = 0, 0
            base = np.inf
            for k in range(indptr[start], indptr[start + 1]):
                base = min(base, costs[k] + prices[cols[k]])
            for k in range(indptr[start], indptr[start + 1]):
                j = cols[k]
                d = costs[k] + prices[j] - base
                if d < dist[j]:
                    if dist[j] == np.inf:
                        seen[n_seen] = j
                        n_seen += 1
                    dist[j], pred[j], pred_cost[j] = d, start, costs[k]
                    if size == heap_d.shape[0]:
                        size = compact(heap_d, heap_j, size, dist, done)
                    size = push(heap_d, heap_j, size, d, j)
            target, total = -1, 0.0
            while size > 0:
                d, j = heap_d[0], heap_j[0]
                size = pop(heap_d, heap_j, size)
                if done[j] or d > dist[j]:
                    continue
                pops += 1
                if owner[j] < 0:
                    target, total = j, d
                    break
                done[j] = True
                r = owner[j]
                value = held[r] + prices[j]
                for k in range(indptr[r], indptr[r + 1]):
                    jj = cols[k]
                    if done[jj]:
                        continue
                    nd = d + max(0.0, costs[k] + prices[jj] - value)
                    if nd < dist[jj]:
                        if dist[jj] == np.inf:
                            seen[n_seen] = jj
                            n_seen += 1
                        dist[jj], pred[jj], pred_cost[jj] = nd, r, costs[k]
                        if size == heap_d.shape[0]:
                            size = compact(heap_d, heap_j, size, dist, done)
                        size = push(heap_d, heap_j, size, nd, jj)
            if target < 0 or pops > max_pops:
                return -1 if target < 0 else -2
            # prices of the scanned objects rise by what the chain costs beyond them: the chain
            # becomes tight, every reduced cost stays non-negative
            for t in range(n_seen):
                j = seen[t]
                if done[j]:
                    prices[j] += total - dist[j]
            # the chain: each row on it takes the object it reached, from the free row's end back
            j = target
            while True:
                r = pred[j]
                previous = mate[r]
                mate[r], owner[j], held[r] = j, r, pred_cost[j]
                if r == start:
                    break
                j = previous
            for t in range(n_seen):
                j = seen[t]
                dist[j], pred[j], done[j] = np.inf, -1, False
        return pops

    @numba.njit(cache=True, nogil=True)
    def release(indptr, cols, costs, prices, mate, owner, rows, eps):  # pragma: no cover
        # frees the rows of `rows` whose object is not within eps of their best (and those objects)
        for i in rows:
            j = mate[i]
            if j < 0:
                continue
            best, current = np.inf, np.inf
            for k in range(indptr[i], indptr[i + 1]):
                value = costs[k] + prices[cols[k]]
                best = min(best, value)
                if cols[k] == j:
                    current = value
            if current > best + eps:
                mate[i], owner[j] = -1, -1

    return augment, release


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
    if pops < 0:
        return None, None, 0
    return mate, prices, int(pops)
