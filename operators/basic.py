"""Elementary linear operators: identity, diagonal scaling, explicit matrices, masks.

Each operator works on NumPy arrays and on torch tensors (any device); the
constant data it holds (diagonal, matrix, mask indices) is converted to torch
once per ``(device, dtype)`` and cached, so repeated applications inside a
solver's loop cost no host-to-device transfer.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from tikhon._core.arrays import copy, is_torch, to_numpy, torch_module
from .base import LinearOperator, _as_shape

__all__ = ["Identity", "Diagonal", "MatrixOperator", "Mask"]


# -- helpers shared by the operators of this package -------------------------


def _real_float_array(a, name, where, allow_int=True):
    """``a`` as a finite float NumPy array (float32 kept, everything else float64).

    Torch tensors are accepted and copied to the host: the operator's constant
    data lives in NumPy and is sent to a device on demand.
    """
    a = to_numpy(a)
    if a.dtype.kind == "c":
        raise TypeError(f"{where}: {name} must be real, got complex dtype {a.dtype}")
    if a.dtype.kind == "b" or (a.dtype.kind in "iu" and not allow_int):
        raise TypeError(f"{where}: {name} must be a real floating array, got dtype {a.dtype}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{where}: {name} must be a real numeric array, got dtype {a.dtype}")
    if a.dtype != np.float32:
        a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: {name} must be finite (it contains NaN or inf)")
    return a


def _base_dtype(a):
    """The operator's nominal dtype: float32 if its data is float32, else float64."""
    return np.float32 if a.dtype == np.float32 else np.float64


def _cached_tensor(cache, key, make):
    """Return ``cache[key]``, computing it with ``make()`` on first use."""
    t = cache.get(key)
    if t is None:
        t = make()
        cache[key] = t
    return t


def _as_torch(arr, like, cache, complex_=False, name="data"):
    """NumPy ``arr`` as a torch tensor on ``like``'s device, in ``like``'s precision.

    With ``complex_=True`` the tensor is complex64/complex128 matching a
    float32/float64 ``like`` (for Fourier multipliers). Results are cached
    per ``(name, device, dtype)``.
    """
    torch = torch_module()
    if complex_:
        dtype = torch.complex64 if like.dtype == torch.float32 else torch.complex128
        np_dtype = np.complex64 if like.dtype == torch.float32 else np.complex128
    else:
        dtype = like.dtype
        np_dtype = np.float32 if like.dtype == torch.float32 else np.float64
    key = (name, str(like.device), dtype)
    return _cached_tensor(
        cache, key,
        lambda: torch.from_numpy(np.ascontiguousarray(arr, dtype=np_dtype)).to(device=like.device),
    )


def _as_numpy_dtype(arr, dtype, cache, name="data"):
    """``arr`` cast to ``dtype`` (float or matching complex), cached per dtype."""
    dtype = np.dtype(dtype)
    if arr.dtype == dtype:
        return arr
    return _cached_tensor(cache, (name, dtype), lambda: arr.astype(dtype))


# -- Identity -----------------------------------------------------------------


class Identity(LinearOperator):
    """The identity map on arrays of a given shape.

    Parameters
    ----------
    shape : int or tuple of int
        Input and output shape.

    Notes
    -----
    The output is a copy, so a solver may update it in place without touching
    its input.
    """

    def __init__(self, shape):
        shape = _as_shape(shape, "shape")
        super().__init__(shape, shape)

    def _forward(self, x):
        return copy(x)

    _adjoint = _forward

    def norm(self, *args, **kwargs):
        """Exactly 1 (0 for an empty shape)."""
        return 1.0 if math.prod(self.in_shape) > 0 else 0.0

    def abs(self):
        return self

    def _label(self):
        return "Identity"


# -- Diagonal -----------------------------------------------------------------


class Diagonal(LinearOperator):
    """Elementwise multiplication ``x -> d * x``.

    Parameters
    ----------
    d : array_like
        Finite real weights; the input and output shapes are ``d.shape``.
        Integer weights are converted to float64; float32 weights keep float32
        as the operator's nominal dtype.

    Raises
    ------
    TypeError
        If ``d`` is complex or boolean.
    ValueError
        If ``d`` contains NaN or inf.
    """

    def __init__(self, d):
        d = _real_float_array(d, "d", "Diagonal")
        super().__init__(d.shape, d.shape, _base_dtype(d))
        self.d = d
        self._cache = {}

    def _weights(self, x):
        if is_torch(x):
            return _as_torch(self.d, x, self._cache, name="d")
        return _as_numpy_dtype(self.d, x.dtype, self._cache, name="d")

    def _forward(self, x):
        return x * self._weights(x)

    _adjoint = _forward

    def norm(self, *args, **kwargs):
        """Exactly ``max |d|``."""
        return float(np.abs(self.d).max()) if self.d.size else 0.0

    def abs(self):
        return Diagonal(np.abs(self.d))

    def _label(self):
        return "Diagonal"


# -- MatrixOperator -------------------------------------------------------------


class MatrixOperator(LinearOperator):
    """An explicit matrix, dense or scipy.sparse, acting on N-d arrays.

    Parameters
    ----------
    M : ndarray or scipy.sparse matrix/array of shape (m, n)
        Finite real entries. Integer entries are converted to float64.
    in_shape : tuple of int, optional
        Shape of the inputs, of total size ``n`` (default ``(n,)``).
    out_shape : tuple of int, optional
        Shape of the outputs, of total size ``m`` (default ``(m,)``).

    Notes
    -----
    The input is flattened in C order, multiplied, and reshaped to
    ``out_shape``. The matrix is cast to the input's precision (cached per
    dtype) so float32 inputs are multiplied in float32. On torch the matrix is
    converted once per ``(device, dtype)`` and cached: dense to a strided
    tensor, sparse to a CSR tensor (with a second CSR tensor for ``M.T``, so
    both products are row-parallel sparse-times-dense).
    """

    def __init__(self, M, in_shape=None, out_shape=None):
        import scipy.sparse as sp

        if sp.issparse(M):
            if M.ndim != 2:
                raise ValueError(f"MatrixOperator: M must be 2-D, got shape {M.shape}")
            if M.dtype.kind == "c":
                raise TypeError(f"MatrixOperator: M must be real, got complex dtype {M.dtype}")
            if M.dtype.kind not in "fiub":
                raise TypeError(f"MatrixOperator: M must be a real numeric matrix, got {M.dtype}")
            M = sp.csr_matrix(M)
            if M.dtype != np.float32:
                M = M.astype(np.float64)
            M.sum_duplicates()
            if not np.isfinite(M.data).all():
                raise ValueError("MatrixOperator: M must be finite (it contains NaN or inf)")
            self.sparse = True
        else:
            M = _real_float_array(M, "M", "MatrixOperator")
            if M.ndim != 2:
                raise ValueError(f"MatrixOperator: M must be 2-D, got shape {M.shape}")
            self.sparse = False
        m, n = M.shape
        in_shape = (n,) if in_shape is None else _as_shape(in_shape, "in_shape")
        out_shape = (m,) if out_shape is None else _as_shape(out_shape, "out_shape")
        if math.prod(in_shape) != n:
            raise ValueError(
                f"MatrixOperator: in_shape {in_shape} has {math.prod(in_shape)} entries "
                f"but M has {n} columns"
            )
        if math.prod(out_shape) != m:
            raise ValueError(
                f"MatrixOperator: out_shape {out_shape} has {math.prod(out_shape)} entries "
                f"but M has {m} rows"
            )
        super().__init__(in_shape, out_shape, _base_dtype(M))
        self.M = M
        self._cache = {}

    # the matrix in the input's precision / on the input's device
    def _matrix(self, x, transpose):
        if is_torch(x):
            key = ("T" if transpose else "M", str(x.device), x.dtype)
            return _cached_tensor(self._cache, key, lambda: self._to_torch(x, transpose))
        M = self.M if x.dtype == self.M.dtype else _cached_tensor(
            self._cache, ("np", x.dtype), lambda: self.M.astype(x.dtype)
        )
        if transpose and self.sparse:
            # CSR of M.T: a row-parallel product instead of a CSC scatter
            M = _cached_tensor(self._cache, ("npT", x.dtype), lambda: M.T.tocsr())
            return M
        return M.T if transpose else M

    def _to_torch(self, like, transpose):
        torch = torch_module()
        np_dtype = np.float32 if like.dtype == torch.float32 else np.float64
        if self.sparse:
            M = (self.M.T.tocsr() if transpose else self.M).astype(np_dtype)
            with warnings.catch_warnings():
                # torch flags sparse CSR as beta; the product used here is stable
                warnings.simplefilter("ignore", UserWarning)
                t = torch.sparse_csr_tensor(
                    torch.from_numpy(M.indptr.astype(np.int64)),
                    torch.from_numpy(M.indices.astype(np.int64)),
                    torch.from_numpy(M.data),
                    size=M.shape,
                    check_invariants=False,
                )
                return t.to(like.device)
        M = self.M.T if transpose else self.M
        return torch.from_numpy(np.ascontiguousarray(M, dtype=np_dtype)).to(like.device)

    def _apply_matrix(self, v, transpose, out_shape):
        M = self._matrix(v, transpose)
        if is_torch(v):
            flat = v.reshape(-1, 1) if self.sparse else v.reshape(-1)
            out = M @ flat
            return out.reshape(out_shape)
        out = M @ v.reshape(-1)
        return np.asarray(out).reshape(out_shape)

    def _forward(self, x):
        return self._apply_matrix(x, False, self.out_shape)

    def _adjoint(self, y):
        return self._apply_matrix(y, True, self.in_shape)

    def todense(self):
        """The matrix as a dense float NumPy array."""
        return self.M.toarray() if self.sparse else self.M.copy()

    def abs(self):
        return MatrixOperator(abs(self.M), self.in_shape, self.out_shape)

    def _label(self):
        kind = " sparse" if self.sparse else ""
        return f"MatrixOperator[{self.M.shape[0]}x{self.M.shape[1]}{kind}]"


# -- Mask -----------------------------------------------------------------------


class Mask(LinearOperator):
    """Keep the entries selected by a boolean mask: ``x -> x[mask]``.

    Parameters
    ----------
    mask : array_like of bool
        Its shape is the input shape; the output is the flat vector of the
        ``n_kept = mask.sum()`` selected entries in C order. The adjoint
        scatters a vector back into zeros.

    Raises
    ------
    TypeError
        If ``mask`` is not boolean.
    """

    def __init__(self, mask):
        mask = to_numpy(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"Mask: mask must be a boolean array, got dtype {mask.dtype}")
        self.mask = mask.copy()
        # flat indices gather faster than boolean indexing and port to torch as-is
        self.indices = np.flatnonzero(mask)
        super().__init__(mask.shape, (self.indices.size,))
        self._cache = {}

    @property
    def n_kept(self):
        """Number of selected entries."""
        return self.indices.size

    def _torch_indices(self, x):
        torch = torch_module()
        key = ("idx", str(x.device))
        return _cached_tensor(
            self._cache, key, lambda: torch.from_numpy(self.indices.astype(np.int64)).to(x.device)
        )

    def _forward(self, x):
        if is_torch(x):
            return x.reshape(-1)[self._torch_indices(x)]
        return np.take(x.reshape(-1), self.indices)

    def _adjoint(self, y):
        if is_torch(y):
            torch = torch_module()
            out = torch.zeros(math.prod(self.in_shape), dtype=y.dtype, device=y.device)
            out[self._torch_indices(y)] = y
            return out.reshape(self.in_shape)
        out = np.zeros(math.prod(self.in_shape), dtype=y.dtype)
        out[self.indices] = y
        return out.reshape(self.in_shape)

    def norm(self, *args, **kwargs):
        """Exactly 1 (0 when nothing is kept)."""
        return 1.0 if self.n_kept > 0 else 0.0

    def abs(self):
        return self

    def _label(self):
        return f"Mask[{self.n_kept} kept]"
