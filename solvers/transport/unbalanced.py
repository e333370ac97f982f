"""Unbalanced entropic transport with KL-relaxed marginals: :func:`sinkhorn_unbalanced`.

One solver for NumPy (numba kernels, on the support of the marginals) and
torch (``logsumexp`` on the tensors' device): the half steps of
:mod:`._log_steps` with ``kappa = rho / (rho + eps)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tikhon._core.arrays import backend_of, is_torch, torch_module
from tikhon._core.checks import check_callable, check_positive, check_positive_int, check_tolerance
from tikhon._core.loop import Solver, State, run
from tikhon.solvers.transport._log_steps import log_steps
from tikhon.solvers.transport._plan import kl_divergence, plan_of
from tikhon.solvers.transport._staged import IterationAlias
from tikhon.solvers.transport._support import Support
from tikhon.solvers.transport._validation import problem

__all__ = ["sinkhorn_unbalanced", "UnbalancedSinkhorn", "UnbalancedState"]

_NAME = "sinkhorn_unbalanced"


@dataclass
class UnbalancedState(IterationAlias, State):
    """State of ``UnbalancedSinkhorn``, as ``callback(state)`` receives it.

    Attributes
    ----------
    k : int
        Iterations done (``iteration`` is an alias).
    f, g : array or tensor
        The potentials (a/b-free form).
    potential_change : float or tensor
        Largest change of a potential in the latest iteration, over ``eps``.
    f_spare, g_spare : array or None
        NumPy: the kernels' output buffers.
    """

    f: Any = None
    g: Any = None
    potential_change: Any = math.inf
    f_spare: Any = None
    g_spare: Any = None


def _is_inf(x):
    return isinstance(x, float) and x == math.inf


def _larger(x, y):
    # torch: kept on the device until the monitor reads it (one sync per iteration)
    return torch_module().maximum(x, y) if is_torch(x) else max(x, y)


class UnbalancedSinkhorn(Solver):
    """Chizat et al.'s scaling iterations in the log domain, on ``C``'s backend."""

    name = _NAME
    criterion = "potential_change"

    def __init__(self, C, a, b, eps, kappa):
        self.eps, self.kappa = eps, kappa
        self.steps = log_steps(C, a, b)
        self.shape = C.shape

    def init(self, f0=None, g0=None):
        st = self.steps
        n, m = self.shape
        f = st.zeros(n) if f0 is None else f0
        g = st.zeros(m) if g0 is None else g0
        return UnbalancedState(f=f, g=g, f_spare=st.spare(f), g_spare=st.spare(g))

    def step(self, state):
        st, eps, kappa = self.steps, self.eps, self.kappa
        f, _, df = st.row(state.f, state.g, eps, state.f_spare, kappa=kappa, shift=True)
        g, dg = st.col(f, state.g, eps, state.g_spare, kappa=kappa, shift=True)
        state.f_spare, state.f = state.f, f
        state.g_spare, state.g = state.g, g
        state.potential_change = _larger(df, dg) / eps
        state.k += 1
        return state

    def monitor(self, state):
        return {"potential_change": float(state.potential_change)}


def sinkhorn_unbalanced(a, b, C, eps, rho, *, max_iter=10_000, tol=1e-9, f0=None, g0=None,
                        callback=None, progress=False):
    r"""Unbalanced entropic transport with KL-relaxed marginals (log domain).

    Solves

    .. math:: \min_{P \ge 0} \langle C, P\rangle + \varepsilon\,\mathrm{KL}(P | a b^T)
              + \rho\,\mathrm{KL}(P 1 | a) + \rho\,\mathrm{KL}(P^T 1 | b)

    (POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, eps, rho)`` with its
    default ``reg_type="kl"``) by Chizat et al.'s scaling iterations in the
    log domain: ``f_i = eps log a_i - rho/(rho+eps) * eps LSE_j((g_j - C_ij)/eps)``,
    with ``P_ij = exp((f_i + g_j - C_ij)/eps)``.

    Parameters
    ----------
    a, b : array or tensor, shape (n,), (m,)
        Nonnegative finite weights (any masses; zero-mass points are dropped).
    C : array or tensor, shape (n, m)
        Finite cost.
    eps : float
        Entropic regularisation (> 0).
    rho : float
        Marginal relaxation (> 0; ``inf`` gives balanced transport).
    max_iter : int
        Maximum number of iterations.
    tol : float
        Stop when the largest change of a potential in one iteration,
        divided by ``eps`` (i.e. of ``log u``, ``log v``), is ``<= tol``.
    f0, g0 : array or tensor, optional
        Warm-start potentials.
    callback : callable, optional
        ``callback(state) -> bool`` after every iteration; True stops.
        ``state`` is an :class:`UnbalancedState` (``k``, ``f``, ``g``,
        ``potential_change``).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    Result
        ``x`` the plan, ``dual = (f, g)``, ``info`` with ``cost``,
        ``objective``, ``potential_change`` and ``rho``; ``status`` as for
        every solver (``"nonfinite"`` when the potentials become NaN or inf).
    """
    backend_of(_NAME, a=a, b=b, C=C, f0=f0, g0=g0)
    eps = check_positive(eps, "eps", _NAME)
    # rho = inf is balanced transport
    rho = math.inf if _is_inf(rho) else check_positive(rho, "rho", _NAME)
    tol = check_tolerance(tol, "tol", _NAME)
    max_iter = check_positive_int(max_iter, "max_iter", _NAME)
    check_callable(callback, "callback", _NAME)
    kappa = 1.0 if math.isinf(rho) else rho / (rho + eps)
    a, b, C, f0, g0 = problem(a, b, C, f0, g0, _NAME, balanced=False)
    support = Support(a, b, _NAME)
    a, b, C, f0, g0 = support.restrict(a, b, C, f0, g0)
    with support.kernel_threads():
        solver = UnbalancedSinkhorn(C, a, b, eps, kappa)
        state, outcome = run(solver, solver.init(f0, g0), tol=tol, max_iter=max_iter,
                             callback=callback, progress=progress)
        plan = plan_of(C, state.f, state.g, eps, a, b)
    objective = plan.objective
    if not math.isinf(rho):
        objective = objective + rho * (kl_divergence(plan.row, a) + kl_divergence(plan.col, b))
    P, f, g = support.embed(plan.P, state.f, state.g)
    return outcome.result(P, steps={"eps": eps}, dual=(f, g), info={
        "cost": plan.cost, "objective": objective,
        "potential_change": float(state.potential_change), "rho": rho})
