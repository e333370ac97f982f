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
(one product ``gamma * k`` with ``k`` an exact float, one sum, no fused
multiply-add, no reassociation), and the weights derived from it agree to one
rounding (the forward weighs pixels ``floor(p)`` and ``floor(p) + 1`` by ``1 -
f`` and ``f``, the adjoint uses the hat ``max(0, 1 - |p - q|)``), so in
float32 the adjoint is the transpose of the float32 forward map up to
rounding only; with positions computed differently, the weights would differ
by about one ulp of ``p`` (6e-5 pixel at p ~ 500) and the dot test would fail
at 1e-4.

Both kernels are line-major: the inner loop runs along one line of the
working image and one sinogram row, both contiguous and L1 resident, so its
gathers are nearly unit-stride and its stores contiguous.

- Forward: per angle (each thread owns whole sinogram rows), for each block
  of image lines, ``out_row[k] += sum_m interp(work[m], c[a, m] + gamma * k)``
  over the bins whose samples can fall inside the block (closed-form bounds
  with a margin; extra bins read the padding's zeros).
- Adjoint: the exact transpose written as a gather over pixels, per output
  line (each thread owns whole lines), for each angle: pixel ``q`` receives
  the bins ``k`` whose sample ``p_k`` has ``floor(p_k)`` in ``{q - 1, q}``,
  with the weight the forward pass gave it.

The loops vectorise (with gathers) only if LLVM knows that the arrays read do
not alias the array written: numba marks a parallel loop's arguments
``noalias`` only when its body creates no array views, so the kernels take
both families stacked in 3-D arrays and index them in place (no ``x[i]``
rows, no IR-inlined helpers, whose argument copies count as aliases), and
index with unsigned integers: numba's negative-index wraparound makes the
store address a select, which LLVM's dependence analysis gives up on. The working
arrays are zero padded and every index is clamped, so nothing reads out of
bounds, whatever the tables.

The kernels are dtype generic: float32 inputs with float32 tables run in
float32 arithmetic (the fast path), float64 in float64. In float32 the image
and sinogram may come as "pairs": uint64 arrays whose entry ``j`` packs
entries ``j`` (low half) and ``j + 1`` (high half) of the padded line, so that
one 64-bit gather fetches both values an interpolation needs (little-endian
only; the caller checks).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# The image lines carry IMG_PAD zeros on each side, the sinogram rows SINO_PAD
# plus twice the number of extra candidate bins (see adjoint).
IMG_PAD = 2
SINO_PAD = 2

# Bin ranges of the forward are rounded up to a multiple of this (the vector
# width of the float32 pairs loop), which spares the scalar remainder loop.
_VEC = 8

# no "contract": a fused multiply-add would round p differently in the two
# directions; no "reassoc" either: it lets LLVM regroup (c + gamma k) - q in
# the adjoint and round p differently (the dot test then loses two digits),
# and the inner loops are not reductions, so they vectorise without it
_FASTMATH = {"nsz"}


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


def _interp(work, i, m, cm, gk, length32):
    """Linear interpolation in padded line ``work[i, m]`` at ``p = cm + gk``."""


def _combine(arr, i, m, j, w1, w2):
    """``w1 * arr[i, m, j] + w2 * arr[i, m, j + 1]`` for plain or packed-pair lines."""


def _single(arr, i, m, j):
    """Entry ``j`` of line ``arr[i, m]`` (plain or packed pairs)."""


# Overloads rather than IR-inlined functions: a call passes the arrays without
# creating an alias in numba's analysis, and LLVM inlines the small body.
_OPTS = {"fastmath": _FASTMATH, "boundscheck": False}


@overload(_interp, jit_options=_OPTS)
def _interp_impl(work, i, m, cm, gk, length32):
    if work.dtype == types.uint64:
        # unpacked in place: LLVM splits a 64-bit load whose halves leave
        # through a returned tuple into two slower 32-bit gathers
        def impl(work, i, m, cm, gk, length32):
            p = cm + gk
            fl = np.floor(p)
            f = p - fl
            v = work[i, m, np.uint32(min(max(np.int32(fl), np.int32(-IMG_PAD)), length32)
                                     + np.int32(IMG_PAD))]
            left = _low_f32(v)
            return left + f * (_high_f32(v) - left)
    else:
        def impl(work, i, m, cm, gk, length32):
            p = cm + gk
            fl = np.floor(p)
            f = p - fl
            j = np.uint32(min(max(np.int32(fl), np.int32(-IMG_PAD)), length32) + np.int32(IMG_PAD))
            left = work[i, m, j]
            return left + f * (work[i, m, j + np.uint32(1)] - left)
    return impl


@overload(_combine, jit_options=_OPTS)
def _combine_impl(arr, i, m, j, w1, w2):
    if arr.dtype == types.uint64:
        def impl(arr, i, m, j, w1, w2):
            v = arr[i, m, j]
            return w1 * _low_f32(v) + w2 * _high_f32(v)
    else:
        def impl(arr, i, m, j, w1, w2):
            return w1 * arr[i, m, j] + w2 * arr[i, m, j + np.uint32(1)]
    return impl


@overload(_single, jit_options=_OPTS)
def _single_impl(arr, i, m, j):
    if arr.dtype == types.uint64:
        def impl(arr, i, m, j):
            return _low_f32(arr[i, m, j])
    else:
        def impl(arr, i, m, j):
            return arr[i, m, j]
    return impl


@numba.njit(cache=True)
def _bins(c0, c1, inv_g, lo, hi, n_det):
    """Bins ``[k0, k1)`` whose samples on lines with offsets ``c0``, ``c1`` can lie in ``[lo, hi]``.

    Computed in float64 from the working-dtype offsets; the margins the
    caller puts in ``[lo, hi]`` absorb the rounding of the sample positions.
    The range is rounded up to a multiple of ``_VEC`` bins inside ``[0,
    n_det)`` when possible (the extra bins read zeros).
    """
    t0 = min((lo - c0) * inv_g, (lo - c1) * inv_g, (hi - c0) * inv_g, (hi - c1) * inv_g)
    t1 = max((lo - c0) * inv_g, (lo - c1) * inv_g, (hi - c0) * inv_g, (hi - c1) * inv_g)
    k0 = min(max(np.floor(t0), 0.0), n_det)
    k1 = min(max(np.ceil(t1) + 1.0, k0), n_det)
    span = np.ceil((k1 - k0) / _VEC) * _VEC
    if span <= n_det:
        k1 = k0 + span
        if k1 > n_det:
            k1 = np.float64(n_det)
            k0 = k1 - span
    return np.uint64(k0), np.uint64(k1)


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH, boundscheck=False)
def forward(work, c, slot, lines, lengths, gamma, w, ks, sino):
    """Joseph forward projection into ``sino`` (n_angles, n_det), overwritten.

    ``work[i]`` (n_slots, n_lines_max, length_max + 2 IMG_PAD) holds the
    padded lines of family slot ``i`` (the image, or its transpose for the
    column family), plain or as float32 pairs; ``slot[a]`` is angle ``a``'s
    slot, with ``lines[i]`` lines of ``lengths[i]`` pixels. ``c`` (n_angles,
    n_lines_max) holds the line offsets, ``gamma`` and ``w`` the per-angle
    steps and weights, ``ks`` is ``arange`` in the working dtype. Lines are
    taken four at a time, which shares the bin loop's overhead and its load
    and store of the sinogram row.
    """
    n_det = sino.shape[1]
    for a in numba.prange(sino.shape[0]):
        i = slot[a]
        n_lines = lines[i]
        length = lengths[i]
        length32 = np.int32(length)
        g = gamma[a]
        zero = g - g
        for k in range(n_det):
            sino[a, k] = zero
        inv_g = 1.0 / np.float64(g)
        # samples in [-3, length + 2]: a margin of two pixels around the
        # nonzero ones, p in (-1, length), for the rounding of p
        lo, hi = -3.0, length + 2.0
        for mb in range(n_lines // 4):
            m = 4 * mb
            c0, c1, c2, c3 = c[a, m], c[a, m + 1], c[a, m + 2], c[a, m + 3]
            # c is affine in m: the outer lines bound the block
            k0, k1 = _bins(np.float64(c0), np.float64(c3), inv_g, lo, hi, n_det)
            for k in range(k0, k1):
                gk = g * ks[k]
                sino[a, k] += ((_interp(work, i, m, c0, gk, length32)
                                + _interp(work, i, m + 1, c1, gk, length32))
                               + (_interp(work, i, m + 2, c2, gk, length32)
                                  + _interp(work, i, m + 3, c3, gk, length32)))
        for m in range(4 * (n_lines // 4), n_lines):
            cm = c[a, m]
            k0, k1 = _bins(np.float64(cm), np.float64(cm), inv_g, lo, hi, n_det)
            for k in range(k0, k1):
                sino[a, k] += _interp(work, i, m, cm, g * ks[k], length32)
        wa = w[a]
        for k in range(n_det):
            sino[a, k] *= wa


@numba.njit(cache=True, fastmath=_FASTMATH, boundscheck=False)
def _weight(cs, g, kf, qf, one):
    """The forward pass's weight of bin ``kf`` on pixel ``qf``: the hat ``max(0, 1 - |p - q|)``.

    ``p`` is formed as the forward pass forms it. The forward pass weighs
    pixel ``floor(p)`` by ``1 - f`` and the next by ``f`` (``f = p -
    floor(p)``); the hat equals those weights (the differences of nearby
    floats are exact, but for ``1 - (q - p)``, rounded once) and is exactly
    0 off them.
    """
    p = cs + g * kf
    return max(one - abs(p - qf), one - one)


@numba.njit(cache=True, fastmath=_FASTMATH, boundscheck=False)
def _two_bins(sino, i, s, cs, g, ig, qf, lo, hi, pad, one):
    """Pixel ``qf``'s share of angle ``s`` when ``|gamma| >= 1``: bins ``floor(kappa) + {0, 1}``."""
    kf = np.floor((qf - cs) * ig)
    j = np.uint32(min(max(kf, lo), hi) + pad)
    return _combine(sino, i, s, j, _weight(cs, g, kf, qf, one), _weight(cs, g, kf + one, qf, one))


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH, boundscheck=False)
def adjoint(sino, c, gamma, inv_gamma, n_sel, lines, lengths, lo, hi, pad, offsets, qs, one, out):
    """Transpose of :func:`forward`, a gather over pixels, into ``out``.

    Family slot ``i`` (0: row angles, 1: column angles) has ``n_sel[i]``
    angles, its sinogram rows, multiplied by the angles' weights ``w`` and
    zero padded by ``pad`` bins on each side, in ``sino[i]`` (2, n_sel_max,
    n_det + 2 pad; plain or float32 pairs), its line offsets in ``c[i]``
    (n_sel_max, n_lines_max) and its per-angle tables ``gamma[i]`` and
    ``inv_gamma[i]``. ``out[i]`` receives its
    ``lines[i]`` lines of ``lengths[i]`` pixels (the caller adds the column
    family's transpose). Pixel ``q`` takes the bins ``floor(kappa) - n_extra,
    ..., floor(kappa) + 1 + n_extra`` around its position ``kappa`` (two bins
    when ``|gamma| >= 1``, i.e. a detector spacing of at least one pixel);
    ``offsets`` is ``arange(-n_extra, n_extra + 2)``, and ``[lo, hi] = [-pad,
    n_det + pad - n_cand]`` the range the first candidate bin is clamped to:
    with ``pad >= n_cand = 2 n_extra + 2`` a clamped first bin means that all
    true candidates lie off the detector and all bins read are padding zeros.
    Everything is in the working dtype; the bin index is clamped in floating
    point (exact) and converted once to uint32. One parallel region over the
    lines of both families.
    """
    n_r = lines[0]
    zero = one - one
    n_cand = offsets.shape[0]
    for t in numba.prange(lines[0] + lines[1]):
        i = 0 if t < n_r else 1
        ln = t - i * n_r
        length = lengths[i]
        for q in range(length):
            out[i, ln, q] = zero
        n_s = n_sel[i]
        if n_cand == 2:
            # two angles per pass over the line: half the loads and stores
            # of the output line
            for sb in range(n_s // 2):
                s = 2 * sb
                c0, c1 = c[i, s, ln], c[i, s + 1, ln]
                g0, g1 = gamma[i, s], gamma[i, s + 1]
                ig0, ig1 = inv_gamma[i, s], inv_gamma[i, s + 1]
                for q in range(length):
                    qf = qs[q]
                    out[i, ln, q] += (_two_bins(sino, i, s, c0, g0, ig0, qf, lo, hi, pad, one)
                                      + _two_bins(sino, i, s + 1, c1, g1, ig1, qf, lo, hi, pad,
                                                  one))
            if n_s % 2:
                s = n_s - 1
                cs, g, ig = c[i, s, ln], gamma[i, s], inv_gamma[i, s]
                for q in range(length):
                    out[i, ln, q] += _two_bins(sino, i, s, cs, g, ig, qs[q], lo, hi, pad, one)
        else:
            for s in range(n_s):
                cs, g, ig = c[i, s, ln], gamma[i, s], inv_gamma[i, s]
                for q in range(length):
                    qf = qs[q]
                    kf = np.floor((qf - cs) * ig)
                    i1 = np.uint32(min(max(kf + offsets[0], lo), hi) + pad)
                    part = zero
                    for e in range(n_cand):
                        part += (_weight(cs, g, kf + offsets[e], qf, one)
                                 * _single(sino, i, s, i1 + np.uint32(e)))
                    out[i, ln, q] += part
