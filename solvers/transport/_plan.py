"""The plan ``P = exp((f + g - C) / eps)`` of a pair of potentials, with what the results report.

NumPy: one fused numba pass (plan, row sums, column sums per block, ``<C, P>``
and ``sum P log P``). Torch: whole-tensor ops, autograd kept through the plan,
its cost and its objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tikhon._core.arrays import is_torch, torch_module, xp_where

__all__ = ["Plan", "plan_of", "kl_divergence"]


@dataclass
class Plan:
    """A plan and its statistics.

    Attributes
    ----------
    P : array or tensor
        The plan.
    row, col : array or tensor
        Its marginals.
    cost : float or tensor
        ``<C, P>``.
    objective : float or tensor
        The entropic objective ``<C, P> + eps KL(P | a b^T)``.
    marginal_error : float
        ``||P 1 - a||_1 + ||P^T 1 - b||_1`` (accumulated in float64).
    """

    P: Any
    row: Any
    col: Any
    cost: Any
    objective: Any
    marginal_error: float


def _numpy_plan(C, f, g, eps, a, b):
    from tikhon.solvers.transport import _sinkhorn_kernels as kern

    n, m = C.shape
    P = np.empty((n, m))
    row = np.empty(n)
    col_part = np.zeros((max(1, min(kern.numba_threads(), n)), m))
    cost, plogp = kern.plan_and_stats(C, f, g, eps, P, row, col_part)
    col = col_part.sum(axis=0)
    err = float(np.abs(row - a).sum() + np.abs(col - b).sum())
    # KL(P | a b^T) = sum P log P - <row, log a> - <col, log b> - sum P + |a| |b|;
    # a point whose plan row vanishes contributes nothing whatever its mass
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(row > 0, np.log(np.where(a > 0, a, 1.0)), 0.0)
        lb = np.where(col > 0, np.log(np.where(b > 0, b, 1.0)), 0.0)
    kl = plogp - row @ la - col @ lb - row.sum() + a.sum() * b.sum()
    return Plan(P, row, col, float(cost), float(cost + eps * kl), err)


def _torch_plan(C, f, g, eps, a, b):
    torch = torch_module()
    logP = (f[:, None] + g[None, :] - C) / eps
    P = torch.exp(logP)
    row, col = P.sum(1), P.sum(0)
    with torch.no_grad():
        f64 = torch.float64
        err = float((P.sum(1, dtype=f64) - a).abs().sum() + (P.sum(0, dtype=f64) - b).abs().sum())
    cost = (C * P).sum()
    kl = (P * (logP - torch.log(a)[:, None] - torch.log(b)[None, :])).sum() - P.sum() + a.sum() * b.sum()
    return Plan(P, row, col, cost, cost + eps * kl, err)


def plan_of(C, f, g, eps, a, b):
    """The :class:`Plan` of the potentials ``f``, ``g`` at ``eps`` (NumPy or torch)."""
    if is_torch(C):
        return _torch_plan(C, f, g, eps, a, b)
    return _numpy_plan(C, f, g, eps, a, b)


def kl_divergence(p, q):
    """Generalised KL ``sum p log(p / q) - sum p + sum q`` (``0 log 0 = 0``)."""
    if is_torch(p):
        torch = torch_module()
        safe = torch.where(p > 0, p, torch.ones_like(p))
        return torch.where(p > 0, p * torch.log(safe / q), torch.zeros_like(p)).sum() - p.sum() + q.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(xp_where(p > 0, p * np.log(p / q), 0.0)) - p.sum() + q.sum())
