import numpy as np
import pytest

from tikhon.solvers.transport import inverse_ot, sinkhorn
from tikhon.solvers.transport._inverse_model import Model as _Model


def _toy(n=40, d=4, N=20000, eps=0.5, seed=0):
    rng = np.random.default_rng(seed)
    A = np.zeros((d, d))
    A[0, 0], A[1, 2], A[d - 1, 1] = 1.0, -0.8, 0.6
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n, d))
    P = sinkhorn(None, None, -X @ A @ Y.T, eps, tol=1e-11).x
    idx = rng.choice(n * n, size=N, p=(P / P.sum()).ravel())
    P_hat = np.bincount(idx, minlength=n * n).reshape(n, n) / N
    return X, Y, P_hat, A


def test_recovers_planted_support():
    X, Y, P_hat, A = _toy()
    res = inverse_ot(X, Y, P_hat, 0.5, 0.03, tol=1e-5)
    assert res.converged
    support = np.abs(res.x) > 1e-8
    np.testing.assert_array_equal(support, A != 0)
    assert np.all(np.sign(res.x[A != 0]) == np.sign(A[A != 0]))


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(10, 2))
    P_hat = rng.random((12, 10))
    P_hat /= P_hat.sum()
    model = _Model(X, Y, P_hat, 0.7, None, None, None, 1e-13)
    A = rng.normal(size=(3, 2))
    _, grad = model.value_grad(A)
    h = 1e-5
    fd = np.zeros_like(A)
    for k in np.ndindex(A.shape):
        E = np.zeros_like(A)
        E[k] = h
        fd[k] = (model.value_grad(A + E)[0] - model.value_grad(A - E)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_features_equal_bilinear_and_convexity():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(9, 2)), rng.normal(size=(8, 2))
    P_hat = rng.random((9, 8))
    F = np.stack([np.outer(X[:, p], Y[:, q]) for p in range(2) for q in range(2)])
    bil = _Model(X, Y, P_hat, 0.5, None, None, None, 1e-12)
    gen = _Model(X, Y, P_hat, 0.5, F, None, None, 1e-12)
    A = rng.normal(size=(2, 2))
    v1, g1 = bil.value_grad(A)
    v2, g2 = gen.value_grad(A.ravel())
    assert v1 == pytest.approx(v2, rel=1e-9)
    np.testing.assert_allclose(g1.ravel(), g2, rtol=1e-8)
    B = rng.normal(size=(2, 2))
    mid = bil.value_grad((A + B) / 2)[0]
    assert mid <= (bil.value_grad(A)[0] + bil.value_grad(B)[0]) / 2 + 1e-10


def test_path_and_lam_max():
    X, Y, P_hat, _ = _toy(n=25, d=3, N=5000, seed=3)
    res = inverse_ot(X, Y, P_hat, 0.5, [1.0, 0.2, 0.05], tol=1e-5)
    lam_max = res.info["lam_max"]
    assert res.info["path"].shape == (3, 3, 3)
    # above lam_max the estimate is exactly zero; the support grows down the path
    res0 = inverse_ot(X, Y, P_hat, 0.5, 1.01 * lam_max, tol=1e-6)
    assert np.all(res0.x == 0)
    nnz = (np.abs(res.info["path"]) > 0).sum(axis=(1, 2))
    assert np.all(np.diff(nnz) >= 0)
    np.testing.assert_allclose(res.x, res.info["path"][-1])


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(eps=0.0), ValueError, "eps"),
        (dict(lam=-0.1), ValueError, "lam"),
        (dict(coupling=-np.ones((6, 5))), ValueError, "coupling"),
        (dict(coupling=np.ones((5, 5))), ValueError, "coupling"),
        (dict(X=np.full((6, 2), np.nan)), ValueError, "X"),
        (dict(features=np.ones((2, 6, 4))), ValueError, "features"),
        (dict(Y=np.ones((5, 2), dtype=int)), TypeError, "Y"),
    ],
)
def test_validation(kwargs, exc, word):
    rng = np.random.default_rng(0)
    args = dict(X=rng.normal(size=(6, 2)), Y=rng.normal(size=(5, 2)), coupling=np.ones((6, 5)), eps=0.5, lam=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        inverse_ot(**args)


def test_unobserved_points_are_dropped_not_fatal():
    # few samples leave some points with no observed pair: their marginal is
    # zero, and the estimate must equal the one computed without them
    X, Y, P_hat, A = _toy(n=30, N=60, seed=3)
    assert (P_hat.sum(1) == 0).any() or (P_hat.sum(0) == 0).any()
    res = inverse_ot(X, Y, P_hat, 0.5, 0.05, tol=1e-6)
    ia, ib = P_hat.sum(1) > 0, P_hat.sum(0) > 0
    ref = inverse_ot(X[ia], Y[ib], P_hat[np.ix_(ia, ib)], 0.5, 0.05, tol=1e-6)
    assert res.converged and ref.converged
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)


def test_a_point_evaluated_twice_is_solved_once():
    # FISTA asks again for the loss at points it has just evaluated (an
    # extrapolation equal to the iterate, the start of the next lam of a path):
    # each such request used to cost a Sinkhorn solve
    X, Y, P_hat, _ = _toy(n=20, d=3, N=3000, seed=4)
    model = _Model(X, Y, P_hat, 0.5, None, None, None, 1e-10)
    A = np.full((3, 3), 0.1)
    v1, g1 = model.value_grad(A)
    v2, g2 = model.value_grad(A.copy())
    assert model.n_sinkhorn == 1 and v1 == v2 and np.array_equal(g1, g2)
    model.value_grad(A + 1e-3)
    assert model.n_sinkhorn == 2
    # above lam_max the estimate stays at zero, which was already solved for lam_max
    res = inverse_ot(X, Y, P_hat, 0.5, 1e3, tol=1e-6)
    assert res.converged and np.all(res.x == 0) and res.info["n_sinkhorn"] == 1
