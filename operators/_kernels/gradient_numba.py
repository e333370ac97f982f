"""Numba kernels of the forward-difference gradient (Neumann boundary) and its adjoint.

Layout: ``x`` of shape ``(n0, n1)`` or ``(n0, n1, n2)``; the gradient ``g`` has
shape ``(ndim, *x.shape)`` with ``g[a]`` the difference along axis ``a`` whose
last entry along that axis is 0. The adjoint is minus the divergence.

Each kernel writes one output row (2-D) or slab (3-D) per iteration of its outer
loop and reads only the input, so the ``prange`` versions are free of write
races (the adjoint gathers from neighbouring rows instead of scattering into
them). Inner loops run along the contiguous last axis with the boundary entries
peeled off and no branches, which lets LLVM vectorise them. The scalars ``ih*`` (inverse
spacings) must have the arrays' dtype so float32 stays float32.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = [
    "grad2d", "grad2d_parallel", "grad2d_adjoint", "grad2d_adjoint_parallel",
    "grad3d", "grad3d_parallel", "grad3d_adjoint", "grad3d_adjoint_parallel",
]


# -- 2-D ----------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _grad2d_row(x, out, i, ih0, ih1):
    n0, n1 = x.shape
    if i < n0 - 1:
        for j in range(n1):
            out[0, i, j] = (x[i + 1, j] - x[i, j]) * ih0
    else:
        for j in range(n1):
            out[0, i, j] = 0
    for j in range(n1 - 1):
        out[1, i, j] = (x[i, j + 1] - x[i, j]) * ih1
    if n1 > 0:
        out[1, i, n1 - 1] = 0


@numba.njit(cache=True, inline="always")
def _div_row(outrow, p, prev0, cur0, ih0, prev1, cur1, ih1, ih):
    """One row of minus the divergence, in a single fused pass.

    ``p`` is the last-axis difference row; ``prev*``/``cur*`` are the
    outer-axis difference rows at indices ``i - 1`` and ``i``, already replaced
    by a zero row where the boundary says they do not contribute (so the inner
    loop has no branches and never multiplies the unused last differences).
    """
    n = outrow.shape[0]
    if n == 1:
        outrow[0] = (prev0[0] - cur0[0]) * ih0 + (prev1[0] - cur1[0]) * ih1
        return
    outrow[0] = (prev0[0] - cur0[0]) * ih0 + (prev1[0] - cur1[0]) * ih1 - p[0] * ih
    for k in range(1, n - 1):
        outrow[k] = (prev0[k] - cur0[k]) * ih0 + (prev1[k] - cur1[k]) * ih1 + (p[k - 1] - p[k]) * ih
    outrow[n - 1] = (
        (prev0[n - 1] - cur0[n - 1]) * ih0 + (prev1[n - 1] - cur1[n - 1]) * ih1 + p[n - 2] * ih
    )


@numba.njit(cache=True, inline="always")
def _grad2d_adjoint_row(g, out, zero, i, ih0, ih1):
    n0, n1 = out.shape
    if 0 < i < n0 - 1 and n1 > 1:
        # interior row: index g directly (row views cost more than short rows)
        out[i, 0] = (g[0, i - 1, 0] - g[0, i, 0]) * ih0 - g[1, i, 0] * ih1
        for j in range(1, n1 - 1):
            out[i, j] = (g[0, i - 1, j] - g[0, i, j]) * ih0 + (g[1, i, j - 1] - g[1, i, j]) * ih1
        out[i, n1 - 1] = (g[0, i - 1, n1 - 1] - g[0, i, n1 - 1]) * ih0 + g[1, i, n1 - 2] * ih1
    else:
        prev = g[0, i - 1] if i > 0 else zero
        cur = g[0, i] if i < n0 - 1 else zero
        _div_row(out[i], g[1, i], prev, cur, ih0, zero, zero, ih1, ih1)


@numba.njit(cache=True)
def grad2d(x, out, ih0, ih1):
    """Forward differences of a 2-D array into ``out`` (shape ``(2, n0, n1)``)."""
    for i in range(x.shape[0]):
        _grad2d_row(x, out, i, ih0, ih1)
    return out


@numba.njit(cache=True, parallel=True)
def grad2d_parallel(x, out, ih0, ih1):
    """:func:`grad2d`, rows in parallel."""
    for i in prange(x.shape[0]):
        _grad2d_row(x, out, i, ih0, ih1)
    return out


@numba.njit(cache=True)
def grad2d_adjoint(g, out, ih0, ih1):
    """Minus the divergence of ``g`` (shape ``(2, n0, n1)``) into ``out``."""
    zero = np.zeros(out.shape[1], out.dtype)
    for i in range(out.shape[0]):
        _grad2d_adjoint_row(g, out, zero, i, ih0, ih1)
    return out


@numba.njit(cache=True, parallel=True)
def grad2d_adjoint_parallel(g, out, ih0, ih1):
    """:func:`grad2d_adjoint`, rows in parallel."""
    zero = np.zeros(out.shape[1], out.dtype)
    for i in prange(out.shape[0]):
        _grad2d_adjoint_row(g, out, zero, i, ih0, ih1)
    return out


# -- 3-D ----------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _grad3d_slab(x, out, i, ih0, ih1, ih2):
    n0, n1, n2 = x.shape
    for j in range(n1):
        if i < n0 - 1:
            for k in range(n2):
                out[0, i, j, k] = (x[i + 1, j, k] - x[i, j, k]) * ih0
        else:
            for k in range(n2):
                out[0, i, j, k] = 0
        if j < n1 - 1:
            for k in range(n2):
                out[1, i, j, k] = (x[i, j + 1, k] - x[i, j, k]) * ih1
        else:
            for k in range(n2):
                out[1, i, j, k] = 0
        for k in range(n2 - 1):
            out[2, i, j, k] = (x[i, j, k + 1] - x[i, j, k]) * ih2
        if n2 > 0:
            out[2, i, j, n2 - 1] = 0


@numba.njit(cache=True, inline="always")
def _grad3d_adjoint_slab(g, out, zero, i, ih0, ih1, ih2):
    n0, n1, n2 = out.shape
    for j in range(n1):
        if 0 < i < n0 - 1 and 0 < j < n1 - 1 and n2 > 1:
            # interior row: every neighbour exists, index g directly (creating
            # row views per row costs more than the row itself on small n2)
            out[i, j, 0] = ((g[0, i - 1, j, 0] - g[0, i, j, 0]) * ih0
                            + (g[1, i, j - 1, 0] - g[1, i, j, 0]) * ih1
                            - g[2, i, j, 0] * ih2)
            for k in range(1, n2 - 1):
                out[i, j, k] = ((g[0, i - 1, j, k] - g[0, i, j, k]) * ih0
                                + (g[1, i, j - 1, k] - g[1, i, j, k]) * ih1
                                + (g[2, i, j, k - 1] - g[2, i, j, k]) * ih2)
            out[i, j, n2 - 1] = ((g[0, i - 1, j, n2 - 1] - g[0, i, j, n2 - 1]) * ih0
                                 + (g[1, i, j - 1, n2 - 1] - g[1, i, j, n2 - 1]) * ih1
                                 + g[2, i, j, n2 - 2] * ih2)
        else:
            prev0 = g[0, i - 1, j] if i > 0 else zero
            cur0 = g[0, i, j] if i < n0 - 1 else zero
            prev1 = g[1, i, j - 1] if j > 0 else zero
            cur1 = g[1, i, j] if j < n1 - 1 else zero
            _div_row(out[i, j], g[2, i, j], prev0, cur0, ih0, prev1, cur1, ih1, ih2)


@numba.njit(cache=True)
def grad3d(x, out, ih0, ih1, ih2):
    """Forward differences of a 3-D array into ``out`` (shape ``(3, n0, n1, n2)``)."""
    for i in range(x.shape[0]):
        _grad3d_slab(x, out, i, ih0, ih1, ih2)
    return out


@numba.njit(cache=True, parallel=True)
def grad3d_parallel(x, out, ih0, ih1, ih2):
    """:func:`grad3d`, slabs along axis 0 in parallel."""
    for i in prange(x.shape[0]):
        _grad3d_slab(x, out, i, ih0, ih1, ih2)
    return out


@numba.njit(cache=True)
def grad3d_adjoint(g, out, ih0, ih1, ih2):
    """Minus the divergence of ``g`` (shape ``(3, n0, n1, n2)``) into ``out``."""
    zero = np.zeros(out.shape[2], out.dtype)
    for i in range(out.shape[0]):
        _grad3d_adjoint_slab(g, out, zero, i, ih0, ih1, ih2)
    return out


@numba.njit(cache=True, parallel=True)
def grad3d_adjoint_parallel(g, out, ih0, ih1, ih2):
    """:func:`grad3d_adjoint`, slabs along axis 0 in parallel."""
    zero = np.zeros(out.shape[2], out.dtype)
    for i in prange(out.shape[0]):
        _grad3d_adjoint_slab(g, out, zero, i, ih0, ih1, ih2)
    return out
