"""Helpers shared by the tests (``import helpers``: tests/conftest.py puts this folder on sys.path).

Fixtures live in tests/conftest.py; plain functions and classes live here.
"""

import math

import numpy as np

from tikhon._core.arrays import is_torch
from tikhon.operators.base import LinearOperator


def dense(op):
    """The matrix of a LinearOperator (NumPy float64), one column per unit input.

    Columns follow the C-order flattening of ``op.in_shape``, rows that of
    ``op.out_shape``; only ``op.forward`` is used, so the matrix can check the
    adjoint, ``abs()`` and ``norm()`` independently.
    """
    n = math.prod(op.in_shape)
    out = np.empty((math.prod(op.out_shape), n))
    e = np.zeros(n)
    for j in range(n):
        e[j] = 1.0
        out[:, j] = np.asarray(op.forward(e.reshape(op.in_shape))).reshape(-1)
        e[j] = 0.0
    return out


class Dense(LinearOperator):
    """A dense matrix ``A`` as an operator from arrays of ``in_shape`` to vectors.

    Written for the tests of functionals, so that they do not depend on the
    library's own MatrixOperator. ``in_shape`` defaults to ``(A.shape[1],)``;
    the input is flattened in C order. NumPy arrays and torch tensors.
    """

    def __init__(self, A, in_shape=None):
        A = np.asarray(A, dtype=np.float64)
        in_shape = (A.shape[1],) if in_shape is None else tuple(in_shape)
        super().__init__(in_shape, (A.shape[0],))
        self.A = A

    def _forward(self, x):
        if is_torch(x):
            return x.new_tensor(self.A) @ x.reshape(-1)
        return self.A.astype(x.dtype) @ x.reshape(-1)

    def _adjoint(self, y):
        if is_torch(y):
            return (y.new_tensor(self.A.T) @ y).reshape(self.in_shape)
        return (self.A.T.astype(y.dtype) @ y).reshape(self.in_shape)


def bcirc(A):
    """Block-circulant matrix of a third-order tensor: block (i, j) = A[:, :, (i - j) mod n3].

    The t-product's definition (Kilmer and Martin), written without FFTs as the
    reference for ``TubalProduct`` and the t-SVD.
    """
    n1, n2, n3 = A.shape
    B = np.zeros((n1 * n3, n2 * n3))
    for i in range(n3):
        for j in range(n3):
            B[i * n1:(i + 1) * n1, j * n2:(j + 1) * n2] = A[:, :, (i - j) % n3]
    return B


def unfold(X):
    """The frontal slices of a third-order tensor stacked vertically (``unfold`` of the t-product)."""
    return np.concatenate([X[:, :, k] for k in range(X.shape[2])], axis=0)


def randomise_icnn(net, seed, scale=0.5):
    """Non-trivial float64 weights for an ``ICNN``: the non-negative ones ``|N(0, scale)|``, the others N(0, 1).

    The network's own initialisation keeps the hidden weights tiny, where
    curvature tests see an almost affine potential.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    net.double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for w in net.nonneg_parameters():
            w.copy_(scale * torch.randn(w.shape, generator=gen, dtype=w.dtype).abs())
    return net.eval()
