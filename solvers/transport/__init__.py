"""tikhon.solvers.transport: optimal transport solvers.

Public names load their module on first use (``lazy_loader``, names and
modules listed in ``__init__.pyi``, which type checkers read). No module here
shares its name with a public function: the import system binds a loaded
submodule to its parent's attribute of that name, which would shadow the
function.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
