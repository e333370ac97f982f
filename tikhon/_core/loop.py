"""The solver protocol and the one loop that drives every iterative method.

A solver is an object holding the *configuration* of a method (its functionals,
operators and fixed options) with four methods:

``init(...) -> state``
    The initial state: a dataclass of arrays and counters only (subclass of
    :class:`State`), never the configuration.
``step(state, **hyper) -> state``
    One iteration. Hyperparameters (step sizes, thresholds, regularization
    weights) may be passed per call, as floats or as torch tensors that
    require grad; a step never reads a tensor back to the host unless the
    method itself needs a scalar decision (backtracking, adaptive steps).
    The step may update ``state`` in place and returns it.
``monitor(state) -> dict``
    The scalars worth recording at a check, including ``solver.criterion``.
``optimality(x, **hyper)`` (where the method has one)
    The fixed-point residual that vanishes at a solution, for implicit
    differentiation.

and five hooks with defaults: ``start(state, tol=, max_iter=, check_every=)``
(the loop's settings, for methods whose steps must know them: a last iteration
that must measure, stages that aim at ``tol``), ``due(state, check_every)`` (is
this iteration a check?), ``done(state, record, tol)`` (does the record meet the
tolerance?), ``finish(state, status)`` (a last touch to the state once the loop
stopped) and ``describe(record, tol)`` (how a converged criterion reads in
messages).
:func:`run` drives any such object.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from tikhon._core.checks import check_callable, check_positive_int, check_tolerance
from tikhon._core.result import Result

__all__ = ["ConvergenceWarning", "DIVERGENCE_FACTOR", "State", "Solver", "Outcome", "run",
           "warn_at_caller", "warn_unconverged"]

#: A run stops with status ``"diverged"`` when, at a check, the recorded
#: ``objective`` (every objective a solver records is one it minimises) exceeds
#: its first nonzero finite recorded value ``F0`` by more than
#: ``DIVERGENCE_FACTOR * |F0|``. A convergent method never raises its objective
#: by eight orders of magnitude; a too-large step does so geometrically, long
#: before the iterates overflow to inf. The criterion is not watched: a staged
#: method's criterion may legitimately start at rounding level (Sinkhorn's
#: first marginal error at a large eps) and rise by more than that at the next
#: stage.
DIVERGENCE_FACTOR = 1e8


class ConvergenceWarning(UserWarning):
    """A solver reached ``max_iter`` without meeting its tolerance."""


@dataclass
class State:
    """Base of every solver state: ``k`` counts the iterations done."""

    k: int = 0


class Solver:
    """Base of the solver protocol (see the module docstring).

    Subclasses set ``name`` (used in messages) and ``criterion`` (the key of
    ``monitor``'s record that is tested against the tolerance).
    """

    name = "solver"
    criterion = "change"

    def init(self, *args, **kwargs):  # pragma: no cover - the protocol's signature
        raise NotImplementedError(f"{type(self).__name__} does not implement init")

    def step(self, state, **hyper):  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not implement step")

    def monitor(self, state):  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not implement monitor")

    def start(self, state, *, tol, max_iter, check_every):
        """The state to iterate from, told the loop's settings (default: unchanged)."""
        return state

    def due(self, state, check_every):
        """Whether the iteration just done is a check (monitor, history, stopping test)."""
        return state.k % check_every == 0

    def done(self, state, record, tol):
        """Whether ``record`` (from ``monitor``) meets the tolerance."""
        return record[self.criterion] <= tol

    def finish(self, state, status):
        """The state to return once the loop stopped with ``status``."""
        return state

    def describe(self, record, tol):
        """How a met criterion reads in messages, e.g. ``"change = 3.1e-07 <= tol = 1e-06"``."""
        return f"{self.criterion} = {record[self.criterion]:.3g} <= tol = {tol:g}"


@dataclass
class Outcome:
    """How a run ended; :meth:`result` turns it into the solver's :class:`~tikhon.solvers.Result`."""

    status: str
    n_iter: int
    message: str
    history: dict = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def converged(self):
        return self.status == "converged"

    def result(self, x, *, steps=None, dual=None, info=None):
        """The :class:`~tikhon.solvers.Result` of this run (the one place a solver's result is built)."""
        return Result(
            x=x,
            converged=self.converged,
            n_iter=self.n_iter,
            message=self.message,
            history=self.history,
            elapsed=self.elapsed,
            steps={} if steps is None else steps,
            dual=dual,
            info={} if info is None else info,
            status=self.status,
        )


def _caller_stacklevel():
    """``stacklevel`` that points a warning at the first frame outside tikhon."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("tikhon."):
        level += 1
        frame = frame.f_back
    return level


def warn_at_caller(message, category=UserWarning):
    """Warn, pointing at the first frame outside tikhon (the user's call)."""
    warnings.warn(message, category, stacklevel=_caller_stacklevel())


def warn_unconverged(message):
    """Warn with :class:`ConvergenceWarning`, pointing at the user's call."""
    warn_at_caller(message, ConvergenceWarning)


def _is_nan(value):
    return isinstance(value, float) and math.isnan(value)


class _DivergenceWatch:
    """Remembers the first objective; tells when it grew by orders of magnitude."""

    def __init__(self):
        self.objective0 = None

    def check(self, record):
        """The description of the growth that makes ``record`` diverged, or None."""
        F = record.get("objective")
        if F is None or not math.isfinite(F):
            return None
        if self.objective0 is None:
            if F != 0.0:
                self.objective0 = F
        elif F - self.objective0 > DIVERGENCE_FACTOR * abs(self.objective0):
            return f"objective {F:.3g}, first recorded {self.objective0:.3g}"
        return None


def run(solver, state, *, tol, max_iter, callback=None, progress=False, check_every=1,
        hyper=None, warn=True):
    """Run ``solver.step`` from ``state`` until the tolerance, ``max_iter``, NaN or the callback.

    Parameters
    ----------
    solver : Solver
        The method (see the module docstring for the protocol).
    state : State
        From ``solver.init``.
    tol : float
        Tolerance passed to ``solver.done`` (default test:
        ``record[solver.criterion] <= tol``).
    max_iter : int
        Iteration budget; the last iteration is always a check.
    callback : callable, optional
        ``callback(state) -> bool`` after every iteration; True stops.
    progress : bool
        Show a tqdm progress bar.
    check_every : int
        Passed to ``solver.due`` (default: a check every this many iterations).
        A check may cost as much as an iteration, and on a GPU it syncs.
    hyper : dict, optional
        Keyword hyperparameters passed to every ``solver.step``.
    warn : bool
        Emit a :class:`ConvergenceWarning` when ``max_iter`` is reached.

    Returns
    -------
    state, Outcome
        ``Outcome.status`` is ``"converged"``, ``"max_iter"``, ``"nonfinite"``
        (NaN in a record, or a non-finite criterion: the iterates diverged or
        the input is invalid), ``"diverged"`` (the recorded objective grew by
        more than ``DIVERGENCE_FACTOR`` times its first value, see there) or
        ``"callback"``.
    """
    name = solver.name
    criterion = solver.criterion
    max_iter = check_positive_int(max_iter, "max_iter", name)
    check_every = check_positive_int(check_every, "check_every", name)
    tol = check_tolerance(tol, "tol", name)
    check_callable(callback, "callback", name)
    hyper = {} if hyper is None else dict(hyper)
    state = solver.start(state, tol=tol, max_iter=max_iter, check_every=check_every)
    history = {"iteration": [], "time": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=name, leave=False)
    t0 = time.perf_counter()
    status = "max_iter"
    message = None
    last = math.nan
    n_iter = 0
    watch = _DivergenceWatch()
    try:
        for k in range(1, max_iter + 1):
            state = solver.step(state, **hyper)
            n_iter = k
            if k == max_iter or solver.due(state, check_every):
                record = {key: float(v) for key, v in solver.monitor(state).items()}
                history["iteration"].append(k)
                history["time"].append(time.perf_counter() - t0)
                for key, value in record.items():
                    history.setdefault(key, []).append(value)
                last = record.get(criterion, math.nan)
                # +inf is a legitimate value of a recorded objective (an indicator
                # not yet satisfied); NaN anywhere, or a non-finite criterion, is not
                bad = [key for key, v in record.items()
                       if _is_nan(v) or (key == criterion and not math.isfinite(v))]
                if bad:
                    status = "nonfinite"
                    message = (f"{name}: stopped at iteration {k}: non-finite {', '.join(bad)} "
                               "(the iterates diverged or the input is invalid)")
                    break
                grown = watch.check(record)
                if grown is not None:
                    status = "diverged"
                    message = (f"{name}: diverged at iteration {k}: {grown} (grew by more than "
                               f"{DIVERGENCE_FACTOR:.0e}x; is a step size too large?)")
                    break
                if bar is not None:
                    bar.set_postfix({criterion: f"{last:.2e}"}, refresh=False)
                if solver.done(state, record, tol):
                    status = "converged"
                    message = f"{name}: converged, {solver.describe(record, tol)}"
                    break
            if bar is not None:
                bar.update(1)
            if callback is not None and callback(state):
                status = "callback"
                message = f"{name}: stopped by the callback at iteration {k}"
                break
    finally:
        if bar is not None:
            bar.close()
    state = solver.finish(state, status)
    if status == "max_iter":
        message = (f"{name}: reached max_iter={max_iter} without meeting tol={tol:g} on "
                   f"{criterion} (last {last:.3g})")
        if warn:
            warn_unconverged(message)
    elapsed = time.perf_counter() - t0
    history = {key: np.asarray(v, dtype=float) for key, v in history.items()}
    return state, Outcome(status, n_iter, message, history, elapsed)
