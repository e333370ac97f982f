"""The debiased Sinkhorn divergence between point clouds: :func:`sinkhorn_divergence`."""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import backend_of, is_torch, torch_module
from tikhon._core.checks import as_real_array, check_choice, check_finite_array, check_positive
from tikhon.solvers.transport.balanced import sinkhorn

__all__ = ["sinkhorn_divergence"]

_NAME = "sinkhorn_divergence"


def _cost_matrix(X, Y, cost):
    if is_torch(X):
        if callable(cost):
            return cost(X, Y)
        D = torch_module().cdist(X, Y)
        return D * D if cost == "sqeuclidean" else D
    X = as_real_array(X, "X", _NAME)
    Y = as_real_array(Y, "Y", _NAME)
    if callable(cost):
        return as_real_array(cost(X, Y), "cost(X, Y)", _NAME)
    D2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    np.maximum(D2, 0.0, out=D2)
    return D2 if cost == "sqeuclidean" else np.sqrt(D2)


def sinkhorn_divergence(X, Y, eps, a=None, b=None, cost="sqeuclidean", *, loss="entropic", **kwargs):
    r"""Debiased Sinkhorn divergence between two point clouds.

    .. math:: S_\varepsilon(a, b) = OT_\varepsilon(a, b)
              - \tfrac12 (OT_\varepsilon(a, a) + OT_\varepsilon(b, b))

    Parameters
    ----------
    X, Y : array or tensor, shape (n, d) and (m, d)
        Support points.
    eps : float
        Entropic regularisation (> 0).
    a, b : array or tensor, optional
        Weights (default uniform).
    cost : {"sqeuclidean", "euclidean"} or callable
        Ground cost; ``sqeuclidean`` is ``|x - y|^2`` (as POT's ``dist``).
    loss : {"entropic", "cost"}
        ``"entropic"``: :math:`OT_\varepsilon` is the entropic objective
        ``<C, P> + eps KL(P | a b^T)`` (Feydy et al. 2019; nonnegative,
        metrises weak convergence); ``"cost"``: only ``<C, P>`` (Genevay et al.
        2018; what POT's ``empirical_sinkhorn_divergence`` computes).
    **kwargs
        Passed to :func:`~tikhon.solvers.transport.sinkhorn` (``tol``,
        ``max_iter``, ...).

    Returns
    -------
    float or tensor
        The divergence (a 0-d tensor for torch inputs).
    """
    backend_of(_NAME, X=X, Y=Y, a=a, b=b)
    eps = check_positive(eps, "eps", _NAME)
    check_choice(loss, ("entropic", "cost"), "loss", _NAME)
    if not callable(cost):
        check_choice(cost, ("sqeuclidean", "euclidean"), "cost", _NAME)
    X, Y = (check_finite_array(Z if is_torch(Z) else as_real_array(Z, name, _NAME), name, _NAME)
            for name, Z in (("X", X), ("Y", Y)))
    for name, Z in (("X", X), ("Y", Y)):
        if Z.ndim != 2:
            raise ValueError(f"{_NAME}: {name} must be 2-D (points x dimensions), got shape {tuple(Z.shape)}")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{_NAME}: X and Y must have the same dimension, got {X.shape[1]} and {Y.shape[1]}")
    key = "objective" if loss == "entropic" else "cost"
    vals = []
    for P, Q, p, q in ((X, Y, a, b), (X, X, a, a), (Y, Y, b, b)):
        vals.append(sinkhorn(p, q, _cost_matrix(P, Q, cost), eps, **kwargs).info[key])
    return vals[0] - 0.5 * (vals[1] + vals[2])
