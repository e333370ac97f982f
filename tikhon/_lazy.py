"""Lazy public names (PEP 562): a subpackage's names load their module on first use.

This keeps ``import tikhon.operators`` cheap (no numba compilation or cache
loading until an operator is used) and lets each public name live in the small
module that implements it.
"""

from __future__ import annotations

import importlib
import sys
import types


class _LazyPackage(types.ModuleType):
    """A package whose public functions may share their module's name.

    The import system binds every loaded submodule to an attribute of its
    parent (``transport.class_ot = <module>``), which would shadow a public
    function ``class_ot`` defined in ``class_ot.py``; here that binding is
    replaced by the function. Subpackages (modules with ``__path__``) stay bound.
    """

    def __setattr__(self, key, value):
        if (
            isinstance(value, types.ModuleType)
            and not hasattr(value, "__path__")
            and value.__name__ == f"{self.__name__}.{key}"
            and key in getattr(self, "_lazy_names", ())
            and hasattr(value, key)
        ):
            value = getattr(value, key)
        super().__setattr__(key, value)


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
    module_obj = sys.modules.get(package)
    if module_obj is not None and type(module_obj) is types.ModuleType:
        module_obj.__class__ = _LazyPackage
        module_obj._lazy_names = frozenset(k for k, v in names.items() if k == v)

    def __getattr__(name):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(f"{package}.{module}")
        # a name equal to its module's name is a subpackage exposed as such,
        # unless the module defines that name (a function in a same-named module)
        if module == name and (hasattr(mod, "__path__") or not hasattr(mod, name)):
            return mod
        return getattr(mod, name)

    def __dir__():
        return sorted(set(eager) | set(names))

    return __getattr__, __dir__, sorted(set(eager) | set(names))
