"""asv suites for the proximal maps on the TV hot path: the L21 projection
(the dual step of every TV solver), the L21 group shrinkage and the L1 soft
threshold, at 256^2 and 1024^2, in float32 and float64.

Run with ``asv run --python=same --quick`` (see asv.conf.json), or directly with
``python tests/benchmarks/bench_prox.py`` for a quick comparison against NumPy
and PyProximal (printed as medians over repeats, machine shared and noisy).
"""

import numpy as np

from tikhon.operators.prox import L1, L21


def _setup_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


class L21Suite:
    """Weighted isotropic TV: gradient layout (2, n, n), per-pixel weights (n, n)."""

    params = ([256, 1024], ["float32", "float64"])
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        _setup_threads()
        rng = np.random.default_rng(0)
        self.y = rng.standard_normal((2, n, n)).astype(dtype)
        self.w = rng.uniform(0.1, 1.0, (n, n))
        self.f = L21(axis=0, weights=self.w)
        self.conj = self.f.conj
        # compile and fill the weight caches outside the timing
        self.conj.prox(self.y, 1.0)
        self.f.prox(self.y, 0.5)

    def time_projection(self, n, dtype):
        self.conj.prox(self.y, 1.0)

    def time_prox(self, n, dtype):
        self.f.prox(self.y, 0.5)

    def time_projection_numpy_reference(self, n, dtype):
        # what the projection costs written with NumPy temporaries
        nrm = np.sqrt((self.y * self.y).sum(axis=0))
        self.y / np.maximum(1, nrm / self.w.astype(dtype))

    def peakmem_projection(self, n, dtype):
        self.conj.prox(self.y, 1.0)


class L1Suite:
    params = ([256, 1024], ["float32", "float64"])
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        _setup_threads()
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, n)).astype(dtype)
        self.f = L1()
        self.fw = L1(weights=rng.uniform(0, 1, (n, n)))
        self.fw.prox(self.x, 0.5)

    def time_prox(self, n, dtype):
        self.f.prox(self.x, 0.5)

    def time_prox_weighted(self, n, dtype):
        self.fw.prox(self.x, 0.5)


def _compare():  # pragma: no cover - manual run
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _timing import median_time

    try:
        import pyproximal
    except ImportError:
        pyproximal = None
    for n in (256, 1024):
        for dtype in ("float32", "float64"):
            rng = np.random.default_rng(0)
            y = rng.standard_normal((2, n, n)).astype(dtype)
            w = rng.uniform(0.1, 1.0, (n, n))
            f = L21(weights=w)
            proj = f.conj
            wd = w.astype(dtype)
            rows = {
                "tikhon L21 projection": lambda: proj.prox(y, 1.0),
                "numpy L21 projection": lambda: y / np.maximum(1, np.sqrt((y * y).sum(axis=0)) / wd),
                "tikhon L21 prox": lambda: f.prox(y, 0.5),
                "numpy L21 prox": lambda: y * np.maximum(0, 1 - 0.5 * wd / np.maximum(np.sqrt((y * y).sum(axis=0)), 1e-30)),
                "tikhon L1 prox": lambda: L1().prox(y, 0.5),
                "numpy L1 prox": lambda: np.sign(y) * np.maximum(np.abs(y) - 0.5, 0),
            }
            if pyproximal is not None:
                pl21 = pyproximal.L21(ndim=2)
                yf = y.ravel()
                rows["pyproximal L21 prox (unweighted)"] = lambda: pl21.prox(yf, 0.5)
                pl1 = pyproximal.L1()
                rows["pyproximal L1 prox"] = lambda: pl1.prox(yf, 0.5)
            for name, fn in rows.items():
                med, spread, _ = median_time(fn, repeats=7, warmup=2)
                print(f"n={n:5d} {dtype}  {name:36s} {1e3 * med:8.2f} ms  (+/- {1e3 * spread:.2f})")


if __name__ == "__main__":  # pragma: no cover
    _compare()
