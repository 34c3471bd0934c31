"""The exact finish's starting prices on large clouds, from a subsample of the pairs solved first.

One point in :data:`COARSE_STRIDE` of the smaller cloud and its current partner make a smaller
problem, solved exactly first by the same finish (which may itself start from a coarser one);
its optimum gives every point's starting prices, by its dual's soft c-transform or by its
smoothed slopes (:func:`coarse_start`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hiref.engine.finish.certificate import uses_price_tree
from hiref.engine.finish.neighbours import nearest_points
from hiref.engine.finish.prices import pair_slopes, prices_from_dual
from hiref.engine.geometry.costs import Cost

#: Fewest points of the smaller cloud for which the starting prices come from a subsample of the
#: pairs solved first (:func:`coarse_start`), not from the matching's own displacement field.
#: Two sections of one tissue (the recipe's simulated sections, registered; each a sample of its
#: own) need it from a few 10^4 points: 2 cores, defaults, 100,000 cells 16.0 s -> 9.5 s, 65,536
#: cells 5.8 s -> 5.1 s, 40,000 cells 3.6 s -> 3.0 s, all to the optimum (from 2**17 before).
#: Where the larger cloud has more points (a partial matching) the subsample's optimum also
#: learns which points to leave out, which the hierarchy's matching gets wrong over whole bands,
#: and the auction's reverse bids repair slowly (planted density pairs of 2**20 points cut at
#: 90 %, hierarchy 61 % above the optimum: the finish took 25 s with one subsample of each cloud
#: solved first and another below it, 27 s without the second; before, with a subsample of the
#: pairs alone, its first auction did not end in 8 minutes. 2**16 points: 4.7 s instead of 5.3
#: s.) Planted density and lattice pairs of 2**15-2**17 points take the same time either way.
#: From 2**13 since 2026-12-08 (2**15 before): where the hierarchy's displacement field is far
#: from the optimum's, its integrated prices start the auction on a long war. The paper's pairs
#: (2 cores, seeds 0-1, defaults): half-moon to S-curve 16,384 points 21.5 / 19.6 s -> 6.4 / 4.6 s,
#: 24,576 points 60.5 / 68.0 s -> 11.0 / 13.1 s, 8,192 points 3.4 / 5.1 s -> 2.6 / 2.7 s; with a
#: tenth of one cloud cut off 22.6 / 17.7 s -> 8.1 / 9.2 s; checkerboard 16,384 17.3 / 15.9 s ->
#: 6.0 / 4.9 s; uniform checkerboard 12.8 / 6.6 s -> 7.2 / 3.9 s. Planted pairs (2**14 density,
#: 24,576 lattice), simulated sections (10,000 and 25,000 cells, 20,000 with 5 % dropped) and a
#: 10-D mixture of 8,192 points: within the machine's noise (0.1-1 s either way), every cost
#: within 1e-5 %. 2**12 gave about the same.
COARSE_MIN = 1 << 13
#: The same where exact minima price (above :data:`.neighbours.TREE_MAX_DIM` dimensions), which
#: the subsample itself then also gets: its finish, started from the hierarchy's slopes, priced
#: every point in each of its rounds. Two sections of simulated cells aligned unregistered (54
#: expression components and position, 2 cores): 100,000 cells, the subsample's 12,500 in 6
#: rounds and 10.1 s, with one of its own 2 rounds and 6.7 s; 50,000 cells 3.5-3.7 s -> 2.4-2.7 s.
COARSE_MIN_EXACT = 1 << 12
#: One point in this many of the smaller cloud, in spatial order, makes the subsample.
COARSE_STRIDE = 8
#: Largest squared spacing of the subsample (mean cost to the nearest other subsample point),
#: relative to its mean cost, at which the starting prices are its dual's soft c-transform
#: (:func:`coarse_start`), not its integrated slopes. Two sections of a tissue (the recipe's
#: simulated sections, registered): 0.004; planted pairs, whose cells move about three
#: spacings: 0.5. 300,000-cell sections (2 cores), seed 1: the optimum in 32 s, where the slopes
#: ended 0.13 % above it when the budget ran out; planted density pair of 2**20 points: the
#: first auction took 36-42 million bids from the dual, 7.5 million from the slopes.
COARSE_DUAL_SPACING = 0.05
#: Above :data:`.neighbours.TREE_MAX_DIM` dimensions (exact minima price: :func:`.certificate.uses_price_tree`),
#: the dual gives the prices whatever the spacing. Slopes, like the hierarchy's own
#: (:func:`.prices.price_guess`), are integrated over a nearest-neighbour graph, which in many
#: dimensions links points whose prices differ widely. Two sections of 50,000 simulated cells
#: aligned on position and 54 expression components (``hr.tl.align`` unregistered, 2 cores,
#: squared spacing 0.12 of the mean cost): after the first solve 4,162 points were short from
#: the dual, 49,854 from the subsample's slopes and 49,941 from the hierarchy's; 4 rounds of
#: pricing instead of 8, 59-67 s instead of 76-87 s. The softness hardly matters there (0.25 to
#: 4 times :data:`_DUAL_SOFTNESS`: 4,119-4,172 points short).
#: Temperature of the soft c-transform in units of that squared spacing (the same sections,
#: seed 1: 0.5 left 5,031 points short after the first solve, 2 left 2,697, 8 none; the hard
#: maximum 28,118).
_DUAL_SOFTNESS = 8.0
#: Passes of averaging over each subsample point and its :data:`_COARSE_NEIGHBOURS` nearest that
#: smooth the subsample's slopes (whose own optimum is noisy at the scale of its spacing).
_COARSE_SMOOTHING = 4
_COARSE_NEIGHBOURS = 8
#: Subsample points whose smoothed slopes are averaged at each point of the whole cloud.
_COARSE_SPREAD = 4


@dataclass
class CoarseStart:
    """The starting prices found by :func:`coarse_start`.

    Either ``prices`` (m,), in units of the cost, or ``slopes`` (m, d) to integrate
    (:func:`.prices.prices_from_slopes`).
    """

    prices: np.ndarray | None = None
    slopes: torch.Tensor | None = None


def coarse_start(
    geometry: Cost, A: torch.Tensor, B: torch.Tensor, perm: np.ndarray, Aw: torch.Tensor | None,
    Bw: torch.Tensor | None, *, k: int, bound_budget: float, work_budget: int | None, finish: Callable[..., Any],
) -> tuple[CoarseStart | None, int]:  # fmt: skip
    """The starting prices, from the optimum of a subsample of the pairs solved first, and its work.

    Where the hierarchy's displacement field is biased (a local deformation of tens of spacings
    that its splits follow only in part), prices integrated from it are wrong over whole regions,
    and the auction corrects them by small bids, for long. One point in :data:`COARSE_STRIDE` of
    ``A`` (clouds in spatial order: an even subsample) and its current partner make a smaller
    problem, solved exactly first by this same finish (which may itself start from a coarser
    one). Its optimum gives the prices in one of two ways:

    - where the subsample's squared spacing is at most :data:`COARSE_DUAL_SPACING` of its mean
      cost (two sections of a tissue, which move cells over many spacings), or where exact
      minima price (high dimensions, whatever the spacing), its dual, extended
      to every point by a soft c-transform (:func:`.prices.prices_from_dual`). It is right at
      every scale above the subsample's spacing, which integrated slopes are not: on the
      300,000-cell sections of ``benchmarks/sections.py``, slopes were wrong by 0.05-0.23 of the
      mean cost over some 1,500 cells at a concave corner of the outline, and the first auction
      fought a war of 85 million bids there;
    - elsewhere (planted pairs, whose cells move about three spacings: there the dual's pieces
      are as deep as the costs), by the slopes of its optimal pairs (``-grad_y c``), smoothed
      over neighbouring subsample points and spread to every point of ``B``, to integrate as in
      :func:`.prices.price_guess`.

    Where ``B`` has more points, the subsample of ``B`` also takes one in :data:`COARSE_STRIDE`
    of the points the matching leaves out: the smaller problem is partial too, and its optimum
    leaves out what the whole one should. The dual's prices are then at least those of the
    subsample's points left over (the partial dual's floor); the slopes of the points left out
    are zero (the partial dual's prices are flat there), and the smoothing does not average
    across the edge of that region, where the prices have a kink (averaged across it, on the
    recipe's cells with a tenth cut off one section, the first solve left 90,134 points short
    instead of 34,214).

    ``finish`` is :func:`.polish.exact_finish` (which calls this: passed in, not imported). The
    work is the subsample's finish's (:attr:`.polish.Finish.work`).
    """
    Bw = B if Bw is None else Bw
    pick, partners = np.arange(0, A.shape[0], COARSE_STRIDE), perm[::COARSE_STRIDE]
    if B.shape[0] > A.shape[0]:
        unmatched = np.ones(B.shape[0], dtype=bool)
        unmatched[perm] = False
        partners = np.concatenate([partners, np.flatnonzero(unmatched)[::COARSE_STRIDE]])
    A_s, B_s = A[torch.as_tensor(pick, device=A.device)], B[torch.as_tensor(partners, device=B.device)]
    Bw_s = Bw[torch.as_tensor(partners, device=Bw.device)]
    solved = finish(
        geometry, A_s, B_s, np.arange(pick.shape[0]), neighbours=k, generator=torch.Generator(),
        Aw=None if Aw is None else Aw[torch.as_tensor(pick, device=Aw.device)], Bw=Bw_s,
        bound_budget=bound_budget, work_budget=work_budget,
    )  # fmt: skip
    pairs = torch.as_tensor(solved.perm, device=B.device)
    spacing = squared_spacing(geometry, A_s) / solved.scale
    by_dual = spacing <= COARSE_DUAL_SPACING or not uses_price_tree(geometry, A.shape[1])
    if solved.prices is not None and by_dual:
        p_s = solved.prices
        u_s = geometry.paired(A_s.double(), B_s[pairs].double()).cpu().numpy() / solved.scale + p_s[solved.perm]
        prices = prices_from_dual(geometry, B, A_s, u_s, scale=solved.scale, softness=_DUAL_SOFTNESS * spacing)
        if B_s.shape[0] > A_s.shape[0]:  # no price below the partial dual's floor
            held = np.zeros(B_s.shape[0], dtype=bool)
            held[solved.perm] = True
            np.maximum(prices, p_s[held].min(), out=prices)
        return CoarseStart(prices=prices * solved.scale), solved.work
    g_pairs = pair_slopes(geometry, A_s, B_s[pairs])
    if g_pairs is None:
        return None, solved.work
    g_s = g_pairs.new_zeros((B_s.shape[0], g_pairs.shape[1]))
    g_s[pairs] = g_pairs
    around = torch.as_tensor(nearest_points(Bw_s, Bw_s, _COARSE_NEIGHBOURS + 1), device=B.device)
    if B_s.shape[0] > A_s.shape[0]:
        # Left out where most of the neighbourhood is (flat prices: zero slopes); elsewhere the
        # mean of the matched neighbours (a denser cloud leaves out scattered points, whose zeros
        # would bias it). The smoothing then keeps the two apart: the partial dual's prices have
        # a kink where the region left out begins, which averaging across would spread over a band.
        matched = torch.zeros(B_s.shape[0], dtype=g_s.dtype, device=B.device)
        matched[pairs] = 1.0
        count = matched[around].sum(1, keepdim=True)
        kept = (count > around.shape[1] / 2).to(g_s.dtype)
        g_s = (g_s[around] * matched[around][..., None]).sum(1) / count.clamp_min(1.0) * kept
        weight = kept[around]
        total = weight.sum(1).clamp_min(1.0)
        for _ in range(_COARSE_SMOOTHING):
            g_s = (g_s[around] * weight).sum(1) / total * kept
    else:
        for _ in range(_COARSE_SMOOTHING):
            g_s = g_s[around].mean(1)
    spread = torch.as_tensor(nearest_points(Bw_s, Bw, _COARSE_SPREAD), device=B.device)
    return CoarseStart(slopes=g_s[spread].mean(1)), solved.work


def squared_spacing(geometry: Cost, points: torch.Tensor) -> float:
    """Mean cost between each point and its nearest other point of the same cloud."""
    nearest_other = torch.as_tensor(nearest_points(points, points, 2)[:, 1], device=points.device)
    return float(geometry.paired(points.double(), points[nearest_other].double()).mean())
