"""The lower-level solver of the bilevel problems: accelerated gradient for strongly convex ``g``.

For ``g`` ``mu``-strongly convex with an ``L``-Lipschitz gradient, Nesterov's
constant-momentum method ([Nes18], scheme 2.2.22)

    x_{k+1} = y_k - grad g(y_k) / L,
    y_{k+1} = x_{k+1} + beta (x_{k+1} - x_k),   beta = (sqrt L - sqrt mu) / (sqrt L + sqrt mu)

converges linearly at the rate ``1 - sqrt(mu / L)``. Each iteration evaluates
one gradient, at ``y_k``; because ``||y - x*|| <= ||grad g(y)|| / mu`` holds at
every point of a ``mu``-strongly convex function, the point where the gradient
was just taken carries a certificate for free: the run stops at the first
``y_k`` with ``||grad g(y_k)|| / mu <= eps`` and returns that point. The loop
is :func:`tikhon._core.loop.run`; this module holds only the step.
:class:`~tikhon.solvers.ProximalGradient` (FISTA) has the ``t_k`` momentum of
convex problems, not this one, and certifies ``x_k`` rather than the point
its gradient was taken at, hence a solver of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tikhon._core.checks import (
    check_callable,
    check_finite_array,
    check_positive_int,
    check_tolerance,
)
from tikhon._core.loop import Solver, State, run

from .protocol import LowerSolution

__all__ = ["AGDState", "StronglyConvexAGD", "solve_lower_level", "solve_strongly_convex"]


@dataclass
class AGDState(State):
    """State of :class:`StronglyConvexAGD`.

    Attributes
    ----------
    x : torch.Tensor
        The gradient-step iterate ``x_k``.
    y : torch.Tensor
        The extrapolated point where the next gradient is taken.
    certified : torch.Tensor
        The point where the last gradient was taken (``y_{k-1}``).
    bound : float
        ``||grad g(certified)|| / mu``, an upper bound of ``||certified - x*||``.
    """

    x: Any = None
    y: Any = None
    certified: Any = None
    bound: float = math.inf


class StronglyConvexAGD(Solver):
    """Constant-momentum accelerated gradient on a ``mu``-strongly convex smooth function.

    Parameters
    ----------
    grad : callable
        ``grad(x)``, the gradient at a tensor ``x`` (no autograd graph needed).
    mu : float
        A lower bound of the Hessian's eigenvalues.
    L : float
        An upper bound of the Hessian's eigenvalues.
    name : str
        The name in messages.
    """

    criterion = "distance_bound"

    def __init__(self, grad, mu, L, *, name="lower_level"):
        self.grad = grad
        self.mu = float(mu)
        self.L = float(max(L, mu))
        self.name = name
        q = math.sqrt(self.mu / self.L)
        self.beta = (1.0 - q) / (1.0 + q)

    def init(self, x0):
        """The state at ``x0`` (not copied: steps never write into it)."""
        return AGDState(x=x0, y=x0, certified=x0)

    def step(self, state):
        """One gradient evaluation at ``y`` and the momentum update."""
        y = state.y
        g = self.grad(y)
        state.certified = y
        state.bound = float(g.norm()) / self.mu
        x_new = y - g / self.L
        state.y = x_new + self.beta * (x_new - state.x)
        state.x = x_new
        state.k += 1
        return state

    def monitor(self, state):
        return {"distance_bound": state.bound}

    def describe(self, record, tol):
        return f"||grad g|| / mu = {record['distance_bound']:.3g} <= eps = {tol:g}"


def solve_strongly_convex(grad, x0, mu, L, *, eps, max_iter, name="lower_level", stop=None):
    """Run :class:`StronglyConvexAGD` from ``x0`` until ``||grad g|| / mu <= eps``.

    Parameters
    ----------
    grad : callable
        The gradient (evaluated without a graph).
    x0 : torch.Tensor
        The start.
    mu, L : float
        Strong convexity and Lipschitz constants of the gradient.
    eps : float
        Target distance to the minimiser (``||x - x*|| <= eps`` at success).
    max_iter : int
        Gradient evaluations at most.
    name : str
        The name in messages.
    stop : callable, optional
        ``stop(y, bound) -> bool`` after each iteration, with ``y`` the point
        the gradient was just taken at and ``bound = ||grad g(y)|| / mu``;
        True ends the run there (``stopped``, ``y`` returned).

    Returns
    -------
    LowerSolution
        The certified point (the last point where the gradient was taken),
        the number of gradient evaluations and whether ``eps`` was met. No
        :class:`~tikhon._core.loop.ConvergenceWarning` is raised: the bilevel
        methods read ``converged`` (a too small budget is theirs to report).
    """
    check_callable(stop, "stop", name)
    solver = StronglyConvexAGD(grad, mu, L, name=name)
    state = solver.init(x0)
    callback = None if stop is None else (lambda s: bool(stop(s.certified, s.bound)))
    state, outcome = run(solver, state, tol=eps, max_iter=max_iter, warn=False,
                         callback=callback)
    stopped = outcome.status == "callback"
    x = state.certified if outcome.converged or stopped else state.x
    return LowerSolution(x=x, n_iter=outcome.n_iter, converged=outcome.converged,
                         stopped=stopped)


def solve_lower_level(lower, theta, *, eps, max_iter, x0, stop, where):
    """The ``solve`` of the built-in lower levels: the arguments checked, then
    :func:`solve_strongly_convex` on ``lower.grad`` at ``theta``.

    ``lower`` provides ``_check_theta(theta, where, finite=True)``,
    ``_default_x0()``, ``x_shape``, ``grad``, ``strong_convexity`` and
    ``lipschitz``; ``x0=None`` starts from ``lower._default_x0()``.
    """
    import torch

    theta = lower._check_theta(theta, where, finite=True).detach()
    eps = check_tolerance(eps, "eps", where)
    max_iter = check_positive_int(max_iter, "max_iter", where)
    x0 = lower._default_x0() if x0 is None else check_finite_array(
        x0, "x0", where, shape=lower.x_shape).detach()
    mu, L = lower.strong_convexity(theta), lower.lipschitz(theta)

    def grad(x):
        with torch.no_grad():
            return lower.grad(x, theta)

    return solve_strongly_convex(grad, x0, mu, L, eps=eps, max_iter=max_iter, name=where,
                                 stop=stop)
