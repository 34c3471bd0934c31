"""Starting prices for the auction: the integral of the matching's displacement field.

At an optimal matching, the prices ``p`` of the larger cloud's points satisfy, for a
differentiable cost, ``grad p(y) = -grad_y c(x, y)`` where ``x`` is ``y``'s partner (``x`` is the
best choice for ``y``, so the cost plus price is stationary there); for the squared Euclidean
cost ``grad p(y) = 2 (x - y)``. The hierarchy's matching is a good estimate of the partners, so
the least-squares integral of that gradient along the edges of the nearest-neighbour graph,
``p(z) - p(y) ~ (g(y) + g(z)) . (z - y) / 2``, gives prices close to the final ones.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch

from hiref.engine.geometry.costs import Cost

#: Neighbours per point in the integration graph (with 4, the 65,536-point planted pair took 54
#: million bids instead of 0.5 million: the graph connects too loosely for the integral).
_EDGES = 6
#: Largest dimension solved by a sparse factorisation (nearest-neighbour graphs of low
#: dimension stay nearly planar and factorise with little fill); conjugate gradients above.
_DIRECT_MAX_DIM = 3


def _gradient(geometry: Cost, X: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
    """``-grad_y c(x, y)`` for the pairs ``(X[i], Y[i])``, float64, a chunk at a time."""
    out = []
    step = max(1, (1 << 22) // max(1, X.shape[1]))
    for lo in range(0, X.shape[0], step):
        x = X[lo : lo + step].double()
        y = Y[lo : lo + step].double().detach().requires_grad_()
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(geometry.paired(x, y).sum(), y)
        out.append((-grad).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, X.shape[1]))


def price_guess(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, perm: np.ndarray, neighbours: np.ndarray, *, scale: float
) -> np.ndarray | None:
    """Prices of B's points (m,), in units of ``scale``, from the matching ``perm`` (``None``: no gradient).

    Parameters
    ----------
    geometry
        The cost.
    A, B
        The clouds, (n, d) and (m, d).
    perm
        Partner in B of every point of A.
    neighbours
        (m, k) nearest neighbours in B of every point of B (itself excluded).
    scale
        Unit of the prices.
    """
    m, d = B.shape
    try:
        g_pairs = _gradient(geometry, A, B[torch.as_tensor(perm, device=B.device)])
    except RuntimeError:  # a custom cost without a gradient
        return None
    if not np.isfinite(g_pairs).all():
        return None
    g = np.zeros((m, d))
    g[perm] = g_pairs
    nb = neighbours[:, :_EDGES]
    unmatched = np.ones(m, dtype=bool)
    unmatched[perm] = False
    if unmatched.any():  # a point left out takes its neighbours' slope
        g[unmatched] = g[nb[unmatched]].mean(1)
    Y = B.double().cpu().numpy()
    rows = np.repeat(np.arange(m), nb.shape[1])
    cols = nb.ravel()
    rhs_edges = 0.5 * ((g[rows] + g[cols]) * (Y[cols] - Y[rows])).sum(1) / scale
    e = rows.shape[0]
    D = sp.csr_matrix(
        (np.r_[np.ones(e), -np.ones(e)], (np.r_[np.arange(e), np.arange(e)], np.r_[cols, rows])), shape=(e, m)
    )  # fmt: skip
    L = (D.T @ D).tocsc() + sp.identity(m, format="csc") * 1e-9
    rhs = D.T @ rhs_edges
    if d <= _DIRECT_MAX_DIM:
        p = spl.spsolve(L, rhs, permc_spec="COLAMD")
    else:
        p, _ = spl.cg(L, rhs, maxiter=300, rtol=1e-10)
    if not np.isfinite(p).all():
        return None
    return p - p.min()
