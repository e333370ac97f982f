"""The class OT problem laid out for its kernels: NumPy (numba) or torch (whole-tensor ops).

Both layouts sort the sources by class, so that every group ``P[I_c, j]`` is
contiguous, and give the solvers and the certificate one interface:

``initial_plan(x0)``, ``set_step(t)``, ``round(X)`` (onto ``U(a, b)``), ``objective(P) ->
(cost, reg)``, ``feasible_g(f, g, lam)``, ``dual(f, g)``, ``keep(f)`` (a
potential as the certificate stores it), ``host(*scalars)`` (Python floats;
one device synchronisation for all of them), ``dr_step(state, t, tlam,
norms)``, ``to_user(P, f, g)`` (the caller's order, array type and dtype) and
``context()`` (torch: no autograd graph).

NumPy plans are *target-major* ``(m, n)`` (the numba kernels' layout); torch
plans are *source-major* ``(n, m)``, where group sums are row ``index_add_``
reductions. The torch certificate is computed in float64 whatever the input
dtype.
"""

from __future__ import annotations

import contextlib

import numpy as np

from tikhon._core.arrays import torch_module

__all__ = ["NumpyLayout", "TorchLayout", "round_to_polytope"]


def round_to_polytope(X, a_s, b):
    """Altschuler-Weed-Rigollet rounding: the nearest-in-l1 feasible plan built
    from a non-negative ``X`` (target-major, shape (m, n)); exact marginals."""
    src = X.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.where(src > a_s, a_s / src, 1.0)
    Xr = X * fx[None, :]
    tgt = Xr.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fy = np.where(tgt > b, b / tgt, 1.0)
    Xr *= fy[:, None]
    err_a = a_s - Xr.sum(axis=0)
    err_b = b - Xr.sum(axis=1)
    tot = err_a.sum()
    if tot > 0:
        # broadcasting, not np.outer: BLAS threads oversubscribe a shared machine
        Xr += np.maximum(err_b, 0.0)[:, None] * (np.maximum(err_a, 0.0) / tot)[None, :]
    return Xr


class NumpyLayout:
    """float64 NumPy data for the numba kernels of :mod:`._class_ot_kernels`."""

    def __init__(self, a, b, C, inverse):
        from tikhon.solvers.transport import _class_ot_kernels as kern

        self.kern = kern
        self.n, self.m = C.shape
        self.order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.a = np.ascontiguousarray(a[self.order])
        self.b = b
        self.Ct = np.ascontiguousarray(C[self.order].T)
        self.mass = float(a.sum())
        self.cost_scale = float(np.mean(np.abs(self.Ct)))
        self._g = np.empty(self.m)

    def context(self):
        return contextlib.nullcontext()

    def zeros(self, k):
        return np.zeros(k)

    def initial_plan(self, x0):
        if x0 is None:
            return self.b[:, None] * self.a[None, :]
        return np.ascontiguousarray(np.asarray(x0, dtype=np.float64)[self.order].T)

    def set_step(self, t):
        """Nothing to precompute: the numba kernel takes the step with each call."""

    def round(self, X):
        return round_to_polytope(X, self.a, self.b)

    def objective(self, P):
        return self.kern.plan_objective(P, self.Ct, self.starts)

    def feasible_g(self, f, g, lam):
        self.kern.feasible_g(self.Ct, self.starts, f, g, lam, self._g)
        return self._g.copy()

    def dual(self, f, g):
        return float(f @ self.a + g @ self.b)

    def keep(self, f):
        return f.copy()

    def host(self, *values):
        return [float(v) for v in values]

    def dr_step(self, s, t, tlam, norms):
        if s.X is None:
            s.X, s.Y = np.empty_like(s.Z), np.empty_like(s.Z)
        s.res2, s.xn2 = self.kern.dr_step(s.Z, self.Ct, self.starts, t, tlam, self.a, self.b,
                                          s.X, s.Y, s.u, s.v)

    def to_user(self, P, f, g):
        inv = np.empty_like(self.order)
        inv[self.order] = np.arange(self.n)
        return np.ascontiguousarray(P.T[inv]), f[inv], g


class TorchLayout:
    """Tensors on ``C``'s device for :mod:`._class_ot_torch`; iterations in ``C``'s dtype."""

    def __init__(self, a, b, C, inverse):
        from tikhon.solvers.transport import _class_ot_torch as kern

        torch = self.torch = torch_module()
        self.kern = kern
        self.n, self.m = C.shape
        self.dtype, self.device = C.dtype, C.device
        self.order = torch.sort(inverse, stable=True).indices
        self.cls = inverse[self.order].contiguous()
        self.ncls = int(self.cls[-1]) + 1
        self.C = C[self.order].contiguous()
        self.C64 = self.C.to(torch.float64)
        # the certificate's per-target level search reads the cost target-major
        self.Ct64 = self.C64.T.contiguous()
        self.a64 = a[self.order].contiguous()
        self.b64 = b
        self.a, self.b = self.a64.to(self.dtype), b.to(self.dtype)
        self.mass = float(a.sum())
        self.cost_scale = float(self.C64.abs().mean())

    def context(self):
        # a cost that requires grad would otherwise record every iteration's graph
        return self.torch.no_grad()

    def zeros(self, k):
        return self.torch.zeros(k, dtype=self.dtype, device=self.device)

    def initial_plan(self, x0):
        if x0 is None:
            return self.a[:, None] * self.b[None, :]
        return x0[self.order].to(self.dtype).contiguous()

    def set_step(self, t):
        self.tC = self.C * t

    def round(self, X):
        return self.kern.round_to_polytope(X.to(self.torch.float64), self.a64, self.b64)

    def objective(self, P):
        return self.kern.plan_objective(P, self.C64, self.cls, self.ncls)

    def feasible_g(self, f, g, lam):
        return self.kern.feasible_g(self.Ct64, self.cls, f.to(self.torch.float64),
                                    g.to(self.torch.float64), lam)

    def dual(self, f, g):
        return (f.to(self.torch.float64) * self.a64).sum() + (g * self.b64).sum()

    def keep(self, f):
        return f.to(self.torch.float64)

    def host(self, *values):
        torch = self.torch
        return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device)
                            for v in values]).tolist()

    def dr_step(self, s, t, tlam, norms):
        s.X, s.u, s.v, res2, xn2 = self.kern.dr_step(s.Z, self.tC, self.cls, self.ncls, tlam,
                                                     self.a, self.b, norms)
        if norms:
            s.res2, s.xn2 = res2, xn2

    def to_user(self, P, f, g):
        torch = self.torch
        plan = torch.empty_like(P).index_copy_(0, self.order, P).to(self.dtype)
        f = torch.empty_like(f).index_copy_(0, self.order, f).to(self.dtype)
        return plan, f, g.to(self.dtype)
