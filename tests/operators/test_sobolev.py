"""SobolevWeight against an explicit DFT-matrix construction on tiny grids."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import dense
from tikhon.operators import SobolevWeight, dot_test

torch = pytest.importorskip("torch")
SHAPES = [(6,), (5,), (4, 5), (3, 4, 2)]


def _dft_reference(shape, s, spacing):
    """F^{-1} diag(w) F with F the Kronecker product of 1-D DFT matrices."""
    F = np.ones((1, 1))
    for n in shape:
        F = np.kron(F, np.fft.fft(np.eye(n)))
    grids = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=h) for n, h in zip(shape, spacing)],
                        indexing="ij")
    w = (1.0 + sum(g**2 for g in grids)) ** (s / 2)
    M = np.linalg.solve(F, np.diag(w.ravel()) @ F)
    assert np.abs(M.imag).max() < 1e-10  # a real operator
    return M.real


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("s", [1.0, -0.7, 2.5, 0.0])
def test_matches_dft_matrix(shape, s):
    spacing = tuple(0.5 + 0.3 * a for a in range(len(shape)))
    S = SobolevWeight(shape, s, spacing=spacing)
    M = _dft_reference(shape, s, spacing)
    np.testing.assert_allclose(dense(S), M, atol=1e-10 * max(1.0, np.abs(M).max()))
    x = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_allclose(S(torch.from_numpy(x)).numpy(), S(x), rtol=1e-12, atol=1e-12)
    # self-adjoint and with the exact norm
    np.testing.assert_allclose(S.T(x), S(x), rtol=0, atol=0)
    assert S.norm() == pytest.approx(np.linalg.norm(M, 2), rel=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dot_test(shape, dtype, backend):
    S = SobolevWeight(shape, 1.5)
    dot_test(S, dtype=dtype, backend=backend)
    x = np.ones(shape, dtype=dtype)
    assert S(x).dtype == dtype


def test_inverse_and_identity():
    x = np.random.default_rng(1).standard_normal((6, 7))
    S = SobolevWeight((6, 7), 1.3, spacing=0.1)
    np.testing.assert_allclose(S.inverse()(S(x)), x, atol=1e-12)
    np.testing.assert_allclose(SobolevWeight((6, 7), 0.0)(x), x, atol=1e-14)
    # constants are eigenvectors with eigenvalue 1 (xi = 0)
    np.testing.assert_allclose(S(np.ones((6, 7))), np.ones((6, 7)), atol=1e-12)


def test_gradcheck():
    S = SobolevWeight((4, 5), -1.2)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(S, (x,))


def test_validation():
    with pytest.raises(TypeError, match="s must be a real number"):
        SobolevWeight((4,), "1")
    with pytest.raises(ValueError, match="s must be finite"):
        SobolevWeight((4,), np.inf)
    with pytest.raises(ValueError, match="spacing"):
        SobolevWeight((4,), 1.0, spacing=0.0)
    with pytest.raises(ValueError, match="shape"):
        SobolevWeight((0, 3), 1.0)
    with pytest.raises(NotImplementedError):
        SobolevWeight((4,), 1.0).abs()
    assert "SobolevWeight[s=1.5]" in repr(SobolevWeight((4,), 1.5))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 7), m=st.integers(1, 7), s=st.floats(-3, 3), h=st.floats(0.1, 3))
def test_hypothesis(n, m, s, h):
    S = SobolevWeight((n, m), s, spacing=h)
    M = _dft_reference((n, m), s, (h, h))
    np.testing.assert_allclose(dense(S), M, atol=1e-10 * max(1.0, np.abs(M).max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    S = SobolevWeight((6, 5), 1.2)
    dot_test(S, backend="torch", device="cuda")
    x = torch.randn(6, 5, device="cuda", dtype=torch.float64)
    np.testing.assert_allclose(S(x).cpu().numpy(), S(x.cpu().numpy()), atol=1e-12)
