"""hypergradient: against a closed form (ridge) and finite differences (smoothed TV); its bound."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from tikhon.solvers.bilevel import (
    LowerLevel,
    LowerSolution,
    SquaredError,
    hypergradient,
)


class Ridge(LowerLevel):
    """``g(x, theta) = sum_s 1/2 ||A x_s - y_s||^2 + 1/2 sum_i e^theta_i x_{s,i}^2``.

    ``x`` and ``y`` hold one sample a row. ``x*(theta) = y A (A^T A + D)^{-1}``
    with ``D = diag(e^theta)``, and the hypergradient of ``f(x*)`` is
    ``-sum_s e^theta * x*_s * q_s`` with ``q_s = (A^T A + D)^{-1} grad f(x*)_s``.
    """

    def __init__(self, A, y):
        self.A, self.y = A, y
        self.n_params = A.shape[1]
        ev = torch.linalg.eigvalsh(A.T @ A)
        self.lo, self.hi = float(ev[0]), float(ev[-1])

    def value(self, x, theta):
        return 0.5 * ((x @ self.A.T - self.y) ** 2).sum() + 0.5 * (theta.exp() * x**2).sum()

    def grad(self, x, theta):
        return (x @ self.A.T - self.y) @ self.A + theta.exp() * x

    def strong_convexity(self, theta):
        return self.lo + float(theta.exp().min())

    def lipschitz(self, theta):
        return self.hi + float(theta.exp().max())

    def solve(self, theta, *, eps, max_iter, x0=None):
        x = self.y.new_zeros(self.y.shape[0], self.n_params) if x0 is None else x0
        mu, L = self.strong_convexity(theta), self.lipschitz(theta)
        for k in range(max_iter + 1):
            g = self.grad(x, theta)
            if float(torch.linalg.vector_norm(g)) / mu <= eps:
                return LowerSolution(x, k, True)
            if k < max_iter:
                x = x - g / L
        return LowerSolution(x, max_iter, False)

    def hessian(self, theta):
        return self.A.T @ self.A + torch.diag(theta.exp())

    def exact(self, theta):
        return torch.linalg.solve(self.hessian(theta), (self.y @ self.A).T).T

    def exact_hypergradient(self, upper, theta):
        xs = self.exact(theta)
        q = torch.linalg.solve(self.hessian(theta), upper.grad(xs).T).T
        return -(theta.exp() * xs * q).sum(0)


def ridge_problem(n_samples=20, m=12, n=5, sigma=0.5, seed=0):
    """Denoising-like ridge with an interior optimum (Wiener-like weights ~ sigma^2 / s_i^2)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.eye(m, n, dtype=torch.float64) + 0.2 * torch.randn(m, n, generator=g,
                                                                  dtype=torch.float64)
    scales = torch.linspace(0.5, 2.0, n, dtype=torch.float64)
    x_true = scales * torch.randn(n_samples, n, generator=g, dtype=torch.float64)
    y = x_true @ A.T + sigma * torch.randn(n_samples, m, generator=g, dtype=torch.float64)
    return SquaredError(x_true), Ridge(A, y)


def test_ridge_matches_closed_form_numpy_and_torch():
    upper, lower = ridge_problem()
    theta = torch.linspace(-2.0, 0.5, lower.n_params, dtype=torch.float64)
    h = lower.exact_hypergradient(upper, theta)
    xs = lower.exact(theta)
    out = hypergradient(upper, lower, theta, xs, tol=1e-13, rtol=0.0)
    assert torch.is_tensor(out.grad) and out.converged
    np.testing.assert_allclose(out.grad.numpy(), h.numpy(), rtol=1e-9, atol=1e-14)
    out_np = hypergradient(upper, lower, theta.numpy(), xs.numpy(), tol=1e-13, rtol=0.0)
    assert isinstance(out_np.grad, np.ndarray) and isinstance(out_np.q, np.ndarray)
    np.testing.assert_allclose(out_np.grad, h.numpy(), rtol=1e-9, atol=1e-14)
    assert out.residual <= 1e-13


@pytest.mark.parametrize("eps", [1e-1, 1e-2, 1e-4])
@pytest.mark.parametrize("delta", [1e-2, 1e-4, 1e-8])
def test_ridge_error_below_bound(eps, delta):
    upper, lower = ridge_problem()
    theta = torch.linspace(-2.0, 0.5, lower.n_params, dtype=torch.float64)
    h = lower.exact_hypergradient(upper, theta)
    sol = lower.solve(theta, eps=eps, max_iter=100_000)
    assert sol.converged
    out = hypergradient(upper, lower, theta, sol.x, tol=delta, rtol=0.0)
    err = float(torch.linalg.vector_norm(out.grad - h))
    assert out.residual <= delta and out.eps <= eps
    assert err <= out.bound
    # the bound is not vacuous: within three orders of magnitude of the error
    assert out.bound <= 1e3 * max(err, 1e-16)


def test_cg_warm_start_and_rtol():
    upper, lower = ridge_problem()
    theta = torch.zeros(lower.n_params, dtype=torch.float64)
    xs = lower.exact(theta)
    cold = hypergradient(upper, lower, theta, xs, tol=1e-12, rtol=0.0)
    warm = hypergradient(upper, lower, theta, xs, tol=1e-12, rtol=0.0, q0=cold.q)
    assert warm.n_iter == 0 and warm.residual <= 1e-12
    loose = hypergradient(upper, lower, theta, xs, tol=0.0, rtol=1e-2)
    b = float(torch.linalg.vector_norm(upper.grad(xs)))
    assert loose.residual <= 1e-2 * b and loose.n_iter < cold.n_iter


class ScaledError(SquaredError):
    """``c`` times the squared error: the same minimiser, ``grad f`` scaled by ``c``."""

    def __init__(self, x_true, c):
        super().__init__(x_true)
        self.c = c
        self.lipschitz *= c

    def value(self, x):
        return self.c * super().value(x)

    def grad(self, x):
        return self.c * super().grad(x)


def test_default_cg_tolerance_is_relative():
    upper, lower = ridge_problem()
    theta = torch.zeros(lower.n_params, dtype=torch.float64)
    sol = lower.solve(theta, eps=1e-3, max_iter=100_000)
    runs = [hypergradient(ScaledError(upper.x_true, c), lower, theta, sol.x)
            for c in (1.0, 1e-6)]
    for c, out in zip((1.0, 1e-6), runs):
        b = c * float(torch.linalg.vector_norm(upper.grad(sol.x)))
        assert out.converged and out.residual <= 1e-8 * b
    # a scale-free stopping rule: the same CG iterations for f and 1e-6 f
    assert runs[0].n_iter == runs[1].n_iter > 0


def test_eps_given_is_used_and_widens_the_bound():
    upper, lower = ridge_problem()
    theta = torch.zeros(lower.n_params, dtype=torch.float64)
    sol = lower.solve(theta, eps=1e-3, max_iter=100_000)
    measured = hypergradient(upper, lower, theta, sol.x)
    assert measured.eps <= 1e-3
    given = hypergradient(upper, lower, theta, sol.x, eps=0.5)
    assert given.eps == 0.5 and given.bound > measured.bound
    torch.testing.assert_close(given.grad, measured.grad)


def test_lipschitz_estimates_against_the_ridge_constants():
    # B(x) = d2_{theta x} g = e^theta x (per coordinate), linear in x:
    # L_B = max e^theta exactly; the Hessian does not depend on x: L_A = 0
    upper, lower = ridge_problem()
    theta = torch.linspace(-1.0, 0.5, lower.n_params, dtype=torch.float64)
    sol = lower.solve(theta, eps=1e-2, max_iter=100_000)
    est = hypergradient(upper, lower, theta, sol.x).estimates
    L_B = float(theta.exp().max())
    assert 0.05 * L_B <= est.L_B <= L_B * (1 + 1e-6), (est.L_B, L_B)
    assert est.L_A <= 1e-6 * lower.hi
    # a second call continues the running maximum from the first
    again = hypergradient(upper, lower, theta, lower.exact(theta), estimates=est)
    assert est.L_B <= again.estimates.L_B <= L_B * (1 + 1e-6)


def test_residual_is_the_true_one_in_float32():
    # an ill-conditioned ridge in float32: CG's recursive residual falls ~1e10 below
    # the true ||grad f - A q||, which is what the bound and `converged` must use
    upper, lower = ridge_problem()
    U, _, Vt = torch.linalg.svd(lower.A, full_matrices=False)
    A = U @ torch.diag(torch.logspace(0, -4, lower.n_params, dtype=torch.float64)) @ Vt
    theta = torch.full((lower.n_params,), -12.0, dtype=torch.float64)
    x = Ridge(A, lower.y).exact(theta)
    f32 = torch.float32
    lo32, up32 = Ridge(A.to(f32), lower.y.to(f32)), SquaredError(upper.x_true.to(f32))
    out = hypergradient(up32, lo32, theta.to(f32), x.to(f32), tol=1e-9, rtol=0.0,
                        max_iter=5000)
    # the true residual of the same data, in float64
    lo64 = Ridge(A.to(f32).double(), lower.y.to(f32).double())
    b = SquaredError(upper.x_true.to(f32).double()).grad(x.to(f32).double())
    true = float(torch.linalg.vector_norm(b - out.q.double() @ lo64.hessian(theta).T))
    assert true > 1e-9 and not out.converged
    assert abs(out.residual - true) <= 1e-2 * true, (out.residual, true)
    # float64, well conditioned: reported and true residual agree as well
    theta0 = torch.zeros(lower.n_params, dtype=torch.float64)
    xs = lower.solve(theta0, eps=1e-3, max_iter=100_000).x
    out = hypergradient(upper, lower, theta0, xs, tol=1e-6, rtol=0.0)
    true = float(torch.linalg.vector_norm(upper.grad(xs) - out.q @ lower.hessian(theta0).T))
    assert out.residual == pytest.approx(true, rel=1e-6) and out.residual <= 1e-6


class RidgeClosedForm(Ridge):
    """The same problem with closed-form products (no graph through ``grad``)."""

    def __init__(self, A, y):
        super().__init__(A, y)
        self.calls = {"hvp": 0, "mixed_vjp": 0}

    def grad(self, x, theta):
        # no graph: every product must come from the closed forms below
        return super().grad(x.detach(), theta.detach())

    def hvp(self, x, theta, v):
        self.calls["hvp"] += 1
        return (v @ self.A.T) @ self.A + theta.exp() * v

    def mixed_vjp(self, x, theta, w):
        self.calls["mixed_vjp"] += 1
        return (theta.exp() * x * w).sum(0)


def test_closed_form_products_used():
    upper, _ = ridge_problem()
    _, base = ridge_problem()
    lower = RidgeClosedForm(base.A, base.y)
    theta = torch.linspace(-1.0, 0.0, lower.n_params, dtype=torch.float64)
    xs = lower.exact(theta)
    out = hypergradient(upper, lower, theta, xs, tol=1e-13, rtol=0.0)
    np.testing.assert_allclose(out.grad.numpy(), lower.exact_hypergradient(upper, theta).numpy(),
                               rtol=1e-9, atol=1e-14)
    # B = diag over samples of e^theta x*: its norm is that of the per-coordinate norms
    B = float((theta.exp() * torch.linalg.vector_norm(xs, dim=0)).max())
    # power iteration approaches it from below
    assert B * (1 - 1e-3) <= out.estimates.B <= B * (1 + 1e-12)
    assert lower.calls["hvp"] >= out.n_iter + 1  # CG's products and the true residual
    assert lower.calls["mixed_vjp"] >= 1


def test_bad_input_names_argument():
    upper, lower = ridge_problem()
    theta = torch.zeros(lower.n_params, dtype=torch.float64)
    xs = lower.exact(theta)
    with pytest.raises(ValueError, match="hypergradient: theta"):
        hypergradient(upper, lower, torch.zeros(lower.n_params + 1, dtype=torch.float64), xs)
    with pytest.raises(ValueError, match="hypergradient: tol"):
        hypergradient(upper, lower, theta, xs, tol=-1.0)
    with pytest.raises(ValueError, match="hypergradient: x"):
        hypergradient(upper, lower, theta, xs * float("nan"))
    with pytest.raises(TypeError, match="hypergradient: upper"):
        hypergradient(lower, lower, theta, xs)
    with pytest.raises(TypeError, match="mixed NumPy and torch"):
        hypergradient(upper, lower, theta.numpy(), xs)
    with pytest.raises(ValueError, match="hypergradient: q0"):
        hypergradient(upper, lower, theta, xs, q0=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="hypergradient: x of shape"):
        hypergradient(upper, lower, theta, xs[:, :3])
    with pytest.raises(TypeError, match="hypergradient: x is torch.float64 on cpu, theta torch.float32"):
        hypergradient(upper, lower, theta.float(), xs)


class CountingRidge(Ridge):
    """Ridge with a settable ``mu`` that counts its gradients (products through the graph)."""

    def __init__(self, A, y, mu):
        super().__init__(A, y)
        self.mu, self.grads = mu, 0

    def strong_convexity(self, theta):
        return self.mu

    def grad(self, x, theta):
        self.grads += 1
        return super().grad(x, theta)


@pytest.mark.parametrize("mu", [0.0, -1.0, float("nan")])
def test_nonpositive_strong_convexity_named_before_any_product(mu):
    upper, base = ridge_problem()
    lower = CountingRidge(base.A, base.y, mu)
    theta = torch.zeros(lower.n_params, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"hypergradient: lower.strong_convexity\(theta\)"):
        hypergradient(upper, lower, theta, base.exact(theta))
    assert lower.grads == 0


def test_missing_or_bad_lipschitz_named_before_any_product():
    from tikhon.solvers.bilevel import UpperLevel

    class NoLipschitz(UpperLevel):
        def value(self, x):
            return (x**2).sum()

    upper, base = ridge_problem()
    lower = CountingRidge(base.A, base.y, 1.0)
    theta = torch.zeros(lower.n_params, dtype=torch.float64)
    with pytest.raises(ValueError, match="hypergradient: upper.lipschitz"):
        hypergradient(NoLipschitz(), lower, theta, base.exact(theta))
    bad = SquaredError(upper.x_true)
    bad.lipschitz = -1.0
    with pytest.raises(ValueError, match="hypergradient: upper.lipschitz"):
        hypergradient(bad, lower, theta, base.exact(theta))
    assert lower.grads == 0


# ---- smoothed-TV denoising (the lower level of tv_problems) -----------------------------

def tv_problem(weights, seed=0, n=3, size=8, log_nu=-3.0):
    from tikhon.solvers.bilevel import SmoothedTVDenoising

    g = torch.Generator().manual_seed(seed)
    x_true = torch.zeros(n, size, size, dtype=torch.float64)
    x_true[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1.0
    x_true += 0.3 * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
    y = x_true + 0.1 * torch.randn(n, size, size, generator=g, dtype=torch.float64)
    lower = SmoothedTVDenoising(y, weights=weights)
    if weights == "scalar":
        theta = torch.tensor([-2.5, log_nu], dtype=torch.float64)
    else:
        w = -2.5 + 0.5 * torch.rand(size * size, generator=g, dtype=torch.float64)
        theta = torch.cat([w, torch.tensor([log_nu], dtype=torch.float64)])
    return SquaredError(x_true), lower, theta


def tight_loss(upper, lower, theta, x0=None):
    sol = lower.solve(theta, eps=1e-11, max_iter=200_000, x0=x0)
    assert sol.converged
    return float(upper.value(sol.x)), sol.x


@pytest.mark.parametrize("weights", ["scalar", "pixel"])
def test_tv_matches_central_differences(weights):
    upper, lower, theta = tv_problem(weights)
    _, xs = tight_loss(upper, lower, theta)
    out = hypergradient(upper, lower, theta, xs, tol=1e-12, rtol=0.0)
    p = out.grad
    # central differences along the hypergradient and along a fixed random direction
    g = torch.Generator().manual_seed(1)
    directions = [p / torch.linalg.vector_norm(p),
                  torch.randn(theta.shape, generator=g, dtype=torch.float64)]
    h = 1e-4
    for d in directions:
        d = d / torch.linalg.vector_norm(d)
        fp, _ = tight_loss(upper, lower, theta + h * d, xs)
        fm, _ = tight_loss(upper, lower, theta - h * d, xs)
        fd = (fp - fm) / (2 * h)
        exact = float((p * d).sum())
        assert abs(fd - exact) <= 1e-4 * float(torch.linalg.vector_norm(p))
    if weights == "scalar":  # each coordinate too
        for i in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[i] = 1.0
            fp, _ = tight_loss(upper, lower, theta + h * e, xs)
            fm, _ = tight_loss(upper, lower, theta - h * e, xs)
            assert (fp - fm) / (2 * h) == pytest.approx(float(p[i]), rel=1e-4)


@pytest.mark.parametrize("log_nu", [-3.0, -5.0])  # -5: the nu = e^-5, the thinnest margin
@pytest.mark.parametrize("weights", ["scalar", "pixel"])
def test_tv_error_below_bound(weights, log_nu):
    upper, lower, theta = tv_problem(weights, log_nu=log_nu)
    _, xs = tight_loss(upper, lower, theta)
    exact = hypergradient(upper, lower, theta, xs, tol=1e-12, rtol=0.0).grad
    estimates = None
    for eps, delta in [(1e-1, 1e-1), (1e-2, 1e-3), (1e-3, 1e-2), (1e-4, 1e-6)]:
        sol = lower.solve(theta, eps=eps, max_iter=100_000)
        assert sol.converged
        out = hypergradient(upper, lower, theta, sol.x, tol=delta, rtol=0.0,
                           estimates=estimates)
        estimates = out.estimates
        err = float(torch.linalg.vector_norm(out.grad - exact))
        assert err <= out.bound, (eps, delta, err, out.bound)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_stay_on_device():
    upper, lower = ridge_problem()
    dev = torch.device("cuda")
    gpu = Ridge(lower.A.to(dev), lower.y.to(dev))
    gpu_upper = SquaredError(upper.x_true.to(dev))
    theta = torch.linspace(-2.0, 0.5, lower.n_params, dtype=torch.float64)
    xs = lower.exact(theta)
    out = hypergradient(gpu_upper, gpu, theta.to(dev), xs.to(dev), tol=1e-13, rtol=0.0)
    assert out.grad.device.type == "cuda" and out.q.device.type == "cuda"
    np.testing.assert_allclose(out.grad.cpu().numpy(),
                               lower.exact_hypergradient(upper, theta).numpy(), rtol=1e-9,
                               atol=1e-14)
