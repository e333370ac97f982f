"""tikhon.learned: torch modules that plug into tikhon's operator and prox interfaces."""

if __name__ != "tikhon.learned":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'learned' is the subpackage tikhon.learned and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.learned' instead of 'import learned'"
    )

from tikhon.operators._backend import require_torch as _require_torch

_require_torch()

__all__ = []
