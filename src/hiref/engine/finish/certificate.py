"""A lower bound on the optimal matching cost from prices: the optimality certificate.

For prices ``p`` of the larger cloud's points (a dual solution), the c-transform
``u(x) = min_y c(x, y) + p(y)`` over *every* point ``y`` makes ``(u, -p)`` dual feasible, so
by weak duality ``sum_x u(x) - sum_y p(y)`` is at most the cost of any one-to-one matching.
When the larger cloud has extra points (``m > n``, each point of the smaller cloud matched),
the dual asks ``-p <= 0``: prices are taken relative to their minimum, which adds
``(m - n) * min(p)``. With the auction's final prices the bound is within ``n * eps`` of the
matching's cost on its graph, so it proves the matching optimal up to that.

For the squared Euclidean cost in the plane it is a walk on the convex hull of the lifted points
(:mod:`.hull`). In other low dimensions it is an exact nearest-neighbour query in one more
dimension: with ``y' = (y, sqrt(p(y) - min p))`` and ``x' = (x, 0)``,
``|x' - y'|^2 = |x - y|^2 + p(y) - min p``, which a k-d tree answers exactly in low dimension
(after a change of coordinates that absorbs the prices' fitted quadratic part, so that only the
residual is lifted and each query's search stays local).
Elsewhere it takes exact minima over all pairs, a chunk of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.spatial import cKDTree

from hiref.engine.finish.hull import hull_best

if TYPE_CHECKING:
    from hiref.engine.geometry.costs import Cost

#: Largest dimension for which the lifted k-d tree answers the c-transform.
TREE_MAX_DIM = 16
#: In the plane, the convex-hull walk answers when the queries number at least 1/HULL_SHARE of
#: the larger cloud (building the hull costs about as much as that many lifted k-d tree queries).
HULL_SHARE = 16
#: Entries of one chunk of exact costs (float64).
_CHUNK = 1 << 23


@dataclass
class Dual:
    """The c-transform of some prices at every point of the smaller cloud.

    Attributes
    ----------
    u
        ``min_y c(x, y) / scale + p(y)`` for every point ``x``, (n,), float64.
    best
        The ``k`` points ``y`` of lowest ``c(x, y) / scale + p(y)``, (n, k), best first.
    """

    u: np.ndarray
    best: np.ndarray


def transform_feasible(geometry: Cost, d: int, n: int, m: int, budget: float) -> bool:
    """Whether the c-transform is computed: by a k-d tree, or within ``budget`` entries x dimensions."""
    if geometry.name == "sqeuclidean" and d <= TREE_MAX_DIM:
        return True
    return float(n) * float(m) * max(1, d) <= budget


def c_transform(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, *, scale: float, k: int = 1,
    previous: Dual | None = None, rows: np.ndarray | None = None,
) -> Dual:  # fmt: skip
    """The c-transform of ``prices`` (in units of ``scale``) at every point of ``A``, exactly.

    Parameters
    ----------
    geometry
        The cost.
    A, B
        The smaller and the larger cloud, (n, d) and (m, d).
    prices
        Prices of B's points, (m,), in units of ``scale``.
    scale
        Unit of the prices (costs are divided by it).
    k
        Candidates kept per point of ``A``.
    previous, rows
        Recompute only the points ``rows`` of ``A`` and keep ``previous`` for the others: valid
        when no price has decreased since ``previous`` was computed (then its values are still
        at most the c-transform, and the bound built on them stays a bound).
    """
    k = min(k, B.shape[0])
    A_rows = A if rows is None else A[torch.as_tensor(rows, device=A.device)]
    best = None
    if geometry.name == "sqeuclidean" and A.shape[1] == 2 and A_rows.shape[0] * HULL_SHARE >= B.shape[0]:
        root = np.sqrt(scale)
        found = hull_best(A_rows.double().cpu().numpy() / root, B.double().cpu().numpy() / root, prices)
        best = None if found is None else np.ascontiguousarray(found[:, :k])
    if best is None and geometry.name == "sqeuclidean" and A.shape[1] <= TREE_MAX_DIM:
        best = _lifted_nearest(A_rows, B, prices, scale, k)
    elif best is None:
        best = _exact_nearest(geometry, A_rows, B, prices, scale, k)
    # The value itself, recomputed exactly for the best candidate.
    j = torch.as_tensor(best[:, 0], device=B.device)
    u = geometry.paired(A_rows.double(), B[j].double()).cpu().numpy() / scale + prices[best[:, 0]]
    if rows is None or previous is None:
        return Dual(u, best)
    out = Dual(previous.u.copy(), previous.best.copy())
    out.u[rows], out.best[rows] = u, best
    return out


def _lifted_nearest(A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, scale: float, k: int) -> np.ndarray:
    # The lift's height is what widens each query's search: prices that rise across the cloud
    # (a translation, a dilation) would put most points within reach of every query. The part
    # alpha |y|^2 + a.y of the prices that a least-squares fit explains is absorbed exactly into
    # the geometry instead: |x - y|^2 + alpha |y|^2 + a.y = (1 + alpha) |y - w|^2 + terms in x
    # alone, with w = (2x - a) / (2 (1 + alpha)); only the residual is lifted.
    root = np.sqrt(scale)
    a_pts = A.double().cpu().numpy() / root
    b_pts = B.double().cpu().numpy() / root
    sq = (b_pts * b_pts).sum(1)
    design = np.concatenate([sq[:, None], b_pts, np.ones((b_pts.shape[0], 1))], axis=1)
    coef = np.linalg.lstsq(design, prices, rcond=None)[0]
    alpha, slope = float(coef[0]), coef[1:-1]
    if not 1.0 + alpha > 0.05:  # keep the quadratic form well inside positive definiteness
        alpha = 0.0
        coef = np.linalg.lstsq(design[:, 1:], prices, rcond=None)[0]
        slope = coef[:-1]
    residual = prices - alpha * sq - b_pts @ slope
    lift = np.sqrt(np.maximum(residual - residual.min(), 0.0) / (1.0 + alpha))
    tree = cKDTree(np.concatenate([b_pts, lift[:, None]], axis=1))
    w = (2.0 * a_pts - slope[None, :]) / (2.0 * (1.0 + alpha))
    _, idx = tree.query(np.concatenate([w, np.zeros((w.shape[0], 1))], axis=1), k, workers=-1)
    return np.asarray(idx, dtype=np.int64).reshape(a_pts.shape[0], k)


def _exact_nearest(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, prices: np.ndarray, scale: float, k: int
) -> np.ndarray:
    p = torch.as_tensor(prices, device=B.device, dtype=torch.float64)
    Bd = B.double()
    rows = max(1, _CHUNK // max(1, B.shape[0]))
    out = []
    for lo in range(0, A.shape[0], rows):
        value = geometry.dense(A[lo : lo + rows].double(), Bd) / scale + p[None, :]
        out.append(torch.topk(value, k, dim=1, largest=False).indices.cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def lower_bound(dual: Dual, prices: np.ndarray, n: int) -> float:
    """The dual's lower bound on the optimal mean cost per matched pair, in units of the prices."""
    floor = float(prices.min())
    return float((dual.u - floor).sum() - (prices - floor).sum()) / n
