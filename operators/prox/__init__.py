"""tikhon.operators.prox: functionals with proximal maps (value, prox, grad, conj).

Public names are those of ``__init__.pyi``, loaded on first use (see
``tikhon.operators``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
