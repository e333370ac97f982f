"""asv suite for sparse regression: tikhon.solvers.lasso and lasso_path.

Small, fast setups (the peer comparison at the issue's sizes is
``peers_lasso.py``, run by ``compare_peers.py --only lasso``).
"""

import numpy as np
import scipy.sparse as sp
from tikhon.solvers import lasso, lasso_path


class LassoSuite:
    """Working-set coordinate descent to a duality gap of 1e-8 (relative to ||y||^2 / n).

    dense: 200 x 2000 Gaussian at alpha_max / 100; sparse: CSC 1000 x 20000 at
    0.5% density at alpha_max / 20; path: 10 values of alpha down to
    alpha_max / 100 on the dense design; weighted: the dense problem with
    sample weights and an intercept (the M-step of a mixture of experts).
    """

    params = [["float64", "float32"]]  # noqa: RUF012 - asv reads these class attributes
    param_names = ["dtype"]  # noqa: RUF012
    timeout = 120

    def setup(self, dtype):
        rng = np.random.default_rng(0)
        n, p = 200, 2000
        X = rng.standard_normal((n, p))
        w = np.zeros(p)
        w[rng.choice(p, 40, replace=False)] = rng.standard_normal(40)
        y = X @ w + 0.1 * rng.standard_normal(n)
        self.X = np.asfortranarray(X.astype(dtype))
        self.y = y.astype(dtype)
        self.alpha = float(np.max(np.abs(X.T @ y))) / n / 100
        self.alphas = self.alpha * 100 * np.geomspace(1.0, 1e-2, 10)
        self.sw = rng.uniform(0.1, 1.0, n)

        ns, ps = 1000, 20000
        Xs = sp.random(ns, ps, density=0.005, random_state=rng, format="csc")
        ws = np.zeros(ps)
        ws[rng.choice(ps, 100, replace=False)] = rng.standard_normal(100)
        ys = Xs @ ws + 0.1 * rng.standard_normal(ns)
        self.Xs = Xs.astype(dtype)
        self.ys = ys.astype(dtype)
        self.alpha_s = float(np.max(np.abs(Xs.T @ ys))) / ns / 20
        # lam = 0 (every feature unpenalized) on a wide CSC design: the projection
        # off the unpenalized columns (a QR of the n x |U| block; before: 17 s, 126 MB)
        self.Xu = sp.random(200, 2000, density=0.01, random_state=1, format="csc").astype(dtype)
        self.yu = rng.standard_normal(200).astype(dtype)
        # warm-up: numba compilation (or loading its cache) is not what is timed
        self.time_dense(dtype)
        self.time_sparse(dtype)
        self.time_weighted(dtype)
        self.time_path(dtype)
        self.time_sparse_intercept(dtype)
        self.time_lam_zero_sparse(dtype)

    def time_dense(self, dtype):
        lasso(self.X, self.y, self.alpha, fit_intercept=False, tol=1e-8)

    def time_sparse(self, dtype):
        lasso(self.Xs, self.ys, self.alpha_s, fit_intercept=False, tol=1e-8)

    def time_weighted(self, dtype):
        lasso(self.X, self.y, self.alpha, sample_weight=self.sw, tol=1e-8)

    def time_path(self, dtype):
        lasso_path(self.X, self.y, self.alphas, fit_intercept=False, tol=1e-8)

    def peakmem_sparse(self, dtype):
        lasso(self.Xs, self.ys, self.alpha_s, fit_intercept=False, tol=1e-8)

    def time_sparse_intercept(self, dtype):
        # the implicitly centered sparse path (fit_intercept): its cost next to time_sparse
        lasso(self.Xs, self.ys, self.alpha_s, tol=1e-8)

    def time_lam_zero_sparse(self, dtype):
        lasso(self.Xu, self.yu, 0.0, tol=1e-8)

    def peakmem_lam_zero_sparse(self, dtype):
        lasso(self.Xu, self.yu, 0.0, tol=1e-8)
