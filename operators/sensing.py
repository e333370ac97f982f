"""Gaussian sensing: m random linear measurements of an N-d array."""

from __future__ import annotations

import math
import numbers

import numpy as np

from tikhon._core.checks import check_positive_int

from .basic import MatrixOperator
from .gradient import _check_shape

__all__ = ["GaussianSensing"]


class GaussianSensing(MatrixOperator):
    """``x -> G vec(x)`` with ``G`` an ``m x n`` matrix of i.i.d. ``N(0, 1/m)`` entries.

    The measurement operator of compressed sensing and low-rank recovery: it
    takes arrays of any ``shape`` (``n = prod(shape)`` entries, flattened in
    C order) to ``m`` measurements. With variance ``1/m``,
    ``E[G^T G] = I``, so ``E ||G x||^2 = ||x||^2``.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the inputs (e.g. ``(n1, n2, n3)`` for a third-order tensor).
    m : int
        Number of measurements (the output shape is ``(m,)``).
    rng : int or numpy.random.Generator
        Seed or generator of the matrix (required: the operator is random).

    Notes
    -----
    A :class:`MatrixOperator` with ``in_shape=shape`` and a dense
    ``float64`` matrix, so it has the same NumPy/torch behaviour, caching and
    matched adjoint; ``norm()`` is computed by power iteration (about
    ``1 + sqrt(n / m)`` for large sizes).
    """

    def __init__(self, shape, m, rng):
        shape = _check_shape(shape, "GaussianSensing")
        m = check_positive_int(m, "m", "GaussianSensing")
        if isinstance(rng, bool) or not isinstance(rng, (numbers.Integral, np.random.Generator)):
            raise TypeError(f"GaussianSensing: rng must be an int seed or a numpy.random.Generator, "
                            f"got {rng!r}")
        gen = np.random.default_rng(rng)
        G = gen.standard_normal((m, math.prod(shape))) / math.sqrt(m)
        super().__init__(G, in_shape=shape)
        self.m = m

    def _label(self):
        return f"GaussianSensing[{self.m} of {self.in_shape}]"
