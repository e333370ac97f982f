"""
Implicit low-tubal-rank bias of gradient descent on t-product factorizations
============================================================================

After Karnik, Veselovska, Iwen and Krahmer, "Implicit regularization for
tubal tensor factorizations via gradient descent" (arXiv:2410.16247): a
symmetric tensor ``X* = W * W^T`` of size 10 x 10 x 5 and tubal rank 2
(``*`` the t-product) is measured by ``m`` Gaussian linear measurements
(:class:`tikhon.operators.GaussianSensing`), and
:func:`tikhon.solvers.tubal_factorization` runs plain gradient descent on
``1/2 ||M(U * U^T) - y||^2`` with ``U`` of full size 10 x 10 x 5
(overparametrized: no rank is imposed) from a random start of relative size
``init_scale``.

Part 1 (``m = 3 x`` the 95 degrees of freedom, 285 of 500 entries): relative
error and the norms of the singular tubes over the iterations for init scales
from 1e-6 to 1. Part 2: the phase transition, the fraction of random trials
with relative error <= 1e-2, against ``m``, for a small (1e-6) and a large (1)
start.

Quick mode (``TIKHON_EXAMPLES_QUICK=1``): fewer iterations, measurement
counts and trials. Full mode: about two minutes on two cores.

Usage: ``python examples/plot_tubal_implicit.py [--out DIR]``.
"""

import argparse
import os
import time
import warnings

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tikhon.operators import GaussianSensing  # noqa: E402
from tikhon.solvers import ConvergenceWarning, tubal_factorization, tubal_rank  # noqa: E402
from tikhon.solvers.tubal_recovery import t_product, t_transpose, tubal_singular_values  # noqa: E402

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"
N, N3, R = 10, 5, 2
DOF = N3 * (N * R - R * (R - 1) // 2)  # symmetric tubal rank 2: 95
SCALES = (1e-6, 1e-2, 1.0) if QUICK else (1e-6, 1e-4, 1e-2, 1e-1, 1.0)
ITERS = 1000 if QUICK else 5000
RATIOS = (1.0, 1.5, 3.0) if QUICK else (0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0)
TRIALS = 1 if QUICK else 4
PT_ITERS = 800 if QUICK else 2500
SUCCESS = 1e-2


def planted(seed):
    W = np.random.default_rng(seed).standard_normal((N, R, N3))
    X = t_product(W, t_transpose(W))
    return X / tubal_singular_values(X)[0].max()


def fit(M, y, X, scale, seed, max_iter, check_every):
    with warnings.catch_warnings():
        # the overparametrized runs reach max_iter on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        return tubal_factorization(M, y, rank=N, init_scale=scale, rng=seed, max_iter=max_iter,
                                   reference=X, tol=1e-10, check_every=check_every)


def main(out_dir):
    t_start = time.perf_counter()
    X = planted(0)
    M = GaussianSensing(X.shape, 3 * DOF, rng=1)
    y = M(X)
    print(f"planted X*: {X.shape}, tubal rank {tubal_rank(X)}, tube norms "
          f"{np.round(tubal_singular_values(X)[1][:3], 4)}; m = {M.m} Gaussian measurements "
          f"(3 x {DOF} degrees of freedom, of {X.size} entries)")
    print()
    print("| init scale | final rel. error | iteration with error <= 1e-3 | rel. residual | "
          "tubal rank (1e-3) | tube 3 / tube 1 | time (s) |")
    print("|---|---|---|---|---|---|---|")
    runs = {}
    for scale in SCALES:
        t0 = time.perf_counter()
        res = fit(M, y, X, scale, 2, ITERS, 10)
        h = res.history
        hit = np.flatnonzero(h["error"] <= 1e-3)
        k_hit = str(int(h["iteration"][hit[0]])) if hit.size else f"> {ITERS}"
        runs[scale] = h
        print(f"| {scale:g} | {h['error'][-1]:.2e} | {k_hit} | {h['residual'][-1]:.1e} | "
              f"{int(h['tubal_rank'][-1])} | {h['tube_3'][-1] / h['tube_1'][-1]:.1e} | "
              f"{time.perf_counter() - t0:.1f} |")

    # phase transition in the number of measurements
    print()
    print(f"phase transition: fraction of {TRIALS} trial(s) with rel. error <= {SUCCESS:g} after "
          f"{PT_ITERS} iterations (median error in brackets)")
    print()
    print("| m / dof | m | init 1e-6 | init 1 |")
    print("|---|---|---|---|")
    table = {1e-6: [], 1.0: []}
    for ratio in RATIOS:
        m = round(ratio * DOF)
        errs = {1e-6: [], 1.0: []}
        for trial in range(TRIALS):
            Xt = planted(100 + trial)
            Mt = GaussianSensing(Xt.shape, m, rng=200 + trial)
            for scale, e in errs.items():
                e.append(fit(Mt, Mt(Xt), Xt, scale, 300 + trial, PT_ITERS, 100).history["error"][-1])
        cells = []
        for scale, e in errs.items():
            e = np.array(e)
            table[scale].append(np.mean(e <= SUCCESS))
            cells.append(f"{np.mean(e <= SUCCESS):.2f} ({np.median(e):.1e})")
        print(f"| {ratio:g} | {m} | {cells[0]} | {cells[1]} |")

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    for scale, h in runs.items():
        axes[0].semilogy(h["iteration"], h["error"], label=f"init {scale:g}")
    axes[0].set_xlabel("iteration")
    axes[0].set_title("relative error ||X_k - X*|| / ||X*||")
    axes[0].legend()
    for ax, scale in zip(axes[1:3], (SCALES[0], SCALES[-1])):
        h = runs[scale]
        for i in range(1, N + 1):
            ax.semilogy(h["iteration"], np.maximum(h[f"tube_{i}"], 1e-16), color="C0" if i <= R else "C3",
                        lw=1.5 if i <= R else 0.8)
        ax.set_title(f"singular tube norms, init {scale:g}\n(blue: 2 leading, red: the other 8)")
        ax.set_xlabel("iteration")
    for scale, frac in table.items():
        axes[3].plot(RATIOS, frac, "o-", label=f"init {scale:g}")
    axes[3].set_xlabel("m / degrees of freedom")
    axes[3].set_ylabel(f"P(rel. error <= {SUCCESS:g})")
    axes[3].set_title("phase transition")
    axes[3].legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "plot_tubal_implicit.png")
    fig.savefig(path, dpi=70)
    print(f"saved {path} ({time.perf_counter() - t_start:.0f} s in all)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    main(parser.parse_args().out)
