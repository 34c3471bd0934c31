"""The compiled loops of :mod:`.augment`: Dijkstra's searches over a sparse graph with a binary heap.

Module-level functions, so that numba caches on disk the search together with the heap
functions it calls (defined inside a function, the search was compiled again in every process:
1.2 s).
"""

from __future__ import annotations

import numba
import numpy as np


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
        # row r, reached at distance d and valuing its object at `value` (the free row: at its
        # best), reaches the objects of its arcs not scanned yet at d plus the reduced cost
        r, d, value = start, 0.0, base
        target, total = -1, 0.0
        # the nearest free object reached so far: objects beyond it cannot end the search first,
        # so they are neither recorded nor pushed (in a flat landscape most arcs lead there)
        limit = np.inf
        while True:
            for k in range(indptr[r], indptr[r + 1]):
                j = cols[k]
                if done[j]:
                    continue
                nd = d + max(0.0, costs[k] + prices[j] - value)
                if nd < dist[j] and nd <= limit:
                    if dist[j] == np.inf:
                        seen[n_seen] = j
                        n_seen += 1
                    if owner[j] < 0:
                        limit = nd
                    dist[j], pred[j], pred_cost[j] = nd, r, costs[k]
                    if size == heap_d.shape[0]:
                        size = compact(heap_d, heap_j, size, dist, done)
                    size = push(heap_d, heap_j, size, nd, j)
            j = -1  # the nearest object not scanned yet
            while size > 0:
                d, j = heap_d[0], heap_j[0]
                size = pop(heap_d, heap_j, size)
                if not done[j] and d <= dist[j]:
                    break
                j = -1
            if j < 0:
                break
            pops += 1
            if owner[j] < 0:
                target, total = j, d
                break
            done[j] = True
            r = owner[j]
            value = held[r] + prices[j]
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
