"""TubalProduct against an explicit block-circulant matrix product."""

import numpy as np
import pytest
from helpers import bcirc, unfold
from hypothesis import given, settings
from hypothesis import strategies as st
from tikhon.operators import TubalProduct, dot_test

torch = pytest.importorskip("torch")
CASES = [(3, 4, 5, 2), (2, 2, 4, 1), (4, 3, 1, 3), (1, 3, 6, 2)]






def _fold(M, n3):
    rows = M.shape[0] // n3
    return np.stack([M[k * rows:(k + 1) * rows] for k in range(n3)], axis=2)


@pytest.mark.parametrize("n1,n2,n3,nc", CASES)
def test_matches_block_circulant(n1, n2, n3, nc):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n1, n2, n3))
    T = TubalProduct(A, n_cols=nc)
    assert T.in_shape == (n2, nc, n3) and T.out_shape == (n1, nc, n3)
    X = rng.standard_normal((n2, nc, n3))
    B = bcirc(A)
    ref = _fold(B @ unfold(X), n3)
    np.testing.assert_allclose(T(X), ref, atol=1e-12)
    np.testing.assert_allclose(T(torch.from_numpy(X)).numpy(), ref, atol=1e-12)
    Y = rng.standard_normal((n1, nc, n3))
    np.testing.assert_allclose(T.T(Y), _fold(B.T @ unfold(Y), n3), atol=1e-12)
    assert T.norm() == pytest.approx(np.linalg.norm(B, 2), rel=1e-10)


def test_identity_tensor():
    # the t-identity: the identity matrix in the first frontal slice, zeros elsewhere
    I = np.zeros((3, 3, 4))
    I[:, :, 0] = np.eye(3)
    X = np.random.default_rng(1).standard_normal((3, 2, 4))
    np.testing.assert_allclose(TubalProduct(I, 2)(X), X, atol=1e-14)


@pytest.mark.parametrize("n1,n2,n3,nc", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dot_test(n1, n2, n3, nc, dtype, backend):
    T = TubalProduct(np.random.default_rng(2).standard_normal((n1, n2, n3)), nc)
    dot_test(T, dtype=dtype, backend=backend)
    out = T(np.ones(T.in_shape, dtype=dtype))
    assert out.dtype == dtype and out.flags.c_contiguous


def test_gradcheck():
    T = TubalProduct(np.random.default_rng(3).standard_normal((2, 3, 4)), 2)
    x = torch.randn(T.in_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(T, (x,))
    y = torch.randn(T.out_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(T.adjoint, (y,))


def test_validation():
    with pytest.raises(ValueError, match="A must be a 3-D tensor"):
        TubalProduct(np.ones((2, 2)))
    with pytest.raises(ValueError, match="A must be finite"):
        TubalProduct(np.full((2, 2, 2), np.nan))
    with pytest.raises(TypeError, match="A must be real"):
        TubalProduct(np.ones((2, 2, 2), complex))
    with pytest.raises(ValueError, match="n_cols"):
        TubalProduct(np.ones((2, 2, 2)), n_cols=0)
    with pytest.raises(TypeError, match="n_cols"):
        TubalProduct(np.ones((2, 2, 2)), n_cols=1.5)
    with pytest.raises(ValueError, match="positive dimensions"):
        TubalProduct(np.ones((2, 0, 2)))
    assert "TubalProduct[2x2x2]" in repr(TubalProduct(np.ones((2, 2, 2))))


@settings(max_examples=15, deadline=None)
@given(n1=st.integers(1, 4), n2=st.integers(1, 4), n3=st.integers(1, 5), nc=st.integers(1, 3),
       seed=st.integers(0, 999))
def test_hypothesis(n1, n2, n3, nc, seed):
    rng = np.random.default_rng(seed)
    A, X = rng.standard_normal((n1, n2, n3)), rng.standard_normal((n2, nc, n3))
    np.testing.assert_allclose(TubalProduct(A, nc)(X), _fold(bcirc(A) @ unfold(X), n3), atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    T = TubalProduct(np.random.default_rng(4).standard_normal((2, 3, 4)), 2)
    dot_test(T, backend="torch", device="cuda")
    x = torch.randn(T.in_shape, device="cuda", dtype=torch.float64)
    np.testing.assert_allclose(T(x).cpu().numpy(), T(x.cpu().numpy()), atol=1e-12)
