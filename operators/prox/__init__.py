"""tikhon.operators.prox: functionals with proximal maps (value, prox, grad, conj)."""

from tikhon._lazy import attach
from tikhon.operators.prox.base import (
    Conjugate,
    Functional,
    ScaledFunctional,
    SeparableSum,
    ShiftedFunctional,
    separable_sum,
)

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "L1": "l1",
        "L0": "l1",
        "L2": "groups",
        "L21": "groups",
        "SumOfNorms": "groups",
        "NuclearNorm": "nuclear",
        "SquaredL2": "quadratic",
        "Huber": "quadratic",
        "KullbackLeibler": "kl",
        "NonNegative": "indicators",
        "Box": "indicators",
        "Simplex": "indicators",
        "L1Ball": "indicators",
        "L2Ball": "indicators",
        "Zero": "indicators",
        "SmoothFunctional": "smooth",
        "smooth_functional": "smooth",
    },
    eager={
        name: None
        for name in (
            "Functional", "ScaledFunctional", "ShiftedFunctional", "Conjugate",
            "SeparableSum", "separable_sum",
        )
    },
)
