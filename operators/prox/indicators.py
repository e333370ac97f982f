"""Indicator functions of convex sets; their prox is the Euclidean projection.

Every indicator is 0 on its set and ``inf`` outside. Membership is tested with
a small relative tolerance (``1e-9`` in float64, ``1e-4`` in float32, relative
to the scale of the constraint, see
:func:`~tikhon.operators.prox.base.indicator_tol`) so that a
projected point always counts as feasible despite rounding. The prox ignores
``tau`` (a projection does not depend on the step), but ``tau`` is still
validated.
"""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import (
    ParamCache,
    copy,
    is_torch,
    norm,
    to_host,
    torch_module,
    xp_clip,
    xp_maximum0,
    xp_sign,
    xp_where,
)
from tikhon._core.checks import check_axis, check_param
from tikhon.operators.prox.base import Functional, indicator_tol

__all__ = ["NonNegative", "Box", "Simplex", "L1Ball", "L2Ball", "Zero"]


def _all(cond):
    return bool(cond.all()) if hasattr(cond, "all") else bool(cond)


def _sum64(x, axis=None):
    """Sum in float64 (tolerance checks must not drown in float32 rounding)."""
    if is_torch(x):
        x = x.double()
        return x.sum() if axis is None else x.sum(dim=axis)
    return np.sum(x, axis=axis, dtype=np.float64)


class NonNegative(Functional):
    """Indicator of the nonnegative orthant ``{x : x >= 0}``; prox ``max(x, 0)``."""

    def _call(self, x):
        return 0.0 if _all(x >= -indicator_tol(x)) else math.inf

    def _prox(self, x, tau):
        return xp_maximum0(x)

    def _conj_call(self, y):
        # the conjugate is the indicator of the nonpositive orthant
        return 0.0 if _all(y <= indicator_tol(y)) else math.inf


class Box(Functional):
    """Indicator of the box ``{x : lower <= x <= upper}``; prox = clipping.

    Parameters
    ----------
    lower, upper : float, array or tensor, optional
        Bounds broadcastable to the input; ``None`` means unbounded on that
        side. ``lower`` may contain ``-inf`` and ``upper`` ``+inf``; NaN, or
        ``lower > upper`` anywhere, raises ValueError.
    """

    def __init__(self, lower=None, upper=None):
        lo = check_param(lower, "lower", "Box", allow_inf=True, allow_none=True)
        hi = check_param(upper, "upper", "Box", allow_inf=True, allow_none=True)
        if lo is not None and _any_value(lo, math.inf):
            raise ValueError("Box: lower must not contain +inf")
        if hi is not None and _any_value(hi, -math.inf):
            raise ValueError("Box: upper must not contain -inf")
        if lo is not None and hi is not None:
            lo_np, hi_np = to_host(lo), to_host(hi)
            try:
                ok = np.all(lo_np <= hi_np)
            except ValueError as exc:
                raise ValueError("Box: lower and upper must be broadcastable") from exc
            if not ok:
                raise ValueError("Box: lower must be <= upper everywhere")
        self.lower, self.upper = lo, hi
        self._lo, self._hi = ParamCache(lo), ParamCache(hi)

    def _call(self, x):
        tol = indicator_tol(x)
        lo, hi = self._lo.get(x), self._hi.get(x)
        ok = True
        if lo is not None:
            ok = _all(x >= lo - tol * (1 + abs(lo)))
        if ok and hi is not None:
            ok = _all(x <= hi + tol * (1 + abs(hi)))
        return 0.0 if ok else math.inf

    def _prox(self, x, tau):
        lo, hi = self._lo.get(x), self._hi.get(x)
        if lo is None and hi is None:
            return copy(x)
        if is_torch(x) and (isinstance(lo, float) or isinstance(hi, float)):
            # torch.clamp wants both bounds as tensors or both as numbers
            if lo is not None and hi is not None and isinstance(lo, float) != isinstance(hi, float):
                lo = torch_module().as_tensor(lo, dtype=x.dtype, device=x.device)
                hi = torch_module().as_tensor(hi, dtype=x.dtype, device=x.device)
        return xp_clip(x, lo, hi)

    def _conj_call(self, y):
        # support function: sum_i max(upper_i y_i, lower_i y_i); 0 * inf counts as 0
        lo, hi = self._lo.get(y), self._hi.get(y)
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        pos = xp_maximum0(y)
        neg = y - pos
        with np.errstate(invalid="ignore"):
            up = xp_where(pos > 0, hi * pos, pos * 0)
            dn = xp_where(neg < 0, lo * neg, neg * 0)
        return float(_sum64(up) + _sum64(dn))


def _any_value(p, v):
    if isinstance(p, float):
        return p == v
    if is_torch(p):
        return bool((p == v).any())
    return bool(np.any(p == v))


def _check_radius(radius, where):
    r = check_param(radius, "radius", where, positive=True)
    if not isinstance(r, float):
        raise TypeError(f"{where}: radius must be a scalar")
    return r


def project_simplex(x, radius=1.0, axis=None):
    """Exact Euclidean projection onto ``{z >= 0, sum z = radius}``.

    Sorting-based (Held, Wolfe and Crowder 1974; Duchi et al. 2008; Condat 2016):
    with ``u`` sorted in decreasing order, ``rho`` is the number of ``j`` with
    ``u_j > (sum_{i<=j} u_i - radius) / j`` and the threshold is
    ``theta = (sum_{i<=rho} u_i - radius) / rho``; then ``z = max(x - theta, 0)``.
    O(n log n), vectorised over a batch when ``axis`` is given (the projection
    acts along ``axis`` independently for every other index).

    Parameters
    ----------
    x : array or tensor
    radius : float
    axis : int or None
        ``None`` projects the whole (flattened) array.

    Returns
    -------
    array or tensor like ``x``.
    """
    if axis is None:
        return project_simplex(x.reshape(-1), radius, axis=0).reshape(x.shape)
    if x.shape[axis] == 0:
        return copy(x)
    if is_torch(x):
        torch = torch_module()
        v = torch.movedim(x, axis, -1)
        u = torch.sort(v, dim=-1, descending=True).values
        css = torch.cumsum(u.double(), dim=-1)
        k = torch.arange(1, v.shape[-1] + 1, dtype=torch.float64, device=x.device)
        rho = ((u.double() - (css - radius) / k) > 0).sum(dim=-1, keepdim=True).clamp(min=1)
        theta = (torch.gather(css, -1, rho - 1) - radius) / rho.double()
        z = torch.clamp(v - theta.to(x.dtype), min=0)
        return torch.movedim(z, -1, axis)
    v = np.moveaxis(x, axis, -1)
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1, dtype=np.float64)
    k = np.arange(1, v.shape[-1] + 1, dtype=np.float64)
    # the condition holds on a prefix of the sorted entries, so counting gives rho
    rho = np.maximum(np.count_nonzero(u - (css - radius) / k > 0, axis=-1), 1)[..., None]
    theta = (np.take_along_axis(css, rho - 1, axis=-1) - radius) / rho
    z = np.maximum(v - theta.astype(x.dtype), 0, dtype=x.dtype)
    return np.moveaxis(z, -1, axis)


class Simplex(Functional):
    """Indicator of the scaled simplex ``{x >= 0, sum x = radius}``.

    Parameters
    ----------
    radius : float
        Positive total mass.
    axis : int or None
        ``None``: one simplex over the whole array. An int: a batch of simplices,
        the sum running along ``axis`` (e.g. rows of a transport plan).

    Notes
    -----
    The prox is the exact sorting-based projection (:func:`project_simplex`,
    O(n log n)). The conjugate's value is ``radius * max(y)`` (summed over the
    batch).
    """

    def __init__(self, radius=1.0, axis=None):
        self.radius = _check_radius(radius, "Simplex")
        self.axis = None if axis is None else check_axis(axis, None, "axis", "Simplex")

    def _call(self, x):
        tol = indicator_tol(x)
        if not _all(x >= -tol * self.radius):
            return math.inf
        s = _sum64(x, self.axis)
        err = abs(s - self.radius)
        return 0.0 if _all(err <= tol * self.radius) else math.inf

    def _prox(self, x, tau):
        return project_simplex(x, self.radius, self.axis)

    def _conj_call(self, y):
        if self.axis is None:
            return self.radius * float(y.max())
        if is_torch(y):
            return self.radius * float(y.double().amax(dim=self.axis).sum())
        return self.radius * float(np.sum(np.max(y, axis=self.axis), dtype=np.float64))

    def __repr__(self):
        return f"Simplex(radius={self.radius:g}, axis={self.axis})"


class L1Ball(Functional):
    """Indicator of the l1 ball ``{x : ||x||_1 <= radius}``.

    Parameters
    ----------
    radius : float
    axis : int or None
        ``None``: one ball over the whole array; an int: one ball per slice
        along ``axis``.

    Notes
    -----
    Outside the ball the projection is ``sign(x) * P_simplex(|x|)`` (Duchi et
    al. 2008). The conjugate's value is ``radius * max |y|``.
    """

    def __init__(self, radius=1.0, axis=None):
        self.radius = _check_radius(radius, "L1Ball")
        self.axis = None if axis is None else check_axis(axis, None, "axis", "L1Ball")

    def _l1(self, x):
        return _sum64(abs(x), self.axis)

    def _call(self, x):
        return 0.0 if _all(self._l1(x) <= self.radius * (1 + indicator_tol(x))) else math.inf

    def _prox(self, x, tau):
        inside = self._l1(x) <= self.radius
        if self.axis is None:
            if bool(inside):
                return copy(x)
            return xp_sign(x) * project_simplex(abs(x), self.radius, None)
        p = xp_sign(x) * project_simplex(abs(x), self.radius, self.axis)
        inside = inside.unsqueeze(self.axis) if is_torch(inside) else np.expand_dims(inside, self.axis)
        return xp_where(inside, x, p)

    def _conj_call(self, y):
        if self.axis is None:
            return self.radius * float(abs(y).max())
        if is_torch(y):
            return self.radius * float(abs(y).double().amax(dim=self.axis).sum())
        return self.radius * float(np.sum(np.max(abs(y), axis=self.axis), dtype=np.float64))

    def __repr__(self):
        return f"L1Ball(radius={self.radius:g}, axis={self.axis})"


class L2Ball(Functional):
    """Indicator of the Euclidean ball ``{x : ||x - center||_2 <= radius}``.

    Parameters
    ----------
    radius : float
    center : float, array or tensor, optional
        Broadcastable to the input (default 0).

    Notes
    -----
    Projection ``c + (x - c) min(1, radius / ||x - c||)``; the conjugate's value
    is ``radius ||y|| + <y, c>``.
    """

    def __init__(self, radius=1.0, center=None):
        self.radius = _check_radius(radius, "L2Ball")
        self.center = check_param(center, "center", "L2Ball", allow_none=True)
        self._c = ParamCache(self.center)

    def _call(self, x):
        c = self._c.get(x)
        d = x if c is None else x - c
        return 0.0 if norm(d) <= self.radius * (1 + indicator_tol(x)) else math.inf

    def _prox(self, x, tau):
        c = self._c.get(x)
        d = x if c is None else x - c
        n = norm(d)
        if n <= self.radius:
            return copy(x)
        z = d * (self.radius / n)
        return z if c is None else z + c

    def _conj_call(self, y):
        val = self.radius * norm(y)
        c = self._c.get(y)
        if c is not None:
            val += float(_sum64(y * c))
        return val

    def __repr__(self):
        return f"L2Ball(radius={self.radius:g})"


class Zero(Functional):
    """The zero functional: value 0, prox the identity, gradient 0.

    Its conjugate is the indicator of ``{0}`` (prox: 0, by Moreau).
    """

    is_smooth = True
    lipschitz = 0.0

    def _call(self, x):
        return 0.0

    def _prox(self, x, tau):
        return copy(x)

    def _grad(self, x):
        return x * 0

    def _conj_call(self, y):
        return 0.0 if _all(abs(y) <= indicator_tol(y)) else math.inf
