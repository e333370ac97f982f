"""Constraint sets of neural-network weights, as indicator functionals.

Each class is the indicator of a set (0 on it, ``inf`` off it) whose prox is
the Euclidean projection, on NumPy arrays and torch tensors alike; used as a
rule's functional in :func:`tikhon.learned.attach_prox` they give projected
training (after every optimizer step the weights are put back on the set).

* :class:`Oblique`: every slice along ``axis`` has unit l2 norm (the oblique
  manifold; non-convex). Projection: normalise each slice.
* :class:`SpectralBall`: ``sigma_max(X) <= radius`` (convex). Projection:
  clip the singular values.
* :class:`Stiefel`: orthonormal columns (tall) or rows (wide) (non-convex).
  Projection: the orthogonal polar factor ``U V^T``.
* :class:`TopK`: at most ``k`` non-zeros (the l0 ball; non-convex).
  Projection: keep the ``k`` entries of largest magnitude.
* :class:`ScaledBinary`: ``alpha * s`` with ``s in {-1, 1}^n``, ``alpha >= 0``
  (non-convex). Projection: ``mean|x| * sign(x)``.
* :class:`ScaledTernary`: ``alpha * s`` with ``s in {-1, 0, 1}^n`` (non-convex).
  Projection: exact, by sorting (keep the ``k`` largest magnitudes, ``k``
  maximising ``(sum of the k largest |x_i|)^2 / k``).

Matrix sets act on the last two axes (a batch over the leading ones); vector
sets act along ``axis`` (``None``: the whole array). Non-convex sets have
``is_convex = False`` and no conjugate; their projection may be set valued
(at ties, zero slices, rank deficiency), and one element of it is returned,
chosen deterministically. Membership is tested with the indicators' relative
tolerance (:func:`~tikhon.operators.prox.base.indicator_tol`). The prox ignores
``tau`` (a projection does not depend on the step).
"""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import copy, is_torch, torch_module
from tikhon._core.checks import check_axis, check_int, check_positive
from tikhon.operators.prox.base import Functional, indicator_tol

__all__ = ["Oblique", "ScaledBinary", "ScaledTernary", "SpectralBall", "Stiefel", "TopK"]


def _check_matrix(x, where):
    if x.ndim < 2:
        raise ValueError(f"{where}: x must have at least 2 dimensions, got shape {tuple(x.shape)}")


def _svd(x):
    if is_torch(x):
        return torch_module().linalg.svd(x, full_matrices=False)
    return np.linalg.svd(x, full_matrices=False)


def _svdvals64(x):
    if is_torch(x):
        return torch_module().linalg.svdvals(x.double()).numpy(force=True)
    return np.linalg.svd(x.astype(np.float64, copy=False), compute_uv=False)


def _to64(x):
    return x.double().numpy(force=True) if is_torch(x) else x.astype(np.float64, copy=False)


def _flat_axis(x, axis):
    """``x`` with the working axis last (``None``: flattened to one slice)."""
    if axis is None:
        return x.reshape(-1)
    return torch_module().movedim(x, axis, -1) if is_torch(x) else np.moveaxis(x, axis, -1)


def _unflat_axis(v, x, axis):
    if axis is None:
        return v.reshape(x.shape)
    return torch_module().movedim(v, -1, axis) if is_torch(x) else np.moveaxis(v, -1, axis)


def _sign_plus(x):
    """``sign(x)`` with ``sign(0) = +1`` (a point of the binary set)."""
    if is_torch(x):
        torch = torch_module()
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    return np.where(x >= 0, 1, -1).astype(x.dtype)


def _axis_or_none(axis, where):
    return None if axis is None else check_axis(axis, None, "axis", where)


def _ndim_axis(x, axis, where):
    return None if axis is None else check_axis(axis, x.ndim, "axis", where)


class Oblique(Functional):
    """Indicator of the oblique manifold: every slice along ``axis`` has unit l2 norm.

    For a ``Linear.weight`` of shape ``(out, in)`` and ``axis=-1`` the rows
    (one per output neuron) lie on the unit sphere, the constraint behind
    Norm Loss (Georgiou et al. 2021).

    Parameters
    ----------
    axis : int
        The axis along which each slice is normalised (default ``-1``).

    Notes
    -----
    The set is not convex (``is_convex = False``). Its projection normalises
    each slice, ``x_i / ||x_i||``; a zero slice (where every unit vector is
    nearest) is sent to the first basis vector.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import Oblique
    >>> Oblique().prox(np.array([[3.0, 4.0], [0.0, 2.0]]))
    array([[0.6, 0.8],
           [0. , 1. ]])
    """

    is_convex = False

    def __init__(self, axis=-1):
        self.axis = check_axis(axis, None, "axis", "Oblique")

    def _norms(self, x):
        axis = check_axis(self.axis, x.ndim, "axis", "Oblique")
        if is_torch(x):
            return torch_module().linalg.vector_norm(x, dim=axis, keepdim=True), axis
        return np.linalg.norm(x, axis=axis, keepdims=True), axis

    def _call(self, x):
        if x.ndim == 0:
            raise ValueError("Oblique: x must have at least 1 dimension")
        n, _ = self._norms(x.double() if is_torch(x) else x.astype(np.float64, copy=False))
        return 0.0 if float(abs(n - 1).max()) <= indicator_tol(x) else math.inf

    def _prox(self, x, tau):
        if x.ndim == 0:
            raise ValueError("Oblique.prox: x must have at least 1 dimension")
        axis = check_axis(self.axis, x.ndim, "axis", "Oblique")
        # each slice is scaled by its largest magnitude first, so that the squared
        # norm neither underflows (tiny slices) nor overflows; a zero slice goes to
        # e_1 along the axis (one point of the set-valued projection)
        if is_torch(x):
            torch = torch_module()
            m = x.abs().amax(dim=axis, keepdim=True)
            # m != 0 rather than m > 0: a NaN slice stays NaN instead of going to e_1
            y = x / torch.where(m != 0, m, torch.ones_like(m))
            n = torch.linalg.vector_norm(y, dim=axis, keepdim=True)
            e1 = torch.zeros_like(x)
            e1.narrow(axis, 0, 1).fill_(1)
            return torch.where(m != 0, y / torch.where(m != 0, n, torch.ones_like(n)), e1)
        m = np.abs(x).max(axis=axis, keepdims=True)
        y = x / np.where(m != 0, m, 1).astype(x.dtype)
        n = np.linalg.norm(y, axis=axis, keepdims=True)
        e1 = np.zeros_like(x)
        idx = [slice(None)] * x.ndim
        idx[axis] = 0
        e1[tuple(idx)] = 1
        return np.where(m != 0, y / np.where(m != 0, n, 1), e1).astype(x.dtype, copy=False)

    def __repr__(self):
        return f"Oblique(axis={self.axis})"


class SpectralBall(Functional):
    """Indicator of the spectral-norm ball ``{X : sigma_max(X) <= radius}``.

    The matrices are the last two axes of the input (a batch over the leading
    ones); each matrix is constrained.

    Parameters
    ----------
    radius : float
        Positive bound on the largest singular value.

    Notes
    -----
    Convex. The projection clips the singular values,
    ``U min(Sigma, radius) V^T`` (one batched thin SVD). The conjugate is
    ``radius`` times the nuclear norm (summed over the batch).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import SpectralBall
    >>> SpectralBall(1.0).prox(np.diag([3.0, 0.5]))
    array([[1. , 0. ],
           [0. , 0.5]])
    """

    finite_input = True

    def __init__(self, radius=1.0):
        self.radius = check_positive(radius, "radius", "SpectralBall")

    def _call(self, x):
        _check_matrix(x, "SpectralBall")
        s = _svdvals64(x)
        return 0.0 if float(s.max(initial=0.0)) <= self.radius * (1 + indicator_tol(x)) else math.inf

    def _prox(self, x, tau):
        _check_matrix(x, "SpectralBall.prox")
        u, s, vh = _svd(x)
        if is_torch(x):
            s = s.clamp(max=self.radius)
            return (u * s.unsqueeze(-2)) @ vh
        s = np.minimum(s, x.dtype.type(self.radius))
        return ((u * s[..., None, :]) @ vh).astype(x.dtype, copy=False)

    def _conj_call(self, y):
        _check_matrix(y, "SpectralBall.conj")
        return self.radius * float(_svdvals64(y).sum())

    def __repr__(self):
        return f"SpectralBall(radius={self.radius:g})"


class Stiefel(Functional):
    """Indicator of the Stiefel manifold: orthonormal columns (tall) or rows (wide).

    For an ``(m, n)`` matrix: ``X^T X = I_n`` when ``m >= n``, ``X X^T = I_m``
    otherwise; the last two axes are the matrix (a batch over the leading ones).

    Notes
    -----
    Not convex (``is_convex = False``). The projection is the orthogonal polar
    factor ``U V^T`` of the thin SVD ``X = U Sigma V^T`` (Higham 1986); it is
    unique when ``X`` has full rank, and one point of the set-valued
    projection otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import Stiefel
    >>> Stiefel().prox(np.array([[2.0, 0.0], [0.0, 0.5]]))
    array([[1., 0.],
           [0., 1.]])
    """

    finite_input = True

    is_convex = False

    def _call(self, x):
        _check_matrix(x, "Stiefel")
        a = _to64(x)
        m, n = a.shape[-2:]
        at = np.swapaxes(a, -1, -2)
        g = at @ a if m >= n else a @ at
        err = np.abs(g - np.eye(min(m, n))).max(initial=0.0)
        return 0.0 if err <= 10 * indicator_tol(x) else math.inf

    def _prox(self, x, tau):
        _check_matrix(x, "Stiefel.prox")
        u, _, vh = _svd(x)
        out = u @ vh
        return out if is_torch(x) else out.astype(x.dtype, copy=False)


class TopK(Functional):
    """Indicator of the l0 ball ``{x : ||x||_0 <= k}`` (per slice along ``axis``).

    Parameters
    ----------
    k : int
        Number of non-zeros kept (``>= 1``).
    axis : int or None
        ``None``: one budget for the whole array; an int: ``k`` non-zeros in
        every slice along ``axis`` (e.g. ``axis=-1``: per row).

    Notes
    -----
    Not convex. The projection keeps the ``k`` entries of largest magnitude
    (ties broken by sort order), the step of iterative hard thresholding
    (Blumensath and Davies 2009). O(n log k) by ``topk`` / ``argpartition``.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import TopK
    >>> TopK(2).prox(np.array([0.5, -3.0, 1.0, 2.0]))
    array([ 0., -3.,  0.,  2.])
    """

    is_convex = False

    def __init__(self, k, axis=None):
        self.k = check_int(k, "k", "TopK", minimum=1)
        self.axis = _axis_or_none(axis, "TopK")

    def _call(self, x):
        axis = _ndim_axis(x, self.axis, "TopK")
        v = _flat_axis(x != 0, axis)
        nnz = v.sum(-1) if is_torch(x) else np.count_nonzero(v, axis=-1)
        return 0.0 if int(nnz.max()) <= self.k else math.inf

    def _prox(self, x, tau):
        axis = _ndim_axis(x, self.axis, "TopK.prox")
        v = _flat_axis(x, axis)
        n = v.shape[-1] if v.ndim else 1
        if self.k >= n:
            return copy(x)
        if is_torch(x):
            torch = torch_module()
            idx = torch.topk(v.abs(), self.k, dim=-1, sorted=False).indices
            out = torch.zeros_like(v).scatter(-1, idx, v.gather(-1, idx))
        else:
            idx = np.argpartition(np.abs(v), n - self.k, axis=-1)[..., n - self.k:]
            out = np.zeros_like(v)
            np.put_along_axis(out, idx, np.take_along_axis(v, idx, axis=-1), axis=-1)
        return _unflat_axis(out, x, axis)

    def __repr__(self):
        return f"TopK(k={self.k}, axis={self.axis})"


class _ScaledSigns(Functional):
    is_convex = False

    def __init__(self, axis=None):
        self.axis = _axis_or_none(axis, self._label())

    def _call(self, x):
        axis = _ndim_axis(x, self.axis, self._label())
        a = abs(_flat_axis(_to64(x), axis))
        if a.size == 0:
            return 0.0
        nz = a > 0
        if self._binary:
            top = a.max(axis=-1, keepdims=True)
            ok = np.all(np.abs(a - top) <= indicator_tol(x) * (1 + top))
        else:
            top = a.max(axis=-1, keepdims=True)
            ok = np.all(~nz | (np.abs(a - top) <= indicator_tol(x) * (1 + top)))
        return 0.0 if ok else math.inf

    def __repr__(self):
        return f"{self._label()}(axis={self.axis})"


class ScaledBinary(_ScaledSigns):
    """Indicator of the scaled binary vectors ``{alpha s : s in {-1, 1}^n, alpha >= 0}``.

    One scale ``alpha`` per slice along ``axis`` (``None``: one for the array;
    ``axis=-1`` on a ``Linear.weight``: one per output neuron, as in XNOR-Net).

    Parameters
    ----------
    axis : int, optional
        The axis along which each slice has its own scale (``None``: one scale).

    Notes
    -----
    Not convex. The projection is ``mean|x| * sign(x)`` (Rastegari et al.
    2016: for fixed signs the best scale is the mean magnitude, and the signs
    of ``x`` are optimal for any scale), with ``sign(0) = +1``.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import ScaledBinary
    >>> ScaledBinary().prox(np.array([1.0, -3.0, 2.0]))
    array([ 2., -2.,  2.])
    """

    _binary = True

    def _prox(self, x, tau):
        axis = _ndim_axis(x, self.axis, "ScaledBinary.prox")
        v = _flat_axis(x, axis)
        if v.numel() == 0 if is_torch(x) else v.size == 0:
            return copy(x)
        alpha = abs(v).mean(-1, keepdim=True) if is_torch(x) else np.abs(v).mean(-1, keepdims=True, dtype=x.dtype)
        return _unflat_axis(alpha * _sign_plus(v), x, axis)


class ScaledTernary(_ScaledSigns):
    """Indicator of the scaled ternary vectors ``{alpha s : s in {-1, 0, 1}^n, alpha >= 0}``.

    One scale per slice along ``axis`` (``None``: one for the array).

    Parameters
    ----------
    axis : int, optional
        The axis along which each slice has its own scale (``None``: one scale).

    Notes
    -----
    Not convex. The exact projection: with ``u`` the magnitudes sorted in
    decreasing order and ``c_k`` their partial sums, keeping the ``k`` largest
    at the scale ``c_k / k`` removes ``c_k^2 / k`` from the squared distance,
    so ``k* = argmax_k c_k^2 / k`` and ``z = (c_k* / k*) sign(x)`` on the ``k*``
    largest entries, 0 elsewhere. (Ternary weight networks, Li et al. 2016,
    use the approximation ``threshold = 0.7 mean|x|`` instead.)

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators.prox import ScaledTernary
    >>> ScaledTernary().prox(np.array([3.0, -2.9, 0.1]))
    array([ 2.95, -2.95,  0.  ])
    """

    _binary = False

    def _prox(self, x, tau):
        axis = _ndim_axis(x, self.axis, "ScaledTernary.prox")
        v = _flat_axis(x, axis)
        if v.shape[-1] == 0:
            return copy(x)
        if is_torch(x):
            torch = torch_module()
            a = v.abs()
            u, order = torch.sort(a, dim=-1, descending=True, stable=True)
            c = torch.cumsum(u.double(), dim=-1)
            k = torch.arange(1, v.shape[-1] + 1, dtype=torch.float64, device=x.device)
            kstar = torch.argmax(c * c / k, dim=-1, keepdim=True)  # first maximiser
            alpha = (torch.gather(c, -1, kstar) / (kstar + 1).double()).to(x.dtype)
            rank = torch.empty_like(order).scatter_(-1, order, torch.arange(v.shape[-1], device=x.device).expand_as(order))
            keep = rank <= kstar
            out = torch.where(keep, alpha * torch.sign(v), torch.zeros_like(v))
        else:
            a = np.abs(v)
            order = np.argsort(-a, axis=-1, kind="stable")
            u = np.take_along_axis(a, order, axis=-1)
            c = np.cumsum(u, axis=-1, dtype=np.float64)
            k = np.arange(1, v.shape[-1] + 1, dtype=np.float64)
            kstar = np.argmax(c * c / k, axis=-1)[..., None]
            alpha = (np.take_along_axis(c, kstar, axis=-1) / (kstar + 1)).astype(x.dtype)
            rank = np.argsort(order, axis=-1, kind="stable")
            keep = rank <= kstar
            out = np.where(keep, alpha * np.sign(v), 0).astype(x.dtype, copy=False)
        return _unflat_axis(out, x, axis)
