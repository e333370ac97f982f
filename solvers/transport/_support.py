"""The part of a transport problem the solvers run on, and how the NumPy kernels run on it.

A point of zero mass carries no row (or column) of the plan, and its
potential is ``-inf``; the NumPy solvers remove it, which keeps every
iteration finite. The torch paths keep every point and refuse zero masses.
"""

from __future__ import annotations

import contextlib

import numpy as np

from tikhon._core.arrays import is_torch
from tikhon._core.threads import numba_threads

__all__ = ["Support"]


class Support:
    """The rows and columns of positive mass of the marginals ``a``, ``b``.

    Torch marginals must be positive everywhere (``ValueError`` otherwise):
    their support is everything.
    """

    def __init__(self, a, b, where):
        self.shape = (a.shape[0], b.shape[0])
        self.torch = is_torch(a)
        if self.torch:
            if bool((a == 0).any()) or bool((b == 0).any()):
                raise ValueError(
                    f"{where}: torch inputs need strictly positive a and b (drop the zero-mass points)"
                )
            self.rows = self.cols = None
        else:
            self.rows = None if (a > 0).all() else np.flatnonzero(a > 0)
            self.cols = None if (b > 0).all() else np.flatnonzero(b > 0)
        self.full = self.rows is None and self.cols is None

    def _index(self):
        n, m = self.shape
        rows = np.arange(n) if self.rows is None else self.rows
        cols = np.arange(m) if self.cols is None else self.cols
        return rows, cols

    def restrict(self, a, b, C, f0=None, g0=None):
        """``(a, b, C, f0, g0)`` on the support (the same objects when it is everything)."""
        if self.full:
            return a, b, C, f0, g0
        rows, cols = self._index()
        C = np.ascontiguousarray(C[np.ix_(rows, cols)])
        f0 = None if f0 is None else f0[rows].copy()
        g0 = None if g0 is None else g0[cols].copy()
        return a[rows], b[cols], C, f0, g0

    def embed(self, P, f, g):
        """The plan and potentials back at full size: zero rows/columns, ``-inf`` potentials."""
        if self.full:
            return P, f, g
        rows, cols = self._index()
        P_full = np.zeros(self.shape)
        P_full[np.ix_(rows, cols)] = P
        f_full = np.full(self.shape[0], -np.inf)
        f_full[rows] = f
        g_full = np.full(self.shape[1], -np.inf)
        g_full[cols] = g
        return P_full, f_full, g_full

    def kernel_threads(self):
        """Context of the solve: the numba thread policy of the restricted size (torch: none)."""
        if self.torch:
            return contextlib.nullcontext()
        from tikhon.solvers.transport._sinkhorn_kernels import PARALLEL_MIN_SIZE

        rows, cols = self._index()
        return numba_threads(1 if rows.size * cols.size < PARALLEL_MIN_SIZE else None)
