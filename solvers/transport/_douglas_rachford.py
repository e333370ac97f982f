"""Douglas-Rachford splitting for class OT, on the NumPy or the torch layout.

Between ``G = lam R + i_{P >= 0}`` (its prox: clip, then group shrinkage)
and ``<C, P> + i_{P 1 = a, P^T 1 = b}`` (an affine projection): one fused
kernel per iteration (numba on NumPy; a fixed sequence of whole-tensor ops
on torch, with no host round trip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tikhon._core.loop import Solver, State
from tikhon.solvers.transport._class_ot_certificate import certify

__all__ = ["DouglasRachford", "DRState"]


@dataclass
class DRState(State):
    """State of :class:`DouglasRachford`, as ``callback(state)`` receives it.

    Attributes
    ----------
    k : int
        Iterations done.
    Z : array or tensor
        The Douglas-Rachford iterate (sources sorted by class; NumPy
        target-major ``(m, n)``, torch ``(n, m)``).
    X : array or tensor or None
        The prox point of the latest step (the plan estimate); None before.
    u, v : array or tensor
        Multipliers of the marginal projection (``t`` times the potentials).
    res2, xn2 : float or tensor
        ``||X - Y||^2`` and ``||X||^2`` of the latest monitored step.
    best : Certificate or None
        The best certified pair so far.
    Y : numpy.ndarray or None
        NumPy: the kernel's second buffer.
    check_every, max_iter : int
        The loop's check spacing and budget, set when the loop starts.
    """

    Z: Any = None
    X: Any = None
    u: Any = None
    v: Any = None
    res2: Any = math.inf
    xn2: Any = 1.0
    best: Any = None
    Y: Any = None
    check_every: int = 1
    max_iter: int = 0


class DouglasRachford(Solver):
    """Douglas-Rachford for ``min <C, P> + lam R(P)`` over ``U(a, b)`` with step ``t``.

    The step returns the residual norms only on the iterations the loop checks
    (two passes saved on the others); :meth:`start` tells it which.
    """

    name = "class_ot"
    criterion = "rel_gap"

    def __init__(self, layout, lam, t):
        self.layout, self.lam, self.t = layout, lam, t
        layout.set_step(t)

    def start(self, state, *, tol, max_iter, check_every):
        state.check_every, state.max_iter = check_every, max_iter
        return state

    def init(self, Z):
        lay = self.layout
        return DRState(Z=Z, u=lay.zeros(lay.n), v=lay.zeros(lay.m))

    def step(self, state):
        state.k += 1
        norms = state.k % state.check_every == 0 or state.k == state.max_iter
        self.layout.dr_step(state, self.t, self.t * self.lam, norms)
        return state

    def point(self, state):
        """``(plan estimate, f, g)``: before any step, the starting point itself."""
        X = state.Z if state.X is None else state.X
        return X, state.u / self.t, state.v / self.t

    def monitor(self, state):
        state.best, primal, dual, rel, (res2, xn2) = certify(
            self.layout, state.best, *self.point(state), self.lam, state.res2, state.xn2)
        rp = math.sqrt(res2) / max(math.sqrt(xn2), 1e-300)
        return {"objective": primal, "dual_objective": dual, "rel_gap": rel, "residual": rp}
