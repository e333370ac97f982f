"""The Functional protocol: value, proximal map, gradient, convex conjugate.

A member subclasses :class:`Functional` and implements ``_call(x)`` and
``_prox(x, tau)``; ``_grad`` when smooth; ``_conj_call`` when the conjugate's
value has a closed form. The conjugate's prox always comes from the Moreau
identity ``prox_{tau f*}(x) = x - tau prox_{f/tau}(x / tau)``. Scaling
``lam * f``, translation ``f.shift(b)`` and :func:`separable_sum` are generic.
"""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import (
    ParamCache,
    all_finite,
    copy,
    is_scalar,
    is_torch,
    join_flat,
    split_flat,
    to_float,
    torch_module,
    vdot,
)
from tikhon._core.checks import check_functional, check_nonneg, check_real_floating, check_step

__all__ = ["Functional", "ScaledFunctional", "ShiftedFunctional", "Conjugate", "SeparableSum", "separable_sum"]


def any_nonzero(x) -> bool:
    if is_torch(x):
        return bool((x != 0).any())
    return bool(np.any(x != 0))


def indicator_tol(x):
    """Feasibility tolerance of the indicators: relative, and dtype aware.

    ``1e-9`` in float64 and ``1e-4`` in float32 (relative to the scale of the
    constraint); a projected point is always accepted as feasible.
    """
    dt = x.dtype
    if is_torch(x):
        single = dt == torch_module().float32
    else:
        single = np.dtype(dt) == np.float32
    return 1e-4 if single else 1e-9


def scalar_tau(tau, where):
    """Reduce a step to a scalar; an array step must be constant.

    A float or a 0-d tensor is returned as it is (a tensor keeps its graph);
    checking that an array is constant reads it (a device sync for tensors).
    """
    if isinstance(tau, float) or (is_torch(tau) and tau.ndim == 0):
        return tau
    if is_torch(tau):
        lo, hi = float(tau.min()), float(tau.max())
    else:
        lo, hi = float(np.min(tau)), float(np.max(tau))
    if lo != hi:
        raise ValueError(f"{where}: tau must be a scalar (or a constant array) for this functional")
    return lo


def check_broadcasts_to(x, p, name, where):
    """Refuse an input ``x`` that the parameter ``p`` (data, a shift) does not broadcast to.

    Broadcasting the other way would silently return an output of ``p``'s
    shape for a smaller ``x`` (a 0-d ``x``, an empty one): the error names
    both shapes.
    """
    shape = tuple(getattr(p, "shape", ()))
    try:
        ok = np.broadcast_shapes(tuple(x.shape), shape) == tuple(x.shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{where}: x has shape {tuple(x.shape)}, but {name} has shape {shape}")
    return x


def _wrapped_check(f, x, where):
    """The input check of a wrapped functional (a duck-typed one may have none)."""
    check = getattr(f, "_check_input", None)
    return x if check is None else check(x, where)


def _scale_factor(c):
    """A functional's scale: a float ``>= 0``, or a 0-d tensor (a learnable weight, graph kept)."""
    if is_torch(c):
        if c.ndim != 0:
            raise ValueError(f"a functional can only be scaled by a scalar, got a tensor of shape {tuple(c.shape)}")
        value = float(c.detach())
    else:
        c = value = check_nonneg(c, "c", "a functional scaled by c")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"a functional can only be scaled by a finite c >= 0, got {value!r}")
    return c, value


class Functional:
    """A (possibly extended-valued) function with a proximal map.

    Attributes
    ----------
    is_convex : bool
        Convex (solvers relying on convexity may check it).
    is_smooth : bool
        Differentiable with a Lipschitz gradient; ``grad`` is available.
    lipschitz : float or None
        Lipschitz constant of the gradient, where known.
    strong_convexity : float
        Modulus of strong convexity (0 if not strongly convex).
    fixed_step : bool
        The prox ignores ``tau`` (as a learned proximal network does); solvers
        that need ``prox_{tau f}`` for varying ``tau`` refuse such a functional.
    grad_with_value : bool
        Evaluating the value also yields the gradient at no extra cost (one
        shared pass, as for a likelihood computed by an inner solver); solvers
        that need the value at a trial point then keep its gradient too.

    Notes
    -----
    On torch tensors the private maps keep the autograd graph through the
    input, through tensor parameters (weights, data) and through tensor
    steps ``tau`` and scale factors (``theta * f`` with a 0-d tensor
    ``theta``), so that unrolled solver steps can be differentiated.
    """

    is_convex = True
    is_smooth = False
    lipschitz = None
    strong_convexity = 0.0
    fixed_step = False
    grad_with_value = False
    #: the prox factorises its input (an SVD): NaN or inf would fail inside LAPACK
    #: ("SVD did not converge"), so :meth:`prox` refuses them naming ``x``
    finite_input = False

    # -- to implement ---------------------------------------------------------
    def _call(self, x):
        raise NotImplementedError(f"{self._label()} does not implement its value")

    def _prox(self, x, tau):
        raise NotImplementedError(f"{self._label()} does not implement its prox")

    def _grad(self, x):
        raise NotImplementedError(f"{self._label()} is not differentiable")

    def _conj_call(self, x):
        raise NotImplementedError(f"the conjugate of {self._label()} has no closed-form value")

    def _value_and_grad(self, x):
        # members override this when value and gradient share a pass
        return self._call(x), self._grad(x)

    # -- public ---------------------------------------------------------------
    def _check_input(self, x, where):
        """``x`` when this functional's own parameters apply to it (default: any shape)."""
        return x

    def __call__(self, x):
        """Value ``f(x)`` as a float (``inf`` outside the domain)."""
        x = self._check_input(check_real_floating(x, "x", f"{self._label()}.__call__"),
                              f"{self._label()}.__call__")
        if self.finite_input and not all_finite(x):
            # f(x) is nan for a NaN input; an SVD cannot be asked for it
            return math.nan
        return to_float(self._call(x))

    def prox(self, x, tau=1.0):
        """``argmin_z f(z) + ||z - x||^2 / (2 tau)``.

        Parameters
        ----------
        x : array or tensor
        tau : float or array
            Positive step; an array applies entrywise where the functional is
            separable (diagonal preconditioning).

        Returns
        -------
        array or tensor of the same type, shape and dtype as ``x``.
        """
        where = f"{self._label()}.prox"
        x = self._check_input(check_real_floating(x, "x", where), where)
        tau = check_step(tau, where)
        if self.finite_input and not all_finite(x):
            raise ValueError(f"{where}: x contains NaN or inf")
        return self._prox(x, tau)

    def grad(self, x):
        """Gradient of a smooth functional."""
        if not self.is_smooth:
            raise NotImplementedError(f"{self._label()} is not smooth: use its prox")
        x = self._check_input(check_real_floating(x, "x", f"{self._label()}.grad"), f"{self._label()}.grad")
        return self._grad(x)

    def value_and_grad(self, x):
        """Value and gradient of a smooth functional, ``(f(x), grad f(x))``.

        The value is a float for NumPy input and a 0-d tensor for a tensor
        (the graph kept); members whose value and gradient share a pass
        compute both at once.
        """
        if not self.is_smooth:
            raise NotImplementedError(f"{self._label()} is not smooth: use its prox")
        x = self._check_input(check_real_floating(x, "x", f"{self._label()}.value_and_grad"),
                              f"{self._label()}.value_and_grad")
        value, grad = self._value_and_grad(x)
        return (value if is_torch(value) else float(value)), grad

    @property
    def conj(self):
        """The convex conjugate ``f*`` (its prox by the Moreau identity)."""
        return Conjugate(self)

    def shift(self, b):
        """The translated functional ``x -> f(x - b)``."""
        return ShiftedFunctional(self, b)

    def __mul__(self, c):
        """``c * f`` for a real ``c >= 0`` or a 0-d tensor (a learnable weight)."""
        if is_scalar(c):
            return ScaledFunctional(self, c)
        return NotImplemented

    __rmul__ = __mul__

    def _label(self):
        return type(self).__name__

    def __repr__(self):
        return f"{self._label()}()"


class ScaledFunctional(Functional):
    """``c * f`` for a scalar ``c >= 0``: a float, or a 0-d tensor whose graph is kept.

    The flags (``lipschitz``, ``strong_convexity``) use the value of ``c`` at
    construction; the maps use ``c`` itself, so a tensor ``c`` that requires
    grad receives gradients through values, proxes and gradients.

    Parameters
    ----------
    f : Functional
        The functional to scale.
    c : float or torch.Tensor
        The scale, ``>= 0``.
    """

    def __init__(self, f, c):
        check_functional(f, "f", "ScaledFunctional")
        c, value = _scale_factor(c)
        if f.fixed_step:
            raise ValueError(
                f"{f._label()} has a fixed step (its prox ignores tau), so it cannot be scaled"
            )
        self.f, self.c = f, c
        self._zero = value == 0.0 and not is_torch(c)
        self.is_convex = f.is_convex
        self.is_smooth = f.is_smooth
        self.grad_with_value = f.grad_with_value
        self.lipschitz = None if f.lipschitz is None else value * f.lipschitz
        self.strong_convexity = value * f.strong_convexity
        self.finite_input = getattr(f, "finite_input", False)

    def _check_input(self, x, where):
        return _wrapped_check(self.f, x, where)

    def _call(self, x):
        if self._zero:
            return 0.0
        return self.c * self.f._call(x)

    def _prox(self, x, tau):
        if self._zero:
            return copy(x)
        return self.f._prox(x, tau * self.c)

    def _grad(self, x):
        return self.c * self.f._grad(x)

    def _value_and_grad(self, x):
        value, grad = self.f._value_and_grad(x)
        return self.c * value, self.c * grad

    @property
    def conj(self):
        if self._zero or not self.f.is_convex:
            return Conjugate(self)
        # (c f)* = c f*( . / c): keeps the closed-form conjugate of f (e.g. the
        # projection of L21's dual ball) instead of the generic Moreau route
        return Dilated(self.f.conj, self.c)

    def _conj_call(self, x):
        if self._zero:
            # the conjugate of the zero function is the indicator of {0}
            return 0.0 if not any_nonzero(x) else float("inf")
        # (c f)*(y) = c f*(y / c)
        return self.c * self.f._conj_call(x / self.c)

    def _label(self):
        return f"{_scale_factor(self.c)[1]:g} * {self.f._label()}"


class Dilated(Functional):
    """``y -> c g(y / c)`` for ``c > 0`` (the conjugate of ``c * g*``).

    Its prox is ``c * prox_{(tau / c) g}(x / c)``.
    """

    def __init__(self, g, c):
        c, value = _scale_factor(c)
        self.g, self.c = g, c
        self.is_convex = g.is_convex
        self.is_smooth = g.is_smooth
        self.lipschitz = None if g.lipschitz is None else g.lipschitz / value
        self.strong_convexity = g.strong_convexity / value

    @property
    def conj(self):
        return ScaledFunctional(self.g.conj, self.c)

    def _call(self, y):
        return self.c * self.g._call(y / self.c)

    def _prox(self, x, tau):
        return self.c * self.g._prox(x / self.c, tau / self.c)

    def _grad(self, y):
        return self.g._grad(y / self.c)

    def _conj_call(self, x):
        return self.c * self.g._conj_call(x)

    def _label(self):
        c = _scale_factor(self.c)[1]
        return f"{c:g} * {self.g._label()}(. / {c:g})"


class ShiftedFunctional(Functional):
    """``x -> f(x - b)``.

    Parameters
    ----------
    f : Functional
        The functional to shift.
    b : array
        The shift (finite, real).
    """

    def __init__(self, f, b):
        if not is_torch(b):
            b = np.asarray(b)
            if b.dtype.kind not in "fiu":
                raise TypeError(f"shift: b must be a real array, got dtype {b.dtype}")
        if not all_finite(b):
            raise ValueError("shift: b must be finite")
        self.f = f
        self.b = b
        # b is cast once per input dtype/device, so float32 and torch inputs keep their type
        self._b = ParamCache(b)
        self.is_convex = f.is_convex
        self.is_smooth = f.is_smooth
        self.lipschitz = f.lipschitz
        self.strong_convexity = f.strong_convexity
        self.fixed_step = f.fixed_step
        self.finite_input = getattr(f, "finite_input", False)

    def _check_input(self, x, where):
        return _wrapped_check(self.f, check_broadcasts_to(x, self.b, "the shift b", where), where)

    def _call(self, x):
        return self.f._call(x - self._b.get(x))

    def _prox(self, x, tau):
        b = self._b.get(x)
        return b + self.f._prox(x - b, tau)

    def _grad(self, x):
        return self.f._grad(x - self._b.get(x))

    def _conj_call(self, x):
        # g(x) = f(x - b)  =>  g*(y) = f*(y) + <y, b>
        return self.f._conj_call(x) + vdot(x, self._b.get(x))

    def _label(self):
        return f"{self.f._label()}.shift(b)"


class Conjugate(Functional):
    """The convex conjugate ``f*``; its prox comes from the Moreau identity.

    Parameters
    ----------
    f : Functional
        A convex functional without a fixed step.
    """

    def __init__(self, f):
        check_functional(f, "f", "Conjugate")
        if not f.is_convex:
            raise ValueError(f"the Moreau identity needs a convex functional; {f._label()} is not")
        if f.fixed_step:
            raise ValueError(f"{f._label()} has a fixed step; its conjugate's prox is undefined")
        self.f = f
        # f* is smooth with L = 1/mu when f is mu-strongly convex, and vice versa
        self.is_smooth = f.strong_convexity > 0
        self.lipschitz = 1.0 / f.strong_convexity if f.strong_convexity > 0 else None
        self.strong_convexity = 1.0 / f.lipschitz if (f.is_smooth and f.lipschitz) else 0.0
        # the conjugate's prox goes through f's (Moreau)
        self.finite_input = getattr(f, "finite_input", False)

    @property
    def conj(self):
        return self.f

    def _check_input(self, x, where):
        return _wrapped_check(self.f, x, where)

    def _call(self, x):
        return self.f._conj_call(x)

    def _prox(self, x, tau):
        return x - tau * self.f._prox(x / tau, 1.0 / tau)

    def _grad(self, x):
        # members whose conjugate is smooth in closed form override conj instead
        raise NotImplementedError(f"the gradient of {self._label()} is not available")

    def _conj_call(self, x):
        return self.f._call(x)

    def _label(self):
        return f"{self.f._label()}.conj"


class SeparableSum(Functional):
    """``F(y) = sum_i f_i(y_i)`` over the blocks of a flat vector ``y``.

    Parameters
    ----------
    functionals : sequence of Functional
        One functional per block.
    shapes : sequence of tuple of int
        The shape of each block, in order (see :func:`separable_sum`).
    """

    def __init__(self, functionals, shapes):
        functionals = list(functionals)
        shapes = [tuple(int(n) for n in s) for s in shapes]
        if len(functionals) != len(shapes):
            raise ValueError(
                f"separable_sum: {len(functionals)} functionals but {len(shapes)} block shapes"
            )
        for f in functionals:
            if not isinstance(f, Functional):
                raise TypeError(f"separable_sum: expected Functionals, got {type(f).__name__}")
        self.functionals = functionals
        self.shapes = shapes
        sizes = [math.prod(s) for s in shapes]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.size = int(self._offsets[-1])
        self.is_convex = all(f.is_convex for f in functionals)
        self.is_smooth = all(f.is_smooth for f in functionals)
        lips = [f.lipschitz for f in functionals]
        self.lipschitz = max(lips) if self.is_smooth and None not in lips else None
        self.strong_convexity = min(f.strong_convexity for f in functionals)
        self.fixed_step = any(f.fixed_step for f in functionals)

    def _blocks(self, y):
        if tuple(y.shape) != (self.size,):
            raise ValueError(
                f"separable_sum: expected a flat vector of shape ({self.size},), got {tuple(y.shape)}"
            )
        return split_flat(y, self._offsets, self.shapes)

    def _tau_blocks(self, tau):
        if is_scalar(tau):
            return [tau] * len(self.shapes)
        return self._blocks(tau)

    def _call(self, y):
        return sum(f._call(b) for f, b in zip(self.functionals, self._blocks(y)))

    def _prox(self, y, tau):
        return join_flat(
            [f._prox(b, t) for f, b, t in zip(self.functionals, self._blocks(y), self._tau_blocks(tau))]
        )

    def _grad(self, y):
        return join_flat([f._grad(b) for f, b in zip(self.functionals, self._blocks(y))])

    def _conj_call(self, y):
        return sum(f._conj_call(b) for f, b in zip(self.functionals, self._blocks(y)))

    @property
    def conj(self):
        return SeparableSum([f.conj for f in self.functionals], self.shapes)

    def _label(self):
        return "separable_sum([" + ", ".join(f._label() for f in self.functionals) + "])"


def separable_sum(functionals, shapes):
    """Sum of functionals acting on the blocks of a stacked (flat) vector.

    Parameters
    ----------
    functionals : sequence of Functional
    shapes : sequence of tuple, or a ``Stacked`` operator
        Shapes of the blocks; passing ``stack([A, B])`` uses its block shapes,
        so ``separable_sum([f, g], K)`` matches the output of ``K = stack([A, B])``.

    Returns
    -------
    SeparableSum
    """
    block_shapes = getattr(shapes, "block_shapes", None)
    return SeparableSum(functionals, shapes if block_shapes is None else block_shapes)
