"""Chambolle-Pock against cvxpy, scikit-image's TV denoiser and between its variants."""

import warnings

import numpy as np
import pytest

from tikhon.operators import Gradient, MatrixOperator
from tikhon.operators.base import LinearOperator
from tikhon.operators.prox import L1, L21, Box, Functional, SquaredL2
from tikhon.solvers import ConvergenceWarning, chambolle_pock
from tikhon.solvers.primal_dual import ChambollePock

LAM = 0.15


pytestmark = pytest.mark.usefixtures("single_numba_thread")


def _noisy_square(n=16, seed=0):
    rng = np.random.default_rng(seed)
    b = np.zeros((n, n))
    b[4:12, 3:11] = 1.0
    return b + 0.2 * rng.standard_normal((n, n))


def _tv_problem(b, lam=LAM):
    # min_x 0.5 ||x - b||^2 + lam ||grad x||_{2,1}:  f = lam L21 on K x, g = SquaredL2(b)
    return Gradient(b.shape), L21(axis=0, weights=lam), SquaredL2(b=b)


def _tv_objective(x, b, lam=LAM):
    gx = np.zeros((2,) + x.shape)
    gx[0, :-1] = np.diff(x, axis=0)
    gx[1, :, :-1] = np.diff(x, axis=1)
    return 0.5 * np.sum((x - b) ** 2) + lam * np.sum(np.sqrt((gx ** 2).sum(0)))


@pytest.fixture(scope="module")
def tv_reference():
    cp = pytest.importorskip("cvxpy")
    b = _noisy_square()
    n = b.shape[0]
    u = cp.Variable(b.shape)
    g0 = cp.vstack([u[1:, :] - u[:-1, :], np.zeros((1, n))])
    g1 = cp.hstack([u[:, 1:] - u[:, :-1], np.zeros((n, 1))])
    tv = cp.sum(cp.norm(cp.vstack([cp.vec(g0, order="C"), cp.vec(g1, order="C")]), 2, axis=0))
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(u - b) + LAM * tv))
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return b, u.value, prob.value


@pytest.mark.parametrize(
    "options",
    [dict(), dict(gamma=0.0), dict(precondition=True), dict(step_ratio=4.0), dict(criterion="gap")],
    ids=["accelerated", "plain", "preconditioned", "ratio", "gap"],
)
def test_tv_denoising_matches_cvxpy(tv_reference, options):
    b, x_ref, obj_ref = tv_reference
    K, f, g = _tv_problem(b)
    res = chambolle_pock(K, f, g, tol=1e-6, max_iter=20_000, **options)
    assert res.converged, res.message
    obj = _tv_objective(res.x, b)
    assert abs(obj - obj_ref) / obj_ref <= 1e-5
    assert np.abs(res.x - x_ref).max() <= 1e-2
    # the recorded objective is f(Kx) + g(x) at the returned iterate
    assert res.history["objective"][-1] == pytest.approx(obj, rel=1e-12)
    if options.get("criterion") == "gap":
        assert 0 <= res.history["gap"][-1] <= 1e-6


def test_variants_reach_the_same_solution(tv_reference):
    b, _, _ = tv_reference
    K, f, g = _tv_problem(b)
    xs = [chambolle_pock(K, f, g, tol=1e-6, max_iter=20_000, **kw).x
          for kw in (dict(gamma=0.0), dict(precondition=True), dict())]
    scale = np.linalg.norm(xs[0])
    assert np.linalg.norm(xs[1] - xs[0]) / scale <= 1e-4
    assert np.linalg.norm(xs[2] - xs[0]) / scale <= 1e-4


def test_tv_denoising_matches_skimage():
    restoration = pytest.importorskip("skimage.restoration")
    rng = np.random.default_rng(3)
    b = np.clip(np.outer(np.linspace(0, 1, 24), np.ones(24)) + (np.arange(24) > 11), 0, 2)
    b = b + 0.1 * rng.standard_normal(b.shape)
    # skimage's denoise_tv_chambolle runs Chambolle's (2004) projection algorithm
    # on min_u 0.5 ||u - b||^2 + weight * TV(u), with the isotropic TV of forward
    # differences and a zero difference on the last row/column (our Gradient),
    # so weight = lam exactly.
    ref = restoration.denoise_tv_chambolle(b, weight=LAM, eps=1e-12, max_num_iter=20_000)
    K, f, g = _tv_problem(b)
    res = chambolle_pock(K, f, g, tol=1e-8, max_iter=20_000)
    assert res.converged
    assert np.linalg.norm(res.x - ref) / np.linalg.norm(ref) <= 1e-3
    # and not a weight off by a factor 2 (the comparison is sharp enough to notice)
    ref2 = restoration.denoise_tv_chambolle(b, weight=2 * LAM, eps=1e-12, max_num_iter=20_000)
    assert np.linalg.norm(res.x - ref2) / np.linalg.norm(ref2) > 1e-2


def test_l1_regression_with_box_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(4)
    M = rng.standard_normal((30, 10))
    y = M @ rng.uniform(-2, 2, 10) + 0.1 * rng.standard_normal(30)
    lo, hi = -0.5, 1.0
    u = cp.Variable(10)
    prob = cp.Problem(cp.Minimize(cp.norm1(M @ u - y)), [u >= lo, u <= hi])
    prob.solve(solver="CLARABEL")
    # min_x ||M x - y||_1 + indicator(lo <= x <= hi): an LP
    K = MatrixOperator(M)
    for kw in (dict(), dict(precondition=True)):
        res = chambolle_pock(K, L1().shift(y), Box(lo, hi), tol=1e-9, max_iter=100_000, **kw)
        assert res.converged, res.message
        assert res.x.min() >= lo and res.x.max() <= hi
        obj = np.abs(M @ res.x - y).sum()
        assert abs(obj - prob.value) / prob.value <= 1e-6


def test_float32_and_torch_agree_with_float64(tv_reference):
    b, x_ref, _ = tv_reference
    K, f, g = _tv_problem(b)
    res64 = chambolle_pock(K, f, g, tol=1e-6, max_iter=20_000)
    assert res64.converged
    K32, f32, g32 = _tv_problem(b.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res32 = chambolle_pock(K32, f32, g32, x0=np.zeros(b.shape, np.float32), tol=1e-5, max_iter=3000)
    assert res32.x.dtype == np.float32 and res32.dual.dtype == np.float32
    assert np.abs(res32.x - x_ref).max() <= 1e-3
    torch = pytest.importorskip("torch")
    Kt, ft, gt = _tv_problem(torch.from_numpy(b))
    rest = chambolle_pock(Kt, ft, gt, x0=torch.zeros(b.shape, dtype=torch.float64), tol=1e-6,
                          max_iter=20_000)
    assert isinstance(rest.x, torch.Tensor) and isinstance(rest.dual, torch.Tensor)
    # the same iteration on another array type: same iterates up to rounding
    assert rest.n_iter == res64.n_iter
    assert np.abs(rest.x.numpy() - res64.x).max() <= 1e-9


def test_one_operator_pair_per_iteration(tv_reference):
    b, _, _ = tv_reference

    class Counting(LinearOperator):
        def __init__(self, op):
            super().__init__(op.in_shape, op.out_shape)
            self.op, self.n_fwd, self.n_adj = op, 0, 0

        def _forward(self, x):
            self.n_fwd += 1
            return self.op._forward(x)

        def _adjoint(self, y):
            self.n_adj += 1
            return self.op._adjoint(y)

    K, f, g = _tv_problem(b)
    Kc = Counting(K)
    solver = ChambollePock(Kc, f, g)
    state = solver.init(tau=0.3, sigma=0.3)
    n0 = (Kc.n_fwd, Kc.n_adj)
    for _ in range(10):
        state = solver.step(state)
    assert (Kc.n_fwd - n0[0], Kc.n_adj - n0[1]) == (10, 10)
    # the monitor reuses the cached products
    Kc.n_fwd = Kc.n_adj = 0
    with pytest.warns(ConvergenceWarning):
        chambolle_pock(Kc, f, g, tau=0.3, sigma=0.3, tol=0.0, max_iter=20, check_every=1)
    assert (Kc.n_fwd, Kc.n_adj) == (21, 20)  # + K x0 at initialisation (K^T 0 is not applied)


def test_bad_inputs(tv_reference):
    b, _, _ = tv_reference
    K, f, g = _tv_problem(b)
    x0 = np.zeros_like(b)
    x0[0, 0] = np.nan
    with pytest.raises(ValueError, match="x0"):
        chambolle_pock(K, f, g, x0=x0)
    with pytest.raises(ValueError, match="x0"):
        chambolle_pock(K, f, g, x0=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="tau"):
        chambolle_pock(K, f, g, tau=0.0)
    with pytest.raises(ValueError, match="theta"):
        chambolle_pock(K, f, g, theta=2.0)
    with pytest.raises(ValueError, match="criterion"):
        chambolle_pock(K, f, g, criterion="other")
    with pytest.raises(TypeError, match="K"):
        chambolle_pock(np.eye(3), f, g)

    class FixedStep(Functional):
        fixed_step = True

        def _prox(self, x, tau):
            return x

    with pytest.raises(ValueError, match="fixed step"):
        chambolle_pock(K, f, FixedStep())

    class NoAbs(LinearOperator):
        def _forward(self, x):
            return 2 * x

        def _adjoint(self, y):
            return 2 * y

    with pytest.raises(NotImplementedError, match="abs"):
        chambolle_pock(NoAbs((4,), (4,)), L1(), SquaredL2(), precondition=True)
    # the gap needs closed-form conjugates (SquaredL2 with an operator has none)
    with pytest.raises(ValueError, match="gap"):
        chambolle_pock(K, f, SquaredL2(b=np.zeros(K.out_shape), op=K), criterion="gap")


def test_max_iter_warns_and_callback_stops(tv_reference):
    b, _, _ = tv_reference
    K, f, g = _tv_problem(b)
    with pytest.warns(ConvergenceWarning):
        res = chambolle_pock(K, f, g, tol=1e-14, max_iter=7)
    assert not res.converged and res.n_iter == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = chambolle_pock(K, f, g, tol=1e-14, max_iter=100, callback=lambda s: s.k >= 4)
    assert res.n_iter == 4 and not res.converged


def test_non_finite_iterate_stops(tv_reference):
    b, _, _ = tv_reference
    K, f, _ = _tv_problem(b)

    class Broken(Functional):
        """A prox that returns NaN from the third call on (a diverging plug-in)."""

        calls = 0

        def _call(self, x):
            return 0.0

        def _prox(self, x, tau):
            Broken.calls += 1
            return x * np.nan if Broken.calls >= 3 else x + 0.1 * np.arange(x.size).reshape(x.shape)

    res = chambolle_pock(K, f, Broken(), tol=1e-12, max_iter=100, check_every=1)
    assert not res.converged and res.n_iter == 3
    assert "non-finite" in res.message
