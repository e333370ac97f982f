"""Backend-generic helpers shared by the proximal operators (NumPy or torch).

Parameters of a functional (weights, bounds, data) are validated once at
construction and kept in float64 (NumPy) or as the tensor the user gave (so
that autograd can flow into learned weights). At call time they are cast to the
input's array type, dtype and device; the cast is cached per (dtype, device)
because a 1024^2 weight map would otherwise be converted at every iteration.
"""

from __future__ import annotations

import numbers

import numpy as np

from tikhon.operators._backend import is_torch, torch_module

__all__ = [
    "check_param",
    "ParamCache",
    "as_like",
    "indicator_tol",
    "scalar_tau",
    "xp_sqrt",
    "xp_sign",
    "xp_where",
    "xp_maximum0",
    "xp_clip",
    "copy",
]


def check_param(p, name, where, *, nonneg=False, positive=False, allow_inf=False, allow_none=False):
    """Validate a real parameter (scalar, array or tensor) and return it.

    Scalars become Python floats, array-likes float64 NumPy arrays, tensors are
    returned unchanged (so that gradients can reach them).

    Raises
    ------
    TypeError
        Not a real number/array.
    ValueError
        Non-finite (NaN always; inf unless ``allow_inf``), negative when
        ``nonneg``, or non-positive when ``positive``; the message names ``name``.
    """
    if p is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: {name} must not be None")
    if is_torch(p):
        torch = torch_module()
        if p.is_complex():
            raise TypeError(f"{where}: {name} must be real, got a complex tensor")
        if not p.is_floating_point():
            p = p.double()
        d = p.detach()  # the checks must not touch the autograd graph
        bad_nan = bool(torch.isnan(d).any())
        finite = bool(torch.isfinite(d).all())
        lo = float(d.min()) if d.numel() else 0.0
    else:
        if isinstance(p, bool):
            raise TypeError(f"{where}: {name} must be a real number or array, got a bool")
        if isinstance(p, numbers.Real):
            p = float(p)
            arr = np.asarray(p)
        else:
            arr = np.asarray(p)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{where}: {name} must be a real number or array, got dtype {arr.dtype}")
            p = arr.astype(np.float64)
            if p.ndim == 0:
                p = float(p)
        bad_nan = bool(np.isnan(arr).any())
        finite = bool(np.isfinite(arr).all())
        lo = float(arr.min()) if arr.size else 0.0
    if bad_nan:
        raise ValueError(f"{where}: {name} contains NaN")
    if not finite and not allow_inf:
        raise ValueError(f"{where}: {name} must be finite")
    if positive and not lo > 0:
        raise ValueError(f"{where}: {name} must be positive, got minimum {lo:g}")
    if nonneg and lo < 0:
        raise ValueError(f"{where}: {name} must be nonnegative, got minimum {lo:g}")
    return p


def as_like(p, x):
    """Cast a parameter (float, NumPy array or tensor) to ``x``'s backend and dtype."""
    if p is None or isinstance(p, float):
        return p
    if is_torch(x):
        torch = torch_module()
        if is_torch(p):
            return p.to(dtype=x.dtype, device=x.device)
        return torch.as_tensor(p, dtype=x.dtype, device=x.device)
    if is_torch(p):
        p = p.detach().cpu().numpy()
    return np.asarray(p).astype(x.dtype, copy=False)


class ParamCache:
    """Cache of a parameter's casts, keyed by the input's dtype and device.

    Tensors that require gradients are never cached (each call must see the
    live graph).
    """

    def __init__(self, value):
        self.value = value
        self._cache = {}

    def get(self, x):
        v = self.value
        if v is None or isinstance(v, float):
            return v
        if is_torch(v) and v.requires_grad:
            return as_like(v, x)
        key = (str(x.dtype), str(x.device) if is_torch(x) else "numpy")
        out = self._cache.get(key)
        if out is None:
            out = as_like(v, x)
            self._cache[key] = out
        return out


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
    """Reduce a step to a Python float; an array step must be constant."""
    if isinstance(tau, float):
        return tau
    if is_torch(tau):
        lo, hi = float(tau.min()), float(tau.max())
    else:
        lo, hi = float(np.min(tau)), float(np.max(tau))
    if lo != hi:
        raise ValueError(f"{where}: tau must be a scalar (or a constant array) for this functional")
    return lo


def xp_sqrt(x):
    return torch_module().sqrt(x) if is_torch(x) else np.sqrt(x)


def xp_sign(x):
    return torch_module().sign(x) if is_torch(x) else np.sign(x)


def xp_where(c, a, b):
    return torch_module().where(c, a, b) if is_torch(c) else np.where(c, a, b)


def xp_maximum0(x):
    """``max(x, 0)`` keeping the array type and dtype."""
    if is_torch(x):
        return torch_module().clamp(x, min=0)
    return np.maximum(x, 0, dtype=x.dtype) if isinstance(x, np.ndarray) else max(x, 0.0)


def xp_clip(x, lo, hi):
    """Clip with scalar or array bounds (None = unbounded)."""
    if is_torch(x):
        return torch_module().clamp(x, min=lo, max=hi)
    return np.clip(x, lo, hi)


def copy(x):
    return x.clone() if is_torch(x) else x.copy()
