"""Balanced Sinkhorn on a stabilised kernel (NumPy ``method="scaling"``), float32 storage policy.

The scalings ``u``, ``v`` run on ``K = exp((f + g - C) / eps)``, rebuilt from
``C`` (Schmitzer's absorption: ``v`` absorbed into ``g``, ``f`` recomputed by
an exact log-domain row step fused with the rebuild, ``u = v = 1``) at every
stage start, whenever ``|log u|`` or ``|log v|`` grows past ``exp(100)``
(``exp(20)`` for a float32 kernel), and when a row or column underflows.

Cost: one read of the kernel per iteration (the row step and the column sums
for the next column step are fused, row by row), one read of ``C`` per
rebuild. The kernel may be stored in float32 (half the memory traffic, which
bounds the iterations at large sizes), with float64 sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tikhon._core.arrays import all_finite
from tikhon.solvers.transport._staged import SinkhornState, StagedSinkhorn, centre

__all__ = ["ScalingSinkhorn", "ScalingState", "kernel_precision"]

# far below float64's range (log ~ 709): the stabilised kernel neither
# overflows nor loses significant entries to underflow
_ABSORB_LOG = 100.0
# The float32 kernel stores entries below _TINY32 (just above float32's
# smallest normal number) as 0; with |log u|, |log v| <= _ABSORB_LOG32 what
# they would become stays below n m 1e-37 e^40 ~ 1e-20 n m: negligible.
_ABSORB_LOG32 = 20.0
_TINY32 = 1e-37
_TINY64 = 1e-300
# The float32 kernel is used for the last stage when tol >= _F32_TOL * mass:
# its rounding (relative 6e-8 per entry, float64 sums) moves the marginals by
# at most ~1.2e-7 of the mass, and the returned plan is verified in float64
# anyway (a miss restarts the stage in float64).
_F32_TOL = 1e-6


def kernel_precision(kernel_dtype, a, b, tol, method, where="sinkhorn"):
    """``(float32 kernel for the intermediate stages, float32 kernel for the last stage)``."""
    if kernel_dtype is None or kernel_dtype == "auto":
        choice = "auto"
    else:
        try:
            choice = np.dtype(kernel_dtype).name
        except TypeError as exc:
            raise TypeError(f"{where}: kernel_dtype must be None, 'auto', 'float32' or "
                            f"'float64', got {kernel_dtype!r}") from exc
        if choice not in ("float32", "float64"):
            raise ValueError(f"{where}: kernel_dtype must be None, 'auto', 'float32' or "
                             f"'float64', got {kernel_dtype!r}")
    if method != "scaling" or choice == "float64":
        return False, False
    # every row / column keeps an entry above float32's normal range
    fits = a.min() / b.size > 1e-25 and b.min() / a.size > 1e-25 and a.sum() < 1e25
    if not fits:
        return False, False
    if choice == "float32":
        return True, True
    return True, tol >= _F32_TOL * float(a.sum())


@dataclass
class ScalingState(SinkhornState):
    """:class:`SinkhornState` plus the scalings and the stabilised kernel.

    Attributes
    ----------
    u, v : numpy.ndarray
        Scalings: the plan is ``diag(u) K diag(v)``.
    u_old : numpy.ndarray
        ``u`` before the latest row step (the measured plan's).
    K : numpy.ndarray or None
        The stabilised kernel (float32 or float64; freed at the end).
    col_part, stats, scratch : numpy.ndarray
        Per-thread partial column sums ``K^T u``, row statistics and rows.
    n_absorb : int
        Kernel rebuilds (stage starts, absorptions, underflow resyncs).
    float64 : bool
        The kernel is float64 from now on (a float32 last stage missed tol).
    switched : bool
        A float32 last stage was restarted in float64.
    nonfinite : bool
        A rebuild gave non-finite potentials; the next check stops the run.
    """

    u: Any = None
    v: Any = None
    u_old: Any = None
    K: Any = None
    col_part: Any = None
    stats: Any = None
    scratch: Any = None
    n_absorb: int = 0
    float64: bool = False
    switched: bool = False
    nonfinite: bool = False


class ScalingSinkhorn(StagedSinkhorn):
    """Exp-domain Sinkhorn with absorption (NumPy float64 ``C``, ``a``, ``b`` of positive mass)."""

    def __init__(self, C, a, b, schedule, relaxation, use32=False, use32_last=False):
        from tikhon.solvers.transport import _sinkhorn_kernels as kern

        super().__init__(C, a, b, schedule, relaxation)
        self.kern = kern
        self.use32, self.use32_last = use32, use32_last
        self.loga, self.logb = np.log(a), np.log(b)
        self.nb = kern.numba_threads()

    def init(self, f0=None, g0=None):
        n, m = self.C.shape
        nb = self.nb
        state = ScalingState(
            eps=self.schedule[0], f=np.zeros(n) if f0 is None else f0,
            g=np.zeros(m) if g0 is None else g0, g_prev=np.empty(m), u=np.ones(n), v=np.ones(m),
            u_old=np.empty(n), col_part=np.zeros((nb, m)), stats=np.empty((nb, 3)),
            scratch=np.empty((nb, m)), relax=self.relaxation.start(),
        )
        if f0 is not None and g0 is None:
            # only f0 given: the first step is the column step from it
            self._column_lse(state)
        if not self._begin_stage(state, 0):
            state.nonfinite = True
        return state

    # -- kernel maintenance ----------------------------------------------------
    def _column_lse(self, state):
        self.kern.col_lse_update(self.C, state.f, self.logb, state.eps, 1.0, state.g, state.g_prev,
                                 self.nb, 1.0)
        state.g, state.g_prev = state.g_prev, state.g

    def _rebuild(self, state):
        """Fused exact row step and kernel rebuild from ``g`` (then ``u = v = 1``), re-centred.

        The row step recomputes ``f`` from ``g``, so ``u`` needs no absorbing.
        """
        kern, s = self.kern, state
        tiny = _TINY32 if s.K.dtype == np.float32 else _TINY64
        kern.rebuild_rows(self.C, s.g, self.loga, s.eps, s.K, s.f, s.scratch, s.col_part, tiny)
        if (s.col_part.sum(axis=0) <= 0.0).any():
            # a whole column of the row-normalised kernel underflowed: an exact
            # log-domain column step first, then rebuild
            self._column_lse(s)
            kern.rebuild_rows(self.C, s.g, self.loga, s.eps, s.K, s.f, s.scratch, s.col_part, tiny)
        s.u.fill(1.0)
        s.v.fill(1.0)
        s.n_absorb += 1
        if not (all_finite(s.f) and all_finite(s.g)):
            return False
        # K depends on f + g only: the shift leaves it valid
        centre(s.f, s.g)
        return True

    def _absorb(self, state):
        state.g += state.eps * np.log(state.v)
        return all_finite(state.g) and self._rebuild(state)

    def _begin_stage(self, state, stage):
        """Start ``stage``: the kernel in its precision, ``v`` absorbed at the previous eps."""
        last = stage == len(self.schedule) - 1
        single = self.use32 and not (last and not self.use32_last) and not state.float64
        want = np.float32 if single else np.float64
        if state.K is None or state.K.dtype != want:
            state.K = None  # free the old kernel before allocating the new one
            state.K = np.empty(self.C.shape, dtype=want)
        state.g += state.eps * np.log(state.v)
        state.v.fill(1.0)
        state.stage, state.pending_stage = stage, None
        state.eps = self.schedule[stage]
        state.relax = self.relaxation.start()
        return all_finite(state.g) and self._rebuild(state)

    def _broken(self, state):
        state.nonfinite = True
        state.measured = True
        state.marginal_error = math.nan
        return state

    # -- the iteration -----------------------------------------------------------
    def step(self, state):
        """One iteration: column step, then the fused row step and column sums."""
        if state.nonfinite:
            state.k += 1
            return self._broken(state)
        if state.pending_stage is not None and not self._begin_stage(state, state.pending_stage):
            state.k += 1
            return self._broken(state)
        kern, s = self.kern, state
        omega, measure = self.omega_and_measure(s)
        s.k += 1
        _, smin, vbig = kern.column_step(s.col_part, s.v, self.b, omega)
        s.u_old[:] = s.u
        kern.sinkhorn_pass(s.K, s.v, self.a, s.u, s.relax.omega, s.col_part, s.stats)
        e, rmin, ubig = self._reduce(s.stats)
        if not math.isfinite(e) or rmin <= 0.0 or smin <= 0.0:
            # a row or column of the stabilised kernel underflowed: an exact
            # log-domain resync, then go on
            s.u[:] = s.u_old
            s.measured = False
            s.relax = self.relaxation.start()
            return s if self._absorb(s) else self._broken(s)
        # e is the violation of diag(u_old) K diag(v), column-exact when measured
        if self.record(s, e if measure else None):
            return s
        absorb_log = _ABSORB_LOG32 if s.K.dtype == np.float32 else _ABSORB_LOG
        if (ubig > absorb_log or vbig > absorb_log) and not self._absorb(s):
            return self._broken(s)
        return s

    def _reduce(self, stats):
        """The blocks' (row violation, smallest row sum, largest |log u|), reduced."""
        if self.nb == 1:  # one block: no reductions (a few microseconds per iteration)
            return stats[0].tolist()
        return float(stats[:, 0].sum()), float(stats[:, 1].min()), float(stats[:, 2].max())

    # -- the verified stop ---------------------------------------------------------
    def done(self, state, record, tol):
        if not self.at_target(state, tol):
            return False
        single = state.K.dtype == np.float32
        # the kernel goes before the float64 plan is allocated (peak memory);
        # a miss rebuilds it, restarting the stage from the potentials reached
        state.K = None
        if self.verify(state, tol):
            return True
        if single:
            # the float32 kernel's rounding floor is above tol on this problem:
            # go on in float64
            state.float64 = state.switched = True
        else:
            state.n_roundoff += 1
        state.pending_stage = state.stage
        return False

    def measured_potentials(self, state):
        return state.f + state.eps * np.log(state.u_old), state.g + state.eps * np.log(state.v)

    def keep_measured(self, state):
        state.u[:] = state.u_old

    def plain_step(self, state):
        s = state
        if s.K is None:  # a verification has just freed it
            return
        u, v = s.u.copy(), s.v.copy()
        _, smin, _ = self.kern.column_step(s.col_part, s.v, self.b, 1.0)
        self.kern.sinkhorn_pass(s.K, s.v, self.a, s.u, 1.0, s.col_part, s.stats)
        e, rmin, _ = self._reduce(s.stats)
        if not (math.isfinite(e) and rmin > 0.0 and smin > 0.0):
            s.u[:], s.v[:] = u, v

    def finish(self, state, status):
        state = super().finish(state, status)
        state.K = None  # before the plan is allocated
        return state

    def potentials(self, state):
        return state.f + state.eps * np.log(state.u), state.g + state.eps * np.log(state.v)
