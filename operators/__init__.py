"""tikhon.operators: linear operators and proximal operators (functionals).

Public names load their module on first use, so importing this package
compiles nothing and never imports torch.
"""

if __name__ != "tikhon.operators":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'operators' is the subpackage tikhon.operators and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.operators' instead of 'import operators'"
    )

from tikhon._lazy import attach
from tikhon.operators.base import (
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

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "Identity": "basic",
        "Diagonal": "basic",
        "MatrixOperator": "basic",
        "Mask": "basic",
        "Gradient": "gradient",
        "Convolution": "convolution",
        "SobolevWeight": "sobolev",
        "TubalProduct": "tubal",
        "Radon": "radon",
    },
    eager={
        name: None
        for name in (
            "LinearOperator", "AdjointOperator", "Composition", "Sum", "Scaled",
            "Stacked", "stack", "dot_test", "aslinearoperator",
        )
    },
)
