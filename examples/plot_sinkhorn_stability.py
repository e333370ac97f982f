"""
Sinkhorn stability: marginal violation and run time versus eps
==============================================================

tikhon's stabilised Sinkhorn against POT's ``sinkhorn`` (plain, exp domain),
``sinkhorn_log`` and ``sinkhorn_stabilized`` (default ``tau``) on 2-D uniform
points with the squared Euclidean cost normalised to a maximum of 1, for eps
in {1e-1, 1e-2, 1e-3, 1e-4}. Every solver is asked for an L1 marginal violation
of 1e-6 (POT: ``stopThr = 1e-6 / sqrt(n)`` on its Euclidean criterion); the
table reports the violation each one actually reached on the plan it returned,
NaN when the plan is not finite. Run: ``python examples/plot_sinkhorn_stability.py [n]``;
the figure goes to ``TIKHON_EXAMPLES_OUT`` (default: the current directory).
``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) runs n = 100 and eps >= 1e-3.
"""

import os
import sys
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tikhon.solvers.transport import sinkhorn  # noqa: E402

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"


def viol(P, a, b):
    if P is None or not np.all(np.isfinite(P)):
        return float("nan")
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def main(n=300, out=None):
    import ot

    rng = np.random.default_rng(0)
    X, Y = rng.random((n, 2)), rng.random((n, 2))
    C = ot.dist(X, Y)
    C /= C.max()
    a = np.full(n, 1.0 / n)
    b = a.copy()
    eps_list = [1e-1, 1e-2, 1e-3] if QUICK else [1e-1, 1e-2, 1e-3, 1e-4]
    solvers = {
        "tikhon sinkhorn": lambda e: sinkhorn(a, b, C, e, tol=1e-6, max_iter=100_000).x,
        "POT sinkhorn": lambda e: ot.sinkhorn(a, b, C, e, numItermax=100_000,
                                              stopThr=1e-6 / np.sqrt(n)),
        "POT sinkhorn_log": lambda e: ot.sinkhorn(a, b, C, e, method="sinkhorn_log",
                                                  numItermax=20_000, stopThr=1e-6 / np.sqrt(n)),
        "POT sinkhorn_stabilized": lambda e: ot.sinkhorn(a, b, C, e, method="sinkhorn_stabilized",
                                                         numItermax=100_000,
                                                         stopThr=1e-6 / np.sqrt(n)),
    }
    sinkhorn(a[:20] * n / 20, b[:20] * n / 20, C[:20, :20], 0.1)  # JIT outside the timing
    rows = []
    for name, fn in solvers.items():
        for e in eps_list:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                try:
                    P = fn(e)
                except Exception as exc:  # a failure is a result here
                    P, w = None, [f"raised {type(exc).__name__}"]
                t = time.perf_counter() - t0
            msg = str(w[0].message if hasattr(w[0], "message") else w[0])[:60] if w else ""
            mass = float(np.sum(P)) if P is not None else float("nan")
            rows.append((name, e, viol(P, a, b), t, mass, msg))
    print(f"{'solver':26s} {'eps':>7s} {'L1 viol.':>10s} {'time s':>8s} {'mass':>10s}  warning")
    for name, e, v, t, mass, msg in rows:
        print(f"{name:26s} {e:7.0e} {v:10.2e} {t:8.2f} {mass:10.3e}  {msg}")
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name in solvers:
        sel = [r for r in rows if r[0] == name]
        ax[0].loglog([r[1] for r in sel], [max(r[2], 1e-17) if np.isfinite(r[2]) else np.nan
                                           for r in sel], "o-", label=name)
        ax[1].loglog([r[1] for r in sel], [r[3] for r in sel], "o-", label=name)
    ax[0].axhline(1e-6, color="k", lw=0.5)
    ax[0].set(xlabel="eps", ylabel="L1 marginal violation of the returned plan")
    ax[1].set(xlabel="eps", ylabel="time (s)")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    if out is None:
        out = os.path.join(os.environ.get("TIKHON_EXAMPLES_OUT", "."), "sinkhorn_stability.png")
    fig.savefig(out, dpi=120)
    print(f"saved {out}")
    return rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else (100 if QUICK else 300))
