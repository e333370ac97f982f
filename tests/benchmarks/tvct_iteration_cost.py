"""Cost of one TV-CT Chambolle-Pock iteration relative to one Radon forward + adjoint pair.

An iteration of ``tv_reconstruction`` applies A, A^T, the gradient and its
adjoint once each, plus pixel-wise prox steps; the Radon pair is its floor.
Prints the median times and the ratio (issue 6 target: <= 1.3).

Usage::

    python tests/benchmarks/tvct_iteration_cost.py [--size 512] [--angles 180] [--dtype float32]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def measure(size=512, n_angles=180, dtype="float32", n_iter=50, repeats=5):
    from tikhon.data import shepp_logan
    from tikhon.operators import Radon
    from tikhon.solvers import tv_reconstruction

    dtype = np.dtype(dtype)
    x = shepp_logan(size).astype(dtype)
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    A = Radon(x.shape, angles)
    y = A(x)
    y = (y + 0.01 * np.abs(y).max() * np.random.default_rng(0).standard_normal(y.shape)).astype(dtype)
    A.norm()  # cached: the solver's step sizes must not be part of the timing

    def pair():
        A.adjoint(A.forward(x))

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tv_reconstruction(A, y, 4.0, tol=0.0, max_iter=n_iter, check_every=10)

    pair()
    solve()
    t_pair, t_iter = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            pair()
        t_pair.append((time.perf_counter() - t0) / 10)
        t0 = time.perf_counter()
        solve()
        t_iter.append((time.perf_counter() - t0) / n_iter)
    return float(np.median(t_pair)), float(np.median(t_iter))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    t_pair, t_iter = measure(args.size, args.angles, args.dtype)
    print(f"TV-CT {args.size}^2, {args.angles} angles, {args.dtype}: "
          f"Radon forward+adjoint {t_pair * 1e3:.1f} ms, Chambolle-Pock iteration {t_iter * 1e3:.1f} ms, "
          f"ratio {t_iter / t_pair:.2f}")


if __name__ == "__main__":
    main()
