# The public names of tikhon.learned (see tikhon/operators/__init__.pyi).

from .tv_weights import (
    TVWeightNet,
    elastic_loss,
    learned_wtv_reconstruction,
    load_weights,
    make_training_set,
    save_weights,
    train_tv_weight_net,
    weights_from_network,
)

__all__ = [
    "TVWeightNet",
    "elastic_loss",
    "learned_wtv_reconstruction",
    "load_weights",
    "make_training_set",
    "save_weights",
    "train_tv_weight_net",
    "weights_from_network",
]
