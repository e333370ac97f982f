"""Convolution with a fixed kernel (a blur), by FFT, with zero or periodic boundary."""

from __future__ import annotations

import numpy as np
import scipy.fft

from tikhon._core.arrays import is_torch, torch_module
from .base import LinearOperator
from .basic import _as_numpy_dtype, _as_torch, _real_float_array
from .gradient import _check_shape

__all__ = ["Convolution"]

_BOUNDARIES = ("zero", "periodic")


class Convolution(LinearOperator):
    """Same-size convolution ``x -> kernel * x`` computed with FFTs.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the input and output arrays.
    kernel : array_like
        Finite real kernel with ``kernel.ndim == len(shape)``. Its centre is the
        entry at index ``k // 2`` along each axis (``k`` the kernel's length
        there): a kernel that is 1 at its centre and 0 elsewhere is the identity.
    boundary : {"zero", "periodic"}
        ``"zero"``: the image is extended by zeros (the central ``shape``-sized
        part of the full linear convolution); ``"periodic"``: the image wraps
        around (circular convolution; the kernel must fit in ``shape``).

    Notes
    -----
    ``y[n] = sum_m kernel[m] x[n + c - m]`` with ``c = k // 2`` per axis and
    ``x`` read as 0 (zero boundary) or periodically outside the image. The
    adjoint is the correlation ``(A^T y)[j] = sum_n y[n] kernel[n - j + c]``.
    For odd kernel lengths this matches ``scipy.ndimage.convolve`` with
    ``mode="constant"`` (zero) or ``mode="wrap"`` (periodic), and
    ``scipy.signal.convolve(x, kernel, mode="same")`` for the zero boundary.

    The kernel's transfer function is computed once, on an FFT grid padded to
    a fast length ``>= n + k - 1`` for the zero boundary (so the circular
    product equals the linear one) and on the image grid for the periodic
    boundary; each application is one real FFT, a product and an inverse FFT.
    On torch the transfer function is cached per ``(device, dtype)``.
    """

    def __init__(self, shape, kernel, boundary="zero"):
        shape = _check_shape(shape, "Convolution")
        kernel = _real_float_array(kernel, "kernel", "Convolution")
        if kernel.ndim != len(shape):
            raise ValueError(
                f"Convolution: kernel must have {len(shape)} axes like shape {shape}, "
                f"got kernel of shape {kernel.shape}"
            )
        if kernel.size == 0:
            raise ValueError("Convolution: kernel must not be empty")
        if boundary not in _BOUNDARIES:
            raise ValueError(f"Convolution: boundary must be one of {_BOUNDARIES}, got {boundary!r}")
        if boundary == "periodic" and any(k > n for k, n in zip(kernel.shape, shape)):
            raise ValueError(
                f"Convolution: with a periodic boundary the kernel {kernel.shape} must fit "
                f"in shape {shape}"
            )
        super().__init__(shape, shape)
        self.kernel = kernel
        self.boundary = boundary
        self.center = tuple(k // 2 for k in kernel.shape)
        if boundary == "zero":
            self.fft_shape = tuple(
                scipy.fft.next_fast_len(n + k - 1, real=True) for n, k in zip(shape, kernel.shape)
            )
        else:
            self.fft_shape = shape
        # kernel entry m sits at (m - c) mod L, so the product needs no shift
        # and the output is the leading shape-sized block of the FFT grid
        placed = np.zeros(self.fft_shape)
        idx = np.ix_(*[(np.arange(k) - c) % L for k, c, L in zip(kernel.shape, self.center, self.fft_shape)])
        placed[idx] = kernel
        self.transfer = scipy.fft.rfftn(placed)
        self._transfer_conj = np.conj(self.transfer)
        self._crop = tuple(slice(0, n) for n in shape)
        self._cache = {}

    def _multiply(self, v, transfer, name):
        axes = tuple(range(v.ndim))
        if is_torch(v):
            torch = torch_module()
            H = _as_torch(transfer, v, self._cache, complex_=True, name=name)
            V = torch.fft.rfftn(v, s=self.fft_shape, dim=axes)
            out = torch.fft.irfftn(V * H, s=self.fft_shape, dim=axes)
            if self.boundary == "zero":
                out = out[self._crop].contiguous()
            return out
        cdtype = np.complex64 if v.dtype == np.float32 else np.complex128
        H = _as_numpy_dtype(transfer, cdtype, self._cache, name=name)
        V = scipy.fft.rfftn(v, s=self.fft_shape, axes=axes)
        V *= H
        out = scipy.fft.irfftn(V, s=self.fft_shape, axes=axes, overwrite_x=True)
        if self.boundary == "zero":
            out = np.ascontiguousarray(out[self._crop])
        return out

    def _forward(self, x):
        return self._multiply(x, self.transfer, "H")

    def _adjoint(self, y):
        return self._multiply(y, self._transfer_conj, "Hc")

    def norm(self, *args, **kwargs):
        """The operator norm: exact ``max |H|`` when periodic, power iteration otherwise."""
        if self.boundary == "periodic":
            return float(np.abs(self.transfer).max())
        return super().norm(*args, **kwargs)

    def abs(self):
        """The convolution by ``|kernel|`` with the same boundary."""
        return Convolution(self.in_shape, np.abs(self.kernel), self.boundary)

    def _label(self):
        return f"Convolution[kernel {self.kernel.shape}, {self.boundary}]"
