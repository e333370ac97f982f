"""Convolution against scipy.signal (zero boundary) and scipy.ndimage (mode wrap)."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import dense
from tikhon.operators import Convolution, dot_test

torch = pytest.importorskip("torch")
DTYPES = [np.float32, np.float64]
BACKENDS = ["numpy", "torch"]
CASES = [((9,), (3,)), ((7, 9), (3, 5)), ((8, 6), (4, 2)), ((5, 6, 7), (3, 2, 3)), ((4, 5), (7, 9))]


def _same_zero(x, k):
    """Central part of the full linear convolution, starting at k // 2 per axis."""
    full = scipy.signal.convolve(x, k, mode="full", method="direct")
    return full[tuple(slice(m // 2, m // 2 + n) for m, n in zip(k.shape, x.shape))]


@pytest.mark.parametrize("shape,kshape", CASES)
def test_zero_boundary_matches_scipy(shape, kshape):
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal(shape), rng.standard_normal(kshape)
    C = Convolution(shape, k)
    ref = _same_zero(x, k)
    np.testing.assert_allclose(C(x), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(C(torch.from_numpy(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    # scipy.ndimage puts the centre at k // 2 as well (constant mode = zeros)
    np.testing.assert_allclose(C(x), scipy.ndimage.convolve(x, k, mode="constant"), atol=1e-12)
    if all(m % 2 for m in kshape):
        np.testing.assert_allclose(C(x), scipy.signal.convolve(x, k, mode="same"), atol=1e-12)
    # the adjoint is the correlation
    y = rng.standard_normal(shape)
    np.testing.assert_allclose(C.T(y), (dense(C).T @ y.ravel()).reshape(shape), atol=1e-12)
    np.testing.assert_allclose(C.T(y), scipy.ndimage.correlate(y, k, mode="constant"), atol=1e-12)


@pytest.mark.parametrize("shape,kshape", [c for c in CASES if all(m <= n for n, m in zip(*c))])
def test_periodic_matches_ndimage_wrap(shape, kshape):
    rng = np.random.default_rng(1)
    x, k = rng.standard_normal(shape), rng.standard_normal(kshape)
    C = Convolution(shape, k, boundary="periodic")
    ref = scipy.ndimage.convolve(x, k, mode="wrap")
    np.testing.assert_allclose(C(x), ref, atol=1e-12)
    np.testing.assert_allclose(C(torch.from_numpy(x)).numpy(), ref, atol=1e-12)
    assert C.norm() == pytest.approx(np.linalg.norm(dense(C), 2), rel=1e-10)


def test_centre_convention():
    # a delta at the centre index k // 2 is the identity, for odd and even sizes
    for kshape in [(3, 3), (4, 2), (1, 5)]:
        k = np.zeros(kshape)
        k[tuple(m // 2 for m in kshape)] = 1.0
        x = np.random.default_rng(2).standard_normal((6, 5))
        for boundary in ["zero", "periodic"]:
            np.testing.assert_allclose(Convolution((6, 5), k, boundary)(x), x, atol=1e-13)


@pytest.mark.parametrize("shape,kshape", CASES)
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dot_test(shape, kshape, boundary, dtype, backend):
    if boundary == "periodic" and any(m > n for n, m in zip(shape, kshape)):
        pytest.skip("kernel larger than the periodic grid")
    k = np.random.default_rng(3).standard_normal(kshape)
    C = Convolution(shape, k, boundary)
    dot_test(C, dtype=dtype, backend=backend)
    x = np.ones(shape, dtype=dtype)
    assert C(x).dtype == dtype and C(x).flags.c_contiguous


@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_abs_and_gradcheck(boundary):
    k = np.random.default_rng(4).standard_normal((3, 2))
    C = Convolution((4, 5), k, boundary)
    np.testing.assert_allclose(dense(C.abs()), np.abs(dense(C)), atol=1e-12)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(C, (x,))
    assert torch.autograd.gradcheck(C.adjoint, (x,))


def test_validation():
    with pytest.raises(ValueError, match="kernel must have 2 axes"):
        Convolution((4, 4), np.ones(3))
    with pytest.raises(ValueError, match="kernel must be finite"):
        Convolution((4, 4), np.full((2, 2), np.nan))
    with pytest.raises(TypeError, match="kernel must be real"):
        Convolution((4, 4), np.ones((2, 2), complex))
    with pytest.raises(ValueError, match="boundary"):
        Convolution((4, 4), np.ones((2, 2)), boundary="reflect")
    with pytest.raises(ValueError, match="must fit"):
        Convolution((4, 4), np.ones((5, 2)), boundary="periodic")
    with pytest.raises(ValueError, match="empty"):
        Convolution((4, 4), np.ones((0, 2)))
    assert "Convolution" in repr(Convolution((4, 4), np.ones((3, 3))))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 12), k=st.integers(1, 5), seed=st.integers(0, 999))
def test_hypothesis_2d(n, m, k, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, m)), rng.standard_normal((k, k))
    np.testing.assert_allclose(Convolution((n, m), w)(x), _same_zero(x, w), atol=1e-10)
    dot_test(Convolution((n, m), w), rng=seed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("boundary", ["zero", "periodic"])
def test_cuda(boundary):
    k = np.random.default_rng(5).standard_normal((3, 2))
    C = Convolution((6, 5), k, boundary)
    dot_test(C, backend="torch", device="cuda")
    x = torch.randn(6, 5, device="cuda", dtype=torch.float64)
    np.testing.assert_allclose(C(x).cpu().numpy(), C(x.cpu().numpy()), atol=1e-12)
