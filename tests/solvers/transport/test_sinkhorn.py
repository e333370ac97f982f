"""Tests of tikhon.solvers.transport.sinkhorn (and its unbalanced and divergence variants) against POT and closed forms."""

import warnings

import numpy as np
import pytest

from tikhon.solvers import ConvergenceWarning
from tikhon.solvers.transport import sinkhorn, sinkhorn_divergence, sinkhorn_unbalanced

ot = pytest.importorskip("ot")


def _problem(n, m=None, seed=0, normalise=True):
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    X, Y = rng.random((n, 2)), rng.random((m, 2))
    C = ot.dist(X, Y)
    if normalise:
        C /= C.max()
    a = rng.random(n) + 0.5
    b = rng.random(m) + 0.5
    return a / a.sum(), b / b.sum(), C, X, Y


@pytest.mark.parametrize("method", ["scaling", "log"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_plan_matches_pot_log(method, dtype):
    a, b, C, _, _ = _problem(80, 70)
    C = C.astype(dtype)
    res = sinkhorn(a, b, C, 1e-2, tol=1e-12, method=method)
    ref = ot.sinkhorn(a, b, C.astype(np.float64), 1e-2, method="sinkhorn_log",
                      stopThr=1e-14, numItermax=200_000)
    assert res.converged
    assert np.abs(res.x - ref).sum() <= 1e-6
    assert res.info["marginal_error"] <= 1e-12
    # a/b-free potentials: P = exp((f + g - C) / eps)
    f, g = res.dual
    P = np.exp((f[:, None] + g[None, :] - C.astype(np.float64)) / 1e-2)
    np.testing.assert_allclose(P, res.x, rtol=1e-10, atol=1e-300)
    assert res.info["cost"] == pytest.approx(float((C * ref).sum()), rel=1e-5)


def test_entropic_objective_closed_form():
    a, b, C, _, _ = _problem(40, 30, seed=3)
    eps = 0.05
    res = sinkhorn(a, b, C, eps, tol=1e-13)
    P = res.x
    kl = np.sum(P * np.log(P / np.outer(a, b))) - P.sum() + 1.0
    assert res.info["objective"] == pytest.approx(float((C * P).sum() + eps * kl), rel=1e-10)


@pytest.mark.parametrize("method", ["scaling", "log"])
def test_small_eps_stable(method):
    a, b, C, _, _ = _problem(120, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = sinkhorn(a, b, C, 1e-4, tol=1e-6, max_iter=50_000, method=method)
    assert res.converged, res.message
    assert np.isfinite(res.x).all()
    err = np.abs(res.x.sum(1) - a).sum() + np.abs(res.x.sum(0) - b).sum()
    assert err <= 1e-6
    # near eps -> 0 the cost approaches the exact OT cost
    exact = ot.emd2(a, b, C)
    assert exact - 1e-9 <= res.info["cost"] <= exact + 5e-3


def test_eps_scaling_and_warm_start_agree():
    a, b, C, _, _ = _problem(60, seed=2)
    eps = 2e-3
    r1 = sinkhorn(a, b, C, eps, tol=1e-11, eps_scaling=True)
    r2 = sinkhorn(a, b, C, eps, tol=1e-11, eps_scaling=False)
    r3 = sinkhorn(a, b, C, eps, tol=1e-11, eps_scaling=5)
    assert r1.converged and r2.converged and r3.converged
    assert np.abs(r1.x - r2.x).sum() <= 1e-8
    assert np.abs(r1.x - r3.x).sum() <= 1e-8
    # warm start from the solution: converges at once to the same plan
    f, g = r1.dual
    r4 = sinkhorn(a, b, C, eps, tol=1e-11, f0=f, g0=g)
    assert r4.converged and r4.n_iter <= 3
    assert np.abs(r4.x - r1.x).sum() <= 1e-8
    r5 = sinkhorn(a, b, C, eps, tol=1e-11, f0=f)
    assert r5.converged and np.abs(r5.x - r1.x).sum() <= 1e-8


def test_zero_mass_points():
    a, b, C, _, _ = _problem(30, 25, seed=4)
    a[3] = 0.0
    a /= a.sum()
    res = sinkhorn(a, b, C, 0.05, tol=1e-12)
    ref = ot.sinkhorn(a, b, C, 0.05, method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
    assert res.converged
    assert np.all(res.x[3] == 0) and res.dual[0][3] == -np.inf
    assert np.abs(res.x - ref).sum() <= 1e-8


def test_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    a, b, C, _, _ = _problem(50, 40, seed=5)
    rn = sinkhorn(a, b, C, 1e-2, tol=1e-11)
    ta, tb, tC = (torch.tensor(v) for v in (a, b, C))
    rt = sinkhorn(ta, tb, tC, 1e-2, tol=1e-11)
    assert rt.converged and isinstance(rt.x, torch.Tensor) and rt.x.dtype == torch.float64
    assert np.abs(rt.x.numpy() - rn.x).sum() <= 1e-8
    # autograd: d<C,P>/dC exists and is finite
    tC.requires_grad_(True)
    r = sinkhorn(ta, tb, tC, 5e-2, tol=1e-8, eps_scaling=False)
    r.info["cost"].backward()
    assert torch.isfinite(tC.grad).all()
    with pytest.raises(TypeError, match="mixed"):
        sinkhorn(a, tb, C, 1e-2)


def test_max_iter_too_small_warns():
    a, b, C, _, _ = _problem(50, seed=6)
    with pytest.warns(ConvergenceWarning):
        res = sinkhorn(a, b, C, 1e-3, max_iter=5)
    assert not res.converged
    assert res.n_iter == 5
    assert res.info["marginal_error"] > 1e-9


def test_callback_stops():
    a, b, C, _, _ = _problem(30, seed=7)
    res = sinkhorn(a, b, C, 1e-3, callback=lambda s: s.iteration >= 4)
    assert not res.converged and res.n_iter == 4 and "callback" in res.message


def test_validation():
    a, b, C, _, _ = _problem(10, 8)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(a, b, C, 0.0)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(a, b, C, -1.0)
    with pytest.raises(ValueError, match="a"):
        sinkhorn(a[:-1], b, C, 0.1)
    with pytest.raises(ValueError, match="b"):
        sinkhorn(a, b[:-1], C, 0.1)
    with pytest.raises(ValueError, match="a and b"):
        sinkhorn(a, 2 * b, C, 0.1)
    bad = a.copy()
    bad[0] = -bad[0]
    with pytest.raises(ValueError, match="negative"):
        sinkhorn(bad, b, C, 0.1)
    bad = a.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sinkhorn(bad, b, C, 0.1)
    Cb = C.copy()
    Cb[0, 0] = np.inf
    with pytest.raises(ValueError, match="C"):
        sinkhorn(a, b, Cb, 0.1)
    with pytest.raises(TypeError, match="C"):
        sinkhorn(a, b, C.astype(int), 0.1)
    with pytest.raises(ValueError, match="f0"):
        sinkhorn(a, b, C, 0.1, f0=np.zeros(3))


def test_divergence_matches_pot():
    a, b, _, X, Y = _problem(40, 30, seed=8)
    d = sinkhorn_divergence(X, Y, 0.05, a, b, loss="cost", tol=1e-12)
    ref = ot.bregman.empirical_sinkhorn_divergence(X, Y, 0.05, a, b, stopThr=1e-14,
                                                   numIterMax=100_000)
    assert d == pytest.approx(float(ref), rel=1e-7)
    # the entropic (Feydy) divergence vanishes on identical measures and is positive otherwise
    assert abs(sinkhorn_divergence(X, X, 0.05, a, a, tol=1e-12)) <= 1e-10
    assert sinkhorn_divergence(X, Y, 0.05, a, b, tol=1e-12) > 0


@pytest.mark.parametrize("rho", [0.1, 1.0])
def test_unbalanced_matches_pot(rho):
    a, b, C, _, _ = _problem(40, 30, seed=9, normalise=False)
    b = 1.5 * b
    res = sinkhorn_unbalanced(a, b, C, 0.05, rho, tol=1e-12)
    ref = ot.unbalanced.sinkhorn_unbalanced(a, b, C, 0.05, rho, stopThr=1e-14,
                                            numItermax=100_000)
    assert res.converged
    assert np.abs(res.x - ref).sum() <= 1e-8
    with pytest.raises(ValueError, match="rho"):
        sinkhorn_unbalanced(a, b, C, 0.05, 0.0)


def test_vectorised_exp_matches_numpy():
    numba = pytest.importorskip("numba")
    from tikhon.solvers.transport._sinkhorn_kernels import vexp

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = vexp(x[i])

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-760.0, 720.0, 200_000), rng.uniform(-60.0, 0.0, 100_000),
                        [0.0, -0.0, 1e-300, -745.0, -745.3, 709.7, 709.79, np.inf, -np.inf, np.nan]])
    out = np.empty_like(x)
    apply(x, out)
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    normal = np.isfinite(ref) & (ref >= np.finfo(np.float64).tiny)
    assert np.max(np.abs(out[normal] - ref[normal]) / ref[normal]) <= 4.5e-16
    sub = np.isfinite(ref) & ~normal
    assert np.all(np.abs(out[sub] - ref[sub]) <= 1e-320)
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))


def test_float32_kernel_meets_tolerance():
    a, b, C, _, _ = _problem(90, 80, seed=10)
    eps = 1e-2
    ref = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", stopThr=1e-14, numItermax=200_000)
    res = sinkhorn(a, b, C, eps, tol=1e-6)
    assert res.info["kernel_dtype"] == "float32"  # auto: tol >= 1e-6 * mass
    assert res.converged, res.message
    # the violation is measured in float64 on the returned plan
    err = np.abs(res.x.sum(1) - a).sum() + np.abs(res.x.sum(0) - b).sum()
    assert err <= 1e-6 and res.info["marginal_error"] == pytest.approx(err, rel=1e-6, abs=1e-15)
    assert np.abs(res.x - ref).sum() <= 1e-4
    # a tighter tol than float32 can certify: float64 for the last stage
    res64 = sinkhorn(a, b, C, eps, tol=1e-11)
    assert res64.info["kernel_dtype"] == "float32+float64"
    assert res64.converged and np.abs(res64.x - ref).sum() <= 1e-8
    # forced float32 with a tol below its rounding floor: continues in float64, never a
    # false "converged"
    res32 = sinkhorn(a, b, C, eps, tol=1e-12, kernel_dtype="float32")
    assert res32.converged, res32.message
    assert res32.info["marginal_error"] <= 1e-12
    assert res32.info["kernel_dtype"] in ("float32", "float32, then float64")
    assert np.abs(res32.x - ref).sum() <= 1e-8
    with pytest.raises(ValueError, match="kernel_dtype"):
        sinkhorn(a, b, C, eps, kernel_dtype="float16")
    with pytest.raises(TypeError, match="kernel_dtype"):
        sinkhorn(a, b, C, eps, kernel_dtype="nonsense")


def test_float32_kernel_small_eps():
    a, b, C, _, _ = _problem(150, seed=11)
    res = sinkhorn(a, b, C, 1e-4, tol=1e-6, max_iter=50_000, kernel_dtype="float32")
    assert res.converged, res.message
    err = np.abs(res.x.sum(1) - a).sum() + np.abs(res.x.sum(0) - b).sum()
    assert np.isfinite(res.x).all() and err <= 1e-6
    ref = sinkhorn(a, b, C, 1e-4, tol=1e-10, max_iter=50_000, kernel_dtype="float64")
    assert ref.converged
    assert np.abs(res.x - ref.x).sum() <= 1e-3
    assert res.info["cost"] == pytest.approx(ref.info["cost"], rel=1e-4)


@pytest.mark.parametrize("method", ["scaling", "log"])
def test_stop_mid_relaxation_returns_a_plain_sinkhorn_plan(method):
    # issue 10: stopped by max_iter while over-relaxed, the NumPy path returned
    # the extrapolated iterate, whose marginal error was up to 25x the last
    # measured one and depended on max_iter mod the measuring period (10)
    rng = np.random.default_rng(0)
    X, Y = rng.random((30, 2)), rng.random((30, 2))
    C = ((X[:, None] - Y[None]) ** 2).sum(-1)
    errs = []
    for max_iter in range(2000, 2010):
        with pytest.warns(ConvergenceWarning):
            res = sinkhorn(None, None, C, 1e-3, max_iter=max_iter, method=method)
        assert res.status == "max_iter" and res.history["iteration"][-1] == max_iter
        assert res.info["marginal_error"] <= res.history["marginal_error"][-1]
        errs.append(res.info["marginal_error"])
    assert max(errs) <= 1.5 * min(errs)


@pytest.mark.parametrize("method", ["scaling", "log"])
def test_potentials_stay_centred(method):
    # issue 10: eps scaling left f and g with equal and opposite offsets of about
    # 2 eps_0 log n (mean f - mean g = -20.8 here before the fix), harmless in
    # float64 but the cause of the float32 stall (see test_sinkhorn_torch)
    a, b, C, _, _ = _problem(200, seed=12)
    res = sinkhorn(a, b, C, 1e-3, tol=1e-8, method=method)
    assert res.converged
    f, g = res.dual
    assert abs(f.mean() - g.mean()) <= 0.1


def test_schedule_refuses_an_overflowing_cost_range():
    C = np.array([[0.0, 1e308], [-1e308, 0.0]])
    with pytest.raises(ValueError, match="range of C"):
        sinkhorn(None, None, C, 0.1)
