"""Starting prices for the auction: the integral of the matching's displacement field, or a subsample's dual.

On the CPU the system is factorised by scipy; on other devices it is solved there by
:mod:`.integrate` (conjugate gradients from a coarse-to-fine guess).

At an optimal matching, the prices ``p`` of the larger cloud's points satisfy, for a
differentiable cost, ``grad p(y) = -grad_y c(x, y)`` where ``x`` is ``y``'s partner (``x`` is the
best choice for ``y``, so the cost plus price is stationary there); for the squared Euclidean
cost ``grad p(y) = 2 (x - y)``. The hierarchy's matching is a good estimate of the partners, so
the least-squares integral of that gradient along the edges of the nearest-neighbour graph,
``p(z) - p(y) ~ (g(y) + g(z)) . (z - y) / 2``, gives prices close to the final ones.

Where the hierarchy sent a few points far away (the tip of a thin part of the outline matched
across a notch), their slopes are tens of times the others' and would raise a steep bump in the
prices around them, which the auction then wears down by small bids. Such slopes are not
trusted: those points, like points left unmatched, take the mean slope of their trusted
neighbours (:func:`_trusted_slopes`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch

from hiref.engine.finish import batched_search
from hiref.engine.finish.certificate import best_points, price_search, uses_price_tree
from hiref.engine.finish.integrate import integrate
from hiref.engine.finish.neighbours import nearest, search_index
from hiref.engine.geometry.costs import Cost

#: Neighbours per point in the integration graph (with 4, the 65,536-point planted pair took 54
#: million bids instead of 0.5 million: the graph connects too loosely for the integral).
EDGES = 6
#: Largest dimension solved by a sparse factorisation (nearest-neighbour graphs of low
#: dimension stay nearly planar and factorise with little fill); conjugate gradients above.
_DIRECT_MAX_DIM = 3
#: Largest cloud whose system is factorised whole. Above, one point in :data:`_COARSE_STRIDE`
#: is solved first (recursively, as :mod:`.integrate` does on a device) and the rest
#: interpolated, then smoothed by conjugate gradients (at 2**20 planted points: 5 s instead of
#: 24 s, and the auction from those prices made the same number of bids). With 2**17 here, the
#: subsample of 131,072 points of a 2**20-point pair was factorised whole, 0.6-1.1 s a time (2
#: cores); from 2**14 points up, 0.1-0.2 s, with the same starting prices to within the smoothing
#: and the same bids.
_DIRECT_MAX_POINTS = 1 << 14
_COARSE_STRIDE = 8
#: Conjugate-gradient steps after the coarse guess (planted pairs of 2**20 points: 30 steps instead
#: of 100 save 2-3 s, and the finish from them reaches the optimum as fast).
_SMOOTHING_STEPS = 30
#: A matched point's slope is not trusted when its squared length exceeds this multiple of the
#: median (for the squared Euclidean cost: a pair that costs ten times the median pair). On a
#: planted lattice of 2**21 points the hierarchy sent 77 points 129 times the typical
#: displacement away; from prices integrated over their slopes the first auction ran over five
#: minutes, with the 908 steepest slopes replaced it took 7 s, and the finish reached the
#: optimum in 41 s. At 2**22 (3,657 replaced): the optimum in 127 s, against 15.5 % above it
#: after 357 s when every slope was trusted.
_STEEP = 10.0
#: Largest share of the matched points whose slopes are not trusted: where more are steep by the
#: rule above (most points barely move and a local deformation moves the rest), the limit rises
#: to the slope that this share exceeds. A planted pair of 2**18 points, 69 % of them left in
#: place by a smooth bump: 14 s instead of 49 s (the planted lattices replaced 0.04 % at 2**21
#: and 0.09 % at 2**22).
_STEEP_SHARE = 0.005
#: Points of the subsample whose terms enter the soft maximum of :func:`prices_from_dual`.
SOFT_TERMS = 8
#: Rows, and entries of each temporary (float64), of one chunk of that soft maximum.
_SOFT_CHUNK = 1 << 16
_SOFT_ENTRIES = 1 << 21
#: Most passes that spread trusted slopes to the untrusted points (one ring of neighbours a pass).
_FILL_PASSES = 16


def _gradient(geometry: Cost, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``-grad_y c(x, y)`` for the pairs ``(X[i], Y[i])``, float64, a chunk at a time, on their device."""
    out = []
    step = max(1, (1 << 22) // max(1, X.shape[1]))
    for lo in range(0, X.shape[0], step):
        x = X[lo : lo + step].double()
        y = Y[lo : lo + step].double().detach().requires_grad_()
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(geometry.paired(x, y).sum(), y)
        out.append(-grad)
    return torch.cat(out) if out else torch.empty((0, X.shape[1]), dtype=torch.float64, device=X.device)


def _trusted_slopes(g: torch.Tensor, matched: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """The slopes ``g`` (m, d) with the untrusted ones replaced by their trusted neighbours' mean, in place.

    Trusted: matched points (``matched``, (m,) bool) whose slope is not steep (:data:`_STEEP`,
    :data:`_STEEP_SHARE`).
    The others take the mean over their trusted neighbours in ``nb`` (m, k), ring after ring,
    for at most :data:`_FILL_PASSES` passes; any left after that take their neighbours' mean.
    """
    sq = (g * g).sum(1)
    trusted = matched.clone()
    if bool(matched.any()):
        reference = sq[matched].median()
        if float(reference) <= 0.0:  # most points did not move: compare with the mean slope
            reference = sq[matched].mean()
        if float(reference) > 0.0:
            limit = _STEEP * reference
            slopes = sq[matched]
            allowed = int(_STEEP_SHARE * slopes.numel())
            if allowed and int((slopes > limit).sum()) > allowed:  # not a few outliers: raise the limit
                limit = torch.kthvalue(slopes, slopes.numel() - allowed).values
            trusted &= sq <= limit
    for _ in range(_FILL_PASSES):
        weight = trusted[nb]
        count = weight.sum(1)
        fill = ~trusted & (count > 0)
        if not bool(fill.any()):
            break
        w = weight[fill].to(g.dtype)
        g[fill] = (g[nb[fill]] * w[..., None]).sum(1) / count[fill, None].to(g.dtype)
        trusted |= fill
    if not bool(trusted.all()):
        g[~trusted] = g[nb[~trusted]].mean(1)
    return g


#: Fewest edges for which the integration system's sums run compiled (fewer: the numpy passes,
#: the same sums in the same order; no compilation at first use for small problems).
COMPILED_EDGES_MIN = 1 << 17


def _edge_sums_numpy(Y: np.ndarray, g: np.ndarray, nb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rhs`` and ``degree`` of the integration system by numpy passes (each end's sums by ``np.bincount``)."""
    m, d = Y.shape
    rows = np.repeat(np.arange(m), nb.shape[1])
    cols = nb.ravel()
    along = np.zeros(rows.shape[0])
    for c in range(d):  # one coordinate at a time: temporaries of one value per edge
        along += (g[rows, c] + g[cols, c]) * (Y[cols, c] - Y[rows, c])
    along *= 0.5
    rhs = np.bincount(cols, along, minlength=m) - np.bincount(rows, along, minlength=m)
    return rhs, np.bincount(rows, minlength=m) + np.bincount(cols, minlength=m) + 1e-9


@cache
def _edge_sums() -> Callable:
    """The compiled pass over the edges (compiled once, cached on disk; numba is imported here)."""
    from hiref.engine.finish._prices_kernels import edge_sums

    return edge_sums


def _integration_system(
    Y: np.ndarray, g: np.ndarray, nb: np.ndarray, *, matrix: bool = True
) -> tuple[sp.csr_matrix | spl.LinearOperator, np.ndarray]:  # fmt: skip
    """The least-squares system ``L p = rhs`` for prices that integrate the gradient ``g`` (m, d).

    A price difference along each edge ``(y, nb[y, :])`` should match the trapezoid integral of
    ``g`` along it. ``L`` is the graph Laplacian of the edges (a small multiple of the identity
    added, which fixes the free constant); ``rhs`` collects each edge's integral at both of its
    ends. ``matrix=False`` gives ``L`` as an operator that applies it from ``nb`` without forming
    it (for conjugate gradients: at 2**20 points the matrix took 2.5 s and 0.4 GB to build).
    """
    m = Y.shape[0]
    # one compiled pass over the edges (at 2**20 points the numpy passes took 0.4 s)
    if Y.shape[0] * nb.shape[1] >= COMPILED_EDGES_MIN:
        rhs, degree = _edge_sums()(np.ascontiguousarray(Y), np.ascontiguousarray(g), np.ascontiguousarray(nb))
    else:
        rhs, degree = _edge_sums_numpy(Y, g, nb)
    cols = nb.ravel().astype(np.int32)
    if not matrix:
        k = nb.shape[1]
        # the edges as one adjacency matrix; its transpose is the same arrays read by columns
        adjacency = sp.csr_matrix((np.ones(cols.shape[0]), cols, np.arange(0, k * m + 1, k)), shape=(m, m))
        return spl.LinearOperator(
            (m, m), matvec=lambda p: degree * p.ravel() - adjacency @ p.ravel() - adjacency.T @ p.ravel(),
            dtype=np.float64,
        ), rhs  # fmt: skip
    diagonal = np.arange(m, dtype=np.int32)
    rows = np.repeat(diagonal, nb.shape[1])
    # one matrix: the diagonal, and -1 per edge in both directions (repeated edges add up)
    L = sp.csr_matrix(
        (np.r_[degree, -np.ones(2 * rows.shape[0])], (np.r_[diagonal, rows, cols], np.r_[diagonal, cols, rows])),
        shape=(m, m),
    )  # fmt: skip
    return L, rhs


def _coarse_guess(Y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Prices solved on a subsample of the points (:func:`_solve_on_host`), extended to the others by the gradient."""
    m = Y.shape[0]
    coarse = np.sort(np.random.default_rng(0).choice(m, m // _COARSE_STRIDE, replace=False))
    index = search_index(Y[coarse])  # (a grid in the plane: at 2**20 points 0.18 s, a tree 0.49 s)
    nb = nearest(index, Y[coarse], EDGES + 1)[:, 1:]
    p_coarse = _solve_on_host(Y[coarse], g[coarse], nb)
    near = coarse[nearest(index, Y, 1)[:, 0]]
    return p_coarse[np.searchsorted(coarse, near)] + 0.5 * ((g[near] + g) * (Y - Y[near])).sum(1)


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
    perm_t = torch.as_tensor(perm, device=B.device)
    g_pairs = pair_slopes(geometry, A, B[perm_t])
    if g_pairs is None:
        return None
    g = torch.zeros((m, d), dtype=torch.float64, device=B.device)
    g[perm_t] = g_pairs
    matched = torch.zeros(m, dtype=torch.bool, device=B.device)
    matched[perm_t] = True
    return prices_from_slopes(B, g, matched, neighbours, scale=scale)


def pair_slopes(geometry: Cost, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor | None:
    """``-grad_y c(x, y)`` for the pairs ``(X[i], Y[i])``, float64 (``None``: a cost without a finite gradient)."""
    try:
        g = _gradient(geometry, X, Y)
    except RuntimeError:  # a custom cost without a gradient
        return None
    return g if bool(torch.isfinite(g).all()) else None


def prices_from_slopes(
    B: torch.Tensor, g: torch.Tensor, matched: torch.Tensor, neighbours: np.ndarray, *, scale: float
) -> np.ndarray | None:  # fmt: skip
    """Prices of B's points (m,), in units of ``scale``, whose gradient is the slope field ``g``.

    Parameters
    ----------
    B
        The points, (m, d).
    g
        (m, d) float64 slope at every point, on B's device (changed in place: the slopes of
        unmatched and steep points are replaced, see :func:`_trusted_slopes`).
    matched
        (m,) bool: the points whose slope is known.
    neighbours
        (m, k) nearest neighbours in B of every point of B (itself excluded).
    scale
        Unit of the prices.
    """
    nb = torch.as_tensor(np.asarray(neighbours[:, :EDGES], dtype=np.int64), device=B.device)
    g = _trusted_slopes(g, matched, nb)
    if not batched_search.on_device(B.device):
        return _integrate_on_host(B.double().numpy(), g.numpy(), nb.numpy(), scale)
    p = integrate(B.double(), g / scale, nb, generator=torch.Generator().manual_seed(0))
    if not bool(torch.isfinite(p).all()):
        return None
    return (p - p.min()).cpu().numpy()


def _integrate_on_host(Y: np.ndarray, g: np.ndarray, nb: np.ndarray, scale: float) -> np.ndarray | None:
    """:func:`prices_from_slopes` on the CPU: the system factorised by scipy (low dimensions) or conjugate gradients."""
    p = _solve_on_host(Y, g / scale, nb)
    if not np.isfinite(p).all():
        return None
    return p - p.min()


def _solve_on_host(Y: np.ndarray, g: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """The integral of ``g`` over the edges ``(y, nb[y, :])``: factorised, or smoothed from a coarse guess."""
    m, d = Y.shape
    L, rhs = _integration_system(Y, g, nb, matrix=m <= _DIRECT_MAX_POINTS)
    if d > _DIRECT_MAX_DIM:
        return spl.cg(L, rhs, maxiter=300, rtol=1e-10)[0]
    if m <= _DIRECT_MAX_POINTS:
        return spl.spsolve(L.tocsc(), rhs, permc_spec="COLAMD")
    return spl.cg(L, rhs, x0=_coarse_guess(Y, g), maxiter=_SMOOTHING_STEPS, rtol=1e-12)[0]


def prices_from_dual(
    geometry: Cost, B: torch.Tensor, A_s: torch.Tensor, u_s: np.ndarray, *, scale: float, softness: float
) -> np.ndarray:  # fmt: skip
    """Prices of all of B's points (m,), in units of ``scale``: the soft c-transform of a subsample's dual.

    A subsample ``A_s`` of the smaller cloud, solved exactly, has values ``u_s`` (``c(x, y) / scale
    + p(y)`` at its optimal pairs, in units of ``scale``). Its dual extends to every point ``y``
    by the c-transform ``max_x u_s(x) - c(x, y) / scale``, exact at the subsample's own scale,
    but one quadratic piece per subsample point, with kinks between them as deep as the
    subsample's squared spacing. The maximum is softened to ``softness * log sum exp(. / softness)``
    over the :data:`SOFT_TERMS` best subsample points, which blends the neighbouring pieces: the
    price's slope at ``y`` becomes that of a partner between those points, as the whole problem's is.

    Parameters
    ----------
    geometry
        The cost (the squared Euclidean: answered by a price tree in low dimensions, by exact
        minima ranked in float32 above).
    B
        All points of the larger cloud, (m, d).
    A_s
        The subsample, (s, d).
    u_s
        Its values, (s,), in units of ``scale``.
    scale
        Unit of ``u_s`` and of the prices returned.
    softness
        Temperature of the soft maximum, in units of ``scale``.
    """
    k = min(SOFT_TERMS, A_s.shape[0])
    if uses_price_tree(geometry, B.shape[1], B.device):
        best = best_points(geometry, B, A_s, -u_s, scale=scale, k=k, search=price_search(A_s, -u_s, scale=scale))
    elif hasattr(geometry, "cheapest_float32"):  # ranked in float32: the terms are valued in float64 below
        shift = torch.as_tensor(-u_s * scale, device=A_s.device)
        best = geometry.cheapest_float32(B, A_s, shift, k)[0]
    else:
        best = best_points(geometry, B, A_s, -u_s, scale=scale, k=k)
    best_t, u_t = torch.as_tensor(best, device=B.device), torch.as_tensor(u_s, device=B.device)
    out = np.empty(B.shape[0])
    rows = max(1, min(_SOFT_CHUNK, _SOFT_ENTRIES // (k * B.shape[1])))  # (temporaries of k * d per row)
    for lo in range(0, B.shape[0], rows):
        b, near = B[lo : lo + rows].double(), best_t[lo : lo + rows]
        pieces = geometry.paired(b.repeat_interleave(k, 0), A_s.double()[near.reshape(-1)]).reshape(-1, k)
        values = u_t[near] - pieces / scale
        out[lo : lo + rows] = (softness * torch.logsumexp(values / softness, dim=1)).cpu().numpy()
    return out
