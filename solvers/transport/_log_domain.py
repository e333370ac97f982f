"""Balanced log-domain Sinkhorn, over-relaxed: NumPy ``method="log"`` and every torch input.

One iteration is a column half step (plain on the iterations that measure,
so that the measured violation is that of an actual plan) and a row half
step whose kernel returns the row violation of the plan before the update;
the arithmetic is :mod:`._log_steps`', the same on NumPy and torch. On torch
the only device-to-host traffic is the scalar violation, read on the
measured iterations (the relaxation controller runs on the host from those
values), and no in-place operation touches the potentials, so autograd flows
through the iterations.
"""

from __future__ import annotations

from tikhon.solvers.transport._log_steps import log_steps
from tikhon.solvers.transport._staged import SinkhornState, StagedSinkhorn, centre

__all__ = ["LogSinkhorn"]


class LogSinkhorn(StagedSinkhorn):
    """Log-domain Sinkhorn on ``C``'s backend (see :class:`StagedSinkhorn` for the stages)."""

    def __init__(self, C, a, b, schedule, relaxation):
        super().__init__(C, a, b, schedule, relaxation)
        self.steps = log_steps(C, a, b)

    def init(self, f0=None, g0=None):
        """The state at the first eps; without ``f0``, ``f`` is the row step from ``g``."""
        st = self.steps
        n, m = self.C.shape
        eps = self.schedule[0]
        f = st.zeros(n) if f0 is None else f0
        g = st.zeros(m) if g0 is None else g0
        state = SinkhornState(eps=eps, f=f, g=g, f_prev=st.spare(f), g_prev=st.spare(g),
                              relax=self.relaxation.start())
        if f0 is None:
            f_new, _, _ = st.row(f, g, eps, state.f_prev)
            state.f_prev, state.f = f, f_new
        state.f, state.g = centre(state.f, state.g)
        return state

    def _begin_stage(self, state):
        # the last stage ended on a measured iteration: its potentials carry over
        self.keep_measured(state)
        state.stage, state.pending_stage = state.pending_stage, None
        state.eps = self.schedule[state.stage]
        state.relax = self.relaxation.start()
        state.f, state.g = centre(state.f, state.g)

    def step(self, state):
        """One iteration: column step, row step (measuring when the controller says so)."""
        if state.pending_stage is not None:
            self._begin_stage(state)
        st, eps = self.steps, state.eps
        omega, measure = self.omega_and_measure(state)
        g, _ = st.col(state.f, state.g, eps, state.g_prev, omega=omega)
        state.g_prev, state.g = state.g, g
        # the row step uses the omega in force before this measurement (the
        # NumPy kernel measures and updates in one pass)
        f, err, _ = st.row(state.f, g, eps, state.f_prev, omega=state.relax.omega, measure=measure)
        state.f_prev, state.f = state.f, f
        state.k += 1
        self.record(state, err if measure else None)
        return state

    def measured_potentials(self, state):
        # the violation was measured on (f, g) before the row step moved f
        return state.f_prev, state.g

    def keep_measured(self, state):
        state.f, state.f_prev = state.f_prev, state.f

    def plain_step(self, state):
        st, eps = self.steps, state.eps
        g, _ = st.col(state.f, state.g, eps, state.g_prev)
        state.g_prev, state.g = state.g, g
        f, _, _ = st.row(state.f, g, eps, state.f_prev)
        state.f_prev, state.f = state.f, f

    def potentials(self, state):
        return state.f, state.g
