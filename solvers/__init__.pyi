# The public names of tikhon.solvers (see tikhon/operators/__init__.pyi). Names
# defined outside this package come through a private module of it (_result,
# _smooth), because lazy_loader follows only relative imports. No module here
# may share its name with a public function: the import system binds a loaded
# submodule to the package under its own name.

from . import bilevel, transport
from ._result import ConvergenceWarning, Result
from ._smooth import smooth_functional
from .coordinate_descent import alpha_max, lasso, lasso_path
from .first_order import IHT, ProximalGradient, fista, iht, ista
from .mixture_of_experts import LassoMoE, lasso_moe_path
from .multinomial import l1_logistic
from .primal_dual import ChambollePock, chambolle_pock
from .sobolev_descent import sobolev_fit, white_noise_sobolev_level
from .splitting import ADMM, admm
from .volumes import reconstruct_volume
from .tomography import (
    default_tv_lam,
    fbp_reconstruction,
    pilot_wtv_reconstruction,
    space_variant_weights,
    tv_problem,
    tv_reconstruction,
)
from .sweeps import parameter_sweep
from .tubal_recovery import t_product, t_transpose, tubal_factorization, tubal_rank, tubal_svd

__all__ = [
    "ADMM",
    "ChambollePock",
    "ConvergenceWarning",
    "IHT",
    "LassoMoE",
    "ProximalGradient",
    "Result",
    "admm",
    "alpha_max",
    "bilevel",
    "chambolle_pock",
    "default_tv_lam",
    "fbp_reconstruction",
    "fista",
    "iht",
    "ista",
    "l1_logistic",
    "lasso",
    "lasso_moe_path",
    "lasso_path",
    "parameter_sweep",
    "pilot_wtv_reconstruction",
    "reconstruct_volume",
    "smooth_functional",
    "sobolev_fit",
    "space_variant_weights",
    "t_product",
    "t_transpose",
    "transport",
    "tubal_factorization",
    "tubal_rank",
    "tubal_svd",
    "tv_problem",
    "tv_reconstruction",
    "white_noise_sobolev_level",
]
