"""Identity, Diagonal, MatrixOperator and Mask against NumPy references."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import dense
from tikhon.operators import Diagonal, Identity, Mask, MatrixOperator, dot_test

torch = pytest.importorskip("torch")
DTYPES = [np.float32, np.float64]
BACKENDS = ["numpy", "torch"]


def _operators():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 4))
    S = sp.random(5, 7, density=0.4, random_state=1, format="coo")
    mask = rng.random((3, 4)) > 0.4
    return {
        "identity": Identity((2, 3)),
        "diagonal": Diagonal(rng.standard_normal((3, 2))),
        "dense": MatrixOperator(M, in_shape=(2, 2), out_shape=(3, 2)),
        "sparse": MatrixOperator(S),
        "mask": Mask(mask),
    }


OPS = _operators()


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dot_test(name, dtype, backend):
    dot_test(OPS[name], dtype=dtype, backend=backend)


@pytest.mark.parametrize("name", sorted(OPS))
def test_torch_matches_numpy_and_dtype(name):
    op = OPS[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(op.in_shape)
    y = rng.standard_normal(op.out_shape)
    for dt, tdt in [(np.float32, torch.float32), (np.float64, torch.float64)]:
        fx = op.forward(x.astype(dt))
        ft = op.forward(torch.from_numpy(x.astype(dt)))
        assert fx.dtype == dt and ft.dtype == tdt
        assert isinstance(ft, torch.Tensor) and tuple(ft.shape) == op.out_shape
        np.testing.assert_allclose(ft.numpy(), fx, rtol=1e-5, atol=1e-6)
        at = op.adjoint(torch.from_numpy(y.astype(dt)))
        assert at.dtype == tdt
        np.testing.assert_allclose(at.numpy(), op.adjoint(y.astype(dt)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck(name):
    op = OPS[name]
    x = torch.randn(op.in_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    y = torch.randn(op.out_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op.adjoint, (y,))


@pytest.mark.parametrize("name", sorted(OPS))
def test_abs_is_entrywise_absolute(name):
    op = OPS[name]
    np.testing.assert_allclose(dense(op.abs()), np.abs(dense(op)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(OPS))
def test_norm_matchesdense(name):
    op = OPS[name]
    assert op.norm() == pytest.approx(np.linalg.norm(dense(op), 2), rel=1e-6)


def test_identity():
    I = Identity(5)
    x = np.arange(5.0)
    out = I(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x  # a copy: solvers may update it in place
    xt = torch.arange(5.0)
    assert I(xt) is not xt and torch.equal(I(xt), xt)
    assert I.abs() is I and I.in_shape == (5,)
    assert "Identity" in repr(I)


def test_diagonal_reference_and_validation():
    rng = np.random.default_rng(2)
    d = rng.standard_normal((4, 3))
    D = Diagonal(d)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(D(x), d * x, rtol=1e-15)
    np.testing.assert_allclose(D.T(x), d * x, rtol=1e-15)
    assert Diagonal(np.arange(3)).dtype == np.float64  # ints become floats
    assert Diagonal(np.ones(3, np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="d must be finite"):
        Diagonal(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="d must be finite"):
        Diagonal(np.array([1.0, np.inf]))
    with pytest.raises(TypeError, match="d must be real"):
        Diagonal(np.array([1 + 1j]))
    with pytest.raises(TypeError, match="d"):
        Diagonal(np.array([True]))
    with pytest.raises(ValueError, match=r"Diagonal\.forward: x has shape"):
        D(np.ones(3))


def test_matrix_operator_reference():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((6, 4))
    A = MatrixOperator(M, in_shape=(2, 2), out_shape=(2, 3))
    x = rng.standard_normal((2, 2))
    np.testing.assert_allclose(A(x), (M @ x.ravel()).reshape(2, 3), rtol=1e-14)
    y = rng.standard_normal((2, 3))
    np.testing.assert_allclose(A.T(y), (M.T @ y.ravel()).reshape(2, 2), rtol=1e-14)
    # float32 inputs are multiplied in float32 against a float32 copy of M
    out32 = A(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, A(x), rtol=1e-5)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_matrix_operator_sparse(fmt):
    S = sp.random(8, 5, density=0.5, random_state=4, format=fmt)
    A = MatrixOperator(S, out_shape=(2, 4))
    assert A.sparse
    x = np.random.default_rng(5).standard_normal(5)
    np.testing.assert_allclose(A(x), (S @ x).reshape(2, 4), rtol=1e-14)
    np.testing.assert_allclose(A(torch.from_numpy(x)).numpy(), (S @ x).reshape(2, 4), rtol=1e-12)
    y = np.random.default_rng(6).standard_normal((2, 4))
    np.testing.assert_allclose(A.T(torch.from_numpy(y)).numpy(), S.T @ y.ravel(), rtol=1e-12)
    np.testing.assert_allclose(A.todense(), S.toarray())
    np.testing.assert_allclose(A.abs().todense(), np.abs(S.toarray()))


def test_matrix_operator_validation():
    with pytest.raises(ValueError, match="in_shape"):
        MatrixOperator(np.ones((3, 4)), in_shape=(3, 2))
    with pytest.raises(ValueError, match="out_shape"):
        MatrixOperator(np.ones((3, 4)), out_shape=(4,))
    with pytest.raises(ValueError, match="2-D"):
        MatrixOperator(np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        MatrixOperator(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="finite"):
        MatrixOperator(sp.csr_matrix(np.array([[1.0, np.inf]])))
    with pytest.raises(TypeError, match="real"):
        MatrixOperator(np.ones((2, 2), dtype=complex))
    with pytest.raises(TypeError, match="real"):
        MatrixOperator(sp.csr_matrix(np.ones((2, 2), dtype=complex)))


def test_matrix_operator_torch_cache():
    A = MatrixOperator(np.random.default_rng(7).standard_normal((3, 4)))
    A(torch.ones(4, dtype=torch.float64))
    A(torch.ones(4, dtype=torch.float64))
    A(torch.ones(4, dtype=torch.float32))
    torch_keys = [k for k in A._cache if k[0] == "M"]
    assert len(torch_keys) == 2  # one conversion per (device, dtype)


def test_mask_reference():
    rng = np.random.default_rng(8)
    mask = rng.random((4, 5)) > 0.5
    P = Mask(mask)
    x = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(P(x), x[mask])
    y = rng.standard_normal(P.n_kept)
    back = P.T(y)
    ref = np.zeros((4, 5))
    ref[mask] = y
    np.testing.assert_array_equal(back, ref)
    np.testing.assert_array_equal(P.T(torch.from_numpy(y)).numpy(), ref)
    assert P.out_shape == (int(mask.sum()),)
    with pytest.raises(TypeError, match="boolean"):
        Mask(np.ones((2, 2)))
    assert Mask(np.zeros(3, bool)).norm() == 0.0


@settings(max_examples=20, deadline=None)
@given(mask=hnp.arrays(bool, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)),
       seed=st.integers(0, 1000))
def test_mask_hypothesis(mask, seed):
    P = Mask(mask)
    x = np.random.default_rng(seed).standard_normal(mask.shape)
    np.testing.assert_array_equal(P(x), x[mask])
    np.testing.assert_array_equal(P.T(P(x)), np.where(mask, x, 0.0))
    dot_test(P, rng=seed)


@settings(max_examples=20, deadline=None)
@given(d=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                    elements=st.floats(-1e3, 1e3)))
def test_diagonal_hypothesis(d):
    D = Diagonal(d)
    x = np.random.default_rng(0).standard_normal(d.shape)
    np.testing.assert_array_equal(D(x), d * x)
    np.testing.assert_array_equal(D.abs()(x), np.abs(d) * x)
    assert D.norm() == (np.abs(d).max() if d.size else 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(OPS))
def test_cuda(name):
    op = OPS[name]
    dot_test(op, backend="torch", device="cuda")
    x = torch.randn(op.in_shape, device="cuda")
    out = op(x)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    np.testing.assert_allclose(out.cpu().numpy(), op(x.cpu().numpy()), rtol=1e-4, atol=1e-5)
