"""Batched low-rank optimal transport with a fixed uniform inner marginal.

Solves, for every block ``b`` of a stack at once,

    min  <C_b, Q diag(1/g) R^T>   over  Q in Pi(a, g),  R in Pi(a, g),

the HiRef variant of the low-rank problem, by mirror descent in KL geometry: a gradient step on
``log Q`` and ``log R``, then a KL projection back onto the couplings with row marginal ``a``
(uniform over the block) and column marginal ``g``. Only products of the block costs with thin
factors are needed, so no block ever forms its cost matrix.

Factors are stored cluster-major, shape (B, r, W): reductions over the r clusters are then
element-wise operations over long rows, which is what makes them fast on CPU and GPU alike.
For ``r = 2`` a factor is one logit per point and the projection is exact (a scalar Newton
solve per block); for ``r > 2`` it is Sinkhorn in the scaling domain, warm-started across steps.
"""

from __future__ import annotations

from typing import Protocol

import torch


class BlockOperator(Protocol):
    """Products with a stack of block cost matrices ``C`` (B, W, W), factors cluster-major."""

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        """Return ``(C @ R.T).T`` for ``R`` of shape (B, r, W)."""

    def apply_t(self, Q: torch.Tensor) -> torch.Tensor:
        """Return ``(C.T @ Q.T).T`` for ``Q`` of shape (B, r, W)."""


def _tiny(t: torch.Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _balance(u: torch.Tensor, a: torch.Tensor, g0: torch.Tensor, n_newton: int = 2) -> torch.Tensor:
    """Shift every block's logits so that ``sum_i a_i sigmoid(u_i + c) = g0``: the exact KL projection for r=2."""
    c = torch.zeros_like(g0)
    for _ in range(n_newton):
        s = torch.sigmoid(u + c[:, None])
        f = (a * s).sum(1) - g0
        fp = (a * s * (1 - s)).sum(1)
        c = c - (f / fp.clamp_min(_tiny(fp))).clamp(-4.0, 4.0)
    return u + c[:, None]


def _step_size(step: float, *grads: torch.Tensor) -> torch.Tensor:
    # One step moves no entry of a block's log-factors by more than `step`, so the same setting
    # suits every block and every scale of cost.
    spread = torch.stack([g.abs().flatten(1).amax(1) for g in grads]).amax(0)
    return step / spread.clamp_min(_tiny(spread))


def _binary(op, mask, log_g, logits_q, logits_r, n_iter, step):
    # With two clusters a factor is one logit per point, Q = a * [sigmoid(u), sigmoid(-u)], and
    # C @ Q[1] = C @ a - C @ Q[0]: one thin product per side and step, against C @ a computed once.
    a = mask.to(log_g.dtype) / mask.sum(1, keepdim=True).to(log_g.dtype)
    g = torch.exp(log_g)
    g0 = g[:, 0]
    ca_q = op.apply(a[:, None, :])[:, 0] / g[:, 1:]
    ca_r = op.apply_t(a[:, None, :])[:, 0] / g[:, 1:]
    both = (1.0 / g[:, 0] + 1.0 / g[:, 1])[:, None]

    def start(logits: torch.Tensor) -> torch.Tensor:
        return _balance(torch.where(mask, logits[:, 0] - logits[:, 1], 0.0), a, g0)

    u_q, u_r = start(logits_q), start(logits_r)
    for _ in range(n_iter):
        d_q = (op.apply((a * torch.sigmoid(u_r))[:, None, :])[:, 0] * both - ca_q) * mask
        d_r = (op.apply_t((a * torch.sigmoid(u_q))[:, None, :])[:, 0] * both - ca_r) * mask
        # d is the difference of the two row-centred gradient entries (+-d/2), so this is the
        # general step rule.
        gamma = 2.0 * _step_size(step, d_q, d_r)[:, None]
        u_q = _balance(u_q - gamma * d_q, a, g0)
        u_r = _balance(u_r - gamma * d_r, a, g0)

    def logits(u: torch.Tensor) -> torch.Tensor:
        out = torch.stack([torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)], 1)
        return torch.where(mask[:, None, :], out, float("-inf"))

    return logits(u_q), logits(u_r)


def _sinkhorn(log_k, a, g, v, n_inner, tol=1e-3, max_iter=50):
    """Scale ``K = exp(log_k)`` (B, r, W) to rows ``a`` (B, W) and columns ``g`` (B, r).

    Runs ``n_inner`` steps, then more in groups of ``n_inner`` until every column is within a
    relative ``tol`` of its target (at most ``max_iter`` steps); ends on the rows, so row sums
    are exact.
    """
    K = torch.exp(log_k)
    tiny = _tiny(K)
    done = 0
    while True:
        for _ in range(n_inner):
            u = a / (K * v[..., None]).sum(1).clamp_min(tiny)
            v = g / (K * u[:, None, :]).sum(2).clamp_min(tiny)
        done += n_inner
        u = a / (K * v[..., None]).sum(1).clamp_min(tiny)
        columns = (K * u[:, None, :]).sum(2) * v
        if done >= max_iter or bool(((columns - g).abs() <= tol * g).all()):
            return K * u[:, None, :] * v[..., None], v


def _general(op, mask, log_g, logits_q, logits_r, n_iter, step, n_inner):
    a = mask.to(log_g.dtype) / mask.sum(1, keepdim=True).to(log_g.dtype)
    g = torch.exp(log_g)
    m3 = mask[:, None, :]

    def shifted(log_k: torch.Tensor) -> torch.Tensor:
        return torch.where(m3, log_k - log_k.amax(1, keepdim=True), float("-inf"))

    def centred(grad: torch.Tensor) -> torch.Tensor:
        return (grad - grad.mean(1, keepdim=True)) * m3

    log_kq, log_kr = shifted(logits_q), shifted(logits_r)
    v_q, v_r = torch.ones_like(g), torch.ones_like(g)
    Q, v_q = _sinkhorn(log_kq, a, g, v_q, n_inner)
    R, v_r = _sinkhorn(log_kr, a, g, v_r, n_inner)
    inv_g = (1.0 / g)[..., None]
    for _ in range(n_iter):
        grad_q = centred(op.apply(R) * inv_g)
        grad_r = centred(op.apply_t(Q) * inv_g)
        gamma = _step_size(step, grad_q, grad_r)[:, None, None]
        log_kq = shifted(log_kq - gamma * grad_q)
        log_kr = shifted(log_kr - gamma * grad_r)
        Q, v_q = _sinkhorn(log_kq, a, g, v_q, n_inner)
        R, v_r = _sinkhorn(log_kr, a, g, v_r, n_inner)
    return log_kq + torch.log(v_q)[..., None], log_kr + torch.log(v_r)[..., None]


def mirror_descent(
    op: BlockOperator,
    mask: torch.Tensor,
    log_g: torch.Tensor,
    logits_q: torch.Tensor,
    logits_r: torch.Tensor,
    *,
    n_iter: int = 60,
    step: float = 1.0,
    n_inner: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run mirror descent on a stack of low-rank OT problems.

    Parameters
    ----------
    op
        Cost operator of the stack.
    mask
        Valid points, (B, W); the X and Y blocks have the same sizes.
    log_g
        Log inner marginal, (B, r).
    logits_q, logits_r
        Starting log-factors (any row scaling), (B, r, W); ``-inf`` on padding.
    n_iter
        Mirror-descent steps.
    step
        Step size relative to each block's largest row-centred gradient: one step moves no
        entry of a log-factor by more than this.
    n_inner
        Sinkhorn steps per projection (``r > 2`` only; for ``r = 2`` the projection is exact).

    Returns
    -------
    Log-factors ``log_q`` and ``log_r`` up to a per-point constant, (B, r, W), ``-inf`` on
    padding: scores for :func:`~hiref.engine.split.balanced_split`.
    """
    if log_g.shape[1] == 2:
        return _binary(op, mask, log_g, logits_q, logits_r, n_iter, step)
    return _general(op, mask, log_g, logits_q, logits_r, n_iter, step, n_inner)
