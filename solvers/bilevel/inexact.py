"""Inexact hypergradient descent on a bilevel problem: MAID and fixed accuracy schedules.

Both methods are solvers of the protocol of ``tikhon._core.loop`` (one
``step`` is one outer iteration in ``theta``) driven by the one ``run`` loop,
and count their cost as the lower-level iterations they spend (each solve
warm-started from the previous ``x``) and the CG iterations of the
hypergradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tikhon._core.arrays import is_torch
from tikhon._core.checks import (
    check_callable,
    check_choice,
    check_int,
    check_interval,
    check_positive,
    check_positive_int,
    check_tolerance,
)
from tikhon._core.loop import Outcome, Solver, State, run, warn_unconverged

from .implicit import (
    _as_tensor,
    _check_levels,
    _check_same_kind,
    _check_theta,
    _hypergradient,
    _norm,
)

__all__ = ["inexact_gradient_descent", "maid"]


@dataclass
class _BilevelState(State):
    theta: object = None
    x: object = None  # the lower-level iterate at theta
    x_eps: float = math.inf  # the accuracy x was solved to
    q: object = None  # the last adjoint, CG's warm start
    eps: float = 0.1
    delta: float = 0.1
    beta: float = 0.0  # MAID's step-size guess
    loss: float = math.nan  # f(x) at theta
    grad_norm: float = math.nan  # ||p|| of the last hypergradient
    bound: float = math.nan  # its error bound omega
    step: float = 0.0  # the step of the last (trial) update
    accepted: bool = False
    n_lower: int = 0
    n_cg: int = 0
    lower_converged: bool = True  # every lower solve so far met its eps
    exhausted: bool = False  # the budget ran out
    diverged: str = ""  # why a fixed step is deemed to have diverged ("" while it has not)
    estimates: object = None
    failed_trials: list = field(default_factory=list)  # x of the last failed line search's trials
    n_early_rejected: int = 0  # line-search trials abandoned once their rejection was certain
    path: list = field(default_factory=list)  # theta after each iteration (NumPy)


class _InexactDescent(Solver):
    """What MAID and the fixed schedules share: the lower solves, the hypergradient, the records."""

    criterion = "stationarity"

    def __init__(self, upper, lower, *, budget, lower_max_iter, cg_max_iter):
        self.upper, self.lower = upper, lower
        self.budget = budget
        self.lower_max_iter = lower_max_iter
        self.cg_max_iter = cg_max_iter
        self.tol = 0.0

    def start(self, state, *, tol, max_iter, check_every):
        # the step tests convergence right after the hypergradient, so that the
        # theta returned is the one the criterion certifies
        self.tol = tol
        return state

    def _certified(self, state):
        """Whether ``||p|| + omega <= tol`` at ``state.theta`` (the run will stop as converged)."""
        return state.grad_norm + state.bound <= self.tol

    def _begin_step(self, state):
        state.accepted, state.step = False, 0.0

    def init(self, theta0, eps, delta, beta=0.0):
        state = _BilevelState(theta=theta0, eps=eps, delta=delta, beta=beta)
        state.path.append(_host(theta0))
        self._solve_at(state, state.theta, None)
        if state.x is not None:
            # torch would mix a float32 theta with a float64 x silently
            _check_same_kind(theta0, state.x, "lower.solve(theta0).x", self.name)
        return state

    def _lower(self, state, theta, x0, stop=None):
        """A lower solve at ``state.eps`` within the budget; ``None`` when it ran out.

        ``stop`` (see :meth:`LowerLevel.solve`) is passed when not None; a solve it
        ended early is returned as it is (``stopped``).
        """
        left = self.budget - state.n_lower
        if left <= 0:
            state.exhausted = True
            return None
        extra = {} if stop is None else {"stop": stop}
        sol = self.lower.solve(theta, eps=state.eps, max_iter=min(self.lower_max_iter, left),
                               x0=x0, **extra)
        state.n_lower += int(sol.n_iter)
        if _stopped(sol):
            return sol
        if not sol.converged:
            if state.n_lower >= self.budget:
                state.exhausted = True
                return None
            state.lower_converged = False
        return sol

    def _solve_at(self, state, theta, x0):
        """Make ``state.x`` a solution at ``state.theta`` to ``state.eps`` (reused when it is)."""
        if state.x is not None and state.x_eps <= state.eps:
            return state.x
        sol = self._lower(state, theta, x0)
        if sol is None:
            return None
        state.x, state.x_eps = sol.x, state.eps
        state.loss = float(self.upper.value(state.x))
        return state.x

    def _hypergradient(self, state):
        """The hypergradient at ``state``; ``None`` when it or the loss is not finite."""
        hg = _hypergradient(self.upper, self.lower, state.theta, state.x, tol=state.delta,
                            rtol=0.0, max_iter=self.cg_max_iter, q0=state.q,
                            estimates=state.estimates, where=self.name)
        state.n_cg += hg.n_iter
        state.q, state.estimates = hg.q, hg.estimates
        state.grad_norm, state.bound = _norm(hg.grad), hg.bound
        if not all(map(math.isfinite, (state.grad_norm, state.bound, state.loss))):
            return None  # the run loop stops on the NaN record: no solve more
        return hg.grad

    def monitor(self, state):
        return {
            "loss": state.loss,
            "eps": state.eps,
            "delta": state.delta,
            "step": state.step,
            "accepted": float(state.accepted),
            "n_lower": float(state.n_lower),
            "n_cg": float(state.n_cg),
            "grad_norm": state.grad_norm,
            "bound": state.bound,
            # ||grad F(theta)|| <= ||p|| + omega: a (estimated) bound on the true hypergradient
            "stationarity": state.grad_norm + state.bound,
        }

    def _end_step(self, state):
        state.k += 1
        state.path.append(_host(state.theta))
        return state


class _MAID(_InexactDescent):
    name = "maid"
    # warm start of backtracking trial i > 0: "previous" = trial i - 1's solution, whose
    # theta is rho-times closer than the accepted one ((1 - rho) t ||p|| against rho t ||p||);
    # "accepted" = the accepted x~, as the authors' MAID.py (measured in the A3 notes)
    trial_warm_start = "previous"
    # after a failed line search theta stays and the next one tries nearly the same thetas
    # (the same beta rho^i, a p recomputed at a smaller eps): trial i starts from the failed
    # search's trial i
    reuse_failed_trials = True

    def __init__(self, upper, lower, *, rho, tau, eta, nu, max_backtrack, max_shrink,
                 early_reject=True, **kwargs):
        super().__init__(upper, lower, **kwargs)
        self.rho, self.tau, self.eta, self.nu = rho, tau, eta, nu
        self.max_backtrack, self.max_shrink = max_backtrack, max_shrink
        # a lower level whose solve takes no stop keyword solves every trial in full
        self.early_reject = early_reject and _takes_stop(lower)

    def _rejection_certain(self, threshold):
        """``stop(x, bound)`` for a trial's solve: True once the trial must fail its test.

        The final ``x~+`` would be within ``eps`` of ``x*``, so, ``f`` being
        convex with an ``L_f``-Lipschitz gradient, its certified value ``f(x~+) + ||grad f(x~+)|| eps + L_f eps^2 / 2``
        is at least ``f(x*)``, and ``f(x*) >= f(x) - ||grad f(x)|| bound`` at any
        iterate ``x`` with ``||x - x*|| <= bound``: once that exceeds
        ``threshold`` the test fails whatever the rest of the solve does. The
        check (an upper-level value and gradient) runs when the bound has halved
        since the last one: a few per solve, not one per iteration. (Waiting
        instead for the bound at which the test would fail with ``f`` and
        ``||grad f||`` as they were checks less but later: on the TV example
        827 lower-level iterations to the grid optimum against 768.)
        """
        upper = self.upper
        due = [math.inf]

        def stop(x, bound):
            if bound > due[0]:
                return False
            due[0] = bound / 2
            return float(upper.value(x)) - _norm(upper.grad(x)) * bound > threshold

        return stop

    def step(self, state):
        self._begin_step(state)
        # (1)-(4): a hypergradient whose error bound leaves it a descent direction
        for _ in range(self.max_shrink + 1):
            if self._solve_at(state, state.theta, state.x) is None:
                return self._end_step(state)
            p = self._hypergradient(state)
            if p is None or self._certified(state):
                return self._end_step(state)
            descent = state.bound <= (1 - self.eta) * state.grad_norm
            if descent:
                break
            # the next pass re-solves x to the smaller eps before it is used
            state.eps *= self.tau
            state.delta *= self.tau
        if not descent:
            # max_shrink ran out: p is not certified a descent direction, and x is
            # less accurate than the shrunk eps; the iteration is rejected and the
            # next one starts by solving to that eps
            return self._end_step(state)
        # (5): inexact Armijo backtracking; f convex, so f(x*) >= f(x~) - ||grad f(x~)|| eps
        eps = state.eps  # >= state.x_eps: x was solved to at least this accuracy
        f_old = state.loss
        old_lower = f_old - _norm(self.upper.grad(state.x)) * eps
        decrease = self.eta**2 * state.grad_norm**2
        x0, failed = state.x, state.failed_trials if self.reuse_failed_trials else []
        state.failed_trials = []
        for i in range(self.max_backtrack):
            t = state.beta * self.rho**i
            theta_new = state.theta - t * p
            state.step = t
            threshold = old_lower - t * decrease  # the trial passes when its bound is <= this
            stop = self._rejection_certain(threshold) if self.early_reject else None
            sol = self._lower(state, theta_new, failed[i] if i < len(failed) else x0, stop)
            if sol is None:
                return self._end_step(state)
            state.failed_trials.append(sol.x)
            if self.trial_warm_start == "previous":
                x0 = sol.x
            if _stopped(sol):
                state.n_early_rejected += 1
                continue
            f_new = float(self.upper.value(sol.x))
            new_upper = (f_new + _norm(self.upper.grad(sol.x)) * eps
                         + self.upper.lipschitz * eps**2 / 2)
            if new_upper <= threshold:
                state.theta, state.x, state.x_eps, state.loss = theta_new, sol.x, eps, f_new
                state.accepted = True
                break
        if state.accepted:
            state.failed_trials = []  # theta moved: they are of no use
            state.beta = state.step * 10 / 9
            state.eps *= self.nu
            state.delta *= self.nu
        else:
            state.eps *= self.tau
            state.delta *= self.tau
        return self._end_step(state)


_SCHEDULES = ("geometric", "quadratic", "cubic")


def _scheduled(schedule, eps0, k):
    """The accuracy of iteration ``k`` (from 0), as in Pedregosa's HOAG experiments."""
    if schedule == "geometric":
        return eps0 * 0.9**k
    return eps0 / (k + 1) ** (2 if schedule == "quadratic" else 3)


class _FixedSchedule(_InexactDescent):
    name = "inexact_gradient_descent"

    def __init__(self, upper, lower, *, schedule, eps0, delta0, step, **kwargs):
        super().__init__(upper, lower, **kwargs)
        self.schedule, self.eps0, self.delta0, self.step_size = schedule, eps0, delta0, step

    def step(self, state):
        self._begin_step(state)
        p = self._hypergradient(state)
        if p is None or self._certified(state):
            return self._end_step(state)
        state.eps = _scheduled(self.schedule, self.eps0, state.k + 1)
        state.delta = _scheduled(self.schedule, self.delta0, state.k + 1)
        theta_new = state.theta - self.step_size * p
        sol = self._lower(state, theta_new, state.x)
        state.step = self.step_size
        state.accepted = sol is not None  # a spent budget leaves theta where x was solved
        if sol is not None:
            state.theta, state.x, state.x_eps = theta_new, sol.x, state.eps
            state.loss = float(self.upper.value(sol.x))
            if not sol.converged:
                # without a line search, the only sign of a step too large that a
                # bounded loss gives: theta ran where the lower level is too
                # ill-conditioned to solve (each further solve would spend
                # lower_max_iter iterations)
                state.diverged = (f"the lower-level solve after the step at iteration "
                                  f"{state.k + 1} stopped at lower_max_iter="
                                  f"{self.lower_max_iter} before eps={state.eps:.3g} "
                                  f"(theta ran to max |theta| = "
                                  f"{float(state.theta.abs().max()):.3g}; is the step too large, "
                                  "or lower_max_iter too small?)")
        return self._end_step(state)


def _stopped(sol):
    """Whether a lower solve was ended by ``stop`` (a solution without the field was not)."""
    return bool(getattr(sol, "stopped", False))


def _takes_stop(lower):
    """Whether ``lower.solve`` names a ``stop`` keyword (``**kwargs`` may forward it nowhere)."""
    import inspect

    try:
        params = inspect.signature(lower.solve).parameters
    except (TypeError, ValueError):  # a builtin or C-implemented solve: no signature
        return False
    return "stop" in params


def _host(theta):
    return theta.detach().cpu().numpy().copy()


def _drive(solver, state, *, where, tol, max_iter, callback, progress):
    """Run ``solver``; a spent budget stops it as ``"max_iter"`` with a warning."""
    user = check_callable(callback, "callback", where)

    def stop(s):
        # the user's callback sees every iteration, the one that spent the budget included
        halt = user is not None and bool(user(s))
        return s.exhausted or bool(s.diverged) or halt

    if state.exhausted:  # the initial solve spent the budget: no iteration, the keys all the same
        keys = ("iteration", "time", *solver.monitor(state))
        outcome = Outcome("callback", 0, "", {key: np.zeros(0) for key in keys})
    else:
        state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=stop,
                             progress=progress)
    if state.exhausted and outcome.status in ("callback", "max_iter"):
        message = (f"{where}: spent the budget of {solver.budget} lower-level iterations after "
                   f"{outcome.n_iter} outer iterations without meeting tol={tol:g} on "
                   f"{solver.criterion}")
        warn_unconverged(message)
        outcome = Outcome("max_iter", outcome.n_iter, message, outcome.history, outcome.elapsed)
    elif state.diverged and outcome.status == "callback":
        message = f"{where}: diverged at iteration {outcome.n_iter}: {state.diverged}"
        outcome = Outcome("diverged", outcome.n_iter, message, outcome.history, outcome.elapsed)
    return state, outcome


def _result(state, outcome, backend, lower_converged_note):
    theta = state.theta.detach()
    x = state.x.detach() if state.x is not None else None
    if backend == "numpy":
        theta = theta.cpu().numpy()
        x = None if x is None else x.cpu().numpy()
    info = {
        "x": x,
        "theta_path": np.stack(state.path),
        "n_lower": state.n_lower,
        "n_cg": state.n_cg,
        "n_early_rejected": state.n_early_rejected,
        "eps": state.eps,
        "delta": state.delta,
        "lower_converged": state.lower_converged,
        "estimates": None if state.estimates is None else {
            "B": state.estimates.B, "L_B": state.estimates.L_B, "L_A": state.estimates.L_A},
    }
    if not state.lower_converged:
        info["note"] = lower_converged_note
    return outcome.result(theta, steps={"beta": state.beta, "step": state.step}, info=info)


_NOTE = ("a lower-level solve stopped at lower_max_iter before its eps: the bounds of the "
         "iterations after it are not guaranteed (raise lower_max_iter)")


def _common(where, upper, lower, theta0, eps0, delta0, budget, tol, max_iter, lower_max_iter,
            cg_max_iter):
    upper, lower = _check_levels(upper, lower, where)
    backend = "torch" if is_torch(theta0) else "numpy"
    theta0 = _check_theta(theta0, lower, where)
    theta0 = _as_tensor(theta0).clone()
    eps0 = check_positive(eps0, "eps0", where)
    delta0 = check_positive(delta0, "delta0", where)
    budget = check_positive_int(budget, "budget", where)
    tol = check_tolerance(tol, "tol", where)
    max_iter = check_positive_int(max_iter, "max_iter", where)
    lower_max_iter = check_positive_int(lower_max_iter, "lower_max_iter", where)
    cg_max_iter = check_positive_int(cg_max_iter, "cg_max_iter", where)
    common = {"budget": budget, "lower_max_iter": lower_max_iter, "cg_max_iter": cg_max_iter}
    return upper, lower, backend, theta0, eps0, delta0, budget, tol, max_iter, common


def maid(upper, lower, theta0, *, eps0=0.1, delta0=0.1, beta0=0.1, rho=0.9, tau=0.5, eta=1e-4,
         nu=1.05, budget=100_000, tol=1e-8, max_iter=10_000, max_backtrack=10, max_shrink=30,
         lower_max_iter=100_000, cg_max_iter=1000, early_reject=True, callback=None,
         progress=True):
    r"""Learn ``theta`` by MAID, the method of adaptive inexact descent of Salehi et al.

    Each outer iteration

    1. solves the lower level at ``theta`` to ``||x~ - x*|| <= eps``
       (warm-started from the previous ``x~``);
    2. solves ``Hess_xx g(x~) q = grad f(x~)`` by CG to the residual ``delta``
       and forms the hypergradient ``p = -d2_{theta x} g(x~)^T q`` with its
       error bound ``omega`` (see :func:`~tikhon.solvers.bilevel.hypergradient`);
    3. stops as converged when ``||p|| + omega <= tol`` (before any step, so
       the ``theta`` returned is the one certified); while ``omega > (1 -
       eta) ||p||``, shrinks ``eps, delta <- tau (eps, delta)`` and repeats
       1-2 (at most ``max_shrink`` times); if the bound still fails, ``p`` is
       not certified a descent direction: the iteration is rejected (no line
       search, ``theta`` kept) and the next one solves to the shrunk
       ``eps``;
    4. backtracks ``theta+ = theta - beta rho^i p``, ``i = 0, 1, ...``, solving
       the lower level at each trial to ``eps`` (trial 0 warm-started from
       ``x~``, trial ``i`` from trial ``i - 1``'s solution, or, after a failed
       line search at the same ``theta``, from that search's trial ``i``:
       the closest solutions at hand), and accepts the first trial
       with ``f(x~+) + ||grad f(x~+)|| eps + L_f eps^2 / 2 - f(x~) + ||grad
       f(x~)|| eps <= -beta rho^i eta^2 ||p||^2`` (an upper bound of the new
       loss against a lower bound of the old: the true upper loss decreases at
       every accepted step; the lower bound assumes ``f`` convex, as the
       squared error and the cross-entropy are). With ``early_reject`` a
       trial's solve is abandoned as soon as its rejection is certain: at an
       iterate ``x`` with ``||x - x*|| <= b``, ``f(x) - ||grad f(x)|| b`` is a
       lower bound (``f`` convex) of the left side's new value whatever
       ``x~+`` the full solve would reach (``grad f`` being
       ``L_f``-Lipschitz), so once it fails the test the trial is rejected
       without solving further: the decision its full solve would have made,
       when that reaches ``eps``, at a fraction of the iterations. Later
       trials then start from the unfinished point, so the run is not the
       one of ``early_reject=False`` step for step;
    5. on acceptance sets ``beta <- (10/9) beta rho^i`` and ``eps, delta <- nu
       (eps, delta)``; after ``max_backtrack`` rejected trials keeps ``theta``
       and shrinks ``eps, delta <- tau (eps, delta)``.

    Parameters
    ----------
    upper : UpperLevel
        The upper-level loss ``f`` (convex, with ``lipschitz`` its gradient's
        Lipschitz constant ``L_f``).
    lower : LowerLevel
        The lower-level problem, its ``solve`` warm-started from the previous
        ``x``.
    theta0 : numpy.ndarray or torch.Tensor
        The initial parameters, 1-D with ``lower.n_params`` entries (float64).
        NumPy gives a NumPy result; a tensor, a tensor on its device.
    eps0 : float
        Initial lower-level accuracy ``eps`` (a bound on ``||x~ - x*||``).
    delta0 : float
        Initial CG residual ``delta``.
    beta0 : float
        Initial step size.
    rho : float
        Backtracking factor, in (0, 1).
    tau : float
        Accuracy shrink factor, in (0, 1).
    eta : float
        Sufficient-decrease and bound parameter, in (0, 1).
    nu : float
        Accuracy growth factor after an accepted step, at least 1.
    budget : int
        The most lower-level iterations spent in all (the initial solve, the
        solves of the hypergradients and of every backtracking trial): the
        measure of cost. Every solve is capped at what is left; when it runs
        out the run stops with ``status="max_iter"`` and a
        :class:`~tikhon.solvers.ConvergenceWarning`, ``theta`` being the last
        accepted one.
    tol : float
        Stop as converged when ``||p|| + omega <= tol``, an (estimated) bound
        on the norm of the true hypergradient at the ``theta`` returned.
    max_iter : int
        Most outer iterations (status ``"max_iter"``).
    max_backtrack : int
        Trials of one line search.
    max_shrink : int
        Most shrinks of ``eps, delta`` in step 3 of one iteration.
    lower_max_iter : int
        Most iterations of one lower-level solve.
    cg_max_iter : int
        Most CG iterations of one hypergradient.
    early_reject : bool
        Abandon a line-search trial's lower solve once its rejection is
        certain (step 4; needs ``lower.solve`` to take a ``stop`` keyword, as
        the problems of this module do; others solve every trial in full).
        False solves every trial to ``eps``, as the authors' code.
    callback : callable, optional
        ``callback(state) -> bool`` after every outer iteration (the state has
        ``theta``, ``x``, ``eps``, ``delta``, ``beta``, ``loss``, ``n_lower``,
        ``n_cg``); True stops.
    progress : bool
        Show a progress bar over the outer iterations.

    Returns
    -------
    Result
        ``x`` is the learned ``theta``; ``history`` holds per outer iteration
        ``loss`` (``f(x~)`` at the iteration's ``theta``), ``eps``, ``delta``
        (after the iteration's updates), ``step`` (the accepted step, the
        last rejected trial, or 0 when no trial ran: converged, bound test
        failed, budget spent), ``accepted`` (1 or 0), ``n_lower`` and ``n_cg``
        (cumulative lower-level and CG iterations, the initial solve
        included), ``grad_norm`` (``||p||``), ``bound`` (``omega``),
        ``stationarity`` (``||p|| + omega``), ``iteration`` and ``time``;
        ``info`` holds ``x`` (the lower-level solution at ``theta``),
        ``theta_path`` (``theta`` after each iteration, the initial one first,
        one row each), the totals ``n_lower`` and ``n_cg``,
        ``n_early_rejected`` (trials abandoned by ``early_reject``), the final ``eps``
        and ``delta``, ``estimates`` (the bound's constants) and
        ``lower_converged`` (whether every lower solve met its ``eps``);
        ``steps`` holds the final ``beta``. When the initial solve spends the
        whole budget, ``n_iter`` is 0, every history key is an empty array
        and ``info["x"]`` is None.

    Raises
    ------
    ValueError
        ``theta0`` not 1-D with ``lower.n_params`` entries, a non-positive
        ``eps0``, ``delta0``, ``beta0`` or budget, ``rho``, ``tau``, ``eta``
        outside (0, 1), ``nu < 1``, an ``upper.lipschitz`` that is missing,
        negative or not finite, ``lower.strong_convexity`` not > 0.
    TypeError
        ``upper`` or ``lower`` of the wrong kind, a callback that is not callable,
        a lower-level solution of another dtype or device than ``theta0``.

    References
    ----------
    M. S. Salehi, S. Mukherjee, L. Roberts and M. J. Ehrhardt, "An adaptively
    inexact first-order method for bilevel optimization with application to
    hyperparameter learning", SIAM J. Math. Data Sci., 2025 (arXiv:2308.10098).
    """
    where = "maid"
    upper, lower, backend, theta0, eps0, delta0, budget, tol, max_iter, common = _common(
        where, upper, lower, theta0, eps0, delta0, budget, tol, max_iter, lower_max_iter,
        cg_max_iter)
    beta0 = check_positive(beta0, "beta0", where)
    rho = check_interval(rho, "rho", where, 0, 1, open_lo=True, open_hi=True)
    tau = check_interval(tau, "tau", where, 0, 1, open_lo=True, open_hi=True)
    eta = check_interval(eta, "eta", where, 0, 1, open_lo=True, open_hi=True)
    nu = check_interval(nu, "nu", where, 1, math.inf)
    max_backtrack = check_positive_int(max_backtrack, "max_backtrack", where)
    max_shrink = check_int(max_shrink, "max_shrink", where, minimum=0)
    if not isinstance(early_reject, (bool, np.bool_)):
        raise TypeError(f"{where}: early_reject must be a bool, got {type(early_reject).__name__}")
    solver = _MAID(upper, lower, rho=rho, tau=tau, eta=eta, nu=nu, max_backtrack=max_backtrack,
                   max_shrink=max_shrink, early_reject=bool(early_reject), **common)
    state = solver.init(theta0, eps0, delta0, beta0)
    state, outcome = _drive(solver, state, where=where, tol=tol, max_iter=max_iter,
                            callback=callback, progress=progress)
    return _result(state, outcome, backend, _NOTE)


def inexact_gradient_descent(upper, lower, theta0, *, step, schedule="geometric", eps0=0.1,
                             delta0=None, budget=100_000, tol=1e-8, max_iter=10_000,
                             lower_max_iter=100_000, cg_max_iter=1000, callback=None,
                             progress=True):
    r"""Learn ``theta`` by inexact hypergradient descent with an a priori accuracy schedule.

    The baseline MAID is measured against (HOAG-style, Pedregosa 2016, with a
    fixed step): iteration ``k = 0, 1, ...`` takes the hypergradient ``p_k``
    at the lower-level solution of accuracy ``eps_k`` with CG residual
    ``delta_k`` (see :func:`~tikhon.solvers.bilevel.hypergradient`), then
    ``theta <- theta - step p_k``, and solves the lower level at the new
    ``theta`` to ``eps_{k+1}``, warm-started from the previous ``x``. The
    schedules are ``eps_k = eps0 0.9^k`` (``"geometric"``), ``eps0 / (k +
    1)^2`` (``"quadratic"``) and ``eps0 / (k + 1)^3`` (``"cubic"``), the same
    for ``delta_k`` from ``delta0``. No line search: a step too large for the
    hypergradient's unknown Lipschitz constant oscillates, or diverges. The
    upper loss of a bounded-output problem stays bounded as ``theta`` runs
    off, so divergence shows as ``theta`` reaching where the lower level is
    too ill-conditioned to solve: the run stops with status ``"diverged"``
    when the lower-level solve after a step stops at ``lower_max_iter``
    before its ``eps`` (a too-small ``lower_max_iter`` reads the same; the
    message says both), and ``"nonfinite"`` when a value becomes NaN. The
    convergence test comes before the step, as in :func:`maid`.

    Parameters
    ----------
    upper : UpperLevel
        The upper-level loss ``f``.
    lower : LowerLevel
        The lower-level problem.
    theta0 : numpy.ndarray or torch.Tensor
        The initial parameters, 1-D with ``lower.n_params`` entries.
    step : float
        The fixed step size.
    schedule : {"geometric", "quadratic", "cubic"}
        How the accuracies decrease.
    eps0 : float
        Lower-level accuracy of the first iteration.
    delta0 : float, optional
        CG residual of the first iteration (default ``eps0``).
    budget : int
        The most lower-level iterations spent in all; when it runs out the run
        stops with ``status="max_iter"`` and a
        :class:`~tikhon.solvers.ConvergenceWarning`.
    tol : float
        Stop as converged when ``||p|| + omega <= tol``.
    max_iter : int
        Most outer iterations.
    lower_max_iter : int
        Most iterations of one lower-level solve.
    cg_max_iter : int
        Most CG iterations of one hypergradient.
    callback : callable, optional
        ``callback(state) -> bool`` after every outer iteration; True stops.
    progress : bool
        Show a progress bar over the outer iterations.

    Returns
    -------
    Result
        As :func:`~tikhon.solvers.bilevel.maid`'s: ``x`` is the learned
        ``theta``, ``history`` has the same records per outer iteration
        (``accepted`` 1, or 0 for a last iteration the budget cut short,
        ``step`` the fixed step, ``loss`` at the new
        ``theta``, ``grad_norm`` and ``bound`` of the hypergradient the
        iteration stepped along; a converged last iteration takes no step:
        ``accepted`` 0, ``step`` 0).

    Raises
    ------
    ValueError
        ``theta0`` of the wrong shape, a non-positive ``step``, ``eps0``,
        ``delta0`` or budget, an unknown ``schedule``, an ``upper.lipschitz``
        that is missing, negative or not finite, ``lower.strong_convexity``
        not > 0.
    TypeError
        ``upper`` or ``lower`` of the wrong kind, a lower-level solution of
        another dtype or device than ``theta0``.

    References
    ----------
    F. Pedregosa, "Hyperparameter optimization with approximate gradient",
    ICML 2016.

    M. S. Salehi, S. Mukherjee, L. Roberts and M. J. Ehrhardt, "An adaptively
    inexact first-order method for bilevel optimization with application to
    hyperparameter learning", SIAM J. Math. Data Sci., 2025 (arXiv:2308.10098).
    """
    where = "inexact_gradient_descent"
    delta0 = eps0 if delta0 is None else delta0
    upper, lower, backend, theta0, eps0, delta0, budget, tol, max_iter, common = _common(
        where, upper, lower, theta0, eps0, delta0, budget, tol, max_iter, lower_max_iter,
        cg_max_iter)
    step = check_positive(step, "step", where)
    schedule = check_choice(schedule, _SCHEDULES, "schedule", where)
    solver = _FixedSchedule(upper, lower, schedule=schedule, eps0=eps0, delta0=delta0, step=step,
                            **common)
    state = solver.init(theta0, eps0, delta0)
    state, outcome = _drive(solver, state, where=where, tol=tol, max_iter=max_iter,
                            callback=callback, progress=progress)
    return _result(state, outcome, backend, _NOTE)
