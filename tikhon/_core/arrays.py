"""The array layer: NumPy arrays and torch tensors behind one small set of functions.

tikhon's own thin namespace rather than ``array-api-compat``: the hot paths
need things the array API does not give (BLAS-free float64 reductions between
numba kernels, in-place NumPy updates into reused buffers, dtype-preserving
scalar handling), and torch must never be imported by this module: a tensor can
only exist once torch has been imported, so :func:`torch_module` looks in
``sys.modules``.

Reductions in solver loops avoid BLAS on purpose: on a few shared cores,
OpenBLAS's spinning threads and numba's threads starve each other (a 1e5-entry
``np.linalg.norm`` took 20 ms between numba kernel calls, 10x the whole TV-CT
iteration). ``einsum`` uses NumPy's own loops; ``dtype=float64`` accumulates
float32 data in double precision without a temporary copy.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "torch_module",
    "is_torch",
    "require_torch",
    "backend_of",
    "vdot",
    "norm",
    "norms",
    "full",
    "zeros_like",
    "copy",
    "all_finite",
    "tiny",
    "as_like",
    "ParamCache",
    "xp_sqrt",
    "xp_sign",
    "xp_where",
    "xp_maximum0",
    "xp_clip",
    "to_host",
    "to_numpy",
    "size",
    "is_scalar",
    "split_flat",
    "join_flat",
    "to_float",
    "dot_value",
    "norm_value",
    "sum_value",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def torch_module():
    """The torch module if it has already been imported, else None."""
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


def backend_of(where, **arrays):
    """``"torch"`` or ``"numpy"`` for a set of named inputs; mixed inputs are refused.

    ``None`` values are ignored. The error names the arguments of each kind, so
    a user sees which one to convert.
    """
    kinds = {name: is_torch(x) for name, x in arrays.items() if x is not None}
    if any(kinds.values()) and not all(kinds.values()):
        tensors = ", ".join(n for n, t in kinds.items() if t)
        others = ", ".join(n for n, t in kinds.items() if not t)
        raise TypeError(
            f"{where}: mixed NumPy and torch inputs ({tensors} torch; {others} NumPy); "
            "pass them all as NumPy arrays or all as torch tensors"
        )
    return "torch" if any(kinds.values()) else "numpy"


def vdot(a, b) -> float:
    """Real inner product of two arrays or tensors of the same shape, as a float64 Python float."""
    if is_torch(a):
        return float((a.double() * b.double()).sum())
    a = np.asarray(a)
    b = np.asarray(b)
    return float(np.einsum("i,i->", a.reshape(-1), b.reshape(-1), dtype=np.float64))


def norm(a) -> float:
    """Euclidean norm of all entries of an array or tensor, as a Python float."""
    if is_torch(a):
        return float(torch_module().linalg.vector_norm(a.double()))
    v = np.asarray(a).reshape(-1)
    return math.sqrt(float(np.einsum("i,i->", v, v, dtype=np.float64)))


def norms(*arrays):
    """Euclidean norms as Python floats; for tensors, one device sync for all of them."""
    if arrays and is_torch(arrays[0]):
        torch = torch_module()
        return torch.stack([torch.linalg.vector_norm(a, dtype=torch.float64) for a in arrays]).tolist()
    return [norm(a) for a in arrays]


def to_float(v) -> float:
    """A value (number or 0-d tensor) as a Python float, detached from any graph."""
    return float(v.detach()) if is_torch(v) else float(v)


def dot_value(a, b):
    """``<a, b>`` in float64: a 0-d tensor for tensors (graph kept), a Python float for NumPy."""
    if is_torch(a):
        return (a.double() * b.double()).sum()
    return vdot(a, b)


def norm_value(a):
    """``||a||`` in float64: a 0-d tensor for tensors (graph kept), a Python float for NumPy."""
    if is_torch(a):
        return torch_module().linalg.vector_norm(a.double())
    return norm(a)


def sum_value(a):
    """Sum of all entries in float64: a 0-d tensor for tensors (graph kept), a float for NumPy."""
    if is_torch(a):
        return a.double().sum()
    return float(np.sum(a, dtype=np.float64))


def full(shape, value, like):
    """An array or tensor of ``like``'s backend, dtype (and device) filled with ``value``."""
    if is_torch(like):
        return torch_module().full(tuple(shape), value, dtype=like.dtype, device=like.device)
    return np.full(shape, value, dtype=like.dtype)


def zeros_like(a):
    if is_torch(a):
        return torch_module().zeros_like(a)
    return np.zeros_like(a)


def copy(x):
    """A copy of an array or tensor (``clone`` keeps a tensor's autograd graph)."""
    return x.clone() if is_torch(x) else x.copy()


def all_finite(a) -> bool:
    if is_torch(a):
        return bool(torch_module().isfinite(a).all())
    return bool(np.isfinite(a).all())


def tiny(x) -> float:
    """The smallest positive normal number of ``x``'s dtype."""
    if is_torch(x):
        return float(torch_module().finfo(x.dtype).tiny)
    return float(np.finfo(x.dtype).tiny)


def to_numpy(a):
    """A NumPy array of an array or tensor (a detached host copy of a tensor; dtype kept)."""
    if is_torch(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def to_host(a):
    """A float64 NumPy copy of an array or tensor (for estimates made once, never in a loop)."""
    return np.asarray(to_numpy(a), dtype=np.float64)


def size(x) -> int:
    """Number of entries of an array or tensor."""
    return int(x.numel()) if is_torch(x) else int(np.size(x))


def is_scalar(c) -> bool:
    """A real number (not a bool) or a 0-d tensor: what may scale a functional or be a step."""
    if is_torch(c):
        return c.ndim == 0
    return isinstance(c, numbers.Real) and not isinstance(c, bool)


def split_flat(y, offsets, shapes):
    """Views of a flat vector as blocks: ``y[offsets[i]:offsets[i + 1]]`` reshaped to ``shapes[i]``."""
    return [y[offsets[i]: offsets[i + 1]].reshape(shape) for i, shape in enumerate(shapes)]


def join_flat(parts):
    """Flat concatenation of blocks (the inverse of :func:`split_flat`)."""
    if is_torch(parts[0]):
        return torch_module().cat([p.reshape(-1) for p in parts])
    return np.concatenate([np.ravel(p) for p in parts])


def as_like(p, x):
    """Cast a parameter (float, NumPy array or tensor) to ``x``'s backend and dtype.

    A tensor parameter given with a tensor ``x`` keeps its autograd graph; a
    0-d tensor stays a tensor (a learnable step or weight).
    """
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

    Parameters of a functional (weights, bounds, data) are validated once at
    construction and kept in float64 (NumPy) or as the tensor the user gave;
    at call time they are cast to the input's type, and a 1024^2 weight map
    would otherwise be converted at every iteration. Tensors that require
    gradients are never cached (each call must see the live graph).
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
