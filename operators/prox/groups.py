"""Norms of groups of entries: the l2 norm, the l2,1 group norm (TV), sums of norms."""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import (
    ParamCache,
    as_like,
    is_torch,
    norm,
    norm_value,
    sum_value,
    to_host,
    to_numpy,
    torch_module,
    xp_maximum0,
    xp_sqrt,
    xp_where,
)
from tikhon._core.checks import check_axis, check_param
from tikhon.operators._kernels import prox_numba
from tikhon.operators.prox.base import Functional, indicator_tol, scalar_tau

__all__ = ["L2", "L21", "L21Conjugate", "SumOfNorms"]


class L2(Functional):
    r"""Euclidean norm of the whole array, :math:`f(x) = \|x\|_2`.

    Notes
    -----
    The prox is the block shrinkage :math:`x \max(1 - \tau / \|x\|, 0)`
    (``tau`` must be a scalar or a constant array). The conjugate is the
    indicator of the unit Euclidean ball (:class:`~tikhon.operators.prox.L2Ball`).
    """

    def _call(self, x):
        return norm_value(x)

    def _prox(self, x, tau):
        t = scalar_tau(tau, "L2.prox")
        if is_torch(x):
            # on the device, differentiable in x and in a tensor step
            torch = torch_module()
            n = torch.linalg.vector_norm(x)
            shrink = torch.clamp(1 - t / torch.where(n > 0, n, torch.ones_like(n)), min=0)
            return x * torch.where(n > 0, shrink, torch.zeros_like(shrink))
        n = norm(x)
        return x * (max(1.0 - t / n, 0.0) if n > 0 else 0.0)

    def _conj_call(self, y):
        return 0.0 if norm(y) <= 1.0 + indicator_tol(y) else math.inf

    @property
    def conj(self):
        """The indicator of the unit l2 ball."""
        from tikhon.operators.prox.indicators import L2Ball

        return L2Ball(1.0)


def _norm_axis(axis, ndim, where):
    return check_axis(axis, ndim, "axis", where)


def _group_sq_norms(x, axis):
    """Squared norms along ``axis`` with the axis kept (size 1)."""
    return (x * x).sum(axis=axis, keepdims=True)


def _group_norms(x, axis):
    """Norms along ``axis`` with the axis kept (size 1)."""
    return xp_sqrt(_group_sq_norms(x, axis))


class L21(Functional):
    r"""Group norm :math:`f(x) = \sum_i w_i \|x_{\cdot, i}\|_2`, the norm taken along ``axis``.

    With ``x`` the output of ``Gradient`` (shape ``(d, *image_shape)``) and
    ``axis=0`` this is isotropic total variation; ``weights`` of shape
    ``image_shape`` give space-variant (weighted) TV.

    Parameters
    ----------
    axis : int
        The axis holding a group's entries.
    weights : float, array or tensor, optional
        Nonnegative weights, broadcastable to the input's shape with ``axis``
        removed (default 1).

    Notes
    -----
    prox: group shrinkage :math:`x_i \max(1 - \tau w_i / \|x_i\|, 0)`; ``tau`` may
    be an array broadcastable to the input and constant along ``axis``. The
    conjugate (:class:`L21Conjugate`) is the indicator of
    :math:`\{\|y_i\| \le w_i\}`, whose prox is the projection: the dual step of
    every TV solver, done in one fused parallel numba pass for C-contiguous
    NumPy inputs grouped along the first or last axis.
    """

    def __init__(self, axis=0, weights=None):
        self.axis = check_axis(axis, None, "axis", "L21")
        w = check_param(weights, "weights", "L21", nonneg=True, allow_none=True)
        self.weights = 1.0 if w is None else w
        self._w = ParamCache(self.weights)
        self._flat_cache = {}
        self._thr_cache = (None, None)

    # -- weights laid out for the input -------------------------------------
    def _w_keepdims(self, x, axis):
        """Weights broadcastable to ``x`` (the group axis inserted)."""
        w = self._w.get(x)
        if isinstance(w, float):
            return w
        reduced = tuple(s for i, s in enumerate(x.shape) if i != axis)
        if tuple(w.shape) != reduced:
            try:
                w = w.expand(reduced) if is_torch(w) else np.broadcast_to(w, reduced)
            except (RuntimeError, ValueError) as exc:
                raise ValueError(
                    f"L21: weights of shape {tuple(w.shape)} do not broadcast to {reduced} "
                    f"(the input shape {tuple(x.shape)} without axis {axis})"
                ) from exc
        return w.unsqueeze(axis) if is_torch(w) else np.expand_dims(w, axis)

    def _w_flat(self, x, axis):
        """Weights as a flat (N,) array of x's dtype, for the kernels (cached)."""
        key = (x.shape, axis, x.dtype.str)
        out = self._flat_cache.get(key)
        if out is None:
            w = self._w_keepdims(x, axis)
            w = np.broadcast_to(np.asarray(w, dtype=x.dtype), np.take(x, [0], axis=axis).shape)
            out = np.ascontiguousarray(w).reshape(-1)
            if len(self._flat_cache) > 8:
                self._flat_cache.clear()
            self._flat_cache[key] = out
        return out

    def _thr_flat(self, t, x, axis):
        """Per-group thresholds tau_i w_i as a flat array; a scalar step's is cached
        (solvers call the prox with the same step at every iteration)."""
        w = self._w_flat(x, axis)
        if not isinstance(t, float):
            return (np.ascontiguousarray(t).reshape(-1) * w).astype(x.dtype, copy=False)
        key = (x.shape, axis, x.dtype.str, t)
        if self._thr_cache[0] != key:
            self._thr_cache = (key, w * x.dtype.type(t))
        return self._thr_cache[1]

    def _reduce_tau(self, tau, x, axis):
        """A step constant along ``axis``, reduced to broadcast like the group norms.

        A 0-d tensor passes through (no check, no sync: a learnable step).
        """
        if isinstance(tau, float) or (is_torch(tau) and tau.ndim == 0):
            return tau
        t = as_like(tau, x)
        if is_torch(t):
            t = t.expand(x.shape)
            t0 = t.narrow(axis, 0, 1)
        else:
            t = np.broadcast_to(t, x.shape)
            t0 = np.take(t, [0], axis=axis)
        if not bool((t == t0).all()):
            raise ValueError(f"{self._label()}.prox: an array tau must be constant along axis {self.axis}")
        return t0

    # -- Functional -----------------------------------------------------------
    def _call(self, x):
        axis = _norm_axis(self.axis, x.ndim, "L21")
        w = self._w_keepdims(x, axis)
        if is_torch(x):
            return (w * _group_norms(x.double(), axis)).sum()
        n = _group_norms(x.astype(np.float64, copy=False), axis)
        return float(np.sum(w * n))

    def _prox(self, x, tau):
        axis = _norm_axis(self.axis, x.ndim, "L21")
        t = self._reduce_tau(tau, x, axis)
        if not is_torch(x):
            out = prox_numba.shrink_groups(x, axis, self._thr_flat(t, x, axis))
            if out is not None:
                return out
        # the square root is taken only on groups that survive: at a zero group its
        # derivative is infinite and 0 * inf would make the autograd gradient NaN
        sq = _group_sq_norms(x, axis)
        thr = t * self._w_keepdims(x, axis)
        keep = sq > thr * thr
        n = xp_sqrt(xp_where(keep, sq, sq * 0 + 1))
        return x * xp_where(keep, 1 - thr / n, n * 0)

    def _conj_call(self, y):
        return self.conj._call(y)

    @property
    def conj(self):
        """The indicator of ``{||y_i|| <= w_i}`` (prox: projection)."""
        return L21Conjugate(self)

    def _label(self):
        return f"L21(axis={self.axis})"

    def __repr__(self):
        return self._label()


class L21Conjugate(Functional):
    r"""Indicator of :math:`\{y : \|y_{\cdot, i}\|_2 \le w_i\}`, the conjugate of :class:`L21`.

    Its prox is the projection (independent of ``tau``), computed by a fused,
    parallel numba kernel for C-contiguous NumPy inputs whose groups lie along
    the first or the last axis (the layout of ``Gradient``), and by vectorised
    NumPy/torch code otherwise. ``conj`` gives back the :class:`L21`.
    """

    def __init__(self, f):
        self.f = f

    @property
    def conj(self):
        return self.f

    def project(self, y):
        """The projection onto the set (same as ``prox(y, tau)`` for any tau)."""
        return self.prox(y, 1.0)

    def _call(self, y):
        axis = _norm_axis(self.f.axis, y.ndim, "L21.conj")
        w = self.f._w_keepdims(y, axis)
        n = _group_norms(y.double() if is_torch(y) else y.astype(np.float64, copy=False), axis)
        tol = indicator_tol(y)
        return 0.0 if bool((n <= w + tol * (1 + w)).all()) else math.inf

    def _prox(self, y, tau):
        axis = _norm_axis(self.f.axis, y.ndim, "L21.conj")
        if not is_torch(y):
            out = prox_numba.project_groups(y, axis, self.f._w_flat(y, axis))
            if out is not None:
                return out
        # as in L21's prox: no square root at zero groups, whose gradient would be NaN
        # (an unrolled TV solve from x = 0 meets them in its first dual step)
        w = self.f._w_keepdims(y, axis)
        sq = _group_sq_norms(y, axis)
        big = sq > w * w
        n = xp_sqrt(xp_where(big, sq, sq * 0 + 1))
        return y * xp_where(big, w / n, n * 0 + 1)

    def _conj_call(self, x):
        return self.f._call(x)

    def _label(self):
        return f"{self.f._label()}.conj"


class SumOfNorms(Functional):
    r"""Sum of Euclidean norms of arbitrary groups of entries, :math:`\sum_g w_g \|x_g\|_2`.

    Parameters
    ----------
    groups : integer array
        Label of every entry (same shape as the input): entries with label
        ``g >= 0`` form group ``g``; label ``-1`` means not penalised.
    weights : float or 1-d array, optional
        Nonnegative weight per label (length ``groups.max() + 1``), default 1.

    Notes
    -----
    The group norms are accumulated with ``np.bincount`` (``index_add`` on
    torch), so arbitrary, non-contiguous groups cost one pass. prox: group
    shrinkage ``x_g max(1 - tau w_g / ||x_g||, 0)``, unpenalised entries
    unchanged; ``tau`` may be an array constant within each group. The
    conjugate is the indicator of ``{||y_g|| <= w_g, y_i = 0 for unpenalised i}``.
    """

    def __init__(self, groups, weights=None):
        if is_torch(groups):
            groups = to_numpy(groups)
        try:
            g = np.asarray(groups)
        except ValueError:
            raise ValueError("SumOfNorms: groups must be a rectangular integer array (one label per entry)") from None
        if g.dtype.kind not in "iu":
            raise TypeError(f"SumOfNorms: groups must be an integer array, got dtype {g.dtype}")
        if g.size and g.min() < -1:
            raise ValueError("SumOfNorms: groups labels must be >= 0, or -1 for unpenalised entries")
        self.groups = g.astype(np.int64)
        self.n_groups = int(g.max()) + 1 if g.size else 0
        w = check_param(weights, "weights", "SumOfNorms", nonneg=True, allow_none=True)
        if w is None:
            w = 1.0
        if not isinstance(w, float):
            if is_torch(w):
                w = to_host(w)
            if w.shape != (self.n_groups,):
                raise ValueError(
                    f"SumOfNorms: weights must have shape ({self.n_groups},) (one per label), got {w.shape}"
                )
        self.weights = w
        # unpenalised entries go to an extra slot G, with weight 0
        self._idx = np.where(self.groups < 0, self.n_groups, self.groups).ravel()
        wfull = np.zeros(self.n_groups + 1)
        wfull[: self.n_groups] = w
        self._wfull = ParamCache(wfull)
        self._idx_t = {}

    def _check(self, x, where):
        if tuple(x.shape) != self.groups.shape:
            raise ValueError(
                f"SumOfNorms.{where}: x has shape {tuple(x.shape)}, groups has shape {self.groups.shape}"
            )

    def _index(self, x):
        if not is_torch(x):
            return self._idx
        key = str(x.device)
        idx = self._idx_t.get(key)
        if idx is None:
            idx = torch_module().as_tensor(self._idx, device=x.device)
            self._idx_t[key] = idx
        return idx

    def _sq_norms(self, x):
        """Squared norm of every group (slot G: the unpenalised entries)."""
        idx = self._index(x)
        if is_torch(x):
            torch = torch_module()
            v = x.reshape(-1)
            return torch.zeros(self.n_groups + 1, dtype=x.dtype, device=x.device).index_add(0, idx, v * v)
        v = x.ravel()
        return np.bincount(idx, weights=v * v, minlength=self.n_groups + 1)

    def _call(self, x):
        self._check(x, "__call__")
        sq = self._sq_norms(x.double() if is_torch(x) else x.astype(np.float64, copy=False))
        w = self._wfull.get(sq)
        return sum_value(w * xp_sqrt(sq))

    def _tau_groups(self, tau, x):
        if isinstance(tau, float) or (is_torch(tau) and tau.ndim == 0):
            return tau
        t = as_like(tau, x)
        if is_torch(t):
            t = t.expand(x.shape).reshape(-1)
            tg = torch_module().zeros(self.n_groups + 1, dtype=x.dtype, device=x.device)
            tg = tg.index_copy(0, self._index(x), t)
        else:
            t = np.broadcast_to(t, x.shape).ravel()
            tg = np.zeros(self.n_groups + 1, dtype=x.dtype)
            tg[self._idx] = t
        tg_e = tg[self._index(x)]
        pen = self._index(x) < self.n_groups
        if not bool(((tg_e == t) | ~pen).all()):
            raise ValueError("SumOfNorms.prox: an array tau must be constant within each group")
        return tg

    def _prox(self, x, tau):
        self._check(x, "prox")
        sq = self._sq_norms(x)
        n = xp_sqrt(sq)
        thr = self._tau_groups(tau, x) * self._wfull.get(x)
        safe = xp_where(n > 0, n, n * 0 + 1)
        factor = xp_maximum0(1 - thr / safe)
        # the unpenalised slot has weight 0, hence factor 1: those entries pass through
        if not is_torch(x):
            factor = factor.astype(x.dtype, copy=False)
        return x * factor[self._index(x)].reshape(x.shape)

    def _conj_call(self, y):
        self._check(y, "conj")
        sq = self._sq_norms(y.double() if is_torch(y) else y.astype(np.float64, copy=False))
        n = xp_sqrt(sq)
        w = self._wfull.get(sq)
        tol = indicator_tol(y)
        return 0.0 if bool((n <= w + tol * (1 + w)).all()) else math.inf

    def __repr__(self):
        return f"SumOfNorms(n_groups={self.n_groups})"
