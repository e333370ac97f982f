"""ISTA, FISTA and IHT against scikit-learn's Lasso and exact sparse recovery."""

import warnings

import numpy as np
import pytest

from tikhon.operators import MatrixOperator
from tikhon.operators.prox import L1, Functional, SquaredL2
from tikhon.solvers import ConvergenceWarning, fista, iht, ista
from tikhon.solvers.first_order import ProximalGradient


pytestmark = pytest.mark.usefixtures("single_numba_thread")


def _lasso_problem(n=40, p=80, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[:6] = rng.standard_normal(6)
    y = X @ w + 0.05 * rng.standard_normal(n)
    alpha = 0.05 * np.max(np.abs(X.T @ y)) / n
    return X.astype(dtype), y.astype(dtype), alpha


@pytest.fixture(scope="module")
def lasso():
    from sklearn.linear_model import Lasso

    X, y, alpha = _lasso_problem()
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=200_000).fit(X, y).coef_
    # sklearn minimises ||y - Xw||^2 / (2n) + alpha ||w||_1; times n this is
    # 0.5 ||Xw - y||^2 + (n alpha) ||w||_1, the same minimiser
    f = SquaredL2(b=y, op=MatrixOperator(X))
    g = (alpha * X.shape[0]) * L1()
    return f, g, ref, X.shape[1]


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("restart", ["adaptive", "function", None])
def test_fista_matches_sklearn_lasso(lasso, restart):
    f, g, ref, p = lasso
    res = fista(f, g, np.zeros(p), tol=1e-12, max_iter=20_000, restart=restart)
    assert res.converged, res.message
    assert _rel(res.x, ref) <= 1e-6
    obj = res.history["objective"]
    assert obj[-1] <= obj[0]
    if restart is None:
        assert res.info["n_restarts"] == 0


def test_fista_backtracking_without_lipschitz(lasso):
    f, g, ref, p = lasso

    class Unknown(Functional):
        """The same data term with the Lipschitz constant hidden."""

        is_smooth = True
        lipschitz = None

        def _call(self, x):
            return f._call(x)

        def _grad(self, x):
            return f._grad(x)

    res = fista(Unknown(), g, np.zeros(p), tol=1e-12, max_iter=20_000)
    assert res.converged
    assert res.info["n_backtracks"] > 0
    # the accepted L never exceeds eta times the true constant
    assert res.steps["L"] <= 2.0 * f.lipschitz
    assert _rel(res.x, ref) <= 1e-6
    with pytest.raises(ValueError, match="lipschitz"):
        fista(Unknown(), g, np.zeros(p), backtracking=False)


def test_ista_matches_sklearn_lasso(lasso):
    f, g, ref, p = lasso
    res = ista(f, g, np.zeros(p), tol=1e-9, max_iter=50_000)
    assert res.converged
    assert _rel(res.x, ref) <= 1e-5
    # ISTA is monotone
    assert np.all(np.diff(res.history["objective"]) <= 1e-12 * abs(res.history["objective"][0]))


def test_fista_gradient_mapping_criterion(lasso):
    f, g, ref, p = lasso
    res = fista(f, g, np.zeros(p), tol=1e-8, criterion="gradient_mapping", max_iter=20_000)
    assert res.converged
    assert res.history["gradient_mapping"][-1] <= 1e-8
    assert _rel(res.x, ref) <= 1e-6


def test_fista_float32_keeps_dtype():
    from sklearn.linear_model import Lasso

    X, y, alpha = _lasso_problem(dtype=np.float32)
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(
        X.astype(np.float64), y.astype(np.float64)).coef_
    f = SquaredL2(b=y, op=MatrixOperator(X))
    res = fista(f, alpha * X.shape[0] * L1(), np.zeros(X.shape[1], np.float32), tol=1e-6, max_iter=5000)
    assert res.x.dtype == np.float32
    assert _rel(res.x, ref) <= 1e-3


def test_fista_torch_matches_numpy(lasso):
    torch = pytest.importorskip("torch")
    f, g, ref, p = lasso
    res = fista(f, g, torch.zeros(p, dtype=torch.float64), tol=1e-12, max_iter=20_000)
    assert isinstance(res.x, torch.Tensor)
    assert _rel(res.x.numpy(), ref) <= 1e-6


def test_step_functions_unroll(lasso):
    f, g, ref, p = lasso
    solver = ProximalGradient(f, g, accelerate=True)
    state = solver.init(np.zeros(p))
    for _ in range(3000):
        state = solver.step(state)
    assert _rel(state.x, ref) <= 1e-6


def test_iht_recovers_sparse_vector():
    rng = np.random.default_rng(1)
    n, s = 256, 6
    m = int(4 * s * np.log(n))  # 133
    Phi = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(n)
    x_true[rng.choice(n, s, replace=False)] = rng.choice([-1, 1], s) * (1 + rng.random(s))
    f = SquaredL2(b=Phi @ x_true, op=MatrixOperator(Phi))
    res = iht(f, np.zeros(n), s, step_rule="normalized", tol=1e-12, max_iter=2000)
    assert res.converged
    assert np.count_nonzero(res.x) <= s
    assert _rel(res.x, x_true) <= 1e-8
    # the classic fixed step of [BD09] (mu = 1 for unit-norm columns)
    res = iht(f, np.zeros(n), s, step=1.0, tol=1e-12, max_iter=2000)
    assert _rel(res.x, x_true) <= 1e-8
    assert np.array_equal(np.flatnonzero(res.x), np.sort(np.flatnonzero(x_true)))


def test_iht_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    n, s, m = 128, 4, 80
    Phi = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(n)
    x_true[rng.choice(n, s, replace=False)] = 1.0 + rng.random(s)
    f = SquaredL2(b=torch.from_numpy(Phi @ x_true), op=MatrixOperator(Phi))
    res = iht(f, torch.zeros(n, dtype=torch.float64), s, step_rule="normalized", tol=1e-12)
    assert _rel(res.x.numpy(), x_true) <= 1e-8


def test_bad_inputs(lasso):
    f, g, _, p = lasso
    x0 = np.zeros(p)
    x0[3] = np.nan
    with pytest.raises(ValueError, match="x0"):
        fista(f, g, x0)
    with pytest.raises(ValueError, match="x0"):
        ista(f, g, np.full(p, np.inf))
    with pytest.raises(TypeError, match="x0"):
        fista(f, g, np.zeros(p, dtype=int))
    with pytest.raises(ValueError, match="smooth"):
        fista(g, f, np.zeros(p))
    with pytest.raises(ValueError, match="step"):
        fista(f, g, np.zeros(p), step=-1.0)
    with pytest.raises(ValueError, match="restart"):
        fista(f, g, np.zeros(p), restart="sometimes")
    with pytest.raises(ValueError, match="sparsity"):
        iht(f, np.zeros(p), 0)
    with pytest.raises(ValueError, match="tol"):
        fista(f, g, np.zeros(p), tol=-1.0)

    class FixedStep(Functional):
        fixed_step = True

        def _prox(self, x, tau):
            return x

    with pytest.raises(ValueError, match="fixed step"):
        fista(f, FixedStep(), np.zeros(p))


def test_max_iter_warns_and_callback_stops(lasso):
    f, g, _, p = lasso
    with pytest.warns(ConvergenceWarning):
        res = fista(f, g, np.zeros(p), tol=1e-14, max_iter=5)
    assert not res.converged and res.n_iter == 5
    calls = []

    def cb(state):
        calls.append(state.k)
        return state.k >= 3

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ista(f, g, np.zeros(p), tol=1e-14, max_iter=100, callback=cb)
    assert res.n_iter == 3 and not res.converged and "callback" in res.message
    assert calls == [1, 2, 3]
