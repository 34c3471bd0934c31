"""Cost geometries: how the engine evaluates and factorizes a ground cost.

A geometry answers a few questions, and the solvers never look inside:

- :meth:`Cost.block_operator`: for a stack of blocks, a linear operator that multiplies the
  (never formed) block cost matrices by thin factors;
- :meth:`Cost.dense`: exact cost matrices of small blocks (leaves, subsamples);
- :meth:`Cost.paired`: exact cost of given pairs, for reporting;
- :meth:`Cost.paired_at`: exact costs of pairs given by indices (the finish's arcs).

:class:`SqEuclidean` factorizes exactly with rank ``d + 2``. Every other cost (:class:`Power`
for ``|x - y|^p``, :class:`Custom` for a user function) is factorized per block from a few
sampled rows and columns (Indyk, Vakilian, Wagner & Woodruff 2019; HiRef paper App. E.1), in
time linear in the block size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from hiref.engine.geometry.scan import smallest
from hiref.engine.reducer import LOCAL, Reducer
from hiref.engine.threads import in_slices

#: Entries of one chunk of a cost matrix formed to find row minima (float64).
_CHUNK = 1 << 23
#: Coordinates per chunk of :meth:`Cost.paired_at` on the CPU: the temporaries stay in cache (26
#: million arcs of a 2**20-point pair: 0.37 s, against 1.66 s and 0.16 GB of temporaries in
#: chunks of 2**22); on a GPU, 2**22.
_PAIRED_CHUNK_CPU = 1 << 19
#: Largest dimension for which :meth:`SqEuclidean.paired_at` runs compiled on the CPU: the same
#: sum, in the same order, as torch's (bit for bit; above, torch's reduction adds in another order).
_PAIRED_COMPILED_MAX_DIM = 3
#: Fewest pairs for the compiled :meth:`SqEuclidean.paired_at` (fewer: the torch code, the same
#: values).
_PAIRED_COMPILED_MIN = 1 << 16
#: Fewest pairs per thread of the compiled :meth:`SqEuclidean.paired_at`.
_PAIRED_PER_THREAD = 1 << 16


@cache
def _paired_kernel() -> Callable:
    """The compiled squared distances of indexed pairs (compiled once, cached on disk; numba is imported here)."""
    from hiref.engine.geometry._paired_kernels import squared_distances_at

    return squared_distances_at


def masked_mean(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over axis 1 of ``points`` (B, W, d) counting only ``mask`` (B, W); returns (B, d)."""
    w = mask.to(points.dtype)[..., None]
    return (points * w).sum(1) / w.sum(1).clamp_min(1.0)


@dataclass
class SqEuclideanOperator:
    """Products with the squared-Euclidean cost of a stack of blocks, through its rank-(d+2) factors.

    ``C[b, i, j] = |x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``, so ``C @ R`` needs only the moments
    ``[sum_j R[z, j], R @ |y|^2, R @ Y]`` and never the (Wx, Wy) matrix. Each side is stored as
    the features ``[1, |z|^2, z]``, shape (B, d + 2, W) with the points along the last axis:
    a product is then two thin matrix products, whose operands are read along their rows (the
    layout with the points along the middle axis measured 5-25 times slower on the CPU).
    Factors are cluster-major: ``R`` has shape (B, r, Wy).

    When a block's points are spread over processes, each holds its own rows and ``reduce``
    sums the (B, r, d + 2) moments over them: the only exchange a product needs.
    """

    fx: torch.Tensor  # (B, d + 2, Wx): rows 1, |x|^2, x (centred and scaled per block; 0 on padding but the 1)
    fy: torch.Tensor  # (B, d + 2, Wy)
    reduce: Reducer = LOCAL

    def __post_init__(self) -> None:
        # moments [mass, second, cross] -> coefficients [second, mass, -2 cross] of the other side's features
        d2 = self.fx.shape[1]
        swap = torch.zeros((d2, d2), dtype=self.fx.dtype, device=self.fx.device)
        swap[0, 1] = swap[1, 0] = 1.0
        swap[2:, 2:] = -2.0 * torch.eye(d2 - 2, dtype=self.fx.dtype, device=self.fx.device)
        self.swap = swap

    @classmethod
    def from_points(cls, X: torch.Tensor, Y: torch.Tensor, reduce: Reducer = LOCAL) -> SqEuclideanOperator:
        """The operator of blocks of points X (B, Wx, d) and Y (B, Wy, d), zero on padding."""
        return cls(_features(X), _features(Y), reduce)

    @property
    def X(self) -> torch.Tensor:
        """The blocks' X points as the operator holds them (B, Wx, d), a view."""
        return self.fx[:, 2:, :].transpose(1, 2)

    @property
    def Y(self) -> torch.Tensor:
        """The blocks' Y points (B, Wy, d), a view."""
        return self.fy[:, 2:, :].transpose(1, 2)

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        """``sum_j C[i, j] R[z, j]`` for every cluster z: (B, r, Wy) -> (B, r, Wx)."""
        return (self.reduce.sum(R @ self.fy.transpose(1, 2)) @ self.swap) @ self.fx

    def apply_t(self, Q: torch.Tensor) -> torch.Tensor:
        """``sum_i C[i, j] Q[z, i]`` for every cluster z: (B, r, Wx) -> (B, r, Wy)."""
        return (self.reduce.sum(Q @ self.fx.transpose(1, 2)) @ self.swap) @ self.fy

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(Fx, Fy, M)`` with ``C = Fx.T @ M @ Fy`` per block; ``None`` when the points are spread over processes."""
        return (self.fx, self.fy, self.swap) if self.reduce is LOCAL else None


def _features(Z: torch.Tensor) -> torch.Tensor:
    """``[1, |z|^2, z]`` of every point of Z (B, W, d), points along the last axis: (B, d + 2, W)."""
    B, W, d = Z.shape
    out = torch.empty((B, d + 2, W), dtype=Z.dtype, device=Z.device)
    out[:, 0] = 1.0
    out[:, 1] = (Z * Z).sum(-1)
    out[:, 2:] = Z.transpose(1, 2)
    return out


@dataclass
class FactorOperator:
    """Products with block costs approximated as ``C ~ A @ V.T``, held as ``At`` (B, k, Wx) and ``Vt`` (B, k, Wy).

    The factors are stored with the points along the last axis, as in :class:`SqEuclideanOperator`.
    """

    At: torch.Tensor
    Vt: torch.Tensor

    @classmethod
    def from_factors(cls, A: torch.Tensor, V: torch.Tensor) -> FactorOperator:
        """The operator of ``C ~ A @ V.T`` for A (B, Wx, k) and V (B, Wy, k)."""
        return cls(A.transpose(1, 2).contiguous(), V.transpose(1, 2).contiguous())

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        """``C @ R`` per cluster: (B, r, Wy) -> (B, r, Wx)."""
        return (R @ self.Vt.transpose(1, 2)) @ self.At

    def apply_t(self, Q: torch.Tensor) -> torch.Tensor:
        """``C.T @ Q`` per cluster: (B, r, Wx) -> (B, r, Wy)."""
        return (Q @ self.At.transpose(1, 2)) @ self.Vt

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Fx, Fy, M)`` with ``C = Fx.T @ M @ Fy`` per block (here ``M`` is the identity)."""
        eye = torch.eye(self.At.shape[1], dtype=self.At.dtype, device=self.At.device)
        return self.At, self.Vt, eye


class Cost(ABC):
    """Base class of ground costs ``c(x, y)``; subclasses define :meth:`dense` and :meth:`block_operator`."""

    name = "cost"
    #: Whether ``c(x, y) == c(y, x)``.
    symmetric = False
    #: Whether the levels may work on a projection of the data on its principal axes (a cost of
    #: distances; a custom cost may depend on every coordinate).
    sketchable = False

    @abstractmethod
    def dense(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Exact cost matrices: (..., s, d) and (..., t, d) give (..., s, t)."""

    def paired(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Cost of each row pair ``(X[i], Y[i])``, shape (n,)."""
        return self.dense(X[:, None, :], Y[:, None, :])[:, 0, 0]

    def paired_at(
        self, X: torch.Tensor, Y: torch.Tensor, rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:  # fmt: skip
        """Exact float64 costs ``c(X[rows[e]], Y[cols[e]])`` of pairs given by indices, into ``out`` if given.

        :meth:`paired` a chunk of pairs at a time, on the points' device.
        """
        out = np.empty(rows.shape[0], dtype=np.float64) if out is None else out
        step = max(1, (_PAIRED_CHUNK_CPU if X.device.type == "cpu" else 1 << 22) // max(1, X.shape[1]))
        for lo in range(0, rows.shape[0], step):
            r = torch.as_tensor(rows[lo : lo + step], device=X.device)
            c = torch.as_tensor(cols[lo : lo + step], device=Y.device)
            out[lo : lo + step] = self.paired(X[r].double(), Y[c].double()).cpu().numpy()
        return out

    def cheapest(self, X: torch.Tensor, Y: torch.Tensor, shift: torch.Tensor, k: int = 1) -> torch.Tensor:
        """The ``k`` points ``j`` of lowest ``c(X[i], Y[j]) + shift[j]`` for every ``i``, best first.

        Exact minima over all pairs in float64, a chunk of rows at a time; (n, d), (m, d) and
        (m,) give (n, k) indices into ``Y``.
        """
        Yd, shift = Y.double(), shift.double()
        rows = max(1, _CHUNK // max(1, Y.shape[0]))
        out = [
            torch.topk(self._shifted(X[lo : lo + rows].double(), Yd, shift), k, dim=1, largest=False).indices
            for lo in range(0, X.shape[0], rows)
        ]
        return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long, device=X.device)

    def _shifted(self, X: torch.Tensor, Y: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``c(X[i], Y[j]) + shift[j]``, up to a term constant in each row (only its order matters)."""
        return self.dense(X, Y) + shift[None, :]

    @abstractmethod
    def block_operator(
        self, X: torch.Tensor, Y: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor, generator: torch.Generator
    ) -> FactorOperator | SqEuclideanOperator:
        """Operator for blocks X (B, Wx, d), Y (B, Wy, d) with valid rows ``mask_x``, ``mask_y``."""

    def level_costs(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        labels_x: list[torch.Tensor],
        labels_y: list[torch.Tensor],
        generator: torch.Generator,
    ) -> list[float]:
        """:meth:`block_coupling_cost` of the single initial block and of every level's co-clusters."""
        whole_x = torch.zeros(X.shape[0], dtype=torch.long, device=X.device)
        whole_y = torch.zeros(Y.shape[0], dtype=torch.long, device=Y.device)
        pairs = [(whole_x, whole_y), *zip(labels_x, labels_y, strict=True)]
        return [self.block_coupling_cost(X, Y, lx, ly, generator) for lx, ly in pairs]

    def block_coupling_cost(
        self, X: torch.Tensor, Y: torch.Tensor, ids_x: torch.Tensor, ids_y: torch.Tensor, generator: torch.Generator
    ) -> float:
        """Mean cost of the block coupling: every X point spread evenly over its co-cluster's Y points.

        Estimated from up to 4096 random X points and 16 random co-cluster partners each.
        """
        n = X.shape[0]
        pick = torch.randperm(n, generator=generator)[:4096].to(X.device)
        order = torch.sort(ids_y, stable=True).indices
        counts = torch.bincount(ids_y, minlength=int(ids_x.max()) + 1)
        starts = torch.cumsum(counts, 0) - counts
        blocks = ids_x[pick]
        offset = (torch.rand(len(pick), 16, generator=generator).to(X.device) * counts[blocks, None]).long()
        partners = order[starts[blocks, None] + offset]
        cost = self.paired(X[pick].repeat_interleave(16, 0).double(), Y[partners.reshape(-1)].double())
        return float(cost.mean())


class SqEuclidean(Cost):
    """Squared Euclidean cost ``c(x, y) = |x - y|^2``, factorized exactly with rank ``d + 2``."""

    name = "sqeuclidean"
    symmetric = True
    sketchable = True

    def block_operator(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        mask_x: torch.Tensor,
        mask_y: torch.Tensor,
        generator: torch.Generator,
        reduce: Reducer = LOCAL,
    ) -> SqEuclideanOperator:
        """Exact factors; each block is centred at its joint mean and scaled to unit mean cost.

        Centring keeps float32 accurate deep in the hierarchy; scaling lets one step size suit
        every block. With a distributed ``reduce``, the masks hold this process's points and
        the centre and scale are those of the whole blocks.
        """
        w = torch.cat([mask_x, mask_y], 1).to(X.dtype)[..., None]
        total = reduce.sum(torch.cat([(torch.cat([X, Y], 1) * w).sum(1), w.sum(1)], 1))  # (B, d + 1)
        centre = total[:, :-1] / total[:, -1:].clamp_min(1.0)
        wx, wy = mask_x.to(X.dtype), mask_y.to(Y.dtype)
        Xc = (X - centre[:, None, :]) * wx[..., None]
        Yc = (Y - centre[:, None, :]) * wy[..., None]
        spread = reduce.sum(torch.stack([(Xc * Xc).sum((1, 2)) + (Yc * Yc).sum((1, 2)), wx.sum(1) + wy.sum(1)]))
        scale = (spread[0] / spread[1].clamp_min(1.0)).clamp_min(torch.finfo(X.dtype).tiny)
        inv = scale.rsqrt()[:, None, None]
        return SqEuclideanOperator.from_points(Xc * inv, Yc * inv, reduce)

    def dense(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Exact cost matrices: (..., s, d) and (..., t, d) give (..., s, t)."""
        centre = torch.cat([X, Y], -2).mean(-2, keepdim=True)
        Xc, Yc = X - centre, Y - centre
        C = (Xc * Xc).sum(-1)[..., :, None] + (Yc * Yc).sum(-1)[..., None, :] - 2.0 * Xc @ Yc.transpose(-1, -2)
        return C.clamp_min(0.0)

    def paired(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Cost of each row pair ``(X[i], Y[i])``, shape (n,)."""
        diff = X - Y
        return (diff * diff).sum(-1)

    def paired_at(
        self, X: torch.Tensor, Y: torch.Tensor, rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:  # fmt: skip
        """:meth:`Cost.paired_at`; on the CPU in up to three dimensions one compiled pass, a slice per thread.

        No temporaries (the chunked torch code allocated about 18 MB a chunk, which glibc may
        map and unmap every time: 16.6 million arcs of a 2**20-point pair took 0.39-0.63 s).
        """
        small = rows.shape[0] < _PAIRED_COMPILED_MIN  # (not worth a compilation at first use)
        if small or X.device.type != "cpu" or Y.device.type != "cpu" or X.shape[1] > _PAIRED_COMPILED_MAX_DIM:
            return super().paired_at(X, Y, rows, cols, out)
        out = np.empty(rows.shape[0], dtype=np.float64) if out is None else out
        Xn, Yn = X.detach().contiguous().numpy(), Y.detach().contiguous().numpy()
        kernel = _paired_kernel()
        in_slices(
            rows.shape[0], lambda lo, hi: kernel(Xn, Yn, rows[lo:hi], cols[lo:hi], out[lo:hi]), least=_PAIRED_PER_THREAD
        )
        return out

    def cheapest(self, X: torch.Tensor, Y: torch.Tensor, shift: torch.Tensor, k: int = 1) -> torch.Tensor:
        """:meth:`Cost.cheapest`, by :func:`.scan.smallest` (in float64, centred so that no large norms cancel)."""
        # |x|^2 is the same along a row: ranked by |y|^2 + shift - 2 <x, y>
        Y, shift = Y.double(), shift.double()
        centre = Y.mean(0)
        Yc = Y - centre
        return smallest(X.double() - centre, Yc, (Yc * Yc).sum(1) + shift, k, entries=_CHUNK)[1]

    def cheapest_float32(
        self, X: torch.Tensor, Y: torch.Tensor, shift: torch.Tensor, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """:meth:`cheapest`, ranked in float32 products, with the values ranked and a bound on their rounding.

        Returns the indices (n, k), their values as ranked (n, k) in the units of
        ``c(x, y) + shift`` (float64), and for every row ``delta`` (n,) with ``|r_j - e_j| <=
        delta`` for every ``j``, ``r_j`` the value as ranked and ``e_j`` the exact one. A float32
        product of ``d`` terms errs by at most ``(d + 2) 2^-24`` times ``|x||y|`` (inputs rounded,
        then summed), the other terms by ``2^-24`` of their size each; ``delta`` takes four times
        that. Half the memory traffic of float64, which bounds these products in few dimensions.
        """
        centre = Y.double().mean(0)
        Yc = Y.double() - centre
        yy = (Yc * Yc).sum(1) + shift.double()
        # less a constant (the order stays): prices far from zero keep their digits
        constant = 0.5 * float(yy.max() + yy.min()) if Y.shape[0] else 0.0
        Y32, yy32 = Yc.float(), (yy - constant).float()[None, :]
        if not X.shape[0]:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k)), np.empty(0)
        ranked, indices = smallest((X.double() - centre).float(), Y32, yy32, k, entries=2 * _CHUNK)
        xx = (X.double() - centre).square().sum(1).cpu().numpy()
        values = ranked.double().cpu().numpy() + (xx + constant)[:, None]
        norm_y = float(Yc.norm(dim=1).max())
        top = float((yy - constant).abs().max())
        delta = 2.0**-22 * (2.0 * top + 2.0 * (X.shape[1] + 3) * np.sqrt(xx) * norm_y)
        delta += 2.0**-48 * (np.abs(values).max(1) + xx + abs(constant))  # the float64 sum above
        return indices.cpu().numpy(), values, delta

    def level_costs(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        labels_x: list[torch.Tensor],
        labels_y: list[torch.Tensor],
        generator: torch.Generator,
        reduce: Reducer = LOCAL,
    ) -> list[float]:
        """Exact block-coupling costs of every level, in O((n + m) d) for all levels together.

        Per co-cluster ``z``: ``(n_z / n) (mean|x|^2 + mean|y|^2 - 2 <mean x, mean y>)``. The
        co-clusters nest, so the sums of the deepest level, computed once, add up to those of
        every coarser level. With a distributed ``reduce``, ``X``, ``Y`` and the labels are this
        process's points and the sums are completed over all processes.
        """
        f64 = torch.float64
        n_levels = len(labels_x)
        deep_x = labels_x[-1] if n_levels else torch.zeros(X.shape[0], dtype=torch.long, device=X.device)
        deep_y = labels_y[-1] if n_levels else torch.zeros(Y.shape[0], dtype=torch.long, device=Y.device)
        top = torch.stack(
            [
                deep_x.max() if deep_x.numel() else deep_x.new_tensor(0),
                deep_y.max() if deep_y.numel() else deep_y.new_tensor(0),
            ]
        )
        n_deep = int(reduce.max(top).max()) + 1
        n_x = int(reduce.sum(torch.tensor([X.shape[0]], device=X.device)))

        def sums(P: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            count = torch.bincount(ids, minlength=n_deep).to(f64)
            total = torch.zeros(n_deep, P.shape[1], dtype=f64, device=P.device)
            sq = torch.zeros(n_deep, dtype=f64, device=P.device)
            rows = max(1, (1 << 23) // max(1, P.shape[1]))
            for lo in range(0, P.shape[0], rows):
                chunk, cid = P[lo : lo + rows].to(f64), ids[lo : lo + rows]
                total.index_add_(0, cid, chunk)
                sq.index_add_(0, cid, (chunk * chunk).sum(1))
            packed = reduce.sum(torch.cat([count[:, None], sq[:, None], total], 1))
            return packed[:, 0], packed[:, 2:], packed[:, 1]

        deep = (sums(X, deep_x), sums(Y, deep_y))

        def parents(level: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            # Co-cluster at `level` of every deepest co-cluster (-1: none of its points on this side).
            return reduce.max(torch.full((n_deep,), -1, dtype=torch.long, device=ids.device).scatter_(0, ids, level))

        costs = []
        for level in range(n_levels + 1):
            if level == 0:
                up = torch.zeros(n_deep, dtype=torch.long, device=X.device)
            else:
                up = torch.maximum(parents(labels_x[level - 1], deep_x), parents(labels_y[level - 1], deep_y))
            n_up = int(up.max()) + 1
            (cx, tx, qx), (cy, ty, qy) = (
                tuple(torch.zeros((n_up, *v.shape[1:]), dtype=f64, device=v.device).index_add_(0, up, v) for v in side)
                for side in deep
            )
            per_block = qx / cx.clamp_min(1) + qy / cy.clamp_min(1) - 2 * (tx * ty).sum(1) / (cx * cy).clamp_min(1)
            costs.append(float((cx * per_block).sum() / n_x))
        return costs

    def block_coupling_cost(
        self, X: torch.Tensor, Y: torch.Tensor, ids_x: torch.Tensor, ids_y: torch.Tensor, generator: torch.Generator
    ) -> float:
        """Exact block-coupling cost of one partition (see :meth:`level_costs`)."""
        return self.level_costs(X, Y, [ids_x], [ids_y], generator)[-1]


def _reference_rows(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(_drawable(mask.to(torch.float64)).cpu(), 1, generator=generator).to(mask.device)[:, 0]


def _drawable(weights: torch.Tensor) -> torch.Tensor:
    """``weights`` (B, W) with every all-zero row made uniform, so that each row can be drawn from.

    A block whose side holds no point (a region of the larger cloud that the smaller one lacks,
    in a partial matching) has nothing to sample; what is drawn there is masked out after.
    """
    empty = weights.sum(1, keepdim=True) <= 0
    return torch.where(empty, torch.ones_like(weights), weights)


class SampledCost(Cost):
    """A cost known only through its entries, factorized per block by row and column sampling.

    For each block: sample ``2 * rank`` rows of the cost matrix with probabilities from a cheap
    bound on the row norms (distances through one random reference point), take the top
    ``rank`` right singular vectors of the sampled rows as ``V``, then fit ``A`` by weighted
    least squares on ``4 * rank`` sampled columns, so ``C ~ A @ V.T``. Cost per block
    ``O((Wx + Wy) * rank * (rank + d))``; the leaves and reported costs stay exact.

    Parameters
    ----------
    rank
        Rank of the factorization of every block; ``None`` for ``min(64, d + 16)``, which keeps
        the relative error of Euclidean distances near 1e-6 in 2-D and under 1 % in 50-D.
    """

    def __init__(self, *, rank: int | None = None) -> None:
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            msg = f"`rank` must be None or a positive int, got {rank!r}."
            raise ValueError(msg)
        self.rank = rank

    def factorize(
        self, X: torch.Tensor, Y: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors ``A`` (B, Wx, k) and ``V`` (B, Wy, k) with ``C ~ A @ V.T``; zero on padding."""
        B, _, d = X.shape
        X64, Y64 = X.double(), Y.double()
        wx, wy = mask_x.double(), mask_y.double()
        rank = self.rank if self.rank is not None else min(64, d + 16)
        # (blocks with no point on one side, in a partial matching, have no pairs to factorize)
        count_x, count_y = mask_x.sum(1), mask_y.sum(1)
        live = (count_x > 0) & (count_y > 0)
        k = min(rank, int(count_x[live].min()), int(count_y[live].min())) if bool(live.any()) else 1
        n_rows, n_cols = 2 * k, 4 * k
        batch = torch.arange(B, device=X.device)[:, None]

        # Row norms bounded through reference points x0, y0 (triangle inequality for metrics).
        x0 = X64[batch[:, 0], _reference_rows(mask_x, generator)][:, None, :]
        y0 = Y64[batch[:, 0], _reference_rows(mask_y, generator)][:, None, :]
        to_y0 = self.dense(X64, y0)[..., 0] * wx
        from_x0 = self.dense(x0, Y64)[:, 0, :] * wy
        p = (to_y0**2 + (from_x0**2).sum(1, keepdim=True) / wy.sum(1, keepdim=True)) * wx + 1e-300 * wx
        p = _drawable(p)
        p = p / p.sum(1, keepdim=True)
        rows = torch.multinomial(p.cpu(), n_rows, replacement=True, generator=generator).to(X.device)
        S = self.dense(X64[batch, rows], Y64) * wy[:, None, :]
        S = S / torch.sqrt(n_rows * torch.gather(p, 1, rows))[..., None]

        # Right factor: top-k right singular vectors of the sampled rows, via the small Gram matrix.
        evals, evecs = torch.linalg.eigh(S @ S.transpose(1, 2))
        top = evecs[..., -k:] / evals[:, None, -k:].clamp_min(1e-300).sqrt()
        V = torch.linalg.qr(S.transpose(1, 2) @ top).Q * wy[..., None]  # (B, Wy, k)

        # Left factor: weighted least squares on columns sampled by leverage (|V_j|^2), mixed
        # with uniform so that every valid column can be picked.
        lev = (V * V).sum(-1) / k
        q = 0.5 * lev + 0.5 * wy / wy.sum(1, keepdim=True).clamp_min(1.0)
        q = _drawable(q)
        cols = torch.multinomial(q.cpu(), n_cols, replacement=True, generator=generator).to(X.device)
        weight = 1.0 / torch.sqrt(n_cols * torch.gather(q, 1, cols))  # (B, t)
        Cc = self.dense(X64, Y64[batch, cols]) * weight[:, None, :]  # (B, Wx, t)
        Vc = V[batch, cols] * weight[..., None]  # (B, t, k)
        A = torch.linalg.lstsq(Vc, Cc.transpose(1, 2)).solution.transpose(1, 2) * wx[..., None]
        return A.to(X.dtype), V.to(X.dtype)

    def block_operator(
        self, X: torch.Tensor, Y: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor, generator: torch.Generator
    ) -> FactorOperator:
        """Sampled low-rank factors of every block's cost."""
        return FactorOperator.from_factors(*self.factorize(X, Y, mask_x, mask_y, generator))


class Power(SampledCost):
    """``c(x, y) = |x - y|^p``, the Euclidean distance to a power ``p > 0`` (``p = 1``: ``"euclidean"``).

    Parameters
    ----------
    p
        Exponent.
    rank
        Rank of the per-block factorization used above leaf size.
    """

    def __init__(self, p: float = 1.0, *, rank: int | None = None) -> None:
        super().__init__(rank=rank)
        if isinstance(p, bool) or not isinstance(p, int | float) or not p > 0:
            msg = f"`p` must be a number > 0, got {p!r}."
            raise ValueError(msg)
        self.p = float(p)
        self.symmetric = True
        self.sketchable = True
        self.name = "euclidean" if self.p == 1.0 else f"euclidean^{self.p:g}"

    def dense(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``|x - y|^p`` for every pair: (..., s, d), (..., t, d) -> (..., s, t)."""
        C = SqEuclidean().dense(X, Y)
        return C.sqrt() if self.p == 1.0 else C ** (self.p / 2)

    def paired(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Cost of each row pair ``(X[i], Y[i])``, shape (n,)."""
        return torch.linalg.vector_norm(X - Y, dim=-1) ** self.p


class Custom(SampledCost):
    """A user cost given as a function on blocks of points.

    Parameters
    ----------
    fn
        ``fn(x, y)`` with ``x`` of shape (..., s, d) and ``y`` of shape (..., t, d) returns the
        (..., s, t) costs, for any leading batch dimensions (torch broadcasting makes most
        formulas do this for free). It must be finite.
    rank
        Rank of the per-block factorization used above leaf size.
    name
        Name recorded with results.

    Examples
    --------
    A cosine distance between expression profiles:

    >>> import torch
    >>> def cosine(x, y):
    ...     x = x / x.norm(dim=-1, keepdim=True)
    ...     y = y / y.norm(dim=-1, keepdim=True)
    ...     return 1 - x @ y.transpose(-1, -2)
    >>> cost = Custom(cosine, name="cosine")
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        rank: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(rank=rank)
        if not callable(fn):
            msg = f"`fn` must be callable, got {type(fn).__name__}."
            raise TypeError(msg)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")

    def dense(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """The user's costs, checked for shape and finiteness."""
        C = self.fn(X, Y)
        expected = (*X.shape[:-1], Y.shape[-2])
        if not isinstance(C, torch.Tensor) or tuple(C.shape) != expected:
            got = tuple(C.shape) if isinstance(C, torch.Tensor) else type(C).__name__
            msg = f"the cost function {self.name!r} must return a tensor of shape {expected}, got {got}."
            raise ValueError(msg)
        if not bool(torch.isfinite(C).all()):
            msg = f"the cost function {self.name!r} returned NaN or infinite values."
            raise ValueError(msg)
        return C.to(X.dtype)


@dataclass
class _SwappedOperator:
    base: FactorOperator | SqEuclideanOperator

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        return self.base.apply_t(R)

    def apply_t(self, Q: torch.Tensor) -> torch.Tensor:
        return self.base.apply(Q)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        base = self.base.factors()
        return None if base is None else (base[1], base[0], base[2].T)


class Transposed(Cost):
    """The cost ``c'(x, y) = c(y, x)``: lets the engine put the smaller cloud first."""

    def __init__(self, base: Cost) -> None:
        self.base = base
        self.name = base.name
        self.symmetric = base.symmetric
        self.sketchable = base.sketchable

    def dense(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``c(y, x)`` for every pair, (..., s, t)."""
        return self.base.dense(Y, X).transpose(-1, -2)

    def paired(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``c(Y[i], X[i])``, shape (n,)."""
        return self.base.paired(Y, X)

    def paired_at(
        self, X: torch.Tensor, Y: torch.Tensor, rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:  # fmt: skip
        """``c(Y[cols[e]], X[rows[e]])`` (the base's own)."""
        return self.base.paired_at(Y, X, cols, rows, out)

    def cheapest(self, X: torch.Tensor, Y: torch.Tensor, shift: torch.Tensor, k: int = 1) -> torch.Tensor:
        """:meth:`Cost.cheapest` of the swapped cost (the base's own where it is symmetric)."""
        return self.base.cheapest(X, Y, shift, k) if self.symmetric else super().cheapest(X, Y, shift, k)

    def block_operator(
        self, X: torch.Tensor, Y: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor, generator: torch.Generator
    ) -> _SwappedOperator:
        """The base operator of the swapped blocks, with its two products exchanged."""
        return _SwappedOperator(self.base.block_operator(Y, X, mask_y, mask_x, generator))


def get_cost(cost: str | Cost | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Cost:
    """Turn ``cost`` (a name, a :class:`Cost` or a function) into a geometry."""
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, str):
        if cost == "sqeuclidean":
            return SqEuclidean()
        if cost == "euclidean":
            return Power(1.0)
    elif callable(cost):
        return Custom(cost)
    msg = (
        f"`cost` must be 'sqeuclidean', 'euclidean', a hiref.engine.Power/Custom instance or a function "
        f"f(x, y) -> costs, got {cost!r}."
    )
    raise ValueError(msg)
