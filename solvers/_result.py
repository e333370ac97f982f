"""The result object every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """Outcome of a solver run.

    Attributes
    ----------
    x : array or tensor
        The primal solution (for transport solvers, the plan).
    converged : bool
        True only when the documented stopping criterion fell below ``tol``.
    n_iter : int
        Iterations performed.
    message : str
        Why the solver stopped.
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

    def __repr__(self):
        status = "converged" if self.converged else "NOT converged"
        return (
            f"Result({status} after {self.n_iter} iterations in {self.elapsed:.3g} s: "
            f"{self.message})"
        )
