"""Numba kernels of the 2-D parallel-beam Radon transform (Joseph's method).

Every ray is sampled once per image line (row or column) it crosses, with
linear interpolation inside the line. Rays closer to vertical (``|cos| >=
|sin|``) are sampled row by row on the image; the others column by column on
a transposed copy, so that the two pixels of a sample are adjacent in memory.
For an angle ``a`` and a line ``m`` of the working image, the sample position
of detector bin ``k`` inside the line is ``p = c[a, m] + gamma[a] * k`` (in
pixels, ``c[a, m] = alpha[a] + beta[a] * m`` is a precomputed table), and the
ray's path length per line is ``w[a]``.

Both directions evaluate ``p`` with the very same floating-point operations
(one product, one sum, no fused multiply-add) and derive the interpolation
weights from ``floor(p)`` the same way, so in float32 the adjoint is the
transpose of the float32 forward map up to summation rounding only; with
positions computed differently, the weights would differ by about one ulp of
``p`` (6e-5 pixel at p ~ 500) and the dot test would fail at 1e-4.

Forward: for each bin, a reduction over the lines the ray crosses (gathering
two pixels per line), split by angle: each thread owns whole sinogram rows.
Adjoint: the exact transpose written as a gather over pixels, each thread
owning whole image lines: pixel ``q`` of line ``m`` receives, from each
angle, the bins ``k`` whose sample ``p_k`` has ``floor(p_k)`` in ``{q - 1,
q}``, with the weight the forward pass gave it (``1 - frac(p_k)`` or
``frac(p_k)``). Both inner loops are reductions without stores, which LLVM
vectorises with gathers. The working arrays are zero padded so that clamped
indices always read zeros; nothing indexes out of bounds, whatever the tables.

The kernels are dtype generic: float32 inputs with float32 tables run in
float32 arithmetic (the fast path), float64 in float64.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# The image lines carry IMG_PAD zeros on each side, the sinogram rows SINO_PAD
# plus twice the number of extra candidate bins (see adjoint_family).
IMG_PAD = 2
SINO_PAD = 2

# no "contract": a fused multiply-add would round p differently in the two
# directions; "reassoc" is needed to vectorise the reductions
_FASTMATH = {"nsz", "reassoc"}


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _forward_angle(work, ca, al, be, g, wa, ks, out_row):
    """One sinogram row: ``out_row[k] = wa * sum_m interp(work[m], ca[m] + g * k)``."""
    n_det = out_row.shape[0]
    n_lines = work.shape[0]
    length = work.shape[1] - 2 * IMG_PAD
    zero = wa - wa
    for k in range(n_det):
        gk = g * ks[k]
        base = al + gk
        # lines whose sample lies in (-1, length), with two lines of margin
        # for rounding: extra lines read the padding's zeros
        if abs(be) > 1e-9:
            lo = (-1.0 - base) / be
            hi = (length - base) / be
            if lo > hi:
                lo, hi = hi, lo
            m0 = max(0, int(np.floor(max(lo, -3.0))) - 2)
            m1 = min(n_lines, int(np.ceil(min(hi, n_lines + 3.0))) + 3)
        elif -2.0 < base < length + 1.0:
            m0, m1 = 0, n_lines
        else:
            m0, m1 = 0, 0
        # a reduction with no store in the loop, so that it vectorises
        acc = zero
        for m in range(m0, m1):
            p = ca[m] + gk
            fl = np.floor(p)
            f = p - fl
            j = min(max(int(fl), -IMG_PAD), length) + IMG_PAD
            left = work[m, j]
            acc += left + f * (work[m, j + 1] - left)
        out_row[k] = wa * acc


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def forward(work_r, c_r, work_c, c_c, family, index, alpha, beta, gamma, w, ks, sino):
    """Joseph forward projection into ``sino`` (n_angles, n_det), overwritten.

    ``work_r`` is the image and ``work_c`` its transpose, each with IMG_PAD
    zero columns on both sides; angle ``a`` belongs to the row family
    (``family[a]`` True) or the column family, and ``c_r[index[a]]`` or
    ``c_c[index[a]]`` holds its line offsets. ``alpha`` and ``beta``
    (float64) only bound the lines each ray crosses; ``ks`` is ``arange`` in
    the working dtype. One parallel region, split by angle: each thread owns
    whole sinogram rows.
    """
    for a in numba.prange(sino.shape[0]):
        if family[a]:
            _forward_angle(work_r, c_r[index[a]], alpha[a], beta[a], gamma[a], w[a], ks, sino[a])
        else:
            _forward_angle(work_c, c_c[index[a]], alpha[a], beta[a], gamma[a], w[a], ks, sino[a])


@intrinsic
def _low_f32(typingctx, v):
    """The float32 stored in the low 32 bits of a uint64 (little-endian first)."""
    sig = types.float32(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return sig, codegen


@intrinsic
def _high_f32(typingctx, v):
    """The float32 stored in the high 32 bits of a uint64."""
    sig = types.float32(types.uint64)

    def codegen(context, builder, signature, args):
        high = builder.lshr(args[0], ir.Constant(ir.IntType(64), 32))
        return builder.bitcast(builder.trunc(high, ir.IntType(32)), ir.FloatType())

    return sig, codegen


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _forward_angle_pairs(pairs, ca, al, be, g, wa, ks, out_row):
    """:func:`_forward_angle` on float32 pixel pairs: one 64-bit gather per sample."""
    n_det = out_row.shape[0]
    n_lines = pairs.shape[0]
    length = pairs.shape[1] - 2 * IMG_PAD
    zero = wa - wa
    for k in range(n_det):
        gk = g * ks[k]
        base = al + gk
        if abs(be) > 1e-9:
            lo = (-1.0 - base) / be
            hi = (length - base) / be
            if lo > hi:
                lo, hi = hi, lo
            m0 = max(0, int(np.floor(max(lo, -3.0))) - 2)
            m1 = min(n_lines, int(np.ceil(min(hi, n_lines + 3.0))) + 3)
        elif -2.0 < base < length + 1.0:
            m0, m1 = 0, n_lines
        else:
            m0, m1 = 0, 0
        acc = zero
        for m in range(m0, m1):
            p = ca[m] + gk
            fl = np.floor(p)
            f = p - fl
            v = pairs[m, min(max(int(fl), -IMG_PAD), length) + IMG_PAD]
            left = _low_f32(v)
            acc += left + f * (_high_f32(v) - left)
        out_row[k] = wa * acc


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def forward_pairs(pairs_r, c_r, pairs_c, c_c, family, index, alpha, beta, gamma, w, ks, sino):
    """:func:`forward` in float32 on pixel pairs.

    ``pairs_*[m, j]`` packs the padded working image's pixels ``j`` (low
    half) and ``j + 1`` (high half) of line ``m`` into one uint64, so each
    sample costs one 64-bit gather instead of two 32-bit ones (about 15%
    faster here). Little-endian only; the caller checks.
    """
    for a in numba.prange(sino.shape[0]):
        if family[a]:
            _forward_angle_pairs(pairs_r, c_r[index[a]], alpha[a], beta[a], gamma[a], w[a], ks,
                                 sino[a])
        else:
            _forward_angle_pairs(pairs_c, c_c[index[a]], alpha[a], beta[a], gamma[a], w[a], ks,
                                 sino[a])


@numba.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _adjoint_line(sino_flat, row_offset, lo, hi, cm, gamma, inv_gamma, w, offsets, qs, one,
                  out_row):
    """One line of the working image: the transpose of :func:`_forward_angle`."""
    length = out_row.shape[0]
    n_sel = cm.shape[0]
    zero = one - one
    n_cand = offsets.shape[0]
    for q in range(length):
        qf = qs[q]
        qm = qf - one
        acc = zero
        if n_cand == 2:
            for s in range(n_sel):
                cs = cm[s]
                g = gamma[s]
                kf = np.floor((qf - cs) * inv_gamma[s])
                # the forward pass's weights, recomputed as it does
                p1 = cs + g * kf
                fl1 = np.floor(p1)
                f1 = p1 - fl1
                w1 = one - f1 if fl1 == qf else (f1 if fl1 == qm else zero)
                p2 = cs + g * (kf + one)
                fl2 = np.floor(p2)
                f2 = p2 - fl2
                w2 = one - f2 if fl2 == qf else (f2 if fl2 == qm else zero)
                i1 = np.uint32(min(max(kf, lo), hi) + row_offset[s])
                acc += w[s] * (w1 * sino_flat[i1] + w2 * sino_flat[i1 + np.uint32(1)])
        else:
            for s in range(n_sel):
                cs = cm[s]
                g = gamma[s]
                kf = np.floor((qf - cs) * inv_gamma[s])
                i1 = np.uint32(min(max(kf + offsets[0], lo), hi) + row_offset[s])
                part = zero
                for e in range(n_cand):
                    p = cs + g * (kf + offsets[e])
                    fl = np.floor(p)
                    f = p - fl
                    we = one - f if fl == qf else (f if fl == qm else zero)
                    part += we * sino_flat[i1 + np.uint32(e)]
                acc += w[s] * part
        out_row[q] = acc


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def adjoint(sino_r, off_r, ct_r, gamma_r, inv_gamma_r, w_r, out_r,
            sino_c, off_c, ct_c, gamma_c, inv_gamma_c, w_c, out_c,
            lo, hi, offsets, qs, one):
    """Transpose of :func:`forward`, a gather over pixels, into ``out_r`` and ``out_c``.

    ``out_r`` (n_rows, n_cols) receives the row family, ``out_c`` (n_cols,
    n_rows) the column family (the caller adds its transpose). Per family:
    its sinogram rows, zero padded by ``pad`` bins on each side and raveled
    (``sino_*``), the flat index of bin 0 of each row (``off_*``), the
    transposed line offsets ``ct_*`` (n_lines, n_sel) and the per-angle
    tables. ``[lo, hi] = [-pad, n_det + pad - n_cand]`` is the range the first
    candidate bin is clamped to; with ``pad >= n_cand = 2 n_extra + 2`` a
    clamped first bin means that all true candidates lie off the detector and
    all bins read are padding zeros. Pixel ``q`` takes the bins
    ``floor(kappa) - n_extra, ..., floor(kappa) + 1 + n_extra`` around its
    position ``kappa`` (two bins when ``|gamma| >= 1``, i.e. a detector
    spacing of at least one pixel); ``offsets`` is ``arange(-n_extra, n_extra
    + 2)``, everything in the working dtype.

    The flat index is formed in floating point (exact: the caller keeps the
    flat sizes below 2**24 in float32) and converted once to uint32, which
    spares the negative-index wraparound code in the vector loop. One
    parallel region over the lines of both families: each thread owns whole
    output lines.
    """
    n_r = out_r.shape[0]
    for t in numba.prange(n_r + out_c.shape[0]):
        if t < n_r:
            _adjoint_line(sino_r, off_r, lo, hi, ct_r[t], gamma_r, inv_gamma_r, w_r, offsets,
                          qs, one, out_r[t])
        else:
            _adjoint_line(sino_c, off_c, lo, hi, ct_c[t - n_r], gamma_c, inv_gamma_c, w_c,
                          offsets, qs, one, out_c[t - n_r])
