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
from .icnn import ICNN
from .logit_losses import label_smoothing_loss, maxsup_loss, z_loss
from .penalties import (
    CauchySchwarz,
    GroupOrthogonality,
    HyperSparse,
    MoreauEnvelope,
    NormLoss,
    Penalty,
    SquaredDistance,
)
from .proximal_networks import (
    LearnedProximalNetwork,
    load_lpn,
    proximal_matching_loss,
    save_lpn,
    train_lpn,
)
from .unfolded import Unfolded, UnfoldedChambollePock, UnfoldedIHT, UnfoldedISTA
from .unfolded_training import load_unfolded, save_unfolded, train_unfolded
from .weight_prox import ProxHandle, ProxRule, attach_prox, freeze_mask, sparsity_mask

__all__ = [
    "CauchySchwarz",
    "GroupOrthogonality",
    "HyperSparse",
    "ICNN",
    "LearnedProximalNetwork",
    "MoreauEnvelope",
    "NormLoss",
    "Penalty",
    "ProxHandle",
    "ProxRule",
    "SquaredDistance",
    "TVWeightNet",
    "Unfolded",
    "UnfoldedChambollePock",
    "UnfoldedIHT",
    "UnfoldedISTA",
    "attach_prox",
    "elastic_loss",
    "freeze_mask",
    "label_smoothing_loss",
    "learned_wtv_reconstruction",
    "load_lpn",
    "load_unfolded",
    "load_weights",
    "make_training_set",
    "maxsup_loss",
    "proximal_matching_loss",
    "save_lpn",
    "save_unfolded",
    "save_weights",
    "sparsemax",
    "sparsity_mask",
    "train_lpn",
    "train_tv_weight_net",
    "train_unfolded",
    "weights_from_network",
    "z_loss",
]
