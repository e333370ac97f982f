"""Semismooth Newton augmented Lagrangian (SSNAL) on the dual of class OT (NumPy).

The dual is ``max <f, a> + <g, b>`` s.t. ``f_i + g_j - C_ij`` lies, group by
group, in ``K = {w : ||w^+||_2 <= lam}``. Its augmented Lagrangian with the
plan ``Q`` as multiplier, minimised over the slack in closed form, is the
convex C^1 function ``phi(f, g)`` of the kernel module, whose gradient is
the marginal violation of ``P = prox_{sigma G}(Q + sigma (f + g - C))``.
Each iteration is one Newton-CG step on ``phi`` with an Armijo line search;
once the marginal violation is small against the change of the plan,
``Q <- P`` (the multiplier update) and ``sigma`` grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tikhon._core.loop import Solver, State
from tikhon.solvers.transport._class_ot_certificate import certify

__all__ = ["SSNAL", "SSNALState"]

_JACOBIAN = ("ent_i", "ent_p", "grp_j", "grp_ptr", "grp_al", "grp_co")


@dataclass
class _Evaluation:
    """``phi`` and what its Newton step needs at one point ``(f, g)``."""

    phi: float
    ng: int  # active groups of the prox's Jacobian
    gf: Any  # gradient: row violation P 1 - a
    gg: Any  # column violation P^T 1 - b
    pinf: float  # relative marginal violation
    dinf: float  # relative change of the plan against the multiplier
    jac: dict  # the Jacobian's compact storage (one of two sets of buffers)


@dataclass
class SSNALState(State):
    """State of :class:`SSNAL`, as ``callback(state)`` receives it.

    Attributes
    ----------
    k : int
        Newton steps done.
    Q : numpy.ndarray
        The plan multiplier (target-major, sources sorted by class).
    t : float
        The augmented Lagrangian penalty ``sigma``.
    f, g : numpy.ndarray
        The dual potentials.
    P, P_try : numpy.ndarray
        The prox plan at ``(f, g)`` and the line search's trial plan.
    cur : _Evaluation
        ``phi`` and its derivatives at ``(f, g)``.
    best : Certificate or None
        The best certified pair so far.
    alpha : float
        The latest line search step.
    cg, outer, inner : int
        Conjugate gradient iterations in all, multiplier updates, Newton
        steps since the last update.
    jac_a, jac_b : dict
        The two sets of Jacobian buffers (current and trial point).
    rows, cols, df, dg : numpy.ndarray
        Work vectors (plan marginals, Newton direction).
    tol : float
        The loop's tolerance, set when the loop starts.
    """

    Q: Any = None
    t: float = math.nan
    f: Any = None
    g: Any = None
    P: Any = None
    P_try: Any = None
    cur: Any = None
    best: Any = None
    alpha: float = math.nan
    cg: int = 0
    outer: int = 0
    inner: int = 0
    jac_a: Any = None
    jac_b: Any = None
    rows: Any = None
    cols: Any = None
    df: Any = None
    dg: Any = None
    tol: float = 0.0


class SSNAL(Solver):
    """SSNAL for class OT on a :class:`~._class_ot_layout.NumpyLayout`, initial penalty ``sigma``."""

    name = "class_ot"
    criterion = "rel_gap"

    def __init__(self, layout, lam, sigma):
        self.layout, self.lam, self.sigma = layout, lam, sigma
        self.norm_ab = float(np.sqrt(layout.a @ layout.a + layout.b @ layout.b))
        Ct = layout.Ct
        self.crange = float(Ct.max() - Ct.min()) or 1.0

    def start(self, state, *, tol, max_iter, check_every):
        state.tol = tol  # the certificate is computed when the residuals near it
        return state

    def init(self, Q):
        lay = self.layout
        n, m = lay.n, lay.m
        ngrp = m * (lay.starts.shape[0] - 1)
        jac = {"ent_i": np.empty(n * m, dtype=np.int64), "ent_p": np.empty(n * m),
               "grp_j": np.empty(ngrp, dtype=np.int64), "grp_ptr": np.empty(ngrp + 1, dtype=np.int64),
               "grp_al": np.empty(ngrp), "grp_co": np.empty(ngrp)}
        # start from dual-feasible reduced-cost potentials (column then row minima):
        # f + g - C <= 0 with a zero in every row and column, so the first prox
        # already has entries in every row and column and Newton starts in its basin
        g0 = lay.Ct.min(axis=1)
        f0 = (lay.Ct - g0[:, None]).min(axis=0)
        state = SSNALState(Q=Q, t=self.sigma, f=f0, g=g0, P=np.empty_like(Q), P_try=np.empty_like(Q),
                           jac_a=jac, jac_b={key: np.empty_like(v) for key, v in jac.items()},
                           rows=np.empty(n), cols=np.empty(m), df=np.empty(n), dg=np.empty(m))
        state.cur = self._evaluate(state, state.f, state.g, state.P, state.jac_a)
        return state

    def _evaluate(self, s, f, g, P, jac):
        lay = self.layout
        nrm2, diff2, ng = lay.kern.ssn_prox(s.Q, lay.Ct, lay.starts, f, g, s.t, s.t * self.lam, P,
                                            s.rows, s.cols, *(jac[key] for key in _JACOBIAN))
        gf, gg = s.rows - lay.a, s.cols - lay.b
        phi = -float(f @ lay.a) - float(g @ lay.b) + nrm2 / (2.0 * s.t)
        pinf = float(np.sqrt(gf @ gf + gg @ gg)) / self.norm_ab
        dinf = float(np.sqrt(diff2 / max(nrm2, 1e-300)))
        return _Evaluation(phi, ng, gf, gg, pinf, dinf, jac)

    def step(self, s):
        """One Newton-CG step on ``phi`` (after a multiplier update when due)."""
        kern = self.layout.kern
        cur = s.cur
        # the multiplier update: the inner problem is solved well enough when
        # the marginal violation is a fraction of the plan's change (the dual
        # infeasibility), as in SDPNAL+/SSNAL practice
        # (sigma doubles: faster growth stalled the inner Newton on LP-like
        # instances); an inner solve that stalls anyway is cut short and sigma
        # halved, which keeps the method convergent, if slower
        inner_ok = s.k > 0 and cur.pinf <= 0.2 * cur.dinf
        stalled = s.inner >= 30
        if inner_ok or stalled:
            s.Q, s.P = s.P, s.Q
            s.t *= 0.5 if stalled else 2.0
            s.outer += 1
            s.inner = 0
            cur = self._evaluate(s, s.f, s.g, s.P, cur.jac)
        s.inner += 1
        s.k += 1
        jac, pinf = cur.jac, cur.pinf
        # Newton system (sigma A J A^T + mu I) d = -grad; mu keeps it definite where
        # a potential touches no active entry, and vanishes as the residual does
        mu = s.t * 1e-2 * min(1e-2, pinf)
        s.cg += kern.ssn_cg(cur.ng, *(jac[key] for key in _JACOBIAN), s.t, mu, -cur.gf, -cur.gg,
                            min(1e-2, pinf), 500, s.df, s.dg)
        df, dg = s.df, s.dg
        slope = float(cur.gf @ df + cur.gg @ dg)
        other = s.jac_b if jac is s.jac_a else s.jac_a
        # a potential never needs to move by more than the cost range in one
        # step; early, near-singular Newton systems propose far more
        dmax = max(float(np.abs(df).max()), float(np.abs(dg).max()), 1e-300)
        alpha = min(1.0, self.crange / dmax)
        for _ in range(40):
            f_new = s.f + alpha * df
            g_new = s.g + alpha * dg
            new = self._evaluate(s, f_new, g_new, s.P_try, other)
            if new.phi <= cur.phi + 1e-4 * alpha * slope:
                break
            alpha *= 0.5
        s.alpha = alpha
        s.f, s.g = f_new, g_new
        s.P, s.P_try = s.P_try, s.P
        s.cur = new
        return s

    def point(self, state):
        return state.P, state.f, state.g

    def monitor(self, s):
        cur = s.cur
        # the certificate costs a few Newton steps' worth of work: compute it when
        # the residuals say the gap may be near tol, and every 10 iterations
        if s.best is None or max(cur.pinf, cur.dinf) <= 100 * max(s.tol, 1e-12) or s.k % 10 == 0:
            s.best, *_ = certify(self.layout, s.best, s.P, s.f, s.g, self.lam)
        best = s.best
        return {"objective": best.primal, "dual_objective": best.dual, "rel_gap": best.rel,
                "residual": cur.pinf, "dual_residual": cur.dinf}
