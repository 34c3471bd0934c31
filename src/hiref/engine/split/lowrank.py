"""Batched low-rank optimal transport with a fixed inner marginal.

Solves, for every block ``b`` of a stack at once,

    min  <C_b, Q diag(1/g) R^T>   over  Q in Pi_<=(a, g),  R in Pi(b, g),

the HiRef variant of the low-rank problem, by mirror descent in KL geometry: a gradient step on
``log Q`` and ``log R``, then a KL projection back onto the constraints. ``b`` is uniform over the
block's Y points, ``g`` holds the child sizes over the block size, and ``a`` puts the same mass
``1 / m_b`` on each X point. When the block has fewer X than Y points (``n_b < m_b``), ``Q``'s
columns need only stay *below* ``g``: the missing mass is the paper's dummy points (Sec. 3.1),
which match the Y points left over at no cost, so each child gets as many X points as the
transport wants, up to its Y points. With ``n_b = m_b`` both constraints are equalities.

Only products of the block costs with thin factors are needed, so no block ever forms its cost
matrix. Factors are stored cluster-major, shape (B, K, r, W) for K candidate solutions per
block: reductions over the r clusters are then element-wise operations over long rows, and all
candidates of a block go through its operator as the columns of one product. For ``r = 2`` a
factor is one logit per point and the projection is exact (a scalar Newton solve per block); for
``r > 2`` it is Sinkhorn in the scaling domain, warm-started across steps.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from hiref.engine.reducer import LOCAL, Reducer
from hiref.engine.repeat import repeat
from hiref.engine.threads import in_slices

#: Whether two-cluster descents on the CPU run the compiled loop (:func:`binary_fused`) rather
#: than the torch step (kept for GPUs, for processes that share blocks, and as the reference).
FUSED_CPU = True


class BlockOperator(Protocol):
    """Products with a stack of block cost matrices ``C`` (B, Wx, Wy), factors cluster-major.

    Each product returns a new tensor, which the mirror descent updates in place.
    """

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        """Return ``C @ R`` per cluster: (B, r, Wy) -> (B, r, Wx)."""

    def apply_t(self, Q: torch.Tensor) -> torch.Tensor:
        """Return ``C.T @ Q`` per cluster: (B, r, Wx) -> (B, r, Wy)."""


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _moments(s: torch.Tensor, wt: torch.Tensor, reduce: Reducer) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i w_i s_i`` and ``sum_i w_i s_i (1 - s_i)`` along the last axis of ``s`` (B, K, W); ``wt`` is (B, W, 1)."""
    slope = torch.rsub(s, 1.0).mul_(s)
    return reduce.sum(torch.stack([(s @ wt)[..., 0], (slope @ wt)[..., 0]]))


def _project_binary(
    u: torch.Tensor, wt: torch.Tensor, low: torch.Tensor, high: torch.Tensor, reduce: Reducer, n_newton: int = 2
) -> torch.Tensor:
    """KL projection for r = 2, in place: column 0 mass into ``[low, high]`` (a point when balanced).

    ``u`` (B, K, W) holds one logit per point, the column-0 share ``sigmoid(u)``; ``wt`` (B, W, 1)
    the points' masses, ``low`` and ``high`` (B, 1) the bounds: ``sum(w) - g1`` and ``g0``.
    Shifts every logit of a candidate by one constant (a scalar Newton solve per candidate),
    the closest point in KL. Returns ``u``.
    """
    mass, slope = _moments(torch.sigmoid(u), wt, reduce)
    target = torch.minimum(torch.maximum(mass, low), high)
    for it in range(n_newton):
        if it:
            mass, slope = _moments(torch.sigmoid(u), wt, reduce)
        u.sub_(((mass - target) / slope.clamp_min(_tiny(slope))).clamp(-4.0, 4.0)[..., None])
    return u


def _step_size(step: float, *grads: torch.Tensor, reduce: Reducer) -> torch.Tensor:
    # One step moves no entry of a candidate's log-factors by more than `step`, so the same
    # setting suits every block and every scale of cost. Grads are (B, K, ...); returns (B, K).
    # (the largest entry and the smallest, read in place: no array of absolute values)
    spread = torch.stack([torch.maximum(g.flatten(2).amax(2), -g.flatten(2).amin(2)) for g in grads]).amax(0)
    spread = reduce.max(spread)
    return step / spread.clamp_min(_tiny(spread))


def _marginals(
    mask_x: torch.Tensor, mask_y: torch.Tensor, dtype: torch.dtype, reduce: Reducer
) -> tuple[torch.Tensor, torch.Tensor]:
    m_b = reduce.sum(mask_y.sum(1, keepdim=True)).to(dtype)
    return mask_x.to(dtype) / m_b, mask_y.to(dtype) / m_b


def _binary(op, mask_x, mask_y, log_g, logits_q, logits_r, n_iter, step, reduce):
    # With two clusters a factor is one logit per point, Q = a * [sigmoid(u), sigmoid(-u)], and
    # C @ R[1] = C @ b - C @ R[0]: one thin product per candidate and step, against C @ b
    # computed once. The K candidates of a block share its operator as K columns.
    a, b = _marginals(mask_x, mask_y, log_g.dtype, reduce)
    g = torch.exp(log_g)[:, None, :]  # (B, 1, 2)
    cb = op.apply(b[:, None, :]) / g[..., 1:]  # (B, 1, Wx)
    ca = op.apply_t(a[:, None, :]) / g[..., 1:]
    both = 1.0 / g[..., :1] + 1.0 / g[..., 1:]  # (B, 1, 1)
    mx, my = mask_x[:, None, :], mask_y[:, None, :]
    keep_x, keep_y = mx.to(g.dtype), my.to(g.dtype)
    a, b = a[:, None, :], b[:, None, :]
    # each side's masses (B, W, 1) and bounds on its column-0 mass (B, 1)
    bounds = reduce.sum(torch.stack([a.sum(-1), b.sum(-1)])) - g[..., 1]
    side_q = (a.transpose(1, 2), bounds[0], g[..., 0], reduce)
    side_r = (b.transpose(1, 2), bounds[1], g[..., 0], reduce)

    def start(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, logits[:, :, 0] - logits[:, :, 1], 0.0)

    u_q = _project_binary(start(logits_q, mx), *side_q)
    u_r = _project_binary(start(logits_r, my), *side_r)

    def descend() -> None:  # one step, in place (on a GPU it is captured once and replayed)
        d_q = op.apply(torch.sigmoid(u_r).mul_(b)).mul_(both).sub_(cb).mul_(keep_x)
        d_r = op.apply_t(torch.sigmoid(u_q).mul_(a)).mul_(both).sub_(ca).mul_(keep_y)
        # d is the difference of the two row-centred gradient entries (+-d/2), so this is the
        # general step rule.
        gamma = 2.0 * _step_size(step, d_q, d_r, reduce=reduce)[..., None]
        _project_binary(u_q.addcmul_(gamma, d_q, value=-1.0), *side_q)
        _project_binary(u_r.addcmul_(gamma, d_r, value=-1.0), *side_r)

    repeat(descend, n_iter, device=u_q.device, capture=reduce is LOCAL)  # (no all-reduce is captured)
    return _binary_logits(u_q, mx), _binary_logits(u_r, my)


def _binary_logits(u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-factors (B, K, 2, W) of logits ``u`` (B, K, W): ``-inf`` on padding."""
    out = torch.stack([torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)], 2)
    return torch.where(mask[:, :, None, :], out, float("-inf"))


def binary_fused(
    factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mask_x: torch.Tensor, mask_y: torch.Tensor,
    log_g: torch.Tensor, logits_q: torch.Tensor, logits_r: torch.Tensor, n_iter: int, step: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`_binary` by the compiled loop of :mod:`._binary_kernels`, on the CPU: the same steps.

    ``factors`` are ``(Fx, Fy, M)`` with ``C = Fx.T @ M @ Fy`` per block ((B, k, Wx), (B, k, Wy),
    (k, k)). Each candidate of each block runs all its steps in one call, in float64; threads
    take contiguous shares of the candidates. Measured on the levels of a planted pair of 2**20
    points (2 cores): see ``docs/performance.md``.
    """
    from hiref.engine.split._binary_kernels import descend_pairs

    mx, my = mask_x.cpu().numpy(), mask_y.cpu().numpy()
    # features 0 on padding: the gradient is then 0 there with no test
    fx = np.where(mx[:, None, :], factors[0].detach().cpu().numpy(), 0)
    fy = np.where(my[:, None, :], factors[1].detach().cpu().numpy(), 0)
    swap = factors[2].detach().cpu().numpy().astype(np.float64)
    weight = 1.0 / np.maximum(my.sum(1), 1).astype(np.float64)  # a = mask_x * weight, b = mask_y * weight
    g = np.exp(log_g.detach().cpu().numpy().astype(np.float64))  # (B, 2)
    coef_a = fx.sum(2, dtype=np.float64) * weight[:, None] @ swap / g[:, 1:]
    coef_b = fy.sum(2, dtype=np.float64) * weight[:, None] @ swap / g[:, 1:]
    both = 1.0 / g[:, 0] + 1.0 / g[:, 1]
    bounds_q = np.stack([mx.sum(1) * weight - g[:, 1], g[:, 0]], 1)
    bounds_r = np.stack([my.sum(1) * weight - g[:, 1], g[:, 0]], 1)

    def start(logits: torch.Tensor, mask: np.ndarray) -> np.ndarray:
        u = (logits[:, :, 0] - logits[:, :, 1]).detach().cpu().numpy().astype(np.float64)
        return np.ascontiguousarray(np.where(mask[:, None, :], u, 0.0))

    u_q, u_r = start(logits_q, mx), start(logits_r, my)

    def run(lo: int, hi: int) -> None:
        descend_pairs(
            lo, hi, fx, fy, swap, mx, my, weight, coef_a, coef_b, both, bounds_q, bounds_r, u_q, u_r, n_iter,
            float(step), 2,
        )  # fmt: skip

    in_slices(u_q.shape[0] * u_q.shape[1], run)  # (the loop releases the GIL)
    dtype, device = logits_q.dtype, logits_q.device
    u_q_t = torch.from_numpy(u_q).to(device=device, dtype=dtype)
    u_r_t = torch.from_numpy(u_r).to(device=device, dtype=dtype)
    return _binary_logits(u_q_t, mask_x[:, None, :]), _binary_logits(u_r_t, mask_y[:, None, :])


def _sinkhorn(log_k, a, g, v, relaxed, n_inner, reduce, tol=1e-3, max_iter=50):
    """Scale ``K = exp(log_k)`` (B, K, r, W) to rows ``a`` (B, 1, W) and columns ``g`` (B, 1, r).

    Columns of ``relaxed`` blocks (B, 1, 1) only need to stay below ``g`` (a column under ``g``
    keeps its mass). Runs ``n_inner`` steps, then more in groups of ``n_inner`` until every
    column is within a relative ``tol`` of its target (at most ``max_iter`` steps); ends on the
    rows, so row sums are exact.
    """
    K = torch.exp(log_k)
    tiny = _tiny(K)
    done = 0
    while True:
        for _ in range(n_inner):
            u = a / (K * v[..., None]).sum(2).clamp_min(tiny)
            ratio = g / reduce.sum((K * u[:, :, None, :]).sum(3)).clamp_min(tiny)
            v = torch.where(relaxed, ratio.clamp_max(1.0), ratio)
        done += n_inner
        u = a / (K * v[..., None]).sum(2).clamp_min(tiny)
        excess = reduce.sum((K * u[:, :, None, :]).sum(3)) * v - g
        excess = torch.where(relaxed, excess.clamp_min(0.0), excess.abs())
        if done >= max_iter or bool((excess <= tol * g).all()):
            return K * u[:, :, None, :] * v[..., None], v


def _general(op, mask_x, mask_y, log_g, logits_q, logits_r, n_iter, step, n_inner, reduce):
    B, n_cand, r, _ = logits_q.shape
    a, b = _marginals(mask_x, mask_y, log_g.dtype, reduce)
    a, b = a[:, None, :], b[:, None, :]
    g = torch.exp(log_g)[:, None, :]
    sizes = reduce.sum(torch.stack([mask_x.sum(1), mask_y.sum(1)]))
    relaxed = (sizes[0] < sizes[1])[:, None, None]
    balanced = torch.zeros_like(relaxed)
    mx, my = mask_x[:, None, None, :], mask_y[:, None, None, :]

    def shifted(log_k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, log_k - log_k.amax(2, keepdim=True), float("-inf"))

    def gradient(apply, F: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # The candidates' clusters are columns of one product with the shared block operator.
        grad = apply(F.flatten(1, 2)).unflatten(1, (n_cand, r)) / g[..., None]
        return (grad - grad.mean(2, keepdim=True)) * mask

    log_kq, log_kr = shifted(logits_q, mx), shifted(logits_r, my)
    ones = torch.ones(B, n_cand, r, dtype=g.dtype, device=g.device)
    Q, v_q = _sinkhorn(log_kq, a, g, ones, relaxed, n_inner, reduce)
    R, v_r = _sinkhorn(log_kr, b, g, ones, balanced, n_inner, reduce)
    for _ in range(n_iter):
        grad_q = gradient(op.apply, R, mx)
        grad_r = gradient(op.apply_t, Q, my)
        gamma = _step_size(step, grad_q, grad_r, reduce=reduce)[..., None, None]
        log_kq = shifted(log_kq - gamma * grad_q, mx)
        log_kr = shifted(log_kr - gamma * grad_r, my)
        Q, v_q = _sinkhorn(log_kq, a, g, v_q, relaxed, n_inner, reduce)
        R, v_r = _sinkhorn(log_kr, b, g, v_r, balanced, n_inner, reduce)
    return log_kq + torch.log(v_q)[..., None], log_kr + torch.log(v_r)[..., None]


def mirror_descent(
    op: BlockOperator,
    mask_x: torch.Tensor,
    mask_y: torch.Tensor,
    log_g: torch.Tensor,
    logits_q: torch.Tensor,
    logits_r: torch.Tensor,
    *,
    n_iter: int = 60,
    step: float = 1.0,
    n_inner: int = 5,
    reduce: Reducer = LOCAL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run mirror descent on a stack of low-rank OT problems.

    Parameters
    ----------
    op
        Cost operator of the stack.
    mask_x, mask_y
        Valid points, (B, Wx) and (B, Wy); no block may have more X than Y points.
    log_g
        Log inner marginal, (B, r): the Y child sizes over the Y block size.
    logits_q, logits_r
        Starting log-factors (any per-point scaling) of K candidates per block, (B, K, r, Wx)
        and (B, K, r, Wy); ``-inf`` on padding. The candidates are independent problems that
        share the block's operator.
    n_iter
        Mirror-descent steps.
    step
        Step size relative to each block's largest row-centred gradient: one step moves no
        entry of a log-factor by more than this.
    n_inner
        Sinkhorn steps per projection (``r > 2`` only; for ``r = 2`` the projection is exact).
    reduce
        How sums and maxima over a block's points are completed: the identity when all points
        are in this process; an all-reduce when the points are spread over processes (then
        ``op`` must reduce its products too, and the masks hold this process's points only).

    Returns
    -------
    Log-factors ``log_q`` and ``log_r`` up to a per-point constant, (B, K, r, W), ``-inf`` on
    padding: scores for :func:`~hiref.engine.split.balance.balanced_split`.
    """
    if log_g.shape[-1] == 2:
        factors = getattr(op, "factors", lambda: None)() if FUSED_CPU and reduce is LOCAL else None
        # (threads share out whole candidates: with fewer candidates than threads, torch's
        # operations use them all)
        pairs = logits_q.shape[0] * logits_q.shape[1]
        if factors is not None and factors[0].device.type == "cpu" and pairs >= torch.get_num_threads():
            return binary_fused(factors, mask_x, mask_y, log_g, logits_q, logits_r, n_iter, step)
        return _binary(op, mask_x, mask_y, log_g, logits_q, logits_r, n_iter, step, reduce)
    return _general(op, mask_x, mask_y, log_g, logits_q, logits_r, n_iter, step, n_inner, reduce)
