"""asv suites for the linear operators on the reconstruction hot path.

``RadonSuite``: forward, matched adjoint and filtered backprojection of the
2-D parallel-beam Radon transform, 180 angles over 180 degrees, image sizes
128, 256 and 512, float32 and float64 (numba kernels, NumPy inputs).
``GradientSuite``: forward differences and their adjoint at 256^2 and 512^2.

Run with ``asv run --python=same --quick``; set ``ASV_SKIP_SLOW=1`` to skip the
512 cases. The numba compilation (or cache load) happens in ``setup``.
"""

import os

import numpy as np


def _setup_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _skip_slow(n):
    if os.environ.get("ASV_SKIP_SLOW") and n >= 512:
        raise NotImplementedError("skipped: ASV_SKIP_SLOW is set")


class RadonSuite:
    """Radon transform, 180 angles, default detector (covers the diagonal)."""

    params = ([128, 256, 512], ["float32", "float64"])
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        _skip_slow(n)
        _setup_threads()
        from tikhon.operators import Radon

        self.A = Radon((n, n), np.linspace(0, np.pi, 180, endpoint=False))
        rng = np.random.default_rng(0)
        self.x = rng.random((n, n)).astype(dtype)
        self.y = self.A(self.x)  # also compiles / loads the kernels
        self.A.T(self.y)
        self.A.fbp(self.y)

    def time_forward(self, n, dtype):
        self.A(self.x)

    def time_adjoint(self, n, dtype):
        self.A.T(self.y)

    def time_fbp(self, n, dtype):
        self.A.fbp(self.y)

    def peakmem_forward(self, n, dtype):
        self.A(self.x)


class GradientSuite:
    """Forward differences (Neumann boundary) and minus the divergence."""

    params = ([256, 512], ["float32", "float64"])
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        _skip_slow(n)
        _setup_threads()
        try:
            from tikhon.operators import Gradient
        except ImportError as exc:
            raise NotImplementedError(f"Gradient not available: {exc}") from exc
        self.G = Gradient((n, n))
        rng = np.random.default_rng(0)
        self.x = rng.random((n, n)).astype(dtype)
        self.y = self.G(self.x)
        self.G.T(self.y)

    def time_forward(self, n, dtype):
        self.G(self.x)

    def time_adjoint(self, n, dtype):
        self.G.T(self.y)


if __name__ == "__main__":  # quick look without asv (medians, noisy shared machine)
    import sys
    import time

    for n in (128, 256, 512):
        for dtype in ("float32", "float64"):
            s = RadonSuite()
            s.setup(n, dtype)
            for name in ("forward", "adjoint", "fbp"):
                fn = getattr(s, "time_" + name)
                ts = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    fn(n, dtype)
                    ts.append(time.perf_counter() - t0)
                print(f"radon {n} {dtype} {name}: {np.median(ts) * 1e3:.2f} ms", file=sys.stdout)
