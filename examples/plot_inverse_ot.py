"""
Sparsistency of l1-regularised inverse optimal transport
========================================================

The Gaussian toy of Andrade, Peyre and Poon, "Sparsistency for Inverse Optimal
Transport" (ICLR 2024): source and target points ``x_i, y_j ~ N(0, I_d)``, a
planted sparse interaction matrix ``A`` and the bilinear cost
``C_A(x, y) = -x^T A y``. ``N`` pairs ``(i, j)`` are sampled from the entropic
OT coupling of ``C_A``; ``inverse_ot`` estimates ``A`` by l1-penalised maximum
likelihood with ``lam = c sqrt(log(d^2) / N)`` (the rate of the paper's
theory). As ``N`` grows the estimated support becomes the planted one: the
table and figure report, over a few seeds, the rate of exact support (and
sign) recovery, the precision and recall of the estimated support, and the
relative error of ``A``. A seed whose design violates the irrepresentability
condition of the paper keeps a false positive at every ``N``, as the theory allows.
Run: ``python examples/plot_inverse_ot.py [output_dir]`` (or ``TIKHON_EXAMPLES_OUT``);
``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) runs three ``N`` and two seeds.
"""

import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tikhon.solvers.transport import inverse_ot, sinkhorn  # noqa: E402

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"


def planted_problem(n=40, d=5, eps=0.5, seed=0):
    rng = np.random.default_rng(seed)
    A = np.zeros((d, d))
    # four planted interactions of both signs at random positions
    pos = rng.choice(d * d, size=4, replace=False)
    A.flat[pos] = rng.choice([-1.0, 1.0], 4) * rng.uniform(0.6, 1.2, 4)
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n, d))
    P = sinkhorn(None, None, -X @ A @ Y.T, eps, tol=1e-11).x
    return X, Y, P / P.sum(), A, rng


def sample_coupling(P, N, rng):
    idx = rng.choice(P.size, size=N, p=P.ravel())
    return np.bincount(idx, minlength=P.size).reshape(P.shape) / N


def main(out_dir=".", Ns=(250, 1000, 4000, 16000, 64000), seeds=range(5), c=4.0, eps=0.5):
    rows = []
    for N in Ns:
        exact = sign = prec = rec = err = tsum = 0.0
        for seed in seeds:
            X, Y, P, A, rng = planted_problem(eps=eps, seed=seed)
            P_hat = sample_coupling(P, N, rng)
            lam = c * np.sqrt(np.log(A.size) / N)
            t0 = time.perf_counter()
            res = inverse_ot(X, Y, P_hat, eps, lam, tol=1e-5, warn=False)
            tsum += time.perf_counter() - t0
            est, true = np.abs(res.x) > 1e-8, A != 0
            exact += np.array_equal(est, true)
            sign += np.array_equal(np.sign(res.x), np.sign(A))
            prec += (est & true).sum() / max(est.sum(), 1)
            rec += (est & true).sum() / true.sum()
            err += np.linalg.norm(res.x - A) / np.linalg.norm(A)
        k = len(seeds)
        rows.append((N, exact / k, sign / k, prec / k, rec / k, err / k, tsum / k))
    print(f"{'N':>7} {'support':>8} {'signs':>6} {'precision':>9} {'recall':>7} {'rel. err':>9} {'time [s]':>9}")
    for r in rows:
        print(f"{r[0]:7d} {r[1]:8.2f} {r[2]:6.2f} {r[3]:9.2f} {r[4]:7.2f} {r[5]:9.3f} {r[6]:9.3f}")
    r = np.array(rows)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].semilogx(r[:, 0], r[:, 1], "o-", label="exact support")
    ax[0].semilogx(r[:, 0], r[:, 2], "^-", label="exact signs")
    ax[0].semilogx(r[:, 0], r[:, 3], "s--", label="precision")
    ax[0].semilogx(r[:, 0], r[:, 4], "d--", label="recall")
    ax[0].set_xlabel("number of coupling samples N")
    ax[0].set_ylim(-0.05, 1.05)
    ax[0].legend()
    ax[0].set_title(f"support recovery ({len(seeds)} seeds)")
    ax[1].loglog(r[:, 0], r[:, 5], "o-")
    ax[1].set_xlabel("N")
    ax[1].set_ylabel("||A_hat - A|| / ||A||")
    ax[1].set_title("estimation error")
    fig.tight_layout()
    path = os.path.join(out_dir, "inverse_ot.png")
    fig.savefig(path, dpi=110)
    print(f"saved {path}")
    return rows


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TIKHON_EXAMPLES_OUT", ".")
    main(out, **(dict(Ns=(250, 1000, 4000), seeds=range(2)) if QUICK else {}))
