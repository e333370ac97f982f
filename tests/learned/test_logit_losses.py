"""Logit losses: label smoothing, MaxSup, z-loss against NumPy formulas, torch, gradcheck, bad input."""

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from tikhon.learned import label_smoothing_loss, maxsup_loss, z_loss

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def _data(n=7, k=5, seed=0):
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((n, k))
    y = rng.integers(0, k, n)
    return z, y


def _t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def test_label_smoothing_against_smoothed_targets_and_torch():
    z, y = _data()
    for alpha in (0.0, 0.1, 0.7):
        q = (1 - alpha) * np.eye(z.shape[1])[y] + alpha / z.shape[1]
        want = float(np.mean(-np.sum(q * log_softmax(z, axis=1), axis=1)))
        got = label_smoothing_loss(_t(z), torch.tensor(y), alpha=alpha)
        assert float(got) == pytest.approx(want, rel=1e-12)
        ref = torch.nn.functional.cross_entropy(_t(z), torch.tensor(y), label_smoothing=alpha)
        assert float(got) == pytest.approx(float(ref), rel=1e-12)


def test_maxsup_against_formula_and_its_relation_to_label_smoothing():
    z, y = _data(n=40, seed=1)
    alpha = 0.15
    ce = logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    want = float(np.mean(ce + alpha * (z.max(1) - z.mean(1))))
    got = maxsup_loss(_t(z), torch.tensor(y), alpha=alpha)
    assert float(got) == pytest.approx(want, rel=1e-12)
    # per sample: equal to label smoothing where the prediction is right, larger where wrong
    right = z.argmax(1) == y
    assert right.any() and (~right).any()
    for mask in (right, ~right):
        zs, ys = _t(z[mask]), torch.tensor(y[mask])
        ms, ls = float(maxsup_loss(zs, ys, alpha)), float(label_smoothing_loss(zs, ys, alpha))
        if mask is right:
            assert ms == pytest.approx(ls, rel=1e-12)
        else:
            assert ms > ls


def test_z_loss_against_formula_any_leading_shape():
    rng = np.random.default_rng(2)
    z = 4 * rng.standard_normal((2, 3, 6))
    want = 1e-3 * float(np.mean(logsumexp(z, axis=-1) ** 2))
    assert float(z_loss(_t(z), weight=1e-3)) == pytest.approx(want, rel=1e-12)
    # shift invariance of the softmax, not of the z-loss: its minimum over shifts is at log Z = 0
    c = -logsumexp(z, axis=-1, keepdims=True)
    assert float(z_loss(_t(z + c), weight=1.0)) == pytest.approx(0.0, abs=1e-24)
    assert z_loss(_t(z).float()).dtype == torch.float32


def test_sequence_shaped_targets():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 4, 5))
    y = rng.integers(0, 5, (2, 4))
    flat = label_smoothing_loss(_t(z.reshape(-1, 5)), torch.tensor(y.reshape(-1)), 0.2)
    assert float(label_smoothing_loss(_t(z), torch.tensor(y), 0.2)) == pytest.approx(float(flat), rel=1e-12)
    flat = maxsup_loss(_t(z.reshape(-1, 5)), torch.tensor(y.reshape(-1)), 0.2)
    assert float(maxsup_loss(_t(z), torch.tensor(y), 0.2)) == pytest.approx(float(flat), rel=1e-12)


def test_gradcheck():
    z, y = _data(n=4, k=3, seed=4)  # distinct logits: the max is differentiable there
    yt = torch.tensor(y)
    assert torch.autograd.gradcheck(lambda x: label_smoothing_loss(x, yt, 0.3), (_t(z, True),))
    assert torch.autograd.gradcheck(lambda x: maxsup_loss(x, yt, 0.3), (_t(z, True),))
    assert torch.autograd.gradcheck(lambda x: z_loss(x, 0.5), (_t(z, True),))


def test_maxsup_gradient_lowers_the_top_logit():
    z = _t([[3.0, 1.0, 0.0]], grad=True)
    maxsup_loss(z, torch.tensor([1]), alpha=0.2).backward()
    ce = _t([[3.0, 1.0, 0.0]], grad=True)
    torch.nn.functional.cross_entropy(ce, torch.tensor([1])).backward()
    diff = (z.grad - ce.grad).numpy()[0]
    np.testing.assert_allclose(diff, 0.2 * (np.array([1.0, 0, 0]) - 1 / 3), rtol=1e-12)


def test_bad_input():
    z = torch.zeros(3, 4)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(TypeError, match="label_smoothing_loss: logits must be a torch.Tensor"):
        label_smoothing_loss(np.zeros((3, 4)), y)
    with pytest.raises(TypeError, match="maxsup_loss: logits must be a float32 or float64"):
        maxsup_loss(torch.zeros(3, 4, dtype=torch.int64), y)
    with pytest.raises(ValueError, match="z_loss: logits must have a non-empty class axis"):
        z_loss(torch.zeros(()))
    with pytest.raises(TypeError, match="label_smoothing_loss: target must hold integer"):
        label_smoothing_loss(z, y.double())
    with pytest.raises(ValueError, match=r"maxsup_loss: target has shape \(2,\), expected \(3,\)"):
        maxsup_loss(z, y[:2])
    with pytest.raises(ValueError, match=r"label_smoothing_loss: target must be class indices in \[0, 4\)"):
        label_smoothing_loss(z, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="maxsup_loss: alpha must be in"):
        maxsup_loss(z, y, alpha=1.5)
    with pytest.raises(ValueError, match="z_loss: weight"):
        z_loss(z, weight=-1.0)
