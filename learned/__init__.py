"""tikhon.learned: torch modules that plug into tikhon's operator and prox interfaces.

Public names are those of ``__init__.pyi``, loaded on first use (see
``tikhon.operators``); importing this package needs torch.
"""

if __name__ != "tikhon.learned":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'learned' is the subpackage tikhon.learned and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.learned' instead of 'import learned'"
    )

import lazy_loader as _lazy

from tikhon._core.arrays import require_torch as _require_torch

_require_torch()

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
