"""The exact finish's candidate arcs: neighbourhoods, the sparse problem they make, and its exact costs.

Every point ``x`` of the smaller cloud may keep its partner ``T(x)`` or take one of its ``k``
nearest points of the other cloud, the ``k`` nearest neighbours of ``T(x)``, or the partners of
its ``k`` nearest neighbours (:class:`Neighbourhoods`). :class:`SparseProblem` holds those arcs
with their exact costs and grows as pricing adds the arcs the graph lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from scipy.spatial import cKDTree

from hiref.engine.finish import batched_search
from hiref.engine.finish.auction import Graph
from hiref.engine.finish.neighbours import TREE_MAX_DIM, candidate_neighbours, nearest, nearest_on_device, search_index
from hiref.engine.geometry.costs import Cost


class Neighbourhoods:
    """Each cloud's nearest neighbours, in the coordinates where neighbours are sought.

    Parameters
    ----------
    A, B
        (n, d) and (m, d), ``n <= m``.
    k
        Neighbours of each kind (see the module docstring).
    across
        Whether to seek each point's nearest points of the other cloud (``False``: ``near_b``
        is empty, the first pricing gives those candidates).
    within
        Whether to seek each cloud's nearest points of its own (``False``: ``b_near_b`` and
        ``near_a`` are empty).
    """

    def __init__(
        self, A: np.ndarray | torch.Tensor, B: np.ndarray | torch.Tensor, k: int, *, across: bool = True,
        within: bool = True,
    ) -> None:  # fmt: skip
        self.n, self.m, self.k = A.shape[0], B.shape[0], k
        index = index_dtype(self.m)
        k_within = k if within else -1  # (k + 1 nearest, the point itself dropped)
        if isinstance(A, torch.Tensor) and batched_search.on_device(A.device):
            B = B.to(A.device)
            near_b = nearest_on_device(B, A, k if across else 0)
            b_near_b = nearest_on_device(B, B, k_within + 1)[:, 1:]
            near_a = nearest_on_device(A, A, k_within + 1)[:, 1:]
        else:
            if isinstance(A, torch.Tensor):
                A, B = A.double().cpu().numpy(), B.double().cpu().numpy()
            near_b, b_near_b, near_a = self._on_host(A, B, k, across=across, within=within)
        self.near_b, self.b_near_b = near_b.astype(index), b_near_b.astype(index)
        self.near_a = near_a.astype(index_dtype(self.n))

    @staticmethod
    def _on_host(
        A: np.ndarray, B: np.ndarray, k: int, *, across: bool, within: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """The three neighbourhoods by k-d trees (low dimensions) or exact distances in chunks."""
        k_across = k if across else 0
        if not within:
            near_b = candidate_neighbours(B, A, k_across) if k_across else np.empty((A.shape[0], 0), dtype=np.int64)
            return near_b, np.empty((B.shape[0], 0), dtype=np.int64), np.empty((A.shape[0], 0), dtype=np.int64)
        if B.shape[1] <= TREE_MAX_DIM:
            index_a, index_b = search_index(A), search_index(B)
            # a tree's queries are asked in its own points' order (one tree orders the other's)
            order_a = index_a.indices if isinstance(index_a, cKDTree) else None
            order_b = index_b.indices if isinstance(index_b, cKDTree) else None
            near_b = nearest(index_b, A, k_across, order=order_a)  # (n, k) points of B near each point of A
            b_near_b = nearest(index_b, B, k + 1, order=order_b)[:, 1:]  # (m, k) points of B near B
            near_a = nearest(index_a, A, k + 1, order=order_a)[:, 1:]  # (n, k) points of A near A
            return near_b, b_near_b, near_a
        near = candidate_neighbours
        return near(B, A, k_across), near(B, B, k + 1)[:, 1:], near(A, A, k + 1)[:, 1:]

    def arcs(self, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate pairs under the current partners ``perm`` (n,), those pairs included.

        Returns unique ``cols`` grouped by row, and the row pointers (n + 1,).
        """
        perm = perm.astype(self.near_b.dtype)
        candidates = np.concatenate(
            [perm[:, None], self.near_b, self.b_near_b[perm], perm[self.near_a]], axis=1
        )  # fmt: skip
        return unique_rows(candidates, overwrite=True)


@cache
def _graph_kernels() -> tuple[Callable, Callable]:
    """The compiled membership test of arcs in the graph and merge of new arcs (compiled once, cached on disk)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def held(indptr, cols, rows, new_cols, out):  # pragma: no cover
        for t in range(rows.shape[0]):
            out[t] = False
            for e in range(indptr[rows[t]], indptr[rows[t] + 1]):
                if cols[e] == new_cols[t]:
                    out[t] = True
                    break

    @numba.njit(cache=True, nogil=True)
    def merge(indptr, cols, costs, total, rows, new_cols, new_costs):  # pragma: no cover
        # in place, from the last row back: every row's old arcs, then its new ones (rows
        # sorted); a row only moves towards the end, past rows already moved
        t, at = rows.shape[0] - 1, total + rows.shape[0]
        for i in range(indptr.shape[0] - 2, -1, -1):
            end = indptr[i + 1]
            indptr[i + 1] = end + t + 1  # new arcs in rows up to i
            while t >= 0 and rows[t] == i:
                at -= 1
                cols[at] = new_cols[t]
                if new_costs.shape[0]:  # (else the caller writes them)
                    costs[at] = new_costs[t]
                t -= 1
            for e in range(end - 1, indptr[i] - 1, -1):
                at -= 1
                cols[at], costs[at] = cols[e], costs[e]

    return held, merge


def index_dtype(size: int) -> type:
    """The smallest integer type for indices into ``size`` points (arcs are stored compactly)."""
    return np.int32 if size < 2**31 else np.int64


def unique_rows(candidates: np.ndarray, *, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The distinct entries of every row of ``candidates`` (n, k), as columns and row pointers.

    ``overwrite``: sort ``candidates`` in place (saves a copy of them).
    """
    if overwrite:
        candidates.sort(axis=1)
    else:
        candidates = np.sort(candidates, axis=1)
    keep = np.ones(candidates.shape, dtype=bool)
    keep[:, 1:] = candidates[:, 1:] != candidates[:, :-1]
    indptr = np.zeros(candidates.shape[0] + 1, dtype=np.int64)
    np.cumsum(keep.sum(1), out=indptr[1:])
    return candidates[keep], indptr


def candidate_arcs(A: np.ndarray, B: np.ndarray, perm: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs ``(i, j)`` for points ``A[i]`` and ``B[j]``, the current pairs included.

    Parameters
    ----------
    A, B
        Coordinates in which neighbours are sought, (n, d) and (m, d), ``n <= m``.
    perm
        Current partner in ``B`` of every point of ``A``, (n,).
    k
        Neighbours of each kind (see the module docstring).

    Returns
    -------
    Unique ``rows`` into A and ``cols`` into B.
    """
    cols, indptr = Neighbourhoods(A, B, k).arcs(np.asarray(perm, dtype=np.int64))
    return np.repeat(np.arange(A.shape[0], dtype=np.int64), np.diff(indptr)), cols


#: New arcs whose costs are computed at once when they are merged into the graph.
_COST_CHUNK = 1 << 20


class SparseProblem:
    """The sparse problem of one finish: its arcs so far, with costs divided by ``scale``.

    The arcs live in buffers with room to grow: pricing adds a few arcs to a graph of tens of
    millions, merged in place (a copy would hold the graph twice; 2**20 planted points: 0.2 GB).
    Room never written is never resident.
    """

    def __init__(self, geometry: Cost, A: torch.Tensor, B: torch.Tensor, scale: float) -> None:
        self.geometry, self.A, self.B, self.scale = geometry, A, B, scale
        self.n, self.m = A.shape[0], B.shape[0]
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        self._cols = np.empty(0, dtype=index_dtype(self.m))
        self._costs = np.empty(0, dtype=np.float64)

    @property
    def cols(self) -> np.ndarray:
        """Column of every arc, grouped by row (a view of the buffer)."""
        return self._cols[: self.indptr[-1]]

    @property
    def costs(self) -> np.ndarray:
        """Cost of every arc divided by the scale (a view of the buffer)."""
        return self._costs[: self.indptr[-1]]

    def add(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Add the arcs ``(rows, cols)``: new, distinct and sorted by row (exact costs, divided by the scale).

        The arcs are merged row by row in place, in time linear in the arcs, however few are added.
        """
        rows, cols = np.asarray(rows), np.asarray(cols, dtype=self._cols.dtype)
        if rows.size == 0:
            return
        total, added = int(self.indptr[-1]), rows.shape[0]
        if total + added > self._cols.shape[0]:
            self._grow(2 * (total + added))
        if total == 0:  # the first arcs: costs straight into the buffer
            self._cols[:added] = cols
            self.cost(rows, cols, out=self._costs[:added])
            np.cumsum(np.bincount(rows, minlength=self.n), out=self.indptr[1:])
            return
        # merged without their costs, which are then computed a chunk at a time into the places
        # the new arcs took: no array of all their costs (at 10^6 cells, 25 million: 0.2 GB)
        _graph_kernels()[1](self.indptr, self._cols, self._costs, total, rows, cols, np.empty(0))
        counts = np.bincount(rows, minlength=self.n)
        # new arc t of row i (the t-th of its entries in ``rows``) lands at t + shift[i]: where
        # the row's new arcs begin in the graph, less where its entries begin in ``rows``
        shift = self.indptr[1:] - counts - (np.cumsum(counts) - counts)
        del counts
        for lo in range(0, added, _COST_CHUNK):
            r, c = rows[lo : lo + _COST_CHUNK], cols[lo : lo + _COST_CHUNK]
            self._costs[np.arange(lo, lo + r.shape[0]) + shift[r]] = self.cost(r, c)

    def _grow(self, capacity: int) -> None:
        """Move the arcs to buffers of ``capacity`` arcs."""
        total = int(self.indptr[-1])
        cols, costs = np.empty(capacity, dtype=self._cols.dtype), np.empty(capacity)
        cols[:total], costs[:total] = self._cols[:total], self._costs[:total]
        self._cols, self._costs = cols, costs

    def add_candidates(self, rows: np.ndarray, candidates: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
        """Add the arcs from each of ``rows`` (sorted, distinct) to its ``candidates`` that are not there yet.

        ``candidates`` has one row per entry of ``rows``; returns the rows that got new arcs.
        ``overwrite``: ``candidates`` may be sorted in place (saves a copy of them).
        """
        candidates = np.asarray(candidates, dtype=self.cols.dtype).reshape(len(rows), -1)
        cols, indptr = unique_rows(candidates, overwrite=overwrite)
        del candidates
        rows = np.repeat(np.asarray(rows, dtype=index_dtype(self.n)), np.diff(indptr))
        del indptr
        held = np.empty(rows.shape[0], dtype=bool)
        _graph_kernels()[0](self.indptr, self.cols, rows, cols, held)
        np.logical_not(held, out=held)
        rows, cols = rows[held], cols[held]
        del held
        self.add(rows, cols)
        del cols
        first = np.ones(rows.shape[0], dtype=bool)  # the first arc of each row (rows stay sorted)
        np.not_equal(rows[1:], rows[:-1], out=first[1:])
        return rows[first]

    def cost(self, rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Costs of the arcs ``(rows, cols)``, divided by the scale (exactly as stored; into ``out`` if given)."""
        costs = self.geometry.paired_at(self.A, self.B, rows, cols, out=out)
        costs /= self.scale
        return costs

    def graph(self) -> Graph:
        """The arcs so far, as one compressed-row graph (its arrays are valid until the next :meth:`add`)."""
        return Graph(self.indptr.copy(), self.cols, self.costs, self.m)
