"""tikhon.solvers: algorithms and the problems built on them."""

if __name__ != "tikhon.solvers":  # pragma: no cover - guard against a wrong import
    raise ImportError(
        "the folder 'solvers' is the subpackage tikhon.solvers and is not a "
        "top-level package: install tikhon (pip install -e .) and write "
        "'import tikhon.solvers' instead of 'import solvers'"
    )

from tikhon._lazy import attach
from tikhon._core.loop import ConvergenceWarning
from tikhon._core.result import Result

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "ista": "first_order",
        "fista": "first_order",
        "iht": "first_order",
        "chambolle_pock": "primal_dual",
        "admm": "admm",
        "tv_reconstruction": "tomography",
        "space_variant_weights": "tomography",
        "transport": "transport",
        "bilevel": "bilevel",
    },
    eager={"Result": None, "ConvergenceWarning": None},
)
