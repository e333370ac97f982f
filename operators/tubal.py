"""The t-product (Kilmer and Martin) by a fixed third-order tensor."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.fft

from tikhon._core.arrays import is_torch, torch_module
from .base import LinearOperator
from .basic import _as_numpy_dtype, _as_torch, _real_float_array

__all__ = ["TubalProduct"]


class TubalProduct(LinearOperator):
    """``X -> A * X``, the t-product by a fixed real tensor ``A``.

    Parameters
    ----------
    A : array_like of shape (n1, n2, n3)
        Finite real tensor.
    n_cols : int, optional
        Number of lateral slices of the input: inputs have shape
        ``(n2, n_cols, n3)`` and outputs ``(n1, n_cols, n3)``.

    Notes
    -----
    Kilmer and Martin's t-product is ``A * X = fold(bcirc(A) unfold(X))``, where
    ``bcirc(A)`` is the block-circulant matrix whose block ``(i, j)`` is the
    frontal slice ``A[:, :, (i - j) mod n3]``: a circular convolution along the
    third (tube) axis with matrix products across the first two. A real FFT
    along the tube axis block-diagonalises it, so each application is one FFT,
    ``n3 // 2 + 1`` facewise matrix products (one batched ``matmul``) and an
    inverse FFT. The adjoint is the t-product by the t-transpose of ``A``
    (facewise conjugate transposes in the Fourier domain).

    References
    ----------
    M. E. Kilmer and C. D. Martin, "Factorization strategies for third-order
    tensors", Linear Algebra Appl. 435 (2011) 641-658.
    """

    def __init__(self, A, n_cols=1):
        A = _real_float_array(A, "A", "TubalProduct")
        if A.ndim != 3:
            raise ValueError(f"TubalProduct: A must be a 3-D tensor (n1, n2, n3), got shape {A.shape}")
        if min(A.shape) == 0:
            raise ValueError(f"TubalProduct: A must have positive dimensions, got {A.shape}")
        if not isinstance(n_cols, numbers.Integral) or isinstance(n_cols, bool):
            raise TypeError(f"TubalProduct: n_cols must be an int, got {n_cols!r}")
        if n_cols < 1:
            raise ValueError(f"TubalProduct: n_cols must be >= 1, got {n_cols}")
        n1, n2, n3 = A.shape
        super().__init__((n2, int(n_cols), n3), (n1, int(n_cols), n3))
        self.A = A
        self.n_cols = int(n_cols)
        # faces first, so the facewise products are one batched matmul
        Ahat = scipy.fft.rfft(A.astype(np.float64), axis=2)
        self._faces = np.ascontiguousarray(Ahat.transpose(2, 0, 1))  # (nf, n1, n2)
        self._faces_h = np.ascontiguousarray(np.conj(Ahat).transpose(2, 1, 0))  # (nf, n2, n1)
        self._cache = {}

    def _apply(self, v, faces, name):
        n3 = self.in_shape[2]
        if is_torch(v):
            torch = torch_module()
            F = _as_torch(faces, v, self._cache, complex_=True, name=name)
            V = torch.fft.rfft(v, dim=2).permute(2, 0, 1)  # (nf, rows, n_cols)
            W = torch.matmul(F, V).permute(1, 2, 0)
            return torch.fft.irfft(W, n=n3, dim=2).contiguous()
        cdtype = np.complex64 if v.dtype == np.float32 else np.complex128
        F = _as_numpy_dtype(faces, cdtype, self._cache, name=name)
        V = scipy.fft.rfft(v, axis=2).transpose(2, 0, 1)
        W = np.matmul(F, V).transpose(1, 2, 0)
        return np.ascontiguousarray(scipy.fft.irfft(W, n=n3, axis=2))

    def _forward(self, x):
        return self._apply(x, self._faces, "F")

    def _adjoint(self, y):
        return self._apply(y, self._faces_h, "Fh")

    def norm(self, *args, **kwargs):
        """Exactly the largest singular value over the Fourier-domain faces."""
        return float(np.linalg.svd(self._faces, compute_uv=False).max())

    def _label(self):
        n1, n2, n3 = self.A.shape
        return f"TubalProduct[{n1}x{n2}x{n3}]"
