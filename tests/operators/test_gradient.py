"""Gradient (forward differences, Neumann boundary) against np.diff with appended zeros."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import dense
from tikhon.operators import Gradient, dot_test

torch = pytest.importorskip("torch")
DTYPES = [np.float32, np.float64]
BACKENDS = ["numpy", "torch"]
# 1-D and 4-D take the vectorised path, 2-D and 3-D the numba kernels;
# axes of length 1 and 2 exercise every boundary branch of the kernels
SHAPES = [(7,), (5, 6), (1, 4), (4, 1), (2, 2), (3, 4, 5), (1, 3, 2), (4, 1, 3), (2, 3, 1, 4)]


def _reference(x, spacing):
    """np.diff along each axis with a zero appended at the end (Neumann)."""
    parts = []
    for a in range(x.ndim):
        d = np.diff(x, axis=a) / spacing[a]
        pad = [(0, 0)] * x.ndim
        pad[a] = (0, 1)
        parts.append(np.pad(d, pad))
    return np.stack(parts)


def _paths(shape, spacing=1.0, parallel=False):
    """The same operator on each of its code paths."""
    G = Gradient(shape, spacing, parallel=parallel)
    Gt = Gradient(shape, spacing, parallel=parallel)
    Gt._numba_on_torch_cpu = False  # the device-agnostic torch path
    return G, Gt


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spacing", [1.0, 0.5])
def test_forward_matches_np_diff(shape, spacing):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    sp = [spacing] * len(shape)
    G, Gt = _paths(shape, spacing)
    ref = _reference(x, sp)
    assert G.out_shape == (len(shape), *shape)
    np.testing.assert_allclose(G(x), ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(G._forward_numpy(x), ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(G(torch.from_numpy(x)).numpy(), ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(Gt(torch.from_numpy(x)).numpy(), ref, rtol=1e-14, atol=1e-14)
    x32 = x.astype(np.float32)
    out32 = G(x32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, _reference(x32, sp), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_adjoint_is_transpose_ofdense(shape):
    spacing = tuple(0.5 + 0.25 * a for a in range(len(shape)))  # anisotropic
    G, Gt = _paths(shape, spacing)
    D = dense(G)
    rng = np.random.default_rng(1)
    y = rng.standard_normal(G.out_shape)
    ref = (D.T @ y.ravel()).reshape(shape)
    np.testing.assert_allclose(G.adjoint(y), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(G._adjoint_numpy(y), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Gt.adjoint(torch.from_numpy(y)).numpy(), ref, rtol=1e-12, atol=1e-12)


def test_adjoint_ignores_last_differences():
    # the last difference along each axis is 0 in the forward map, so the
    # adjoint must not read it (not even as 0 * inf)
    for shape in [(4, 5), (3, 4, 5), (1, 3), (3, 1, 1)]:
        G = Gradient(shape, parallel=False)
        y = np.random.default_rng(2).standard_normal(G.out_shape)
        ref = G.adjoint(y)
        for a, n in enumerate(shape):
            idx = [a] + [slice(None)] * len(shape)
            idx[1 + a] = n - 1
            y[tuple(idx)] = np.inf
        np.testing.assert_array_equal(G.adjoint(y), ref)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dot_test(shape, dtype, backend):
    G, Gt = _paths(shape, (0.7,) * len(shape))
    dot_test(G, dtype=dtype, backend=backend)
    if backend == "torch":
        dot_test(Gt, dtype=dtype, backend=backend)


@pytest.mark.parametrize("shape", [(40, 30), (12, 10, 9)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_kernels_match_serial(shape, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal((len(shape), *shape)).astype(dtype)
    ser, par = Gradient(shape, parallel=False), Gradient(shape, parallel=True)
    np.testing.assert_array_equal(par(x), ser(x))
    np.testing.assert_array_equal(par.T(y), ser.T(y))
    dot_test(par, dtype=dtype)


def test_non_contiguous_input():
    x = np.random.default_rng(4).standard_normal((6, 8))
    G = Gradient((8, 6), parallel=False)
    np.testing.assert_allclose(G(x.T), _reference(np.ascontiguousarray(x.T), [1, 1]), rtol=1e-14)


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 4), (6,)])
def test_gradcheck(shape):
    for G in _paths(shape, 0.5):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(G, (x,))
        y = torch.randn(G.out_shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(G.adjoint, (y,))


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 4), (6,), (2, 1, 2, 3)])
def test_abs_is_entrywise_absolute(shape):
    G = Gradient(shape, spacing=tuple(0.5 + a for a in range(len(shape))))
    A = G.abs()
    np.testing.assert_allclose(dense(A), np.abs(dense(G)), rtol=1e-14)
    dot_test(A)
    dot_test(A, backend="torch", dtype=np.float32)
    assert A.abs() is A and "|Gradient" in repr(A)


@pytest.mark.parametrize("shape", [(7,), (5, 6), (1, 4), (3, 4, 2)])
def test_norm_closed_form(shape):
    G = Gradient(shape, spacing=tuple(1.0 + 0.5 * a for a in range(len(shape))))
    assert G.norm() == pytest.approx(np.linalg.norm(dense(G), 2), rel=1e-12)


def test_validation():
    with pytest.raises(ValueError, match="spacing"):
        Gradient((3, 3), spacing=0.0)
    with pytest.raises(ValueError, match="spacing"):
        Gradient((3, 3), spacing=-1.0)
    with pytest.raises(ValueError, match="spacing"):
        Gradient((3, 3), spacing=np.nan)
    with pytest.raises(ValueError, match="spacing"):
        Gradient((3, 3), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="spacing"):
        Gradient((3, 3), spacing="a")
    with pytest.raises(ValueError, match="shape"):
        Gradient((3, 0))
    with pytest.raises(ValueError, match="shape"):
        Gradient(())
    with pytest.raises(TypeError, match="parallel"):
        Gradient((3, 3), parallel=1)
    with pytest.raises(ValueError, match=r"Gradient\.forward: x has shape \(3,\), expected \(3, 3\)"):
        Gradient((3, 3))(np.ones(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        Gradient((3, 3))(np.ones((3, 3), dtype=np.int32))


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
       h=st.floats(0.1, 10), seed=st.integers(0, 1000))
def test_hypothesis_shapes(shape, h, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    G = Gradient(shape, spacing=h, parallel=False)
    np.testing.assert_allclose(G(x), _reference(x, [h] * len(shape)), rtol=1e-12, atol=1e-12)
    dot_test(G, rng=seed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", [(5, 6), (3, 4, 5), (6,)])
def test_cuda(shape):
    G = Gradient(shape)
    dot_test(G, backend="torch", device="cuda")
    dot_test(G.abs(), backend="torch", device="cuda")
    x = torch.randn(shape, device="cuda", dtype=torch.float64)
    np.testing.assert_allclose(G(x).cpu().numpy(), _reference(x.cpu().numpy(), [1.0] * len(shape)),
                               atol=1e-12)
