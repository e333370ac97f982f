"""Smooth data terms: the squared l2 misfit (with an optional operator) and the Huber function."""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import ParamCache, as_like, copy, dot_value, is_torch, sum_value, torch_module, vdot, xp_where
from tikhon._core.cg import conjugate_gradient
from tikhon._core.checks import check_param, check_positive_int, check_shape
from tikhon._core.loop import warn_at_caller
from tikhon.operators.prox.base import check_broadcasts_to, indicator_tol
from tikhon.operators.prox.base import Functional

__all__ = ["SquaredL2", "Huber"]


class SquaredL2(Functional):
    r"""Squared misfit :math:`f(x) = \tfrac12 \|A x - b\|_2^2` (``A`` optional).

    Parameters
    ----------
    b : float, array or tensor, optional
        Data (default 0). Without ``op`` it must broadcast to the input; with
        ``op`` it must have shape ``op.out_shape``.
    op : LinearOperator, optional
        Forward operator ``A`` (default the identity).
    cg_tol : float, optional
        Relative residual at which the conjugate-gradient prox (with ``op``)
        stops; default ``1e-10`` in float64 and ``1e-5`` in float32.
    cg_max_iter : int, optional
        Iteration cap of that CG (default 1000); a warning is raised when it is hit.

    Notes
    -----
    Smooth with gradient :math:`A^T(Ax - b)` and Lipschitz constant
    :math:`\|A\|^2` (power iteration, computed on first use; 1 without ``op``,
    where it is also 1-strongly convex).

    Without ``op`` the prox is :math:`(x + \tau b) / (1 + \tau)` (``tau`` may be
    an array) and the conjugate is :math:`\tfrac12\|y\|^2 + \langle y, b\rangle`.
    With ``op`` the prox solves the symmetric positive definite system
    :math:`(T^{-1} + A^T A) z = T^{-1} x + A^T b` (``T = diag(tau)``) by
    conjugate gradients warm-started at ``x``, to the tight relative tolerance
    ``cg_tol``; the conjugate then has no closed-form value.
    """

    is_smooth = True

    def __init__(self, b=None, op=None, cg_tol=None, cg_max_iter=1000):
        from tikhon.operators.base import LinearOperator

        if op is not None and not isinstance(op, LinearOperator):
            raise TypeError(f"SquaredL2: op must be a tikhon LinearOperator, got {type(op).__name__}")
        self.b = check_param(b, "b", "SquaredL2", allow_none=True)
        if op is not None and self.b is not None and not isinstance(self.b, float):
            if tuple(self.b.shape) != op.out_shape:
                raise ValueError(f"SquaredL2: b has shape {tuple(self.b.shape)}, op.out_shape is {op.out_shape}")
        if cg_tol is not None:
            cg_tol = check_param(cg_tol, "cg_tol", "SquaredL2", positive=True)
        self.op = op
        self.cg_tol = cg_tol
        self.cg_max_iter = check_positive_int(cg_max_iter, "cg_max_iter", "SquaredL2")
        self._b = ParamCache(self.b)
        self.strong_convexity = 1.0 if op is None else 0.0
        self._lip = 1.0 if op is None else None

    def _check_input(self, x, where):
        if self.op is not None:
            return check_shape(x, self.op.in_shape, "x", where)
        return x if self.b is None else check_broadcasts_to(x, self.b, "b", where)

    @property
    def lipschitz(self):
        """``||A||^2`` (1 without an operator)."""
        if self._lip is None:
            # on the data's device when b is a tensor (the operator may be torch-only)
            like = self.b if is_torch(self.b) else None
            self._lip = float(self.op.norm(like=like)) ** 2
        return self._lip

    def _residual(self, x):
        b = self._b.get(x)
        ax = x if self.op is None else self.op.forward(x)
        return ax if b is None else ax - b

    def _call(self, x):
        r = self._residual(x)
        return 0.5 * dot_value(r, r)

    def _grad(self, x):
        r = self._residual(x)
        return r if self.op is None else self.op.adjoint(r)

    def _value_and_grad(self, x):
        # one application of A for both (backtracking evaluates both at each point)
        r = self._residual(x)
        return 0.5 * dot_value(r, r), (r if self.op is None else self.op.adjoint(r))

    def _prox(self, x, tau):
        t = as_like(tau, x)
        b = self._b.get(x)
        if self.op is None:
            return (x + t * b) / (1 + t) if b is not None else x / (1 + t)
        return self._prox_cg(x, t, b)

    def _prox_cg(self, x, t, b):
        op = self.op
        rhs = x / t
        if b is not None:
            rhs = rhs + op.adjoint(b)

        def matvec(v):
            return v / t + op.adjoint(op.forward(v))

        if self.cg_tol is not None:
            tol = self.cg_tol
        else:
            tol = 1e-5 if indicator_tol(x) > 1e-6 else 1e-10
        stop = (tol * math.sqrt(vdot(rhs, rhs))) ** 2
        z, rr, _ = conjugate_gradient(matvec, rhs, copy(x), stop=stop, max_iter=self.cg_max_iter)
        if rr > stop:
            warn_at_caller(
                f"SquaredL2.prox: conjugate gradients stopped at cg_max_iter={self.cg_max_iter} with "
                f"relative residual {math.sqrt(rr / max(vdot(rhs, rhs), 1e-300)):.2e} > cg_tol={tol:g}"
            )
        return z

    def _conj_call(self, y):
        if self.op is not None:
            raise NotImplementedError("the conjugate of SquaredL2 with an operator has no closed-form value")
        val = 0.5 * vdot(y, y)
        b = self._b.get(y)
        if b is not None:
            val += vdot(y, y * 0 + b)
        return val

    @property
    def conj(self):
        """``0.5 ||y||^2 + <y, b>`` without ``op`` (smooth, 1-strongly convex); else the Moreau conjugate."""
        if self.op is None:
            return _SquaredL2Conjugate(self)
        return super().conj


class _SquaredL2Conjugate(Functional):
    """``y -> 0.5 ||y||^2 + <y, b>``, the conjugate of ``SquaredL2(b)``."""

    is_smooth = True
    lipschitz = 1.0
    strong_convexity = 1.0

    def __init__(self, f):
        self.f = f

    @property
    def conj(self):
        return self.f

    def _call(self, y):
        return self.f._conj_call(y)

    def _grad(self, y):
        b = self.f._b.get(y)
        return y * 1 if b is None else y + b

    def _prox(self, y, tau):
        # argmin 0.5|z|^2 + <z, b> + |z - y|^2 / (2 tau)  =>  z = (y - tau b) / (1 + tau)
        t = as_like(tau, y)
        b = self.f._b.get(y)
        return y / (1 + t) if b is None else (y - t * b) / (1 + t)

    def _conj_call(self, x):
        return self.f._call(x)

    def _label(self):
        return "SquaredL2.conj"


class Huber(Functional):
    r"""Huber function :math:`\sum_i h_\delta(x_i)`, the Moreau envelope of :math:`|\cdot|`.

    .. math::
        h_\delta(t) = t^2 / (2\delta) \text{ if } |t| \le \delta, \quad |t| - \delta/2 \text{ otherwise}.

    Parameters
    ----------
    delta : float
        Positive transition point.

    Notes
    -----
    Smooth with gradient :math:`x / \max(|x|, \delta)` and Lipschitz constant
    :math:`1/\delta`. prox: :math:`x - \tau x / \max(|x|, \delta + \tau)`
    (``tau`` may be an array). Conjugate: :math:`\tfrac{\delta}{2}\|y\|^2` on
    :math:`\|y\|_\infty \le 1`, ``inf`` outside.
    """

    is_smooth = True

    def __init__(self, delta=1.0):
        d = check_param(delta, "delta", "Huber", positive=True)
        if not isinstance(d, float):
            raise TypeError("Huber: delta must be a scalar")
        self.delta = d
        self.lipschitz = 1.0 / d

    def _call(self, x):
        x = x.double() if is_torch(x) else x.astype(np.float64, copy=False)
        a = abs(x)
        d = self.delta
        return sum_value(xp_where(a <= d, x * x / (2 * d), a - d / 2))

    def _grad(self, x):
        return x / _max_scalar(abs(x), self.delta)

    def _prox(self, x, tau):
        t = as_like(tau, x)
        return x - t * x / _max_arr(abs(x), self.delta + t)

    def _conj_call(self, y):
        if not bool((abs(y) <= 1 + indicator_tol(y)).all()):
            return math.inf
        return 0.5 * self.delta * vdot(y, y)

    def __repr__(self):
        return f"Huber(delta={self.delta:g})"


def _max_scalar(a, c):
    if is_torch(a):
        return torch_module().clamp(a, min=c)
    return np.maximum(a, a.dtype.type(c))


def _max_arr(a, c):
    if isinstance(c, float):
        return _max_scalar(a, c)
    if is_torch(a):
        return torch_module().maximum(a, c)
    return np.maximum(a, c)
