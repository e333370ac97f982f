"""ADMM (scaled form) for ``min_x f(x) + g(A x)``, linearized when ``A`` is not the identity.

With ``z = A x`` and the scaled dual ``u``::

    x+ = argmin_x f(x) + rho/2 ||A x - z + u||^2
    z+ = prox_{g/rho}(A x+ + u)
    u+ = u + A x+ - z+

Without ``A`` the x-update is ``prox_{f/rho}(z - u)``. With an operator it is
replaced by one linearized (proximal gradient) step ([PB14], Sec. 4.4.2)::

    x+ = prox_{mu f}(x - mu rho A^T (A x - z + u)),   0 < mu <= 1 / (rho ||A||^2)

Both proximal maps are evaluated at fixed steps (``1/rho`` and ``mu``), so
``fixed_step`` functionals (plug-and-play denoisers, learned proximal networks)
are accepted for ``f`` and ``g``.

References
----------
.. [BPC11] S. Boyd, N. Parikh, E. Chu, B. Peleato and J. Eckstein, "Distributed
   optimization and statistical learning via the alternating direction method
   of multipliers", Found. Trends Mach. Learn. 3(1), 2011.
.. [PB14] N. Parikh and S. Boyd, "Proximal algorithms", Found. Trends Optim.
   1(3), 2014.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tikhon.operators._backend import is_torch, torch_module
from tikhon.operators.base import LinearOperator
from tikhon.solvers._loop import check_tolerance, iterate
from tikhon.solvers.first_order import (
    _check_array,
    _check_functional,
    _check_positive,
    _copy,
    _make_result,
    _norm,
    _tiny,
)

__all__ = ["admm", "ADMMState", "admm_init", "admm_step"]


@dataclass
class ADMMState:
    """State of :func:`admm_step`.

    Attributes
    ----------
    x, z, u : array or tensor
        Primal variables and the scaled dual variable (``y = rho u``).
    Ax : array or tensor
        Cached ``A x`` (``x`` itself without an operator).
    x_prev, z_prev, Ax_prev :
        The previous iterates (by reference, for the residuals).
    rho : float
        Penalty parameter.
    mu : float or None
        Step of the linearized x-update (None without an operator).
    """

    f: object
    g: object
    A: object
    x: object
    z: object
    u: object
    Ax: object
    rho: float
    mu: float | None
    x_prev: object = None
    z_prev: object = None
    Ax_prev: object = None
    k: int = 0


def _apply(A, x):
    return x if A is None else A.forward(x)


def _apply_T(A, y):
    return y if A is None else A.adjoint(y)


def _size(x):
    return int(x.numel()) if is_torch(x) else int(x.size)


def admm_init(f, g, A=None, x0=None, z0=None, u0=None, rho=1.0, step=None):
    """Initial :class:`ADMMState` (see :func:`admm` for the arguments)."""
    where = "admm"
    f = _check_functional(f, "f", where)
    g = _check_functional(g, "g", where)
    rho = _check_positive(rho, "rho", where, allow_none=False)
    if A is not None:
        if not isinstance(A, LinearOperator):
            raise TypeError(f"{where}: A must be a tikhon LinearOperator or None, got {type(A).__name__}")
        from tikhon.operators.basic import Identity

        if isinstance(A, Identity):
            A = None  # the exact x-update is then available
    if x0 is None:
        if A is None:
            raise ValueError(f"{where}: x0 is required when A is None (it fixes the shape)")
        x0 = np.zeros(A.in_shape, dtype=A.dtype if A.dtype in (np.float32, np.float64) else np.float64)
    x0 = _check_array(x0, "x0", where)
    if A is not None and tuple(x0.shape) != A.in_shape:
        raise ValueError(f"{where}: x0 has shape {tuple(x0.shape)}, expected A.in_shape = {A.in_shape}")
    x = _copy(x0)
    Ax = _apply(A, x)
    z = _copy(Ax) if z0 is None else _copy(_check_array(z0, "z0", where))
    u = (torch_module().zeros_like(Ax) if is_torch(Ax) else np.zeros_like(Ax)) if u0 is None else \
        _copy(_check_array(u0, "u0", where))
    for name, v in (("z0", z), ("u0", u)):
        if tuple(v.shape) != tuple(Ax.shape):
            raise ValueError(f"{where}: {name} has shape {tuple(v.shape)}, expected {tuple(Ax.shape)}")
    mu = None
    if A is not None:
        mu = _check_positive(step, "step", where)
        if mu is None:
            L = float(A.norm(like=x))
            if not (L > 0 and math.isfinite(L)):
                raise ValueError(f"{where}: ||A|| = {L}; A must be non-zero")
            # 0.99 leaves room for the power-iteration estimate of ||A||, which is from below
            mu = 0.99 / (rho * L * L)
    elif step is not None:
        raise ValueError(f"{where}: step is only used by the linearized x-update (with an operator A)")
    return ADMMState(f=f, g=g, A=A, x=x, z=z, u=u, Ax=Ax, rho=rho, mu=mu,
                     x_prev=x, z_prev=z, Ax_prev=Ax)


def admm_step(state):
    """One scaled-form ADMM iteration (linearized x-update with an operator)."""
    f, g, A, rho = state.f, state.g, state.A, state.rho
    if A is None:
        x = f.prox(state.z - state.u, 1.0 / rho)
    else:
        v = A.adjoint(state.Ax - state.z + state.u)
        x = f.prox(state.x - (state.mu * rho) * v, state.mu)
    Ax = _apply(A, x)
    z = g.prox(Ax + state.u, 1.0 / rho)
    state.u = state.u + Ax - z
    state.x_prev, state.z_prev, state.Ax_prev = state.x, state.z, state.Ax
    state.x, state.z, state.Ax = x, z, Ax
    state.k += 1
    return state


def residuals(state):
    """Primal and dual residual norms ``(||r||, ||s||)`` of the last iteration.

    ``r = A x - z``. Without an operator ``s = rho (z_prev - z)`` ([BPC11], 3.3);
    with the linearized update ``s = (x_prev - x)/mu - rho A^T((A x_prev - A x) -
    (z_prev - z))``, which is the element of ``df(x) + A^T y`` (``y = rho u``)
    that the update certifies.
    """
    r = _norm(state.Ax - state.z)
    if state.A is None:
        s = state.rho * _norm(state.z_prev - state.z)
    else:
        w = state.A.adjoint((state.Ax_prev - state.Ax) - (state.z_prev - state.z))
        s = _norm((state.x_prev - state.x) / state.mu - state.rho * w)
    return r, s


def admm(f, g, A=None, x0=None, *, rho=1.0, step=None, z0=None, u0=None, tol=1e-6, atol=0.0,
         max_iter=1000, callback=None, progress=False, check_every=1, record_objective=True):
    """Alternating direction method of multipliers for ``min_x f(x) + g(A x)``.

    Parameters
    ----------
    f, g : Functional
        Each with a prox; either may be ``fixed_step`` (plug-and-play).
    A : LinearOperator, optional
        Default the identity (exact x-update ``prox_{f/rho}``); otherwise the
        linearized x-update with step ``step``.
    x0 : array or tensor, optional
        Starting point (required when ``A`` is None; default zeros).
    rho : float
        Penalty parameter (> 0).
    step : float, optional
        ``mu`` of the linearized x-update; default ``0.99 / (rho ||A||^2)``
        (convergence needs ``mu <= 1 / (rho ||A||^2)``).
    z0, u0 : array or tensor, optional
        Starting ``z`` (default ``A x0``) and scaled dual ``u`` (default 0).
    tol, atol : float
        Relative and absolute tolerances ``eps_rel`` and ``eps_abs`` of
        [BPC11], Sec. 3.3.1: converged when ``||r|| <= sqrt(m) atol + tol
        max(||A x||, ||z||)`` and ``||s|| <= sqrt(n) atol + tol ||rho A^T u||``
        (``m``, ``n`` the sizes of ``z`` and ``x``). The recorded ``criterion``
        is ``max(||r|| / eps_pri, ||s|| / eps_dual) * tol``, so that the loop's
        test ``criterion <= tol`` is exactly this pair of tests.
    max_iter, callback, progress, check_every :
        As in :func:`~tikhon.solvers.fista`.
    record_objective : bool
        Record ``f(x) + g(z)`` (one evaluation of each per check; ``z`` rather
        than ``A x`` keeps the value finite for indicator functions ``g``).

    Returns
    -------
    Result
        ``x``; ``dual = rho u`` (the unscaled multiplier of ``A x = z``);
        ``history`` with ``primal_residual``, ``dual_residual``, ``criterion``,
        ``objective``; ``steps`` with ``rho`` and ``step``; ``info["z"]``.
    """
    tol = check_tolerance(tol)
    atol = check_tolerance(atol, "atol")
    state = admm_init(f, g, A, x0, z0=z0, u0=u0, rho=rho, step=step)
    m, n = _size(state.z), _size(state.x)

    def monitor(s):
        r, sd = residuals(s)
        tiny = _tiny(s.x)
        pri_scale = max(_norm(s.Ax), _norm(s.z))
        dual_scale = s.rho * _norm(_apply_T(s.A, s.u))
        if tol > 0:
            eps_pri = max(math.sqrt(m) * atol + tol * pri_scale, tiny)
            eps_dual = max(math.sqrt(n) * atol + tol * dual_scale, tiny)
            crit = max(r / eps_pri, sd / eps_dual) * tol
        else:
            crit = max(r, sd) if atol == 0 else max(r / (math.sqrt(m) * atol), sd / (math.sqrt(n) * atol))
        out = {"primal_residual": r, "dual_residual": sd, "criterion": crit}
        if record_objective:
            # g at z (its prox output, so inside its domain), as in [BPC11]
            out["objective"] = float(s.f._call(s.x)) + float(s.g._call(s.z))
        return out

    if tol == 0 and atol > 0:
        # only the absolute tests apply: compare against 1
        loop_tol = 1.0
    else:
        loop_tol = tol
    state, outcome = iterate(state, admm_step, monitor, criterion="criterion", tol=loop_tol,
                             max_iter=max_iter, callback=callback, progress=progress,
                             check_every=check_every, name="admm")
    steps = {"rho": state.rho, "step": state.mu}
    return _make_result(state, outcome, state.x, steps, dual=state.rho * state.u,
                        info={"z": state.z})
