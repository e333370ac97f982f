"""asv suites for the core solvers: FISTA on the Lasso, Chambolle-Pock TV denoising."""

import os
import warnings

import numpy as np

from tikhon.operators import Gradient, MatrixOperator
from tikhon.operators.prox import L1, L21, SquaredL2
from tikhon.solvers import ConvergenceWarning, chambolle_pock, fista


def _skip_slow(is_slow):
    if is_slow and os.environ.get("ASV_SKIP_SLOW"):
        raise NotImplementedError("slow benchmark skipped (ASV_SKIP_SLOW)")


class FistaSuite:
    """FISTA on a 500 x 5000 Lasso (alpha_max / 100), a fixed 200 iterations."""

    params = [["float32", "float64"]]
    param_names = ["dtype"]
    timeout = 300

    def setup(self, dtype):
        _skip_slow(dtype == "float32")
        rng = np.random.default_rng(0)
        X = rng.standard_normal((500, 5000)).astype(dtype)
        y = (X[:, :50] @ rng.standard_normal(50)).astype(dtype)
        alpha = float(np.max(np.abs(X.T @ y))) / 100
        self.f = SquaredL2(b=y, op=MatrixOperator(X))
        self.g = alpha * L1()
        self.x0 = np.zeros(5000, dtype=dtype)
        self.f.lipschitz  # noqa: B018 - the power iteration is not what is timed
        self._run(5)  # warm-up

    def _run(self, n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fista(self.f, self.g, self.x0, tol=0.0, max_iter=n, check_every=n,
                         record_objective=False)

    def time_fista_200(self, dtype):
        self._run(200)

    def peakmem_fista_200(self, dtype):
        self._run(200)


class ChambollePockSuite:
    """Chambolle-Pock TV denoising of a 512 x 512 image, a fixed 200 iterations."""

    params = [["float32", "float64"], [False, True]]
    param_names = ["dtype", "precondition"]
    timeout = 300

    def setup(self, dtype, precondition):
        _skip_slow(dtype == "float32" or precondition)
        rng = np.random.default_rng(0)
        b = np.zeros((512, 512))
        b[128:384, 128:384] = 1.0
        b = (b + 0.1 * rng.standard_normal(b.shape)).astype(dtype)
        self.K = Gradient(b.shape)
        self.f = L21(axis=0, weights=0.1)
        self.g = SquaredL2(b=b)
        self.x0 = np.zeros_like(b)
        self.precondition = precondition
        self.K.norm()  # cached: not what is timed
        self._run(3)  # JIT warm-up

    def _run(self, n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return chambolle_pock(self.K, self.f, self.g, x0=self.x0, precondition=self.precondition,
                                  tol=0.0, max_iter=n, check_every=n)

    def time_chambolle_pock_200(self, dtype, precondition):
        self._run(200)

    def peakmem_chambolle_pock_200(self, dtype, precondition):
        self._run(200)
