"""The Kullback-Leibler divergence: the Poisson negative log-likelihood as a data term."""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import ParamCache, as_like, is_torch, sum_value, torch_module, xp_sqrt, xp_where
from tikhon._core.checks import check_param
from tikhon.operators.prox.base import check_broadcasts_to, indicator_tol
from tikhon.operators.prox.base import Functional

__all__ = ["KullbackLeibler"]


def _xlogy(b, u):
    """``b log u`` with ``0 log u = 0`` (also for ``u = 0``)."""
    if is_torch(b):
        return torch_module().xlogy(b, u)
    from scipy.special import xlogy

    return xlogy(b, u)


class KullbackLeibler(Functional):
    r"""Kullback-Leibler divergence of ``x + r`` from counts ``b`` (Poisson data term).

    .. math::
        f(x) = \sum_i x_i + r_i - b_i \log(x_i + r_i) + b_i \log b_i - b_i,

    with :math:`0 \log 0 = 0`; ``inf`` where :math:`x_i + r_i < 0`, or where
    :math:`x_i + r_i = 0` and :math:`b_i > 0`. The constant terms make
    :math:`f \ge 0` with equality at :math:`x = b - r`.

    Parameters
    ----------
    b : array or tensor
        Nonnegative data (counts), broadcastable to the input.
    background : float or array, optional
        Nonnegative background ``r`` (scatter, dark counts), default 0.

    Notes
    -----
    prox: the positive root of :math:`u^2 + (\tau - x - r) u - \tau b = 0` with
    :math:`u = z + r`, computed without cancellation (``tau`` may be an array,
    entrywise). The conjugate is
    :math:`f^*(y) = \sum_i -b_i \log(1 - y_i) - r_i y_i` for :math:`y < 1`
    (:math:`y_i \le 1` where :math:`b_i = 0`, up to the indicators' relative
    tolerance), ``inf`` otherwise.
    """

    def __init__(self, b, background=0.0):
        self.b = check_param(b, "b", "KullbackLeibler", nonneg=True)
        self.background = check_param(background, "background", "KullbackLeibler", nonneg=True)
        self._b = ParamCache(self.b)
        self._r = ParamCache(self.background)

    def _check_input(self, x, where):
        return check_broadcasts_to(x, self.b, "b", where)

    def _parts(self, x):
        b, r = self._b.get(x), self._r.get(x)
        if isinstance(b, float):
            b = x * 0 + b
        return b, r

    def _call(self, x):
        x = x.double() if is_torch(x) else x.astype(np.float64, copy=False)
        b, r = self._parts(x)
        u = x + r
        if bool((u < 0).any()) or bool(((u == 0) & (b > 0)).any()):
            return math.inf
        val = u - _xlogy(b, u) + _xlogy(b, b) - b
        return sum_value(val)

    def _prox(self, x, tau):
        b, r = self._parts(x)
        t = as_like(tau, x)
        v = x + r - t
        disc = xp_sqrt(v * v + 4 * t * b)
        # v + disc cancels for v << 0: use the conjugate form 4 t b / (2 (disc - v)) there
        pos = v >= 0
        den = xp_where(pos, disc * 0 + 1, disc - v)
        safe = xp_where(den > 0, den, den * 0 + 1)
        u = xp_where(pos, (v + disc) / 2, 2 * t * b / safe)
        return u - r

    def _conj_call(self, y):
        y = y.double() if is_torch(y) else y.astype(np.float64, copy=False)
        b, r = self._parts(y)
        # y <= 1 where b = 0 is a constraint (checked with the indicators' tolerance);
        # y < 1 where b > 0 is the domain of the logarithm
        if bool((y > 1 + indicator_tol(y)).any()) or bool(((y >= 1) & (b > 0)).any()):
            return math.inf
        one_minus = 1 - y
        val = -_xlogy(b, one_minus) - r * y
        return float(val.sum())

    def __repr__(self):
        return "KullbackLeibler(b=...)"
