"""sobolev_fit: least squares at s = 0, finite differences, cvxpy, early stopping on a denoising problem."""

import warnings

import numpy as np
import pytest
from helpers import dense
from tikhon.operators import Convolution, Identity, Mask, SobolevWeight
from tikhon.operators.prox import L1, SquaredL2
from tikhon.solvers import ConvergenceWarning, ista, sobolev_fit
from tikhon.solvers.sobolev_descent import sobolev_data_term, white_noise_sobolev_level

KERNEL = np.outer([1.0, 2.0, 1.0], [1.0, 3.0, 1.0]) / 20.0


def _iterates(**kwargs):
    xs = []
    res = sobolev_fit(callback=lambda st: xs.append(st.x.copy()) and False, **kwargs)
    if len(xs) == res.n_iter - 1:  # run does not call back after the stopping check
        xs.append(res.x)
    return res, xs


def _problem(shape=(12, 10), boundary="zero", seed=0):
    rng = np.random.default_rng(seed)
    A = Convolution(shape, KERNEL, boundary=boundary)
    y = A(rng.standard_normal(shape)) + 0.05 * rng.standard_normal(shape)
    return A, y


def _reference_value(A, y, x, s, spacing):
    """1/2 sum_xi (1 + |xi|^2)^s |DFT(Ax - y)|^2 / N, from numpy's full complex FFT."""
    r = A(x) - y
    grids = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=spacing) for n in r.shape], indexing="ij")
    w = (1.0 + sum(g ** 2 for g in grids)) ** s
    return 0.5 * float(np.sum(w * np.abs(np.fft.fftn(r)) ** 2)) / r.size


def test_s0_is_plain_least_squares_gradient_descent():
    A, y = _problem()
    res, xs = _iterates(A=A, y=y, s=0.0, stop=25)
    assert res.status == "converged" and res.n_iter == 25 and len(xs) == 25
    t = res.steps["step"]
    # default step 1 / ||A||^2 (power iteration of W_0 A = A)
    assert t == pytest.approx(1.0 / A.norm() ** 2, rel=1e-6)
    x = np.zeros(A.in_shape)
    for k in range(25):
        x = x - t * A.T(A(x) - y)
        np.testing.assert_allclose(xs[k], x, rtol=0, atol=1e-12 * np.abs(x).max())


def test_gradient_and_value_match_finite_differences():
    A, y = _problem(shape=(8, 9))
    s, h = -0.7, 0.5
    f = sobolev_data_term(A, y, s, spacing=h)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(A.in_shape)
    assert f(x) == pytest.approx(_reference_value(A, y, x, s, h), rel=1e-12)
    g = f.grad(x)
    for _ in range(3):
        d = rng.standard_normal(A.in_shape)
        eps = 1e-5
        fd = (_reference_value(A, y, x + eps * d, s, h) - _reference_value(A, y, x - eps * d, s, h)) / (2 * eps)
        assert np.vdot(g, d) == pytest.approx(fd, rel=1e-7)
    # the step: 1 / ||W_s A||^2, with the dense matrices
    Wd = dense(SobolevWeight(A.out_shape, s, h))
    assert f.lipschitz == pytest.approx(np.linalg.norm(Wd @ dense(A), 2) ** 2, rel=1e-6)


@pytest.mark.parametrize("make", [lambda: Identity((16, 12)),
                                  lambda: Convolution((16, 12), KERNEL, boundary="periodic")])
def test_preconditioned_view_gives_the_same_iterates(make):
    A = make()
    y = np.random.default_rng(1).standard_normal(A.out_shape)
    kw = {"A": A, "y": y, "s": -1.0, "stop": 30, "spacing": 0.3, "step": 0.9}
    _, xs = _iterates(**kw)
    _, xp = _iterates(preconditioned=True, **kw)
    for a, b in zip(xs, xp):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(a).max())
    # default steps agree too (exact for the identity)
    r1 = sobolev_fit(A, y, -1.0, stop=1, spacing=0.3)
    r2 = sobolev_fit(A, y, -1.0, stop=1, spacing=0.3, preconditioned=True)
    assert r1.steps["step"] == pytest.approx(r2.steps["step"], rel=1e-6)


def test_preconditioned_differs_when_A_does_not_commute():
    A, y = _problem(shape=(16, 12), boundary="zero")
    kw = {"A": A, "y": y, "s": -1.0, "stop": 20, "step": 0.9}
    a = sobolev_fit(**kw).x
    b = sobolev_fit(preconditioned=True, **kw).x
    assert np.linalg.norm(a - b) > 1e-3 * np.linalg.norm(a)


def test_proximal_variant_is_ista_at_s0_and_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(2)
    n = 24
    A = Convolution((n,), np.array([1.0, 2.0, 1.0]) / 4, boundary="zero")
    y = A(np.where(rng.random(n) < 0.2, rng.standard_normal(n), 0.0)) + 0.01 * rng.standard_normal(n)
    lam = 0.02
    # s = 0: the iterates are ISTA's on the plain least-squares term
    res0, xs = _iterates(A=A, y=y, s=0.0, reg=L1(), lam=lam, stop=15)
    ref = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ista(SquaredL2(y, op=A), lam * L1(), np.zeros(n), step=res0.steps["step"], max_iter=15,
             tol=0.0, callback=lambda st: ref.append(st.x.copy()) and False)
    assert len(ref) == len(xs) == 15
    for a, b in zip(xs, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # s = -1: the minimiser of 1/2 ||W (Ax - y)||^2 + lam ||x||_1 (dense W, cvxpy)
    s, h = -1.0, 0.5
    res = sobolev_fit(A, y, s, reg=L1(), lam=lam, spacing=h, stop="none", tol=1e-13, max_iter=20000)
    assert res.converged, res.message
    W, Ad = dense(SobolevWeight((n,), s, h)), dense(A)
    x = cp.Variable(n)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(W @ (Ad @ x - y)) + lam * cp.norm1(x))).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    np.testing.assert_allclose(res.x, x.value, atol=1e-6)
    obj = res.history["objective"]
    assert obj[-1] <= obj[0]


def test_history_and_reference():
    A, y = _problem()
    ref = np.ones(A.in_shape)
    res = sobolev_fit(A, y, -0.5, stop=7, reference=ref, spacing=0.7)
    h = res.history
    r = A(res.x) - y
    assert h["residual_l2"][-1] == pytest.approx(np.linalg.norm(r), rel=1e-12)
    Wr = SobolevWeight(A.out_shape, -0.5, 0.7)(r)
    assert h["residual_hs"][-1] == pytest.approx(np.linalg.norm(Wr), rel=1e-12)
    assert h["objective"][-1] == pytest.approx(0.5 * np.linalg.norm(Wr) ** 2, rel=1e-12)
    assert h["error"][-1] == pytest.approx(np.linalg.norm(res.x - ref) / np.linalg.norm(ref), rel=1e-12)
    assert list(h["iteration"]) == list(range(1, 8))
    assert np.all(np.diff(h["objective"]) <= 1e-14)  # descent with step 1/L


def test_white_noise_level_matches_the_full_dft_trace():
    for shape in [(6, 7), (5, 8), (9,)]:
        s, h, sigma = -0.8, 0.4, 0.3
        grids = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=h) for n in shape], indexing="ij")
        exact = sigma * np.sqrt(np.sum((1.0 + sum(g ** 2 for g in grids)) ** s))
        assert white_noise_sobolev_level(shape, s, sigma, spacing=h) == pytest.approx(exact, rel=1e-12)
    assert white_noise_sobolev_level((10, 10), 0.0, 0.5) == pytest.approx(5.0, rel=1e-12)


# -- denoising: implicit regularization by early stopping ------------------------------------
@pytest.fixture(scope="module")
def denoising():
    """64x64 camera, white noise sigma = 0.1; integer wavenumbers (spacing 2 pi / n)."""
    from skimage import data, transform

    n, sigma = 64, 0.1
    clean = transform.resize(data.camera().astype(float) / 255.0, (n, n), anti_aliasing=True)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)

    def psnr(x):
        return 10 * np.log10(1.0 / np.mean((x - clean) ** 2))

    runs = {}
    for s in (0.0, -1.0):
        ps = []  # bound per s by the default argument below (B023)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = sobolev_fit(Identity(clean.shape), noisy, s, stop="none", tol=0.0, max_iter=400,
                              spacing=2 * np.pi / n, noise_level=sigma * n,
                              callback=lambda st, ps=ps: ps.append(psnr(st.x)) and False)
        runs[s] = (res, np.array(ps))
    return noisy, psnr, runs, sigma * n


def test_h_minus_1_beats_the_best_early_stopped_l2_fit(denoising):
    noisy, psnr, runs, _ = denoising
    best_l2 = runs[0.0][1].max()
    best_h = runs[-1.0][1].max()
    # with A = I and step 1 the L2 path is x_1 = y = x_2 = ...: its best is the noisy image
    assert best_l2 == pytest.approx(psnr(noisy), abs=1e-9)
    assert best_h > best_l2  # measured: 25.57 dB vs 20.02 dB (see the closing note)


def test_discrepancy_rule_stops_before_the_psnr_optimum(denoising):
    noisy, psnr, runs, delta = denoising
    res, ps = runs[-1.0]
    k_opt = int(ps.argmax()) + 1
    stopped = sobolev_fit(Identity(noisy.shape), noisy, -1.0, noise_level=delta,
                          spacing=2 * np.pi / noisy.shape[0], max_iter=400)
    assert stopped.status == "converged", stopped.message
    k_d = stopped.n_iter
    # the first iterate whose L2 residual is below the noise level
    d = res.history["residual_l2"]
    assert k_d == int(np.argmax(d <= delta)) + 1
    assert np.linalg.norm(noisy - stopped.x) <= delta < d[k_d - 2]
    assert k_d < k_opt
    assert psnr(stopped.x) > psnr(noisy) + 3.0


@pytest.mark.xfail(strict=True, reason="measured: the discrepancy rule (tau = 1, L2) stops at "
                   "iteration 65, the PSNR optimum is at 152 (ratio 2.3 > 2); see the closing note")
def test_discrepancy_rule_within_2x_of_the_psnr_optimum(denoising):
    noisy, _psnr, runs, delta = denoising
    _, ps = runs[-1.0]
    k_opt = int(ps.argmax()) + 1
    k_d = sobolev_fit(Identity(noisy.shape), noisy, -1.0, noise_level=delta,
                      spacing=2 * np.pi / noisy.shape[0], max_iter=400).n_iter
    assert k_opt / 2 <= k_d <= 2 * k_opt


# -- status, warnings, validation, determinism ------------------------------------------------
def test_unconverged_warns_and_divergence_stops():
    A, y = _problem()
    with pytest.warns(ConvergenceWarning):
        res = sobolev_fit(A, y, -1.0, stop="none", max_iter=5)
    assert res.status == "max_iter"
    res = sobolev_fit(A, y, 0.0, stop="none", step=50.0, max_iter=2000)
    # the objective grows geometrically: stopped long before it overflows
    assert res.status == "diverged" and res.n_iter < 100, res.message
    # the discrepancy is never met below the noise-free residual: max_iter and a warning
    with pytest.warns(ConvergenceWarning):
        res = sobolev_fit(A, y, 0.0, noise_level=1e-9, max_iter=10)
    assert res.status == "max_iter"


def test_deterministic():
    A, y = _problem()
    a = sobolev_fit(A, y, -0.5, stop=10)
    b = sobolev_fit(A, y, -0.5, stop=10)
    np.testing.assert_array_equal(a.x, b.x)


def test_bad_inputs():
    A, y = _problem()
    with pytest.raises(TypeError, match="A must be a tikhon LinearOperator"):
        sobolev_fit(np.eye(3), y, 0.0)
    with pytest.raises(ValueError, match="y has shape"):
        sobolev_fit(A, y[:-1], 0.0)
    with pytest.raises(ValueError, match="y contains NaN"):
        sobolev_fit(A, np.full(A.out_shape, np.nan), 0.0)
    with pytest.raises(TypeError, match="y must be a float32 or float64"):
        sobolev_fit(A, y.astype(int), 0.0)
    with pytest.raises(TypeError, match="s must be a real number"):
        sobolev_fit(A, y, "1")
    with pytest.raises(ValueError, match="s must be finite"):
        sobolev_fit(A, y, np.inf)
    with pytest.raises(ValueError, match="needs noise_level"):
        sobolev_fit(A, y, 0.0, stop="discrepancy")
    with pytest.raises(ValueError, match="noise_level"):
        sobolev_fit(A, y, 0.0, noise_level=-1.0)
    with pytest.raises(ValueError, match="tau"):
        sobolev_fit(A, y, 0.0, noise_level=1.0, tau=0.0)
    with pytest.raises(ValueError, match="step"):
        sobolev_fit(A, y, 0.0, step=0.0)
    with pytest.raises(ValueError, match="stop"):
        sobolev_fit(A, y, 0.0, stop="early")
    with pytest.raises(ValueError, match="stop"):
        sobolev_fit(A, y, 0.0, stop=0)
    with pytest.raises(TypeError, match="stop"):
        sobolev_fit(A, y, 0.0, stop=True)
    with pytest.raises(ValueError, match="discrepancy_norm"):
        sobolev_fit(A, y, 0.0, noise_level=1.0, discrepancy_norm="h1")
    with pytest.raises(ValueError, match="reg is not supported"):
        sobolev_fit(A, y, 0.0, reg=L1(), preconditioned=True)
    mask = Mask(np.arange(12 * 10).reshape(12, 10) % 3 == 0)
    with pytest.raises(ValueError, match="in_shape == A.out_shape"):
        sobolev_fit(mask, np.zeros(mask.out_shape), 0.0, preconditioned=True)
    with pytest.raises(ValueError, match="x0 has shape"):
        sobolev_fit(A, y, 0.0, x0=np.zeros(3))
    with pytest.raises(ValueError, match="reference has shape"):
        sobolev_fit(A, y, 0.0, reference=np.zeros(3))
    with pytest.raises(TypeError, match="reg"):
        sobolev_fit(A, y, 0.0, reg="l1")
    with pytest.raises(ValueError, match="lam"):
        sobolev_fit(A, y, 0.0, reg=L1(), lam=-1.0)


def test_torch_tensors_give_the_numpy_iterates():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    A, y = _problem()
    a = sobolev_fit(A, y, -1.0, stop=15, spacing=0.5)
    b = sobolev_fit(A, torch.from_numpy(y), -1.0, stop=15, spacing=0.5)
    assert isinstance(b.x, torch.Tensor)
    np.testing.assert_allclose(b.x.numpy(), a.x, rtol=0, atol=1e-12)
