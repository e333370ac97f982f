"""The lower-level problems of tikhon.solvers.bilevel and their solver.

References: autograd of ``value`` (closed-form gradients), central finite
differences (torch.autograd.gradcheck), the dense Hessian's eigenvalues
(``mu`` and ``L``), SciPy's L-BFGS run to a tight tolerance (the solves),
a closed-form quadratic (the accelerated gradient), scikit-learn's
LogisticRegression (the logistic lower level).
"""

import math

import numpy as np
import pytest
import torch
from tikhon.operators import Radon
from tikhon.solvers.bilevel import (
    CrossEntropy,
    L2MultinomialLogistic,
    LowerSolution,
    SmoothedTVDenoising,
    SmoothedTVReconstruction,
)
from tikhon.solvers.bilevel._lower_solver import solve_strongly_convex

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("single_numba_thread")

TV_KINDS = [(s, w) for s in ("sqrt", "huber") for w in ("scalar", "pixel")]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _rand(*shape, seed=0):
    return torch.rand(*shape, dtype=torch.float64, generator=_gen(seed))


def _denoising(smoothing, weights, shape=(2, 5, 6), seed=0):
    lower = SmoothedTVDenoising(_rand(*shape, seed=seed), smoothing=smoothing, weights=weights)
    theta = -1.0 + 0.5 * torch.randn(lower.n_params, dtype=torch.float64, generator=_gen(seed + 1))
    return lower, theta


def _reconstruction(smoothing, weights, n=6, seed=0):
    A = Radon((n, n), np.linspace(0, np.pi, 4, endpoint=False))
    x_true = _rand(2, n, n, seed=seed)
    y = torch.stack([A(x) for x in x_true])
    lower = SmoothedTVReconstruction(A, y, smoothing=smoothing, weights=weights, mu_floor=0.1)
    theta = -1.0 + 0.5 * torch.randn(lower.n_params, dtype=torch.float64, generator=_gen(seed + 1))
    return lower, theta


def _logistic(n=40, d=4, k=3, seed=0):
    X = torch.randn(n, d, dtype=torch.float64, generator=_gen(seed))
    y = torch.randint(0, k, (n,), generator=_gen(seed + 1))
    lower = L2MultinomialLogistic(X, y, k)
    theta = math.log(0.1) + 0.5 * torch.randn(lower.n_params, dtype=torch.float64,
                                               generator=_gen(seed + 2))
    return lower, theta


def _problems():
    out = [(f"denoise-{s}-{w}", *_denoising(s, w)) for s, w in TV_KINDS]
    out += [(f"recon-{s}-{w}", *_reconstruction(s, w)) for s, w in TV_KINDS[:2]]
    out.append(("logistic", *_logistic()))
    return out


PROBLEMS = _problems()
IDS = [p[0] for p in PROBLEMS]


def _point(lower, seed=5):
    # away from flat regions: a generic point where every branch is smooth
    return torch.randn(lower.x_shape, dtype=torch.float64, generator=_gen(seed))


# -- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, lower, theta", PROBLEMS, ids=IDS)
def test_grad_matches_autograd_of_value(name, lower, theta):
    x = _point(lower).requires_grad_(True)
    (expected,) = torch.autograd.grad(lower.value(x, theta), x)
    torch.testing.assert_close(lower.grad(x, theta), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, lower, theta", PROBLEMS, ids=IDS)
def test_value_and_grad_match_finite_differences(name, lower, theta):
    """gradcheck: value in (x, theta), and grad's own derivatives (Hessian, mixed) in (x, theta)."""
    x = _point(lower).requires_grad_(True)
    th = theta.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lower.value, (x, th), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lower.grad, (x, th), eps=1e-6, atol=1e-7)


# -- mu and L bound the Hessian ------------------------------------------------------------------
def _hessian_eigenvalues(lower, theta, x):
    H = torch.autograd.functional.hessian(lambda z: lower.value(z, theta), x)
    n = x.numel()
    return torch.linalg.eigvalsh(H.reshape(n, n))


@pytest.mark.parametrize("name, lower, theta", PROBLEMS, ids=IDS)
@pytest.mark.parametrize("seed", [5, 6])
def test_mu_and_L_bound_the_hessian(name, lower, theta, seed):
    ev = _hessian_eigenvalues(lower, theta, _point(lower, seed))
    mu, L = lower.strong_convexity(theta), lower.lipschitz(theta)
    assert 0 < mu <= L
    assert float(ev.min()) >= mu * (1 - 1e-10)
    assert float(ev.max()) <= L * (1 + 1e-10)


def test_denoising_bounds_are_attained_at_a_constant_image():
    """With sqrt smoothing the Hessian at a flat image is (I + lam/(2 nu) G^T G) / N: L and mu exact."""
    lower, _ = _denoising("sqrt", "scalar")
    theta = torch.tensor([0.3, -1.2], dtype=torch.float64)
    ev = _hessian_eigenvalues(lower, theta, torch.full(lower.x_shape, 0.4, dtype=torch.float64))
    assert float(ev.max()) == pytest.approx(lower.lipschitz(theta), rel=1e-10)
    assert float(ev.min()) == pytest.approx(lower.strong_convexity(theta), rel=1e-10)


# -- solves ----------------------------------------------------------------------------------------
def _reference(lower, theta):
    """The minimiser by SciPy's L-BFGS (an independent method), polished by Newton steps on the dense Hessian."""
    from scipy.optimize import minimize

    shape = lower.x_shape

    def fun(z):
        x = torch.as_tensor(z.reshape(shape))
        with torch.no_grad():
            return float(lower.value(x, theta)), lower.grad(x, theta).numpy().ravel()

    res = minimize(fun, np.zeros(math.prod(shape)), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-14, "ftol": 0.0, "maxiter": 20000, "maxcor": 30})
    x = torch.as_tensor(res.x.reshape(shape))
    n = x.numel()
    for _ in range(3):  # L-BFGS's line search stalls near 1e-8; Newton converges quadratically
        H = torch.autograd.functional.hessian(lambda z: lower.value(z, theta), x).reshape(n, n)
        with torch.no_grad():
            x = x - torch.linalg.solve(H, lower.grad(x, theta).reshape(n)).reshape(shape)
    with torch.no_grad():
        residual = float(lower.grad(x, theta).norm()) / lower.strong_convexity(theta)
    assert residual < 1e-11, f"the reference is not tight: ||grad|| / mu = {residual:.2e}"
    return x, residual


@pytest.mark.parametrize("name, lower, theta", PROBLEMS, ids=IDS)
def test_solve_is_within_eps_of_the_minimiser(name, lower, theta):
    x_ref, ref_err = _reference(lower, theta)
    warm = None
    for eps in (1e-2, 1e-4, 1e-7):
        sol = lower.solve(theta, eps=eps, max_iter=20000)
        assert isinstance(sol, LowerSolution) and sol.converged
        assert float((sol.x - x_ref).norm()) <= eps + ref_err
        # a warm start near the solution costs fewer iterations than the cold one
        if warm is not None:
            sol_warm = lower.solve(theta, eps=eps, max_iter=20000, x0=warm.x)
            assert sol_warm.converged and sol_warm.n_iter < sol.n_iter
            assert float((sol_warm.x - x_ref).norm()) <= eps + ref_err
        warm = sol


def test_solve_reports_an_exhausted_budget():
    lower, theta = _denoising("sqrt", "scalar")
    sol = lower.solve(theta, eps=1e-12, max_iter=3)
    assert not sol.converged and sol.n_iter == 3


def test_reconstruction_starts_from_x_init():
    lower, theta = _reconstruction("sqrt", "scalar")
    x_star = lower.solve(theta, eps=1e-9, max_iter=20000).x
    started = SmoothedTVReconstruction(lower.A, lower.y, mu_floor=lower.mu_floor, x_init=x_star)
    sol = started.solve(theta, eps=1e-6, max_iter=20000)
    assert sol.converged and sol.n_iter == 1  # the start is already certified
    with pytest.raises(ValueError, match=r"SmoothedTVReconstruction: x_init has shape"):
        SmoothedTVReconstruction(lower.A, lower.y, x_init=x_star[0])


def test_solve_in_float32_keeps_the_dtype():
    y = _rand(2, 6, 6).float()
    lower = SmoothedTVDenoising(y)
    sol = lower.solve(torch.tensor([-2.0, -2.0], dtype=torch.float64), eps=1e-3, max_iter=500)
    assert sol.converged and sol.x.dtype == torch.float32


def test_accelerated_gradient_on_a_quadratic_reaches_the_closed_form():
    """g = 1/2 x^T D x - b^T x with D = diag(mu..L): x* = b / D; the rate is about sqrt(L/mu)."""
    d = torch.logspace(-2, 0, 50, dtype=torch.float64)
    b = torch.randn(50, dtype=torch.float64, generator=_gen(3))
    x_star = b / d
    sol = solve_strongly_convex(lambda x: d * x - b, torch.zeros(50, dtype=torch.float64),
                                0.01, 1.0, eps=1e-8, max_iter=5000)
    assert sol.converged
    assert float((sol.x - x_star).norm()) <= 1e-8
    # linear convergence at 1 - sqrt(mu / L) = 0.9: log(||x0 - x*|| sqrt(L/mu) / eps) / 0.1 steps
    assert sol.n_iter <= 10 * math.log(float(x_star.norm()) * 10 / 1e-8) + 10


# -- the logistic lower level against scikit-learn ---------------------------------------------------
def test_logistic_matches_scikit_learn_with_a_scalar_penalty():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16.0, y[:200]
    alpha = 0.05
    lower = L2MultinomialLogistic(X, y, 10)
    theta = torch.full((lower.n_params,), math.log(alpha), dtype=torch.float64)
    sol = lower.solve(theta, eps=1e-7, max_iter=20000)
    assert sol.converged
    clf = LogisticRegression(C=1.0 / (len(y) * alpha), fit_intercept=False, tol=1e-12,
                             max_iter=20000).fit(X, y)
    # lbfgs's own stopping rule leaves ~1e-7 in the coefficients
    np.testing.assert_allclose(sol.x.numpy(), clf.coef_.T, atol=1e-5)


def test_cross_entropy_upper_level():
    lower, _ = _logistic()
    f = CrossEntropy(lower.X, lower.Y.argmax(1), n_classes=3)
    W = _point(lower).requires_grad_(True)
    (expected,) = torch.autograd.grad(f.value(W), W)
    torch.testing.assert_close(f.grad(W), expected, rtol=1e-12, atol=1e-14)
    # L_f bounds the Hessian of the validation loss
    H = torch.autograd.functional.hessian(f.value, W.detach()).reshape(W.numel(), W.numel())
    assert float(torch.linalg.eigvalsh(H).max()) <= f.lipschitz * (1 + 1e-10)
    # the validation loss at W = 0 is log K; accuracy counts argmax hits
    assert float(f.value(torch.zeros_like(W))) == pytest.approx(math.log(3))
    hits = (lower.X @ W.detach()).argmax(1) == lower.Y.argmax(1)
    assert f.accuracy(W.detach()) == pytest.approx(float(hits.double().mean()))


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_input_is_refused_by_name():
    y = _rand(2, 5, 5)
    with pytest.raises(ValueError, match="SmoothedTVDenoising: y must have 3 axes"):
        SmoothedTVDenoising(y[0])
    with pytest.raises(ValueError, match="SmoothedTVDenoising: smoothing must be one of"):
        SmoothedTVDenoising(y, smoothing="tv")
    with pytest.raises(ValueError, match="SmoothedTVDenoising: weights must be one of"):
        SmoothedTVDenoising(y, weights="patch")
    with pytest.raises(ValueError, match="SmoothedTVDenoising: y contains NaN"):
        SmoothedTVDenoising(y.clone().fill_(float("nan")))
    with pytest.raises(TypeError, match="SmoothedTVDenoising: y must be a float32 or float64"):
        SmoothedTVDenoising(torch.ones(2, 5, 5, dtype=torch.int64))
    lower = SmoothedTVDenoising(y)
    with pytest.raises(ValueError, match=r"SmoothedTVDenoising.solve: theta must have shape \(2,\)"):
        lower.solve(torch.zeros(3, dtype=torch.float64), eps=1e-3, max_iter=10)
    with pytest.raises(TypeError, match="SmoothedTVDenoising.solve: theta must be a torch tensor"):
        lower.solve(np.zeros(2), eps=1e-3, max_iter=10)
    with pytest.raises(ValueError, match="SmoothedTVDenoising.solve: theta contains NaN"):
        lower.solve(torch.tensor([0.0, float("nan")], dtype=torch.float64), eps=1e-3, max_iter=10)
    with pytest.raises(ValueError, match="SmoothedTVDenoising.solve: eps"):
        lower.solve(torch.zeros(2, dtype=torch.float64), eps=-1.0, max_iter=10)
    with pytest.raises(ValueError, match="SmoothedTVDenoising.solve: max_iter"):
        lower.solve(torch.zeros(2, dtype=torch.float64), eps=1e-3, max_iter=0)
    with pytest.raises(ValueError, match=r"SmoothedTVDenoising.solve: x0 has shape"):
        lower.solve(torch.zeros(2, dtype=torch.float64), eps=1e-3, max_iter=10, x0=y[0])
    with pytest.raises(ValueError, match=r"SmoothedTVDenoising.grad: theta must have shape"):
        lower.grad(y, torch.zeros(5, dtype=torch.float64))

    A = Radon((5, 5), np.linspace(0, np.pi, 3, endpoint=False))
    with pytest.raises(TypeError, match="SmoothedTVReconstruction: A must be a tikhon LinearOperator"):
        SmoothedTVReconstruction(np.eye(25), y)
    with pytest.raises(ValueError, match=r"SmoothedTVReconstruction: y must have shape \(N, \*A.out_shape\)"):
        SmoothedTVReconstruction(A, y)
    good = torch.zeros(2, *A.out_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match="SmoothedTVReconstruction: mu_floor must be positive"):
        SmoothedTVReconstruction(A, good, mu_floor=0.0)

    X = _rand(6, 3)
    with pytest.raises(ValueError, match=r"L2MultinomialLogistic: y must lie in \[0, 3\)"):
        L2MultinomialLogistic(X, np.array([0, 1, 2, 3, 0, 1]), 3)
    with pytest.raises(TypeError, match="L2MultinomialLogistic: y must hold integer class labels"):
        L2MultinomialLogistic(X, np.zeros(6), 3)
    with pytest.raises(ValueError, match=r"L2MultinomialLogistic: y must have shape \(6,\)"):
        L2MultinomialLogistic(X, np.zeros(5, dtype=int), 3)
    with pytest.raises(ValueError, match="L2MultinomialLogistic: n_classes must be at least 2"):
        L2MultinomialLogistic(X, np.zeros(6, dtype=int), 1)
    with pytest.raises(ValueError, match="L2MultinomialLogistic: X must be a non-empty 2-D array"):
        L2MultinomialLogistic(X[:, 0], np.zeros(6, dtype=int), 2)
    lower = L2MultinomialLogistic(X, np.arange(6) % 3, 3)
    with pytest.raises(ValueError, match=r"L2MultinomialLogistic.solve: theta must have shape \(9,\)"):
        lower.solve(torch.zeros(3, dtype=torch.float64), eps=1e-3, max_iter=10)
    with pytest.raises(TypeError, match="CrossEntropy: y_val must hold integer class labels"):
        CrossEntropy(X, np.zeros(6))
    f = CrossEntropy(X, np.arange(6) % 3)
    with pytest.raises(ValueError, match=r"CrossEntropy.value: W must have shape \(3, 3\)"):
        f.value(torch.zeros(3, 2, dtype=torch.float64))
