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
from typing import Any

import numpy as np

from tikhon._core.arrays import copy, norms, size, tiny, to_float, zeros_like
from tikhon._core.checks import (
    check_finite_array,
    check_functional,
    check_positive,
    check_tolerance,
)
from tikhon._core.loop import Solver, State, run
from tikhon.operators.base import LinearOperator

__all__ = ["admm", "ADMM", "ADMMState"]


@dataclass
class ADMMState(State):
    """State of :class:`ADMM`.

    Attributes
    ----------
    x, z, u : array or tensor
        Primal variables and the scaled dual variable (``y = rho u``).
    Ax : array or tensor
        Cached ``A x`` (``x`` itself without an operator).
    x_prev, z_prev, Ax_prev :
        The previous iterates (by reference, for the residuals).
    rho : float or tensor
        Penalty parameter of the last iteration.
    mu : float, tensor or None
        Step of the linearized x-update (None without an operator).
    """

    x: Any = None
    z: Any = None
    u: Any = None
    Ax: Any = None
    rho: Any = 1.0
    mu: Any = None
    x_prev: Any = None
    z_prev: Any = None
    Ax_prev: Any = None


class ADMM(Solver):
    """Scaled-form ADMM for ``min_x f(x) + g(A x)``; see :func:`admm`.

    Parameters
    ----------
    f, g : Functional
        Each with a prox; either may be ``fixed_step`` (plug-and-play).
    A : LinearOperator, optional
        Default the identity (exact x-update); otherwise the linearized one.
    tol, atol : float
        Relative and absolute tolerances, combined into the recorded
        ``criterion`` (see :func:`admm`).
    record_objective : bool
        Record ``f(x) + g(z)`` at every check (a ``fixed_step`` one weighted,
        see :func:`admm`).
    """

    name = "admm"
    criterion = "criterion"

    def __init__(self, f, g, A=None, *, tol=1e-6, atol=0.0, record_objective=True):
        where = self.name
        self.f = check_functional(f, "f", where)
        self.g = check_functional(g, "g", where)
        if A is not None:
            if not isinstance(A, LinearOperator):
                raise TypeError(f"{where}: A must be a tikhon LinearOperator or None, got {type(A).__name__}")
            from tikhon.operators.basic import Identity

            if isinstance(A, Identity):
                A = None  # the exact x-update is then available
        self.A = A
        self.tol = check_tolerance(tol, "tol", where)
        self.atol = check_tolerance(atol, "atol", where)
        self.record_objective = bool(record_objective)

    def _apply(self, x):
        return x if self.A is None else self.A.forward(x)

    def _apply_T(self, y):
        return y if self.A is None else self.A.adjoint(y)

    def init(self, x0=None, z0=None, u0=None, rho=1.0, step=None):
        """The initial state (``z0 = A x0``, ``u0 = 0`` by default)."""
        where = self.name
        A = self.A
        rho = check_positive(rho, "rho", where)
        if x0 is None:
            if A is None:
                raise ValueError(f"{where}: x0 is required when A is None (it fixes the shape)")
            x0 = np.zeros(A.in_shape, dtype=A.dtype if A.dtype in (np.float32, np.float64) else np.float64)
        x0 = check_finite_array(x0, "x0", where, shape=None if A is None else A.in_shape)
        x = copy(x0)
        Ax = self._apply(x)
        z = copy(Ax) if z0 is None else copy(check_finite_array(z0, "z0", where, shape=Ax.shape))
        u = zeros_like(Ax) if u0 is None else copy(check_finite_array(u0, "u0", where, shape=Ax.shape))
        mu = None
        if A is not None:
            mu = check_positive(step, "step", where, allow_none=True)
            if mu is None:
                L = float(A.norm(like=x))
                if not (L > 0 and math.isfinite(L)):
                    raise ValueError(f"{where}: ||A|| = {L}; A must be non-zero")
                # 0.99 leaves room for the power-iteration estimate of ||A||, which is from below
                mu = 0.99 / (rho * L * L)
        elif step is not None:
            raise ValueError(f"{where}: step is only used by the linearized x-update (with an operator A)")
        return ADMMState(x=x, z=z, u=u, Ax=Ax, rho=rho, mu=mu, x_prev=x, z_prev=z, Ax_prev=Ax)

    def step(self, state, *, rho=None, step=None):
        """One scaled-form ADMM iteration (linearized x-update with an operator).

        ``rho`` and ``step`` (the linearized step ``mu``) replace the state's
        from this iteration on; tensors keep the autograd graph. A new
        ``rho`` rescales the scaled dual ``u`` so that the multiplier ``rho u``
        is unchanged ([BPC11], 3.4.1).
        """
        if rho is None:
            rho = state.rho
        elif rho is not state.rho:
            state.u = state.u * (state.rho / rho)
        mu = state.mu if step is None else step
        f, g, A = self.f, self.g, self.A
        if A is None:
            x = f._prox(state.z - state.u, 1.0 / rho)
        else:
            v = A.adjoint(state.Ax - state.z + state.u)
            x = f._prox(state.x - (mu * rho) * v, mu)
        Ax = self._apply(x)
        z = g._prox(Ax + state.u, 1.0 / rho)
        state.u = state.u + Ax - z
        state.x_prev, state.z_prev, state.Ax_prev = state.x, state.z, state.Ax
        state.x, state.z, state.Ax = x, z, Ax
        state.rho, state.mu = rho, mu
        state.k += 1
        return state

    def residuals(self, state):
        """Primal and dual residual norms ``(||r||, ||s||)`` of the last iteration.

        ``r = A x - z``. Without an operator ``s = rho (z_prev - z)`` ([BPC11], 3.3);
        with the linearized update ``s = (x_prev - x)/mu - rho A^T((A x_prev - A x) -
        (z_prev - z))``, which is the element of ``df(x) + A^T y`` (``y = rho u``)
        that the update certifies.

        Parameters
        ----------
        state : ADMMState
            The state after an iteration.

        Returns
        -------
        tuple of float
            ``(||r||, ||s||)``.
        """
        rho = float(state.rho)
        if self.A is None:
            r, dz = norms(state.Ax - state.z, state.z_prev - state.z)
            return r, rho * dz
        w = self.A.adjoint((state.Ax_prev - state.Ax) - (state.z_prev - state.z))
        return tuple(norms(state.Ax - state.z, (state.x_prev - state.x) / state.mu - rho * w))

    def monitor(self, state):
        r, sd = self.residuals(state)
        n_Ax, n_z, n_ATu = norms(state.Ax, state.z, self._apply_T(state.u))
        m, n = size(state.z), size(state.x)
        t = tiny(state.x)
        tol, atol = self.tol, self.atol
        dual_scale = float(state.rho) * n_ATu
        if tol > 0:
            eps_pri = max(math.sqrt(m) * atol + tol * max(n_Ax, n_z), t)
            eps_dual = max(math.sqrt(n) * atol + tol * dual_scale, t)
            crit = max(r / eps_pri, sd / eps_dual) * tol
        elif atol > 0:
            # only the absolute tests apply: compared against 1 (see done)
            crit = max(r / (math.sqrt(m) * atol), sd / (math.sqrt(n) * atol))
        else:
            crit = max(r, sd)
        out = {"primal_residual": r, "dual_residual": sd, "criterion": crit}
        if self.record_objective:
            # g at z (its prox output, so inside its domain), as in [BPC11]
            f_weight, g_weight = self._fixed_step_weights(state)
            out["objective"] = (f_weight * to_float(self.f._call(state.x))
                                + g_weight * to_float(self.g._call(state.z)))
        return out

    def _fixed_step_weights(self, state):
        """Weights of ``f`` and ``g`` in the problem ADMM solves when they are ``fixed_step``.

        A fixed-step prox ``prox_g`` used where ADMM takes ``prox_{g/rho}`` is
        ``prox_{(rho g)/rho}``: the fixed point is stationary for ``rho g``, not
        ``g``; likewise ``rho f`` (exact x-update) or ``f / mu`` (linearized).
        """
        rho = float(state.rho)
        g_weight = rho if self.g.fixed_step else 1.0
        if not self.f.fixed_step:
            return 1.0, g_weight
        return (rho if self.A is None else 1.0 / float(state.mu)), g_weight

    def _absolute_only(self):
        return self.tol == 0 and self.atol > 0

    def done(self, state, record, tol):
        return record["criterion"] <= (1.0 if self._absolute_only() else tol)

    def describe(self, record, tol):
        if self._absolute_only():
            return (f"max(||r|| / eps_pri, ||s|| / eps_dual) = {record['criterion']:.3g} <= 1 "
                    f"(atol = {self.atol:g})")
        return super().describe(record, tol)

    def optimality(self, x, z, u, *, rho, step=None):
        """Fixed-point residuals ``(x - x+, z - z+, u - u+)`` of one iteration."""
        s = ADMMState(x=x, z=z, u=u, Ax=self._apply(x), rho=rho, mu=step)
        s = self.step(s)
        return x - s.x, z - s.z, u - s.u


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
        As in :func:`~tikhon.solvers.fista` (the callback gets an :class:`ADMMState`).
    record_objective : bool
        Record ``f(x) + g(z)`` (one evaluation of each per check; ``z`` rather
        than ``A x`` keeps the value finite for indicator functions ``g``).
        A ``fixed_step`` functional's prox ignores the step, so ADMM solves
        the problem with it weighted: the recorded objective is that of the
        problem actually solved, ``f(x) + rho g(z)`` for a fixed-step ``g``
        (and ``rho f(x)``, or ``f(x) / mu`` with an operator, for a
        fixed-step ``f``), at the current ``rho`` and ``mu``.

    Returns
    -------
    Result
        ``x``; ``dual = rho u`` (the unscaled multiplier of ``A x = z``);
        ``history`` with ``primal_residual``, ``dual_residual``, ``criterion``,
        ``objective``; ``steps`` with ``rho`` and ``step``; ``info["z"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import L1, SquaredL2
    >>> from tikhon.solvers import admm
    >>> b = np.array([3.0, -0.2, 1.0])
    >>> res = admm(SquaredL2(b=b), 0.5 * L1(), x0=np.zeros(3), tol=1e-10, max_iter=500)
    >>> res.converged, res.x.round(4)  # soft-thresholding of b at 0.5
    (True, array([ 2.5, -0. ,  0.5]))
    """
    solver = ADMM(f, g, A, tol=tol, atol=atol, record_objective=record_objective)
    state = solver.init(x0, z0=z0, u0=u0, rho=rho, step=step)
    state, outcome = run(solver, state, tol=solver.tol, max_iter=max_iter, callback=callback,
                         progress=progress, check_every=check_every)
    return outcome.result(state.x, steps={"rho": state.rho, "step": state.mu},
                          dual=state.rho * state.u, info={"z": state.z})
