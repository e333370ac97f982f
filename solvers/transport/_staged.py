"""What the balanced Sinkhorn solvers share: eps stages, measured stops, the verified plan.

One :func:`~tikhon._core.loop.run` drives all the eps stages of a solve:

* ``step`` measures the marginal violation on some iterations (the
  relaxation controller says which); once a stage's violation meets its
  target (``1e-2``, or ``tol`` on the last stage), the next ``step`` begins
  the next stage, warm-started from the measured potentials, re-centred;
* ``due`` is "this iteration measured", so the history holds measured values;
* ``done`` is true only on the last stage, and only once the *returned* plan,
  recomputed from the measured potentials (in float64 for NumPy), meets
  ``tol``; when it does not, the solver keeps iterating (the NumPy float32
  kernel restarts the stage in float64; anywhere else the miss is round-off
  and ``state.n_roundoff`` counts it), so ``"converged"`` always describes
  the plan returned;
* ``finish`` keeps the measured plan on convergence and, after a stop while
  over-relaxed (``max_iter``, callback), takes one plain step, so that the
  returned plan is that of Sinkhorn potentials and not an extrapolation.

The potentials are only defined up to ``(f + c, g - c)``, and the iterations
never move ``c`` back once it is set: the first row step, at the largest eps
``eps_0`` (the cost's range), gives ``f`` about ``-2 eps_0 log n`` with
``g = 0``, and the last stage still carries that offset (mean f - mean g =
-20.8 for n = 200 on a unit cost), which costs float32 ``6e-8 |c| / eps`` of
relative precision per plan entry. :func:`centre` removes it at every stage
start and kernel rebuild.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from tikhon._core.arrays import is_torch
from tikhon._core.loop import Solver, State
from tikhon.solvers.transport._plan import plan_of
from tikhon.solvers.transport._relaxation import RelaxState

__all__ = ["IterationAlias", "STAGE_TOL", "VERIFY_SLACK", "cost_range", "eps_schedule", "centre",
           "SinkhornState", "StagedSinkhorn"]

# marginal violation to which the intermediate stages of epsilon scaling are
# solved: a rough solve is enough to warm-start the next, smaller eps
STAGE_TOL = 1e-2
# ratio between consecutive eps of the automatic schedule
_AUTO_FACTOR = 4.0
# the iterations' measure and the returned plan's sum in different orders:
# allow a few ulps of the total mass
VERIFY_SLACK = 1e-14


def cost_range(C):
    """``max C - min C`` as a float (``inf`` when it overflows, without a warning)."""
    if is_torch(C):
        return float((C.max() - C.min()).detach())
    return float(C.max()) - float(C.min())


def eps_schedule(eps, eps_scaling, C_range, warm, where="sinkhorn"):
    """Decreasing eps values ending at ``eps`` (see :func:`~tikhon.solvers.transport.sinkhorn`)."""
    if isinstance(eps_scaling, (bool, np.bool_)):
        if not eps_scaling or warm:
            return [eps]
        k = None
    elif isinstance(eps_scaling, numbers.Integral):
        if eps_scaling < 1:
            raise ValueError(f"{where}: eps_scaling must be True, False or an int >= 1, got {eps_scaling!r}")
        k = int(eps_scaling)
    else:
        raise TypeError(f"{where}: eps_scaling must be a bool or an int, got {eps_scaling!r}")
    if not math.isfinite(C_range):
        raise ValueError(f"{where}: the range of C (max - min) overflows; rescale C")
    start = max(C_range, eps)
    if k is None:
        k = max(1, int(math.ceil(math.log(start / eps) / math.log(_AUTO_FACTOR))) + 1)
    if k == 1 or start <= eps:
        return [eps]
    return [float(x) for x in np.geomspace(start, eps, k)]


def centre(f, g):
    """``(f - c, g + c)`` with ``c = (mean f - mean g) / 2``: the same plan, no drifting offset.

    NumPy arrays are shifted in place (they are the kernels' buffers); tensors
    give new tensors (autograd flows through, and no host read).
    """
    if is_torch(f):
        c = 0.5 * (f.mean() - g.mean())
        return f - c, g + c
    c = 0.5 * (float(f.sum()) / f.size - float(g.sum()) / g.size)
    f -= c
    g += c
    return f, g


class IterationAlias:
    """``state.iteration``: the name the Sinkhorn states' iteration count had before ``k``."""

    @property
    def iteration(self):
        return self.k


@dataclass
class SinkhornState(IterationAlias, State):
    """State of the balanced Sinkhorn solvers, as ``callback(state)`` receives it.

    Attributes
    ----------
    k : int
        Iterations done, over all eps stages (``iteration`` is an alias).
    eps : float
        Regularisation of the current stage.
    stage : int
        Index of the current stage in ``info["eps_schedule"]``.
    marginal_error : float
        Latest measured L1 marginal violation (``inf`` before the first).
    measured : bool
        Whether the latest iteration measured it.
    f, g : array or tensor
        Potentials of the stage (``method="scaling"``: those of the
        stabilised kernel, without the scalings ``u``, ``v``).
    n_roundoff : int
        Checks at which the measured violation met ``tol`` but the returned
        plan's, recomputed, did not (its rounding floor is above ``tol``).
    relax : RelaxState
        The over-relaxation controller's state.
    pending_stage : int or None
        Stage that the next iteration begins (set once a stage met its target).
    plan : Plan or None
        The verified plan, once converged.
    f_prev, g_prev : array or tensor
        The potentials before the latest update (NumPy: the kernels' spare buffers).
    tol, max_iter : float, int
        The loop's tolerance (the last stage's target) and budget (its last
        iteration measures), set when the loop starts.
    """

    eps: float = math.nan
    stage: int = 0
    marginal_error: float = math.inf
    measured: bool = False
    f: Any = None
    g: Any = None
    n_roundoff: int = 0
    relax: RelaxState = None
    pending_stage: Any = None
    plan: Any = None
    f_prev: Any = None
    g_prev: Any = None
    tol: float = 0.0
    max_iter: int = 0


class StagedSinkhorn(Solver):
    """Base of the balanced Sinkhorn solvers (the stage logic and the verified stop).

    Subclasses implement ``init``, ``step`` (calling :meth:`record` with the
    violation on measured iterations: those the relaxation controller picks,
    and the last one of the budget, ``max_iter``, so that the loop's final
    check reads a measured value) and the four views of their potentials:
    :meth:`measured_potentials`, :meth:`keep_measured`, :meth:`plain_step`,
    :meth:`potentials`.
    """

    name = "sinkhorn"
    criterion = "marginal_error"

    def __init__(self, C, a, b, schedule, relaxation):
        self.C, self.a, self.b = C, a, b
        self.schedule = schedule
        self.relaxation = relaxation

    def start(self, state, *, tol, max_iter, check_every):
        state.tol, state.max_iter = tol, max_iter
        return state

    def omega_and_measure(self, state):
        """``(omega of this iteration's column step, whether it measures)``."""
        rx, rs = self.relaxation, state.relax
        omega = rx.column_omega(rs)
        if state.k + 1 == state.max_iter:
            return 1.0, True
        return omega, rx.measuring(rs)

    def last(self, state):
        return state.stage == len(self.schedule) - 1

    def record(self, state, err):
        """Store a measured violation (None: not measured); True when the stage met its target."""
        state.measured = err is not None
        if err is None:
            return False
        state.marginal_error = err
        if not math.isfinite(err):
            return True  # the check of this iteration stops the run
        target = state.tol if self.last(state) else max(state.tol, STAGE_TOL)
        if err <= target:
            if not self.last(state):
                state.pending_stage = state.stage + 1
            return True
        if state.k < state.max_iter:  # the budget's last measurement steers nothing
            self.relaxation.update(state.relax, err)
        return False

    # -- the protocol's hooks ----------------------------------------------------
    def due(self, state, check_every):
        return state.measured

    def monitor(self, state):
        return {"marginal_error": state.marginal_error, "eps": state.eps}

    def done(self, state, record, tol):
        if not self.at_target(state, tol):
            return False
        if self.verify(state, tol):
            return True
        # the measured violation met tol, the recomputed plan's did not: round-off
        state.n_roundoff += 1
        return False

    def at_target(self, state, tol):
        """The latest iteration measured a violation ``<= tol`` on the last stage."""
        return (state.measured and state.pending_stage is None and self.last(state)
                and state.marginal_error <= tol)

    def verify(self, state, tol):
        """Whether the plan of the measured potentials meets ``tol``; it is kept when it does."""
        f, g = self.measured_potentials(state)
        plan = plan_of(self.C, f, g, state.eps, self.a, self.b)
        if plan.marginal_error <= tol + VERIFY_SLACK:
            state.plan = plan
            return True
        return False

    def finish(self, state, status):
        if status == "converged":
            self.keep_measured(state)
        elif status in ("max_iter", "callback") and state.relax.omega != 1.0:
            self.plain_step(state)
        return state

    def final_plan(self, state):
        """``(plan, f, g)`` of the returned potentials (the verified plan when converged)."""
        f, g = self.potentials(state)
        plan = state.plan if state.plan is not None else plan_of(self.C, f, g, state.eps, self.a, self.b)
        return plan, f, g
