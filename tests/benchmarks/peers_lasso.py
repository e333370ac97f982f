"""Lasso: tikhon's ``lasso``/``lasso_path`` vs scikit-learn, celer and skglm.

Problem: ``min_w ||y - X w||^2 / (2n) + alpha ||w||_1`` (no intercept) on

- a dense Gaussian design, 500 x 5000 (100 x 1000 with ``quick``), at
  ``alpha = alpha_max / 100``;
- a sparse CSC design, 2000 x 50000 at 0.5% density (500 x 5000 at 2% with
  ``quick``), uniform entries, seeded, at ``alpha = alpha_max / 20`` (a few
  hundred nonzero coefficients);
- a path of 10 values of ``alpha`` from ``alpha_max`` to ``alpha_max / 100``
  (geometric) on the dense design, every solver warm-started along it.

Fairness: one thread for everyone (BLAS limited through threadpoolctl, numba
set to one thread), the same objective, each solver's tolerance knob at
``TOL``; every solver is run once untimed first (numba compilation of tikhon
and skglm, imports). tikhon, scikit-learn and celer stop when their duality
gap is at most ``TOL * ||y||^2 / n``; skglm has no gap criterion (its ``tol``
bounds the largest violation of the optimality conditions). So the table
reports, for every solution, its duality gap computed here independently
(residual rescaled into the dual feasible set) relative to ``||y||^2 / n``,
and its relative objective error against a tikhon solve at ``tol = 1e-14``.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

TOL = 1e-8
N_PATH = 10


def _dense(quick):
    n, p = (100, 1000) if quick else (500, 5000)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[rng.choice(p, p // 50, replace=False)] = rng.standard_normal(p // 50)
    y = X @ w + 0.1 * rng.standard_normal(n)
    # Fortran order is what every coordinate-descent solver here reads; giving it
    # to all of them keeps copies out of the timings
    return np.asfortranarray(X), y


def _sparse(quick):
    import scipy.sparse as sp

    n, p, density = (500, 5000, 0.02) if quick else (2000, 50000, 0.005)
    rng = np.random.default_rng(0)
    X = sp.random(n, p, density=density, random_state=rng, format="csc")
    w = np.zeros(p)
    w[rng.choice(p, 200, replace=False)] = rng.standard_normal(200)
    y = X @ w + 0.1 * rng.standard_normal(n)
    return X, y


def _alpha_max(X, y):
    return float(np.max(np.abs(X.T @ y))) / X.shape[0]


def _objective(X, y, alpha, w):
    r = y - X @ w
    return r @ r / (2 * X.shape[0]) + alpha * np.abs(w).sum()


def _rel_gap(X, y, alpha, w):
    """Duality gap of ``w`` over ``||y||^2 / n`` (dual point: the rescaled residual)."""
    n = X.shape[0]
    r = y - X @ w
    theta = r / max(1.0, float(np.max(np.abs(X.T @ r))) / (n * alpha))
    primal = r @ r / (2 * n) + alpha * np.abs(w).sum()
    dual = (y @ y - (y - theta) @ (y - theta)) / (2 * n)
    return (primal - dual) / (y @ y / n)


@contextlib.contextmanager
def _one_thread():
    import numba
    from threadpoolctl import threadpool_limits

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(old)


# --- single problems ---------------------------------------------------------


def _tikhon(X, y, alpha):
    from tikhon.solvers import lasso

    return lambda: lasso(X, y, alpha, fit_intercept=False, tol=TOL).x


def _sklearn(X, y, alpha):
    from sklearn.linear_model import Lasso

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Lasso(alpha=alpha, fit_intercept=False, tol=TOL, max_iter=100_000).fit(X, y).coef_

    return solve


def _celer(X, y, alpha):
    from celer import Lasso

    return lambda: Lasso(alpha=alpha, fit_intercept=False, tol=TOL, max_iter=1000).fit(X, y).coef_


def _skglm(X, y, alpha, tol=TOL):
    from skglm import Lasso

    return lambda: Lasso(alpha=alpha, fit_intercept=False, tol=tol, max_iter=1000).fit(X, y).coef_


# --- paths ---------------------------------------------------------------------


def _tikhon_path(X, y, alphas):
    from tikhon.solvers import lasso_path

    return lambda: lasso_path(X, y, alphas, fit_intercept=False, tol=TOL).coefs


def _sklearn_path(X, y, alphas):
    from sklearn.linear_model import lasso_path

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lasso_path(X, y, alphas=alphas, tol=TOL, max_iter=100_000)[1].T

    return solve


def _celer_path(X, y, alphas):
    from celer import celer_path

    # celer_path's tol is absolute (celer.Lasso scales it by ||y||^2 / n itself)
    tol = TOL * float(y @ y) / X.shape[0]
    return lambda: celer_path(X, y, "lasso", alphas=alphas, tol=tol, max_iter=1000)[1].T


def _skglm_path(X, y, alphas):
    from skglm import Lasso

    def solve():
        est = Lasso(alpha=alphas[0], fit_intercept=False, tol=TOL, max_iter=1000, warm_start=True)
        out = []
        for a in alphas:
            est.set_params(alpha=a).fit(X, y)
            out.append(est.coef_.copy())
        return np.array(out)

    return solve


def _accuracy(X, y, alphas, coefs, refs):
    coefs = np.atleast_2d(coefs)
    gaps = [_rel_gap(X, y, a, w) for a, w in zip(alphas, coefs)]
    objs = [(_objective(X, y, a, w) - r) / r for a, w, r in zip(alphas, coefs, refs)]
    return f"gap/scale {max(gaps):.1e}, rel. obj. {max(objs):.1e}"


def _compare(problem, X, y, alphas, makers, repeats, note):
    from _timing import median_time
    from tikhon.solvers import lasso

    refs = [_objective(X, y, a, lasso(X, y, a, fit_intercept=False, tol=1e-14, max_iter=2000).x)
            for a in alphas]
    (_, make_tikhon), *peers = makers
    # alternate tikhon and each peer, so that a change of load hits both sides
    rows = []
    for name, make in peers:
        row = {"problem": problem, "peer": name, "peer_s": None, "peer_spread": None,
               "peer_accuracy": "", "note": note}
        try:
            solve = make(X, y, alphas)
        except ImportError as exc:
            row["note"] = f"peer not installed ({exc.name})"
            row["tikhon_s"] = None
            rows.append(row)
            continue
        t_tik, s_tik, w_tik = median_time(make_tikhon(X, y, alphas), repeats=repeats)
        t, s, w = median_time(solve, repeats=repeats)
        row.update(tikhon_s=t_tik, tikhon_spread=s_tik,
                   tikhon_accuracy=_accuracy(X, y, alphas, w_tik, refs),
                   peer_s=t, peer_spread=s, peer_accuracy=_accuracy(X, y, alphas, w, refs))
        rows.append(row)
    return rows


def _single(make):
    return lambda X, y, alphas: make(X, y, float(alphas[0]))


def run(quick: bool) -> list[dict]:
    repeats = 3 if quick else 7
    note = "tikhon: working-set CD, gap-safe screening, Anderson; 1 thread each"
    rows = []
    with _one_thread():
        singles = [("tikhon", _single(_tikhon)), ("scikit-learn Lasso", _single(_sklearn)),
                   ("celer Lasso", _single(_celer)), ("skglm Lasso", _single(_skglm))]
        X, y = _dense(quick)
        amax = _alpha_max(X, y)
        rows += _compare(f"Lasso dense {X.shape[0]}x{X.shape[1]}, alpha_max/100, tol {TOL:g}", X, y,
                         [amax / 100], singles, repeats, note)
        Xs, ys = _sparse(quick)
        # skglm's tol bounds the optimality violation, not the gap: on this design
        # its gap at tol = TOL is ~30 x TOL; at tol = TOL / 100 it meets TOL
        sparse_peers = [*singles, ("skglm Lasso (tol/100: its gap meets tol)",
                                   lambda X, y, alphas: _skglm(X, y, float(alphas[0]), TOL / 100))]
        rows += _compare(f"Lasso sparse CSC {Xs.shape[0]}x{Xs.shape[1]} ({Xs.nnz / np.prod(Xs.shape):.1%}),"
                         f" alpha_max/20, tol {TOL:g}", Xs, ys, [_alpha_max(Xs, ys) / 20], sparse_peers,
                         repeats, note)
        alphas = amax * np.geomspace(1.0, 1e-2, N_PATH)
        paths = [("tikhon", _tikhon_path), ("scikit-learn lasso_path", _sklearn_path),
                 ("celer celer_path", _celer_path), ("skglm Lasso warm_start", _skglm_path)]
        rows += _compare(f"Lasso path dense {X.shape[0]}x{X.shape[1]}, {N_PATH} alphas to alpha_max/100,"
                         f" tol {TOL:g}", X, y, alphas, paths, max(3, repeats // 2), note)
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in run("--quick" in sys.argv):
        print(r)
