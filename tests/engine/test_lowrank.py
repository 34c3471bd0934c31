from __future__ import annotations

import pytest
import torch

from hiref.engine.geometry.costs import SqEuclidean
from hiref.engine.split.lowrank import mirror_descent
from hiref.engine.split.starts import joint_cloud


def blocks(B=3, W=50, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, W, d, generator=g, dtype=torch.float64)
    Y = torch.randn(B, W, d, generator=g, dtype=torch.float64) + 1.0
    sizes = torch.tensor([W, W - 3, W - 7])[:B]
    mask = torch.arange(W)[None, :] < sizes[:, None]
    return X, Y, mask


def test_operator_matches_dense_cost():
    X, Y, mask = blocks()
    op = SqEuclidean().block_operator(X, Y, mask, mask, torch.Generator())
    R = torch.rand(3, 4, 50, dtype=torch.float64) * mask[:, None, :]
    Q = torch.rand(3, 4, 50, dtype=torch.float64) * mask[:, None, :]
    C = torch.cdist(op.X, op.Y) ** 2  # the operator's own (centred, scaled) coordinates
    assert torch.allclose(op.apply(R), (C @ R.transpose(1, 2)).transpose(1, 2), atol=1e-9)
    assert torch.allclose(op.apply_t(Q), (C.transpose(1, 2) @ Q.transpose(1, 2)).transpose(1, 2), atol=1e-9)


def lowrank_cost(op, log_q, log_r, log_g, mask):
    # <C, Q diag(1/g) R^T> for soft factors normalised per point.
    a = mask.double() / mask.sum(1, keepdim=True)
    Q = torch.softmax(log_q, 1).nan_to_num(0.0) * a[:, None, :]
    R = torch.softmax(log_r, 1).nan_to_num(0.0) * a[:, None, :]
    return (Q * op.apply(R) / torch.exp(log_g)[..., None]).sum((1, 2)), Q, R


@pytest.mark.parametrize("rank", [2, 3])
def test_mirror_descent_lowers_the_cost_and_keeps_marginals(rank):
    X, Y, mask = blocks()
    op = SqEuclidean().block_operator(X, Y, mask, mask, torch.Generator())
    sizes = mask.sum(1)
    caps = (sizes[:, None] // rank) + (torch.arange(rank)[None, :] < (sizes % rank)[:, None])
    log_g = torch.log(caps.double() / sizes[:, None])
    q0, r0 = (f[:, 0] for f in joint_cloud(X, Y, mask, mask, rank, torch.Generator().manual_seed(0), sharpness=0.1))
    before, _, _ = lowrank_cost(op, q0, r0, log_g, mask)
    log_q, log_r = mirror_descent(op, mask, mask, log_g, q0[:, None], r0[:, None], n_iter=80, step=0.5)
    after, Q, R = lowrank_cost(op, log_q[:, 0], log_r[:, 0], log_g, mask)
    assert torch.all(after < before)
    for F in (Q, R):
        assert torch.allclose(F.sum(1), mask.double() / mask.sum(1, keepdim=True), atol=1e-6)
        assert torch.allclose(F.sum(2), torch.exp(log_g), atol=1e-3)
    assert torch.isinf(log_q[:, 0][~mask[:, None, :].expand_as(log_q[:, 0])]).all()


@pytest.mark.parametrize("d", [2, 5, 80])  # 80: above the Gram matrix's limit, two products a step
def test_first_start_cuts_across_the_principal_axis(d):
    g = torch.Generator().manual_seed(d)
    B, W = 3, 400
    scale = torch.ones(d, dtype=torch.float64)
    scale[d // 2] = 4.0  # one dominant axis per block, rotated differently in each
    rot = torch.linalg.qr(torch.randn(B, d, d, generator=g, dtype=torch.float64)).Q
    X = (torch.randn(B, W, d, generator=g, dtype=torch.float64) * scale) @ rot
    Y = (torch.randn(B, W, d, generator=g, dtype=torch.float64) * scale) @ rot + 3.0
    mask = torch.arange(W)[None, :] < torch.tensor([W, W - 30, W - 100])[:, None]
    log_q, log_r = joint_cloud(X, Y, mask, mask, 2, torch.Generator().manual_seed(1))
    for b in range(B):
        Z = torch.cat([X[b][mask[b]], Y[b][mask[b]]])
        Z = Z - Z.mean(0)
        axis = torch.linalg.eigh(Z.T @ Z).eigenvectors[:, -1]
        # the start's score is a standardised coordinate along its axis: it must be the principal one
        score = torch.cat([log_q[b, 0, 0][mask[b]], log_r[b, 0, 0][mask[b]]])
        corr = torch.corrcoef(torch.stack([score, Z @ axis]))[0, 1]
        assert abs(float(corr)) > 1 - 1e-9


def _binary_problem(seed, B=5, K=3, W=300, d=2, dtype=torch.float64):
    # blocks of unequal sizes, fewer X than Y points in some (a partial split), K candidates
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, W, d, generator=g, dtype=dtype)
    Y = X + 0.4 * torch.randn(B, W, d, generator=g, dtype=dtype) + 0.3
    size_y = torch.randint(W // 2, W + 1, (B,), generator=g)
    size_x = size_y - torch.randint(0, W // 10, (B,), generator=g) * (torch.arange(B) % 2)
    mask_x = torch.arange(W)[None, :] < size_x[:, None]
    mask_y = torch.arange(W)[None, :] < size_y[:, None]
    X, Y = X * mask_x[..., None], Y * mask_y[..., None]
    caps = torch.stack([size_y // 2 - torch.arange(B), size_y - size_y // 2 + torch.arange(B)], 1)
    log_g = torch.log(caps.to(dtype) / size_y[:, None].to(dtype))
    q0 = torch.randn(B, K, 2, W, generator=g, dtype=dtype) * 3
    r0 = torch.randn(B, K, 2, W, generator=g, dtype=dtype) * 3
    return X, Y, mask_x, mask_y, log_g, q0, r0


@pytest.mark.parametrize(
    ("seed", "step", "operator"),
    [(0, 1.0, "sq"), (1, 0.3, "sq"), (2, 3.0, "sq"), (3, 1.0, "factor"), (4, 1.0, "swapped")],
)
def test_compiled_two_cluster_descent_equals_the_torch_step(monkeypatch, seed, step, operator):
    from hiref.engine.geometry.costs import FactorOperator, SqEuclideanOperator, _SwappedOperator
    from hiref.engine.split import lowrank

    X, Y, mask_x, mask_y, log_g, q0, r0 = _binary_problem(seed)
    if operator == "factor":  # a generic rank-3 factorisation, as a sketched cost gives
        g = torch.Generator().manual_seed(seed)
        A = torch.rand(*X.shape[:2], 3, generator=g, dtype=X.dtype) * mask_x[..., None]
        V = torch.rand(*Y.shape[:2], 3, generator=g, dtype=Y.dtype) * mask_y[..., None]
        op = FactorOperator.from_factors(A, V)
    else:
        op = SqEuclideanOperator.from_points(X, Y)
        if operator == "swapped":  # C.T of blocks of equal sizes
            mask_x = mask_y
            op = _SwappedOperator(SqEuclideanOperator.from_points(Y, X * mask_x[..., None]))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # (fewer candidates than threads: the torch step)
    calls = []
    compiled_loop = lowrank.binary_fused
    monkeypatch.setattr(lowrank, "binary_fused", lambda *args: calls.append(1) or compiled_loop(*args))
    out = {}
    for fused in (False, True):
        monkeypatch.setattr(lowrank, "FUSED_CPU", fused)
        out[fused] = mirror_descent(op, mask_x, mask_y, log_g, q0, r0, n_iter=40, step=step)
    assert calls == [1]
    for torch_step, compiled, mask in zip(out[False], out[True], (mask_x, mask_y), strict=True):
        valid = mask[:, None, None, :].expand_as(torch_step)
        assert torch.isinf(compiled[~valid]).all()
        assert (compiled[~valid] < 0).all()
        assert torch.allclose(compiled[valid], torch_step[valid], rtol=1e-9, atol=1e-9)


def test_compiled_two_cluster_descent_runs_in_float32_and_threads(monkeypatch):
    # the levels' dtype on the CPU; candidates shared out over two threads
    from hiref.engine.geometry.costs import SqEuclideanOperator
    from hiref.engine.split import lowrank

    X, Y, mask_x, mask_y, log_g, q0, r0 = _binary_problem(5, B=6, K=2, W=700, dtype=torch.float32)
    op = SqEuclideanOperator.from_points(X, Y)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    out = {}
    for fused in (False, True):
        monkeypatch.setattr(lowrank, "FUSED_CPU", fused)
        out[fused] = mirror_descent(op, mask_x, mask_y, log_g, q0, r0, n_iter=60)
    for torch_step, compiled, mask in zip(out[False], out[True], (mask_x, mask_y), strict=True):
        assert compiled.dtype == torch.float32
        u_torch = (torch_step[:, :, 0] - torch_step[:, :, 1])[mask[:, None, :].expand(-1, 2, -1)]
        u_compiled = (compiled[:, :, 0] - compiled[:, :, 1])[mask[:, None, :].expand(-1, 2, -1)]
        # float32 steps against float64 ones: the same logits to float32 rounding, the same sides
        assert (u_compiled - u_torch).abs().max() <= 1e-3 * u_torch.abs().max()
        assert ((u_compiled > 0) == (u_torch > 0)).float().mean() >= 0.999
