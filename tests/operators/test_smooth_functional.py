"""smooth_functional: a user's value-and-gradient callable as the smooth term of the proximal methods."""

import numpy as np
import pytest

from tikhon.operators import MatrixOperator
from tikhon.operators.prox import L1, SquaredL2, smooth_functional
from tikhon.solvers import fista, ista


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 50))
    y = X @ (rng.standard_normal(50) * (rng.random(50) < 0.2)) + 0.05 * rng.standard_normal(30)
    return X, y, 0.1 * float(np.abs(X.T @ y).max())


def test_same_solution_as_the_library_term():
    X, y, lam = _problem()
    calls = {"n": 0}

    def value_and_grad(w):
        calls["n"] += 1
        r = X @ w - y
        return 0.5 * float(r @ r), X.T @ r

    ref = fista(SquaredL2(b=y, op=MatrixOperator(X)), lam * L1(), np.zeros(50), tol=1e-12, max_iter=20000)
    # no Lipschitz constant: backtracking, which keeps the gradient of each accepted point
    res = fista(smooth_functional(value_and_grad), lam * L1(), np.zeros(50), tol=1e-12, max_iter=20000)
    assert res.converged and ref.converged
    assert np.linalg.norm(res.x - ref.x) <= 1e-8 * np.linalg.norm(ref.x)
    assert res.info["n_backtracks"] > 0
    # one call per trial point plus one per extrapolated gradient point: at most
    # two per iteration and one per backtrack (the accepted point's gradient is reused)
    assert calls["n"] <= 2 * res.n_iter + res.info["n_backtracks"] + 1
    L = np.linalg.norm(X, 2) ** 2
    fixed = ista(smooth_functional(value_and_grad, lipschitz=L), lam * L1(), np.zeros(50),
                 tol=1e-12, max_iter=50000)
    assert fixed.converged and fixed.info["n_backtracks"] == 0
    assert np.linalg.norm(fixed.x - ref.x) <= 1e-6 * np.linalg.norm(ref.x)


def test_value_and_grad_and_errors():
    f = smooth_functional(lambda x: (float(np.sum(x**2)), 2 * x), lipschitz=2.0)
    assert f.is_smooth and f.lipschitz == 2.0 and f.grad_with_value
    value, grad = f.value_and_grad(np.array([1.0, 2.0]))
    assert value == 5.0 and np.array_equal(grad, [2.0, 4.0])
    assert f(np.array([3.0])) == 9.0
    with pytest.raises(NotImplementedError, match="no proximal map"):
        f.prox(np.ones(2), 1.0)
    bad = smooth_functional(lambda x: (0.0, np.zeros(3)))
    with pytest.raises(ValueError, match="gradient of shape"):
        bad.value_and_grad(np.ones(2))
    with pytest.raises(TypeError, match="value_and_grad must be callable"):
        smooth_functional(3.0)
    with pytest.raises(ValueError, match="lipschitz"):
        smooth_functional(lambda x: (0.0, x), lipschitz=-1.0)


def test_infinite_value_outside_the_domain_shortens_the_step():
    # f(x) = -sum log(x) + <c, x> is +inf for x <= 0: backtracking must step back inside
    c = np.array([1.0, 2.0, 4.0])

    def value_and_grad(x):
        if np.any(x <= 0):
            return np.inf, np.zeros_like(x)
        return float(-np.log(x).sum() + c @ x), -1.0 / x + c

    res = fista(smooth_functional(value_and_grad), 0.0 * L1(), np.ones(3), tol=1e-12, max_iter=5000)
    assert res.converged and res.status == "converged"
    np.testing.assert_allclose(res.x, 1.0 / c, rtol=1e-6)
