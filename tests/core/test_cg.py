"""The one conjugate-gradient loop against a direct solve, NumPy and torch."""

import numpy as np
import pytest

from tikhon._core.cg import conjugate_gradient


def _spd(n, seed):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    return M @ M.T + n * np.eye(n), rng.standard_normal(n)


@pytest.mark.parametrize("start", ["zero", "x0", "x0_r0"])
def test_matches_a_direct_solve(start):
    A, b = _spd(30, 0)
    x0 = np.ones(30)
    kwargs = {"zero": {}, "x0": {"x0": x0}, "x0_r0": {"x0": x0, "r0": b - A @ x0}}[start]
    x, rr, k = conjugate_gradient(lambda v: A @ v, b, stop=1e-24, max_iter=200, **kwargs)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
    assert rr <= 1e-24 and 0 < k <= 60
    assert np.all(x0 == 1.0)  # the start is not written into


def test_stops_at_max_iter_and_on_a_non_positive_direction():
    A, b = _spd(30, 1)
    _, rr, k = conjugate_gradient(lambda v: A @ v, b, stop=0.0, max_iter=3)
    assert k == 3 and rr > 0
    # A = -I: the first direction has p^T A p < 0, so nothing is done
    x, _, k = conjugate_gradient(lambda v: -v, b, stop=0.0, max_iter=10)
    assert k == 0 and np.all(x == 0)


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    A, b = _spd(20, 2)
    At, bt = torch.from_numpy(A), torch.from_numpy(b)
    x, _, _ = conjugate_gradient(lambda v: At @ v, bt, stop=1e-24, max_iter=200)
    assert isinstance(x, torch.Tensor)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
