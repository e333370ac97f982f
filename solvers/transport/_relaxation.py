"""Over-relaxation of the Sinkhorn steps, with a factor estimated from the measured violations.

Plain Sinkhorn converges linearly at a rate ``eta`` that tends to 1 as eps
shrinks (1e5 iterations at eps = 1e-4 on a unit cost). Over-relaxed steps
``f <- (1 - w) f + w T(f)`` with ``w = 2 / (1 + sqrt(1 - eta))`` (Thibault et
al. 2021; Lehmann et al. 2021) bring the rate to about ``w - 1``. Each stage
starts plain, estimates ``eta`` from the error decay, then relaxes; every
``check``-th iteration takes a plain column step so that the measured
violation is that of an actual plan, and an error that grows halves ``w - 1``
(the safeguard that keeps the iteration convergent).

:class:`Relaxation` is the controller's configuration, :class:`RelaxState`
its state (part of the solver's state): host-side scalars fed only with the
violations measured at the iterations where :meth:`Relaxation.measuring` is
true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Relaxation", "RelaxState"]


@dataclass
class RelaxState:
    """State of the controller within one eps stage.

    Attributes
    ----------
    omega : float
        Relaxation factor of the next steps (1: plain).
    it : int
        Column steps taken in the stage.
    errs : list of float
        Violations measured since the last rate estimate.
    best : float
        Smallest violation measured while relaxed (the safeguard's reference).
    eta : float
        Latest estimate of the plain rate.
    """

    omega: float = 1.0
    it: int = 0
    errs: list = field(default_factory=list)
    best: float = math.inf
    eta: float = 0.0


class Relaxation:
    """The controller: when to measure, and the factor from the measurements.

    Parameters
    ----------
    enabled : bool
        False: plain Sinkhorn (``omega`` stays 1).
    spacing : int
        Measure every this many iterations while plain (1 for the NumPy
        kernels, which get the violation for free; ``check_every`` on torch,
        where each measurement is a device synchronisation). While relaxed,
        measure every smallest multiple of ``spacing`` that is ``>= 10``: a
        measurement takes a plain column step, and at spacing 1 every column
        step would otherwise be plain.
    """

    CHECK = 10
    PLAIN = 20  # plain iterations per stage before estimating eta
    WINDOW = 10  # iterations over which the plain rate is measured

    def __init__(self, enabled, spacing=1):
        self.enabled = bool(enabled)
        self.spacing = int(spacing)
        self.check = self.spacing * max(1, -(-self.CHECK // self.spacing))
        # the plain rate is taken over >= WINDOW iterations, once >= PLAIN
        # iterations have been measured: at spacing 1 the 11th-last and last
        # of 20 errors, at spacing 10 the errors of iterations 10 and 20
        self.lag = max(1, -(-self.WINDOW // self.spacing))
        self.n_plain = max(self.lag + 1, -(-self.PLAIN // self.spacing))

    def start(self):
        """The state at the start of a stage (or after an underflow resync)."""
        return RelaxState()

    def column_omega(self, rs):
        """omega of the next column step; 1 on the iterations that measure."""
        rs.it += 1
        return 1.0 if self.measuring(rs) else rs.omega

    def measuring(self, rs):
        """Whether the current iteration measures the violation."""
        if rs.omega == 1.0:
            return rs.it % self.spacing == 0
        return rs.it % self.check == 0

    def update(self, rs, err):
        """Feed a measured violation (above the stage's target) to the controller."""
        if not self.enabled:
            return
        rs.errs.append(err)
        if rs.omega == 1.0:
            k = self.lag
            if len(rs.errs) >= self.n_plain and rs.errs[-1] > 0 and rs.errs[-1 - k] > 0:
                self._set_omega(rs, (rs.errs[-1] / rs.errs[-1 - k]) ** (1.0 / (k * self.spacing)))
                rs.errs = [err]
            return
        if err > 2.0 * rs.best:
            rs.omega = 1.0 + 0.5 * (rs.omega - 1.0)
            if rs.omega < 1.01:
                rs.omega = 1.0
            rs.errs = [err]
            rs.best = err
            return
        rs.best = min(rs.best, err)
        if len(rs.errs) >= 6 and rs.errs[-6] > 0 and rs.errs[-1] > 0:
            # errors measured every `check` iterations: observed rate rho under w;
            # Young's relation (rho + w - 1)^2 = rho w^2 eta gives back eta
            rho = (rs.errs[-1] / rs.errs[-6]) ** (1.0 / (5 * self.check))
            w = rs.omega
            if 0.0 < rho < 1.0 and rho > w - 1.0:
                self._set_omega(rs, max(rs.eta, (rho + w - 1.0) ** 2 / (rho * w * w)))
            rs.errs = [err]

    @staticmethod
    def _set_omega(rs, eta):
        if 0.0 < eta < 1.0:
            rs.eta = eta
            rs.omega = max(rs.omega, min(1.95, 2.0 / (1.0 + math.sqrt(1.0 - eta))))
            rs.best = math.inf if rs.omega == 1.0 else rs.best
