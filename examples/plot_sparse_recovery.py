"""
Sparse recovery: ISTA vs FISTA vs IHT
=====================================

Compressed sensing of an ``s``-sparse vector from ``m`` Gaussian measurements
``b = Phi x + noise``. ISTA and FISTA solve the Lasso
``min_x 0.5 ||Phi x - b||^2 + lam ||x||_1`` (:func:`tikhon.solvers.ista`,
:func:`tikhon.solvers.fista` with adaptive restart); IHT
(:func:`tikhon.solvers.iht`, normalized step) keeps the ``s`` largest entries.
The table reports the iterations, time and relative error; the figure the
objective decrease and the recovered coefficients. Runs in seconds on a CPU;
``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) halves the sizes.

Usage: ``python examples/plot_sparse_recovery.py [--out DIR]`` (default: the
``TIKHON_EXAMPLES_OUT`` environment variable, else the current directory).
"""

import argparse
import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tikhon.operators import MatrixOperator  # noqa: E402
from tikhon.operators.prox import L1, SquaredL2  # noqa: E402
from tikhon.solvers import fista, iht, ista  # noqa: E402


QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"


def main(out_dir):
    rng = np.random.default_rng(0)
    n, s = (500, 10) if QUICK else (1000, 20)
    m = int(4 * s * np.log(n))
    Phi = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(n)
    x_true[rng.choice(n, s, replace=False)] = rng.choice([-1.0, 1.0], s) * (1 + rng.random(s))
    b = Phi @ x_true + 0.01 * rng.standard_normal(m)

    f = SquaredL2(b=b, op=MatrixOperator(Phi))
    lam = 0.01 * np.max(np.abs(Phi.T @ b))
    x0 = np.zeros(n)
    results = {
        "ISTA": ista(f, lam * L1(), x0, tol=1e-8, max_iter=5000),
        "FISTA": fista(f, lam * L1(), x0, tol=1e-8, max_iter=5000),
        "IHT (normalized)": iht(f, x0, s, step_rule="normalized", tol=1e-8, max_iter=5000),
    }
    print(f"m = {m} measurements of an s = {s} sparse vector in R^{n}")
    print(f"{'method':18s} {'iterations':>10s} {'time (s)':>9s} {'rel. error':>11s} {'nnz':>5s}")
    for name, r in results.items():
        err = np.linalg.norm(r.x - x_true) / np.linalg.norm(x_true)
        nnz = int(np.sum(np.abs(r.x) > 1e-8))
        print(f"{name:18s} {r.n_iter:10d} {r.elapsed:9.3f} {err:11.2e} {nnz:5d}")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
    for name in ("ISTA", "FISTA"):
        h = results[name].history
        obj = h["objective"]
        ax0.semilogy(h["iteration"], obj - min(obj.min(), results["FISTA"].history["objective"].min())
                     + 1e-16, label=name)
    ax0.set_xlabel("iteration")
    ax0.set_ylabel("objective - best")
    ax0.legend()
    ax1.stem(x_true, linefmt="k-", markerfmt="ko", basefmt=" ", label="true")
    ax1.plot(results["FISTA"].x, "r.", label="FISTA (Lasso)")
    ax1.plot(results["IHT (normalized)"].x, "b+", label="IHT")
    ax1.set_xlabel("coefficient index j")
    ax1.set_ylabel("x_j")
    ax1.set_title(f"recovered coefficients ({s} nonzero of {n})")
    # the spikes reach +-2: the legend goes above the axes, where it hides none
    ax1.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, frameon=False)
    ax0.set_title("ISTA vs FISTA on the Lasso")
    fig.tight_layout()
    path = os.path.join(out_dir, "plot_sparse_recovery.png")
    fig.savefig(path, dpi=80)
    print(f"saved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    main(parser.parse_args().out)
