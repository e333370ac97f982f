"""tikhon.solvers: algorithms and the problems built on them.

Public names are those of ``__init__.pyi``, loaded on first use (see
``tikhon.operators``).
"""

if __name__ != "tikhon.solvers":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'solvers' is the subpackage tikhon.solvers and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.solvers' instead of 'import solvers'"
    )

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
