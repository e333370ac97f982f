"""l1_logistic: l1 multinomial logistic regression by proximal Newton, against scikit-learn and cvxpy."""

import warnings

import numpy as np
import pytest
from tikhon.solvers import ConvergenceWarning, l1_logistic
from tikhon.solvers.multinomial import multinomial_objective


def _problem(n=80, p=8, K=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = 2 * rng.standard_normal((p, K)) * (rng.random((p, K)) < 0.4)
    y = np.argmax(X @ W + rng.gumbel(size=(n, K)), axis=1)
    return X, y


def _objective(res, X, Y, w, lam):
    B, b = res.x, res.info["intercept"]
    return multinomial_objective(X @ B + b, Y, w / w.mean(), B, lam)


def _sklearn_objective(X, y, lam, K, sample_weight=None):
    from sklearn.linear_model import LogisticRegression

    n = X.shape[0]
    s = np.ones(n) if sample_weight is None else sample_weight
    C = 1.0 / (lam * s.sum())  # the documented correspondence lam = 1 / (C sum(s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LogisticRegression(l1_ratio=1.0, C=C, solver="saga", tol=1e-12, max_iter=20000).fit(
            X, y, sample_weight=sample_weight)
    B, b = m.coef_.T, m.intercept_
    if K == 2:  # scikit-learn's binary model: one coefficient vector, softmax logits (0, x beta + b)
        B, b = np.column_stack([np.zeros(X.shape[1]), B[:, 0]]), np.array([0.0, b[0]])
    return multinomial_objective(X @ B + b, np.eye(K)[y], s / s.mean(), B, lam)


@pytest.mark.parametrize("K", [2, 3])
def test_matches_sklearn_saga(K):
    X, y = _problem(K=K)
    lam = 0.02
    res = l1_logistic(X, y, lam, tol=1e-9)
    assert res.converged and res.info["kkt"] <= 1e-9
    ours = _objective(res, X, np.eye(K)[y], np.ones(len(y)), lam)
    assert ours == pytest.approx(res.info["objective"], rel=1e-12)
    ref = _sklearn_objective(X, y, lam, K)
    assert abs(ours - ref) <= 1e-5 * abs(ref)
    assert ours <= ref + 1e-12  # a minimizer: never above the reference
    assert np.abs(res.info["intercept"].mean()) < 1e-12  # the softmax's free direction is fixed


@pytest.mark.parametrize("lam", [1e-4, 1e-6])
def test_small_lam_with_three_classes_matches_sklearn(lam):
    # one-class steps cannot move a feature's coefficients in every class at once (the softmax
    # ignores that shift): the sweep used to stall at a residual of about lam
    X, y = _problem(n=60, p=5, K=3, seed=2)
    res = l1_logistic(X, y, lam, tol=1e-9, max_iter=200)
    assert res.converged, res.message
    ours = _objective(res, X, np.eye(3)[y], np.ones(len(y)), lam)
    ref = _sklearn_objective(X, y, lam, 3)
    assert ours <= ref + 1e-9 * abs(ref)  # certified by the KKT residual: never above saga
    if lam >= 1e-4:  # at lam = 1e-6 saga itself stops 1e-6 above our objective
        assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_sample_weights_match_sklearn():
    X, y = _problem(seed=1)
    s = np.random.default_rng(3).uniform(0.2, 3.0, len(y))
    lam = 0.03
    res = l1_logistic(X, y, lam, sample_weight=s, tol=1e-9)
    ours = _objective(res, X, np.eye(3)[y], s, lam)
    ref = _sklearn_objective(X, y, lam, 3, sample_weight=s)
    assert abs(ours - ref) <= 1e-5 * abs(ref)
    # weights are rescaled to mean 1: multiplying them by a constant changes nothing
    res2 = l1_logistic(X, y, lam, sample_weight=7.0 * s, tol=1e-9)
    np.testing.assert_allclose(res2.x, res.x, atol=1e-6)
    # integer weights = repeated samples
    reps = np.array([1, 2, 3] * (len(y) // 3) + [1] * (len(y) % 3))
    r_w = l1_logistic(X, y, lam, sample_weight=reps.astype(float), tol=1e-9)
    r_rep = l1_logistic(np.repeat(X, reps, axis=0), np.repeat(y, reps), lam, tol=1e-9)
    np.testing.assert_allclose(r_w.x, r_rep.x, atol=1e-6)


def test_soft_labels_match_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(2)
    n, p, K = 60, 6, 3
    X = rng.standard_normal((n, p))
    logits = X @ (rng.standard_normal((p, K)) * (rng.random((p, K)) < 0.5))
    Y = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2.0, n)
    lam = 0.01
    res = l1_logistic(X, Y, lam, sample_weight=w, tol=1e-10)
    assert res.converged
    B, b = cp.Variable((p, K)), cp.Variable(K)
    eta = X @ B + np.ones((n, 1)) @ cp.reshape(b, (1, K), order="C")
    wn = w / w.mean()
    loss = cp.sum(cp.multiply(wn, cp.log_sum_exp(eta, axis=1) - cp.sum(cp.multiply(Y, eta), axis=1))) / n
    prob = cp.Problem(cp.Minimize(loss + lam * cp.sum(cp.abs(B))))
    prob.solve(solver=cp.CLARABEL)
    ours = res.info["objective"]
    assert abs(ours - prob.value) <= 1e-5 * abs(prob.value)


def test_large_lam_gives_featureless_model():
    X, y = _problem()
    n = len(y)
    Y = np.eye(3)[y]
    G = X.T @ (Y - Y.mean(axis=0)) / n
    res = l1_logistic(X, y, 1.01 * np.abs(G).max(), tol=1e-10)
    assert np.all(res.x == 0)
    freq = Y.mean(axis=0)
    np.testing.assert_allclose(res.info["intercept"], np.log(freq) - np.log(freq).mean(), atol=1e-8)


def test_warm_start_and_no_intercept():
    X, y = _problem()
    res = l1_logistic(X, y, 0.02, tol=1e-9)
    warm = l1_logistic(X, y, 0.02, coef0=res.x, intercept0=res.info["intercept"], tol=1e-9)
    assert warm.n_iter <= 2
    nob = l1_logistic(X, y, 0.02, fit_intercept=False, tol=1e-9)
    assert np.all(nob.info["intercept"] == 0) and nob.converged
    assert nob.info["objective"] >= res.info["objective"] - 1e-12


def test_max_iter_warns():
    X, y = _problem()
    with pytest.warns(ConvergenceWarning):
        res = l1_logistic(X, y, 0.001, tol=1e-14, max_iter=1)
    assert res.status == "max_iter" and not res.converged


def test_objective_decreases_monotonically():
    X, y = _problem(seed=4)
    res = l1_logistic(X, y, 0.005, tol=1e-9)
    assert res.converged
    obj = res.history["objective"]
    assert np.all(np.diff(obj) <= 1e-12)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"X": np.ones((5, 2), dtype=int)}, TypeError, "X"),
        ({"X": np.full((5, 2), np.nan)}, ValueError, "X"),
        ({"Y": np.array([0.0, 1, 0, 1, 0])}, TypeError, "Y"),
        ({"Y": np.zeros(5, dtype=int)}, ValueError, "2 classes"),
        ({"Y": np.zeros(4, dtype=int)}, ValueError, "Y"),
        ({"Y": np.full((5, 2), 0.3)}, ValueError, "sum to 1"),
        ({"Y": np.column_stack([np.full(5, 1.5), np.full(5, -0.5)])}, ValueError, "nonnegative"),
        ({"lam": -1.0}, ValueError, "lam"),
        ({"sample_weight": -np.ones(5)}, ValueError, "sample_weight"),
        ({"sample_weight": np.zeros(5)}, ValueError, "sample_weight"),
        ({"sample_weight": np.ones(3)}, ValueError, "sample_weight"),
        ({"coef0": np.zeros((3, 2))}, ValueError, "coef0"),
        ({"tol": -1.0}, ValueError, "tol"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"X": np.random.default_rng(0).standard_normal((5, 2)), "Y": np.array([0, 1, 0, 1, 1]),
            "lam": 0.1}
    args.update(kwargs)
    X, Y, lam = args.pop("X"), args.pop("Y"), args.pop("lam")
    with pytest.raises(exc, match=match):
        l1_logistic(X, Y, lam, **args)
