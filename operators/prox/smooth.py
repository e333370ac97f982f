"""Smooth terms given by callables: a likelihood, an inner solver's loss, a user's model."""

from __future__ import annotations

from tikhon._core.arrays import is_torch
from tikhon._core.checks import check_callable, check_nonneg, check_positive
from tikhon.operators.prox.base import Functional

__all__ = ["SmoothFunctional", "smooth_functional"]


class SmoothFunctional(Functional):
    """A smooth functional defined by a callable returning its value and gradient.

    Parameters
    ----------
    value_and_grad : callable
        ``value_and_grad(x) -> (value, grad)``: the value (a float, or a 0-d
        tensor) and the gradient (an array or tensor of ``x``'s shape).
    lipschitz : float, optional
        Lipschitz constant of the gradient, where known (proximal methods
        then need no backtracking).
    value : callable, optional
        ``value(x) -> float``, when the value alone is cheaper than both.
    strong_convexity : float
        Modulus of strong convexity (default 0).
    convex : bool
        Whether the function is convex (default True).

    Notes
    -----
    ``grad_with_value`` is True: a solver that evaluates the value at a trial
    point keeps the gradient computed with it, so a term whose value and
    gradient come from one inner solve (a Sinkhorn-backed likelihood) costs
    one solve per evaluated point. It has no proximal map.
    """

    is_smooth = True
    grad_with_value = True

    def __init__(self, value_and_grad, lipschitz=None, *, value=None, strong_convexity=0.0,
                 convex=True):
        where = "smooth_functional"
        self._vg = check_callable(value_and_grad, "value_and_grad", where, allow_none=False)
        self._value = check_callable(value, "value", where)
        self.lipschitz = check_positive(lipschitz, "lipschitz", where, allow_none=True)
        self.strong_convexity = check_nonneg(strong_convexity, "strong_convexity", where)
        self.is_convex = bool(convex)

    def _call(self, x):
        if self._value is not None:
            return self._value(x)
        return self._vg(x)[0]

    def _grad(self, x):
        return self._vg(x)[1]

    def _value_and_grad(self, x):
        value, grad = self._vg(x)
        if tuple(grad.shape) != tuple(x.shape) or is_torch(grad) != is_torch(x):
            raise ValueError(
                f"{self._label()}: value_and_grad returned a gradient of shape {tuple(grad.shape)} "
                f"({type(grad).__name__}) for an input of shape {tuple(x.shape)} ({type(x).__name__})"
            )
        return value, grad

    def _prox(self, x, tau):
        raise NotImplementedError(
            f"{self._label()} has no proximal map: use it as the smooth term of a proximal method"
        )

    def _label(self):
        name = getattr(self._vg, "__name__", "callable")
        return f"smooth_functional({name})"


def smooth_functional(value_and_grad, lipschitz=None, **kwargs):
    """A smooth :class:`~tikhon.operators.prox.Functional` from ``value_and_grad(x) -> (value, grad)``.

    The result runs as the smooth term ``f`` of :func:`~tikhon.solvers.ista`
    and :func:`~tikhon.solvers.fista` (with backtracking when ``lipschitz`` is
    unknown). See :class:`~tikhon.operators.prox.SmoothFunctional` for the keywords.

    Parameters
    ----------
    value_and_grad : callable
        ``value_and_grad(x) -> (value, grad)`` for NumPy arrays (or tensors).
    lipschitz : float, optional
        Lipschitz constant of the gradient; unknown by default.
    **kwargs
        The other keywords of :class:`~tikhon.operators.prox.SmoothFunctional`.

    Returns
    -------
    SmoothFunctional
        The functional, usable wherever a smooth ``f`` is expected.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import L1, smooth_functional
    >>> from tikhon.solvers import fista
    >>> b = np.array([3.0, -0.2, 1.0])
    >>> f = smooth_functional(lambda x: (0.5 * np.sum((x - b) ** 2), x - b), lipschitz=1.0)
    >>> fista(f, 0.5 * L1(), np.zeros(3)).x.round(6)
    array([ 2.5, -0. ,  0.5])
    """
    return SmoothFunctional(value_and_grad, lipschitz, **kwargs)
