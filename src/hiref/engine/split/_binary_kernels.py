"""The compiled loop of the levels' mirror descent for two clusters, on the CPU (:func:`.lowrank.binary_fused`).

The torch step (:func:`.lowrank._binary`) makes about twenty passes over the points per side and
step, each a separate tensor operation. Here one candidate of one block runs all its steps in one
call, in four passes per side and step, with every point's state held as ``e = exp(-u)`` in
float64: the column-0 share is then ``1 / (1 + e * scale)``, so the moments need a division
and no exponential, and a projection's shift of all logits by one constant only changes the
scalar ``scale``. The one exponential per point and step, of the gradient step, has an argument
of at most ``2 * step`` in size, and is a short Taylor series and a few squarings (vectorised).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: No ``nnan``/``ninf``: a share of exactly 0 or 1 (``e`` = inf or 0) is a valid state. (And
#: ``error_model="numpy"`` below: a division checked for zero does not vectorise.)
_FAST = {"nsz", "arcp", "contract", "reassoc"}
#: Largest logit size kept (``exp(-u)`` stays finite in float64).
_LOGIT_MAX = 600.0
#: Largest size of the Taylor series' argument: the step's exponent is halved until it fits.
_TAYLOR_RADIUS = 0.25
_TINY = np.finfo(np.float64).tiny


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _exp_taylor(y):  # pragma: no cover
    # exp(y) for |y| <= _TAYLOR_RADIUS: degree-10 Taylor (relative error below 1e-13); no call to
    # libm, so the loops that use it vectorise
    return 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120 + y * (
        1.0 / 720 + y * (1.0 / 5040 + y * (1.0 / 40320 + y * (1.0 / 362880 + y * (1.0 / 3628800))))))))))  # fmt: skip


#: Points per chunk of a pass: its gradients stay in the first-level cache.
_CHUNK = 512


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _moments(e, scale):  # pragma: no cover
    # sum_i s_i and sum_i s_i (1 - s_i), s_i = 1 / (1 + e_i * scale) (0 on padding, where e = inf)
    mass = 0.0
    slope = 0.0
    for i in range(e.shape[0]):
        s = 1.0 / (1.0 + e[i] * scale)
        mass += s
        slope += s - s * s
    return mass, slope


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _weighted_features(e, scale, f, buf, out):  # pragma: no cover
    # out[k] = sum_i s_i f[k, i]. (Chunks are slices, indexed from 0: an index that numba cannot
    # prove non-negative is checked for wrap-around, and such a loop does not vectorise.)
    n_feat, width = f.shape
    out[:] = 0.0
    for lo in range(0, width, _CHUNK):
        n = min(_CHUNK, width - lo)
        e_c = e[lo : lo + n]
        for i in range(n):
            buf[i] = 1.0 / (1.0 + e_c[i] * scale)
        for k in range(n_feat):
            f_c = f[k, lo : lo + n]
            acc = 0.0
            for i in range(n):
                acc += buf[i] * f_c[i]
            out[k] += acc


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _dots(coef, f, lo, n, buf):  # pragma: no cover
    # buf[i] = coef . f[:, lo + i] for 0 <= i < n
    f_c = f[0, lo : lo + n]
    for i in range(n):
        buf[i] = coef[0] * f_c[i]
    for k in range(1, f.shape[0]):
        f_c = f[k, lo : lo + n]
        for i in range(n):
            buf[i] += coef[k] * f_c[i]


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _spread(coef, f, buf):  # pragma: no cover
    # max_i |coef . f[:, i]| (f is 0 on padding)
    width = f.shape[1]
    # four running maxima: each waits on its comparison (a maximum does not vectorise here)
    t0 = t1 = t2 = t3 = 0.0
    for lo in range(0, width, _CHUNK):
        n = min(_CHUNK, width - lo)
        _dots(coef, f, lo, n, buf)
        end = n - n % 4
        for i in range(0, end, 4):
            a0, a1, a2, a3 = abs(buf[i]), abs(buf[i + 1]), abs(buf[i + 2]), abs(buf[i + 3])
            t0 = a0 if a0 > t0 else t0
            t1 = a1 if a1 > t1 else t1
            t2 = a2 if a2 > t2 else t2
            t3 = a3 if a3 > t3 else t3
        for i in range(end, n):
            a0 = abs(buf[i])
            t0 = a0 if a0 > t0 else t0
    return max(max(t0, t1), max(t2, t3))


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _step(e, scale, coef, gamma, f, halvings, buf):  # pragma: no cover
    # u_i -= gamma * coef . f[:, i], the old scale folded into e; returns the moments after the
    # step. exp(gamma * d_i) is exp(gamma * d_i / 2**halvings) squared ``halvings`` times.
    width = f.shape[1]
    shrink = gamma * 0.5**halvings
    mass = 0.0
    slope = 0.0
    for lo in range(0, width, _CHUNK):
        n = min(_CHUNK, width - lo)
        _dots(coef, f, lo, n, buf)
        for i in range(n):
            buf[i] = _exp_taylor(shrink * buf[i])
        for _ in range(halvings):
            for i in range(n):
                buf[i] = buf[i] * buf[i]
        e_c = e[lo : lo + n]
        for i in range(n):
            ei = e_c[i] * scale * buf[i]
            e_c[i] = ei
            s = 1.0 / (1.0 + ei)
            mass += s
            slope += s - s * s
    return mass, slope


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _project(e, weight, mass, slope, low, high, n_newton):  # pragma: no cover
    # the scale that brings the mass weight * sum_i s_i into [low, high]: Newton steps on one
    # common shift of the logits, each at most 4 (``mass``, ``slope``: the sums at scale 1)
    mass *= weight
    slope *= weight
    target = min(max(mass, low), high)
    scale = 1.0
    for it in range(n_newton):
        if it:
            mass, slope = _moments(e, scale)
            mass *= weight
            slope *= weight
        shift = (mass - target) / max(slope, _TINY)
        scale *= math.exp(min(max(shift, -4.0), 4.0))
    return scale


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _start(u, mask, e):  # pragma: no cover
    # e = exp(-u) on the points, inf on padding (a share of 0 there)
    for i in range(u.shape[0]):
        e[i] = math.exp(-min(max(u[i], -_LOGIT_MAX), _LOGIT_MAX)) if mask[i] else np.inf


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def descend_pairs(
    lo,
    hi,
    fx,
    fy,
    swap,
    mask_x,
    mask_y,
    weight,
    coef_a,
    coef_b,
    both,
    bounds_q,
    bounds_r,
    u_q,
    u_r,
    n_iter,
    step,
    n_newton,
):  # pragma: no cover
    """Mirror descent of candidates ``lo <= p < hi`` (block ``p // K``, candidate ``p % K``), in place.

    ``fx`` (B, k, Wx), ``fy`` (B, k, Wy): the two sides' features, with ``C = fx.T @ swap @ fy``
    per block, 0 on padding; ``mask_x``, ``mask_y``: the points; ``weight`` (B,): every point's
    mass; ``coef_a``, ``coef_b`` (B, k): the coefficients of ``C.T @ a / g1`` and
    ``C @ b / g1`` on the features; ``both`` (B,): ``1 / g0 + 1 / g1``; ``bounds_q``,
    ``bounds_r`` (B, 2): the bounds on each side's column-0 mass; ``u_q`` (B, K, Wx), ``u_r``
    (B, K, Wy): the starting logits (float64), overwritten by the last (``-inf`` on padding).
    """
    n_cand = u_q.shape[1]
    n_feat = fx.shape[1]
    e_q = np.empty(u_q.shape[2])
    e_r = np.empty(u_r.shape[2])
    buf = np.empty(_CHUNK)
    mu_q = np.empty(n_feat)
    mu_r = np.empty(n_feat)
    c_q = np.empty(n_feat)
    c_r = np.empty(n_feat)
    # |gamma * d| <= 2 * step: the halvings that bring it within the Taylor radius
    halvings = max(0, math.ceil(math.log2(max(2.0 * step, _TAYLOR_RADIUS) / _TAYLOR_RADIUS) - 1e-9))
    for p in range(lo, hi):
        blk, cand = p // n_cand, p % n_cand
        f_x, f_y, w = fx[blk], fy[blk], weight[blk]
        _start(u_q[blk, cand], mask_x[blk], e_q)
        _start(u_r[blk, cand], mask_y[blk], e_r)
        mass, slope = _moments(e_q, 1.0)
        s_q = _project(e_q, w, mass, slope, bounds_q[blk, 0], bounds_q[blk, 1], n_newton)
        mass, slope = _moments(e_r, 1.0)
        s_r = _project(e_r, w, mass, slope, bounds_r[blk, 0], bounds_r[blk, 1], n_newton)
        for _ in range(n_iter):
            # d_q = both * C @ (s_r * b) - C @ b / g1 on X, and the same with C.T on Y
            _weighted_features(e_r, s_r, f_y, buf, mu_r)
            _weighted_features(e_q, s_q, f_x, buf, mu_q)
            for k in range(n_feat):
                cq = 0.0
                cr = 0.0
                for t in range(n_feat):
                    cq += mu_r[t] * swap[t, k]
                    cr += mu_q[t] * swap[t, k]
                c_q[k] = both[blk] * w * cq - coef_b[blk, k]
                c_r[k] = both[blk] * w * cr - coef_a[blk, k]
            spread = max(_spread(c_q, f_x, buf), _spread(c_r, f_y, buf))
            gamma = 2.0 * step / max(spread, _TINY)
            # u -= gamma * d is e *= exp(gamma * d)
            mass, slope = _step(e_q, s_q, c_q, gamma, f_x, halvings, buf)
            s_q = _project(e_q, w, mass, slope, bounds_q[blk, 0], bounds_q[blk, 1], n_newton)
            mass, slope = _step(e_r, s_r, c_r, gamma, f_y, halvings, buf)
            s_r = _project(e_r, w, mass, slope, bounds_r[blk, 0], bounds_r[blk, 1], n_newton)
        for i in range(e_q.shape[0]):
            u_q[blk, cand, i] = -math.log(e_q[i] * s_q)
        for j in range(e_r.shape[0]):
            u_r[blk, cand, j] = -math.log(e_r[j] * s_r)
