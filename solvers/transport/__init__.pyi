from .balanced import sinkhorn
from .class_regularized import class_ot, class_regularizer
from .divergence import sinkhorn_divergence
from .inverse import inverse_ot
from .unbalanced import sinkhorn_unbalanced

__all__ = [
    "class_ot",
    "class_regularizer",
    "inverse_ot",
    "sinkhorn",
    "sinkhorn_divergence",
    "sinkhorn_unbalanced",
]
