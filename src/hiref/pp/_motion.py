"""Rigid motions of 2-D point sets for :func:`hiref.pp.register`: search, refine, decide (arrays only).

Every function works on samples of a fixed size (``n_sample`` cells per slice, the search on
at most :data:`SEARCH_SAMPLE` of them), so nothing here grows with the number of cells; only
applying the motion found to all cells does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hiref.engine import solve

#: Cells per slice scored by the search.
SEARCH_SAMPLE = 500
#: Nearest-neighbour rounds before the one-to-one matchings of :func:`refine_motion`.
NN_ROUNDS = 10
#: Most entries of the (candidates, cells, cells) distance block evaluated at once by :func:`chamfer_scores`.
CHAMFER_BLOCK = 2**23


@dataclass(frozen=True)
class Sample:
    """The sampled cells of both slices, in the order the search and the fit use them.

    Attributes
    ----------
    P, M
        Coordinates of the reference and moving samples, (k, 2).
    EP, EM
        Their expression, scaled against the spatial spread (None: coordinates only).
    """

    P: np.ndarray
    M: np.ndarray
    EP: np.ndarray | None = None
    EM: np.ndarray | None = None

    @property
    def k(self) -> int:
        """Cells per slice."""
        return len(self.P)

    def expression_distances(self, q: int) -> np.ndarray | None:
        """Squared expression distances of the first ``q`` sampled cells, (q, q), or None."""
        if self.EP is None or self.EM is None:
            return None
        EP, EM = self.EP, self.EM
        De = (EP**2).sum(1)[:, None] + (EM**2).sum(1)[None, :] - 2 * EP @ EM.T
        return De[:q, :q]


@dataclass(frozen=True)
class Search:
    """Result of :func:`search_motions`.

    Attributes
    ----------
    angles, reflected
        Every candidate motion (rotation in degrees about the centroids, mirrored or not).
    scores
        Their symmetric nearest-neighbour cost.
    best
        Index of the best candidate.
    rotation, translation
        Its motion, ``x -> rotation @ x + translation``.
    margin
        Score of the best candidate at least 45 degrees away (or mirrored) over the best score.
    """

    angles: np.ndarray
    reflected: np.ndarray
    scores: np.ndarray
    best: int
    rotation: np.ndarray
    translation: np.ndarray
    margin: float


def even_sample(P: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` cells spread evenly over the slice, in random order.

    One random cell per occupied square of a grid sized to have about ``k`` occupied squares
    (topped up with random cells where fewer are occupied). Two random subsamples of
    near-uniform tissue are each other's match only up to sampling noise, which moves the
    fitted rotation by degrees (DLPFC, 1,000 of 3,600 spots: up to 3.2 degrees over seeds);
    evenly spread ones keep it within 0.8.
    """
    n = P.shape[0]
    if k >= n:
        return rng.permutation(n)
    span = float(np.ptp(P, axis=0).max()) if n else 0.0
    if not np.isfinite(span) or span <= 0:
        return rng.choice(n, k, replace=False)
    lo, size = P.min(0), span / np.sqrt(k)
    for _ in range(30):  # the number of occupied squares falls as they grow
        squares = np.floor((P - lo) / size).astype(np.int64)
        key = squares[:, 0] * (int(squares[:, 1].max()) + 1) + squares[:, 1]
        occupied = np.unique(key).size
        if abs(occupied - k) <= 0.02 * k:
            break
        size *= np.sqrt(occupied / k)
    order = rng.permutation(n)
    _, first = np.unique(key[order], return_index=True)
    picked = rng.permutation(order[first])[:k]
    if picked.size < k:
        rest = np.setdiff1d(np.arange(n), picked)
        picked = rng.permutation(np.concatenate([picked, rng.choice(rest, k - picked.size, replace=False)]))
    return picked


def rotation(degrees: float, *, reflect: bool) -> np.ndarray:
    """The 2 x 2 rotation by ``degrees``, after a reflection of the y axis if ``reflect``."""
    t = np.deg2rad(degrees)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return R @ np.diag([1.0, -1.0]) if reflect else R


def procrustes(A: np.ndarray, B: np.ndarray, *, reflect: bool) -> tuple[np.ndarray, np.ndarray]:
    """``R``, ``t`` minimising ``sum |a - (R b + t)|^2``, ``R`` a rotation (a reflection if ``reflect``)."""
    ca, cb = A.mean(0), B.mean(0)
    U, _, Vt = np.linalg.svd((A - ca).T @ (B - cb))
    D = np.eye(A.shape[1])
    D[-1, -1] = -1.0 if reflect else 1.0
    if not reflect and np.linalg.det(U @ Vt) < 0:
        D[-1, -1] = -1.0
    if reflect and np.linalg.det(U @ Vt) > 0:
        D[-1, -1] = -1.0
    elif reflect:
        D[-1, -1] = 1.0
    R = U @ D @ Vt
    return R, ca - R @ cb


def spread_of(X: np.ndarray) -> float:
    """Root mean squared distance to the centroid."""
    return float(np.sqrt(((X - X.mean(0)) ** 2).sum(1).mean()))


def chamfer_scores(P: np.ndarray, moved: np.ndarray, De: np.ndarray | None) -> np.ndarray:
    """Symmetric nearest-neighbour cost of every candidate motion, evaluated in batches of candidates.

    Parameters
    ----------
    P
        Reference cells, (k_ref, 2).
    moved
        The moving cells under each candidate, (n_candidates, k, 2).
    De
        Squared expression distances (k_ref, k), the same for every candidate; None: none.

    Returns
    -------
    For each candidate, the mean over both slices of every cell's smallest squared distance to
    the other slice (coordinates plus expression), (n_candidates,).
    """
    import torch

    out = np.empty(len(moved))
    centre = P.mean(0)
    ref = torch.from_numpy(np.ascontiguousarray(P - centre, dtype=np.float64))
    extra = None if De is None else torch.from_numpy(np.ascontiguousarray(De, dtype=np.float64))
    step = max(1, CHAMFER_BLOCK // max(1, P.shape[0] * moved.shape[1]))
    for start in range(0, len(moved), step):
        block = torch.from_numpy(np.ascontiguousarray(moved[start : start + step] - centre, dtype=np.float64))
        # Differences, not the |p|^2 + |m|^2 - 2 p.m expansion: no digits lost far from the origin.
        # Torch's batched kernel: a tenth of the time of numpy's temporaries on 2 cores.
        D = torch.cdist(ref.expand(len(block), -1, -1), block, compute_mode="donot_use_mm_for_euclid_dist").square_()
        if extra is not None:
            D += extra
        out[start : start + step] = (0.5 * (D.amin(2).mean(1) + D.amin(1).mean(1))).numpy()
    return out


def _margin(angles: np.ndarray, reflected: np.ndarray, scores: np.ndarray, order: np.ndarray) -> float:
    """The best score at least 45 degrees away from the best candidate (or mirrored), over the best score."""
    best = order[0]
    far = [i for i in order[1:] if reflected[i] != reflected[best]
           or abs((angles[i] - angles[best] + 180) % 360 - 180) >= 45]  # fmt: skip
    return float(scores[far[0]] / scores[best]) if far and scores[best] > 0 else float("inf")


def search_motions(sample: Sample, angles: list[float], reflects: list[bool]) -> Search:
    """Score every rotation about the centroids (then centroid onto centroid) at once; keep the best.

    Parameters
    ----------
    sample
        The sampled cells; the first :data:`SEARCH_SAMPLE` of each slice are scored.
    angles
        Rotations to try, in degrees.
    reflects
        Whether to try the plain and/or mirrored slice.
    """
    cP, cM = sample.P.mean(0), sample.M.mean(0)
    cand_angles = np.array([a for _ in reflects for a in angles], dtype=float)
    cand_reflected = np.array([f for f in reflects for _ in angles], dtype=bool)
    rotations = [rotation(a, reflect=f) for a, f in zip(cand_angles, cand_reflected, strict=True)]
    q = min(sample.k, SEARCH_SAMPLE)
    moved = np.stack([sample.M[:q] @ R.T + (cP - R @ cM) for R in rotations])
    scores = chamfer_scores(sample.P[:q], moved, sample.expression_distances(q))
    order = np.argsort(scores)
    R = rotations[order[0]]
    margin = _margin(cand_angles, cand_reflected, scores, order)
    return Search(cand_angles, cand_reflected, scores, int(order[0]), R, cP - R @ cM, margin)


def match_cost(
    P: np.ndarray,
    M: np.ndarray,
    EP: np.ndarray | None,
    EM: np.ndarray | None,
    seed: int,
    device: str | None = None,
    *,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair squared distance (coordinates alone) and matching of a one-to-one alignment of ``P`` and ``M``.

    The hierarchy's own matching (no polish, no windows) on coordinates next to expression: a
    motion is fitted to several such matchings, so speed matters more here than the last
    percent of transport cost. ``device``: the engine's torch device (``None``: cuda when available).
    With unequal sizes every cell of the smaller side is matched (a partial matching): the
    costs are those of the matched cells of ``P``, and ``perm`` holds ``-1`` for the others.
    ``exact``: the engine's default, exact finish instead (for the decision: the hierarchy's own
    partial matchings of samples vary by up to a third in cost from seed to seed).
    """
    A = P if EP is None else np.concatenate([P, EP], 1)
    B = M if EM is None else np.concatenate([M, EM], 1)
    fast = {} if exact else {"n_starts": 4, "polish": False, "refine": False}
    perm = solve(A, B, progress=False, seed=seed, device=device, **fast).perm
    ok = perm >= 0
    return ((P[ok] - M[perm[ok]]) ** 2).sum(1), perm


def proportional(sample: Sample, ratio: float) -> Sample:
    """The sample with the side of the smaller slice cut to ``ratio`` (cells of moving over reference slice).

    Both slices are then sampled at the same density, so a partial matching pairs every cell of
    the smaller one with the part of the larger one it covers: a section cut to part of the
    other's area scores well where it already lies, instead of being pulled onto the other's
    centre as a one-to-one matching of equal samples would.
    """
    k = sample.k
    if ratio < 1:
        cut = max(2, round(k * ratio))
        return Sample(sample.P, sample.M[:cut], sample.EP, None if sample.EM is None else sample.EM[:cut])
    cut = max(2, round(k / ratio))
    return Sample(sample.P[:cut], sample.M, None if sample.EP is None else sample.EP[:cut], sample.EM)


def _step(
    sample: Sample, R: np.ndarray, t: np.ndarray, i: int, tree: cKDTree, seed: int, device: str | None
) -> tuple[np.ndarray, ...]:
    """Pairs (moving, reference) of round ``i``: nearest neighbours both ways, then one-to-one matchings."""
    Ps, Ms = sample.P, sample.M
    Mt = Ms @ R.T + t
    if i < NN_ROUNDS:
        A = Ps if sample.EP is None else np.concatenate([Ps, sample.EP], 1)
        B = Mt if sample.EM is None else np.concatenate([Mt, sample.EM], 1)
        to_ref = tree.query(B)[1]
        to_mov = cKDTree(B).query(A)[1]
        return np.concatenate([Ms, Ms[to_mov]]), np.concatenate([Ps[to_ref], Ps])
    perm = match_cost(Ps, Mt, sample.EP, sample.EM, seed, device)[1]
    return Ms[perm], Ps


def refine_motion(
    sample: Sample, R: np.ndarray, t: np.ndarray, *, reflect: bool, n_iter: int, seed: int, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Alternate matchings and Procrustes fits from ``(R, t)`` until the motion settles.

    :data:`NN_ROUNDS` cheap nearest-neighbour rounds come first, then at most ``n_iter``
    one-to-one matchings; ``n_iter=0`` returns ``(R, t)`` unchanged.
    """
    A = sample.P if sample.EP is None else np.concatenate([sample.P, sample.EP], 1)
    tree = cKDTree(A)
    for i in range(n_iter + NN_ROUNDS if n_iter > 0 else 0):
        src, dst = _step(sample, R, t, i, tree, seed, device)
        R_new, t_new = procrustes(dst, src, reflect=reflect)
        moved_deg = np.abs(np.rad2deg(np.arctan2(R_new[1, 0], R_new[0, 0]) - np.arctan2(R[1, 0], R[0, 0])))
        shift = np.linalg.norm(t_new - t)
        R, t = R_new, t_new
        if i >= NN_ROUNDS and min(moved_deg, 360 - moved_deg) < 1e-2 and shift < 1e-3 * spread_of(sample.P):
            break
    return R, t


@dataclass(frozen=True)
class Decision:
    """Whether the motion found is worth applying, from :func:`decide_motion`.

    Attributes
    ----------
    moved
        Apply the motion (else the slice stays put).
    cost, identity_cost
        Mean squared distance of the matched sampled cells after the motion, and without one.
    gain
        ``1 - cost / identity_cost``.
    """

    moved: bool
    cost: float
    identity_cost: float
    gain: float


def decide_motion(
    sample: Sample,
    R: np.ndarray,
    t: np.ndarray,
    *,
    min_gain: float,
    forced: bool,
    seed: int,
    device: str | None = None,
    ratio: float = 1.0,
) -> Decision:
    """Keep the motion only if its matching cost beats leaving the slice put by a significant margin.

    Significant: the drop exceeds twice its standard error and is at least ``min_gain`` of the
    identity's cost. ``forced`` (an explicit angle) keeps the motion anyway. ``ratio``: cells of
    the moving slice over the reference's; both costs are those of a partial matching of samples
    of that ratio (:func:`proportional`), so that a slice covering only part of the other is
    judged where it lies (a 70 % crop of a DLPFC section, in place, was otherwise moved onto the
    other's centre: layer accuracy 0.84 -> 0.47).
    """
    sample = proportional(sample, ratio)
    pair_cost, _ = match_cost(sample.P, sample.M @ R.T + t, sample.EP, sample.EM, seed, device, exact=True)
    cost = float(pair_cost.mean())
    identity_cost, _ = match_cost(sample.P, sample.M, sample.EP, sample.EM, seed, device, exact=True)
    gain = 1.0 - cost / float(identity_cost.mean()) if identity_cost.mean() > 0 else 0.0
    k = len(pair_cost)
    noise = 2.0 * np.sqrt(pair_cost.var() / k + identity_cost.var() / k)
    significant = identity_cost.mean() - cost > noise and gain >= min_gain
    return Decision(bool(significant or forced), cost, float(identity_cost.mean()), float(gain))
