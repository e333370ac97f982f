"""Numba kernels of :func:`tikhon.solvers.transport.class_ot` (the NumPy implementation).

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
def plan_objective(Q, Ct, starts):
    """``(<C, Q>, sum_j sum_c ||Q[j, I_c]||_2)``, fused in one pass (no BLAS:
    a threaded BLAS call on a shared machine costs more than the whole pass)."""
    m = Q.shape[0]
    ncls = starts.shape[0] - 1
    cost = 0.0
    total = 0.0
    for j in range(m):
        for c in range(ncls):
            s = 0.0
            for i in range(starts[c], starts[c + 1]):
                q = Q[j, i]
                s += q * q
                cost += q * Ct[j, i]
            total += np.sqrt(s)
    return cost, total


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
    w = np.empty(n)
    wmax = np.empty(ncls)
    for j in range(m):
        for c in range(ncls):
            mx = -np.inf
            for i in range(starts[c], starts[c + 1]):
                x = f[i] + g[j] - Ct[j, i]
                w[i] = x
                if x > mx:
                    mx = x
            wmax[c] = mx
        # the level of a group lies in [max(w) - lam, max(w)]: a group whose max
        # is below the best level found so far cannot raise it, so skip its sort
        best = -np.inf
        for c in np.argsort(wmax)[::-1]:
            if starts[c + 1] == starts[c] or wmax[c] <= best:
                continue
            d = _level(w[starts[c]:starts[c + 1]], lam)
            if d > best:
                best = d
        g_out[j] = g[j] - best


# --------------------------------------------------------------------------
# Semismooth Newton augmented Lagrangian (SSNAL) kernels.
#
# The dual of the class OT program is  max <f, a> + <g, b>  s.t. every group
# ||(f_i + g_j - C_ij)^+_{i in I_c}||_2 <= lam.  Its augmented Lagrangian, with
# the plan Q as multiplier and penalty sigma, minimised over the slack gives
#   phi(f, g) = -<f, a> - <g, b> + ||prox_{sigma G}(Q + sigma (f + g - C))||^2 / (2 sigma),
# G = lam R + i_{>= 0}; phi is convex, C^1, with gradient (P 1 - a, P^T 1 - b),
# P = prox_{sigma G}(...), and a generalized Hessian sigma A J A^T, J the
# (block diagonal, per group identity-plus-rank-one) Jacobian of the prox.
# --------------------------------------------------------------------------


@numba.njit(cache=True)
def ssn_prox(Q, Ct, starts, f, g, sigma, tau, P, rows, cols, ent_i, ent_p, grp_j, grp_ptr, grp_al, grp_co):
    """P = prox_{sigma G}(Q + sigma (f + g - C)) with its marginals and Jacobian.

    The Jacobian is stored compactly: active group ``q`` (target ``grp_j[q]``)
    owns the entries ``grp_ptr[q]:grp_ptr[q+1]`` of ``ent_i`` (source index) and
    ``ent_p`` (plan value), and acts on a group vector w as
    ``al * w + co * p (p . w)`` restricted to the positive entries.
    Returns ``(||P||^2, ||P - Q||^2, number of active groups)``.
    """
    m, n = Q.shape
    ncls = starts.shape[0] - 1
    for i in range(n):
        rows[i] = 0.0
    nrm2_tot = 0.0
    ng = 0
    ne = 0
    grp_ptr[0] = 0
    for j in range(m):
        gj = g[j]
        colsum = 0.0
        for c in range(ncls):
            s0 = starts[c]
            s1 = starts[c + 1]
            r2 = 0.0
            for i in range(s0, s1):
                x = Q[j, i] + sigma * (f[i] + gj - Ct[j, i])
                if x > 0.0:
                    P[j, i] = x
                    r2 += x * x
                else:
                    P[j, i] = 0.0
            if r2 <= tau * tau or r2 == 0.0:
                for i in range(s0, s1):
                    P[j, i] = 0.0
                continue
            r = np.sqrt(r2)
            al = 1.0 - tau / r
            if al <= 0.0:
                # r rounds to tau: the group sits on the shrinkage boundary
                for i in range(s0, s1):
                    P[j, i] = 0.0
                continue
            for i in range(s0, s1):
                p = P[j, i]
                if p > 0.0:
                    p *= al
                    P[j, i] = p
                    rows[i] += p
                    colsum += p
                    ent_i[ne] = i
                    ent_p[ne] = p
                    ne += 1
            nrm2_tot += al * al * r2
            grp_j[ng] = j
            grp_al[ng] = al
            # J = al I + (tau / r) u u^T with u = p / ||p||, ||p|| = al r
            grp_co[ng] = (tau / r) / (al * al * r2)
            ng += 1
            grp_ptr[ng] = ne
        cols[j] = colsum
    diff2 = 0.0
    for j in range(m):
        for i in range(n):
            d = P[j, i] - Q[j, i]
            diff2 += d * d
    return nrm2_tot, diff2, ng


@numba.njit(cache=True)
def _hess_vec(ng, ent_i, ent_p, grp_j, grp_ptr, grp_al, grp_co, sigma, mu, vf, vg, of, og):
    n = vf.shape[0]
    m = vg.shape[0]
    for i in range(n):
        of[i] = mu * vf[i]
    for j in range(m):
        og[j] = mu * vg[j]
    for q in range(ng):
        j = grp_j[q]
        vj = vg[j]
        e0 = grp_ptr[q]
        e1 = grp_ptr[q + 1]
        dot = 0.0
        for e in range(e0, e1):
            dot += ent_p[e] * (vf[ent_i[e]] + vj)
        al = grp_al[q] * sigma
        cf = grp_co[q] * dot * sigma
        acc = 0.0
        for e in range(e0, e1):
            i = ent_i[e]
            o = al * (vf[i] + vj) + cf * ent_p[e]
            of[i] += o
            acc += o
        og[j] += acc


@numba.njit(cache=True)
def ssn_cg(ng, ent_i, ent_p, grp_j, grp_ptr, grp_al, grp_co, sigma, mu, rf, rg, tol, maxit, df, dg):
    """Conjugate gradients on (sigma A J A^T + mu I) d = r; returns iterations."""
    n = rf.shape[0]
    m = rg.shape[0]
    for i in range(n):
        df[i] = 0.0
    for j in range(m):
        dg[j] = 0.0
    resf = rf.copy()
    resg = rg.copy()
    pf = rf.copy()
    pg = rg.copy()
    qf = np.empty(n)
    qg = np.empty(m)
    rr = 0.0
    for i in range(n):
        rr += resf[i] * resf[i]
    for j in range(m):
        rr += resg[j] * resg[j]
    thr = tol * tol * rr
    it = 0
    while it < maxit and rr > thr:
        _hess_vec(ng, ent_i, ent_p, grp_j, grp_ptr, grp_al, grp_co, sigma, mu, pf, pg, qf, qg)
        pq = 0.0
        for i in range(n):
            pq += pf[i] * qf[i]
        for j in range(m):
            pq += pg[j] * qg[j]
        if pq <= 0.0:
            break
        alpha = rr / pq
        rr_new = 0.0
        for i in range(n):
            df[i] += alpha * pf[i]
            resf[i] -= alpha * qf[i]
            rr_new += resf[i] * resf[i]
        for j in range(m):
            dg[j] += alpha * pg[j]
            resg[j] -= alpha * qg[j]
            rr_new += resg[j] * resg[j]
        beta = rr_new / rr
        rr = rr_new
        for i in range(n):
            pf[i] = resf[i] + beta * pf[i]
        for j in range(m):
            pg[j] = resg[j] + beta * pg[j]
        it += 1
    return it
