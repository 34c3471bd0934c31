"""The starting prices' least-squares integral in batched tensor steps, on the points' device.

The same system as :mod:`.prices` builds for a sparse factorisation on the host: prices whose
differences along the edges of a nearest-neighbour graph match the trapezoid integral of a
gradient field, i.e. a graph Laplacian ``L p = rhs``. Here it is solved where the points are,
by conjugate gradients with a diagonal preconditioner, started from a coarse-to-fine guess: the
system of one point in :data:`STRIDE` is solved first (recursively), extended to the other
points along the gradient from their nearest coarse point, then smoothed. The Laplacian is never
formed: a product with it is two scatters over the edges.
"""

from __future__ import annotations

import torch

from hiref.engine.finish.batched_search import nearest_batched
from hiref.engine.repeat import repeat_until

#: Neighbours per point in the graphs of the coarse levels (as :data:`.prices.EDGES`).
EDGES = 6
#: Largest system solved from zero (no coarser level below it).
BASE_POINTS = 1 << 14
#: Most conjugate-gradient steps on the base level.
BASE_STEPS = 2000
#: Conjugate-gradient steps in more than 3 dimensions (as on the host).
HIGH_DIM_STEPS = 300
#: One point in this many makes the next coarser level.
STRIDE = 8
#: Conjugate-gradient steps on every finer level (as :data:`.prices._SMOOTHING_STEPS`).
SMOOTHING_STEPS = 30
#: Steps between two checks of the residual (the only host synchronisations).
_CHECK_EVERY = 25


class _Laplacian:
    """The graph Laplacian of the edges ``(rows, cols)`` plus a small multiple of the identity."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, m: int) -> None:
        self.rows, self.cols = rows, cols
        ones = torch.ones(rows.shape[0], dtype=torch.float64, device=rows.device)
        self.degree = torch.zeros(m, dtype=torch.float64, device=rows.device)
        self.degree.index_add_(0, rows, ones).index_add_(0, cols, ones)
        self.degree += 1e-9

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        out = self.degree * p
        out.index_add_(0, self.rows, -p[self.cols])
        out.index_add_(0, self.cols, -p[self.rows])
        return out


def _system(Y: torch.Tensor, g: torch.Tensor, nb: torch.Tensor) -> tuple[_Laplacian, torch.Tensor]:
    """The Laplacian of the edges ``(y, nb[y, :])`` and the right-hand side of the gradient ``g``."""
    m = Y.shape[0]
    rows = torch.arange(m, device=Y.device).repeat_interleave(nb.shape[1])
    cols = nb.reshape(-1)
    along = 0.5 * ((g[rows] + g[cols]) * (Y[cols] - Y[rows])).sum(1)
    rhs = torch.zeros(m, dtype=torch.float64, device=Y.device)
    rhs.index_add_(0, cols, along).index_add_(0, rows, -along)
    return _Laplacian(rows, cols, m), rhs


def conjugate_gradients(
    L: _Laplacian, rhs: torch.Tensor, x: torch.Tensor, *, steps: int, rtol: float
) -> torch.Tensor:  # fmt: skip
    """At most ``steps`` preconditioned conjugate-gradient steps on ``L x = rhs`` from ``x``.

    The steps update their state in place and run in blocks of :data:`_CHECK_EVERY` (all
    ``steps`` at once where that does not divide them), the residual checked after each block:
    on CUDA a block is one CUDA graph (:func:`~hiref.engine.repeat.repeat_until`).
    """
    x = x.clone()
    r = rhs - L(x)
    z = r / L.degree
    d = z.clone()
    rz = (r * z).sum()
    stop = rtol * float(torch.linalg.vector_norm(rhs))

    def step() -> None:
        Ld = L(d)
        alpha = rz / (d * Ld).sum()
        x.add_(alpha * d)
        r.sub_(alpha * Ld)
        z = r / L.degree
        rz_next = (r * z).sum()
        d.mul_(rz_next / rz).add_(z)
        rz.copy_(rz_next)

    every = _CHECK_EVERY if steps % _CHECK_EVERY == 0 else steps
    run = [0]

    def done() -> bool:
        run[0] += every
        return run[0] >= steps or float(torch.linalg.vector_norm(r)) <= stop

    if steps > 0:
        repeat_until(step, done, every=every, most=steps, device=x.device)
    return x


def integrate(Y: torch.Tensor, g: torch.Tensor, nb: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Prices (m,) whose differences along the edges ``(y, nb[y, :])`` best match the integral of ``g``.

    Parameters
    ----------
    Y
        The points, (m, d), float64.
    g
        The gradient field at every point, (m, d), float64.
    nb
        (m, k) neighbours of every point (itself excluded), int64, on the points' device.
    generator
        CPU generator that picks the coarse levels' points.
    """
    m = Y.shape[0]
    L, rhs = _system(Y, g, nb)
    if Y.shape[1] > 3:  # high dimensions: no coarse levels (as on the host)
        return conjugate_gradients(L, rhs, torch.zeros_like(rhs), steps=HIGH_DIM_STEPS, rtol=1e-10)
    if m <= BASE_POINTS:
        return conjugate_gradients(L, rhs, torch.zeros_like(rhs), steps=BASE_STEPS, rtol=1e-10)
    coarse = torch.sort(torch.randperm(m, generator=generator)[: m // STRIDE]).values.to(Y.device)
    Yc, gc = Y[coarse], g[coarse]
    nb_c = nearest_batched(Yc, Yc, EDGES + 1)[:, 1:]
    p_coarse = integrate(Yc, gc, nb_c, generator=generator)
    near = nearest_batched(Yc, Y, 1)[:, 0]
    guess = p_coarse[near] + 0.5 * ((gc[near] + g) * (Y - Yc[near])).sum(1)
    return conjugate_gradients(L, rhs, guess, steps=SMOOTHING_STEPS, rtol=1e-12)
