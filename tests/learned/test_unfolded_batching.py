"""Batches in the unfolded networks: the private batched operator and IHT's ``batch_dims``."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tikhon.learned.unfolded import _BatchedMatrix, _operator_matrix
from tikhon.operators import Convolution, MatrixOperator, dot_test
from tikhon.operators.prox import SquaredL2
from tikhon.solvers.first_order import IHT

torch.set_num_threads(1)


def test_batched_matrix_is_matched_and_row_wise():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((7, 4))
    op = _BatchedMatrix(torch.from_numpy(M), 5, (4,), (7,))
    assert dot_test(op, backend="torch")
    X = rng.standard_normal((5, 4))
    assert np.allclose(op.forward(torch.from_numpy(X)).numpy(), X @ M.T, rtol=1e-14, atol=0)
    # float32 inputs get the matrix in float32
    assert op.forward(torch.from_numpy(X).float()).dtype == torch.float32


def test_operator_matrix_of_a_non_matrix_operator():
    rng = np.random.default_rng(1)
    A = Convolution((9,), rng.standard_normal(3))
    M = _operator_matrix(A, "test")
    x = rng.standard_normal(9)
    assert np.allclose(M @ x, A(x), rtol=1e-13, atol=1e-14)
    with pytest.raises(TypeError, match="LinearOperator"):
        _operator_matrix(np.eye(3), "test")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_iht_batch_dims_keeps_sparsity_per_problem(backend):
    rng = np.random.default_rng(2)
    B, m, n, s = 4, 6, 12, 3
    M = rng.standard_normal((m, n))
    Y = rng.standard_normal((B, m))
    L = np.linalg.norm(M, 2) ** 2
    As = [MatrixOperator(M) for _ in range(B)]
    big = MatrixOperator(np.kron(np.eye(B), M), in_shape=(B, n), out_shape=(B, m))
    Yb = torch.from_numpy(Y) if backend == "torch" else Y
    solver = IHT(SquaredL2(b=Yb, op=big), s, step=1.0 / L, batch_dims=1)
    state = solver.init(torch.zeros((B, n), dtype=torch.float64) if backend == "torch" else np.zeros((B, n)))
    for _ in range(8):
        state = solver.step(state)
    x = np.asarray(state.x)
    assert ((x != 0).sum(axis=1) == s).all()
    for i in range(B):
        one = IHT(SquaredL2(b=Y[i], op=As[i]), s, step=1.0 / L)
        st = one.init(np.zeros(n))
        for _ in range(8):
            st = one.step(st)
        assert np.abs(st.x - x[i]).max() <= 1e-12
    r = solver.optimality(state.x, step=1.0 / L)
    assert tuple(r.shape) == (B, n)


def test_iht_batch_dims_checks():
    f = SquaredL2(b=np.zeros(3))
    with pytest.raises(ValueError, match="batch_dims"):
        IHT(f, 1, step=1.0, batch_dims=-1)
    with pytest.raises(ValueError, match="batch_dims"):
        IHT(f, 1, step_rule="normalized", batch_dims=1)
    with pytest.raises(TypeError, match="batch_dims"):
        IHT(f, 1, step=1.0, batch_dims=1.5)
