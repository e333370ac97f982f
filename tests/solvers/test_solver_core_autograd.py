"""Differentiable steps: unrolled iterations keep the autograd graph through their hyperparameters.

``torch.autograd.gradcheck`` (float64, finite differences against autograd) of
the output of 10 ISTA and 10 FISTA steps with respect to per-step step sizes
and a tensor lambda, and of 10 Chambolle-Pock TV steps with respect to a
per-pixel weight tensor.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tikhon.operators import MatrixOperator, Radon  # noqa: E402
from tikhon.operators.prox import L1, L2, L21, SquaredL2  # noqa: E402
from tikhon.solvers.first_order import ProximalGradient  # noqa: E402
from tikhon.solvers.tomography import tv_problem  # noqa: E402


def _lasso(seed=0, n=12, p=20):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X @ (rng.standard_normal(p) * (rng.random(p) < 0.3)) + 0.1 * rng.standard_normal(n)
    f = SquaredL2(b=torch.from_numpy(y), op=MatrixOperator(X))
    return f, X, y


@pytest.mark.parametrize("accelerate, restart", [(False, None), (True, None), (True, "adaptive")])
def test_gradcheck_unrolled_prox_grad(accelerate, restart):
    f, X, y = _lasso()
    L = np.linalg.norm(X, 2) ** 2
    solver = ProximalGradient(f, L1(), step=1.0 / L, accelerate=accelerate, restart=restart)
    x0 = torch.zeros(X.shape[1], dtype=torch.float64)

    def unrolled(steps, lam):
        state = solver.init(x0)
        for k in range(10):
            state = solver.step(state, step=steps[k], lam=lam)
        return state.x

    steps = torch.full((10,), 0.9 / L, dtype=torch.float64, requires_grad=True)
    # lam in the range where some coordinates are thresholded and some are not
    lam = torch.tensor(0.2 * float(np.abs(X.T @ y).max()), dtype=torch.float64, requires_grad=True)
    out = unrolled(steps, lam)
    assert out.requires_grad and bool((out != 0).any()) and bool((out == 0).any())
    assert torch.autograd.gradcheck(unrolled, (steps, lam), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_gradcheck_unrolled_tv_chambolle_pock():
    n = 8
    angles = np.linspace(0, np.pi, 6, endpoint=False)
    A = Radon((n, n), angles)
    rng = np.random.default_rng(1)
    x_true = np.zeros((n, n))
    x_true[2:6, 3:7] = 1.0
    y = torch.from_numpy(A(x_true) + 0.05 * rng.standard_normal(A.out_shape))

    def unrolled(w):
        solver, steps = tv_problem(A, y, 0.3, weights=w)
        state = solver.init(torch.zeros((n, n), dtype=torch.float64), tau=steps["tau"],
                            sigma=list(steps["sigma"]))
        for _ in range(10):
            state = solver.step(state)
        return state.x

    w = torch.from_numpy(0.5 + rng.random((n, n))).requires_grad_(True)
    out = unrolled(w)
    assert out.requires_grad
    assert torch.autograd.gradcheck(unrolled, (w,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_tensor_scaled_and_weighted_functionals_keep_the_graph():
    x = torch.tensor([-2.0, 0.3, 1.5, -0.1], dtype=torch.float64)
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    g = theta * L1()
    z = g.prox(x, 1.0)
    assert z.requires_grad
    (dz,) = torch.autograd.grad(z.sum(), theta)
    # d/dtheta of soft-threshold(x, theta) summed: -sign(x) where |x| > theta
    assert float(dz) == pytest.approx(-float(torch.sign(x)[x.abs() > 0.7].sum()))
    value = g._call(x)
    (dv,) = torch.autograd.grad(value, theta)
    assert float(dv) == pytest.approx(float(x.abs().sum()))

    w = torch.tensor([1.0, 2.0, 0.5, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: L1(weights=w).prox(x, 0.4), (w,))
    q = torch.tensor(np.random.default_rng(0).standard_normal((2, 3, 3)), dtype=torch.float64)
    w2 = torch.tensor(0.3 + np.random.default_rng(1).random((3, 3)), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: L21(axis=0, weights=w).prox(q, 0.5), (w2,))
    assert torch.autograd.gradcheck(lambda w: L21(axis=0, weights=w).conj.prox(q, 0.5), (w2,))


def test_optimality_is_the_fixed_point_residual():
    f, X, y = _lasso(seed=3)
    L = np.linalg.norm(X, 2) ** 2
    lam = 0.3 * float(np.abs(X.T @ y).max())
    solver = ProximalGradient(f, lam * L1(), accelerate=True)
    state = solver.init(torch.zeros(X.shape[1], dtype=torch.float64))
    for _ in range(3000):
        state = solver.step(state)
    r = solver.optimality(state.x, step=1.0 / L)
    assert float(r.abs().max()) <= 1e-10
    r0 = solver.optimality(torch.zeros(X.shape[1], dtype=torch.float64), step=1.0 / L)
    assert float(r0.abs().max()) > 1e-3


@pytest.mark.parametrize("g", [L1(), L21(axis=0), L2()], ids=["L1", "L21", "L2"])
def test_steps_never_read_the_device(g, count_syncs, no_host_transfers):
    """With backtracking off, a step reads nothing back to the host (no sync, no copy on a GPU)."""
    b = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 6)))
    f = SquaredL2(b=b)
    steps = torch.full((10,), 0.9, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    for accelerate in (False, True):
        solver = ProximalGradient(f, g, step=0.9, accelerate=accelerate, backtracking=False)
        state = solver.init(torch.zeros((2, 6), dtype=torch.float64))
        with no_host_transfers(), count_syncs() as counter:
            for k in range(10):
                state = solver.step(state, step=steps[k], lam=lam)
        assert counter["n"] == 0
        assert state.x.requires_grad


def test_tv_steps_never_read_the_device(count_syncs, no_host_transfers):
    n = 8
    A = Radon((n, n), np.linspace(0, np.pi, 6, endpoint=False))
    w = torch.ones((n, n), dtype=torch.float64, requires_grad=True)
    solver, st = tv_problem(A, torch.from_numpy(A(np.eye(n))), 0.3, weights=w)
    state = solver.init(torch.zeros((n, n), dtype=torch.float64), tau=st["tau"], sigma=list(st["sigma"]))
    with no_host_transfers(), count_syncs() as counter:
        for _ in range(10):
            state = solver.step(state)
    assert counter["n"] == 0 and state.x.requires_grad


def test_values_keep_the_graph():
    """Values of the members on tensors are 0-d float64 tensors with their graph."""
    x = torch.tensor(np.random.default_rng(5).standard_normal((2, 4, 3)), requires_grad=True)
    w = torch.tensor(0.5 + np.random.default_rng(6).random((4, 3)), requires_grad=True)
    b = torch.tensor(np.random.default_rng(7).standard_normal((2, 4, 3)))
    for f in (L21(axis=0, weights=w), SquaredL2(b=b), L2(), L1(weights=0.3)):
        value = f._call(x)
        assert torch.is_tensor(value) and value.ndim == 0 and value.requires_grad
        assert float(value.detach()) == pytest.approx(f(x.detach()))
    value, grad = SquaredL2(b=b).value_and_grad(x)
    (auto,) = torch.autograd.grad(value, x)
    assert torch.allclose(auto, grad)
    assert torch.autograd.gradcheck(lambda w: L21(axis=0, weights=w)._call(x.detach()), (w,))
