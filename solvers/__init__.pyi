# The public names of tikhon.solvers (see tikhon/operators/__init__.pyi). Names
# defined outside this package come through a private module of it (_result,
# _smooth), because lazy_loader follows only relative imports. No module here
# may share its name with a public function: the import system binds a loaded
# submodule to the package under its own name.

from . import bilevel, transport
from ._result import ConvergenceWarning, Result
from ._smooth import smooth_functional
from .first_order import IHT, ProximalGradient, fista, iht, ista
from .primal_dual import ChambollePock, chambolle_pock
from .sobolev_descent import sobolev_fit, white_noise_sobolev_level
from .splitting import ADMM, admm
from .tomography import (
    default_tv_lam,
    fbp_reconstruction,
    pilot_wtv_reconstruction,
    space_variant_weights,
    tv_problem,
    tv_reconstruction,
)
from .tubal_recovery import t_product, t_transpose, tubal_factorization, tubal_rank, tubal_svd

__all__ = [
    "ADMM",
    "ChambollePock",
    "ConvergenceWarning",
    "IHT",
    "ProximalGradient",
    "Result",
    "admm",
    "bilevel",
    "chambolle_pock",
    "default_tv_lam",
    "fbp_reconstruction",
    "fista",
    "iht",
    "ista",
    "pilot_wtv_reconstruction",
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
