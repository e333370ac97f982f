# The public names of tikhon.operators.prox (see tikhon/operators/__init__.pyi).

from .base import (
    Conjugate,
    Functional,
    ScaledFunctional,
    SeparableSum,
    ShiftedFunctional,
    separable_sum,
)
from .groups import L2, L21, SumOfNorms
from .indicators import L1Ball, L2Ball, Box, NonNegative, Simplex, Zero
from .kl import KullbackLeibler
from .l1 import L0, L1
from .nuclear import NuclearNorm
from .quadratic import Huber, SquaredL2
from .smooth import SmoothFunctional, smooth_functional
from .weight_sets import Oblique, ScaledBinary, ScaledTernary, SpectralBall, Stiefel, TopK

__all__ = [
    "Box",
    "Conjugate",
    "Functional",
    "Huber",
    "KullbackLeibler",
    "L0",
    "L1",
    "L1Ball",
    "L2",
    "L21",
    "L2Ball",
    "NonNegative",
    "NuclearNorm",
    "Oblique",
    "ScaledBinary",
    "ScaledFunctional",
    "ScaledTernary",
    "SeparableSum",
    "ShiftedFunctional",
    "Simplex",
    "SmoothFunctional",
    "SpectralBall",
    "SquaredL2",
    "Stiefel",
    "SumOfNorms",
    "TopK",
    "Zero",
    "separable_sum",
    "smooth_functional",
]
