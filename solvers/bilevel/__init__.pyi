# The public names of tikhon.solvers.bilevel (see tikhon/operators/__init__.pyi).

from .implicit import hypergradient
from .inexact import inexact_gradient_descent, maid
from .logistic_problems import CrossEntropy, L2MultinomialLogistic
from .protocol import LowerLevel, LowerSolution, SquaredError, UpperLevel
from .tv_problems import SmoothedTVDenoising, SmoothedTVReconstruction

__all__ = [
    "CrossEntropy",
    "L2MultinomialLogistic",
    "LowerLevel",
    "LowerSolution",
    "SmoothedTVDenoising",
    "SmoothedTVReconstruction",
    "SquaredError",
    "UpperLevel",
    "hypergradient",
    "inexact_gradient_descent",
    "maid",
]
