"""The smooth term of inverse OT: ``L(A) = <C_A, P_hat> - OT_eps(C_A)`` and its gradient.

Every evaluation is one Sinkhorn solve, warm-started from the previous
potentials. The model remembers its last evaluation, so that a solver asking
again for the point it has just evaluated (an extrapolation that came out
equal to the iterate, the next ``lam`` of a path starting where the last one
stopped) costs no solve.
"""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import backend_of, copy, is_torch, size, torch_module, vdot
from tikhon._core.checks import (
    check_finite_array,
    check_marginal,
    check_positive,
    check_real_floating,
    check_same_device,
)

__all__ = ["INNER_MAX_ITER", "backend_spec", "float_array", "Model"]

_WHERE = "inverse_ot"
INNER_MAX_ITER = 100_000
# float32 rounds the model plan exp((f + g - C) / eps) to a relative error of
# about 6e-8 |C| / eps per entry, so its marginal violation cannot be pushed
# much below 1e-5 (and a 1e-10 target would spin for the whole budget)
_F32_SINKHORN_TOL = 1e-5


def backend_spec(named):
    """None for NumPy inputs, ``(dtype, device)`` for torch inputs.

    ``named`` maps argument names to values (None entries are skipped). Mixed
    NumPy / torch inputs raise TypeError naming both groups; tensors on
    different devices raise ValueError naming them; the dtype is float64 when
    any tensor is (torch's promotion).
    """
    if backend_of(_WHERE, **named) == "numpy":
        return None
    tensors = {k: check_real_floating(v, k, _WHERE) for k, v in named.items() if v is not None}
    device = check_same_device(_WHERE, **tensors)
    torch = torch_module()
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in tensors.values()) else torch.float32
    return dtype, device


def float_array(x, name, ndim, spec, nonneg=False):
    """One finite array input of ``ndim`` dimensions: NumPy float64, or a detached tensor of ``spec``."""
    x = check_finite_array(x, name, _WHERE, nonneg=nonneg)
    if x.ndim != ndim:
        raise ValueError(f"{_WHERE}: {name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if 0 in tuple(x.shape):
        raise ValueError(f"{_WHERE}: {name} is empty (shape {tuple(x.shape)})")
    if spec is not None:
        # an argmin is not differentiated through its iterations: no graph
        return x.detach().to(dtype=spec[0], device=spec[1])
    return x.astype(np.float64, copy=False)


def _tensordot(x, y, axes):
    if is_torch(x):
        return torch_module().tensordot(x, y, dims=axes)
    return np.tensordot(x, y, axes=axes)


def _flatnonzero(w):
    if is_torch(w):
        return torch_module().nonzero(w).reshape(-1)
    return np.flatnonzero(w)


def _submatrix(P, rows, cols):
    if is_torch(P):
        return P.index_select(0, rows).index_select(1, cols)
    return P[np.ix_(rows, cols)]


def _array_equal(x, y):
    return torch_module().equal(x, y) if is_torch(x) else np.array_equal(x, y)


class _RoundoffStop:
    """Sinkhorn callback: stop a float32 solve at its first round-off miss.

    The iterations met the tolerance but the recomputed plan's rounding misses
    it: that rounding is the precision float32 offers, so the plan is used.
    """

    def __init__(self):
        self.hit = False

    def __call__(self, state):
        self.hit = state.n_roundoff > 0
        return self.hit


class Model:
    """Features, observed coupling and the loss ``L(A) = <C_A, P_hat> - OT_eps(C_A)``."""

    def __init__(self, X, Y, coupling, eps, features, a, b, sinkhorn_tol):
        from tikhon.solvers.transport.balanced import sinkhorn

        self._sinkhorn = sinkhorn
        spec = backend_spec({"X": X, "Y": Y, "coupling": coupling, "features": features, "a": a, "b": b})
        self.spec = spec
        X = float_array(X, "X", 2, spec)
        Y = float_array(Y, "Y", 2, spec)
        P_hat = float_array(coupling, "coupling", 2, spec, nonneg=True)
        n, m = X.shape[0], Y.shape[0]
        if tuple(P_hat.shape) != (n, m):
            raise ValueError(f"{_WHERE}: coupling must have shape {(n, m)}, got {tuple(P_hat.shape)}")
        mass = P_hat.sum()
        if not float(mass) > 0:
            raise ValueError(f"{_WHERE}: coupling must have positive mass")
        P_hat = P_hat / mass
        eps = check_positive(eps, "eps", _WHERE)
        like = X if spec is not None else None
        a = P_hat.sum(1) if a is None else check_marginal(_detached(a), "a", n, _WHERE, like=like)
        b = P_hat.sum(0) if b is None else check_marginal(_detached(b), "b", m, _WHERE, like=like)
        a, b = a / a.sum(), b / b.sum()
        # points of zero mass carry no rows/columns of any model plan and no
        # observations; dropping them keeps every potential finite (a sampled
        # coupling leaves some points unobserved when N is small)
        if features is not None:
            features = float_array(features, "features", 3, spec)
            if tuple(features.shape[1:]) != (n, m):
                raise ValueError(
                    f"{_WHERE}: features must have shape (K, {n}, {m}), got {tuple(features.shape)}"
                )
        ia, ib = _flatnonzero(a > 0), _flatnonzero(b > 0)
        if size(ia) < n or size(ib) < m:
            a, b = a[ia] / a[ia].sum(), b[ib] / b[ib].sum()
            X, Y, P_hat = X[ia], Y[ib], _submatrix(P_hat, ia, ib)
            P_hat = P_hat / P_hat.sum()
            if features is not None:
                features = features[:, ia][:, :, ib]
        self.bilinear = features is None
        if self.bilinear:
            self.X, self.Y = X, Y
            self.shape = (X.shape[1], Y.shape[1])
        else:
            self.F = features
            self.shape = (features.shape[0],)
        self.P_hat, self.a, self.b, self.eps = P_hat, a, b, eps
        self.single = spec is not None and spec[0] == torch_module().float32
        self.sinkhorn_tol = max(sinkhorn_tol, _F32_SINKHORN_TOL) if self.single else sinkhorn_tol
        self.moments_hat = self.moments(P_hat)
        self.potentials = None
        self.n_sinkhorn = 0
        self._last = None  # (A, value, grad, Sinkhorn result) of the latest evaluation

    def zeros(self):
        if self.spec is None:
            return np.zeros(self.shape)
        return torch_module().zeros(self.shape, dtype=self.spec[0], device=self.spec[1])

    def cost(self, A):
        if self.bilinear:
            return -(self.X @ A) @ self.Y.T
        return -_tensordot(A, self.F, 1)

    def moments(self, P):
        """<Phi_k, P> for every feature k."""
        if self.bilinear:
            return self.X.T @ P @ self.Y
        return _tensordot(self.F, P, ([1, 2], [0, 1]))

    def curvature(self):
        """An estimate of the Lipschitz constant of ``grad L``: the features' variance over eps.

        The Hessian of ``L`` is the model covariance of the features divided
        by eps; this is the covariance under the independent coupling ``a b^T``
        (backtracking corrects it).
        """
        a, b = self.a, self.b
        prod = torch_module().outer(a, b) if is_torch(a) else np.outer(a, b)
        if self.bilinear:
            second = float(a @ (self.X**2).sum(1)) * float(b @ (self.Y**2).sum(1))
        else:
            second = float(_tensordot(self.F**2, prod, ([1, 2], [0, 1])).sum())
        var = max(second - float((self.moments(prod) ** 2).sum()), 0.0)
        return max(var / self.eps, 1e-6)

    def plan(self, C):
        """Warm-started Sinkhorn solve for the cost C: ``(result, usable)``."""
        f0, g0 = (None, None) if self.potentials is None else self.potentials
        stop = _RoundoffStop() if self.single else None
        res = self._sinkhorn(self.a, self.b, C, self.eps, tol=self.sinkhorn_tol, f0=f0, g0=g0,
                             max_iter=INNER_MAX_ITER, callback=stop)
        self.n_sinkhorn += 1
        ok = res.converged or (stop is not None and stop.hit
                               and math.isfinite(res.info["marginal_error"]))
        return res, ok

    def value_grad(self, A):
        """``L(A)`` and its gradient ``<Phi, P_A - P_hat>``, by a warm-started Sinkhorn."""
        last = self._last
        if last is not None and _array_equal(A, last[0]):
            return last[1], last[2]
        C = self.cost(A)
        res, ok = self.plan(C)
        f, g = res.dual
        P = res.x
        # dual value of entropic OT in the a/b-free potentials (constants in A
        # dropped); every a_i, b_j > 0 here (zero-mass points were dropped)
        if self.spec is None:
            if not (ok and np.all(np.isfinite(f)) and np.all(np.isfinite(g))):
                raise FloatingPointError(f"{_WHERE}: inner Sinkhorn failed: {res.message}")
            ot = float(np.dot(f, self.a)) + float(np.dot(g, self.b)) - self.eps * float(P.sum())
            value = vdot(C, self.P_hat) - ot
        else:
            # one device synchronisation: the value is reduced on the device in
            # float64; non-finite potentials make it non-finite
            f64 = torch_module().float64
            value = float(
                (C * self.P_hat).sum(dtype=f64)
                - (f * self.a).sum(dtype=f64)
                - (g * self.b).sum(dtype=f64)
                + self.eps * P.sum(dtype=f64)
            )
            if not (ok and math.isfinite(value)):
                raise FloatingPointError(f"{_WHERE}: inner Sinkhorn failed: {res.message}")
        self.potentials = (f, g)
        grad = self.moments(P) - self.moments_hat
        self._last = (copy(A), value, grad, res)
        return value, grad

    def solution_at(self, A):
        """The Sinkhorn result (plan, potentials) of the model at ``A``."""
        self.value_grad(A)
        return self._last[3]


def _detached(x):
    return x.detach() if is_torch(x) else x
