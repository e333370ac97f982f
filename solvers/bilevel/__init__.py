"""tikhon.solvers.bilevel: bilevel learning of regularization parameters."""

__all__ = []
