"""Linear operators on N-d arrays: the base class, its algebra and the dot test.

A concrete operator subclasses :class:`LinearOperator` and implements two
private methods, ``_forward`` and ``_adjoint``, which receive inputs whose shape
and dtype have already been checked (a NumPy array or a torch tensor) and must
return an output of the same array type, device and dtype. Everything else
(validation, ``.T``, composition, sums, scaling, stacking, the norm, autograd
on torch tensors) is provided here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tikhon._core.arrays import is_torch, join_flat, split_flat, torch_module, vdot
from tikhon._core.checks import (
    as_real_array,
    check_choice,
    check_float_dtype,
    check_operator,
    check_positive,
    check_real,
    check_real_floating,
)
from tikhon._core.arrays import norm as _backend_norm

__all__ = [
    "LinearOperator",
    "AdjointOperator",
    "Composition",
    "Sum",
    "Scaled",
    "Stacked",
    "stack",
    "dot_test",
    "aslinearoperator",
]


def _as_shape(shape, name):
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}") from exc
    if any(s < 0 for s in shape):
        raise ValueError(f"{name} must have non-negative entries, got {shape}")
    return shape


class LinearOperator:
    """A linear map from arrays of ``in_shape`` to arrays of ``out_shape``.

    Parameters
    ----------
    in_shape, out_shape : tuple of int
        Shapes of the input and output arrays (never flattened by the user).
    dtype : numpy dtype, optional
        The floating dtype used by :meth:`norm` and :func:`dot_test` by default.
        Inputs may be float32 or float64; outputs keep the input's dtype.

    Notes
    -----
    Subclasses implement ``_forward(x)`` and ``_adjoint(y)``. On torch tensors
    that require gradients, :meth:`forward` and :meth:`adjoint` go through a
    ``torch.autograd.Function`` whose backward is the other map, so autograd
    uses the matched adjoint.
    """

    def __init__(self, in_shape, out_shape, dtype=np.float64):
        self.in_shape = _as_shape(in_shape, "in_shape")
        self.out_shape = _as_shape(out_shape, "out_shape")
        self.dtype = check_float_dtype(dtype, "dtype", type(self).__name__)
        self._norm_cache = {}
        self._adjoint_op = None

    # -- to be implemented by subclasses -------------------------------------
    def _forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement _forward")

    def _adjoint(self, y):
        raise NotImplementedError(f"{type(self).__name__} does not implement _adjoint")

    # -- public maps ----------------------------------------------------------
    def _validate(self, x, shape, name, method):
        x = check_real_floating(x, name, f"{self._label()}.{method}")
        if tuple(x.shape) != shape:
            raise ValueError(
                f"{self._label()}.{method}: {name} has shape {tuple(x.shape)}, "
                f"expected {shape}"
            )
        return x

    def forward(self, x):
        """Apply the operator to ``x`` (shape ``in_shape``)."""
        x = self._validate(x, self.in_shape, "x", "forward")
        return _apply(self, x, adjoint=False)

    def adjoint(self, y):
        """Apply the adjoint to ``y`` (shape ``out_shape``)."""
        y = self._validate(y, self.out_shape, "y", "adjoint")
        return _apply(self, y, adjoint=True)

    def __call__(self, x):
        return self.forward(x)

    @property
    def T(self):
        """The adjoint operator (``A.T.T is A``)."""
        if self._adjoint_op is None:
            self._adjoint_op = AdjointOperator(self)
        return self._adjoint_op

    H = T

    # -- algebra --------------------------------------------------------------
    def __matmul__(self, other):
        if isinstance(other, LinearOperator):
            return Composition(self, other)
        return NotImplemented

    def __add__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, other)
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, Scaled(other, -1.0))
        return NotImplemented

    def __neg__(self):
        return Scaled(self, -1.0)

    def __mul__(self, c):
        if isinstance(c, numbers.Real) and not isinstance(c, bool):
            return Scaled(self, float(c))
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, c):
        if isinstance(c, numbers.Real) and not isinstance(c, bool):
            return Scaled(self, 1.0 / float(c))
        return NotImplemented

    # -- entrywise absolute value (diagonal preconditioning) -----------------
    def abs(self):
        """The operator ``|K|`` with entries ``|K_ij|``.

        Pock and Chambolle's diagonal preconditioning (alpha = 1) needs the row
        sums ``|K| 1`` and column sums ``|K|^T 1``. For compositions and sums the
        result is an entrywise upper bound (``|AB| <= |A||B|``), which keeps the
        preconditioned steps valid (only smaller).

        Returns
        -------
        LinearOperator

        Raises
        ------
        NotImplementedError
            For operators without a closed form (pass explicit step sizes).
        """
        raise NotImplementedError(
            f"{self._label()} does not provide |K| (needed for diagonal preconditioning); "
            "pass explicit step sizes instead"
        )

    # -- norm -----------------------------------------------------------------
    def norm(self, max_iter=300, tol=1e-8, seed=0, like=None):
        """Operator 2-norm (largest singular value) by seeded power iteration.

        The result is cached per ``(max_iter, tol, seed)``. Power iteration
        approaches the norm from below; solvers that derive step sizes from it
        add a small safety margin.

        Parameters
        ----------
        max_iter : int
            Maximum number of iterations on ``A^T A``.
        tol : float
            Relative change of the eigenvalue estimate that stops the iteration.
        seed : int
            Seed of the random starting vector.
        like : torch.Tensor, optional
            Run the iteration on this tensor's device and in its dtype instead
            of on float64 NumPy arrays: solvers pass their data so that an
            operator defined only for, say, CUDA tensors works, and no data
            leaves the device. The starting vector is the same; in float32 the
            estimate is accurate to about 1e-6 relative (solvers keep a margin).

        Returns
        -------
        float
        """
        key = (int(max_iter), float(tol), int(seed))
        if key not in self._norm_cache:
            self._norm_cache[key] = self._power_iteration(*key, like=like)
        return self._norm_cache[key]

    def _power_iteration(self, max_iter, tol, seed, like=None):
        if math.prod(self.in_shape) == 0 or math.prod(self.out_shape) == 0:
            return 0.0
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.in_shape)
        x /= np.linalg.norm(x)
        if like is not None and is_torch(like):
            torch = torch_module()
            x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
            # below a few ulps the eigenvalue estimate only wanders with rounding
            tol = max(tol, 8 * torch.finfo(like.dtype).eps)
            with torch.no_grad():
                return self._power_loop(x, max_iter, tol)
        return self._power_loop(x, max_iter, tol)

    def _power_loop(self, x, max_iter, tol):
        lam = 0.0
        for _ in range(max_iter):
            y = self._adjoint(self._forward(x))
            lam_new = _backend_norm(y)
            if lam_new == 0.0:
                return 0.0
            x = y / lam_new
            if abs(lam_new - lam) <= tol * lam_new:
                lam = lam_new
                break
            lam = lam_new
        return math.sqrt(lam)

    # -- printing -------------------------------------------------------------
    def _label(self):
        return type(self).__name__

    def __repr__(self):
        return f"{self._label()}(in_shape={self.in_shape}, out_shape={self.out_shape})"


def _apply(op, x, adjoint):
    """Apply ``op`` (or its adjoint) to a validated input, with autograd on torch."""
    if is_torch(x):
        torch = torch_module()
        if torch.is_grad_enabled() and x.requires_grad:
            return _autograd_function()(x, op, adjoint)
    out = op._adjoint(x) if adjoint else op._forward(x)
    if not is_torch(out) and out.dtype != x.dtype:
        out = out.astype(x.dtype, copy=False)
    return out


_AUTOGRAD = None


def _autograd_function():
    """Build (once) the torch.autograd.Function that uses the matched adjoint."""
    global _AUTOGRAD
    if _AUTOGRAD is None:
        torch = torch_module()

        class _LinearApply(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, op, adjoint):
                ctx.op = op
                ctx.adjoint = adjoint
                return op._adjoint(x) if adjoint else op._forward(x)

            @staticmethod
            def backward(ctx, grad):
                # the transpose of a linear map is the other map; going through
                # _apply keeps higher-order derivatives available
                return _apply(ctx.op, grad.contiguous(), not ctx.adjoint), None, None

        _AUTOGRAD = _LinearApply.apply
    return _AUTOGRAD


class AdjointOperator(LinearOperator):
    """The adjoint of an operator; ``A.T`` returns one and its ``.T`` is ``A``.

    Parameters
    ----------
    op : LinearOperator
        The operator whose adjoint this is.
    """

    def __init__(self, op):
        check_operator(op, "op", "AdjointOperator")
        super().__init__(op.out_shape, op.in_shape, op.dtype)
        self.op = op
        self._adjoint_op = op

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    def norm(self, *args, **kwargs):
        return self.op.norm(*args, **kwargs)

    def abs(self):
        return self.op.abs().T

    def _label(self):
        return f"{self.op._label()}.T"


class Composition(LinearOperator):
    """``A @ B``: apply ``B`` then ``A``.

    Parameters
    ----------
    A, B : LinearOperator
        ``B.out_shape`` must equal ``A.in_shape``.
    """

    def __init__(self, A, B):
        check_operator(A, "A", "Composition")
        check_operator(B, "B", "Composition")
        if A.in_shape != B.out_shape:
            raise ValueError(
                f"Composition: cannot compose A = {A._label()} (in_shape {A.in_shape}) with "
                f"B = {B._label()} (out_shape {B.out_shape})"
            )
        super().__init__(B.in_shape, A.out_shape, np.result_type(A.dtype, B.dtype))
        self.A, self.B = A, B

    def _forward(self, x):
        return self.A._forward(self.B._forward(x))

    def _adjoint(self, y):
        return self.B._adjoint(self.A._adjoint(y))

    def abs(self):
        return Composition(self.A.abs(), self.B.abs())

    def _label(self):
        return f"({self.A._label()} @ {self.B._label()})"


class Sum(LinearOperator):
    """``A + B`` for operators of equal shapes.

    Parameters
    ----------
    A, B : LinearOperator
        Operators with the same ``in_shape`` and ``out_shape``.
    """

    def __init__(self, A, B):
        check_operator(A, "A", "Sum")
        check_operator(B, "B", "Sum")
        if A.in_shape != B.in_shape or A.out_shape != B.out_shape:
            raise ValueError(
                f"Sum: cannot add A = {A._label()} ({A.in_shape} -> {A.out_shape}) and "
                f"B = {B._label()} ({B.in_shape} -> {B.out_shape}): they need the same in_shape and out_shape"
            )
        super().__init__(A.in_shape, A.out_shape, np.result_type(A.dtype, B.dtype))
        self.A, self.B = A, B

    def _forward(self, x):
        return self.A._forward(x) + self.B._forward(x)

    def _adjoint(self, y):
        return self.A._adjoint(y) + self.B._adjoint(y)

    def abs(self):
        return Sum(self.A.abs(), self.B.abs())

    def _label(self):
        return f"({self.A._label()} + {self.B._label()})"


class Scaled(LinearOperator):
    """``c * A`` for a real scalar ``c``.

    Parameters
    ----------
    op : LinearOperator
        The operator ``A``.
    c : float
        The scale.
    """

    def __init__(self, op, c):
        check_operator(op, "op", "Scaled")
        super().__init__(op.in_shape, op.out_shape, op.dtype)
        self.op, self.c = op, check_real(c, "c", "Scaled")

    def _forward(self, x):
        return self.c * self.op._forward(x)

    def _adjoint(self, y):
        return self.c * self.op._adjoint(y)

    def norm(self, *args, **kwargs):
        return abs(self.c) * self.op.norm(*args, **kwargs)

    def abs(self):
        return Scaled(self.op.abs(), abs(self.c))

    def _label(self):
        return f"{self.c:g} * {self.op._label()}"


class Stacked(LinearOperator):
    """Vertical stack ``[A; B; ...]`` of operators sharing ``in_shape``.

    The output is the flat concatenation of the blocks' outputs, of shape
    ``(sum of sizes,)``; :meth:`split` and :meth:`join` convert between the flat
    vector and the list of block arrays (``split`` returns views).

    Parameters
    ----------
    ops : sequence of LinearOperator
        The blocks, all with the same ``in_shape`` (see :func:`stack`).
    """

    def __init__(self, ops):
        ops = list(ops)
        if not ops:
            raise ValueError("stack: ops must hold at least one operator")
        for op in ops:
            check_operator(op, "each of ops", "stack")
            if op.in_shape != ops[0].in_shape:
                raise ValueError(
                    f"stack: all operators need the same in_shape; {ops[0]._label()} has "
                    f"{ops[0].in_shape}, {op._label()} has {op.in_shape}"
                )
        self.ops = ops
        self.block_shapes = [op.out_shape for op in ops]
        self.block_sizes = [math.prod(s) for s in self.block_shapes]
        self._offsets = np.concatenate([[0], np.cumsum(self.block_sizes)]).astype(int)
        super().__init__(ops[0].in_shape, (int(self._offsets[-1]),), np.result_type(*[o.dtype for o in ops]))

    def split(self, y):
        """Views of the flat vector ``y`` as the list of block arrays.

        Parameters
        ----------
        y : array
            A flat vector of shape ``out_shape``.

        Returns
        -------
        list of array
            One view per block, of the block's ``out_shape``.
        """
        return split_flat(y, self._offsets, self.block_shapes)

    def join(self, parts):
        """Flat concatenation of block arrays (the inverse of :meth:`split`).

        Parameters
        ----------
        parts : sequence of array
            One array per block, of the block's ``out_shape``.

        Returns
        -------
        array
            The flat vector of shape ``out_shape``.
        """
        return join_flat(parts)

    def _forward(self, x):
        return self.join([op._forward(x) for op in self.ops])

    def _adjoint(self, y):
        # slices of a flat contiguous vector reshape to contiguous views
        parts = self.split(y)
        out = self.ops[0]._adjoint(parts[0])
        for op, p in zip(self.ops[1:], parts[1:]):
            out = out + op._adjoint(p)
        return out

    def abs(self):
        return Stacked([op.abs() for op in self.ops])

    def _label(self):
        return "stack([" + ", ".join(op._label() for op in self.ops) + "])"


def stack(ops):
    """Stack operators vertically: ``stack([A, B])(x)`` concatenates ``A x`` and ``B x``.

    Parameters
    ----------
    ops : sequence of LinearOperator
        Operators with the same ``in_shape``.

    Returns
    -------
    Stacked
        Output shape ``(sum of output sizes,)``; use ``.split`` to get the blocks.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import Gradient, Identity, stack
    >>> K = stack([Identity((4, 4)), Gradient((4, 4))])
    >>> K.out_shape  # 16 + 2 * 16 entries, flat
    (48,)
    >>> [b.shape for b in K.split(K(np.ones((4, 4))))]
    [(4, 4), (2, 4, 4)]
    """
    return Stacked(ops)


def _random_like(shape, dtype, rng, backend, device):
    arr = rng.standard_normal(shape).astype(dtype)
    if backend == "torch":
        torch = torch_module() or __import__("torch")
        return torch.from_numpy(arr).to(device)
    return arr


def dot_test(A, dtype=None, rng=0, rtol=None, backend="numpy", device="cpu", raise_error=True):
    """Check ``<A x, y> == <x, A^T y>`` on random inputs.

    Parameters
    ----------
    A : LinearOperator
        The operator to check.
    dtype : numpy dtype, optional
        float32 or float64 (default: ``A.dtype``).
    rng : int or numpy.random.Generator
        Seed or generator for the random vectors.
    rtol : float, optional
        Tolerance on the relative error (default 1e-10 in float64, 1e-4 in float32).
    backend : {"numpy", "torch"}
        Array type to test with.
    device : str
        torch device when ``backend="torch"``.
    raise_error : bool
        Raise ``AssertionError`` when the relative error exceeds ``rtol``.

    Returns
    -------
    float
        The relative error ``|<Ax, y> - <x, A^T y>| / max(|<Ax, y>|, |<x, A^T y>|)``.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import Gradient, dot_test
    >>> err = dot_test(Gradient((16, 16)))  # raises AssertionError when the adjoint is wrong
    >>> bool(err < 1e-12)  # the relative mismatch of <A x, y> and <x, A^T y>
    True
    """
    check_operator(A, "A", "dot_test")
    dtype = check_float_dtype(A.dtype if dtype is None else dtype, "dtype", "dot_test")
    check_choice(backend, ("numpy", "torch"), "backend", "dot_test")
    if rtol is None:
        rtol = 1e-10 if dtype == np.float64 else 1e-4
    rtol = check_positive(rtol, "rtol", "dot_test")
    rng = np.random.default_rng(rng)
    x = _random_like(A.in_shape, dtype, rng, backend, device)
    y = _random_like(A.out_shape, dtype, rng, backend, device)
    lhs = vdot(A.forward(x), y)
    rhs = vdot(x, A.adjoint(y))
    scale = max(abs(lhs), abs(rhs))
    err = abs(lhs - rhs) / scale if scale > 0 else 0.0
    if raise_error and err > rtol:
        raise AssertionError(
            f"dot test failed for {A._label()}: <Ax,y>={lhs:.12g}, <x,A^T y>={rhs:.12g}, "
            f"relative error {err:.3g} > {rtol:g}"
        )
    return err


def aslinearoperator(A):
    """Wrap an operator as a ``scipy.sparse.linalg.LinearOperator`` on flat vectors.

    Parameters
    ----------
    A : LinearOperator

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Of shape ``(prod(out_shape), prod(in_shape))``.
    """
    from scipy.sparse.linalg import LinearOperator as ScipyLinearOperator

    check_operator(A, "A", "aslinearoperator")
    n_in, n_out = math.prod(A.in_shape), math.prod(A.out_shape)

    def _real(v, name):
        v = np.asarray(v)
        # ints and bools are converted; complex would lose its imaginary part
        return v if v.dtype in (np.float32, np.float64) else as_real_array(v, name, "aslinearoperator", A.dtype)

    def matvec(v):
        return A.forward(_real(v, "x").reshape(A.in_shape)).reshape(-1)

    def rmatvec(v):
        return A.adjoint(_real(v, "y").reshape(A.out_shape)).reshape(-1)

    return ScipyLinearOperator((n_out, n_in), matvec=matvec, rmatvec=rmatvec, dtype=A.dtype)

