"""The certified primal-dual gap of class OT, one function for both layouts.

The current plan is rounded onto ``U(a, b)`` (an upper bound on the optimum)
and the current potentials are made dual-feasible, target by target, by a
closed-form shift of ``g`` (a lower bound); the solvers keep the best
certified pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Certificate", "certify"]


@dataclass
class Certificate:
    """A certified pair: the rounded plan ``P`` and feasible potentials ``f``, ``g``.

    ``primal`` (its objective ``cost + lam reg``) and ``dual`` bracket the
    optimum; ``rel`` is the relative gap ``(primal - dual) / max(|primal|, |dual|)``.
    """

    P: Any
    f: Any
    g: Any
    rel: float
    primal: float
    dual: float
    cost: float
    reg: float


def certify(layout, best, X, f, g, lam, *extra):
    """Certify ``(X, f, g)``; ``(best certificate, primal, dual, rel, extra)``.

    ``extra`` scalars (residual norms left on the device) are read back with
    the certificate's own, in one synchronisation.
    """
    P = layout.round(X)
    cost, reg = layout.objective(P)
    g_feas = layout.feasible_g(f, g, lam)
    dual = layout.dual(f, g_feas)
    cost, reg, dual, *extra = layout.host(cost, reg, dual, *extra)
    primal = cost + lam * reg
    denom = max(abs(primal), abs(dual))
    gap = primal - dual
    rel = gap / denom if denom > 0 else abs(gap)
    if best is None or rel < best.rel:
        best = Certificate(P, layout.keep(f), g_feas, rel, primal, dual, cost, reg)
    return best, primal, dual, rel, extra
