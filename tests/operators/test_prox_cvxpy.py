"""Every prox against an independent reference: cvxpy (Clarabel) or a closed form.

prox_{tau f}(x) = argmin_z f(z) + ||z - x||^2 / (2 tau) is solved by cvxpy on
small random inputs and compared to tikhon's closed forms.
"""

import cvxpy as cp
import numpy as np
import pytest

from helpers import Dense
from tikhon.operators.prox import (
    L0,
    L1,
    L2,
    L21,
    Box,
    Huber,
    KullbackLeibler,
    L1Ball,
    L2Ball,
    NonNegative,
    NuclearNorm,
    Simplex,
    SquaredL2,
    SumOfNorms,
    Zero,
)

TOL = 1e-6


def cvx_prox(objective_fn, x, tau, constraints_fn=None):
    """argmin_z objective(z) + ||z - x||^2 / (2 tau), z of x's shape (1-d or 2-d)."""
    z = cp.Variable(x.shape)
    obj = cp.sum_squares(z - x) / (2 * tau)
    if objective_fn is not None:
        obj = obj + objective_fn(z)
    cons = [] if constraints_fn is None else constraints_fn(z)
    cp.Problem(cp.Minimize(obj), cons).solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10)
    return np.asarray(z.value)


def close(a, b, tol=TOL):
    np.testing.assert_allclose(a, b, atol=tol, rtol=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("tau", [0.3, 1.7])
def test_l1_weighted(rng, tau):
    x = rng.standard_normal(12) * 2
    w = rng.uniform(0, 2, 12)
    ref = cvx_prox(lambda z: cp.sum(cp.multiply(w, cp.abs(z))), x, tau)
    close(L1(weights=w).prox(x, tau), ref)
    close(L1().prox(x, tau), cvx_prox(lambda z: cp.norm1(z), x, tau))
    assert L1(weights=w)(x) == pytest.approx(np.sum(w * np.abs(x)))


def test_l1_array_tau(rng):
    x = rng.standard_normal(10)
    tau = rng.uniform(0.1, 1.0, 10)
    # separable: entry i uses tau_i (diagonal preconditioning)
    ref = np.sign(x) * np.maximum(np.abs(x) - tau, 0)
    close(L1().prox(x, tau), ref, 1e-15)


def test_l0_hard_threshold(rng):
    x = rng.standard_normal(200) * 2
    tau = 0.8
    z = L0().prox(x, tau)
    # closed form by enumeration: per entry, z = 0 costs x^2/(2 tau), z = x costs 1
    cost_zero = x**2 / (2 * tau)
    expected = np.where(cost_zero > 1.0, x, 0.0)
    np.testing.assert_array_equal(z, expected)
    assert L0()(np.array([0.0, 1.0, -2.0, 0.0])) == 2
    assert not L0().is_convex


def test_l2(rng):
    x = rng.standard_normal(9)
    for tau in (0.5, 10.0):
        close(L2().prox(x, tau), cvx_prox(lambda z: cp.norm(z, 2), x, tau))
    assert L2()(x) == pytest.approx(np.linalg.norm(x))


@pytest.mark.parametrize("weighted", [False, True])
def test_l21_gradient_layout(rng, weighted):
    # TV layout: (2, n, m), norm along axis 0, per-pixel weights (n, m)
    x = rng.standard_normal((2, 4, 3))
    w = rng.uniform(0, 1.5, (4, 3)) if weighted else None
    tau = 0.6
    wf = np.ones(12) if w is None else w.ravel()
    ref = cvx_prox(lambda z: cp.sum(cp.multiply(wf, cp.norm(z, 2, axis=0))), x.reshape(2, -1), tau)
    f = L21(axis=0, weights=w)
    close(f.prox(x, tau), ref.reshape(x.shape))
    assert f(x) == pytest.approx(np.sum(wf * np.linalg.norm(x.reshape(2, -1), axis=0)))
    # dual step: the conjugate's prox is the projection onto {||y_i|| <= w_i}
    y = rng.standard_normal((2, 4, 3)) * 2
    ref = cvx_prox(None, y.reshape(2, -1), 1.0,
                   lambda z: [cp.norm(z, 2, axis=0) <= wf])
    close(f.conj.prox(y, 0.37), ref.reshape(y.shape))


@pytest.mark.parametrize("axis", [-1, 1])
def test_l21_other_axes(rng, axis):
    x = rng.standard_normal((3, 5, 2))
    f = L21(axis=axis, weights=0.7)
    tau = 0.9
    xm = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    ref = cvx_prox(lambda z: 0.7 * cp.sum(cp.norm(z, 2, axis=1)), xm, tau)
    got = np.moveaxis(f.prox(x, tau), axis, -1).reshape(xm.shape)
    close(got, ref)
    y = x * 2
    refp = cvx_prox(None, np.moveaxis(y, axis, -1).reshape(xm.shape), 1.0,
                    lambda z: [cp.norm(z, 2, axis=1) <= 0.7])
    close(np.moveaxis(f.conj.prox(y, 1.0), axis, -1).reshape(xm.shape), refp)


def test_l21_tau_constant_along_axis(rng):
    x = rng.standard_normal((2, 6, 5))
    tau_px = rng.uniform(0.2, 1.0, (6, 5))
    got = L21().prox(x, np.broadcast_to(tau_px, x.shape))
    n = np.linalg.norm(x, axis=0)
    expected = x * np.maximum(1 - tau_px / n, 0)
    close(got, expected, 1e-14)
    with pytest.raises(ValueError, match="tau"):
        L21().prox(x, rng.uniform(0.2, 1.0, x.shape))


def test_l21_noncontiguous_matches_kernel(rng):
    x = rng.standard_normal((2, 7, 6))
    w = rng.uniform(0, 1, (7, 6))
    f = L21(weights=w)
    xf = np.asfortranarray(x)  # falls back to the NumPy path
    close(f.prox(xf, 0.4), f.prox(x, 0.4), 1e-14)
    close(f.conj.prox(xf, 1.0), f.conj.prox(x, 1.0), 1e-14)


def test_sum_of_norms_arbitrary_groups(rng):
    shape = (4, 5)
    groups = rng.integers(-1, 4, size=shape)
    w = rng.uniform(0.2, 2.0, 4)
    x = rng.standard_normal(shape) * 2
    tau = 0.7
    flat = groups.ravel()

    def obj(z):
        terms = []
        for g in range(4):
            idx = np.flatnonzero(flat == g)
            if idx.size:
                terms.append(w[g] * cp.norm(z[idx], 2))
        return cp.sum(cp.hstack(terms))

    ref = cvx_prox(obj, x.ravel(), tau).reshape(shape)
    f = SumOfNorms(groups, weights=w)
    close(f.prox(x, tau), ref)
    # unpenalised entries are unchanged
    np.testing.assert_array_equal(f.prox(x, tau)[groups == -1], x[groups == -1])
    expected = sum(w[g] * np.linalg.norm(x[groups == g]) for g in range(4))
    assert f(x) == pytest.approx(expected)


def test_nuclear_norm_and_batch(rng):
    X = rng.standard_normal((4, 3))
    tau = 0.8
    z = cp.Variable((4, 3))
    cp.Problem(cp.Minimize(cp.normNuc(z) + cp.sum_squares(z - X) / (2 * tau))).solve(solver="CLARABEL")
    close(NuclearNorm().prox(X, tau), z.value, 1e-6)
    assert NuclearNorm()(X) == pytest.approx(np.linalg.svd(X, compute_uv=False).sum())
    batch = rng.standard_normal((3, 4, 3))
    got = NuclearNorm().prox(batch, tau)
    for k in range(3):
        close(got[k], NuclearNorm().prox(batch[k], tau), 1e-12)


def test_squared_l2_closed_form(rng):
    x, b = rng.standard_normal(8), rng.standard_normal(8)
    tau = 0.4
    f = SquaredL2(b=b)
    close(f.prox(x, tau), cvx_prox(lambda z: 0.5 * cp.sum_squares(z - b), x, tau))
    close(f.grad(x), x - b, 1e-15)
    assert f.lipschitz == 1.0 and f.strong_convexity == 1.0 and f.is_smooth


def test_squared_l2_with_operator_cg(rng):
    A = rng.standard_normal((7, 5))
    b = rng.standard_normal(7)
    x = rng.standard_normal(5)
    tau = 2.5
    f = SquaredL2(b=b, op=Dense(A))
    ref = cvx_prox(lambda z: 0.5 * cp.sum_squares(A @ z - b), x, tau)
    close(f.prox(x, tau), ref)
    exact = np.linalg.solve(np.eye(5) / tau + A.T @ A, x / tau + A.T @ b)
    close(f.prox(x, tau), exact, 1e-9)
    # diagonal (array) step: (T^-1 + A^T A) z = T^-1 x + A^T b
    t = rng.uniform(0.5, 2.0, 5)
    exact = np.linalg.solve(np.diag(1 / t) + A.T @ A, x / t + A.T @ b)
    close(f.prox(x, t), exact, 1e-9)
    close(f.grad(x), A.T @ (A @ x - b), 1e-12)
    assert f.lipschitz == pytest.approx(np.linalg.norm(A, 2) ** 2, rel=1e-6)
    assert f(x) == pytest.approx(0.5 * np.sum((A @ x - b) ** 2))


@pytest.mark.parametrize("delta", [0.3, 2.0])
def test_huber(rng, delta):
    x = rng.standard_normal(15) * 2
    tau = 0.6
    # cvxpy.huber(z, M) = z^2 (|z|<=M), 2M|z| - M^2 otherwise: ours is that / (2 delta)
    ref = cvx_prox(lambda z: cp.sum(cp.huber(z, delta)) / (2 * delta), x, tau)
    f = Huber(delta)
    close(f.prox(x, tau), ref)
    a = np.abs(x)
    assert f(x) == pytest.approx(np.sum(np.where(a <= delta, x**2 / (2 * delta), a - delta / 2)))
    assert f.lipschitz == pytest.approx(1 / delta)
    close(f.grad(x), np.clip(x / delta, -1, 1), 1e-15)


def test_kullback_leibler(rng):
    n = 10
    b = rng.poisson(3.0, n).astype(float)
    b[:2] = 0.0
    r = 0.5
    x = rng.standard_normal(n) * 3
    tau = 0.7
    ref = cvx_prox(lambda z: cp.sum(z + r) - cp.sum(cp.multiply(b[2:], cp.log(z[2:] + r))), x, tau,
                   lambda z: [z + r >= 0])
    f = KullbackLeibler(b, background=r)
    z = f.prox(x, tau)
    close(z, ref, 1e-5)  # the exponential cone is solved less accurately than the rest
    # optimality 1 - b / (z + r) + (z - x) / tau = 0 where b > 0; z = max(x - tau, -r) where b = 0
    np.testing.assert_allclose((1 - b[2:] / (z[2:] + r) + (z[2:] - x[2:]) / tau), 0, atol=1e-12)
    close(z[:2], np.maximum(x[:2] - tau, -r), 1e-15)
    # value with 0 log 0 = 0, and +inf outside the domain
    u = np.abs(x) + 0.1
    from scipy.special import xlogy

    assert f(u - r) == pytest.approx(np.sum(u - xlogy(b, u) + xlogy(b, b) - b))
    assert f(b - r) == pytest.approx(0.0, abs=1e-12)
    assert f(np.full(n, -r - 1e-3)) == np.inf


def test_kl_prox_no_cancellation():
    # v = x + r - tau << 0: the naive root loses every digit
    f = KullbackLeibler(np.array([1e-8]))
    z = f.prox(np.array([-1e8]), 1.0)
    u = z[0]
    assert u > 0
    # root of u^2 + (tau - x) u - tau b = 0
    assert u == pytest.approx(1e-8 / (1e8 + 1.0), rel=1e-10)


def test_indicators_projection(rng):
    x = rng.standard_normal(30) * 2
    lo, hi = -0.5 * np.ones(30), rng.uniform(0, 1, 30)
    close(NonNegative().prox(x, 0.3), cvx_prox(None, x, 1.0, lambda z: [z >= 0]))
    close(Box(lo, hi).prox(x, 2.0), cvx_prox(None, x, 1.0, lambda z: [z >= lo, z <= hi]))
    close(Box(upper=0.2).prox(x, 2.0), np.minimum(x, 0.2), 0)
    close(Simplex(2.0).prox(x, 1.0), cvx_prox(None, x, 1.0, lambda z: [z >= 0, cp.sum(z) == 2.0]))
    close(L1Ball(1.5).prox(x, 1.0), cvx_prox(None, x, 1.0, lambda z: [cp.norm1(z) <= 1.5]))
    c = rng.standard_normal(30)
    close(L2Ball(0.8, center=c).prox(x, 1.0), cvx_prox(None, x, 1.0, lambda z: [cp.norm(z - c, 2) <= 0.8]))
    np.testing.assert_array_equal(Zero().prox(x, 0.5), x)
    small = x / (np.abs(x).sum() * 2)
    np.testing.assert_array_equal(L1Ball(1.0).prox(small, 1.0), small)


@pytest.mark.parametrize("n", [1, 2, 50, 1000])
def test_simplex_large(rng, n):
    x = rng.standard_normal(n) * 3
    got = Simplex(1.0).prox(x, 1.0)
    ref = cvx_prox(None, x, 1.0, lambda z: [z >= 0, cp.sum(z) == 1.0])
    close(got, ref, 1e-6)
    assert Simplex(1.0)(got) == 0.0


def test_simplex_and_l1ball_batch(rng):
    X = rng.standard_normal((6, 9))
    for axis in (0, 1):
        got = Simplex(1.5, axis=axis).prox(X, 1.0)
        other = 1 - axis  # each slice along `other` is one simplex along `axis`
        ref = np.stack([Simplex(1.5).prox(v, 1.0) for v in np.moveaxis(X, other, 0)], axis=other)
        close(got, ref, 1e-14)
        np.testing.assert_allclose(got.sum(axis=axis), 1.5, atol=1e-12)
        got = L1Ball(1.0, axis=axis).prox(X * 0.3, 1.0)
        ref = np.stack([L1Ball(1.0).prox(v, 1.0) for v in np.moveaxis(X * 0.3, other, 0)], axis=other)
        close(got, ref, 1e-14)
