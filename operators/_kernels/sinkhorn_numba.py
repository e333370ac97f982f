"""Numba kernels of the Sinkhorn solvers (tikhon.solvers.transport.sinkhorn).

Two families, both float64 and free of n x m temporaries:

* log-domain half steps: a fused log-sum-exp over the rows (parallel over rows)
  or over the columns (parallel over blocks of rows, each with its own partial
  max and sum per column, merged at the end, so the row-major cost array is
  read contiguously and no transposed copy is needed). Each returns, for free, the
  marginal violation of the plan *before* the update, because the sum it needs
  is exactly that marginal.
* exp-domain scaling steps on a stabilised kernel ``K = exp((f + g - C) / eps)``
  (Schmitzer's absorption): matrix-vector products fused with the scaling update
  and the marginal violation, and the kernel rebuild that absorbs the scalings
  into the potentials.

Every parallel loop writes only to its own rows, or its own block of columns,
so the loops are free of write races. ``nb`` (the number of row blocks) is
the caller's thread count: 1 runs the column kernels serially.
"""

from __future__ import annotations

import math

import numba
import numpy as np

@numba.njit(cache=True, parallel=True, fastmath=False)
def row_lse_update(C, g, loga, eps, kappa, f_old, f_new, omega):
    """Row half step: ``f_new_i = eps log a_i - kappa eps LSE_j((g_j - C_ij)/eps)``.

    ``kappa = 1`` is the balanced update; ``kappa = rho / (rho + eps)`` the
    KL-relaxed (unbalanced) one; ``omega`` over-relaxes the step
    (``f_new = (1 - omega) f_old + omega * update``, 1: plain). Returns the L1 row-marginal violation of the
    plan ``exp((f_old_i + g_j - C_ij)/eps)`` (before the update) and the
    largest |f_new - f_old| (for the stability guard of the caller).
    """
    n, m = C.shape
    err = np.zeros(n)
    shift = np.zeros(n)
    for i in numba.prange(n):
        mx = -np.inf
        for j in range(m):
            t = g[j] - C[i, j]
            if t > mx:
                mx = t
        s = 0.0
        for j in range(m):
            s += math.exp((g[j] - C[i, j] - mx) / eps)
        lse = mx + eps * math.log(s)  # = eps * LSE_j((g_j - C_ij)/eps)
        # row sum of the old plan: exp((f_old_i + lse) / eps)
        err[i] = abs(math.exp((f_old[i] + lse) / eps) - math.exp(loga[i]))
        f_new[i] = (1.0 - omega) * f_old[i] + omega * (eps * loga[i] - kappa * lse)
        shift[i] = abs(f_new[i] - f_old[i])
    return err.sum(), shift.max() if n > 0 else 0.0


@numba.njit(cache=True, parallel=True, fastmath=False)
def col_lse_update(C, f, logb, eps, kappa, g_old, g_new, nb, omega):
    """Column half step: ``g_new_j = eps log b_j - kappa eps LSE_i((f_i - C_ij)/eps)``.

    The rows are split into ``nb`` blocks, one task each; a task computes the
    column-wise max and then the shifted sum of exponentials of its rows
    (contiguous reads of the row-major ``C``) into its own row of the partial
    arrays, and the blocks' log-sum-exps are merged afterwards. Returns the L1
    column-marginal violation of the plan before the update and the largest
    |g_new - g_old|.
    """
    n, m = C.shape
    rows_per = (n + nb - 1) // nb
    pmx = np.full((nb, m), -np.inf)
    ps = np.zeros((nb, m))
    for blk in numba.prange(nb):
        i0 = blk * rows_per
        i1 = min(n, i0 + rows_per)
        mx = pmx[blk]
        s = ps[blk]
        for i in range(i0, i1):
            fi = f[i]
            for j in range(m):
                t = fi - C[i, j]
                if t > mx[j]:
                    mx[j] = t
        for i in range(i0, i1):
            fi = f[i]
            for j in range(m):
                s[j] += math.exp((fi - C[i, j] - mx[j]) / eps)
    err = 0.0
    shift = 0.0
    for j in range(m):
        mx = -np.inf
        for blk in range(nb):
            if pmx[blk, j] > mx:
                mx = pmx[blk, j]
        tot = 0.0
        for blk in range(nb):
            if ps[blk, j] > 0.0:
                tot += ps[blk, j] * math.exp((pmx[blk, j] - mx) / eps)
        lse = mx + eps * math.log(tot)
        err += abs(math.exp((g_old[j] + lse) / eps) - math.exp(logb[j]))
        g_new[j] = (1.0 - omega) * g_old[j] + omega * (eps * logb[j] - kappa * lse)
        d = abs(g_new[j] - g_old[j])
        if d > shift:
            shift = d
    return err, shift


@numba.njit(cache=True, parallel=True, fastmath=False)
def build_kernel(C, f, g, eps, K):
    """Stabilised kernel ``K_ij = exp((f_i + g_j - C_ij) / eps)``, in place.

    With potentials near the optimum these entries are the plan itself, so
    they neither overflow nor lose the rows' mass to underflow.
    """
    n, m = C.shape
    for i in numba.prange(n):
        fi = f[i]
        for j in range(m):
            K[i, j] = math.exp((fi + g[j] - C[i, j]) / eps)


@numba.njit(cache=True, parallel=True, fastmath=False)
def scale_rows(K, v, a, u, omega):
    """Row scaling step: ``r = K v``, ``u = u^(1 - omega) (a / r)^omega``, in place.

    Returns the L1 row-marginal violation of ``diag(u_old) K diag(v)``, the
    smallest row sum (0 signals a row lost to underflow) and max |log u_new|.
    """
    n, m = K.shape
    err = np.zeros(n)
    rmin = np.empty(n)
    big = np.zeros(n)
    for i in numba.prange(n):
        r = 0.0
        for j in range(m):
            r += K[i, j] * v[j]
        err[i] = abs(u[i] * r - a[i])
        rmin[i] = r
        if r > 0.0:
            # over-relaxed in the log domain: u <- u^(1 - omega) (a / r)^omega
            lu = (1.0 - omega) * math.log(u[i]) + omega * math.log(a[i] / r)
            u[i] = math.exp(lu)
            big[i] = abs(lu)
        else:
            big[i] = np.inf
    return err.sum(), rmin.min() if n > 0 else 1.0, big.max() if n > 0 else 0.0


@numba.njit(cache=True, parallel=True, fastmath=False)
def scale_cols(K, u, b, v, nb, omega):
    """Column scaling step: ``s = K^T u``, ``v = v^(1 - omega) (b / s)^omega``, in place.

    The rows are split into ``nb`` blocks; each task accumulates
    ``sum_i u_i K[i, :]`` of its rows into its own partial sum (contiguous
    reads), then the partial sums are added. Returns the L1 column-marginal
    violation of ``diag(u) K diag(v_old)``, the smallest column sum and
    max |log v_new|.
    """
    n, m = K.shape
    rows_per = (n + nb - 1) // nb
    part = np.zeros((nb, m))
    for blk in numba.prange(nb):
        i0 = blk * rows_per
        i1 = min(n, i0 + rows_per)
        acc = part[blk]
        for i in range(i0, i1):
            ui = u[i]
            for j in range(m):
                acc[j] += ui * K[i, j]
    err = 0.0
    smin = np.inf
    big = 0.0
    for j in range(m):
        s = 0.0
        for blk in range(nb):
            s += part[blk, j]
        err += abs(v[j] * s - b[j])
        if s < smin:
            smin = s
        if s > 0.0:
            lv = (1.0 - omega) * math.log(v[j]) + omega * math.log(b[j] / s)
            v[j] = math.exp(lv)
            lv = abs(lv)
        else:
            lv = np.inf
        if lv > big:
            big = lv
    return err, smin, big


@numba.njit(cache=True, parallel=True, fastmath=False)
def plan_and_stats(C, f, g, eps, P, row, col_part):
    """Plan ``P_ij = exp((f_i + g_j - C_ij)/eps)`` with its row sums, <C, P> and sum P log P.

    Column sums are accumulated per block of rows into ``col_part``
    (shape ``(n_blocks, m)``), summed by the caller: each task owns one row of
    ``col_part``, so there is no write race.
    """
    n, m = C.shape
    nb = col_part.shape[0]
    rows_per = (n + nb - 1) // nb
    cost = np.zeros(nb)
    plogp = np.zeros(nb)
    for blk in numba.prange(nb):
        i0 = blk * rows_per
        i1 = min(n, i0 + rows_per)
        c_acc = 0.0
        e_acc = 0.0
        for i in range(i0, i1):
            fi = f[i]
            r = 0.0
            for j in range(m):
                z = (fi + g[j] - C[i, j]) / eps
                p = math.exp(z)
                P[i, j] = p
                r += p
                col_part[blk, j] += p
                c_acc += p * C[i, j]
                if p > 0.0:
                    e_acc += p * z
            row[i] = r
        cost[blk] = c_acc
        plogp[blk] = e_acc
    return cost.sum(), plogp.sum()
