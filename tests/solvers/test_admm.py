"""ADMM against scikit-learn's Lasso, and with a fixed-step (plug-and-play) prox."""

import warnings

import numpy as np
import pytest

from tikhon.operators import Identity, MatrixOperator
from tikhon.operators.prox import L1, Box, Functional, SquaredL2
from tikhon.solvers import ConvergenceWarning, admm


pytestmark = pytest.mark.usefixtures("single_numba_thread")


@pytest.fixture(scope="module")
def lasso():
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(0)
    n, p = 40, 60
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[:5] = rng.standard_normal(5)
    y = X @ w + 0.05 * rng.standard_normal(n)
    alpha = 0.05 * np.max(np.abs(X.T @ y)) / n
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=200_000).fit(X, y).coef_
    # sklearn: ||y - Xw||^2 / (2n) + alpha ||w||_1, i.e. n times smaller than ours
    return X, y, alpha * n, ref


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_lasso_exact_x_update(lasso):
    X, y, lam, ref = lasso
    # f(x) = 0.5 ||X x - y||^2 (prox by CG), g = lam ||.||_1, A = identity
    res = admm(SquaredL2(b=y, op=MatrixOperator(X)), lam * L1(), x0=np.zeros(X.shape[1]),
               rho=5.0, tol=1e-10, max_iter=5000)
    assert res.converged, res.message
    assert _rel(res.x, ref) <= 1e-6
    assert res.steps["rho"] == 5.0 and res.steps["step"] is None


def test_lasso_linearized(lasso):
    X, y, lam, ref = lasso
    # f = lam ||x||_1, g(z) = 0.5 ||z - y||^2 with z = X x
    res = admm(lam * L1(), SquaredL2(b=y), MatrixOperator(X), rho=1.0, tol=1e-10, max_iter=20_000)
    assert res.converged, res.message
    assert _rel(res.x, ref) <= 1e-6
    # the multiplier of X x = z is grad g(X x) = X x - y at the optimum
    assert np.abs(res.dual - (X @ res.x - y)).max() <= 1e-6
    h = res.history
    assert h["primal_residual"][-1] <= h["primal_residual"][0]


def test_identity_operator_uses_exact_update(lasso):
    X, y, lam, ref = lasso
    p = X.shape[1]
    res = admm(SquaredL2(b=y, op=MatrixOperator(X)), lam * L1(), Identity((p,)), x0=np.zeros(p),
               rho=5.0, tol=1e-10, max_iter=5000)
    assert res.converged and res.steps["step"] is None
    assert _rel(res.x, ref) <= 1e-6


def test_fixed_step_prox_is_accepted(lasso):
    X, y, lam, ref = lasso
    rho = 4.0

    class FixedSoftThreshold(Functional):
        """Soft thresholding at lam / rho whatever tau (a stand-in for a plug-in denoiser)."""

        fixed_step = True

        def _call(self, x):
            return lam * float(np.abs(x).sum())

        def _prox(self, x, tau):
            return np.sign(x) * np.maximum(np.abs(x) - lam / rho, 0.0)

    res = admm(SquaredL2(b=y, op=MatrixOperator(X)), FixedSoftThreshold(), x0=np.zeros(X.shape[1]),
               rho=rho, tol=1e-10, max_iter=5000)
    assert res.converged
    assert _rel(res.x, ref) <= 1e-6


def test_box_constrained_least_squares_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(1)
    M = rng.standard_normal((25, 10))
    y = rng.standard_normal(25)
    u = cp.Variable(10)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(M @ u - y)), [u >= 0, u <= 0.3]).solve(solver="CLARABEL")
    res = admm(SquaredL2(b=y, op=MatrixOperator(M)), Box(0.0, 0.3), x0=np.zeros(10), rho=2.0,
               tol=1e-9, max_iter=10_000)
    assert res.converged
    assert np.abs(res.info["z"] - u.value).max() <= 1e-6


def test_bad_inputs(lasso):
    X, y, lam, _ = lasso
    f, g = SquaredL2(b=y, op=MatrixOperator(X)), lam * L1()
    x0 = np.zeros(X.shape[1])
    x0[0] = np.inf
    with pytest.raises(ValueError, match="x0"):
        admm(f, g, x0=x0)
    with pytest.raises(ValueError, match="x0"):
        admm(f, g)
    with pytest.raises(ValueError, match="rho"):
        admm(f, g, x0=np.zeros(X.shape[1]), rho=0.0)
    with pytest.raises(ValueError, match="step"):
        admm(f, g, x0=np.zeros(X.shape[1]), step=0.1)
    with pytest.raises(TypeError, match="A"):
        admm(f, g, X, x0=np.zeros(X.shape[1]))
    with pytest.raises(ValueError, match="z0"):
        admm(f, g, x0=np.zeros(X.shape[1]), z0=np.zeros(3))


def test_max_iter_warns_and_callback_stops(lasso):
    X, y, lam, _ = lasso
    f, g = SquaredL2(b=y, op=MatrixOperator(X)), lam * L1()
    with pytest.warns(ConvergenceWarning):
        res = admm(f, g, x0=np.zeros(X.shape[1]), tol=1e-14, max_iter=3)
    assert not res.converged and res.n_iter == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = admm(f, g, x0=np.zeros(X.shape[1]), tol=1e-14, max_iter=50, callback=lambda s: s.k == 2)
    assert res.n_iter == 2 and "callback" in res.message
