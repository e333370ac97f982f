"""LassoMoE: EM for the l1-penalized softmax-gated mixture of Gaussian experts."""

import itertools
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.linear_model import Lasso
from tikhon.solvers import ConvergenceWarning, LassoMoE, lasso_moe_path
from tikhon.solvers.mixture_of_experts import paper_lambda_bound


def planted(n=200, p=500, K=2, s=5, noise=0.5, seed=0):
    """A K-expert problem: a gate on features 0 and 1, s active features per expert."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    gate = np.zeros((K, p))
    gate[:, :2] = 3.0 * rng.standard_normal((K, 2))
    if K == 2:
        gate[1] = -gate[0]
    beta = np.zeros((K, p))
    supports = []
    for k in range(K):
        S = rng.choice(np.arange(2, p), s, replace=False)
        beta[k, S] = rng.choice([-1.0, 1.0], s) * (1 + rng.random(s)) * 1.5
        supports.append(set(S.tolist()))
    eta = X @ gate.T
    P = np.exp(eta - eta.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    z = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    y = (X @ beta.T)[np.arange(n), z] + rng.standard_normal(K)[z] + noise * rng.standard_normal(n)
    return X, y, supports


def _f1(est, true):
    est, true = set(est), set(true)
    return 1.0 if not est and not true else 2 * len(est & true) / (len(est) + len(true))


def test_one_expert_is_sklearn_lasso_at_lam_sigma2():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 20))
    y = X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal(80)
    lam = 0.05
    m = LassoMoE(n_experts=1, lam=lam, tol=1e-13, max_iter=500, n_init=1, random_state=0,
                 on_increase="raise").fit(X, y)
    assert m.converged_
    sk = Lasso(alpha=lam * m.sigma_[0] ** 2, tol=1e-14, max_iter=100_000).fit(X, y)
    assert np.count_nonzero(sk.coef_) > 0
    np.testing.assert_allclose(m.coef_[0], sk.coef_, atol=1e-6)
    assert abs(m.intercept_[0] - sk.intercept_) <= 1e-6
    # sigma^2 is the closed-form M-step: the mean squared residual
    r = y - X @ m.coef_[0] - m.intercept_[0]
    assert m.sigma_[0] ** 2 == pytest.approx(np.mean(r ** 2), rel=1e-8)
    np.testing.assert_allclose(m.predict_proba(X), 1.0)


def test_objective_never_increases_and_is_reproducible():
    X, y, _ = planted(n=120, p=60, seed=2)
    kw = {"n_experts": 2, "lam": 0.03, "n_init": 2, "max_iter": 60, "random_state": 5, "on_increase": "raise"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = LassoMoE(**kw).fit(X, y)
        b = LassoMoE(**kw).fit(X, y)
    assert np.all(np.diff(a.objective_path_) <= 1e-10 * np.abs(a.objective_path_[:-1]).max())
    for name in ("coef_", "intercept_", "gate_coef_", "gate_intercept_", "sigma_", "objective_path_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    # the objective reported is the penalized negative mean log-likelihood at the fitted parameters
    J = (-a.score(X, y) + a.lam_gate_ * np.abs(a.gate_coef_).sum() + a.lam_expert_ * np.abs(a.coef_).sum())
    assert J == pytest.approx(a.objective_, rel=1e-10)


def test_one_expert_scaled_penalty_matches_cvxpy():
    # Städler et al.'s K=1 problem is convex in (phi, phi0, rho) = (beta, beta0, 1) / sigma:
    # -log rho + ||rho y - phi0 - X phi||^2 / (2 n) + lam ||phi||_1, solved independently by cvxpy
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(7)
    n, p = 60, 15
    X = rng.standard_normal((n, p))
    y = X[:, :3] @ np.array([1.0, -1.5, 0.5]) + 0.4 * rng.standard_normal(n) + 2.0
    lam = 0.1
    m = LassoMoE(n_experts=1, lam=lam, penalty="scaled", tol=1e-13, max_iter=2000, n_init=1, random_state=0,
                 on_increase="raise").fit(X, y)
    assert m.converged_
    phi, phi0, rho = cp.Variable(p), cp.Variable(), cp.Variable(pos=True)
    obj = -cp.log(rho) + cp.sum_squares(rho * y - phi0 - X @ phi) / (2 * n) + lam * cp.norm1(phi)
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10)
    sigma_ref = 1.0 / rho.value
    assert np.count_nonzero(np.abs(phi.value) > 1e-6) > 0
    assert m.sigma_[0] == pytest.approx(sigma_ref, rel=1e-4)
    np.testing.assert_allclose(m.coef_[0], phi.value * sigma_ref, atol=1e-4)
    assert m.intercept_[0] == pytest.approx(phi0.value * sigma_ref, abs=1e-4)
    # the reported objective is J with the scaled penalty (= cvxpy's value + log(2 pi) / 2)
    assert m.objective_ == pytest.approx(obj.value + 0.5 * np.log(2 * np.pi), abs=1e-7)
    # lam="auto" for the scaled penalty is sqrt(2 log p / (K n)), K = 1 here
    auto = LassoMoE(n_experts=1, penalty="scaled", n_init=1, random_state=0).fit(X, y)
    assert auto.lam_expert_ == pytest.approx(np.sqrt(2 * np.log(p) / n))


def test_scaled_penalty_objective_never_increases():
    X, y, _ = planted(n=120, p=60, seed=2)
    kw = {"n_experts": 2, "lam": 0.05, "penalty": "scaled", "n_init": 2, "max_iter": 60, "random_state": 5,
          "on_increase": "raise"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = LassoMoE(**kw).fit(X, y)
        b = LassoMoE(**kw).fit(X, y)
    assert a.n_iter_ > 1
    assert np.all(np.diff(a.objective_path_) <= 1e-10 * np.abs(a.objective_path_[:-1]).max())
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.sigma_, b.sigma_)
    J = (-a.score(X, y) + a.lam_gate_ * np.abs(a.gate_coef_).sum()
         + a.lam_expert_ * (np.abs(a.coef_).sum(axis=1) / a.sigma_).sum())
    assert J == pytest.approx(a.objective_, rel=1e-10)
    with pytest.raises(ValueError, match="penalty"):
        LassoMoE(penalty="sqrt").fit(X, y)
    # lam="auto" with the scaled penalty: the universal Lasso level of balanced experts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        auto = LassoMoE(n_experts=2, penalty="scaled", n_init=1, max_iter=2, random_state=0).fit(X, y)
    assert auto.lam_expert_ == auto.lam_gate_ == pytest.approx(np.sqrt(2 * np.log(60) / (2 * 120)))


@pytest.mark.xfail(run=False, strict=True, reason=(
    "does not reproduce (H1b, measured): with the paper's penalty lam ||beta||_1 on the unscaled "
    "likelihood, lam >= 0.08 ends at beta = 0 (F1 = 0; J(beta=0) = 2.84 < J(truth) ~ 0.9 + 22 lam); "
    "lam = 0.01-0.05 (sigma_floor=0.1, i.e. sigma >= 0.42, true 0.5) puts sigma on its floor with ~100 "
    "features per expert (F1 0.065-0.078), and with the default floor an expert interpolates a subset "
    "(sigma ~ 0.1): the effective Lasso level alpha = lam sigma^2 n / n_k is ~10x below sigma "
    "sqrt(2 log p / n_k) wherever beta = 0 is not optimal"))
def test_planted_two_experts_recovers_supports():
    X, y, supports = planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = LassoMoE(n_experts=2, lam=0.03, n_init=2, max_iter=200, random_state=0).fit(X, y)
    f1 = max(np.mean([_f1(np.flatnonzero(m.coef_[perm[k]]), supports[k]) for k in range(2)])
             for perm in itertools.permutations(range(2)))
    gate_support = np.flatnonzero(np.any(m.gate_coef_ != 0, axis=0))
    assert f1 >= 0.9, f1
    assert set(gate_support.tolist()) == {0, 1}


@pytest.mark.xfail(run=False, strict=True, reason=(
    "does not reproduce either with the scale-invariant penalty of Städler et al. (H7, measured on "
    "planted(seed=0, 1, 2)): BIC over this grid picks lam 0.06 / 0.12 / 0.07 with expert F1 0.74 / 0.12 / "
    "0.95 (held-out likelihood: F1 0.11 / 0.04 / 0.13); no single lam reaches 0.9 on the three seeds "
    "(lam 0.06, n_init=8: 0.74 / 0.74 / 0.95; lam 0.07: 0.05 / 0.87 / 0.95). At the M-step's fixed "
    "point sigma_k^2 = MSE_k + lam sigma_k (n / n_k) ||beta_k||_1, so sigma is inflated to 1.5-2.5 "
    "(true 0.5), and at several lam the best penalized likelihood found is a wrong clustering with "
    "50-100 features per expert (seed 0, lam 0.07: J 2.585 at F1 0.05 below J 2.606 at F1 0.88 from the "
    "true labels)"))
def test_planted_two_experts_scaled_penalty_bic():
    X, y, supports = planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m, _ = lasso_moe_path(X, y, [0.12, 0.1, 0.085, 0.07, 0.06, 0.05, 0.03], n_experts=2, penalty="scaled",
                              n_init=2, max_iter=200, random_state=0)
    f1 = max(np.mean([_f1(np.flatnonzero(m.coef_[perm[k]]), supports[k]) for k in range(2)])
             for perm in itertools.permutations(range(2)))
    gate_support = np.flatnonzero(np.any(m.gate_coef_ != 0, axis=0))
    assert f1 >= 0.9, f1
    assert set(gate_support.tolist()) == {0, 1}


def test_predict_bic_and_auto_lam():
    X, y, _ = planted(n=100, p=30, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = LassoMoE(n_experts=2, lam="auto", n_init=1, max_iter=30, random_state=0).fit(X, y)
    from tikhon.solvers.mixture_of_experts import LAMBDA_AUTO_CONSTANT

    assert m.lam_gate_ == m.lam_expert_ == pytest.approx(LAMBDA_AUTO_CONSTANT * paper_lambda_bound(100, 30))
    g = m.predict_proba(X)
    np.testing.assert_allclose(g.sum(axis=1), 1.0)
    mu = X @ m.coef_.T + m.intercept_
    np.testing.assert_allclose(m.predict(X), (g * mu).sum(axis=1))
    assert m.bic(X, y) == pytest.approx(-2 * 100 * m.score(X, y) + m.n_parameters() * np.log(100))


def test_bad_parameters():
    X, y, _ = planted(n=30, p=15)
    for kw, exc in [({"n_experts": 0}, ValueError), ({"lam": -1.0}, ValueError), ({"lam": "big"}, ValueError),
                    ({"n_init": 1.5}, TypeError), ({"on_increase": "ignore"}, ValueError),
                    ({"tol": -1.0}, ValueError)]:
        with pytest.raises(exc):
            LassoMoE(**kw).fit(X, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        LassoMoE().fit(np.full((30, 5), np.nan), y)


def test_sklearn_estimator_checks_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            LassoMoE(n_experts=2, lam=0.1, n_init=1, max_iter=20, random_state=0),
            # predict_proba is the gate's probabilities (the API the issue asks for); scikit-learn
            # expects regressors to have none
            expected_failed_checks={"check_regressors_no_decision_function": "predict_proba is the gate"},
            on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == [], failed
    X, y, _ = planted(n=90, p=20, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gs = GridSearchCV(LassoMoE(n_init=1, max_iter=20, random_state=0), {"lam": [0.01, 0.1]}, cv=3).fit(X, y)
    assert gs.best_params_["lam"] in (0.01, 0.1)
    assert np.isfinite(gs.best_score_)


def test_lasso_moe_path_picks_a_level():
    X, y, _ = planted(n=100, p=30, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, table = lasso_moe_path(X, y, [0.3, 0.03, 0.003], n_init=1, max_iter=30, random_state=0)
        assert best.lam_expert_ == table["lam"][np.argmin(table["bic"])]
        best_h, table_h = lasso_moe_path(X, y, [0.3, 0.03], criterion="heldout", n_init=1, max_iter=30,
                                         random_state=0)
    assert best_h.lam_expert_ == table_h["lam"][np.argmax(table_h["heldout"])]


def test_parameter_count_from_known_nonzeros():
    X, y, _ = planted(n=60, p=10, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = LassoMoE(n_experts=3, lam=0.05, n_init=1, max_iter=5, random_state=0).fit(X, y)
    # set a known pattern: 4 expert nonzeros; gate rows with 0, 1, 2 and 3 nonzeros among 3 classes
    m.coef_ = np.zeros_like(m.coef_)
    m.coef_[0, :2] = 1.0
    m.coef_[2, [3, 7]] = -1.0
    m.gate_coef_ = np.zeros_like(m.gate_coef_)
    m.gate_coef_[0, 1] = 1.0
    m.gate_coef_[:2, 2] = 1.0
    m.gate_coef_[:, 3] = 1.0
    # 4 coefficients + 3 intercepts + 3 sigmas + gate (1 + 2 + 2 identifiable, + 2 intercepts)
    assert m.n_parameters() == 4 + 3 + 3 + (1 + 2 + 2) + 2


def test_small_data_many_experts_and_generator_seed():
    X, y, _ = planted(n=20, p=12, seed=6)
    with pytest.raises(ValueError, match="n_experts"):
        LassoMoE(n_experts=11).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # ten experts on twenty samples: starts leave some experts with a single sample
        LassoMoE(n_experts=10, lam=0.1, n_init=2, max_iter=3, random_state=0).fit(X, y)
        a = LassoMoE(n_experts=2, lam=0.1, n_init=2, max_iter=5,
                     random_state=np.random.default_rng(4)).fit(X, y)
        b = LassoMoE(n_experts=2, lam=0.1, n_init=2, max_iter=5,
                     random_state=np.random.default_rng(4)).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.01])
def test_heldout_fraction_is_checked(fraction):
    X, y, _ = planted(n=40, p=12, seed=7)
    with pytest.raises(ValueError, match="validation_fraction"):
        lasso_moe_path(X, y, [0.1], criterion="heldout", validation_fraction=fraction)
