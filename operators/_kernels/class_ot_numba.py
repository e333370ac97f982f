"""Numba kernels of :func:`tikhon.solvers.transport.class_ot`.

All arrays are stored *target-major*: a plan ``Q`` of shape ``(m, n)`` is the
transpose of the user's ``(n, m)`` plan with the source points sorted by class,
so that each group ``P[I_c, j]`` is the contiguous slice ``Q[j, starts[c]:starts[c+1]]``.
Loops over targets are serial: the source marginals are a reduction over
targets, and a parallel loop would race on them.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def dr_step(Z, Ct, starts, t, tlam, a, b, X, Y, u, v):
    """One Douglas-Rachford step for min <C,P> + lam R(P) over U(a, b).

    ``X = prox_{t G}(Z)`` (non-negativity + group shrinkage), ``Y = Proj_A(2X - Z - tC)``
    (affine marginal constraints), ``Z += Y - X``. ``u``, ``v`` receive the
    multipliers of the projection (``t`` times the dual potentials f, g).
    Returns ``(||X - Y||^2, ||X||^2)``.
    """
    m, n = Z.shape
    ncls = starts.shape[0] - 1
    src = np.zeros(n)
    tgt = np.zeros(m)
    for j in range(m):
        rowsum = 0.0
        for c in range(ncls):
            s0 = starts[c]
            s1 = starts[c + 1]
            nrm2 = 0.0
            for i in range(s0, s1):
                z = Z[j, i]
                if z > 0.0:
                    nrm2 += z * z
            scale = 0.0
            if nrm2 > 0.0:
                nrm = np.sqrt(nrm2)
                if nrm > tlam:
                    scale = 1.0 - tlam / nrm
            for i in range(s0, s1):
                z = Z[j, i]
                x = scale * z if z > 0.0 else 0.0
                X[j, i] = x
                w = 2.0 * x - z - t * Ct[j, i]
                Y[j, i] = w
                rowsum += w
                src[i] += w
        tgt[j] = rowsum
    rtot = 0.0
    for i in range(n):
        u[i] = a[i] - src[i]
        rtot += u[i]
    for i in range(n):
        u[i] = u[i] / m - rtot / (n * m)
    for j in range(m):
        v[j] = (b[j] - tgt[j]) / n
    res2 = 0.0
    xn2 = 0.0
    for j in range(m):
        vj = v[j]
        for i in range(n):
            y = Y[j, i] + u[i] + vj
            Y[j, i] = y
            d = y - X[j, i]
            Z[j, i] += d
            res2 += d * d
            xn2 += X[j, i] * X[j, i]
    return res2, xn2


@numba.njit(cache=True)
def group_norm_sum(Q, starts):
    """Sum over targets j and classes c of ||Q[j, I_c]||_2."""
    m = Q.shape[0]
    ncls = starts.shape[0] - 1
    total = 0.0
    for j in range(m):
        for c in range(ncls):
            s = 0.0
            for i in range(starts[c], starts[c + 1]):
                s += Q[j, i] * Q[j, i]
            total += np.sqrt(s)
    return total


@numba.njit(cache=True)
def _level(w, lam):
    """The delta with ||(w - delta)_+||_2 = lam (lam >= 0); for lam = 0, max(w)."""
    k = w.shape[0]
    ws = np.sort(w)[::-1]
    if lam == 0.0:
        return ws[0]
    s1 = 0.0
    s2 = 0.0
    for q in range(k):
        s1 += ws[q]
        s2 += ws[q] * ws[q]
        cnt = q + 1
        # delta solves cnt d^2 - 2 s1 d + s2 - lam^2 = 0 (smaller root) on the
        # interval where exactly the cnt largest entries are above it
        disc = s1 * s1 - cnt * (s2 - lam * lam)
        if disc < 0.0:
            disc = 0.0
        d = (s1 - np.sqrt(disc)) / cnt
        lower = ws[q + 1] if q + 1 < k else -np.inf
        if d >= lower:
            return d
    return (s1 - np.sqrt(max(s1 * s1 - k * (s2 - lam * lam), 0.0))) / k


@numba.njit(cache=True)
def feasible_g(Ct, starts, f, g, lam, g_out):
    """Shift each target potential g_j so that every group constraint
    ||(f_i + g_j - C_ij)_{i in I_c}^+||_2 <= lam holds, one of them with equality."""
    m, n = Ct.shape
    ncls = starts.shape[0] - 1
    for j in range(m):
        best = -np.inf
        for c in range(ncls):
            s0 = starts[c]
            s1 = starts[c + 1]
            if s1 == s0:
                continue
            w = np.empty(s1 - s0)
            for i in range(s0, s1):
                w[i - s0] = f[i] + g[j] - Ct[j, i]
            d = _level(w, lam)
            if d > best:
                best = d
        g_out[j] = g[j] - best
