"""Argument checks: one place for every validation that more than one module needs.

Every check names the argument and the function (``where``) in its message,
raises ``TypeError`` for a wrong kind of value and ``ValueError`` for a wrong
value, and returns the value in the form the caller works with.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tikhon._core.arrays import FLOAT_DTYPES, all_finite, is_torch, torch_module

__all__ = [
    "MASS_RTOL",
    "check_real_floating",
    "as_real_array",
    "check_operator",
    "check_finite_array",
    "check_shape",
    "check_real",
    "check_positive",
    "check_nonneg",
    "check_positive_int",
    "check_int",
    "check_interval",
    "check_axis",
    "check_float_dtype",
    "check_tolerance",
    "check_bool",
    "check_choice",
    "check_callable",
    "check_param",
    "check_step",
    "check_functional",
    "check_smooth",
    "refuse_fixed_step",
    "check_cost_matrix",
    "check_marginal",
    "check_equal_mass",
    "check_same_device",
]

# relative difference of total masses below which two marginals count as balanced
MASS_RTOL = 1e-6


def _is_real_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real_floating(x, name, where):
    """``x`` as a real float32/float64 array or tensor, else ``TypeError``.

    NumPy array-likes are converted with ``np.asarray``; integer, boolean and
    complex inputs are refused rather than silently cast, because a silent cast
    of a uint8 image changes its scale.
    """
    if is_torch(x):
        torch = torch_module()
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{where}: {name} must be a float32 or float64 tensor, got {x.dtype}")
        return x
    x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{where}: {name} must be a float32 or float64 array, got dtype {x.dtype}"
            " (convert with .astype(np.float64))"
        )
    return x


def as_real_array(x, name, where, dtype=np.float64):
    """``x`` (a real numeric array-like: float, int, uint or bool) as a NumPy array of ``dtype``.

    For inputs whose values, not their dtype, matter (phantom parameters,
    training sets, plans): a complex array would lose its imaginary part and
    a ragged list would fail inside NumPy, so both are refused naming the
    argument. torch tensors are copied to the host.
    """
    if is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except ValueError as exc:
        raise ValueError(f"{where}: {name} is not a rectangular array ({exc})") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{where}: {name} must be a real numeric array, got dtype object") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: {name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def check_operator(op, name, where):
    """``op`` when it is a tikhon ``LinearOperator`` (anything with shapes and ``_forward``/``_adjoint``)."""
    # duck-typed: this package imports nothing of tikhon's layers
    if not all(hasattr(op, a) for a in ("in_shape", "out_shape", "_forward", "_adjoint")):
        raise TypeError(f"{where}: {name} must be a tikhon LinearOperator, got {type(op).__name__}")
    return op


def check_shape(x, shape, name, where):
    """``x`` when its shape is ``shape``, else ``ValueError`` naming both shapes."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {tuple(x.shape)}, expected {tuple(shape)}")
    return x


def check_finite_array(x, name, where, *, shape=None, allow_none=False, nonneg=False):
    """A finite real float32/float64 array or tensor (optionally of ``shape``, ``>= 0``)."""
    if x is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: {name} is required")
    x = check_real_floating(x, name, where)
    if shape is not None:
        check_shape(x, shape, name, where)
    if not all_finite(x):
        raise ValueError(f"{where}: {name} contains NaN or inf")
    if nonneg and bool((x < 0).any()):
        raise ValueError(f"{where}: {name} must be nonnegative")
    return x


def _scalar(value, name, where, kind):
    """A real scalar (Python, NumPy or a 0-d tensor/array) as a Python float."""
    if is_torch(value) or isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise TypeError(f"{where}: {name} must be {kind}, got an array of shape {tuple(value.shape)}")
        value = value.item()
    if not _is_real_number(value):
        raise TypeError(f"{where}: {name} must be {kind}, got {value!r}")
    return float(value)


def check_real(value, name, where, *, allow_none=False):
    """A finite real number as a Python float."""
    if value is None and allow_none:
        return None
    value = _scalar(value, name, where, "a real number")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    return value


def check_positive(value, name, where, *, allow_none=False):
    """A finite real number ``> 0`` as a Python float."""
    if value is None and allow_none:
        return None
    value = _scalar(value, name, where, "a positive number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be positive and finite, got {value!r}")
    return value


def check_nonneg(value, name, where, *, allow_none=False, allow_inf=False):
    """A real number ``>= 0`` (finite unless ``allow_inf``) as a Python float."""
    if value is None and allow_none:
        return None
    value = _scalar(value, name, where, "a nonnegative number")
    if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
        bound = ">= 0" if allow_inf else "finite and >= 0"
        raise ValueError(f"{where}: {name} must be {bound}, got {value!r}")
    return value


def check_tolerance(tol, name="tol", where="solver"):
    """A tolerance: a finite number ``>= 0``."""
    return check_nonneg(tol, name, where)


def check_int(value, name, where, *, minimum=1):
    """An integer ``>= minimum`` as a Python int: ``TypeError`` for a non-integer (or a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be at least {minimum}, got {value}")
    return int(value)


def check_positive_int(value, name, where, *, allow_none=False):
    """An integer ``>= 1`` (bools refused) as a Python int."""
    if value is None and allow_none:
        return None
    return check_int(value, name, where, minimum=1)


def check_interval(value, name, where, lo, hi, *, open_lo=False, open_hi=False):
    """A real number in the interval from ``lo`` to ``hi`` (closed unless ``open_lo``/``open_hi``)."""
    value = _scalar(value, name, where, "a real number")
    below = value <= lo if open_lo else value < lo
    above = value >= hi if open_hi else value > hi
    if math.isnan(value) or below or above:
        interval = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise ValueError(f"{where}: {name} must be in {interval}, got {value!r}")
    return value


def check_axis(axis, ndim, name, where):
    """An axis as an int; for an ``ndim``-dimensional input, in range and made nonnegative.

    ``ndim=None`` checks the type only (an axis given before the input is known).
    """
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {axis!r}")
    if ndim is None:
        return int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{where}: {name} {axis} is out of range for an input with {ndim} dimensions")
    return int(axis) % ndim


def check_float_dtype(dtype, name, where):
    """``dtype`` as a NumPy dtype when it is float32 or float64, else ``TypeError``."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where}: {name} must be float32 or float64, got {dtype}")
    return dtype


def check_bool(value, name, where):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_choice(value, choices, name, where):
    """``value`` when it is one of ``choices``, else ``ValueError`` listing them."""
    if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{where}: {name} must be one of {listed}, got {value!r}")
    return value


def check_callable(value, name, where, *, allow_none=True):
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError(f"{where}: {name} must be callable, got {type(value).__name__}")
    return value


def check_param(p, name, where, *, nonneg=False, positive=False, allow_inf=False, allow_none=False):
    """A functional's real parameter (scalar, array or tensor), validated once.

    Scalars become Python floats, array-likes float64 NumPy arrays; tensors are
    returned unchanged (so that gradients can reach them; the checks read a
    detached copy).
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
        d = p.detach()
        bad_nan = bool(torch.isnan(d).any())
        finite = bool(torch.isfinite(d).all())
        lo = float(d.min()) if d.numel() else 0.0
    else:
        if isinstance(p, bool):
            raise TypeError(f"{where}: {name} must be a real number or array, got a bool")
        if _is_real_number(p):
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


def check_step(tau, where, name="tau"):
    """A step size: a positive finite scalar, or an array/tensor of them.

    Scalars become Python floats; a tensor (0-d or not) stays a tensor, so a
    learnable step keeps its autograd graph.
    """
    if _is_real_number(tau):
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"{where}: {name} must be positive and finite, got {tau!r}")
        return float(tau)
    if is_torch(tau):
        d = tau.detach()
        if not bool(torch_module().isfinite(d).all()) or not bool((d > 0).all()):
            raise ValueError(f"{where}: {name} must be positive and finite everywhere")
        return tau
    arr = np.asarray(tau)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{where}: {name} must be a real number or array, got {type(tau).__name__}")
    if arr.ndim == 0:
        return check_step(float(arr), where, name)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{where}: {name} must be positive and finite everywhere")
    return arr.astype(np.float64, copy=False)


def check_functional(f, name, where):
    """``f`` when it is a tikhon ``Functional`` (anything with the protocol's ``_prox``)."""
    # duck-typed: this package imports nothing of tikhon's layers
    if not (hasattr(f, "_prox") and hasattr(f, "_call") and hasattr(f, "fixed_step")):
        raise TypeError(f"{where}: {name} must be a tikhon Functional, got {type(f).__name__}")
    return f


def check_smooth(f, name, where):
    """A functional with a gradient (``is_smooth``)."""
    check_functional(f, name, where)
    if not f.is_smooth:
        raise ValueError(f"{where}: {name} ({f._label()}) must be smooth (is_smooth=True, with grad)")
    return f


def refuse_fixed_step(f, name, where, hint="use admm (plug-and-play) instead"):
    """Refuse a functional whose prox ignores its step where a solver varies the step."""
    if getattr(f, "fixed_step", False):
        raise ValueError(
            f"{where}: {name} ({f._label()}) has a fixed step (its prox ignores tau), but this "
            "solver needs prox_{tau " + name + "} for varying tau; " + hint
        )
    return f


def check_cost_matrix(C, where, name="C"):
    """A finite, non-empty 2-D float32/float64 cost matrix (array or tensor)."""
    C = check_real_floating(C, name, where)
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"{where}: {name} must be a non-empty 2-D array, got shape {tuple(C.shape)}")
    if not all_finite(C):
        raise ValueError(f"{where}: {name} contains NaN or inf")
    return C


def check_marginal(w, name, k, where, like=None):
    """A marginal of length ``k``: finite, nonnegative, of positive mass.

    ``None`` gives the uniform marginal. NumPy input comes back as float64;
    with a tensor ``like`` (the cost matrix) the result is a tensor of its
    dtype and device.
    """
    tensor = like is not None and is_torch(like)
    if w is None:
        if tensor:
            return torch_module().full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
        return np.full(k, 1.0 / k)
    if tensor:
        if not is_torch(w):
            raise TypeError(f"{where}: {name} must be a torch tensor like the cost matrix")
        if not w.dtype.is_floating_point:
            raise TypeError(f"{where}: {name} must be a floating tensor, got {w.dtype}")
    else:
        if is_torch(w):
            raise TypeError(f"{where}: {name} is a torch tensor but the cost matrix is a NumPy array")
        w = np.asarray(w)
        if w.dtype.kind not in "fiu" or w.dtype == bool:
            raise TypeError(f"{where}: {name} must be a real array, got dtype {w.dtype}")
        w = w.astype(np.float64)
    if tuple(w.shape) != (k,):
        raise ValueError(f"{where}: {name} must have shape ({k},) to match the cost matrix, got {tuple(w.shape)}")
    if not all_finite(w):
        raise ValueError(f"{where}: {name} contains NaN or inf")
    if bool((w < 0).any()):
        raise ValueError(f"{where}: {name} has negative entries")
    if not float(w.sum()) > 0:
        raise ValueError(f"{where}: {name} has zero total mass")
    return w.to(like.dtype) if tensor else w


def check_equal_mass(a, b, where, hint="normalise them"):
    """Refuse marginals whose total masses differ by more than ``MASS_RTOL`` (relative)."""
    sa, sb = float(a.sum()), float(b.sum())
    if abs(sa - sb) > MASS_RTOL * max(sa, sb):
        raise ValueError(
            f"{where}: the marginals a and b must have equal mass "
            f"(sum(a) = {sa:.12g}, sum(b) = {sb:.12g}); {hint}"
        )
    return sa, sb


def check_same_device(where, **arrays):
    """Refuse torch tensors that live on different devices (``ValueError`` naming them).

    ``None`` values and NumPy arrays are ignored (mixed kinds are
    :func:`~tikhon._core.arrays.backend_of`'s to refuse). Returns the common
    device, or None when no tensor was given.
    """
    tensors = {name: x for name, x in arrays.items() if x is not None and is_torch(x)}
    devices = {str(x.device) for x in tensors.values()}
    if len(devices) > 1:
        placed = ", ".join(f"{name} on {x.device}" for name, x in tensors.items())
        raise ValueError(f"{where}: all tensors must be on one device, got {placed}")
    return next(iter(tensors.values())).device if tensors else None
