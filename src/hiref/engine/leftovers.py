"""Which points of the larger cloud the hierarchy matches, when the clouds differ in size.

With ``unbalanced="partial"`` every point of the smaller cloud A is matched and ``m - n`` points
of the larger cloud B are left over; the optimum leaves out whole regions (the part of a
section that the other does not cover). The levels split both sides into children of equal
shares, so they cannot leave a region out: each level sends the points of A at the edge of
such a region to partners across it, and the errors add up level after level (a planted
pair whose A is cut at 90 % of its width: 230 % above the optimum at 2**16 and 2**20 points).

So the hierarchy first learns what to leave out from a subsample: :data:`SAMPLE` points of A
and as many of B in proportion, matched by the engine itself (exact at that size). Every point
of B then takes the share of left-over points among its nearest subsample points of B
(:data:`VOTES`), and the ``m - n`` points with the highest shares are left out. The hierarchy
matches A into the points kept, a balanced problem; the finish then works on the whole of B
again, and can still trade a kept point for a left-over one. Where the subsample leaves out
points that have points of A around them (B denser everywhere, not a region that A lacks),
nothing is selected: the levels match A into the whole of B as before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hiref.engine.finish.neighbours import TREE_MAX_DIM, nearest_points

#: Points of the smaller cloud in the subsample matched first; only clouds with more points
#: than this are selected from (smaller ones are matched into the whole larger cloud).
SAMPLE = 8192
#: Nearest subsample points of the larger cloud whose share of left-over points each of its
#: points takes: half as many as it has points per subsample point, within these bounds (fewer
#: are noisy, more blur the boundary). Planted density pair cut at 90 % of its width, seed 0,
#: the hierarchy on the points kept, above the truth: 2**18 points, 20 % with 16, 32 or 64 votes;
#: 2**20 points, 190 % with 16, 53 % with 64, 43 % with 128 (10.6 s of selection, not 5.7).
VOTES = (16, 64)
#: Points of the larger cloud whose nearest subsample points are sought at a time.
_CHUNK = 1 << 16
#: Largest ``m * (points of B in the subsample) * d`` for which the nearest subsample points are
#: found by exact distances, above :data:`~hiref.engine.finish.neighbours.TREE_MAX_DIM` working
#: dimensions (below, a k-d tree finds them at any size).
EXACT_BUDGET = 2.0**34


def applies(n: int, m: int, d: int) -> bool:
    """Whether the hierarchy matches ``n`` points into a selection of ``m`` points in ``d`` working dimensions."""
    if not SAMPLE < n < m:
        return False
    return d <= TREE_MAX_DIM or float(m) * _sample_sizes(n, m)[1] * d <= EXACT_BUDGET


def _sample_sizes(n: int, m: int) -> tuple[int, int]:
    return SAMPLE, min(m, round(SAMPLE * m / n))


def select_kept(
    A: torch.Tensor, B: torch.Tensor, solve: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
    generator: torch.Generator,
) -> np.ndarray | None:  # fmt: skip
    """The ``n`` points of ``B`` that the hierarchy matches ``A`` into (sorted indices); ``None``: all of them.

    Parameters
    ----------
    A, B
        The smaller and the larger cloud, (n, d) and (m, d), in the coordinates the levels work in.
    solve
        Matches a subsample of A into one of B (fewer points in the first), returning the
        partner of each of its points.
    generator
        Source of randomness (the subsamples, ties between equal shares).
    """
    n, m = A.shape[0], B.shape[0]
    k, k_b = _sample_sizes(n, m)
    pick_a = torch.sort(torch.randperm(n, generator=generator)[:k]).values
    pick_b = torch.sort(torch.randperm(m, generator=generator)[:k_b]).values
    A_s, B_s = A[pick_a.to(A.device)], B[pick_b.to(B.device)]
    partners = solve(A_s, B_s)
    left_over = np.ones(k_b, dtype=bool)
    left_over[partners] = False
    if not _left_out_where_a_is_absent(A_s, B_s, left_over):
        return None
    votes = int(np.clip(m // (2 * k_b), *VOTES))
    share = np.empty(m)
    for lo in range(0, m, _CHUNK):  # (the neighbours of all points at once: 0.5 GB at 2**20)
        near = nearest_points(B[pick_b.to(B.device)], B[lo : lo + _CHUNK], votes)
        share[lo : lo + _CHUNK] = left_over[near].mean(1)
    # ties (whole regions of equal shares) broken at random, below the step of one vote
    share += torch.rand(m, generator=generator, dtype=torch.float64).numpy() * (0.5 / votes)
    return np.sort(np.argpartition(share, n - 1)[:n])


def _left_out_where_a_is_absent(A_s: torch.Tensor, B_s: torch.Tensor, left_over: np.ndarray) -> bool:
    """Whether the subsample leaves out points of B in regions where A has few points.

    Among the :data:`VOTES` nearest subsample points (of both clouds) of each point of B left
    over, the median share of points of A, against half its share of the whole subsample.
    Where B only has more points everywhere (a section with a tenth more cells spread at
    random), the subsample's optimum leaves out a strip along the edge, as the continuous problem
    does, while the whole clouds' optimum leaves out points scattered everywhere: selecting
    then cut holes (planted density pair of 2**16 points, X a random 90 %: the hierarchy 278 %
    above the truth, 85 % without the selection).
    """
    joint = torch.cat([A_s, B_s])
    near = nearest_points(joint, B_s[torch.as_tensor(np.flatnonzero(left_over), device=B_s.device)], VOTES[0] + 1)
    share_a = (near[:, 1:] < A_s.shape[0]).mean(1)
    return bool(np.median(share_a) < 0.5 * A_s.shape[0] / joint.shape[0])


def spread_labels(labels: np.ndarray, B: torch.Tensor, kept: np.ndarray) -> np.ndarray:
    """Labels of all points of ``B`` (m,) from those of ``kept``: the others take their nearest kept point's."""
    out = np.empty(B.shape[0], dtype=labels.dtype)
    out[kept] = labels
    rest = np.setdiff1d(np.arange(B.shape[0]), kept)
    if rest.size:
        kept_t = torch.as_tensor(kept, device=B.device)
        near = nearest_points(B[kept_t], B[torch.as_tensor(rest, device=B.device)], 1)[:, 0]
        out[rest] = labels[near]
    return out
