"""Exact nearest neighbours: a grid of cells in the plane, k-d trees in low dimensions, exact distances above."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from scipy.spatial import cKDTree

from hiref.engine.finish import batched_search
from hiref.engine.finish.batched_search import nearest_batched
from hiref.engine.geometry.scan import smallest
from hiref.engine.threads import in_slices

#: Largest dimension for which neighbours come from a k-d tree; above it, from exact distances
#: computed in chunks (a tree degrades to a scan there anyway).
TREE_MAX_DIM = 16
#: Fewest queries that are put in spatial order before a k-d tree search.
_ORDER_MIN = 1 << 14
#: Fewest points for which plane points are searched in a grid (:class:`PlaneGrid`) rather than
#: a k-d tree.
GRID_MIN = 1 << 12
#: Mean points per occupied cell of a :class:`PlaneGrid`.
_PER_CELL = 2.0
#: Most points in one cell of a :class:`PlaneGrid`: points more unevenly spread are searched in a
#: k-d tree (a grid's cells cannot follow their density).
_CELL_MOST = 64
#: Rings of cells a grid search scans around a query's cell before leaving it to the k-d tree
#: (a query far from every point: outside their outline, or across a gap).
_MAX_RING = 12


@cache
def _grid_kernels():
    """The compiled bucketing and searches of :class:`PlaneGrid` (compiled once, cached on disk)."""
    from hiref.engine.finish import _grid_kernels

    return _grid_kernels


class PlaneGrid:
    """Points of the plane bucketed in square cells, for exact nearest-neighbour searches.

    Where points are spread fairly evenly (tissue sections, lattices), a search scans the
    rings of cells around its query until the ``k``-th nearest point found is nearer than any
    cell not scanned: a million points in the plane, 2 cores, the 9 nearest of a million queries
    in 0.39 s, bucketing included, against 0.68-1.03 s for the k-d tree's query alone. Ties in
    distance are broken by the points' indices. Build with :meth:`of`, which declines points
    spread too unevenly; queries far from every point go to a k-d tree built when first needed.
    """

    def __init__(self, points: np.ndarray, lo: np.ndarray, h: float, shape: tuple[int, int]) -> None:
        self.points, self.n = points, points.shape[0]
        self.lo, self.h, self.shape = lo, h, shape
        self.start, self.order, self.sorted = _grid_kernels().bucket(points, lo[0], lo[1], h, *shape)
        self._tree: cKDTree | None = None

    @classmethod
    def of(cls, points: np.ndarray) -> PlaneGrid | None:
        """A grid of ``points`` (q, 2), or ``None`` where they are too few or too unevenly spread for one."""
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < GRID_MIN:
            return None
        points = np.ascontiguousarray(points, dtype=np.float64)
        lo, hi = points.min(0), points.max(0)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return None
        extent = hi - lo
        if not (extent > 0).all():
            return None
        h = float(np.sqrt(extent[0] * extent[1] * _PER_CELL / points.shape[0]))
        for _ in range(2):  # once more with cells sized to the occupied area
            shape = (int(extent[0] / h) + 1, int(extent[1] / h) + 1)
            if shape[0] * shape[1] > 4 * points.shape[0] + 16:
                return None
            grid = cls(points, lo, h, shape)
            counts = np.diff(grid.start)
            per_cell = points.shape[0] / max(1, np.count_nonzero(counts))
            if per_cell <= 2 * _PER_CELL:
                break
            h /= np.sqrt(per_cell / _PER_CELL)
        return grid if counts.max() <= _CELL_MOST else None

    @property
    def tree(self) -> cKDTree:
        """A k-d tree of the same points (built at first use)."""
        if self._tree is None:
            self._tree = search_tree(self.points)
        return self._tree

    def nearest(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Indices (q, k) of the ``k`` nearest points of every query, nearest first."""
        queries = np.ascontiguousarray(queries, dtype=np.float64)
        k = min(k, self.n)
        out = np.empty((queries.shape[0], k), dtype=np.int64)
        if k == 0 or queries.shape[0] == 0:
            return out
        kern = _grid_kernels()
        order = kern.query_order(queries, self.lo[0], self.lo[1], self.h, *self.shape)
        gave_up = np.empty(queries.shape[0], dtype=np.bool_)

        def run(lo: int, hi: int) -> None:
            kern.nearest_slice(
                queries, order[lo:hi], self.start, self.order, self.sorted, self.lo[0], self.lo[1], self.h,
                *self.shape, k, _MAX_RING, out, gave_up[lo:hi],
            )  # fmt: skip

        in_slices(queries.shape[0], run, least=1024)
        far = order[gave_up]
        if far.size:
            out[far] = nearest(self.tree, queries[far], k)
        return out


def search_index(points: np.ndarray) -> PlaneGrid | cKDTree:
    """The index :func:`nearest` searches ``points`` (q, d) in: a :class:`PlaneGrid` where one fits, else a k-d tree."""
    return PlaneGrid.of(points) or search_tree(points)


def search_tree(points: np.ndarray) -> cKDTree:
    """A k-d tree of ``points`` (q, d) for nearest-neighbour queries.

    Split at sliding midpoints, not medians, with nodes not shrunk to their points' box: a
    million points in the plane, 2 cores, two trees built in 0.32 s instead of 0.65 s, and the
    queries of the finish's neighbourhoods (8 and 9 neighbours) 0.53-0.58 s instead of 0.61-0.77 s.
    """
    return cKDTree(points, balanced_tree=False, compact_nodes=False)


def spatial_order(points: np.ndarray) -> np.ndarray:
    """A permutation of ``points`` (q, d) that keeps nearby points close in memory (a k-d tree's order)."""
    return search_tree(points).indices


def nearest(
    points: np.ndarray | cKDTree | PlaneGrid, queries: np.ndarray, k: int, *, order: np.ndarray | None = None
) -> np.ndarray:
    """Indices (q, k) of the ``k`` nearest ``points`` (or points of an index) of every query, nearest first.

    Many queries are asked of a tree in a spatial ``order`` (computed when not given):
    neighbouring queries then visit the same tree nodes, which makes the search about three
    times faster on a million points in the plane. (A grid orders its queries itself.)
    """
    if isinstance(points, PlaneGrid):
        return points.nearest(queries, k)
    if isinstance(points, cKDTree):
        k = min(k, points.n)
        if k == 0:
            return np.empty((queries.shape[0], 0), dtype=np.int64)
        if order is None and queries.shape[0] >= _ORDER_MIN and queries.shape[1] <= TREE_MAX_DIM:
            order = spatial_order(queries)
        if order is None:
            _, idx = points.query(queries, k, workers=-1)
            return np.asarray(idx, dtype=np.int64).reshape(queries.shape[0], k)
        _, idx = points.query(queries[order], k, workers=-1)
        out = np.empty((queries.shape[0], k), dtype=np.int64)
        out[order] = np.asarray(idx, dtype=np.int64).reshape(queries.shape[0], k)
        return out
    k = min(k, points.shape[0])
    if k == 0:
        return np.empty((queries.shape[0], 0), dtype=np.int64)
    if points.shape[1] <= TREE_MAX_DIM:
        return nearest(search_index(points), queries, k)
    return _nearest_exact(torch.from_numpy(points), torch.from_numpy(queries), k)


def nearest_on_device(points: torch.Tensor, queries: torch.Tensor, k: int) -> np.ndarray:
    """Indices (q, k) of the ``k`` nearest ``points`` of every query, computed on the points' device.

    In low dimensions by the batched exact search (:mod:`.batched_search`), above by exact
    distances in chunks: no host round trip but the answer's.
    """
    k = min(k, points.shape[0])
    if k == 0:
        return np.empty((queries.shape[0], 0), dtype=np.int64)
    if points.shape[1] <= TREE_MAX_DIM:
        return nearest_batched(points, queries, k).cpu().numpy()
    return _nearest_exact(points, queries, k)


def nearest_points(points: torch.Tensor, queries: torch.Tensor, k: int) -> np.ndarray:
    """Indices (q, k) of the ``k`` nearest ``points`` of every query, on their device (a point finds itself)."""
    if batched_search.on_device(points.device):
        return nearest_on_device(points, queries.to(points.device), k)
    P = points.double().cpu().numpy()
    return nearest(search_index(P) if P.shape[1] <= TREE_MAX_DIM else P, queries.double().cpu().numpy(), k)


def candidate_neighbours(points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices (q, k) of near ``points`` of every query, for candidate arcs.

    As :func:`nearest`, but ranked in float32 above :data:`TREE_MAX_DIM`: candidates need not
    be the exact nearest (their arcs' costs are exact, and pricing adds any arc they miss). In
    float32 (centred) a near-tie may come out in either order, at about 0.6 of the time (4,096
    points in 30 dimensions, 2 cores: 0.032 s against 0.053 s a search).
    """
    if points.shape[1] <= TREE_MAX_DIM or min(k, points.shape[0]) == 0:
        return nearest(points, queries, k)
    return _nearest_exact(torch.from_numpy(points), torch.from_numpy(queries), min(k, points.shape[0]), torch.float32)


def _nearest_exact(
    points: torch.Tensor, queries: torch.Tensor, k: int, dtype: torch.dtype = torch.float64
) -> np.ndarray:  # fmt: skip
    """Nearest points by distances over all pairs (:func:`.scan.smallest`), on the points' device.

    Ranked in ``dtype`` (exact in float64) after centring, so that no large norms cancel.
    """
    points, queries = points.double(), queries.double().to(points.device)
    centre = points.mean(0)
    P = (points - centre).to(dtype)
    # |q - p|^2 - |q|^2: the same order along a row
    return smallest((queries - centre).to(dtype), P, (P * P).sum(1), k)[1].cpu().numpy().astype(np.int64)
