"""smooth_functional in tikhon.solvers' namespace.

It lives in :mod:`tikhon.operators.prox.smooth` (it builds a Functional), and a
lazy_loader stub can name only modules of its own package, so ``__init__.pyi``
imports it from here.
"""

from tikhon.operators.prox.smooth import smooth_functional

__all__ = ["smooth_functional"]
