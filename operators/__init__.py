"""tikhon.operators: linear operators and proximal operators (functionals).

The public names are those imported in ``__init__.pyi``: lazy_loader reads
that stub and loads each name's module on first use, so importing this package
compiles nothing and never imports torch, and type checkers resolve the same
names from the same file.
"""

if __name__ != "tikhon.operators":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'operators' is the subpackage tikhon.operators and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.operators' instead of 'import operators'"
    )

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
