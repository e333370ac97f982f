"""lasso and lasso_path against scikit-learn, cvxpy, least squares and an independent gap."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from tikhon.solvers import ConvergenceWarning, lasso, lasso_path
from tikhon.solvers.coordinate_descent import alpha_max

pytestmark = pytest.mark.usefixtures("single_numba_thread")


# ---------------------------------------------------------------------------
# problems and independent references
# ---------------------------------------------------------------------------


def _problem(kind="dense", n=60, p=150, seed=0, dtype=np.float64, k=8):
    rng = np.random.default_rng(seed)
    if kind == "dense":
        # columns with nonzero means, so that the intercept matters
        X = rng.standard_normal((n, p)) + rng.uniform(-1, 1, p)
    else:
        # nonnegative sparse columns: their means are far from zero
        X = sp.random(n, p, density=0.15, random_state=seed, format="csc",
                      data_rvs=lambda size: rng.uniform(0.5, 2.0, size))
    w = np.zeros(p)
    w[rng.choice(p, k, replace=False)] = rng.standard_normal(k) * 2
    y = X @ w + 0.1 * rng.standard_normal(n) + 1.5
    sw = rng.uniform(0.2, 3.0, n)
    X = X.astype(dtype)
    return X, y.astype(dtype), sw


def _dense64(X):
    return X.toarray().astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)


def _objective(X, y, lam, w, b, sw=None, pw=None):
    """scikit-learn's Lasso objective with sample weights (float64, written independently)."""
    X = _dense64(X)
    y = np.asarray(y, dtype=np.float64)
    sw = np.ones(len(y)) if sw is None else np.asarray(sw, dtype=np.float64)
    pw = np.ones(X.shape[1]) if pw is None else pw
    r = y - X @ np.asarray(w, dtype=np.float64) - b
    return 0.5 * np.sum(sw * r * r) / sw.sum() + lam * np.sum(pw * np.abs(w))


def _gap(X, y, lam, w, b, sw=None, fit_intercept=True):
    """Duality gap from the rescaled residual (every feature penalized, pw = 1)."""
    X = _dense64(X)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n = len(y)
    s = np.full(n, 1.0 / n) if sw is None else np.asarray(sw) / np.sum(sw)
    yc = y - (s @ y if fit_intercept else 0.0)
    R = y - X @ w - b
    assert abs(s @ R) <= 1e-10 * np.sqrt(s @ (yc * yc)) or not fit_intercept
    corr = X.T @ (s * R)
    theta = R / max(1.0, np.max(np.abs(corr)) / lam)
    primal = 0.5 * s @ (R * R) + lam * np.abs(w).sum()
    dual = 0.5 * s @ (yc * yc) - 0.5 * s @ ((yc - theta) ** 2)
    return primal - dual, s @ (yc * yc)


def _sklearn(X, y, lam, sw=None, fit_intercept=True):
    from sklearn.linear_model import Lasso

    X = X.astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    m = Lasso(alpha=lam, fit_intercept=fit_intercept, tol=1e-13, max_iter=500_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(X, np.asarray(y, dtype=np.float64), sample_weight=sw)
    return m.coef_, float(m.intercept_)


def _lam(X, y, sw, fit_intercept, frac=0.05):
    return frac * alpha_max(X, y, sample_weight=sw, fit_intercept=fit_intercept)


# ---------------------------------------------------------------------------
# agreement with scikit-learn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_matches_sklearn_objective(kind, fit_intercept, weighted, dtype):
    X, y, sw = _problem(kind, dtype=dtype)
    sw = sw if weighted else None
    lam = _lam(X, y, sw, fit_intercept)
    res = lasso(X, y, lam, sample_weight=sw, fit_intercept=fit_intercept, tol=1e-10)
    assert res.status == "converged"
    assert res.x.dtype == dtype and res.x.shape == (X.shape[1],)
    assert isinstance(res.info["intercept"], float)
    if not fit_intercept:
        assert res.info["intercept"] == 0.0
    # the reference solves the same float32-valued problem in float64
    w_ref, b_ref = _sklearn(X, y, lam, sw, fit_intercept)
    ours = _objective(X, y, lam, res.x, res.info["intercept"], sw)
    ref = _objective(X, y, lam, w_ref, b_ref, sw)
    assert abs(ours - ref) <= 1e-6 * ref
    assert np.count_nonzero(res.x) > 0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_gap_certificate_independent(kind, fit_intercept, weighted):
    X, y, sw = _problem(kind, seed=1)
    sw = sw if weighted else None
    lam = _lam(X, y, sw, fit_intercept, 0.1)
    tol = 1e-7
    res = lasso(X, y, lam, sample_weight=sw, fit_intercept=fit_intercept, tol=tol)
    assert res.converged
    gap, scale = _gap(X, y, lam, res.x, res.info["intercept"], sw, fit_intercept)
    assert res.info["gap_tol"] == pytest.approx(tol * scale, rel=1e-10)
    assert gap <= tol * scale * (1 + 1e-6) + 1e-15
    assert res.info["gap"] == pytest.approx(gap, rel=1e-6, abs=1e-14)
    # the gap bounds the suboptimality
    w_ref, b_ref = _sklearn(X, y, lam, sw, fit_intercept)
    ref = _objective(X, y, lam, w_ref, b_ref, sw)
    assert _objective(X, y, lam, res.x, res.info["intercept"], sw) - ref <= gap + 1e-12 * ref


def test_sample_weights_are_scale_invariant_and_match_repetition():
    X, y, _ = _problem("dense", n=30, p=40, seed=2)
    counts = np.arange(30) % 3 + 1
    lam = _lam(X, y, counts.astype(float), True)
    a = lasso(X, y, lam, sample_weight=counts.astype(float), tol=1e-12)
    b = lasso(X, y, lam, sample_weight=7.0 * counts, tol=1e-12)
    # integer weights are repeated rows
    rep = np.repeat(np.arange(30), counts)
    c = lasso(X[rep], y[rep], lam, tol=1e-12)
    np.testing.assert_allclose(a.x, b.x, atol=1e-9)
    np.testing.assert_allclose(a.x, c.x, atol=1e-6)
    assert a.info["intercept"] == pytest.approx(c.info["intercept"], abs=1e-6)


# ---------------------------------------------------------------------------
# penalty weights, lam = 0, lam >= alpha_max
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_penalty_weights_match_rescaled_sklearn(kind):
    # lam sum_j pw_j |w_j| with v_j = pw_j w_j is the plain Lasso on the columns X_j / pw_j
    X, y, sw = _problem(kind, seed=3)
    p = X.shape[1]
    pw = np.random.default_rng(3).uniform(0.3, 3.0, p)
    lam = 0.05 * alpha_max(X, y, sample_weight=sw, penalty_weights=pw)
    res = lasso(X, y, lam, sample_weight=sw, penalty_weights=pw, tol=1e-11)
    assert res.converged
    Xr = X @ sp.diags(1 / pw) if sp.issparse(X) else X / pw
    v_ref, b_ref = _sklearn(sp.csc_matrix(Xr) if sp.issparse(X) else Xr, y, lam, sw)
    ours = _objective(X, y, lam, res.x, res.info["intercept"], sw, pw)
    ref = _objective(X, y, lam, v_ref / pw, b_ref, sw, pw)
    assert abs(ours - ref) <= 1e-6 * ref


def test_unpenalized_features_match_cvxpy():
    cp = pytest.importorskip("cvxpy")
    X, y, sw = _problem("dense", n=40, p=30, seed=4)
    pw = np.ones(30)
    pw[[0, 5, 7]] = 0.0
    pw[[1, 2]] = 4.0
    lam = 0.2 * alpha_max(X, y, sample_weight=sw, penalty_weights=pw)
    res = lasso(X, y, lam, sample_weight=sw, penalty_weights=pw, tol=1e-12)
    assert res.converged
    w, b = cp.Variable(30), cp.Variable()
    s = sw / sw.sum()
    obj = 0.5 * cp.sum(cp.multiply(s, cp.square(y - X @ w - b))) + lam * cp.sum(cp.multiply(pw, cp.abs(w)))
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL)
    ours = _objective(X, y, lam, res.x, res.info["intercept"], sw, pw)
    assert ours <= prob.value + 1e-7 * abs(prob.value)
    assert ours >= prob.value - 1e-7 * abs(prob.value)
    assert np.all(res.x[[0, 5, 7]] != 0)
    # the reported gap certifies the suboptimality against cvxpy's optimum
    assert ours - prob.value <= res.info["gap"] + 1e-7 * abs(prob.value)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_lam_zero_is_least_squares(kind, fit_intercept):
    X, y, sw = _problem(kind, n=80, p=12, seed=5)
    res = lasso(X, y, 0.0, sample_weight=sw, fit_intercept=fit_intercept, tol=1e-14, max_iter=500)
    assert res.converged
    A = _dense64(X)
    if fit_intercept:
        A = np.column_stack([A, np.ones(len(y))])
    q = np.sqrt(sw)
    sol = np.linalg.lstsq(A * q[:, None], y * q, rcond=None)[0]
    np.testing.assert_allclose(res.x, sol[:12], rtol=1e-6, atol=1e-7)
    if fit_intercept:
        assert res.info["intercept"] == pytest.approx(sol[12], abs=1e-6)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_alpha_max_gives_zero(kind):
    X, y, sw = _problem(kind, seed=6)
    amax = alpha_max(X, y, sample_weight=sw)
    s = sw / sw.sum()
    Xd = _dense64(X)
    yc = y - s @ y
    assert amax == pytest.approx(np.max(np.abs((Xd - s @ Xd).T @ (s * yc))), rel=1e-12)
    res = lasso(X, y, amax, sample_weight=sw)
    assert res.converged and np.all(res.x == 0)
    assert res.info["intercept"] == pytest.approx(s @ y, rel=1e-12)
    assert np.all(lasso(X, y, 2 * amax, sample_weight=sw).x == 0)
    assert np.count_nonzero(lasso(X, y, 0.9 * amax, sample_weight=sw).x) >= 1


def test_constant_and_zero_columns_stay_zero():
    X, y, _ = _problem("dense", n=40, p=20, seed=7)
    X[:, 3] = 2.5
    X[:, 4] = 0.0
    res = lasso(X, y, _lam(X, y, None, True), tol=1e-10)
    assert res.converged and res.x[3] == 0 and res.x[4] == 0
    w_ref, b_ref = _sklearn(X, y, _lam(X, y, None, True))
    lam = _lam(X, y, None, True)
    ref = _objective(X, y, lam, w_ref, b_ref)
    assert _objective(X, y, lam, res.x, res.info["intercept"]) <= ref * (1 + 1e-8)


# ---------------------------------------------------------------------------
# layouts, options, warm starts, determinism
# ---------------------------------------------------------------------------


def test_layouts_and_options_agree():
    X, y, sw = _problem("sparse", seed=8)
    lam = _lam(X, y, sw, True)
    ref = lasso(X, y, lam, sample_weight=sw, tol=1e-12)
    variants = [
        lasso(X.tocsr(), y, lam, sample_weight=sw, tol=1e-12),
        lasso(X.toarray(), y, lam, sample_weight=sw, tol=1e-12),             # C order
        lasso(np.asfortranarray(X.toarray()), y, lam, sample_weight=sw, tol=1e-12),
        lasso(X, y, lam, sample_weight=sw, tol=1e-12, working_set=False),
        lasso(X, y, lam, sample_weight=sw, tol=1e-12, screening=False),
        lasso(X, y, lam, sample_weight=sw, tol=1e-12, anderson=False),
    ]
    for r in variants:
        assert r.converged
        np.testing.assert_allclose(r.x, ref.x, atol=1e-6)
        assert r.info["intercept"] == pytest.approx(ref.info["intercept"], abs=1e-6)


def test_warm_start_and_determinism():
    X, y, _ = _problem("dense", seed=9)
    lam = _lam(X, y, None, True)
    a = lasso(X, y, lam, tol=1e-10)
    b = lasso(X, y, lam, tol=1e-10)
    assert np.array_equal(a.x, b.x) and a.info["intercept"] == b.info["intercept"]
    assert a.n_iter == b.n_iter and a.info["n_epochs"] == b.info["n_epochs"]
    warm = lasso(X, y, lam, tol=1e-10, x0=a.x, intercept0=a.info["intercept"])
    assert warm.converged and warm.info["n_epochs"] <= 20
    np.testing.assert_allclose(warm.x, a.x, atol=1e-7)


def test_max_iter_warns_and_reports():
    X, y, _ = _problem("dense", seed=10)
    lam = _lam(X, y, None, True, 0.01)
    with pytest.warns(ConvergenceWarning):
        res = lasso(X, y, lam, tol=1e-14, max_iter=1, max_epochs=2)
    assert res.status == "max_iter" and not res.converged and res.n_iter == 1
    assert res.info["gap"] > res.info["gap_tol"]


def test_callback_stops():
    X, y, _ = _problem("dense", seed=11)
    res = lasso(X, y, _lam(X, y, None, True, 0.01), tol=1e-14, callback=lambda state: state.k >= 2)
    assert res.status == "callback" and res.n_iter == 2
    assert len(res.history["gap"]) == 2


# ---------------------------------------------------------------------------
# lasso_path
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_path_matches_sklearn(kind):
    from sklearn.linear_model import lasso_path as sk_path

    X, y, _ = _problem(kind, n=50, p=120, seed=12)
    path = lasso_path(X, y, n_lams=8, eps=1e-2, fit_intercept=False, tol=1e-10)
    assert path.converged.all() and path.coefs.shape == (8, 120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # n_alphas is being renamed in 1.9
        alphas, coefs, _ = sk_path(X, y, n_alphas=8, eps=1e-2, tol=1e-13, max_iter=200_000)
    # the same default grid (scikit-learn's, without intercept)
    np.testing.assert_allclose(path.lams, alphas, rtol=1e-10)
    assert path.alpha_max == pytest.approx(alphas[0], rel=1e-12)
    assert np.all(path.coefs[0] == 0)
    for i, lam in enumerate(path.lams):
        ours = _objective(X, y, lam, path.coefs[i], 0.0)
        ref = _objective(X, y, lam, coefs[:, i], 0.0)
        assert abs(ours - ref) <= 1e-6 * ref
        assert path.gaps[i] <= path.gap_tols[i]


def test_path_with_intercept_weights_and_order():
    X, y, sw = _problem("dense", seed=13)
    amax = alpha_max(X, y, sample_weight=sw)
    lams = amax * np.array([0.05, 0.5, 0.2])          # not sorted: returned in this order
    path = lasso_path(X, y, lams, sample_weight=sw, tol=1e-10)
    for i, lam in enumerate(lams):
        single = lasso(X, y, lam, sample_weight=sw, tol=1e-10)
        assert path.lams[i] == lam
        np.testing.assert_allclose(path.coefs[i], single.x, atol=1e-6)
        assert path.intercepts[i] == pytest.approx(single.info["intercept"], abs=1e-6)
    assert path.status == ("converged",) * 3 and path.n_iter.shape == (3,)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


def test_bad_inputs_raise():
    X, y, sw = _problem("dense", n=20, p=10, seed=14)
    with pytest.raises(ValueError, match="y"):
        lasso(X, y[:-1], 0.1)
    with pytest.raises(ValueError, match="y"):
        lasso(X, y[:, None], 0.1)
    with pytest.raises(ValueError, match="X"):
        lasso(X[0], y, 0.1)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        lasso(Xn, y, 0.1)
    Xs = sp.csc_matrix(X)
    Xs.data[0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN"):
        lasso(Xs, y, 0.1)
    yn = y.copy()
    yn[0] = np.nan
    with pytest.raises(ValueError, match="y"):
        lasso(X, yn, 0.1)
    with pytest.raises(TypeError, match="X"):
        lasso(X.astype(int), y, 0.1)
    with pytest.raises(ValueError, match="lam"):
        lasso(X, y, -1.0)
    with pytest.raises(ValueError, match="lam"):
        lasso(X, y, np.nan)
    with pytest.raises(ValueError, match="sample_weight"):
        lasso(X, y, 0.1, sample_weight=-sw)
    with pytest.raises(ValueError, match="sample_weight"):
        lasso(X, y, 0.1, sample_weight=np.zeros(20))
    with pytest.raises(ValueError, match="sample_weight"):
        lasso(X, y, 0.1, sample_weight=sw[:5])
    with pytest.raises(ValueError, match="penalty_weights"):
        lasso(X, y, 0.1, penalty_weights=-np.ones(10))
    with pytest.raises(ValueError, match="penalty_weights"):
        lasso(X, y, 0.1, penalty_weights=np.ones(9))
    with pytest.raises(ValueError, match="x0"):
        lasso(X, y, 0.1, x0=np.zeros(9))
    with pytest.raises(ValueError, match="tol"):
        lasso(X, y, 0.1, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        lasso(X, y, 0.1, max_iter=0)
    with pytest.raises(TypeError, match="fit_intercept"):
        lasso(X, y, 0.1, fit_intercept="yes")
    with pytest.raises(TypeError, match="callback"):
        lasso(X, y, 0.1, callback=3)
    with pytest.raises(ValueError, match="lams"):
        lasso_path(X, y, [0.1, -0.1])
    with pytest.raises(ValueError, match="lams"):
        lasso_path(X, y, [])
    with pytest.raises(ValueError, match="eps"):
        lasso_path(X, y, eps=2.0)


def test_overflow_reports_nonfinite():
    X, y, _ = _problem("dense", n=20, p=10, seed=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the overflow itself
        res = lasso(X, 1e200 * y, 1e190)
    assert res.status == "nonfinite" and not res.converged


# ---------------------------------------------------------------------------
# numerical robustness (review findings)
# ---------------------------------------------------------------------------


def _mean_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 50))
    y = X[:, :3] @ [1.0, -2.0, 3.0] + 0.1 * rng.standard_normal(30)
    return X, y


@pytest.mark.parametrize("off", [1e6, 1e7, 1e8])
def test_dense_columns_with_large_means_are_centered_exactly(off):
    # the implicit centering R = (y_c - X w) + m.w cancelled: wrong w reported converged
    X, y = _mean_problem()
    ref = lasso(X, y, 0.05, tol=1e-12)  # the same problem: centering removes the offset
    res = lasso(X + off, y, 0.05, tol=1e-10)
    assert res.status == "converged"
    assert res.info["gap"] >= -1e-12
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    # the intercept absorbs the offset
    assert res.info["intercept"] == pytest.approx(ref.info["intercept"] - off * ref.x.sum(), abs=1e-6 * off)
    w, b = _sklearn(X + off, y, 0.05)
    assert _objective(X + off, y, 0.05, res.x, res.info["intercept"]) <= \
        _objective(X + off, y, 0.05, w, b) + 1e-9


def test_sparse_columns_with_large_means_warn_and_do_not_claim_convergence():
    X, y = _mean_problem()
    with pytest.warns(ConvergenceWarning) as rec:
        res = lasso(sp.csc_matrix(X + 1e6), y, 0.05)
    msgs = " ".join(str(w.message) for w in rec)
    assert "mean" in msgs
    if res.info["gap"] < 0:
        # a negative gap beyond rounding is lost accuracy, never convergence
        assert res.status != "converged" and "lost accuracy" in res.message
    # ordinary sparse data (means below the spread) does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        Xs, ys, _ = _problem("sparse", n=40, p=60, seed=21)
        assert lasso(Xs, ys, _lam(Xs, ys, None, True)).status == "converged"


def test_negative_gap_is_reported_as_lost_accuracy():
    X, y = _mean_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = lasso(sp.csc_matrix(X + 1e7), y, 0.05)
    # float64 cannot certify this problem on the implicitly centered CSC path
    assert not res.converged
    assert res.status != "converged"


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_small_scale_feature_is_not_dropped(kind):
    # a column of scale 1e-8 next to unit columns carries the signal: it must stay
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 6))
    X[:, 0] *= 1e-8
    y = 1e8 * X[:, 0] + 0.01 * rng.standard_normal(40)
    Xk = sp.csc_matrix(X) if kind == "sparse" else X
    # lam = 0: least squares (a penalty on a 1e8 coefficient would zero it)
    res = lasso(Xk, y, 0.0, tol=1e-12)
    ls = np.linalg.lstsq(np.c_[X, np.ones(40)], y, rcond=None)[0]
    assert res.status == "converged"
    assert res.x[0] == pytest.approx(ls[0], rel=1e-4)
    f_ls = _objective(X, y, 0.0, ls[:6], ls[6])
    assert _objective(X, y, 0.0, res.x, res.info["intercept"]) <= f_ls + res.info["gap_tol"]
    # and penalized, next to unit columns, with a weight that makes the penalty comparable
    pw = np.ones(6)
    pw[0] = 1e-8
    res_p = lasso(Xk, y, 1e-3, penalty_weights=pw, tol=1e-10)
    assert res_p.status == "converged" and abs(res_p.x[0]) > 1e7
    # while a truly constant column (with a large value) is still treated as constant
    X2 = X.copy()
    X2[:, 1] = 0.1 + 1e6
    res2 = lasso(X2, y, 0.0, tol=1e-10)
    assert res2.x[1] == 0.0


def test_unpenalized_block_is_not_densified_and_lam_zero_is_cheap():
    import time
    import tracemalloc

    X = sp.random(200, 2000, density=0.01, random_state=0, format="csc")
    y = np.random.default_rng(0).standard_normal(200)
    lasso(X[:, :50], y, 0.0)  # compile outside the measure
    tracemalloc.start()
    t = time.perf_counter()
    res = lasso(X, y, 0.0)
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.status == "converged"
    # p x |U| (32 MB) and |U| x |U| (32 MB) were formed before; the n x |U| block is 3.2 MB
    assert peak < 30e6, peak
    assert elapsed < 10.0
    # least squares with n < p: the fit interpolates
    assert np.linalg.norm(X @ res.x + res.info["intercept"] - y) <= 1e-3 * np.linalg.norm(y - y.mean())


@pytest.mark.parametrize("weighted", [False, True])
def test_constant_target(weighted):
    X, _, sw = _problem("dense", n=30, p=20, seed=22)
    y = np.full(30, 2.0)
    sw = sw if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        path = lasso_path(X, y, n_lams=3, sample_weight=sw)
        res = lasso(X, y, 0.1, sample_weight=sw)
    assert path.converged.all() and np.all(path.coefs == 0) and np.all(path.lams == 0)
    np.testing.assert_allclose(path.intercepts, 2.0, rtol=0, atol=1e-15)
    assert res.status == "converged" and np.all(res.x == 0) and res.info["intercept"] == 2.0
    # zero-weight samples do not count: the target is constant where the weights are
    if weighted:
        sw2 = sw.copy()
        sw2[0] = 0.0
        y2 = y.copy()
        y2[0] = 50.0
        res2 = lasso(X, y2, 0.1, sample_weight=sw2)
        assert np.all(res2.x == 0) and res2.info["intercept"] == 2.0


def test_nearly_constant_target_converges():
    X, _, _ = _problem("dense", n=30, p=20, seed=23)
    y = 2.0 + 1e-14 * np.random.default_rng(0).standard_normal(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        path = lasso_path(X, y, n_lams=3)
    assert path.converged.all()


def test_no_penalized_feature_needs_explicit_lams():
    X, y, _ = _problem("dense", n=30, p=8, seed=24)
    with pytest.raises(ValueError, match="no feature is penalized"):
        lasso_path(X, y, n_lams=3, penalty_weights=np.zeros(8))
    with pytest.raises(ValueError, match="no feature is penalized"):
        alpha_max(X, y, penalty_weights=np.zeros(8))
    path = lasso_path(X, y, [0.1, 0.0], penalty_weights=np.zeros(8), tol=1e-12)
    ls = np.linalg.lstsq(np.c_[X, np.ones(30)], y, rcond=None)[0]
    f_ls = _objective(X, y, 0.0, ls[:8], ls[8])
    for i in range(2):
        assert path.status[i] == "converged"
        f = _objective(X, y, 0.0, path.coefs[i], path.intercepts[i])
        # the certified gap bounds the suboptimality
        assert f_ls - 1e-12 <= f <= f_ls + path.gap_tols[i]


def test_torch_inputs_are_refused():
    torch = pytest.importorskip("torch")
    X, y, sw = _problem("dense", n=20, p=10, seed=25)
    with pytest.raises(TypeError, match="X is a torch tensor"):
        lasso(torch.from_numpy(X), y, 0.1)
    with pytest.raises(TypeError, match="y is a torch tensor"):
        lasso(X, torch.from_numpy(y), 0.1)
    with pytest.raises(TypeError, match="sample_weight is a torch tensor"):
        lasso(X, y, 0.1, sample_weight=torch.from_numpy(sw))
    with pytest.raises(TypeError, match="X is a torch tensor"):
        lasso_path(torch.from_numpy(X), y, n_lams=2)
