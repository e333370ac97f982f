"""The result object every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Result", "STATUSES"]

#: Why a solver stopped: the tolerance was met, the iteration budget ran out,
#: a monitored value became NaN or inf, the objective grew by orders of
#: magnitude (``tikhon._core.loop.DIVERGENCE_FACTOR``), or the callback asked
#: to stop.
STATUSES = ("converged", "max_iter", "nonfinite", "diverged", "callback")


@dataclass(frozen=True)
class Result:
    """Outcome of a solver run.

    Attributes
    ----------
    x : array or tensor
        The primal solution (for transport solvers, the plan).
    converged : bool
        True only when the documented stopping criterion fell below ``tol``
        (``status == "converged"``).
    n_iter : int
        Iterations performed.
    message : str
        Why the solver stopped, for people; code tests ``status``.
    history : dict of str to numpy.ndarray
        Per-iteration records (objective, residuals or gap, ``time`` in seconds
        since the start), one entry per evaluated iteration; ``iteration`` holds
        the iteration numbers at which they were evaluated.
    elapsed : float
        Wall-clock seconds.
    steps : dict of str to float
        The step sizes the solver chose (or adapted to, for the last iterate).
    dual : array, tensor or tuple, optional
        Dual variables, where the method has them.
    info : dict
        Method-specific extras (e.g. potentials, cost, final criterion value).
    status : {"converged", "max_iter", "nonfinite", "diverged", "callback"}
        Why the solver stopped: ``"nonfinite"`` when a monitored value became
        NaN (or the criterion inf); ``"diverged"`` when, at a check, the
        recorded objective rose above its first nonzero recorded value ``F0``
        by more than ``1e8 |F0|`` (the iterates blow up, typically a step
        size too large for the problem).
    """

    x: Any
    converged: bool
    n_iter: int
    message: str
    history: dict = field(default_factory=dict)
    elapsed: float = 0.0
    steps: dict = field(default_factory=dict)
    dual: Any = None
    info: dict = field(default_factory=dict)
    status: str = None

    def __post_init__(self):
        # no default: every solver says why it stopped (Outcome.result passes it)
        if self.status not in STATUSES:
            raise ValueError(f"Result: status must be one of {STATUSES}, got {self.status!r}")
        if bool(self.converged) != (self.status == "converged"):
            raise ValueError(
                f"Result: converged={self.converged} contradicts status={self.status!r}"
            )

    def __repr__(self):
        status = "converged" if self.converged else f"NOT converged ({self.status})"
        return (
            f"Result({status} after {self.n_iter} iterations in {self.elapsed:.3g} s: "
            f"{self.message})"
        )
