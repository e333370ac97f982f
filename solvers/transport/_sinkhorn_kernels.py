"""Numba kernels of the Sinkhorn solvers (balanced and unbalanced), and their thread policy.

Two families, free of n x m temporaries:

* log-domain half steps: a fused log-sum-exp over the rows (parallel over rows)
  or over the columns (parallel over blocks of rows, each with its own partial
  max and sum per column, merged at the end, so the row-major cost array is
  read contiguously and no transposed copy is needed). Each returns, for free, the
  marginal violation of the plan *before* the update, because the sum it needs
  is exactly that marginal.
* exp-domain scaling steps on a stabilised kernel ``K = exp((f + g - C) / eps)``
  (Schmitzer's absorption), stored in float32 or float64 with float64 sums:
  one pass per iteration that does the row step and, while each row is in
  cache, accumulates the column sums for the next column step (half the
  memory traffic of two matrix-vector products), and a fused rebuild (exact
  log-domain row step, kernel and column sums in one read of ``C``).

At large sizes the scaling pass is bound by memory bandwidth and the
rebuilds by the exponentials, which use :func:`vexp`, a vectorisable exp
(the C library's is a scalar call that LLVM cannot vectorise).

Every parallel loop writes only to its own rows, or its own block of columns,
so the loops are free of write races. ``nb`` (the number of row blocks) is
the caller's thread count: 1 runs the column kernels serially.
Below about a million cost entries a parallel region costs more than it saves,
so the solvers run on one numba thread there (:func:`tikhon._core.threads.numba_threads`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# cost entries from which the kernels run in parallel
PARALLEL_MIN_SIZE = 1 << 20


def numba_threads():
    """The number of numba threads in effect (the row blocks of the column kernels)."""
    return numba.get_num_threads()


# Reassociation lets LLVM vectorise the dot products; no flag that assumes
# finite values, so the NaN/inf checks of the callers stay meaningful.
_FAST = {"reassoc", "contract"}


# exp(x) = 2^k p(x - k ln 2) with |x - k ln 2| <= ln(2)/2: a degree-13 Taylor
# polynomial (truncation 4e-18 relative) and 2^k from a table. Unlike a call to
# the C library's exp, this loop body vectorises (the table read becomes a
# gather), which makes the exponential passes several times faster.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_K_MIN = -1080
_K_MAX = 1024
# 2^(k - 1), times 2 after the product: 2^1024 itself is not a float64
_POW2 = np.array([2.0 ** (k - 1) for k in range(_K_MIN, _K_MAX + 1)])
_INV_FACT = np.array([1.0 / math.factorial(k) for k in range(14)])


@numba.njit(inline="always", fastmath={"contract"})
def vexp(x):
    """exp(x) to ~1 ulp (relative, for normal results), vectorisable; 0 below -745.2, NaN for NaN."""
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    c = _INV_FACT
    p = c[13]
    p = p * r + c[12]
    p = p * r + c[11]
    p = p * r + c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    # int() of NaN gives the most negative integer: clamped, never out of range
    ki = int(k)
    if ki < _K_MIN:
        ki = _K_MIN
    if ki > _K_MAX:
        ki = _K_MAX
    y = (p * _POW2[ki - _K_MIN]) * 2.0
    if x < -745.2:
        y = 0.0
    if x > 709.782712893384:
        y = np.inf
    return y


@numba.njit(cache=True, parallel=True, fastmath=_FAST)
def row_lse_update(C, g, loga, eps, kappa, f_old, f_new, omega):
    """Row half step: ``f_new_i = eps log a_i - kappa eps LSE_j((g_j - C_ij)/eps)``.

    ``kappa = 1`` is the balanced update; ``kappa = rho / (rho + eps)`` the
    KL-relaxed (unbalanced) one; ``omega`` over-relaxes the step
    (``f_new = (1 - omega) f_old + omega * update``, 1: plain). Returns the L1 row-marginal violation of the
    plan ``exp((f_old_i + g_j - C_ij)/eps)`` (before the update) and the
    largest |f_new - f_old| (for the stability guard of the caller).
    """
    n, m = C.shape
    inv = 1.0 / eps
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
            s += vexp((g[j] - C[i, j] - mx) * inv)
        lse = mx + eps * math.log(s)  # = eps * LSE_j((g_j - C_ij)/eps)
        # row sum of the old plan: exp((f_old_i + lse) / eps)
        err[i] = abs(math.exp((f_old[i] + lse) / eps) - math.exp(loga[i]))
        f_new[i] = (1.0 - omega) * f_old[i] + omega * (eps * loga[i] - kappa * lse)
        shift[i] = abs(f_new[i] - f_old[i])
    return err.sum(), shift.max() if n > 0 else 0.0


@numba.njit(cache=True, parallel=True, fastmath=_FAST)
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
    inv = 1.0 / eps
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
                s[j] += vexp((fi - C[i, j] - mx[j]) * inv)
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


@numba.njit(cache=True, parallel=True, fastmath=_FAST)
def rebuild_rows(C, g, loga, eps, K, f, scratch, col_part, tiny):
    """Fused kernel rebuild: exact log-domain row step, kernel and its column sums.

    For each row, in one read of ``C``: ``f_i = eps log a_i - eps LSE_j((g_j -
    C_ij)/eps)`` and ``K_ij = exp((f_i + g_j - C_ij)/eps)`` (so the row sums
    of ``K`` are exactly ``a``, and no row can underflow whole), written in
    ``K``'s dtype (float32 or float64); entries below ``tiny`` are stored as
    0 so that the scaling passes never meet subnormal numbers. The row is
    kept in cache between its three sweeps (max, exponentials into the
    thread's ``scratch`` row, scaled store), so ``C`` is read from memory once
    and ``K`` written once. ``col_part[blk]`` receives the column sums of the
    block's rows (summed by the caller): each task owns its row of
    ``scratch`` and ``col_part``, so there are no write races.
    """
    n, m = C.shape
    nb = col_part.shape[0]
    rows_per = (n + nb - 1) // nb
    inv = 1.0 / eps
    for blk in numba.prange(nb):
        i0 = blk * rows_per
        i1 = min(n, i0 + rows_per)
        acc = col_part[blk]
        e = scratch[blk]
        for j in range(m):
            acc[j] = 0.0
        for i in range(i0, i1):
            mx = -np.inf
            for j in range(m):
                t = g[j] - C[i, j]
                if t > mx:
                    mx = t
            s = 0.0
            for j in range(m):
                x = vexp((g[j] - C[i, j] - mx) * inv)
                e[j] = x
                s += x
            f[i] = eps * loga[i] - mx - eps * math.log(s)
            scale = math.exp(loga[i]) / s
            for j in range(m):
                x = e[j] * scale
                if x < tiny:
                    x = 0.0
                K[i, j] = x
                acc[j] += K[i, j]


@numba.njit(cache=True, parallel=True, fastmath=_FAST)
def sinkhorn_pass(K, v, a, u, omega, col_part, stats):
    """One Sinkhorn iteration's matrix work in a single read of ``K``.

    For each row: ``r_i = (K v)_i`` (float64 accumulation whatever ``K``'s
    dtype), ``u_i <- u_i^(1 - omega) (a_i / r_i)^omega`` (over-relaxed in the
    log domain; 1: plain), and, while the row is still in cache,
    ``col_part[blk] += u_i K[i, :]`` with the *new* ``u_i``: the column sums
    ``K^T u`` that the next column step needs. Reading ``K`` once per
    iteration instead of twice halves the memory traffic, which is what
    bounds this loop at large sizes.

    ``stats[blk]`` receives the block's L1 row violation of
    ``diag(u_old) K diag(v)``, smallest row sum (0: a row lost to underflow)
    and largest |log u_new|; the caller reduces them.
    """
    n, m = K.shape
    nb = col_part.shape[0]
    rows_per = (n + nb - 1) // nb
    for blk in numba.prange(nb):
        i0 = blk * rows_per
        i1 = min(n, i0 + rows_per)
        acc = col_part[blk]
        for j in range(m):
            acc[j] = 0.0
        err = 0.0
        rmin = np.inf
        big = 0.0
        for i in range(i0, i1):
            r = 0.0
            for j in range(m):
                r += K[i, j] * v[j]
            err += abs(u[i] * r - a[i])
            if r < rmin:
                rmin = r
            if r > 0.0:
                lu = (1.0 - omega) * math.log(u[i]) + omega * math.log(a[i] / r)
                ui = math.exp(lu)
                u[i] = ui
                lu = abs(lu)
                if lu > big:
                    big = lu
                for j in range(m):
                    acc[j] += ui * K[i, j]
            else:
                big = np.inf
        stats[blk, 0] = err
        stats[blk, 1] = rmin
        stats[blk, 2] = big


@numba.njit(cache=True)
def column_step(col_part, v, b, omega):
    """Column step from the partial sums of :func:`sinkhorn_pass` / :func:`rebuild_rows`.

    ``s = sum_blk col_part[blk]`` (= ``K^T u``), ``v <- v^(1 - omega)
    (b / s)^omega`` in place. Returns the L1 column violation of
    ``diag(u) K diag(v_old)``, the smallest column sum and max |log v_new|.
    """
    nb, m = col_part.shape
    err = 0.0
    smin = np.inf
    big = 0.0
    for j in range(m):
        s = 0.0
        for blk in range(nb):
            s += col_part[blk, j]
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


@numba.njit(cache=True, parallel=True, fastmath=_FAST)
def plan_and_stats(C, f, g, eps, P, row, col_part):
    """Plan ``P_ij = exp((f_i + g_j - C_ij)/eps)`` with its row sums, <C, P> and sum P log P.

    Column sums are accumulated per block of rows into ``col_part``
    (shape ``(n_blocks, m)``), summed by the caller: each task owns one row of
    ``col_part``, so there is no write race.
    """
    n, m = C.shape
    inv = 1.0 / eps
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
                z = (fi + g[j] - C[i, j]) * inv
                p = vexp(z)
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
