"""tv_reconstruction against cvxpy on the same (weighted) problem; validation; weights."""

import numpy as np
import pytest
import scipy.sparse as sp

from helpers import dense
from tikhon.data import shepp_logan
from tikhon.operators import Gradient, Radon
from tikhon.data import estimate_noise_sigma
from tikhon.solvers import (
    ConvergenceWarning,
    default_tv_lam,
    fbp_reconstruction,
    pilot_wtv_reconstruction,
    space_variant_weights,
    tv_reconstruction,
)


@pytest.fixture(scope="module")
def small_problem():
    n, n_angles = 64, 30
    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    A = Radon((n, n), angles)
    x_true = shepp_logan(n)
    rng = np.random.default_rng(0)
    y0 = A(x_true)
    y = y0 + 0.01 * np.abs(y0).max() * rng.standard_normal(y0.shape)
    return A, x_true, y


def _cvxpy_weighted_tv(Am, Gm, y, lam, w, shape, data="l2"):
    cp = pytest.importorskip("cvxpy")
    n_pix = int(np.prod(shape))
    x = cp.Variable(n_pix)
    g = cp.reshape(Gm @ x, (2, n_pix), order="C")
    tv = cp.sum(cp.multiply(w.ravel(), cp.norm(g, 2, axis=0)))
    if data == "l2":
        fit = 0.5 * cp.sum_squares(Am @ x - y.ravel())
    else:
        yv = y.ravel()
        fit = cp.sum(Am @ x) - cp.sum(cp.multiply(yv, cp.log(Am @ x)))
    prob = cp.Problem(cp.Minimize(fit + lam * tv), [x >= 0])
    prob.solve(solver=cp.CLARABEL)
    # Clarabel may flag the exponential-cone (KL) problem "optimal_inaccurate";
    # its point is still feasible, so it bounds the optimum from above
    assert prob.status in ("optimal", "optimal_inaccurate")
    return x.value.reshape(shape)


def _objective(Am, Gm, y, lam, w, x, data="l2"):
    z = Am @ x.ravel()
    if data == "l2":
        fit = 0.5 * np.sum((z - y.ravel()) ** 2)
    else:
        yv = y.ravel()
        pos = yv > 0
        fit = np.sum(z - yv) + np.sum(yv[pos] * np.log(yv[pos] / z[pos]))
    g = (Gm @ x.ravel()).reshape(2, -1)
    return fit + lam * np.sum(w.ravel() * np.sqrt((g**2).sum(axis=0)))


def test_weighted_tv_matches_cvxpy(small_problem):
    A, x_true, y = small_problem
    n = A.in_shape[0]
    lam = 0.5
    w = space_variant_weights(x_true, p=0.5)
    res = tv_reconstruction(A, y, lam, weights=w, tol=1e-5, max_iter=20000)
    assert res.converged, res.message
    Am, Gm = sp.csr_matrix(dense(A)), sp.csr_matrix(dense(Gradient((n, n))))
    x_ref = _cvxpy_weighted_tv(Am, Gm, y, lam, w, (n, n))
    f_ref = _objective(Am, Gm, y, lam, w, np.maximum(x_ref, 0))
    f_ours = _objective(Am, Gm, y, lam, w, res.x)
    assert (f_ours - f_ref) / f_ref <= 1e-4
    # the solver's own objective is the same function
    assert res.history["objective"][-1] == pytest.approx(f_ours, rel=1e-9)
    assert np.linalg.norm(res.x - x_ref) / np.linalg.norm(x_ref) < 1e-2
    assert {"objective", "residual", "primal_residual", "dual_residual"} <= set(res.history)
    assert res.x.min() >= 0


def test_kl_matches_cvxpy():
    n = 24
    angles = np.linspace(0.0, np.pi, 12, endpoint=False)
    A = Radon((n, n), angles)
    x_true = 0.5 * shepp_logan(n) + 0.05
    rng = np.random.default_rng(1)
    y = rng.poisson(20 * A(x_true)).astype(float) / 20
    lam = 0.05
    w = np.ones((n, n))
    res = tv_reconstruction(A, y, lam, data="kl", tol=1e-6, max_iter=30000)
    assert res.converged, res.message
    Am, Gm = sp.csr_matrix(dense(A)), sp.csr_matrix(dense(Gradient((n, n))))
    x_ref = _cvxpy_weighted_tv(Am, Gm, y, lam, w, (n, n), data="kl")
    f_ref = _objective(Am, Gm, y, lam, w, np.maximum(x_ref, 0), data="kl")
    f_ours = _objective(Am, Gm, y, lam, w, res.x, data="kl")
    assert (f_ours - f_ref) / abs(f_ref) <= 1e-4
    assert res.info["objective"] == pytest.approx(f_ours, rel=1e-8)


@pytest.mark.parametrize("ratio, precondition", [(1.0, False), ("adaptive", False), (None, True)])
def test_step_options_reach_same_solution(ratio, precondition):
    n = 32
    angles = np.linspace(0.0, np.pi, 16, endpoint=False)
    A = Radon((n, n), angles)
    y = A(shepp_logan(n)) + 0.05 * np.random.default_rng(2).standard_normal(A.out_shape)
    ref = tv_reconstruction(A, y, 0.5, tol=1e-5, max_iter=20000)
    res = tv_reconstruction(A, y, 0.5, tol=1e-5, max_iter=20000, step_ratio=ratio, precondition=precondition)
    assert res.converged
    assert res.info["objective"] == pytest.approx(ref.info["objective"], rel=1e-4)


def test_lam_zero_nonneg_least_squares_and_torch(small_problem):
    torch = pytest.importorskip("torch")
    A, _, y = small_problem
    from tikhon.solvers import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_iter"):
        res = tv_reconstruction(A, torch.from_numpy(y), 0.0, max_iter=50, tol=0.0, check_every=50)
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float64
    assert res.n_iter == 50 and not res.converged


def test_validation(small_problem):
    A, _, y = small_problem
    shape = A.in_shape
    with pytest.raises(TypeError, match="A"):
        tv_reconstruction(np.eye(3), y, 1.0)
    with pytest.raises(ValueError, match="y"):
        tv_reconstruction(A, y[:-1], 1.0)
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="y"):
        tv_reconstruction(A, bad, 1.0)
    with pytest.raises(TypeError, match="y"):
        tv_reconstruction(A, y.astype(int), 1.0)
    with pytest.raises(ValueError, match="lam"):
        tv_reconstruction(A, y, -1.0)
    with pytest.raises(ValueError, match="lam"):
        tv_reconstruction(A, y, np.inf)
    with pytest.raises(ValueError, match="weights"):
        tv_reconstruction(A, y, 1.0, weights=-np.ones(shape))
    with pytest.raises(ValueError, match="weights"):
        tv_reconstruction(A, y, 1.0, weights=np.ones((3, 3)))
    w = np.ones(shape)
    w[1, 1] = np.inf
    with pytest.raises(ValueError, match="weights"):
        tv_reconstruction(A, y, 1.0, weights=w)
    with pytest.raises(ValueError, match="data"):
        tv_reconstruction(A, y, 1.0, data="l1")
    with pytest.raises(ValueError, match="nonnegative y"):
        tv_reconstruction(A, y - 10.0, 1.0, data="kl")
    with pytest.raises(ValueError, match="step_ratio"):
        tv_reconstruction(A, y, 1.0, step_ratio=0.0)
    with pytest.raises(ValueError, match="step_ratio"):
        tv_reconstruction(A, y, 1.0, step_ratio="fast")
    with pytest.raises(ValueError, match="x0"):
        tv_reconstruction(A, y, 1.0, x0=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="tol"):
        tv_reconstruction(A, y, 1.0, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        tv_reconstruction(A, y, 1.0, max_iter=0)


def test_space_variant_weights_properties():
    x = np.zeros((32, 32))
    x[8:24, 8:24] = 1.0
    w = space_variant_weights(x, p=0.3)
    assert w.shape == x.shape
    assert np.all(w > 0) and np.all(w <= 1)
    assert w[0, 0] == 1.0  # flat region
    assert w[7, 16] < 0.5  # on the edge (forward difference from row 7 to 8)
    assert np.array_equal(space_variant_weights(x, p=1.0), np.ones_like(x))
    # closed form with an explicit eta
    g = np.hypot(*Gradient(x.shape)(x))
    eta = 0.3
    expected = (eta / np.sqrt(eta**2 + g**2)) ** 0.5
    np.testing.assert_allclose(space_variant_weights(x, eta=eta, p=0.5), expected, rtol=1e-12)
    np.testing.assert_allclose(space_variant_weights(g, eta=eta, p=0.5, kind="gradient"), expected, rtol=1e-12)
    # smaller p -> smaller edge weights
    assert space_variant_weights(x, eta=eta, p=0.2)[7, 16] < space_variant_weights(x, eta=eta, p=0.8)[7, 16]


def test_space_variant_weights_validation():
    x = np.random.default_rng(0).random((8, 8))
    for p in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="p"):
            space_variant_weights(x, p=p)
    with pytest.raises(ValueError, match="eta"):
        space_variant_weights(x, eta=0.0)
    with pytest.raises(ValueError, match="estimate"):
        space_variant_weights(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="nonnegative"):
        space_variant_weights(-x, kind="gradient")
    with pytest.raises(ValueError, match="kind"):
        space_variant_weights(x, kind="edges")
    with pytest.raises(TypeError, match="estimate"):
        space_variant_weights(np.ones((4, 4), dtype=int))


@pytest.fixture(scope="module")
def few_view():
    n = 32
    angles = np.linspace(0.0, np.pi, 16, endpoint=False)
    A = Radon((n, n), angles)
    y = A(shepp_logan(n))
    return A, y + 0.01 * np.abs(y).max() * np.random.default_rng(4).standard_normal(y.shape)


def test_default_tv_lam(few_view):
    A, y = few_view
    sigma = estimate_noise_sigma(y)
    assert default_tv_lam(y) == pytest.approx(6.0 * sigma, rel=1e-12)
    assert default_tv_lam(y, weighted=True) == pytest.approx(12.0 * sigma, rel=1e-12)
    # noiseless (piecewise linear) data still get a positive weight, from max|y|
    flat = np.tile(np.linspace(0.0, 2.0, 9), (4, 1))
    assert default_tv_lam(flat) == pytest.approx(6e-3 * 2.0)
    with pytest.raises(TypeError, match="weighted"):
        default_tv_lam(y, weighted="yes")


def test_fbp_reconstruction(few_view):
    A, y = few_view
    res = fbp_reconstruction(A, y)
    np.testing.assert_array_equal(res.x, A.fbp(y))
    assert res.status == "converged" and res.converged and res.n_iter == 0
    with pytest.raises(TypeError, match="fbp"):
        fbp_reconstruction(Gradient((4, 4)), np.zeros((2, 4, 4)))


def test_pilot_wtv_reconstruction_is_the_two_solves(few_view):
    A, y = few_view
    res = pilot_wtv_reconstruction(A, y, tol=1e-3)
    pilot = tv_reconstruction(A, y, default_tv_lam(y), tol=1e-3)
    w = space_variant_weights(pilot.x)
    ref = tv_reconstruction(A, y, default_tv_lam(y, weighted=True), weights=w, x0=pilot.x, tol=1e-3)
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.status == "converged" and res.n_iter == pilot.n_iter + ref.n_iter
    np.testing.assert_array_equal(res.info["pilot"].x, pilot.x)
    assert res.info["lam"] == default_tv_lam(y, weighted=True)
    explicit = pilot_wtv_reconstruction(A, y, lam=0.3, pilot_lam=0.2, tol=1e-3)
    assert explicit.info["lam"] == 0.3 and explicit.info["pilot"].info["lam"] == 0.2
    with pytest.raises(ValueError, match="pilot_lam"):
        pilot_wtv_reconstruction(A, y, pilot_lam=-1.0)


def test_pilot_wtv_reconstruction_unconverged_pilot(few_view):
    A, y = few_view
    with pytest.warns(ConvergenceWarning):
        res = pilot_wtv_reconstruction(A, y, max_iter=3)
    assert res.status == "max_iter" and not res.converged
    assert res.n_iter == 6 and res.message.startswith("pilot: ")


def test_auto_lam_needs_a_sinogram_and_says_so():
    # lam="auto" reads y as (n_angles, n_det): another operator's output gets a clear refusal
    from tikhon.operators import MatrixOperator

    rng = np.random.default_rng(0)
    M = MatrixOperator(rng.standard_normal((40, 64)), in_shape=(8, 8), out_shape=(40,))
    y = M(shepp_logan(8))
    with pytest.raises(ValueError, match=r"tv_reconstruction: lam='auto' estimates the noise of a "
                                         r"2-D sinogram \(n_angles, n_det\).*pass lam="):
        tv_reconstruction(M, y)
    res = tv_reconstruction(M, y, lam=0.01, max_iter=20)  # a number works for it
    assert res.info["lam"] == 0.01 and np.all(np.isfinite(res.x))


def test_module_docstrings_keep_role_targets_on_one_line():
    # a cross-reference target split over two lines breaks the Sphinx -W build
    import pathlib
    import re

    import tikhon.solvers.tomography as mod

    split = re.compile(r":(?:meth|func|class|attr|mod|obj|data|exc):`[^`]*\n")
    text = pathlib.Path(mod.__file__).read_text()
    assert [text[:m.start()].count("\n") + 1 for m in split.finditer(text)] == []
