"""Result and ConvergenceWarning in tikhon.solvers' namespace.

They live in :mod:`tikhon._core` (every layer uses them), and a lazy_loader
stub can name only modules of its own package, so ``__init__.pyi`` imports
them from here.
"""

from tikhon._core.loop import ConvergenceWarning
from tikhon._core.result import Result

__all__ = ["Result", "ConvergenceWarning"]
