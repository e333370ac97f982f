"""asv suite for :func:`tikhon.solvers.bilevel.maid`: one outer iteration and its overhead.

``MAIDSuite`` learns ``theta = (log lambda, log nu)`` of smoothed-TV denoising
(``SmoothedTVDenoising``, the paper's ``sqrt`` smoothing) on 4 random-ellipse
phantoms of 32x32 with noise 0.1. ``time_outer_iteration`` times one MAID
iteration (lower-level solves, CG, the bound, the line search) from a state
after 5 iterations from ``theta0 = (-5, -5)``; ``track_overhead_fraction``
runs MAID on a budget of 2000 lower-level iterations and reports the fraction
of its wall time spent outside the lower-level solver and the CG iterations
(timers around ``lower.solve`` and the CG routine; the target of issue #13 is
``< 0.10``).

Run with ``asv run --python=same --quick --bench bench_bilevel``, or
``python tests/benchmarks/bench_bilevel.py`` for the breakdown table.
Torch is imported in ``setup`` (skipped without torch), one thread.
"""

import dataclasses
import time
import warnings

import numpy as np


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is an optional extra
        raise NotImplementedError(f"torch not installed: {exc}") from exc
    torch.set_num_threads(1)
    return torch


def _problem(n_images=4, size=32, seed=0):
    torch = _torch()
    from tikhon.solvers.bilevel import SmoothedTVDenoising, SquaredError

    from tikhon.data import random_ellipses

    rng = np.random.default_rng(seed)
    clean = np.stack([random_ellipses(size, rng) for _ in range(n_images)])
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    return SquaredError(torch.from_numpy(clean)), SmoothedTVDenoising(torch.from_numpy(noisy))


def _solver(upper, lower, budget=10**9):
    from tikhon.solvers.bilevel.inexact import _MAID

    return _MAID(upper, lower, rho=0.9, tau=0.5, eta=1e-4, nu=1.05, max_backtrack=10,
                 max_shrink=30, budget=budget, lower_max_iter=100_000, cg_max_iter=1000)


def overhead(budget=2000):
    """MAID on ``budget`` lower-level iterations: seconds in the lower solver, in CG, in all."""
    torch = _torch()
    from tikhon.solvers.bilevel import implicit, maid

    upper, lower = _problem()
    spent = {"lower": 0.0, "cg": 0.0}
    solve, cg = lower.solve, implicit._cg

    def timed_solve(*args, **kwargs):
        t = time.perf_counter()
        out = solve(*args, **kwargs)
        spent["lower"] += time.perf_counter() - t
        return out

    def timed_cg(*args, **kwargs):
        t = time.perf_counter()
        out = cg(*args, **kwargs)
        spent["cg"] += time.perf_counter() - t
        return out

    lower.solve = timed_solve
    implicit._cg = timed_cg
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            res = maid(upper, lower, torch.tensor([-5.0, -5.0], dtype=torch.float64),
                       budget=budget, progress=False)
            total = time.perf_counter() - t
    finally:
        implicit._cg = cg
    return {"total": total, **spent, "outer": res.n_iter, "n_lower": res.info["n_lower"],
            "n_cg": res.info["n_cg"]}


class MAIDSuite:
    timeout = 300

    def setup(self):
        torch = _torch()
        upper, lower = _problem()
        self.solver = _solver(upper, lower)
        state = self.solver.init(torch.tensor([-5.0, -5.0], dtype=torch.float64), 0.1, 0.1, 0.1)
        for _ in range(5):
            state = self.solver.step(state)
        self.state = state

    def time_outer_iteration(self):
        # a fresh copy each time: step replaces the state's fields, never mutates its tensors
        self.solver.step(dataclasses.replace(self.state, path=list(self.state.path)))

    def track_overhead_fraction(self):
        o = overhead()
        return (o["total"] - o["lower"] - o["cg"]) / o["total"]

    track_overhead_fraction.unit = "fraction"


if __name__ == "__main__":
    overhead(budget=100)  # imports, first calls
    o = overhead()
    rest = o["total"] - o["lower"] - o["cg"]
    print(f"MAID, smoothed-TV denoising, 4 x 32x32, budget {o['n_lower']} lower-level "
          f"iterations, {o['outer']} outer iterations, {o['n_cg']} CG iterations")
    print(f"{'part':<28}{'seconds':>10}{'share':>10}")
    for name, t in [("lower-level solver", o["lower"]), ("CG", o["cg"]),
                    ("everything else", rest), ("total", o["total"])]:
        print(f"{name:<28}{t:>10.3f}{100 * t / o['total']:>9.1f}%")
