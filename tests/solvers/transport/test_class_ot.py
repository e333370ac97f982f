import numpy as np
import pytest

from tikhon.solvers.transport import class_ot
from tikhon.solvers.transport import class_regularizer


def _problem(n, m=None, k=3, seed=0):
    rng = np.random.default_rng(seed)
    m = m or n
    y = rng.integers(0, k, n)
    centers = rng.normal(scale=3, size=(k, 2))
    xs = centers[y] + rng.normal(size=(n, 2))
    xt = centers[rng.integers(0, k, m)] + rng.normal(size=(m, 2)) + 1.0
    C = ((xs[:, None] - xt[None]) ** 2).sum(-1)
    C /= C.max()
    a = rng.uniform(0.5, 1.5, n)
    a /= a.sum()
    b = np.full(m, 1.0 / m)
    return a, b, C, y


def _cvxpy_value(a, b, C, y, lam):
    cp = pytest.importorskip("cvxpy")
    P = cp.Variable(C.shape, nonneg=True)
    reg = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        reg = reg + cp.sum(cp.norm(P[idx, :], 2, axis=0))
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, P)) + lam * reg),
        [cp.sum(P, axis=1) == a, cp.sum(P, axis=0) == b],
    )
    prob.solve(solver="CLARABEL")
    return prob.value


@pytest.mark.parametrize("lam", [0.003, 0.03, 0.3])
def test_matches_cvxpy(lam):
    a, b, C, y = _problem(60)
    res = class_ot(a, b, C, y, lam, tol=1e-7)
    ref = _cvxpy_value(a, b, C, y, lam)
    assert res.converged
    P = res.x
    obj = float(np.sum(C * P)) + lam * class_regularizer(P, y)
    assert obj == pytest.approx(res.info["objective"], rel=1e-10)
    assert abs(obj - ref) <= 1e-5 * abs(ref)
    # the dual bound is a valid lower bound of the exact optimum
    assert res.info["dual_objective"] <= ref * (1 + 1e-8)
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-12)


@pytest.mark.parametrize("lam", [0.003, 0.3])
def test_douglas_rachford_agrees(lam):
    a, b, C, y = _problem(40, 30, seed=5)
    r_dr = class_ot(a, b, C, y, lam, method="douglas_rachford", tol=1e-6)
    r_nt = class_ot(a, b, C, y, lam, tol=1e-8)
    assert r_dr.converged and r_nt.converged
    assert r_dr.info["method"] == "douglas_rachford" and r_nt.info["method"] == "ssnal"
    # both certificates bracket the optimum
    assert r_nt.info["dual_objective"] <= r_dr.info["objective"] * (1 + 1e-12)
    assert r_dr.info["dual_objective"] <= r_nt.info["objective"] * (1 + 1e-12)
    assert r_dr.info["objective"] == pytest.approx(r_nt.info["objective"], rel=2e-6)


def test_larger_problem_fast_and_certified():
    # n = 200 with three classes: tens of Newton steps, a gap below 1e-6
    a, b, C, y = _problem(200, 150, seed=6)
    res = class_ot(a, b, C, y, 0.01, tol=1e-6)
    assert res.converged and res.n_iter < 200
    assert res.info["rel_gap"] <= 1e-6
    P = res.x
    obj = float(np.sum(C * P)) + 0.01 * class_regularizer(P, y)
    assert obj == pytest.approx(res.info["objective"], rel=1e-10)
    assert obj - res.info["dual_objective"] <= 1e-6 * obj


def test_lam_zero_is_exact_ot():
    ot = pytest.importorskip("ot")
    a, b, C, y = _problem(40, 30, seed=1)
    res = class_ot(a, b, C, y, 0.0, tol=1e-7)
    ref = ot.emd2(a, b, C)
    assert res.converged
    assert res.info["dual_objective"] <= ref * (1 + 1e-9) <= res.info["objective"] * (1 + 1e-9)
    assert abs(res.info["objective"] - ref) <= 1e-7 * ref


def test_strong_lam_gives_class_pure_columns():
    a, b, C, y = _problem(45, 30, seed=2)
    res = class_ot(a, b, C, y, 1.0, tol=1e-7)
    ot = pytest.importorskip("ot")

    def purity(P):
        mass = np.stack([P[y == c].sum(0) for c in np.unique(y)])
        return mass.max(0) / mass.sum(0)

    # the marginals force a few columns to split between classes, not most
    assert np.mean(purity(res.x) > 0.99) >= 0.9
    p_emd = purity(ot.emd(a, b, C))
    assert np.sum(purity(res.x) < 0.99) < np.sum(p_emd < 0.99)
    assert purity(res.x).mean() > p_emd.mean()


def test_labels_any_dtype_and_warm_start():
    a, b, C, y = _problem(30, 20, seed=3)
    names = np.array(["cat", "dog", "eel"])[y]
    r1 = class_ot(a, b, C, names, 0.05, tol=1e-7)
    r2 = class_ot(a, b, C, y, 0.05, tol=1e-7, x0=r1.x)
    assert r1.info["objective"] == pytest.approx(r2.info["objective"], rel=1e-6)


def test_class_regularizer_closed_form():
    P = np.array([[3.0, 0.0], [4.0, 1.0], [2.0, 0.0]])
    assert class_regularizer(P, [0, 0, 1]) == pytest.approx(5.0 + 1.0 + 2.0 + 0.0)


@pytest.mark.parametrize("method", ["ssnal", "douglas_rachford"])
def test_max_iter_warns_and_is_honest(method):
    from tikhon.solvers import ConvergenceWarning

    a, b, C, y = _problem(30, seed=4)
    with pytest.warns(ConvergenceWarning):
        res = class_ot(a, b, C, y, 0.01, method=method, tol=1e-12, max_iter=3, check_every=3)
    assert not res.converged
    assert res.info["rel_gap"] > 1e-12
    np.testing.assert_allclose(res.x.sum(1), a, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(lam=-1.0), ValueError, "lam"),
        (dict(lam=np.nan), ValueError, "lam"),
        (dict(source_classes=np.zeros(5)), ValueError, "source_classes"),
        (dict(a=-np.ones(10) / 10), ValueError, "a"),
        (dict(b=np.ones(8)), ValueError, "mass"),
        (dict(C=np.ones((10, 8), dtype=int)), TypeError, "C"),
        (dict(C=np.full((10, 8), np.inf)), ValueError, "C"),
        (dict(eps=0.1), ValueError, "eps"),
        (dict(step=-1.0), ValueError, "step"),
        (dict(method="lbfgs"), ValueError, "method"),
        (dict(tol=-1.0), ValueError, "tol"),
    ],
)
def test_validation(kwargs, exc, word):
    rng = np.random.default_rng(0)
    args = dict(a=None, b=None, C=rng.random((10, 8)), source_classes=np.arange(10) % 2, lam=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        class_ot(args.pop("a"), args.pop("b"), args.pop("C"), args.pop("source_classes"), args.pop("lam"), **args)
