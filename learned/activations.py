"""Sparsemax: the Euclidean projection onto the simplex as a differentiable activation.

``sparsemax(z) = argmin_{p in simplex} ||p - z||^2`` (Martins and Astudillo
2016), a sparse alternative to softmax. The forward pass is the library's
sorting-based simplex projection (the prox of
:class:`~tikhon.operators.prox.Simplex`,
:func:`~tikhon.operators.prox.indicators.project_simplex`); the backward pass
is the closed-form Jacobian-vector product on the support ``S = {p > 0}``:
``dz = s * (g - sum_S g / |S|)`` with ``s`` the support indicator.

References
----------
.. [MA16] A. F. T. Martins and R. F. Astudillo, "From softmax to sparsemax:
   A sparse model of attention and multi-label classification", ICML 2016.
"""

from __future__ import annotations

from tikhon._core.arrays import require_torch
from tikhon._core.checks import check_axis, check_real_floating
from tikhon.operators.prox.indicators import project_simplex

__all__ = ["sparsemax"]

_FUNCTION = None


def _function():
    global _FUNCTION
    if _FUNCTION is None:
        torch = require_torch()

        class _Sparsemax(torch.autograd.Function):
            @staticmethod
            def forward(ctx, z, dim):
                p = project_simplex(z.detach(), 1.0, dim)
                ctx.save_for_backward(p)
                ctx.dim = dim
                return p

            @staticmethod
            def backward(ctx, g):
                (p,) = ctx.saved_tensors
                s = (p > 0).to(g.dtype)
                mean = (g * s).sum(dim=ctx.dim, keepdim=True) / s.sum(dim=ctx.dim, keepdim=True)
                return s * (g - mean), None

        _FUNCTION = _Sparsemax
    return _FUNCTION


def sparsemax(z, dim=-1):
    """Sparsemax of ``z`` along ``dim``: the projection of each slice onto the unit simplex.

    Parameters
    ----------
    z : torch.Tensor
        Real float32/float64 logits.
    dim : int
        The axis of the classes (default ``-1``).

    Returns
    -------
    torch.Tensor
        Probabilities (nonnegative, summing to 1 along ``dim``, typically
        with exact zeros), differentiable in ``z`` (closed-form backward).

    Raises
    ------
    TypeError
        ``z`` not a floating tensor, ``dim`` not an int.
    ValueError
        ``dim`` out of range, ``z`` 0-dimensional or with an empty ``dim``.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import sparsemax
    >>> sparsemax(torch.tensor([2.0, 1.0, -1.0]))
    tensor([1., 0., 0.])
    >>> sparsemax(torch.tensor([0.5, 0.3, -1.0]))
    tensor([0.6000, 0.4000, 0.0000])
    """
    torch = require_torch()
    where = "sparsemax"
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{where}: z must be a torch.Tensor, got {type(z).__name__}")
    z = check_real_floating(z, "z", where)
    if z.ndim == 0:
        raise ValueError(f"{where}: z must have at least 1 dimension")
    dim = check_axis(dim, z.ndim, "dim", where)
    if z.shape[dim] == 0:
        raise ValueError(f"{where}: z has an empty dim {dim}")
    return _function().apply(z, dim)
