"""The Sobolev weight: the Fourier multiplier (1 + |xi|^2)^(s/2) on a periodic grid."""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.fft

from tikhon._core.arrays import is_torch, torch_module
from .base import LinearOperator
from .basic import _as_numpy_dtype, _as_torch
from .gradient import _check_shape, _check_spacing

__all__ = ["SobolevWeight"]


class SobolevWeight(LinearOperator):
    """Fourier multiplier ``x -> F^{-1}[(1 + |xi|^2)^(s/2) F x]`` (periodic).

    ``||SobolevWeight(shape, s) x||_2`` is the discrete H^s norm of ``x``
    (H^{-s} for negative ``s``); ``sobolev_fit`` uses it as a data-fidelity
    weight and its inverse (``-s``) as a preconditioner.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the input and output arrays.
    s : float
        Any real order (negative orders smooth, positive ones sharpen).
    spacing : float or sequence of float, optional
        Grid spacing ``h`` per axis (or shared).

    Notes
    -----
    The frequencies are those of the periodic DFT,
    ``xi_a = 2 pi k_a / (n_a h_a)`` with ``k_a`` the signed DFT index
    (``scipy.fft.fftfreq``). The multiplier is real and even in ``xi``, so the
    operator is real, symmetric (self-adjoint) and positive definite; its norm
    is ``max (1 + |xi|^2)^(s/2)`` (returned exactly by :meth:`norm`) and its
    inverse is ``SobolevWeight(shape, -s, spacing)``. Products are computed
    with real FFTs over all axes.
    """

    def __init__(self, shape, s, spacing=1.0):
        shape = _check_shape(shape, "SobolevWeight")
        if not isinstance(s, numbers.Real) or isinstance(s, bool):
            raise TypeError(f"SobolevWeight: s must be a real number, got {s!r}")
        s = float(s)
        if not math.isfinite(s):
            raise ValueError(f"SobolevWeight: s must be finite, got {s}")
        super().__init__(shape, shape)
        self.s = s
        self.spacing = _check_spacing(spacing, len(shape), "SobolevWeight")
        xi2 = np.zeros([1] * len(shape))
        for a, (n, h) in enumerate(zip(shape, self.spacing)):
            # the last axis holds only the non-negative half in a real FFT
            f = scipy.fft.rfftfreq(n, d=h) if a == len(shape) - 1 else scipy.fft.fftfreq(n, d=h)
            f = (2 * np.pi * f) ** 2
            xi2 = xi2 + f.reshape([-1 if b == a else 1 for b in range(len(shape))])
        self.multiplier = (1.0 + xi2) ** (s / 2)
        self._cache = {}

    def _forward(self, x):
        axes = tuple(range(x.ndim))
        if is_torch(x):
            torch = torch_module()
            w = _as_torch(self.multiplier, x, self._cache, name="w")
            X = torch.fft.rfftn(x, dim=axes)
            return torch.fft.irfftn(X * w, s=self.in_shape, dim=axes)
        w = _as_numpy_dtype(self.multiplier, x.dtype, self._cache, name="w")
        X = scipy.fft.rfftn(x, axes=axes)
        X *= w
        return scipy.fft.irfftn(X, s=self.in_shape, axes=axes, overwrite_x=True)

    _adjoint = _forward

    def norm(self, *args, **kwargs):
        """Exactly ``max (1 + |xi|^2)^(s/2)``."""
        return float(self.multiplier.max())

    def inverse(self):
        """The inverse operator, ``SobolevWeight(shape, -s, spacing)``."""
        return SobolevWeight(self.in_shape, -self.s, self.spacing)

    def _label(self):
        return f"SobolevWeight[s={self.s:g}]"
