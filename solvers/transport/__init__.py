"""tikhon.solvers.transport: optimal transport solvers."""

from tikhon._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "sinkhorn": "sinkhorn",
        "sinkhorn_divergence": "sinkhorn",
        "sinkhorn_unbalanced": "sinkhorn",
        "class_ot": "class_ot",
        "inverse_ot": "inverse_ot",
    },
)
