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
from .unfolded import Unfolded, UnfoldedChambollePock, UnfoldedIHT, UnfoldedISTA
from .unfolded_training import load_unfolded, save_unfolded, train_unfolded

__all__ = [
    "TVWeightNet",
    "Unfolded",
    "UnfoldedChambollePock",
    "UnfoldedIHT",
    "UnfoldedISTA",
    "elastic_loss",
    "learned_wtv_reconstruction",
    "load_unfolded",
    "load_weights",
    "make_training_set",
    "save_unfolded",
    "save_weights",
    "train_tv_weight_net",
    "train_unfolded",
    "weights_from_network",
]
