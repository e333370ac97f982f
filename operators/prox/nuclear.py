"""The nuclear norm (sum of singular values) and singular value thresholding."""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import is_torch, sum_value, torch_module
from tikhon.operators.prox.base import indicator_tol, scalar_tau
from tikhon.operators.prox.base import Functional

__all__ = ["NuclearNorm"]


def _svdvals(x):
    if is_torch(x):
        return torch_module().linalg.svdvals(x)
    return np.linalg.svd(x, compute_uv=False)


class NuclearNorm(Functional):
    r"""Nuclear norm :math:`\|X\|_* = \sum_k \sigma_k(X)` of a matrix or a batch of matrices.

    The matrices are the last two axes of the input; over a batch the norms are
    summed.

    Notes
    -----
    The prox is singular value thresholding, :math:`U \max(\Sigma - \tau, 0) V^T`
    (one batched thin SVD; ``tau`` a scalar or a constant array). The conjugate
    is the indicator of the unit spectral-norm ball, :math:`\sigma_{\max}(Y) \le 1`.
    """

    finite_input = True

    @staticmethod
    def _check(x, where):
        if x.ndim < 2:
            raise ValueError(f"NuclearNorm.{where}: x must have at least 2 dimensions, got shape {tuple(x.shape)}")

    def _call(self, x):
        self._check(x, "__call__")
        s = _svdvals(x.double() if is_torch(x) else x.astype(np.float64, copy=False))
        return sum_value(s)

    def _prox(self, x, tau):
        self._check(x, "prox")
        t = scalar_tau(tau, "NuclearNorm.prox")
        if is_torch(x):
            torch = torch_module()
            u, s, vh = torch.linalg.svd(x, full_matrices=False)
            s = torch.clamp(s - t, min=0)
            return (u * s.unsqueeze(-2)) @ vh
        u, s, vh = np.linalg.svd(x, full_matrices=False)
        s = np.maximum(s - x.dtype.type(t), 0, dtype=x.dtype)
        return ((u * s[..., None, :]) @ vh).astype(x.dtype, copy=False)

    def _conj_call(self, y):
        self._check(y, "conj")
        s = _svdvals(y.double() if is_torch(y) else y.astype(np.float64, copy=False))
        return 0.0 if float(s.max()) <= 1.0 + indicator_tol(y) else math.inf
