# The public names of tikhon.solvers.bilevel (see tikhon/operators/__init__.pyi).

__all__: list[str] = []
