"""Working copies of the clouds: centred when far from the origin, projected on principal axes in high dimension."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from hiref.engine.geometry.costs import Cost, Power, SqEuclidean

if TYPE_CHECKING:
    from hiref.engine.distributed.comm import Collectives

#: Clouds whose joint mean lies further from the origin than this many times their spread are
#: centred before solving (see :func:`centred`).
CENTRE_RATIO = 8.0


def centred(X: torch.Tensor, Y: torch.Tensor, geometry: Cost) -> tuple[torch.Tensor, torch.Tensor]:
    """``X`` and ``Y`` minus their joint mean, when the cost ignores translations and the offset is large.

    A large common offset (coordinates around ``1e7``, say) costs precision in float32 and
    nothing else for the Euclidean family of costs, which depend on ``x - y`` only; so those
    clouds are centred, in float64, before the engine sees them (the matching and its reported
    cost are unchanged in exact arithmetic). Clouds already within :data:`CENTRE_RATIO` spreads of
    the origin, and custom costs, are returned as they are. Floating inputs keep their dtype,
    integer inputs become float64.
    """
    if not isinstance(geometry, SqEuclidean | Power):
        return X, Y
    rows = max(1, (1 << 22) // max(1, X.shape[1]))
    parts = [(P, lo) for P in (X, Y) for lo in range(0, P.shape[0], rows)]
    total = sum(P[lo : lo + rows].to(torch.float64).sum(0) for P, lo in parts)
    mean = total / (X.shape[0] + Y.shape[0])
    spread2 = sum(((P[lo : lo + rows].to(torch.float64) - mean) ** 2).sum() for P, lo in parts)
    spread = math.sqrt(float(spread2) / (X.shape[0] + Y.shape[0]))
    if float(mean.norm()) <= CENTRE_RATIO * spread:
        return X, Y

    def shift(P: torch.Tensor) -> torch.Tensor:
        out = torch.empty(P.shape, dtype=P.dtype if P.is_floating_point() else torch.float64, device=P.device)
        for lo in range(0, P.shape[0], rows):
            out[lo : lo + rows] = (P[lo : lo + rows].to(torch.float64) - mean).to(out.dtype)
        return out

    return shift(X), shift(Y)


def principal_axes(
    take: Callable[[int, torch.Tensor], torch.Tensor],
    sizes: tuple[int, int],
    dim: int,
    dtype: torch.dtype,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and ``dim`` principal axes of both clouds, from a randomized SVD of a subsample.

    ``take(side, rows)`` returns rows of cloud ``side`` (0: A, 1: B), whose sizes are ``sizes``;
    up to 8192 random points of each cloud are centred together.
    """
    picks = [torch.randperm(size, generator=generator)[:8192] for size in sizes]
    sample = torch.cat([take(side, pick) for side, pick in enumerate(picks)]).to(dtype)
    centre = sample.mean(0)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))  # svd_lowrank draws globally
    # One thread: the axes (and so every later step) must not depend on how many threads the
    # engine was given (see hiref.engine.threads); the sample is small.
    torch.set_num_threads(1)
    try:
        _, _, V = torch.svd_lowrank(sample - centre, q=min(dim + 10, *sample.shape), niter=3)
    finally:
        torch.random.set_rng_state(state)
        torch.set_num_threads(threads)
    return centre, V[:, :dim]


def project(P: torch.Tensor, centre: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(P - centre) @ basis`` in the basis's precision, a chunk of rows at a time."""
    rows = max(1, (1 << 24) // max(1, P.shape[1]))
    parts = [(P[lo : lo + rows].to(basis.dtype) - centre) @ basis for lo in range(0, P.shape[0], rows)]
    return torch.cat(parts) if parts else P.new_zeros((0, basis.shape[1]), dtype=basis.dtype)


def working_copy(
    A: torch.Tensor, B: torch.Tensor, *, los: tuple[int, int], sizes: tuple[int, int], dim: int | None,
    dtype: torch.dtype, comm: Collectives, generator: torch.Generator,
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """How to make the levels' copy of a cloud: a cast to ``dtype``, or a projection on ``dim`` principal axes.

    ``A`` and ``B`` are this process's rows ``los[0] ...`` and ``los[1] ...`` of clouds of
    ``sizes`` points; the axes are fitted on a subsample that every process of ``comm`` agrees on.
    """
    if dim is None:
        return lambda P: P.to(dtype)

    def take(side: int, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(A.device)
        return comm.fetch((A, B)[side], los[side], rows, torch.ones_like(rows, dtype=torch.bool))

    centre, basis = principal_axes(take, sizes, dim, dtype, generator)
    return lambda P: project(P, centre, basis)
