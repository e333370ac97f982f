"""asv suite: class-regularised OT (sum-of-norms group penalty)."""

import os

import numpy as np


def _problem(n, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(scale=3, size=(k, 2))
    xs = centers[y] + rng.normal(size=(n, 2))
    xt = centers[rng.integers(0, k, n)] + rng.normal(size=(n, 2)) + 1.0
    C = ((xs[:, None] - xt[None]) ** 2).sum(-1)
    return np.full(n, 1.0 / n), np.full(n, 1.0 / n), C / C.max(), y


class ClassOTSuite:
    params = [(100, 300)]
    param_names = ["n"]

    def setup(self, n):
        if os.environ.get("ASV_SKIP_SLOW") and n > 100:
            raise NotImplementedError("slow size skipped (ASV_SKIP_SLOW)")
        import torch  # noqa: F401  (keeps thread settings comparable with other suites)

        torch.set_num_threads(1)
        from tikhon.solvers.transport import class_ot

        self.class_ot = class_ot
        self.args = _problem(n)
        class_ot(*self.args, 0.01, max_iter=2, warn=False)  # JIT warm-up

    def time_class_ot(self, n):
        self.class_ot(*self.args, 0.01, tol=1e-6, warn=False)

    def peakmem_class_ot(self, n):
        self.class_ot(*self.args, 0.01, tol=1e-6, warn=False)
