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
from .activations import sparsemax
from .unfolded import Unfolded, UnfoldedChambollePock, UnfoldedIHT, UnfoldedISTA
from .unfolded_training import load_unfolded, save_unfolded, train_unfolded
from .weight_prox import ProxHandle, ProxRule, attach_prox, freeze_mask, sparsity_mask

__all__ = [
    "ProxHandle",
    "ProxRule",
    "TVWeightNet",
    "Unfolded",
    "UnfoldedChambollePock",
    "UnfoldedIHT",
    "UnfoldedISTA",
    "attach_prox",
    "elastic_loss",
    "freeze_mask",
    "learned_wtv_reconstruction",
    "load_unfolded",
    "load_weights",
    "make_training_set",
    "save_unfolded",
    "save_weights",
    "sparsemax",
    "sparsity_mask",
    "train_tv_weight_net",
    "train_unfolded",
    "weights_from_network",
]
