"""Autograd through the group proxes at groups that are exactly zero.

An unrolled TV solve from ``x = 0`` meets zero groups in its first dual step;
the square root of a zero squared norm has an infinite derivative, which used
to turn the gradient with respect to a learned step into NaN.
"""

import numpy as np
import pytest

from tikhon.operators.prox import L21

torch = pytest.importorskip("torch")


def _field():
    # groups along axis 0: column 0 is zero, column 1 is inside the unit ball, column 2 outside
    return torch.tensor([[0.0, 0.3, 2.0], [0.0, 0.4, -1.5]], dtype=torch.float64)


def test_l21_prox_gradient_is_finite_and_matches_finite_differences():
    y = _field()
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out = L21(axis=0).prox(y, tau)
    out.sum().backward()
    assert torch.isfinite(tau.grad)

    # d/dtau of sum_i y_i (1 - tau / ||y_i||) over the surviving group 2 only
    y2 = y[:, 2].numpy()
    expected = -y2.sum() / np.linalg.norm(y2)
    assert tau.grad.item() == pytest.approx(expected, rel=1e-12)


def test_l21_conj_projection_gradient_is_finite():
    y = _field().requires_grad_(True)
    w = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    out = L21(axis=0, weights=w).conj.prox(y, 1.0)
    out.sum().backward()
    assert torch.isfinite(y.grad).all()
    assert torch.isfinite(w.grad)
    # zero and inside groups pass through unchanged (Jacobian identity)
    assert torch.equal(y.grad[:, :2], torch.ones(2, 2, dtype=torch.float64))
    # d/dw of sum(w y_2 / ||y_2||)
    y2 = _field()[:, 2].numpy()
    assert w.grad.item() == pytest.approx(y2.sum() / np.linalg.norm(y2), rel=1e-12)


def test_l21_prox_values_unchanged_on_torch_and_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4))
    x[:, 1, 2] = 0.0
    f = L21(axis=0)
    for tau in (0.1, 0.7, 3.0):
        a = f.prox(x, tau)
        b = f.prox(torch.from_numpy(x), tau).numpy()
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
        c = f.conj.prox(torch.from_numpy(x), tau).numpy()
        np.testing.assert_allclose(c, f.conj.prox(x, tau), rtol=1e-12, atol=1e-15)
