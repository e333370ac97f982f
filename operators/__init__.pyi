# The public names of tikhon.operators. lazy_loader reads the imports (relative,
# one module each) to load names on first use; __all__ repeats them because a
# type checker re-exports a stub's imports only when __all__ lists them.

from .base import (
    AdjointOperator,
    Composition,
    LinearOperator,
    Scaled,
    Stacked,
    Sum,
    aslinearoperator,
    dot_test,
    stack,
)
from .basic import Diagonal, Identity, Mask, MatrixOperator
from .convolution import Convolution
from .gradient import Gradient
from .radon import Radon
from .sensing import GaussianSensing
from .sobolev import SobolevWeight
from .tubal import TubalProduct

__all__ = [
    "AdjointOperator",
    "Composition",
    "Convolution",
    "Diagonal",
    "GaussianSensing",
    "Gradient",
    "Identity",
    "LinearOperator",
    "Mask",
    "MatrixOperator",
    "Radon",
    "Scaled",
    "SobolevWeight",
    "Stacked",
    "Sum",
    "TubalProduct",
    "aslinearoperator",
    "dot_test",
    "stack",
]
