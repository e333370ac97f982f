"""The run loop and the solver protocol, on a toy method with a known trajectory."""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from tikhon._core.loop import ConvergenceWarning, Solver, State, run


@dataclass
class HalvingState(State):
    x: float = 1.0
    finished: str = ""


class Halving(Solver):
    """x <- factor * x: the criterion |x| reaches tol after a known number of steps."""

    name = "halving"
    criterion = "size"

    def init(self, x0=1.0):
        return HalvingState(x=x0)

    def step(self, state, *, factor=0.5):
        state.x *= factor
        state.k += 1
        return state

    def monitor(self, state):
        return {"size": abs(state.x), "other": 1.0}

    def finish(self, state, status):
        state.finished = status
        return state


def test_converges_at_the_first_check_below_tol():
    solver = Halving()
    state, out = run(solver, solver.init(), tol=2.0**-10, max_iter=100)
    assert out.status == "converged" and out.converged and out.n_iter == 10
    assert state.finished == "converged"
    np.testing.assert_array_equal(out.history["iteration"], np.arange(1, 11))
    assert out.history["size"][-1] == 2.0**-10 and "size = " in out.message


def test_check_every_and_last_iteration_are_checks():
    solver = Halving()
    _, out = run(solver, solver.init(), tol=2.0**-10, max_iter=100, check_every=4)
    assert out.n_iter == 12  # the first check at or after iteration 10
    np.testing.assert_array_equal(out.history["iteration"], [4, 8, 12])
    with pytest.warns(ConvergenceWarning):
        _, out = run(solver, solver.init(), tol=0.0, max_iter=10, check_every=4)
    np.testing.assert_array_equal(out.history["iteration"], [4, 8, 10])


def test_hyper_is_passed_to_every_step():
    solver = Halving()
    _, out = run(solver, solver.init(), tol=0.1**6, max_iter=100, hyper={"factor": 0.1})
    assert out.n_iter == 6


def test_max_iter_warns_at_the_caller_and_can_be_silenced():
    solver = Halving()
    with pytest.warns(ConvergenceWarning, match="max_iter=3") as rec:
        state, out = run(solver, solver.init(), tol=0.0, max_iter=3)
    assert out.status == "max_iter" and state.finished == "max_iter"
    assert rec[0].filename == __file__
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, out = run(solver, solver.init(), tol=0.0, max_iter=3, warn=False)
    assert out.status == "max_iter"


def test_nan_stops_with_nonfinite_and_inf_objective_does_not():
    class Exploding(Halving):
        def monitor(self, state):
            return {"size": abs(state.x), "objective": math.inf if state.k < 3 else math.nan}

    solver = Exploding()
    _, out = run(solver, solver.init(), tol=0.0, max_iter=100)
    assert out.status == "nonfinite" and out.n_iter == 3 and "objective" in out.message


def test_callback_stops_and_sees_the_state():
    solver = Halving()
    seen = []
    _, out = run(solver, solver.init(), tol=0.0, max_iter=100,
                 callback=lambda s: seen.append(s.x) or s.k == 2)
    assert out.status == "callback" and seen == [0.5, 0.25]
    result = out.result(1.0, steps={"factor": 0.5})
    assert result.status == "callback" and not result.converged and result.steps == {"factor": 0.5}


def test_custom_due_and_done():
    class Odd(Halving):
        def due(self, state, check_every):
            return state.k % 2 == 1

        def done(self, state, record, tol):
            return record["size"] <= tol and state.k > 5

    solver = Odd()
    _, out = run(solver, solver.init(), tol=0.2, max_iter=100)
    assert out.n_iter == 7
    np.testing.assert_array_equal(out.history["iteration"], [1, 3, 5, 7])


@pytest.mark.parametrize("kwargs, match", [
    ({"max_iter": 0}, "max_iter"), ({"max_iter": 2.5}, "max_iter"), ({"tol": -1.0}, "tol"),
    ({"check_every": 0}, "check_every"), ({"callback": 3}, "callback"),
])
def test_bad_loop_arguments(kwargs, match):
    solver = Halving()
    args = {"tol": 0.0, "max_iter": 5, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        run(solver, solver.init(), **args)
