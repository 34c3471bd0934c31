"""Exact assignment of a stack of small dense problems, all at once, by shortest augmenting paths.

The Hungarian method in its shortest-path form (Kuhn-Munkres with potentials, as in Jonker and
Volgenant): rows are added one at a time; for each, a Dijkstra search over the columns in reduced
costs ``C[i, j] - u[i] - v[j] >= 0`` finds the cheapest augmenting path to a free column, the
potentials move by the search's distances, and the path is flipped. Exact in floating point: no
``eps``, no scaling, and a problem of ``t`` columns needs at most ``t * (t + 3)`` steps
whatever its costs.

Every problem of a stack runs in lockstep, as one batch of tensor operations per step: each
problem either takes one Dijkstra step, or one hop back along the path it found (flipping it),
or starts its next free row. The batch needs as many steps as its busiest problem, not the sum
over rows of the slowest problem per row; nothing in a step leaves the device, and the host asks
only every :data:`CHECK_EVERY` steps whether every problem is done (on CUDA the block of steps in
between is one CUDA graph: :func:`~hiref.engine.repeat.repeat_until`). A large stack's busiest
problem needs several times the steps of its median one, so once half of the problems are done
they are set aside and the steps go on over the others only (1,024 leaves of 64 points: the
median problem is done after about a quarter of the stack's steps).

The searches are long when every row wants the same few columns, as in the hierarchy's leaves
(a small cloud matched to a shifted copy): about 30 steps per row from the plain start
``v = 0``. So the column potentials start from a short entropic transport on the problem (16
Sinkhorn iterations in float32 with ``eps`` falling from 0.1 to 3e-4 of the cost range: a few
passes over the costs, in a handful of kernels each); then ``u[i] = min_j C[i, j] - v[j]``,
and every row whose cheapest column no lower row also wants takes it, a partial optimum to start
from. On the 1,024 leaves of 64 points of a 65,536-point planted pair this cuts the steps of
the stack from 1,918 to 240 (density) and from 1,711 to 208 (lattice); on subsamples of 384
points from 12,118 to 3,392. The potentials need not be optimal: any start is exact, a better
one is only shorter. Problems with more columns than rows get zero-cost dummy rows (a square
problem, for which any column potentials are valid), which start on the columns of highest
potential, raised to the highest so that those arcs are tight.
"""

from __future__ import annotations

import torch

from hiref.engine.repeat import repeat_until

#: Steps between two questions to the host (one synchronisation on a GPU) whether every problem
#: is done; the steps after a problem is done change nothing.
CHECK_EVERY = 16

#: Fewest problems in a stack for it to be compacted once half of them are done: each step then
#: runs over the problems still busy only (a stack's busiest problem needs several times the
#: steps of its median one).
COMPACT_MIN = 64

#: The entropic start: (eps relative to a problem's cost range, Sinkhorn iterations), in turn.
START_SCHEDULE = ((0.1, 2), (0.03, 2), (0.01, 3), (0.003, 3), (0.001, 3), (0.0003, 3))

# Phases of a problem.
_SEARCH, _FLIP, _DONE = 0, 1, 2


def entropic_potentials(C: torch.Tensor, schedule: tuple[tuple[float, int], ...] | None = None) -> torch.Tensor:
    """Column potentials (B, t) in float64, from Sinkhorn iterations on each square problem of ``C``.

    ``schedule``: (eps relative to the cost range, iterations) in turn; default :data:`START_SCHEDULE`.
    """
    schedule = START_SCHEDULE if schedule is None else schedule
    n_b, s, t = C.shape
    low = C.amin((1, 2), keepdim=True)
    scale = (C.amax((1, 2), keepdim=True) - low).clamp_min(torch.finfo(C.dtype).tiny)
    K = ((C - low) / scale).float()
    f, g = K.new_zeros((n_b, s, 1)), K.new_zeros((n_b, 1, t))
    for eps, iterations in schedule:
        for _ in range(iterations):
            f = -eps * torch.logsumexp((g - K) / eps, 2, keepdim=True)
            g = -eps * torch.logsumexp((f - K) / eps, 1, keepdim=True)
    return g[:, 0, :].double() * scale[:, 0, :]


def _greedy_start(shifted: torch.Tensor, u: torch.Tensor, dummy_cols: torch.Tensor | None) -> torch.Tensor:
    """Row of every column (B, t + 1; -1: free) after a greedy start on tight arcs.

    Each row takes its cheapest column of ``shifted`` (the costs less the column potentials)
    unless a lower row wants it; the dummy rows (after the real ones, if any) take
    ``dummy_cols`` first, columns on which they are tight.
    """
    n_b, rows, t = shifted.shape
    want = (shifted - u[:, :rows, None]).argmin(2)
    order = torch.arange(rows, device=shifted.device).expand(n_b, rows)
    if dummy_cols is not None:
        real = rows - dummy_cols.shape[1]
        want[:, real:] = dummy_cols
        order = torch.where(order >= real, order - rows, order)  # dummies first
    first = torch.full((n_b, t + 1), rows, dtype=torch.long, device=shifted.device)
    first.scatter_reduce_(1, want, order, reduce="amin")
    won = first.gather(1, want) == order
    rows_idx = torch.arange(rows, device=shifted.device).expand(n_b, rows)
    row_of = torch.full((n_b, t + 1), -1, dtype=torch.long, device=shifted.device)
    row_of.scatter_(1, torch.where(won, want, t), torch.where(won, rows_idx, -1))
    row_of[:, t] = -1
    return row_of


# The state's tensors with one entry per problem (narrowed when the stack is compacted).
_PER_PROBLEM = ("C", "u", "v", "row_of", "queue", "n_free", "taken", "minv", "way", "used", "at", "phase")


class _Lockstep:
    """State of a stack's searches (spare slots: row ``s`` for "no row", column ``t`` the root of each search)."""

    def __init__(self, C: torch.Tensor, v: torch.Tensor, dummy_cols: torch.Tensor | None = None) -> None:
        n_b, s, t = C.shape
        dev = C.device
        self.C, self.s, self.t = C, s, t
        self.batch = torch.arange(n_b, device=dev)
        shifted = C - v[:, None, :]
        self.u = torch.cat([shifted.min(2).values, C.new_zeros((n_b, 1))], 1)
        self.v = torch.cat([v, C.new_zeros((n_b, 1))], 1)
        self.row_of = _greedy_start(shifted, self.u, dummy_cols)
        del shifted
        # The rows the start left free, in order (first ``n_free`` of ``queue``), and how many are taken.
        matched = torch.zeros((n_b, s + 1), dtype=torch.bool, device=dev)
        matched.scatter_(1, torch.where(self.row_of[:, :t] >= 0, self.row_of[:, :t], s), value=True)
        self.queue = matched[:, :s].to(torch.int8).argsort(dim=1, stable=True)
        self.n_free = s - matched[:, :s].sum(1)
        self.taken = torch.zeros(n_b, dtype=torch.long, device=dev)
        self.minv = C.new_full((n_b, t), float("inf"))
        self.way = torch.full((n_b, t + 1), t, dtype=torch.long, device=dev)
        self.used = torch.zeros((n_b, t + 1), dtype=torch.bool, device=dev)
        self.at = torch.full((n_b,), t, dtype=torch.long, device=dev)  # current column of the search or the flip
        self.phase = torch.full((n_b,), _FLIP, dtype=torch.long, device=dev)  # a flip at the root: start a row
        self.inf = torch.tensor(float("inf"), dtype=C.dtype, device=dev)

    def step(self) -> None:
        """One step of every problem, in place."""
        s, t, b = self.s, self.t, self.batch
        phase, at, row_of = self.phase, self.at, self.row_of
        # 1. A problem back at the root starts its next free row, or is done.
        start = (phase == _FLIP) & (at == t)
        has = self.taken < self.n_free
        nxt = self.queue[b, self.taken.clamp_max(s - 1)]
        self.taken += start & has
        row_of[:, t] = torch.where(start, torch.where(has, nxt, -1), row_of[:, t])
        phase.copy_(torch.where(start, torch.where(has, _SEARCH, _DONE), phase))
        self.used &= ~start[:, None]
        self.minv.masked_fill_(start[:, None], float("inf"))
        self.way.masked_fill_(start[:, None], t)
        # 2. A problem that reached a free column flips its path by one hop towards the root.
        flip = (phase == _FLIP) & (at != t)
        back = self.way[b, at]
        row_of[b, torch.where(flip, at, t)] = torch.where(flip, row_of[b, back], row_of[:, t])
        at.copy_(torch.where(flip, back, at))
        # 3. A searching problem closes its current column and scans from the row matched to it.
        search = phase == _SEARCH
        self.used[b, at] |= search
        used, closed = self.used, self.used[:, :t]
        i0 = row_of[b, at].clamp_min(0)
        reduced = self.C[b, i0] - self.u[b, i0][:, None] - self.v[:, :t]
        better = search[:, None] & ~closed & (reduced < self.minv)
        self.minv.copy_(torch.where(better, reduced, self.minv))
        self.way[:, :t] = torch.where(better, at[:, None], self.way[:, :t])
        delta, nearest = torch.where(closed, self.inf, self.minv).min(1)
        delta = torch.where(search, delta, 0.0)
        shift = torch.where(used, delta[:, None], 0.0)
        self.u.scatter_add_(1, torch.where(used, row_of, s).clamp_min(0), shift)
        self.v -= shift
        self.minv -= torch.where(closed, 0.0, delta[:, None])
        at.copy_(torch.where(search, nearest, at))
        phase.copy_(torch.where(search & (row_of[b, at] < 0), _FLIP, phase))

    def busy(self) -> int:
        """Problems not done yet (a host synchronisation)."""
        return int((self.phase != _DONE).sum())

    def narrow(self, keep: torch.Tensor) -> None:
        """Keep only the problems ``keep`` (indices), in that order."""
        for name in _PER_PROBLEM:
            setattr(self, name, getattr(self, name)[keep])
        self.batch = torch.arange(keep.shape[0], device=keep.device)

    def columns(self) -> torch.Tensor:
        """(B, s) column of every row."""
        n_b, s, t = self.C.shape
        cols = torch.empty((n_b, s + 1), dtype=torch.long, device=self.C.device)
        row_of = self.row_of[:, :t]
        cols.scatter_(1, torch.where(row_of >= 0, row_of, s), torch.arange(t, device=self.C.device).expand(n_b, t))
        return cols[:, :s]


def assign_lockstep(costs: torch.Tensor, *, check_every: int | None = None) -> tuple[torch.Tensor, int]:
    """Optimal assignment of every problem of a stack, on the costs' device.

    Parameters
    ----------
    costs
        (B, s, t) with ``s <= t``, finite; every row goes to a distinct column. Solved in float64.
    check_every
        Steps between two checks whether every problem is done (default :data:`CHECK_EVERY`).

    Returns
    -------
    cols
        (B, s) int64: row ``i`` of problem ``b`` goes to column ``cols[b, i]``.
    steps
        Lockstep steps run.
    """
    if costs.ndim != 3 or costs.shape[1] > costs.shape[2]:
        msg = f"`costs` must be (B, s, t) with s <= t, got shape {tuple(costs.shape)}"
        raise ValueError(msg)
    n_b, s = costs.shape[:2]
    if n_b == 0 or s == 0:
        return torch.empty((n_b, s), dtype=torch.long, device=costs.device), 0
    C = costs.double()
    if not bool(torch.isfinite(C).all()):
        msg = "`costs` must be finite"
        raise ValueError(msg)
    t = C.shape[2]
    dummy_cols = None
    if s < t:  # dummy rows of zero cost: a square problem, for which any column potentials are valid
        C = torch.cat([C, C.new_zeros((n_b, t - s, t))], 1)
    v = entropic_potentials(C)
    if s < t:
        # The dummy rows' columns are those of highest potential; raised to the highest, they are
        # tight for every dummy row, which takes one of them from the start.
        dummy_cols = v.topk(t - s, 1).indices
        v.scatter_(1, dummy_cols, v.amax(1, keepdim=True).expand(-1, t - s))
    state = _Lockstep(C, v, dummy_cols)
    del C, v
    every = CHECK_EVERY if check_every is None else check_every
    # Per row: a search of at most (rows matched + 1) steps, as many hops back, and a start; each
    # run of blocks (one per compaction) may end up to a block past its last problem's end.
    most = t * (t + 3) + every * (2 + n_b.bit_length())
    cols = torch.empty((n_b, t), dtype=torch.long, device=costs.device)
    origin = torch.arange(n_b, device=costs.device)
    steps = 0
    while True:
        # Until every problem is done, or (in a large stack) half of them: those are set aside and
        # the steps go on over the others only.
        size = origin.shape[0]
        enough = 0 if size < COMPACT_MIN else size // 2
        ran = repeat_until(
            state.step, lambda enough=enough: state.busy() <= enough, every=every, most=most - steps,
            device=costs.device,
        )  # fmt: skip
        steps += ran
        done = state.phase == _DONE
        cols[origin[done]] = state.columns()[done]
        keep = torch.nonzero(~done)[:, 0]
        if keep.shape[0] == 0:
            return cols[:, :s], steps
        state.narrow(keep)
        origin = origin[keep]
