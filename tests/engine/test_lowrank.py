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
