"""The algebra of tikhon.operators.base, checked against explicit dense matrices.

The operators under test are a minimal dense subclass defined here, so these
tests exercise base.py alone (not the concrete operators of basic.py).
"""

import numpy as np
import pytest
import scipy.sparse.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import dense
from tikhon.operators import (
    LinearOperator,
    aslinearoperator,
    dot_test,
    stack,
)

torch = pytest.importorskip("torch")


class _Mat(LinearOperator):
    """Dense matrix on N-d arrays, written only against the subclass protocol."""

    def __init__(self, M, in_shape=None, out_shape=None, wrong_adjoint=False):
        M = np.asarray(M, dtype=np.float64)
        super().__init__(in_shape or (M.shape[1],), out_shape or (M.shape[0],))
        self.M = M
        self.wrong_adjoint = wrong_adjoint

    def _mat(self, v):
        if isinstance(v, torch.Tensor):
            return torch.from_numpy(self.M).to(dtype=v.dtype, device=v.device)
        return self.M

    def _forward(self, x):
        return (self._mat(x) @ x.reshape(-1)).reshape(self.out_shape)

    def _adjoint(self, y):
        M = self._mat(y)
        if self.wrong_adjoint:
            M = M * 1.001  # a slightly wrong transpose
        return (M.T @ y.reshape(-1)).reshape(self.in_shape)

    def abs(self):
        return _Mat(np.abs(self.M), self.in_shape, self.out_shape)

    def _label(self):
        return "Mat"


@pytest.fixture
def mats():
    rng = np.random.default_rng(1)
    return rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal((4, 6))


def test_composition_matches_matrix_product(mats):
    MA, MB, _ = mats
    A, B = _Mat(MA), _Mat(MB)
    AB = A @ B
    assert AB.in_shape == (5,) and AB.out_shape == (4,)
    np.testing.assert_allclose(dense(AB), MA @ MB, rtol=1e-12)
    np.testing.assert_allclose(dense(AB.T), (MA @ MB).T, rtol=1e-12)
    dot_test(AB)


def test_composition_shape_error_names_both(mats):
    MA, _, MC = mats
    with pytest.raises(ValueError, match=r"Mat.*\(6,\).*Mat.*\(4,\)"):
        _Mat(MA) @ _Mat(MC)


def test_sum_difference_negation_scaling(mats):
    MA, _, MC = mats
    A, C = _Mat(MA), _Mat(MC)
    np.testing.assert_allclose(dense(A + C), MA + MC, rtol=1e-12)
    np.testing.assert_allclose(dense(A - C), MA - MC, rtol=1e-12)
    np.testing.assert_allclose(dense(-A), -MA, rtol=1e-12)
    np.testing.assert_allclose(dense(2.5 * A), 2.5 * MA, rtol=1e-12)
    np.testing.assert_allclose(dense(A * -3), -3 * MA, rtol=1e-12)
    np.testing.assert_allclose(dense(A / 4), MA / 4, rtol=1e-12)
    np.testing.assert_allclose(dense((A - 2 * C).T), (MA - 2 * MC).T, rtol=1e-12)
    with pytest.raises(ValueError, match="cannot add"):
        A + _Mat(MA.T)
    with pytest.raises(TypeError):
        A * "2"
    with pytest.raises(TypeError):
        A * True  # bools are not scalars here


def test_transpose_identity_and_adjoint_values(mats):
    MA, _, _ = mats
    A = _Mat(MA)
    assert A.T.T is A
    assert A.T is A.T  # cached
    assert A.T.in_shape == A.out_shape and A.T.out_shape == A.in_shape
    np.testing.assert_allclose(dense(A.T), MA.T, rtol=1e-12)
    assert "Mat.T" in repr(A.T)


def test_stack_split_join(mats):
    MA, _, MC = mats
    A = _Mat(MA, in_shape=(2, 3), out_shape=(2, 2))
    C = _Mat(MC, in_shape=(2, 3), out_shape=(4,))
    S = stack([A, C])
    assert S.out_shape == (8,)
    x = np.random.default_rng(0).standard_normal((2, 3))
    y = S(x)
    a, c = S.split(y)
    np.testing.assert_allclose(a, A(x))
    np.testing.assert_allclose(c, C(x))
    assert np.shares_memory(a, y)  # split gives views
    np.testing.assert_array_equal(S.join([a, c]), y)
    np.testing.assert_allclose(dense(S), np.vstack([MA, MC]), rtol=1e-12)
    np.testing.assert_allclose(S.adjoint(y), A.adjoint(a) + C.adjoint(c), rtol=1e-12)
    dot_test(S)
    dot_test(S, backend="torch")
    with pytest.raises(ValueError, match="same in_shape"):
        stack([A, _Mat(MA)])
    with pytest.raises(ValueError):
        stack([])
    with pytest.raises(TypeError):
        stack([A, MA])


def test_norm_matches_numpy_and_is_cached():
    M = np.random.default_rng(3).standard_normal((7, 5))
    A = _Mat(M)
    ref = np.linalg.norm(M, 2)
    assert A.norm(seed=0) == pytest.approx(ref, rel=1e-6)
    assert A.norm(seed=0) == A.norm(seed=0)
    assert len(A._norm_cache) == 1
    assert A.T.norm() == pytest.approx(ref, rel=1e-6)
    assert (-3 * A).norm() == pytest.approx(3 * ref, rel=1e-6)
    assert _Mat(np.zeros((3, 2))).norm() == 0.0
    assert _Mat(np.zeros((0, 2))).norm() == 0.0


def test_aslinearoperator_with_lsqr():
    rng = np.random.default_rng(4)
    M = rng.standard_normal((12, 6))
    A = _Mat(M, in_shape=(2, 3), out_shape=(3, 4))
    L = aslinearoperator(A)
    assert L.shape == (12, 6)
    v, w = rng.standard_normal(6), rng.standard_normal(12)
    np.testing.assert_allclose(L.matvec(v), M @ v, rtol=1e-12)
    np.testing.assert_allclose(L.rmatvec(w), M.T @ w, rtol=1e-12)
    # integer vectors from scipy are promoted instead of rejected
    np.testing.assert_allclose(L.matvec(np.arange(6)), M @ np.arange(6), rtol=1e-12)
    b = rng.standard_normal(12)
    sol = scipy.sparse.linalg.lsqr(L, b, atol=1e-12, btol=1e-12)[0]
    np.testing.assert_allclose(sol, np.linalg.lstsq(M, b, rcond=None)[0], rtol=1e-8)


def test_dot_test_detects_wrong_adjoint():
    M = np.random.default_rng(5).standard_normal((5, 4))
    good, bad = _Mat(M), _Mat(M, wrong_adjoint=True)
    assert dot_test(good) < 1e-12
    with pytest.raises(AssertionError, match="dot test failed for Mat"):
        dot_test(bad)
    err = dot_test(bad, raise_error=False)
    assert 1e-4 < err < 1e-2
    with pytest.raises(AssertionError):
        dot_test(bad, backend="torch", dtype=np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        dot_test(good, dtype=np.int64)
    with pytest.raises(ValueError, match="backend"):
        dot_test(good, backend="jax")


def test_shape_errors_name_operator_and_shapes():
    A = _Mat(np.ones((3, 4)), in_shape=(2, 2))
    with pytest.raises(ValueError, match=r"Mat\.forward: x has shape \(4,\), expected \(2, 2\)"):
        A.forward(np.ones(4))
    with pytest.raises(ValueError, match=r"Mat\.adjoint: y has shape \(4,\), expected \(3,\)"):
        A.adjoint(np.ones(4))
    with pytest.raises(ValueError, match=r"Mat\.T\.forward"):
        A.T.forward(np.ones(4))


@pytest.mark.parametrize("bad", [np.ones(4, dtype=np.int64), np.ones(4, dtype=np.complex128),
                                 np.ones(4, dtype=bool), torch.ones(4, dtype=torch.int32),
                                 torch.ones(4, dtype=torch.complex64)])
def test_dtype_errors(bad):
    A = _Mat(np.ones((3, 4)))
    with pytest.raises(TypeError, match="float32 or float64"):
        A.forward(bad)


def test_float32_in_float32_out():
    A = _Mat(np.random.default_rng(6).standard_normal((3, 4)))
    out = (2 * A + A).T @ A  # composite operators keep the dtype as well
    assert out.forward(np.ones(4, dtype=np.float32)).dtype == np.float32
    assert A.forward(np.ones(4, dtype=np.float32)).dtype == np.float32
    assert out.forward(torch.ones(4, dtype=torch.float32)).dtype == torch.float32
    assert A.adjoint(np.ones(3, dtype=np.float64)).dtype == np.float64


def test_abs_algebra(mats):
    MA, MB, MC = mats
    A, B, C = _Mat(MA), _Mat(MB), _Mat(MC)
    np.testing.assert_allclose(dense((A @ B).abs()), np.abs(MA) @ np.abs(MB), rtol=1e-12)
    np.testing.assert_allclose(dense((A - C).abs()), np.abs(MA) + np.abs(MC), rtol=1e-12)
    np.testing.assert_allclose(dense((-2 * A).abs()), 2 * np.abs(MA), rtol=1e-12)
    np.testing.assert_allclose(dense(A.T.abs()), np.abs(MA).T, rtol=1e-12)
    np.testing.assert_allclose(dense(stack([A, C]).abs()), np.abs(np.vstack([MA, MC])), rtol=1e-12)
    # an entrywise upper bound for compositions
    assert np.all(dense((A @ B).abs()) >= np.abs(MA @ MB) - 1e-12)
    with pytest.raises(NotImplementedError, match="diagonal preconditioning"):
        LinearOperator((2,), (2,)).abs()


def test_autograd_uses_adjoint():
    M = np.random.default_rng(7).standard_normal((3, 4))
    op = _Mat(M) @ (_Mat(M).T @ _Mat(M))
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    y = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op.adjoint, (y,))
    # second order flows as well (backward goes through _apply)
    assert torch.autograd.gradgradcheck(op, (x,))


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 5), n=st.integers(1, 5), k=st.integers(1, 5),
    c=st.floats(-10, 10, allow_nan=False), seed=st.integers(0, 2**16),
)
def test_algebra_random_shapes(m, n, k, c, seed):
    rng = np.random.default_rng(seed)
    MA, MB, MC = rng.standard_normal((m, n)), rng.standard_normal((n, k)), rng.standard_normal((m, n))
    A, B, C = _Mat(MA), _Mat(MB), _Mat(MC)
    op = (A + c * C) @ B
    np.testing.assert_allclose(dense(op), (MA + c * MC) @ MB, rtol=1e-10, atol=1e-10)
    dot_test(op, rng=seed)
    dot_test(stack([op, B.T.T @ B.T @ B]), rng=seed)
