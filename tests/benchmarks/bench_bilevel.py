"""asv suite for :func:`tikhon.solvers.bilevel.maid`: one outer iteration and its overhead.

``MAIDSuite`` learns ``theta = (log lambda, log nu)`` of smoothed-TV denoising
(``SmoothedTVDenoising``, the paper's ``sqrt`` smoothing) on random-ellipse
phantoms with noise 0.1: 4 of 32x32 on a budget of 2000 lower-level
iterations (small, quick), and 16 of 96x96 on a budget of 1500, the size and
budget of ``examples/plot_bilevel_tv.py`` (the issue's bar, "MAID's overhead
in the TV example under 10 %"). ``time_outer_iteration`` times one MAID
iteration (lower-level solves, CG, the bound, the line search) from a state
after 5 iterations from ``theta0 = (-5, -5)``; ``track_overhead_fraction``
runs MAID on the budget and reports the fraction of its wall time spent
outside the lower-level solver and the CG iterations (timers around
``lower.solve`` and the CG routine; the early-rejection checks that MAID runs
inside ``lower.solve`` are counted outside). The rest holds the graph of
``grad_x g`` that CG's double-autograd products differentiate, the product
``B^T q`` and the true residual, the bound's estimates (power iteration and
Lipschitz probes), the line search's upper-level values and the Python of
the loop; on the small problem the per-operation costs weigh more (fewer
lower-level iterations per outer one, smaller arrays).

Run with ``asv run --python=same --quick --bench bench_bilevel``, or
``python tests/benchmarks/bench_bilevel.py`` for the breakdown table (the
median of three runs per size). Torch is imported in ``setup`` (skipped
without torch), one thread.
"""

import dataclasses
import functools
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


# (images, size, budget): the quick problem and the TV example's
SIZES = {"4x32": (4, 32, 2000), "16x96": (16, 96, 1500)}


def overhead(size="4x32", budget=None):
    """MAID on a budget of lower-level iterations: seconds in the lower solver, in CG, in all."""
    torch = _torch()
    from tikhon.solvers.bilevel import implicit, inexact, maid

    n_images, n, default_budget = SIZES[size]
    budget = default_budget if budget is None else budget
    upper, lower = _problem(n_images, n)
    spent = {"lower": 0.0, "cg": 0.0, "stop": 0.0}
    solve, cg = lower.solve, implicit._cg
    rejection_certain = inexact._MAID._rejection_certain

    def timed_rejection_certain(self, threshold):
        # the early-rejection checks run inside lower.solve but are MAID's: timed apart
        stop = rejection_certain(self, threshold)

        def timed_stop(x, bound):
            t = time.perf_counter()
            out = stop(x, bound)
            spent["stop"] += time.perf_counter() - t
            return out

        return timed_stop

    @functools.wraps(solve)  # the signature MAID inspects for its stop keyword
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
    inexact._MAID._rejection_certain = timed_rejection_certain
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            res = maid(upper, lower, torch.tensor([-5.0, -5.0], dtype=torch.float64),
                       budget=budget, progress=False)
            total = time.perf_counter() - t
    finally:
        implicit._cg = cg
        inexact._MAID._rejection_certain = rejection_certain
    spent["lower"] -= spent.pop("stop")  # counted with the rest
    return {"total": total, **spent, "outer": res.n_iter, "n_lower": res.info["n_lower"],
            "n_cg": res.info["n_cg"]}


class MAIDSuite:
    timeout = 300
    params = (list(SIZES),)
    param_names = ["size"]

    def setup(self, size):
        torch = _torch()
        upper, lower = _problem(*SIZES[size][:2])
        self.solver = _solver(upper, lower)
        state = self.solver.init(torch.tensor([-5.0, -5.0], dtype=torch.float64), 0.1, 0.1, 0.1)
        for _ in range(5):
            state = self.solver.step(state)
        self.state = state

    def time_outer_iteration(self, size):
        # a fresh copy each time: step replaces the state's fields, never mutates its tensors
        self.solver.step(dataclasses.replace(self.state, path=list(self.state.path)))

    def track_overhead_fraction(self, size):
        o = overhead(size)
        return (o["total"] - o["lower"] - o["cg"]) / o["total"]

    track_overhead_fraction.unit = "fraction"


if __name__ == "__main__":
    overhead(budget=100)  # imports, first calls
    for size in SIZES:
        runs = sorted((overhead(size) for _ in range(3)),
                      key=lambda o: (o["total"] - o["lower"] - o["cg"]) / o["total"])
        o = runs[1]  # the run of the median overhead fraction
        rest = o["total"] - o["lower"] - o["cg"]
        n_images, n, _ = SIZES[size]
        print(f"MAID, smoothed-TV denoising, {n_images} images of {n}x{n}, "
              f"budget {o['n_lower']} lower-level iterations, {o['outer']} outer iterations, "
              f"{o['n_cg']} CG iterations (median of 3 runs; the three fractions "
              + ", ".join(f"{100 * (r['total'] - r['lower'] - r['cg']) / r['total']:.1f}%" for r in runs)
              + ")")
        print(f"{'part':<28}{'seconds':>10}{'share':>10}")
        for name, t in [("lower-level solver", o["lower"]), ("CG", o["cg"]),
                        ("everything else", rest), ("total", o["total"])]:
            print(f"{name:<28}{t:>10.3f}{100 * t / o['total']:>9.1f}%")
        print()
