"""Same seed, same machine: bit-identical results (solvers, estimators, training loops).

Each computation runs twice from scratch and the outputs must be equal bit for
bit (``np.array_equal`` / ``torch.equal``, not a tolerance). The numba-parallel
path is TV-CT with two numba threads: its parallel loops write disjoint
entries and its reductions are sequential (``vdot`` / ``norm`` by einsum), so
the thread count changes nothing either, which the test checks too.
"""

import numba
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::tikhon.solvers.ConvergenceWarning")

from tikhon.solvers import (
    LassoMoE,
    l1_logistic,
    lasso,
    tubal_factorization,
    tv_reconstruction,
)
from tikhon.solvers.transport import sinkhorn

from tikhon.data import random_ellipses, simulate_sinogram


def twice(fn):
    return fn(), fn()


def assert_identical(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), f"max difference {np.max(np.abs(a - b))}"


@pytest.fixture
def two_numba_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread")
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(old)


def _ct(threads):
    img = random_ellipses(32, 0)
    angles = np.linspace(0, np.pi, 20, endpoint=False)
    y, A = simulate_sinogram(img, angles, level=0.02, rng=1, return_operator=True)
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return tv_reconstruction(A, y, 0.01, max_iter=60, tol=0.0)
    finally:
        numba.set_num_threads(old)


def test_tv_ct_on_two_numba_threads_is_bit_identical(two_numba_threads):
    a, b = twice(lambda: _ct(2))
    assert_identical(a.x, b.x)
    assert a.n_iter == b.n_iter == 60
    for key in a.history:
        if key != "time":
            assert_identical(a.history[key], b.history[key])
    # race-free parallel loops and sequential reductions: the thread count changes no bit
    assert_identical(_ct(1).x, a.x)


def test_sinkhorn_is_bit_identical():
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((40, 2)), rng.standard_normal((50, 2))
    C = ((x[:, None] - z[None]) ** 2).sum(-1)
    a, b = np.full(40, 1 / 40), np.full(50, 1 / 50)
    r1, r2 = twice(lambda: sinkhorn(a, b, C, 1e-2, tol=1e-9))
    assert_identical(r1.x, r2.x)
    assert r1.n_iter == r2.n_iter


def test_lasso_and_l1_logistic_are_bit_identical():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 30))
    y = X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(60)
    r1, r2 = twice(lambda: lasso(X, y, 0.05, tol=1e-10))
    assert_identical(r1.x, r2.x)
    labels = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    s1, s2 = twice(lambda: l1_logistic(X, labels, 0.02, tol=1e-8))
    assert_identical(s1.x, s2.x)
    assert_identical(s1.info["intercept"], s2.info["intercept"])


def test_lasso_moe_with_a_seed_is_bit_identical():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, 4))
    y = np.where(X[:, 0] > 0, 2 * X[:, 1], -2 * X[:, 2]) + 0.1 * rng.standard_normal(80)

    def fit():
        est = LassoMoE(n_experts=2, lam=0.02, n_init=2, max_iter=30, random_state=3).fit(X, y)
        return est.predict(X), est.objective_

    (p1, o1), (p2, o2) = twice(fit)
    assert_identical(p1, p2)
    assert o1 == o2


def test_tubal_factorization_with_a_seed_is_bit_identical():
    from tikhon.operators import GaussianSensing

    M = GaussianSensing((4, 4, 3), 30, rng=0)
    y = M.forward(np.random.default_rng(4).standard_normal((4, 4, 3)))
    r1, r2 = twice(lambda: tubal_factorization(M, y, 2, rng=5, max_iter=50, symmetric=False))
    assert_identical(r1.x, r2.x)


def test_data_generators_with_a_seed_are_bit_identical():
    assert_identical(*twice(lambda: random_ellipses(32, 7)))
    img = random_ellipses(16, 0)
    angles = np.linspace(0, np.pi, 8, endpoint=False)
    for noise in ("gaussian", "poisson"):
        assert_identical(*twice(lambda n=noise: simulate_sinogram(img, angles, noise=n, rng=8)))


def test_tv_weight_net_training_is_bit_identical():
    from tikhon.learned import train_tv_weight_net

    rng = np.random.default_rng(9)
    fbp = rng.uniform(0, 1, (4, 1, 16, 16)).astype(np.float32)
    truth = np.clip(fbp + 0.1 * rng.standard_normal(fbp.shape).astype(np.float32), 0, None)

    def train():
        net, losses = train_tv_weight_net(fbp, truth, width=2, epochs=2, batch_size=2, seed=4, crop=8)
        return net.state_dict(), losses

    (s1, l1), (s2, l2) = twice(train)
    assert l1 == l2
    for k in s1:
        assert_identical(s1[k], s2[k])


def test_unfolded_training_is_bit_identical():
    from tikhon.learned import UnfoldedISTA, train_unfolded
    from tikhon.operators import MatrixOperator

    rng = np.random.default_rng(10)
    M = rng.standard_normal((8, 16))
    X = rng.standard_normal((40, 16)) * (rng.uniform(size=(40, 16)) < 0.2)
    Y = torch.from_numpy(X @ M.T)

    def train():
        net = UnfoldedISTA(MatrixOperator(M), 0.05, 3)
        hist = train_unfolded(net, (Y, torch.from_numpy(X)), epochs=2, batch_size=10, rng=6, progress=False)
        return net.state_dict(), hist["loss"]

    (s1, l1), (s2, l2) = twice(train)
    assert l1 == l2
    for k in s1:
        assert_identical(s1[k], s2[k])
