"""The loop shared by all iterative solvers: ``init``/``step`` pairs driven to a tolerance.

A solver provides ``step(state) -> state`` and ``monitor(state) -> dict`` (the
scalars worth recording, including the stopping criterion). :func:`iterate`
runs the steps, records history, stops on convergence, on non-finite values, on
the callback's request or at ``max_iter`` (with a :class:`ConvergenceWarning`).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np


from tikhon._core.loop import ConvergenceWarning  # noqa: E402  TRANSITION: this module goes


@dataclass
class LoopOutcome:
    converged: bool
    n_iter: int
    message: str
    history: dict = field(default_factory=dict)
    elapsed: float = 0.0


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_tolerance(tol, name="tol"):
    """Validate a tolerance: a finite number >= 0."""
    try:
        tol = float(tol)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {tol!r}") from exc
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {tol!r}")
    return tol


def iterate(
    state,
    step,
    monitor,
    *,
    criterion,
    tol,
    max_iter,
    callback=None,
    progress=False,
    check_every=1,
    name="solver",
    warn=True,
):
    """Run ``state = step(state)`` until ``monitor(state)[criterion] <= tol``.

    Parameters
    ----------
    state : object
        The initial state (from the solver's ``init``).
    step : callable
        ``step(state) -> state``; one iteration.
    monitor : callable
        ``monitor(state) -> dict[str, float]``; evaluated every ``check_every``
        iterations and on the last one. Must contain ``criterion``.
    criterion : str
        Key of the stopping criterion in the monitor's dict.
    tol : float
        Stop when the criterion is ``<= tol``.
    max_iter : int
        Maximum number of iterations.
    callback : callable, optional
        ``callback(state) -> bool``, called after every iteration; True stops.
    progress : bool
        Show a tqdm progress bar.
    check_every : int
        Evaluate the monitor every this many iterations (monitoring may cost
        as much as an iteration).
    name : str
        Solver name for messages.
    warn : bool
        Emit a :class:`ConvergenceWarning` when ``max_iter`` is reached.

    Returns
    -------
    state, LoopOutcome
    """
    max_iter = _check_positive_int(max_iter, "max_iter")
    check_every = _check_positive_int(check_every, "check_every")
    tol = check_tolerance(tol)
    history = {"iteration": [], "time": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=name, leave=False)
    t0 = time.perf_counter()
    converged = False
    message = f"{name}: reached max_iter={max_iter} without meeting tol={tol:g} on {criterion}"
    n_iter = 0
    try:
        for k in range(1, max_iter + 1):
            state = step(state)
            n_iter = k
            if k % check_every == 0 or k == max_iter:
                record = monitor(state)
                history["iteration"].append(k)
                history["time"].append(time.perf_counter() - t0)
                for key, value in record.items():
                    history.setdefault(key, []).append(value)
                # +inf is a legitimate value of a recorded objective (an indicator not
                # yet satisfied); NaN anywhere, or a non-finite criterion, means divergence
                bad = [
                    key for key, v in record.items()
                    if math.isnan(float(v)) or (key == criterion and not math.isfinite(float(v)))
                ]
                if bad:
                    message = (
                        f"{name}: stopped at iteration {k}: non-finite "
                        f"{', '.join(bad)} (the iterates diverged or the input is invalid)"
                    )
                    break
                value = float(record[criterion])
                if bar is not None:
                    bar.set_postfix({criterion: f"{value:.2e}"}, refresh=False)
                if value <= tol:
                    converged = True
                    message = f"{name}: converged, {criterion} = {value:.3g} <= tol = {tol:g}"
                    break
            if bar is not None:
                bar.update(1)
            if callback is not None and callback(state):
                message = f"{name}: stopped by the callback at iteration {k}"
                break
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    if warn and not converged and n_iter == max_iter and "max_iter" in message:
        warnings.warn(message, ConvergenceWarning, stacklevel=3)
    history = {key: np.asarray(v, dtype=float) for key, v in history.items()}
    return state, LoopOutcome(converged, n_iter, message, history, elapsed)
