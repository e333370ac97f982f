"""Result.status of every solver outside transport: each of the four values, and what code tests."""

import warnings

import numpy as np
import pytest

from tikhon.data import shepp_logan
from tikhon.operators import LinearOperator, MatrixOperator, Radon
from tikhon.operators.prox import L1, L21, NonNegative, SquaredL2
from tikhon.solvers import ConvergenceWarning, Result, admm, chambolle_pock, fista, iht, ista, tv_reconstruction


class Poisoned(LinearOperator):
    """A user's operator that starts returning NaN after ``after`` forward applications."""

    def __init__(self, op, after):
        super().__init__(op.in_shape, op.out_shape, op.dtype)
        self.op, self.after, self.calls = op, after, 0

    def _forward(self, x):
        self.calls += 1
        out = self.op._forward(x)
        return out * np.nan if self.calls > self.after else out

    def _adjoint(self, y):
        return self.op._adjoint(y)

    def norm(self, *args, **kwargs):
        # the step sizes come from the healthy operator; the iterations meet the NaN
        return self.op.norm(*args, **kwargs)


def _lasso(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((20, 40))
    y = X @ (rng.standard_normal(40) * (rng.random(40) < 0.2))
    return X, y


def _solvers(op_wrapper=lambda op: op):
    """(name, run(tol, max_iter, callback)) for each solver on a small problem."""
    X, y = _lasso()
    lam = 0.1 * float(np.abs(X.T @ y).max())

    def data(op=None):
        return SquaredL2(b=y, op=op_wrapper(MatrixOperator(X)) if op is None else op)

    n = 16
    A = Radon((n, n), np.linspace(0, np.pi, 8, endpoint=False))
    sino = A(shepp_logan(n))
    return {
        "ista": lambda **kw: ista(data(), lam * L1(), np.zeros(40), **kw),
        "fista": lambda **kw: fista(data(), lam * L1(), np.zeros(40), **kw),
        "iht": lambda **kw: iht(data(), np.zeros(40), 5, **kw),
        "chambolle_pock": lambda **kw: chambolle_pock(
            op_wrapper(MatrixOperator(X)), SquaredL2(b=y), lam * L1(), check_every=1, **kw),
        "admm": lambda **kw: admm(lam * L1(), SquaredL2(b=y), op_wrapper(MatrixOperator(X)), **kw),
        "tv_reconstruction": lambda **kw: tv_reconstruction(op_wrapper(A), sino, 0.1, check_every=1, **kw),
    }


NAMES = ["ista", "fista", "iht", "chambolle_pock", "admm", "tv_reconstruction"]


@pytest.mark.parametrize("name", NAMES)
def test_converged(name):
    res = _solvers()[name](tol=1e-3, max_iter=20000)
    assert res.status == "converged" and res.converged, res.message


@pytest.mark.parametrize("name", NAMES)
def test_max_iter_warns(name):
    with pytest.warns(ConvergenceWarning, match="max_iter") as record:
        res = _solvers()[name](tol=0.0, max_iter=7)
    assert res.status == "max_iter" and not res.converged and res.n_iter == 7
    # the warning points at this file, the caller, not at tikhon's internals
    assert record[0].filename == __file__


@pytest.mark.parametrize("name", NAMES)
def test_callback(name):
    seen = []

    def stop(state):
        seen.append(state.k)
        return state.k >= 3

    res = _solvers()[name](tol=0.0, max_iter=100, callback=stop)
    assert res.status == "callback" and res.n_iter == 3 and seen == [1, 2, 3]


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_iterates_stop(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a NaN stop is not a max_iter stop
        with np.errstate(invalid="ignore"):
            res = _solvers(lambda op: Poisoned(op, after=5))[name](tol=0.0, max_iter=200)
    assert res.status == "nonfinite" and not res.converged, res.message
    assert res.n_iter < 200 and "non-finite" in res.message


def test_status_and_converged_must_agree():
    with pytest.raises(ValueError, match="status"):
        Result(x=None, converged=True, n_iter=1, message="", status="max_iter")
    with pytest.raises(ValueError, match="status"):
        Result(x=None, converged=False, n_iter=1, message="", status="exploded")


def test_nonneg_tv_state_is_the_pdhg_state():
    n = 16
    A = Radon((n, n), np.linspace(0, np.pi, 8, endpoint=False))
    states = []
    # one state object per solver, updated in place, with the dual blocks [p, q]
    res = tv_reconstruction(A, A(shepp_logan(n)), 0.1, max_iter=5000,
                            callback=lambda s: states.append((s.k, s.y[0].shape, s.y[1].shape)) or False)
    assert states[0] == (1, A.out_shape, (2, n, n))
    assert isinstance(res.dual, tuple) and res.dual[1].shape == (2, n, n)
    assert NonNegative()(res.x) == 0.0
    # the TV dual is that of grad itself: |q_i| <= lam
    assert float(L21(axis=0).conj(res.dual[1] / 0.1)) == 0.0


@pytest.mark.parametrize("name", ["chambolle_pock", "tv_reconstruction"])
def test_callback_stop_between_checks(name):
    X, y = _lasso()
    n = 16
    A = Radon((n, n), np.linspace(0, np.pi, 8, endpoint=False))
    stop = lambda s: s.k == 3  # noqa: E731
    if name == "chambolle_pock":
        res = chambolle_pock(MatrixOperator(X), SquaredL2(b=y), L1(), tol=0.0, max_iter=100,
                             check_every=5, callback=stop)
    else:
        res = tv_reconstruction(A, A(shepp_logan(n)), 0.1, tol=0.0, max_iter=100, check_every=5,
                                callback=stop)
        # the residual reported is that of the iterate returned (no check happened)
        with pytest.warns(ConvergenceWarning):
            checked = tv_reconstruction(A, A(shepp_logan(n)), 0.1, tol=0.0, max_iter=3, check_every=1)
        assert res.info["residual"] == pytest.approx(checked.history["residual"][-1], rel=1e-12)
    assert res.status == "callback" and res.n_iter == 3
    assert len(res.history["iteration"]) == 0  # stopped before the first check
