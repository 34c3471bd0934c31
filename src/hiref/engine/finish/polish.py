"""Exact polishing of a matching over a sparse graph of candidate partners.

The hierarchy gets the large scale right but, on near-uniform clouds (tissue sections, lattices),
every split cuts through a band of optimal pairs, and the two sides of a cut never quite
correspond; the damage adds up level by level. Windows of neighbouring pairs
(:mod:`.windows`) repair what lies inside a window, but not a surplus on one stretch of a
boundary that must flow along it to a deficit elsewhere.

Polishing solves the assignment problem *exactly on a sparse graph*: every point ``x`` of the
smaller cloud may keep its partner ``T(x)`` or take one of

- its ``k`` nearest points of the other cloud,
- the ``k`` nearest neighbours of its partner ``T(x)`` (corrections of the current map), and
- the partners of its ``k`` nearest neighbours (the displacement of its neighbourhood),

and the whole graph is solved at once by a cost-scaling assignment algorithm (Goldberg and
Kennedy 1995, in OR-Tools), so mass can move along a boundary as far as it needs to. The
current matching is one of the graph's solutions, so a pass never raises the cost; passes
repeat with the new partners' neighbourhoods until the gain is negligible. Clouds larger than
``block`` points are polished in blocks of neighbouring pairs (a random-projection tree, as in
:mod:`.windows`), with new blocks every pass.

Unmatched points of the larger cloud are handled by dummy points of zero cost: each point of
the larger cloud can be left out through a few random dummies, and the currently unmatched
ones through their own, so the current matching stays feasible.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.spatial import cKDTree

from hiref.engine.finish.leaves import mean_paired_cost
from hiref.engine.finish.windows import pair_windows

if TYPE_CHECKING:
    from hiref.engine.geometry.costs import Cost

#: Largest dimension for which neighbours come from a k-d tree; above it, from exact distances
#: computed in chunks (a tree degrades to a scan there anyway).
_TREE_MAX_DIM = 16
#: The assignment solver works on integer costs, and its prices grow to about the largest cost
#: times the square of the number of nodes: arc costs are scaled so that this stays below 2**62.
_PRICE_RANGE = 2.0**62


def _nearest(points: np.ndarray | cKDTree, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices (q, k) of the ``k`` nearest ``points`` (or points of a tree) of every query."""
    if isinstance(points, cKDTree):
        k = min(k, points.n)
        _, idx = points.query(queries, k)
        return np.asarray(idx, dtype=np.int64).reshape(queries.shape[0], k)
    k = min(k, points.shape[0])
    if k == 0:
        return np.empty((queries.shape[0], 0), dtype=np.int64)
    if points.shape[1] <= _TREE_MAX_DIM:
        return _nearest(cKDTree(points), queries, k)
    P = torch.from_numpy(points)
    pp = (P * P).sum(1)
    rows = max(1, (1 << 24) // max(1, points.shape[0]))
    out = []
    for lo in range(0, queries.shape[0], rows):
        Q = torch.from_numpy(queries[lo : lo + rows])
        D = pp[None, :] - 2.0 * Q @ P.T
        out.append(torch.topk(D, k, dim=1, largest=False).indices.numpy())
    return np.concatenate(out).astype(np.int64)


class Neighbourhoods:
    """What the candidate graphs of one block share from pass to pass: each cloud's neighbours.

    Parameters
    ----------
    A, B
        Coordinates in which neighbours are sought, (n, d) and (m, d), ``n <= m``.
    k
        Neighbours of each kind (see the module docstring).
    """

    def __init__(self, A: np.ndarray, B: np.ndarray, k: int) -> None:
        self.n, self.m, self.k = A.shape[0], B.shape[0], k
        self.B = cKDTree(B) if B.shape[1] <= _TREE_MAX_DIM else B
        self.near_b = _nearest(self.B, A, k)  # (n, k) points of B near each point of A
        self.near_a = _nearest(A, A, k)  # (n, k) points of A near each point of A
        self.points_b = B

    def arcs(self, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate pairs ``(i, j)`` under the current partners ``perm`` (n,), those pairs included.

        Returns unique ``rows`` into A and ``cols`` into B.
        """
        ids = np.arange(self.n)
        around_partner = _nearest(self.B, self.points_b[perm], self.k)
        neighbours_partners = perm[self.near_a]
        rows = [ids] + [np.repeat(ids, c.shape[1]) for c in (self.near_b, around_partner, neighbours_partners)]
        cols = [perm, self.near_b.ravel(), around_partner.ravel(), neighbours_partners.ravel()]
        key = np.unique(np.concatenate(rows) * self.m + np.concatenate(cols))
        return key // self.m, key % self.m


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
    return Neighbourhoods(A, B, k).arcs(perm)


def assign_sparse(
    rows: np.ndarray, cols: np.ndarray, costs: np.ndarray, n: int, m: int, free: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Minimum-cost matching of all ``n`` rows on the arcs given (``n <= m``); returns (n,) columns.

    ``free`` lists the columns unmatched by a known feasible matching on these arcs; every
    column may stay unmatched through dummy rows of zero cost.
    """
    from ortools.graph.python import linear_sum_assignment

    top = float(costs.max()) if costs.size else 0.0
    scale = min(1e12, _PRICE_RANGE / (8.0 * top * (2 * m + 1) ** 2)) if top > 0 else 1.0
    weights = np.rint(costs * scale).astype(np.int64)
    extra = m - n
    if extra:
        spread = 4 if extra > 1 else 1
        dummy_rows = np.concatenate([n + np.arange(extra), n + rng.integers(0, extra, spread * m)])
        dummy_cols = np.concatenate([free, np.tile(np.arange(m), spread)])
        rows = np.concatenate([rows, dummy_rows])
        cols = np.concatenate([cols, dummy_cols])
        weights = np.concatenate([weights, np.zeros(dummy_rows.shape[0], dtype=np.int64)])
    solver = linear_sum_assignment.SimpleLinearSumAssignment()
    solver.add_arcs_with_cost(rows, cols, weights)
    status = solver.solve()
    if status != solver.OPTIMAL:  # pragma: no cover - the current matching is always feasible
        msg = f"hiref: the sparse assignment solver failed ({status}); please report this."
        raise RuntimeError(msg)
    return np.fromiter((solver.right_mate(i) for i in range(n)), dtype=np.int64, count=n)


def _polish_block(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, near: Neighbourhoods, perm: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One exact solve on the candidate graph of a block (all of ``A``, ``B`` given)."""
    n, m = near.n, near.m
    rows, cols = near.arcs(perm)
    tr, tc = torch.as_tensor(rows, device=A.device), torch.as_tensor(cols, device=B.device)
    costs = geometry.paired(A[tr].double(), B[tc].double()).cpu().numpy()
    free = np.ones(m, dtype=bool)
    free[perm] = False
    return assign_sparse(rows, cols, costs - costs.min(initial=0.0), n, m, np.flatnonzero(free), rng)


def polish_matching(
    geometry: Cost,
    A: torch.Tensor,
    B: torch.Tensor,
    perm: np.ndarray,
    *,
    Aw: torch.Tensor | None = None,
    Bw: torch.Tensor | None = None,
    neighbours: int = 16,
    passes: int = 4,
    block: int = 8192,
    generator: torch.Generator,
    tol: float = 1e-4,
) -> tuple[np.ndarray, list[float]]:
    """Polish a matching by exact solves over sparse graphs of candidate partners.

    Parameters
    ----------
    geometry
        The cost geometry (arc costs are exact, in float64).
    A, B
        All points, (n, d) and (m, d), ``n <= m``.
    perm
        Current matching, (n,): ``A[i]`` matched to ``B[perm[i]]``.
    Aw, Bw
        Coordinates in which neighbours are sought (e.g. a sketch of high-dimensional data);
        ``A`` and ``B`` by default.
    neighbours
        Candidates of each kind per point (see the module docstring).
    passes
        Most passes; stops early once a pass gains less than ``tol`` (relative).
    block
        Largest number of pairs solved together; larger clouds are cut into blocks of
        neighbouring pairs, new ones every pass.
    generator
        Source of randomness (blocks, dummy arcs).
    tol
        Relative gain under which polishing stops.

    Returns
    -------
    The polished matching and the mean cost after every pass.
    """
    Aw = (A if Aw is None else Aw).double().cpu().numpy()
    Bw = (B if Bw is None else Bw).double().cpu().numpy()
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    current = np.asarray(perm, dtype=np.int64).copy()
    previous = mean_paired_cost(geometry, A, B, current)
    depth = max(0, math.ceil(math.log2(max(1, B.shape[0]) / block)))
    costs: list[float] = []
    whole = Neighbourhoods(Aw, Bw, neighbours) if depth == 0 else None
    for _ in range(passes):
        proposal = current.copy()
        if whole is not None:
            proposal = _polish_block(geometry, A, B, whole, current, rng)
        else:
            windows = pair_windows(torch.as_tensor(Aw), torch.as_tensor(Bw), torch.as_tensor(current), depth, generator)
            ix, iy = windows.ix.numpy(), windows.iy.numpy()
            sx, sy = windows.sizes_x.numpy(), windows.sizes_y.numpy()
            ox, oy = np.cumsum(sx) - sx, np.cumsum(sy) - sy
            local = np.empty(B.shape[0], dtype=np.int64)
            for b in np.flatnonzero(sx):
                px, py = ix[ox[b] : ox[b] + sx[b]], iy[oy[b] : oy[b] + sy[b]]
                local[py] = np.arange(py.shape[0])
                tx, ty = torch.as_tensor(px, device=A.device), torch.as_tensor(py, device=B.device)
                near = Neighbourhoods(Aw[px], Bw[py], neighbours)
                got = _polish_block(geometry, A[tx], B[ty], near, local[current[px]], rng)
                proposal[px] = py[got]
        value = mean_paired_cost(geometry, A, B, proposal)
        if value > previous:  # integer rounding of arc costs; never accept a worse matching
            break
        current = proposal
        costs.append(value)
        if previous - value <= tol * abs(previous):
            break
        previous = value
    return current, costs
