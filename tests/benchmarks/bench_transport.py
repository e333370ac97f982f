"""asv suites of tikhon.solvers.transport.sinkhorn (the NumPy methods and kernel dtypes)."""

import os
import warnings

import numpy as np

from tikhon.solvers.transport import sinkhorn


def _problem(n, seed=0):
    rng = np.random.default_rng(seed)
    X, Y = rng.random((n, 2)), rng.random((n, 2))
    C = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2 * X @ Y.T
    np.maximum(C, 0, out=C)
    C /= C.max()
    a = np.full(n, 1.0 / n)
    return a, a.copy(), C


class SinkhornSuite:
    """Stabilised Sinkhorn to a marginal violation of 1e-6 on 2-D uniform points."""

    params = ([1000, 4000], [1e-2, 1e-3])
    param_names = ["n", "eps"]
    timeout = 600

    def setup(self, n, eps):
        if n >= 4000 and os.environ.get("ASV_SKIP_SLOW"):
            raise NotImplementedError("slow parameter skipped (ASV_SKIP_SLOW)")
        self.a, self.b, self.C = _problem(n)
        # numba JIT / cache load outside the timing
        small = (self.a[:50] * n / 50, self.b[:50] * n / 50, self.C[:50, :50], eps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warm-up runs stop at max_iter on purpose
            for method in ("scaling", "log"):
                for kd in ("float32", "float64"):
                    sinkhorn(*small, max_iter=5, method=method, kernel_dtype=kd)

    def time_sinkhorn(self, n, eps):
        sinkhorn(self.a, self.b, self.C, eps, tol=1e-6, max_iter=100_000)

    def time_sinkhorn_float64(self, n, eps):
        sinkhorn(self.a, self.b, self.C, eps, tol=1e-6, max_iter=100_000, kernel_dtype="float64")

    def time_sinkhorn_log(self, n, eps):
        sinkhorn(self.a, self.b, self.C, eps, tol=1e-6, max_iter=100_000, method="log")

    def peakmem_sinkhorn(self, n, eps):
        sinkhorn(self.a, self.b, self.C, eps, tol=1e-6, max_iter=100_000)
