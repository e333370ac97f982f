"""Lasso: tikhon's FISTA vs scikit-learn, celer and skglm (coordinate descent solvers).

Problem: ``min_w ||y - X w||^2 / (2n) + alpha ||w||_1`` with ``alpha =
alpha_max / 100`` on a Gaussian design (500 x 5000, or 100 x 1000 with
``quick``). Each solver runs at its own tolerance knob set to the matched value
``TOL``; the table reports the relative objective error each reached against a
high-accuracy reference (FISTA run far past convergence), so the times can be
read together with the accuracy actually delivered.
"""

from __future__ import annotations

import warnings

import numpy as np

TOL = 1e-8


def _problem(quick):
    n, p = (100, 1000) if quick else (500, 5000)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[rng.choice(p, p // 50, replace=False)] = rng.standard_normal(p // 50)
    y = X @ w + 0.1 * rng.standard_normal(n)
    alpha = np.max(np.abs(X.T @ y)) / n / 100
    return X, y, alpha


def _objective(X, y, alpha, w):
    r = y - X @ w
    return r @ r / (2 * X.shape[0]) + alpha * np.abs(w).sum()


def _tikhon(X, y, alpha, tol, max_iter=100_000):
    from tikhon.operators import MatrixOperator
    from tikhon.operators.prox import L1, SquaredL2
    from tikhon.solvers import ConvergenceWarning, fista

    f = SquaredL2(b=y, op=MatrixOperator(X))
    g = (alpha * X.shape[0]) * L1()
    f.lipschitz  # noqa: B018 - computed once, outside the timed runs

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fista(f, g, np.zeros(X.shape[1]), tol=tol, max_iter=max_iter, check_every=10,
                         record_objective=False).x

    return solve


def _sklearn(X, y, alpha):
    from sklearn.linear_model import Lasso

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Lasso(alpha=alpha, fit_intercept=False, tol=TOL, max_iter=100_000).fit(X, y).coef_

    return solve


def _celer(X, y, alpha):
    from celer import Lasso

    def solve():
        return Lasso(alpha=alpha, fit_intercept=False, tol=TOL, max_iter=1000).fit(X, y).coef_

    return solve


def _skglm(X, y, alpha):
    from skglm import Lasso

    def solve():
        return Lasso(alpha=alpha, fit_intercept=False, tol=TOL, max_iter=1000).fit(X, y).coef_

    return solve


def run(quick: bool) -> list[dict]:
    from _timing import median_time

    X, y, alpha = _problem(quick)
    ref = _objective(X, y, alpha, _tikhon(X, y, alpha, tol=1e-13, max_iter=200_000)())
    repeats = 3 if quick else 5
    t_tik, s_tik, w_tik = median_time(_tikhon(X, y, alpha, TOL), repeats=repeats)
    acc_tik = f"rel. obj. {(_objective(X, y, alpha, w_tik) - ref) / ref:.1e}"
    rows = []
    problem = f"Lasso {X.shape[0]}x{X.shape[1]}, alpha_max/100, tol {TOL:g}"
    for name, make in (("scikit-learn Lasso", _sklearn), ("celer Lasso", _celer), ("skglm Lasso", _skglm)):
        row = {"problem": problem, "peer": name, "tikhon_s": t_tik, "tikhon_spread": s_tik,
               "tikhon_accuracy": acc_tik, "peer_s": None, "peer_spread": None,
               "peer_accuracy": "", "note": "tikhon: FISTA, adaptive restart, relative-change tol"}
        try:
            solve = make(X, y, alpha)
            # the warm-up run inside median_time also pays numba compilation (skglm)
            t, s, w = median_time(solve, repeats=repeats)
        except ImportError as exc:
            row["note"] = f"peer not installed ({exc.name})"
            rows.append(row)
            continue
        row.update(peer_s=t, peer_spread=s,
                   peer_accuracy=f"rel. obj. {(_objective(X, y, alpha, w) - ref) / ref:.1e}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    import sys

    for r in run("--quick" in sys.argv):
        print(r)
