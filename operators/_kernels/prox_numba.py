"""Numba kernels for the group proximal maps (L21 shrinkage and its dual projection).

The arrays are viewed as ``(k, N)``: ``k`` entries per group (the gradient
components of TV, 2 or 3) and ``N`` groups (pixels). Each kernel computes a
group's norm and rescales the group in a single pass over memory, instead of the
four or five full-array temporaries NumPy needs.

Why these choices: the loops are written for k = 2 and k = 3 explicitly, without
branches (selects) and with NumPy's error model, so that LLVM vectorises them
(square roots and divisions included); under the default Python error model
every division is checked for zero and nothing vectorises. They run serially:
on the shared 2-core machines this project targets, numba's parallel launch cost
(about 10 ms when the other core is busy) dwarfs a memory-bound pass of a few
milliseconds, and TV solvers on stacks parallelise over slices instead.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["project_groups", "shrink_groups"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _project2(x0, x1, w, o0, o1):
    for j in range(x0.shape[0]):
        a, b, r = x0[j], x1[j], w[j]
        s = a * a + b * b
        f = r / math.sqrt(s) if s > r * r else 1.0
        o0[j] = a * f
        o1[j] = b * f


@_jit
def _project3(x0, x1, x2, w, o0, o1, o2):
    for j in range(x0.shape[0]):
        a, b, c, r = x0[j], x1[j], x2[j], w[j]
        s = a * a + b * b + c * c
        f = r / math.sqrt(s) if s > r * r else 1.0
        o0[j] = a * f
        o1[j] = b * f
        o2[j] = c * f


@_jit
def _project_k(x, w, out):
    k, n = x.shape
    for j in range(n):
        s = 0.0
        for c in range(k):
            s += x[c, j] * x[c, j]
        r = w[j]
        f = r / math.sqrt(s) if s > r * r else 1.0
        for c in range(k):
            out[c, j] = x[c, j] * f


@_jit
def _shrink2(x0, x1, thr_, o0, o1):
    for j in range(x0.shape[0]):
        a, b = x0[j], x1[j]
        thr = thr_[j]
        s = a * a + b * b
        f = 1.0 - thr / math.sqrt(s) if s > thr * thr else 0.0
        o0[j] = a * f
        o1[j] = b * f


@_jit
def _shrink3(x0, x1, x2, thr_, o0, o1, o2):
    for j in range(x0.shape[0]):
        a, b, c = x0[j], x1[j], x2[j]
        thr = thr_[j]
        s = a * a + b * b + c * c
        f = 1.0 - thr / math.sqrt(s) if s > thr * thr else 0.0
        o0[j] = a * f
        o1[j] = b * f
        o2[j] = c * f


@_jit
def _shrink_k(x, thr_, out):
    k, n = x.shape
    for j in range(n):
        s = 0.0
        for c in range(k):
            s += x[c, j] * x[c, j]
        thr = thr_[j]
        f = 1.0 - thr / math.sqrt(s) if s > thr * thr else 0.0
        for c in range(k):
            out[c, j] = x[c, j] * f


def _as_groups(x, axis):
    """A ``(k, N)`` view of ``x`` (no copy) or None when the layout does not allow it."""
    if not x.flags.c_contiguous or x.ndim < 2:
        return None
    k = x.shape[axis]
    if axis == 0:
        return x.reshape(k, -1)
    if axis == x.ndim - 1:
        return x.reshape(-1, k).T
    return None


def project_groups(x, axis, w):
    """Project every group (slice along ``axis``) onto the Euclidean ball of radius ``w``.

    Parameters
    ----------
    x : ndarray, float32 or float64
    axis : int
        Normalised group axis; the kernels handle 0 and ``x.ndim - 1``.
    w : ndarray of x's dtype, shape (N,)
        Radii, flattened in the order of the reduced array (nonnegative).

    Returns
    -------
    ndarray, or None when the layout is not supported (the caller falls back).
    """
    view = _as_groups(x, axis)
    if view is None:
        return None
    out = np.empty_like(x)
    ov = _as_groups(out, axis)
    k = view.shape[0]
    if k == 2 and axis == 0:
        _project2(view[0], view[1], w, ov[0], ov[1])
    elif k == 3 and axis == 0:
        _project3(view[0], view[1], view[2], w, ov[0], ov[1], ov[2])
    else:
        _project_k(view, w, ov)
    return out


def shrink_groups(x, axis, thr):
    """Group soft threshold ``x_g max(1 - thr_g / ||x_g||, 0)`` (see project_groups).

    ``thr`` is an array of x's dtype and shape (N,) (``tau_g * w_g``).
    """
    view = _as_groups(x, axis)
    if view is None:
        return None
    out = np.empty_like(x)
    ov = _as_groups(out, axis)
    k = view.shape[0]
    if k == 2 and axis == 0:
        _shrink2(view[0], view[1], thr, ov[0], ov[1])
    elif k == 3 and axis == 0:
        _shrink3(view[0], view[1], view[2], thr, ov[0], ov[1], ov[2])
    else:
        _shrink_k(view, thr, ov)
    return out
