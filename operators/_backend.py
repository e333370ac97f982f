"""Array-backend helpers: tell NumPy from torch without importing torch."""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def torch_module():
    """Return the torch module if it has already been imported, else None.

    A tensor can only exist if torch was imported, so checking ``sys.modules``
    keeps ``import tikhon.operators`` free of torch.
    """
    return sys.modules.get("torch")


def is_torch(x) -> bool:
    """True when ``x`` is a torch tensor."""
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def require_torch():
    """Import torch on demand, with a clear message when it is missing."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this feature needs PyTorch: pip install 'tikhon[learned]' "
            "(on CPU-only machines install torch==2.13.0 first)"
        ) from exc
    return torch


def check_real_floating(x, name: str, where: str):
    """Return ``x`` as a real float32/float64 array or tensor, else raise TypeError.

    NumPy array-likes are converted with ``np.asarray``; integer, boolean and
    complex inputs are refused rather than silently cast, because a silent cast
    of a uint8 image changes its scale.
    """
    if is_torch(x):
        if x.dtype not in (torch_module().float32, torch_module().float64):
            raise TypeError(
                f"{where}: {name} must be a float32 or float64 tensor, got {x.dtype}"
            )
        return x
    x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{where}: {name} must be a float32 or float64 array, got dtype {x.dtype}"
            " (convert with .astype(np.float64))"
        )
    return x


# Inner products and norms in solver loops avoid BLAS on purpose: on a few
# shared cores, OpenBLAS's spinning threads and numba's threads starve each
# other (a 1e5-entry np.linalg.norm took 20 ms between numba kernel calls, 10x
# the whole iteration). einsum uses NumPy's own loops; dtype=float64
# accumulates float32 data in double precision without a temporary copy.


def as_finite_real(value, name: str, where: str) -> float:
    """Return ``value`` as a finite Python float, else raise TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    return value


def vdot(a, b) -> float:
    """Real inner product of two arrays or tensors of the same shape, in float64."""
    if is_torch(a):
        return float((a.double() * b.double()).sum())
    a = np.asarray(a)
    b = np.asarray(b)
    return float(np.einsum("i,i->", a.reshape(-1), b.reshape(-1), dtype=np.float64))


def norm(a) -> float:
    """Euclidean norm of an array or tensor (all entries), as a Python float."""
    if is_torch(a):
        return float(torch_module().linalg.vector_norm(a.double()))
    v = np.asarray(a).reshape(-1)
    return math.sqrt(float(np.einsum("i,i->", v, v, dtype=np.float64)))


def full(shape, value, like):
    """An array or tensor of ``like``'s backend, dtype (and device) filled with ``value``."""
    if is_torch(like):
        return torch_module().full(tuple(shape), value, dtype=like.dtype, device=like.device)
    return np.full(shape, value, dtype=like.dtype)


def zeros_like(a):
    if is_torch(a):
        return torch_module().zeros_like(a)
    return np.zeros_like(a)


def all_finite(a) -> bool:
    if is_torch(a):
        return bool(torch_module().isfinite(a).all())
    return bool(np.isfinite(a).all())
