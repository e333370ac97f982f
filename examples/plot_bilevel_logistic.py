"""
Bilevel learning of one l2 penalty per weight: multinomial logistic regression on digits
========================================================================================

Learns ``theta`` (one log-penalty per weight, ``65 x 10 = 650`` of them: 64
pixels and an intercept column, 10 classes) of
:class:`tikhon.solvers.bilevel.L2MultinomialLogistic` on scikit-learn's
bundled digits (``load_digits``, features scaled to [0, 1]), the upper level
being the cross-entropy on a validation split
(:class:`~tikhon.solvers.bilevel.CrossEntropy`) and a third split held out
for the test accuracy. :func:`~tikhon.solvers.bilevel.maid` is compared
with :func:`~tikhon.solvers.bilevel.inexact_gradient_descent` under the
geometric, quadratic and cubic accuracy schedules (fixed step), all from
the same ``theta0``, by the validation loss and the test accuracy against
the true cost (total lower-level iterations); a grid search over one
scalar penalty is the reference line.

``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) uses smaller splits
and budgets. Usage: ``python examples/plot_bilevel_logistic.py [--out DIR]``
(default: the ``TIKHON_EXAMPLES_OUT`` environment variable, else the current
directory).
"""

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from tikhon.solvers.bilevel import (
    CrossEntropy,
    L2MultinomialLogistic,
    inexact_gradient_descent,
    maid,
)

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"
torch.set_num_threads(1)  # two threads on two shared cores ran far slower

N_TRAIN, N_VAL, BUDGET = (200, 200, 1500) if QUICK else (500, 500, 20_000)
LOG_ALPHA0 = math.log(1e-2)
GRID = np.linspace(-11.0, -1.0, 6) if QUICK else np.linspace(-12.0, 0.0, 13)  # log alpha
# the fixed schedules need a step: the geometric schedule runs at each of these, and the
# other two at the best of them (the tuning runs are not charged to the schedules)
STEPS = (100.0, 300.0) if QUICK else (30.0, 100.0, 300.0, 1000.0)
# MAID grows its step by 10/9 per accepted iteration from beta0: a second run starts it at
# the fixed schedules' scale
BETA0_LARGE = 300.0
# ||W - W*|| <= 1e-4 moves the validation loss by at most ||grad f|| 1e-4 (below 1e-4 here)
EPS_EVAL = 1e-4


def splits(seed=0):
    """Train / validation / test splits of the digits, an intercept column appended."""
    X, y = load_digits(return_X_y=True)
    X = np.hstack([X / 16.0, np.ones((len(X), 1))])
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = torch.from_numpy(X[order]), torch.from_numpy(y[order])
    a, b = N_TRAIN, N_TRAIN + N_VAL
    return (X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:])


class Trace:
    """Callback: per outer iteration the cost, the validation loss and the test accuracy."""

    def __init__(self, test):
        self.test, self.rows = test, []

    def __call__(self, state):
        self.rows.append((state.n_lower, state.n_cg, float(state.loss),
                          self.test.accuracy(state.x)))
        return False


def grid_search(lower, upper, test):
    """One scalar penalty ``alpha``: each point solved to ``EPS_EVAL``, warm-started along the grid.

    The grid runs from the strongest penalty down (the well-conditioned solves first, as a
    regularization path does).
    """
    rows, x, cost = [], None, 0
    for log_alpha in GRID[::-1]:
        theta = torch.full((lower.n_params,), float(log_alpha), dtype=torch.float64)
        sol = lower.solve(theta, eps=EPS_EVAL, max_iter=100_000, x0=x)
        x, cost = sol.x, cost + sol.n_iter
        rows.append((float(log_alpha), float(upper.value(x)), test.accuracy(x), cost))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    (X_tr, y_tr), (X_val, y_val), (X_te, y_te) = splits()
    lower = L2MultinomialLogistic(X_tr, y_tr, 10)
    upper = CrossEntropy(X_val, y_val, 10)
    test = CrossEntropy(X_te, y_te, 10)
    theta0 = torch.full((lower.n_params,), LOG_ALPHA0, dtype=torch.float64)

    t0 = time.perf_counter()
    grid = grid_search(lower, upper, test)
    t_grid = time.perf_counter() - t0
    best = min(grid, key=lambda r: r[1])

    runs = {}

    def record(name, call):
        trace = Trace(test)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the budget is the stopping rule here
            res = call(trace)
        runs[name] = (res, trace, time.perf_counter() - t0)

    def schedule_run(schedule, step):
        return lambda cb: inexact_gradient_descent(upper, lower, theta0, step=step,
                                                   schedule=schedule, eps0=0.1, budget=BUDGET,
                                                   callback=cb, progress=False)

    record("MAID", lambda cb: maid(upper, lower, theta0, budget=BUDGET, callback=cb,
                                   progress=False))
    record(f"MAID, beta0 = {BETA0_LARGE:g}", lambda cb: maid(
        upper, lower, theta0, beta0=BETA0_LARGE, budget=BUDGET, callback=cb, progress=False))
    for step in STEPS:
        record(f"geometric, step {step:g}", schedule_run("geometric", step))
    finite = [k for k in runs if not k.startswith("MAID") and runs[k][1].rows
              and math.isfinite(runs[k][1].rows[-1][2])]
    best_step = float(min(finite, key=lambda k: runs[k][1].rows[-1][2]).split()[-1])
    for schedule in ("quadratic", "cubic"):
        record(f"{schedule}, step {best_step:g}", schedule_run(schedule, best_step))

    lines = [(f"Digits: {N_TRAIN} train / {N_VAL} validation / {len(y_te)} test, "
             f"{lower.n_params} penalties, theta0 = log {math.exp(LOG_ALPHA0):g}, "
             f"budget {BUDGET} lower-level iterations"),
             (f"{'method':<26}{'val. loss':>10}{'test acc.':>10}{'lower it.':>11}{'CG it.':>8}"
             f"{'outer':>7}{'to grid opt.':>14}{'time s':>8}"),
             (f"{'grid, scalar alpha':<26}{best[1]:>10.4f}{best[2]:>10.4f}{grid[-1][3]:>11}"
             f"{0:>8}{len(GRID):>7}{grid[-1][3]:>14}{t_grid:>8.1f}"
             f"   (best log alpha = {best[0]:.1f})")]
    for name, (res, trace, elapsed) in runs.items():
        # the loss after the run at the learned theta, solved tightly (not charged)
        sol = lower.solve(torch.as_tensor(res.x), eps=EPS_EVAL, max_iter=100_000,
                          x0=torch.as_tensor(res.info["x"]))
        reach = next((r[0] for r in trace.rows if r[2] <= best[1]), None)
        lines.append(f"{name:<26}{float(upper.value(sol.x)):>10.4f}{test.accuracy(sol.x):>10.4f}"
                     f"{res.info['n_lower']:>11}{res.info['n_cg']:>8}{res.n_iter:>7}"
                     f"{'never' if reach is None else reach:>14}{elapsed:>8.1f}")
    lines += [("(to grid opt.: lower-level iterations until the run's own loss f(x~) first met the "
              "scalar grid's best validation loss)"),
              f"total time {time.perf_counter() - t_start:.1f} s"]
    text = "\n".join(lines)
    print(text)
    (out / "bilevel_logistic.txt").write_text(text + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, (_, trace, _) in runs.items():
        cost = [r[0] for r in trace.rows]
        axes[0].plot(cost, [r[2] for r in trace.rows], ".-", ms=3, label=name)
        axes[1].plot(cost, [r[3] for r in trace.rows], ".-", ms=3, label=name)
    axes[0].axhline(best[1], color="gray", ls=":", label="grid optimum (scalar alpha)")
    axes[1].axhline(best[2], color="gray", ls=":", label="grid optimum (scalar alpha)")
    for ax, label in zip(axes, ("validation cross-entropy (upper loss)", "test accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel("total lower-level iterations")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bilevel_logistic.png", dpi=120)
    print(f"wrote {out / 'bilevel_logistic.txt'} and {out / 'bilevel_logistic.png'}")


if __name__ == "__main__":
    main()
