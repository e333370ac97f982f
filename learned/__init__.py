"""tikhon.learned: torch modules that plug into tikhon's operator and prox interfaces."""

if __name__ != "tikhon.learned":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'learned' is the subpackage tikhon.learned and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.learned' instead of 'import learned'"
    )

from tikhon._lazy import attach
from tikhon._core.arrays import require_torch as _require_torch

_require_torch()

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "TVWeightNet": "tv_weights",
        "weights_from_network": "tv_weights",
        "train_tv_weight_net": "tv_weights",
        "elastic_loss": "tv_weights",
        "make_training_set": "tv_weights",
        "load_weights": "tv_weights",
        "save_weights": "tv_weights",
    },
)
