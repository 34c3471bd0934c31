"""Cost geometries: how the engine evaluates and factorizes a ground cost.

A geometry answers three questions, and the solvers never look inside:

- :meth:`~SqEuclidean.block_operator`: for a stack of blocks, a linear operator that multiplies
  the (never formed) block cost matrices by thin matrices, ``C @ R`` and ``C.T @ Q``;
- :meth:`~SqEuclidean.dense`: the exact cost matrices of small blocks (the leaves);
- :meth:`~SqEuclidean.paired`: the exact cost of given pairs, for reporting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over axis 1 of ``points`` (B, W, d) counting only ``mask`` (B, W); returns (B, d)."""
    w = mask.to(points.dtype)[..., None]
    return (points * w).sum(1) / w.sum(1).clamp_min(1.0)


@dataclass
class SqEuclideanOperator:
    """Products with the squared-Euclidean cost of a stack of blocks, through its rank-(d+2) factors.

    ``C[b, i, j] = |x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``, so ``C @ R`` needs only ``Y.T @ R`` and
    never the (W, W) matrix. Factors are cluster-major: ``R`` has shape (B, r, W).
    """

    X: torch.Tensor  # (B, W, d), centred and scaled per block; 0 on padding
    Y: torch.Tensor  # (B, W, d)
    xx: torch.Tensor  # (B, W), squared norms; 0 on padding
    yy: torch.Tensor  # (B, W)

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        """``(C @ R.T).T``: for every cluster z, ``sum_j C[i, j] R[z, j]``; (B, r, W) -> (B, r, W)."""
        return _apply(self.X, self.xx, self.Y, self.yy, R)

    def apply_t(self, Q: torch.Tensor) -> torch.Tensor:
        """``(C.T @ Q.T).T``: for every cluster z, ``sum_i C[i, j] Q[z, i]``; (B, r, W) -> (B, r, W)."""
        return _apply(self.Y, self.yy, self.X, self.xx, Q)


def _apply(A: torch.Tensor, aa: torch.Tensor, B: torch.Tensor, bb: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    # sum_j (|a_i|^2 + |b_j|^2 - 2 <a_i, b_j>) F[z, j]
    mass = F.sum(2, keepdim=True)  # (B, r, 1)
    second = F @ bb[..., None]  # (B, r, 1)
    cross = (F @ B) @ A.transpose(1, 2)  # (B, r, W)
    return mass * aa[:, None, :] + second - 2.0 * cross


class SqEuclidean:
    """Squared Euclidean cost ``c(x, y) = |x - y|^2``, factorized exactly with rank ``d + 2``."""

    name = "sqeuclidean"

    def block_operator(self, X: torch.Tensor, Y: torch.Tensor, mask: torch.Tensor) -> SqEuclideanOperator:
        """Operator for blocks ``X``, ``Y`` of shape (B, W, d) with valid rows ``mask`` (B, W).

        Each block is centred at its joint mean and scaled to unit mean cost, so float32 keeps
        its accuracy deep in the hierarchy and one step size suits every block.
        """
        both = torch.cat([X, Y], 1)
        mask2 = torch.cat([mask, mask], 1)
        centre = masked_mean(both, mask2)
        Xc = X - centre[:, None, :]
        Yc = Y - centre[:, None, :]
        w = mask.to(X.dtype)
        xx = (Xc * Xc).sum(-1) * w
        yy = (Yc * Yc).sum(-1) * w
        scale = ((xx.sum(1) + yy.sum(1)) / w.sum(1).clamp_min(1.0)).clamp_min(torch.finfo(X.dtype).tiny)
        inv = scale.rsqrt()[:, None, None]
        Xc = Xc * inv * w[..., None]
        Yc = Yc * inv * w[..., None]
        return SqEuclideanOperator(Xc, Yc, xx / scale[:, None], yy / scale[:, None])

    def dense(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Exact cost matrices of blocks: (B, s, d) and (B, t, d) give (B, s, t)."""
        centre = torch.cat([X, Y], 1).mean(1, keepdim=True)
        Xc = X - centre
        Yc = Y - centre
        C = (Xc * Xc).sum(-1)[..., :, None] + (Yc * Yc).sum(-1)[..., None, :] - 2.0 * Xc @ Yc.transpose(-1, -2)
        return C.clamp_min(0.0)

    def paired(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Cost of each row pair ``(X[i], Y[i])``, shape (n,)."""
        diff = X - Y
        return (diff * diff).sum(-1)

    def block_coupling_cost(self, X: torch.Tensor, Y: torch.Tensor, ids_x: torch.Tensor, ids_y: torch.Tensor) -> float:
        """Mean cost of the block coupling: every point spread evenly over its co-cluster partners.

        For co-clusters ``z`` of size ``s_z`` this is ``sum_z (s_z / n) * (Var X_z + Var Y_z +
        |mean X_z - mean Y_z|^2)``, computed in O(n d).
        """
        n_blocks = int(torch.maximum(ids_x.max(), ids_y.max())) + 1
        d = X.shape[1]
        counts = torch.bincount(ids_x, minlength=n_blocks).to(X.dtype)
        sx = torch.zeros(n_blocks, d, dtype=X.dtype, device=X.device).index_add_(0, ids_x, X)
        sy = torch.zeros(n_blocks, d, dtype=X.dtype, device=X.device).index_add_(0, ids_y, Y)
        mx = sx / counts[:, None]
        my = sy / counts[:, None]
        # mean over pairs of |x - y|^2 within a block = mean|x|^2 + mean|y|^2 - 2 <mean x, mean y>
        total = (X * X).sum() + (Y * Y).sum() - 2.0 * (counts[:, None] * mx * my).sum()
        return float(total) / X.shape[0]


_COSTS = {"sqeuclidean": SqEuclidean}


def get_cost(cost: str | SqEuclidean) -> SqEuclidean:
    """Return the geometry for a cost name (or pass a geometry through)."""
    if isinstance(cost, SqEuclidean):
        return cost
    if isinstance(cost, str) and cost in _COSTS:
        return _COSTS[cost]()
    msg = f"`cost` must be one of {sorted(_COSTS)}, got {cost!r}."
    raise ValueError(msg)
