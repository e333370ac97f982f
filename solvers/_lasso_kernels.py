"""Numba kernels of the Lasso coordinate descent (private; see coordinate_descent.py).

The design ``X`` is either a dense Fortran-ordered (n, p) array or the CSC
triplet ``(data, indices, indptr)``; sample weights ``s`` (normalised to sum
to one) are either an array or the float ``1/n`` for unit weights. The column
operations are overloads specialised on these types, so every kernel compiles
to branch-free loops for its layout (a runtime branch per column, tried first,
cost 3-4x on sparse columns with ten nonzeros).

Dense designs arrive here already centered (``m = 0``: coordinate_descent.py
centers an explicit copy). For sparse designs centering for the intercept is
implicit, so the design stays sparse: the solver works with the centered columns
``c_j = X_j - m_j`` (``m_j`` the weighted column mean) and the centered target,
and stores the residual as ``R = r + o`` with ``r = y_c - X w`` (updated on a
column's nonzeros only) and the scalar ``o = m . w``. Because ``R`` has weighted
mean zero, ``c_j^T S R = X_j^T S r + o m_j``. ``r`` and ``o`` cancel when the
means are large: the correlations lose about ``eps (m_j / ||c_j||_S)^2`` of
relative accuracy (the solver warns when that is above the tolerance).

The residual ``r`` and the coefficients are float64 whatever the design's
dtype: the design is only read, so a float32 design halves the memory traffic
while sums and the duality gap keep float64 accuracy.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

# reassociation lets LLVM vectorise the column dot products; no flag that
# assumes the absence of NaN or inf (a non-finite residual must stay visible)
_FM = {"reassoc", "contract"}


# Column access, specialised at compile time on the types: ``X`` a 2-D array
# (dense) or a tuple ``(data, indices, indptr)`` (CSC); ``s`` a float (unit
# weights, every s_i = s) or an array of weights. Written as overloads so that
# each kernel compiles to branch-free loops for its layout.


def col_dot(X, j, s, v):
    """``sum_i X_ij s_i v_i`` (jit only)."""
    raise NotImplementedError("col_dot is only callable from jitted code")


def col_axpy(X, j, a, v):
    """``v += a X_j`` (jit only)."""
    raise NotImplementedError("col_axpy is only callable from jitted code")


def weight(s, i):
    """``s_i`` (jit only)."""
    raise NotImplementedError("weight is only callable from jitted code")


def n_cols(X):
    """Number of columns (jit only)."""
    raise NotImplementedError("n_cols is only callable from jitted code")


def _sparse(X):
    return isinstance(X, types.BaseTuple)


@overload(col_dot, jit_options={"fastmath": _FM}, inline="always")
def _ol_col_dot(X, j, s, v):
    unit = isinstance(s, types.Float)
    if _sparse(X) and unit:
        def impl(X, j, s, v):
            data, indices, indptr = X
            acc = 0.0
            for k in range(indptr[j], indptr[j + 1]):
                acc += data[k] * v[np.uint64(indices[k])]  # unsigned: no wraparound test
            return acc * s
    elif _sparse(X):
        def impl(X, j, s, v):
            data, indices, indptr = X
            acc = 0.0
            for k in range(indptr[j], indptr[j + 1]):
                i = np.uint64(indices[k])
                acc += data[k] * s[i] * v[i]
            return acc
    elif unit:
        def impl(X, j, s, v):
            acc = 0.0
            for i in range(X.shape[0]):
                acc += X[i, j] * v[i]
            return acc * s
    else:
        def impl(X, j, s, v):
            acc = 0.0
            for i in range(X.shape[0]):
                acc += X[i, j] * s[i] * v[i]
            return acc
    return impl


@overload(col_axpy, jit_options={"fastmath": _FM}, inline="always")
def _ol_col_axpy(X, j, a, v):
    if _sparse(X):
        def impl(X, j, a, v):
            data, indices, indptr = X
            for k in range(indptr[j], indptr[j + 1]):
                v[np.uint64(indices[k])] += a * data[k]
    else:
        def impl(X, j, a, v):
            for i in range(X.shape[0]):
                v[i] += a * X[i, j]
    return impl


@overload(weight, inline="always")
def _ol_weight(s, i):
    if isinstance(s, types.Float):
        return lambda s, i: s
    return lambda s, i: s[i]


@overload(n_cols)
def _ol_n_cols(X):
    if _sparse(X):
        return lambda X: X[2].shape[0] - 1
    return lambda X: X.shape[1]


def col_stats(X, j, s, center):
    """``(m_j, L_j, Q_j)`` of one column (jit only)."""
    raise NotImplementedError("col_stats is only callable from jitted code")


@overload(col_stats, jit_options={"fastmath": _FM}, inline="always")
def _ol_col_stats(X, j, s, center):
    if _sparse(X):
        def impl(X, j, s, center):
            data, indices, indptr = X
            a = 0.0
            wz = 0.0
            q = 0.0
            for k in range(indptr[j], indptr[j + 1]):
                sk = weight(s, indices[k])
                a += sk * data[k]
                wz += sk
                q += sk * data[k] * data[k]
            if not center:
                return 0.0, q, q
            mj = a
            b = 0.0
            for k in range(indptr[j], indptr[j + 1]):
                d = data[k] - mj
                b += weight(s, indices[k]) * d * d
            # the column's zeros contribute (0 - m)^2 with their weights (which sum to 1 - wz)
            b += mj * mj * max(1.0 - wz, 0.0)
            return mj, b, q
    else:
        def impl(X, j, s, center):
            a = 0.0
            q = 0.0
            for i in range(X.shape[0]):
                a += weight(s, i) * X[i, j]
                q += weight(s, i) * X[i, j] * X[i, j]
            mj = a if center else 0.0
            b = 0.0
            for i in range(X.shape[0]):
                d = X[i, j] - mj
                b += weight(s, i) * d * d
            return mj, b, q
    return impl


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def column_stats(X, s, center):
    """Weighted means ``m_j`` (0 unless ``center``), ``L_j = ||c_j||_S^2`` and ``Q_j = ||X_j||_S^2``.

    ``s`` sums to one (a float ``1/n`` for unit weights). ``L_j`` is summed
    from centered values (two passes), not as ``E[x^2] - m^2``, which cancels
    for columns with a large mean; ``Q_j`` (uncentered) is the scale against
    which a centered column is judged constant.
    """
    p = n_cols(X)
    m = np.zeros(p)
    L = np.zeros(p)
    Q = np.zeros(p)
    for j in range(p):
        m[j], L[j], Q[j] = col_stats(X, j, s, center)
    return m, L, Q


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def residual(X, y_c, m, w, r):
    """``r = y_c - X w`` (written into ``r``) and return ``o = m . w``."""
    r[:] = y_c
    o = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        if wj != 0.0:
            col_axpy(X, j, -wj, r)
            o += m[j] * wj
    return o


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def correlations(X, s, m, r, o, feats, out):
    """``out[j] = c_j^T S R`` for ``j`` in ``feats`` (``R = r + o``)."""
    for jj in range(feats.shape[0]):
        j = feats[jj]
        out[j] = col_dot(X, j, s, r) + o * m[j]


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def _smooth_part(r, o, s):
    """``0.5 sum_i s_i (r_i + o)^2``."""
    acc = 0.0
    for i in range(r.shape[0]):
        v = r[i] + o
        acc += weight(s, i) * v * v
    return 0.5 * acc


@nb.njit(cache=True, nogil=True)
def _solve_small(A, b):
    """Solve the small system ``A z = b`` by Gaussian elimination with partial pivoting.

    Returns ``(z, ok)``; ``ok`` is False when a pivot is negligible (the
    Anderson Gram matrix is singular once the iterates stall).
    """
    k = A.shape[0]
    M = A.copy()
    z = b.copy()
    scale = 0.0
    for i in range(k):
        scale = max(scale, abs(M[i, i]))
    if not scale > 0.0:
        return z, False
    for c in range(k):
        piv = c
        for i in range(c + 1, k):
            if abs(M[i, c]) > abs(M[piv, c]):
                piv = i
        if abs(M[piv, c]) <= 1e-14 * scale:
            return z, False
        if piv != c:
            for t in range(k):
                M[c, t], M[piv, t] = M[piv, t], M[c, t]
            z[c], z[piv] = z[piv], z[c]
        for i in range(c + 1, k):
            f = M[i, c] / M[c, c]
            for t in range(c, k):
                M[i, t] -= f * M[c, t]
            z[i] -= f * z[c]
    for c in range(k - 1, -1, -1):
        acc = z[c]
        for t in range(c + 1, k):
            acc -= M[c, t] * z[t]
        z[c] = acc / M[c, c]
    return z, True


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def _subproblem_gap(X, s, m, thr, ws, w, r, o, y_c, y_norm2):
    """Duality gap of the problem restricted to ``ws`` (all penalized; ``w = 0`` off ``ws``)."""
    ratio = 1.0
    pen = 0.0
    for jj in range(ws.shape[0]):
        j = ws[jj]
        c = abs(col_dot(X, j, s, r) + o * m[j])
        if c > ratio * thr[j]:
            ratio = c / thr[j]
        pen += thr[j] * abs(w[j])
    # primal 0.5 ||R||^2 + pen; dual at theta = R / ratio
    pr = 0.0
    du = 0.0
    for i in range(r.shape[0]):
        Ri = r[i] + o
        d = y_c[i] - Ri / ratio
        si = weight(s, i)
        pr += si * Ri * Ri
        du += si * d * d
    return 0.5 * pr + pen - (0.5 * y_norm2 - 0.5 * du)


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def cd_working_set(X, s, m, L, thr, ws, w, r, o, max_epochs, tol_in, anderson_k, r_tmp,
                   gap_tol_in, gap_every, y_c, y_norm2):
    """Cyclic coordinate descent on the features ``ws``, with Anderson extrapolation.

    Minimises ``0.5 ||R||_S^2 + sum_j thr_j |w_j|`` over ``w[ws]`` (the other
    coefficients fixed), updating ``w``, ``r`` in place. Stops after an epoch
    whose largest optimality violation (the distance of ``c_j^T S R`` to
    ``thr_j * sign(w_j)``, measured at each coordinate just before its
    update) is at most ``tol_in``, or (when ``gap_tol_in >= 0``, which needs every
    ``thr[ws] > 0``) after a check, every ``gap_every`` epochs, finds the duality
    gap of the subproblem at most ``gap_tol_in``, or after ``max_epochs`` epochs.

    Every ``anderson_k + 1`` epochs the last iterates on ``ws`` are combined
    by Anderson extrapolation (the coefficients minimising the norm of the
    combined differences, summing to one), and the extrapolated point is kept
    when it lowers the objective (a safeguard: extrapolation is not monotone).

    Returns ``(o, n_epochs, last_violation, n_accepted)``.
    """
    nws = ws.shape[0]
    K = anderson_k
    hist = np.zeros((K + 1, nws)) if K > 0 else np.zeros((1, 1))
    U = np.zeros((K, nws)) if K > 0 else np.zeros((1, 1))
    n_hist = 0
    n_acc = 0
    viol = np.inf
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        viol = 0.0
        for jj in range(nws):
            j = ws[jj]
            Lj = L[j]
            if Lj <= 0.0:
                continue
            g = col_dot(X, j, s, r) + o * m[j]
            wj = w[j]
            t = thr[j]
            if wj == 0.0:
                v = abs(g) - t
            elif wj > 0.0:
                v = abs(g - t)
            else:
                v = abs(g + t)
            viol = max(viol, v)
            z = wj + g / Lj
            tl = t / Lj
            if z > tl:
                new = z - tl
            elif z < -tl:
                new = z + tl
            else:
                new = 0.0
            d = new - wj
            if d != 0.0:
                col_axpy(X, j, -d, r)
                o += d * m[j]
                w[j] = new
        if viol <= tol_in:
            break
        if (gap_tol_in >= 0.0 and epoch % gap_every == 0
                and _subproblem_gap(X, s, m, thr, ws, w, r, o, y_c, y_norm2) <= gap_tol_in):
            break
        if K > 0:
            for jj in range(nws):
                hist[n_hist, jj] = w[ws[jj]]
            n_hist += 1
            if n_hist == K + 1:
                n_hist = 0
                # Gram matrix of the K successive differences
                for a in range(K):
                    for jj in range(nws):
                        U[a, jj] = hist[a + 1, jj] - hist[a, jj]
                G = np.zeros((K, K))
                for a in range(K):
                    for b in range(a, K):
                        acc = 0.0
                        for jj in range(nws):
                            acc += U[a, jj] * U[b, jj]
                        G[a, b] = acc
                        G[b, a] = acc
                zc, ok = _solve_small(G, np.ones(K))
                tot = zc.sum()
                if ok and tot != 0.0 and np.isfinite(tot):
                    c = zc / tot
                    # candidate residual r_tmp = r + X_ws (w - w_acc)
                    r_tmp[:] = r
                    o_acc = o
                    pen_old = 0.0
                    pen_new = 0.0
                    for jj in range(nws):
                        j = ws[jj]
                        acc = 0.0
                        for a in range(K):
                            acc += c[a] * hist[a + 1, jj]
                        dj = w[j] - acc
                        if dj != 0.0:
                            col_axpy(X, j, dj, r_tmp)
                            o_acc -= dj * m[j]
                        pen_old += thr[j] * abs(w[j])
                        pen_new += thr[j] * abs(acc)
                    f_old = _smooth_part(r, o, s) + pen_old
                    f_new = _smooth_part(r_tmp, o_acc, s) + pen_new
                    if f_new < f_old:
                        for jj in range(nws):
                            j = ws[jj]
                            acc = 0.0
                            for a in range(K):
                                acc += c[a] * hist[a + 1, jj]
                            w[j] = acc
                        r[:] = r_tmp
                        o = o_acc
                        n_acc += 1
    return o, epoch, viol, n_acc


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def certify(act, g, corr, thr, w, viol):
    """Optimality violations and the dual rescaling, over the features ``act``.

    ``g[j] = c_j^T S R`` (raw correlations) gives ``viol[j]``, the distance of
    ``g_j`` to ``thr_j * d|w_j|``; ``corr[j]`` (the correlations of the
    projected residual) gives the rescaling ``max(1, max_j |corr_j| / thr_j)``
    over the penalized features. Returns ``(scale, penalty, max_violation)``
    with ``penalty = sum_j thr_j |w_j|`` over ``act``.
    """
    ratio = 1.0
    pen = 0.0
    vmax = 0.0
    for jj in range(act.shape[0]):
        j = act[jj]
        gj = g[j]
        wj = w[j]
        t = thr[j]
        if wj == 0.0:
            v = abs(gj) - t
            viol[j] = max(0.0, v)
        elif wj > 0.0:
            viol[j] = abs(gj - t)
            pen += t * wj
        else:
            viol[j] = abs(gj + t)
            pen -= t * wj
        vmax = max(vmax, viol[j])
        if t > 0.0:
            c = abs(corr[j])
            if c > ratio * t:
                ratio = c / t
    return ratio, pen, vmax


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def correlations_certify(X, s, m, r, o, act, g, thr, w, viol):
    """:func:`correlations` and :func:`certify` in one pass, when no feature is unpenalized.

    Then the dual point is the rescaled residual itself (``corr = g``).
    """
    ratio = 1.0
    pen = 0.0
    vmax = 0.0
    for jj in range(act.shape[0]):
        j = act[jj]
        gj = col_dot(X, j, s, r) + o * m[j]
        g[j] = gj
        wj = w[j]
        t = thr[j]
        if wj == 0.0:
            v = abs(gj) - t
            v = max(0.0, v)
        elif wj > 0.0:
            v = abs(gj - t)
            pen += t * wj
        else:
            v = abs(gj + t)
            pen -= t * wj
        viol[j] = v
        vmax = max(vmax, v)
        c = abs(gj)
        if c > ratio * t:
            ratio = c / t
    return ratio, pen, vmax


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def screen_and_score(act, corr, inv_scale, norm, thr, radius, w, viol, score):
    """Gap-safe screening (``radius >= 0``; none when negative) and working-set scores, in one pass.

    Feature ``j`` is dropped when ``|c_j^T S theta| + ||c_j||_S radius < thr_j``
    (``theta``'s correlations are ``corr * inv_scale``; ``norm`` holds
    ``||c_j||_S``). The kept features get scores ``score[:n_kept]`` (in the
    order of the returned array): ``-inf`` for the support and the
    unpenalized features (always in the working set), else the distance of
    the dual point to their constraint ``(thr_j - |c_j^T S theta|) / ||c_j||_S``
    (celer's priority). Returns ``(kept, dropped_nonzero, n_forced, n_violating)``,
    the last counting the other kept features whose optimality condition fails.
    """
    keep = np.empty(act.shape[0], dtype=act.dtype)
    nk = 0
    nonzero = False
    nf = 0
    nv = 0
    for jj in range(act.shape[0]):
        j = act[jj]
        t = thr[j]
        c = abs(corr[j]) * inv_scale
        if radius >= 0.0 and t > 0.0 and c + norm[j] * radius < t:
            if w[j] != 0.0:
                w[j] = 0.0
                nonzero = True
            continue
        keep[nk] = j
        if w[j] != 0.0 or t == 0.0:
            score[nk] = -np.inf
            nf += 1
        else:
            score[nk] = (t - c) / norm[j]
            if viol[j] > 0.0:
                nv += 1
        nk += 1
    return keep[:nk].copy(), nonzero, nf, nv


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def center_dense(X, s, out):
    """``out = X - m`` column by column (``m`` the weighted means), with its statistics.

    Each column is handled while it sits in cache: its mean and uncentered
    second moment ``Q_j``, the centered copy, a second mean of the copy (the
    first subtraction leaves ``eps |m_j|``) subtracted as well, and
    ``L_j = ||out_j||_S^2``. One read of ``X``, one write of ``out``.
    Returns ``(m, L, Q)`` with ``m`` the total mean removed.
    """
    n = X.shape[0]
    p = X.shape[1]
    m = np.zeros(p)
    L = np.zeros(p)
    Q = np.zeros(p)
    for j in range(p):
        a = 0.0
        q = 0.0
        for i in range(n):
            v = X[i, j]
            a += weight(s, i) * v
            q += weight(s, i) * v * v
        a2 = 0.0
        for i in range(n):
            d = X[i, j] - a
            out[i, j] = d
            a2 += weight(s, i) * out[i, j]
        b = 0.0
        for i in range(n):
            d = out[i, j] - a2
            out[i, j] = d
            b += weight(s, i) * out[i, j] * out[i, j]
        m[j] = a + a2
        L[j] = b
        Q[j] = q
    return m, L, Q
