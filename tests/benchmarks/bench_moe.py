"""asv suites for the sparse-statistics M-steps: l1_logistic and LassoMoE.fit."""

import os
import warnings

import numpy as np
from tikhon.solvers import ConvergenceWarning, LassoMoE, l1_logistic


def _skip_slow(is_slow):
    if is_slow and os.environ.get("ASV_SKIP_SLOW"):
        raise NotImplementedError("slow benchmark skipped (ASV_SKIP_SLOW)")


class L1LogisticSuite:
    """l1 multinomial logistic regression, 500 x 200, to an optimality residual of 1e-6."""

    params = [[2, 4], ["hard", "soft"]]
    param_names = ["n_classes", "labels"]
    timeout = 300

    def setup(self, n_classes, labels):
        _skip_slow(n_classes == 4 and labels == "soft")
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((500, 200))
        W = np.zeros((200, n_classes))
        W[:5] = 2 * rng.standard_normal((5, n_classes))
        logits = self.X @ W
        P = np.exp(logits - logits.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        self.Y = P if labels == "soft" else np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        self.lam = 0.02
        l1_logistic(self.X[:50], self.Y[:50], self.lam, max_iter=2, warn=False)  # compile

    def time_l1_logistic(self, n_classes, labels):
        l1_logistic(self.X, self.Y, self.lam, tol=1e-6, warn=False)

    def peakmem_l1_logistic(self, n_classes, labels):
        l1_logistic(self.X, self.Y, self.lam, tol=1e-6, warn=False)


class LassoMoESuite:
    """LassoMoE.fit (K = 2, one start, 30 EM iterations) on a planted 400 x 200 problem."""

    timeout = 300

    def setup(self):
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from peers_moe import _problem

        self.X, self.y, self.lam = _problem(quick=False)
        self._fit(2)  # compile

    def _fit(self, n_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LassoMoE(n_experts=2, lam=self.lam, n_init=1, max_iter=n_iter, tol=0.0,
                            random_state=0).fit(self.X, self.y)

    def time_fit_30(self):
        self._fit(30)

    def peakmem_fit_30(self):
        self._fit(30)
