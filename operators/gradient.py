"""The discrete gradient by forward differences with a Neumann boundary.

``Gradient(shape)`` maps an N-d array ``x`` to ``g`` of shape ``(ndim, *shape)``
with ``g[a] = (x[.., k+1, ..] - x[.., k, ..]) / h_a`` along axis ``a`` and
``g[a] = 0`` at the last index along that axis (Neumann boundary). Its adjoint
is minus the (backward-difference) divergence, so ``Gradient.T @ Gradient`` is
the Neumann Laplacian with a minus sign.

It sits in the inner loop of every total-variation solver: 2-D and 3-D NumPy
inputs use fused numba kernels (one pass, no temporaries beyond the output,
rows in parallel on large arrays); other dimensions and torch tensors use a
vectorised path built from in-place slice differences.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tikhon._core.arrays import is_torch, torch_module
from .base import LinearOperator, _as_shape

__all__ = ["Gradient"]

# Below this many pixels a prange kernel's fork/join costs more than it saves.
# On an idle 2-core machine the serial kernels already run at memory bandwidth
# up to ~512x512; on an oversubscribed one every parallel region waits a
# scheduler time slice (~10 ms), so parallel runs only for large arrays.
_PARALLEL_MIN_SIZE = 1 << 20


def _check_spacing(spacing, ndim, where):
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        spacing = (float(spacing),) * ndim
    else:
        try:
            if isinstance(spacing, str):
                raise TypeError
            spacing = tuple(float(h) for h in spacing)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{where}: spacing must be a positive number or a sequence of {ndim}, "
                f"got {spacing!r}"
            ) from exc
        if len(spacing) != ndim:
            raise ValueError(
                f"{where}: spacing must have one entry per axis ({ndim}), got {len(spacing)}"
            )
    if not all(math.isfinite(h) and h > 0 for h in spacing):
        raise ValueError(f"{where}: spacing must be positive and finite, got {spacing}")
    return spacing


def _check_shape(shape, where):
    shape = _as_shape(shape, "shape")
    if len(shape) == 0:
        raise ValueError(f"{where}: shape must have at least one axis")
    if any(n == 0 for n in shape):
        raise ValueError(f"{where}: shape must have positive entries, got {shape}")
    return shape


def _axis_slice(ndim, axis, sl):
    idx = [slice(None)] * ndim
    idx[axis] = sl
    return tuple(idx)


class Gradient(LinearOperator):
    """Forward-difference gradient of N-d arrays with a Neumann boundary.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the input arrays (any number of axes, each of positive length).
    spacing : float or sequence of float, optional
        Grid spacing ``h`` (one per axis or shared); differences are divided by it.
    parallel : bool or None, optional
        Use the multi-threaded numba kernels (2-D and 3-D NumPy inputs). The
        default ``None`` picks them for arrays of at least 2**20 pixels when
        numba has more than one thread; pass ``False`` on a machine shared with
        other busy processes, where every parallel region waits for a core.

    Notes
    -----
    ``out[a][..., k, ...] = (x[..., k+1, ...] - x[..., k, ...]) / h_a`` for
    ``k < n_a - 1`` and ``0`` for ``k = n_a - 1``; the output has shape
    ``(ndim, *shape)``. The adjoint is ``-div``:
    ``(G^T p)_k = sum_a (p_a[k-1] - p_a[k]) / h_a`` with ``p_a[-1]`` and
    ``p_a[n_a - 1]`` read as 0. The operator norm has the closed form
    ``sqrt(sum_a 4 sin^2(pi (n_a - 1) / (2 n_a)) / h_a^2)`` (< ``2 sqrt(ndim) / h``
    for unit spacing), which :meth:`norm` returns exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import Gradient
    >>> G = Gradient((2, 3))
    >>> G(np.arange(6.0).reshape(2, 3))[1]
    array([[1., 1., 0.],
           [1., 1., 0.]])
    """

    # torch CPU tensors go through the numba kernels (zero-copy views); tests
    # switch this off to exercise the device-agnostic path that CUDA tensors take
    _numba_on_torch_cpu = True

    def __init__(self, shape, spacing=1.0, parallel=None):
        shape = _check_shape(shape, "Gradient")
        super().__init__(shape, (len(shape), *shape))
        self.ndim = len(shape)
        self.spacing = _check_spacing(spacing, self.ndim, "Gradient")
        self._inv_spacing = tuple(1.0 / h for h in self.spacing)
        if parallel is None:
            import numba

            parallel = math.prod(shape) >= _PARALLEL_MIN_SIZE and numba.get_num_threads() > 1
        elif not isinstance(parallel, bool):
            raise TypeError(f"Gradient: parallel must be a bool or None, got {parallel!r}")
        self._parallel = parallel

    # -- NumPy ---------------------------------------------------------------
    def _numba_kernel(self, adjoint):
        from ._kernels import gradient_numba as k

        name = f"grad{self.ndim}d" + ("_adjoint" if adjoint else "") + (
            "_parallel" if self._parallel else ""
        )
        return getattr(k, name)

    def _forward(self, x):
        if is_torch(x):
            return self._forward_torch(x)
        if self.ndim in (2, 3):
            x = np.ascontiguousarray(x)
            out = np.empty(self.out_shape, dtype=x.dtype)
            ih = [x.dtype.type(v) for v in self._inv_spacing]
            return self._numba_kernel(False)(x, out, *ih)
        return self._forward_numpy(x)

    def _adjoint(self, y):
        if is_torch(y):
            return self._adjoint_torch(y)
        if self.ndim in (2, 3):
            y = np.ascontiguousarray(y)
            out = np.empty(self.in_shape, dtype=y.dtype)
            ih = [y.dtype.type(v) for v in self._inv_spacing]
            return self._numba_kernel(True)(y, out, *ih)
        return self._adjoint_numpy(y)

    def _forward_numpy(self, x):
        out = np.empty(self.out_shape, dtype=x.dtype)
        nd = self.ndim
        for a in range(nd):
            oa = out[a]
            np.subtract(x[_axis_slice(nd, a, slice(1, None))],
                        x[_axis_slice(nd, a, slice(None, -1))],
                        out=oa[_axis_slice(nd, a, slice(None, -1))])
            oa[_axis_slice(nd, a, slice(-1, None))] = 0
            if self._inv_spacing[a] != 1.0:
                oa *= x.dtype.type(self._inv_spacing[a])
        return out

    def _adjoint_numpy(self, y):
        out = np.zeros(self.in_shape, dtype=y.dtype)
        nd = self.ndim
        for a in range(nd):
            if self.in_shape[a] == 1:
                continue
            p = y[a][_axis_slice(nd, a, slice(None, -1))]
            if self._inv_spacing[a] != 1.0:
                p = p * y.dtype.type(self._inv_spacing[a])
            head = out[_axis_slice(nd, a, slice(None, -1))]
            tail = out[_axis_slice(nd, a, slice(1, None))]
            np.subtract(head, p, out=head)
            np.add(tail, p, out=tail)
        return out

    # -- torch ---------------------------------------------------------------
    def _forward_torch(self, x):
        torch = torch_module()
        if x.device.type == "cpu" and self.ndim in (2, 3) and self._numba_on_torch_cpu:
            # the numba kernel on a zero-copy view beats torch's strided ops on CPU
            xn = x.detach().contiguous().numpy()
            return torch.from_numpy(self._forward(xn))
        out = x.new_empty(self.out_shape)
        for a, n in enumerate(self.in_shape):
            oa = out[a]
            if n > 1:
                torch.sub(x.narrow(a, 1, n - 1), x.narrow(a, 0, n - 1), out=oa.narrow(a, 0, n - 1))
            oa.narrow(a, n - 1, 1).zero_()
            if self._inv_spacing[a] != 1.0:
                oa.mul_(self._inv_spacing[a])
        return out

    def _adjoint_torch(self, y):
        torch = torch_module()
        if y.device.type == "cpu" and self.ndim in (2, 3) and self._numba_on_torch_cpu:
            yn = y.detach().contiguous().numpy()
            return torch.from_numpy(self._adjoint(yn))
        out = y.new_zeros(self.in_shape)
        for a, n in enumerate(self.in_shape):
            if n == 1:
                continue
            p = y[a].narrow(a, 0, n - 1)
            ih = self._inv_spacing[a]
            out.narrow(a, 0, n - 1).sub_(p, alpha=ih)
            out.narrow(a, 1, n - 1).add_(p, alpha=ih)
        return out

    # -- closed forms --------------------------------------------------------
    def norm(self, *args, **kwargs):
        """The exact operator norm (largest eigenvalue of the Neumann Laplacian, square-rooted)."""
        lam = sum(
            4.0 * math.sin(math.pi * (n - 1) / (2 * n)) ** 2 / h**2
            for n, h in zip(self.in_shape, self.spacing)
        )
        return math.sqrt(lam)

    def abs(self):
        """The operator with entries ``|G_ij|`` (sums instead of differences)."""
        return _AbsGradient(self)

    def _label(self):
        if all(h == 1.0 for h in self.spacing):
            return "Gradient"
        return f"Gradient[spacing={self.spacing}]"


class _AbsGradient(LinearOperator):
    """``|G|`` for a :class:`Gradient` ``G``: ``(x[k+1] + x[k]) / h``, last entry 0.

    Used once per solve for diagonal preconditioning (row and column sums),
    so a plain vectorised implementation is enough.
    """

    def __init__(self, grad):
        super().__init__(grad.in_shape, grad.out_shape)
        self.grad = grad

    def _forward(self, x):
        nd = self.grad.ndim
        torch = torch_module() if is_torch(x) else None
        out = x.new_zeros(self.out_shape) if torch else np.zeros(self.out_shape, x.dtype)
        for a, n in enumerate(self.in_shape):
            if n == 1:
                continue
            ih = self.grad._inv_spacing[a]
            s = x[_axis_slice(nd, a, slice(1, None))] + x[_axis_slice(nd, a, slice(None, n - 1))]
            out[a][_axis_slice(nd, a, slice(None, n - 1))] = s * ih
        return out

    def _adjoint(self, y):
        nd = self.grad.ndim
        torch = torch_module() if is_torch(y) else None
        out = y.new_zeros(self.in_shape) if torch else np.zeros(self.in_shape, y.dtype)
        for a, n in enumerate(self.in_shape):
            if n == 1:
                continue
            ih = self.grad._inv_spacing[a]
            p = y[a][_axis_slice(nd, a, slice(None, n - 1))] * ih
            out[_axis_slice(nd, a, slice(None, n - 1))] += p
            out[_axis_slice(nd, a, slice(1, None))] += p
        return out

    def abs(self):
        return self

    def _label(self):
        return f"|{self.grad._label()}|"
