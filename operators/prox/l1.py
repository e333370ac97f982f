"""Sparsity penalties: the (weighted) l1 norm and the l0 pseudo-norm."""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import ParamCache, as_like, is_torch, torch_module, xp_maximum0, xp_sign, xp_where
from tikhon._core.checks import check_param
from tikhon.operators.prox.base import Functional

__all__ = ["L1", "L0"]


class L1(Functional):
    r"""Weighted l1 norm :math:`f(x) = \sum_i w_i |x_i|`.

    Parameters
    ----------
    weights : float, array or tensor, optional
        Nonnegative weights broadcastable to the input (default 1).

    Notes
    -----
    The prox is the soft threshold
    :math:`\mathrm{sign}(x)\max(|x| - \tau w, 0)` (``tau`` may be an array,
    entrywise). The conjugate is the indicator of the box
    :math:`|y_i| \le w_i`, returned in closed form by :attr:`conj` as a
    :class:`~tikhon.operators.prox.Box`.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import L1
    >>> L1().prox(np.array([-2.0, 0.5, 3.0]), 1.0)
    array([-1.,  0.,  2.])
    """

    is_convex = True
    is_smooth = False

    def __init__(self, weights=None):
        w = check_param(weights, "weights", "L1", nonneg=True, allow_none=True)
        self.weights = 1.0 if w is None else w
        self._w = ParamCache(self.weights)

    def _call(self, x):
        w = self._w.get(x)
        return (w * abs(x)).sum()

    def _prox(self, x, tau):
        thr = as_like(tau, x) * self._w.get(x)
        return xp_sign(x) * xp_maximum0(abs(x) - thr)

    def _conj_call(self, y):
        return self.conj._call(y)

    @property
    def conj(self):
        """Indicator of the box ``|y| <= w`` (prox: clipping); its ``conj`` is this L1."""
        return _L1Conjugate(self)

    def __repr__(self):
        return "L1()" if isinstance(self.weights, float) and self.weights == 1.0 else "L1(weights=...)"


class _L1Conjugate(Functional):
    """Indicator of ``|y| <= w`` whose conjugate is the l1 norm it came from."""

    is_convex = True

    def __init__(self, f):
        from tikhon.operators.prox.indicators import Box

        self.f = f
        self.box = Box(-f.weights, f.weights)

    @property
    def conj(self):
        return self.f

    def _call(self, y):
        return self.box._call(y)

    def _prox(self, y, tau):
        return self.box._prox(y, tau)

    def _conj_call(self, x):
        return self.f._call(x)

    def _label(self):
        return "L1.conj"


class L0(Functional):
    r"""The l0 pseudo-norm :math:`f(x) = \#\{i : x_i \ne 0\}` (not convex).

    Notes
    -----
    The prox is the hard threshold: keep :math:`x_i` where
    :math:`x_i^2 > 2\tau`, else 0 (ties at :math:`x_i^2 = 2\tau` go to 0).
    ``tau`` may be an array (entrywise). There is no useful conjugate
    (``conj`` raises, since the Moreau identity needs convexity).
    """

    is_convex = False
    is_smooth = False

    def _call(self, x):
        if is_torch(x):
            return int(torch_module().count_nonzero(x))
        return int(np.count_nonzero(x))

    def _prox(self, x, tau):
        keep = x * x > 2 * as_like(tau, x)
        return xp_where(keep, x, x * 0)
