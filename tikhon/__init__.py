"""tikhon: solvers for regularized inverse problems and optimal transport."""

from tikhon._version import __version__

__all__ = ["__version__"]
