"""Lazy public names (PEP 562): a subpackage's names load their module on first use.

This keeps ``import tikhon.operators`` cheap (no numba compilation or cache
loading until an operator is used) and lets each public name live in the small
module that implements it.
"""

from __future__ import annotations

import importlib


def attach(package: str, names: dict[str, str], eager: dict | None = None):
    """Return ``(__getattr__, __dir__, __all__)`` for a package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : dict
        Public name -> submodule (relative to ``package``) that defines it.
    eager : dict, optional
        The package's already-defined globals that belong in ``__all__``.
    """
    eager = dict(eager or {})

    def __getattr__(name):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(f"{package}.{module}")
        # a name equal to its module's name is a subpackage exposed as such
        return mod if module == name else getattr(mod, name)

    def __dir__():
        return sorted(set(eager) | set(names))

    return __getattr__, __dir__, sorted(set(eager) | set(names))
