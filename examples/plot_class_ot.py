"""
Class-based optimal transport for domain adaptation
===================================================

A 2-D toy with three classes: labelled source samples, and unlabelled target
samples drawn from the same classes after a rotation and a shift. Each target
point receives mass from the source points; the plan's class mass per target
gives a transferred label (its argmax) and a purity (the fraction of the
received mass coming from the majority class). Compared: tikhon's exact
sum-of-norms class-regularised OT (``class_ot``, Rahbar et al., ICML 2023),
plain entropic OT (tikhon's ``sinkhorn``, no class information) and POT's
entropic group-lasso OT (``ot.da.sinkhorn_l1l2_gl``), each run over a few
seeds. The table reports mean purity, label-transfer accuracy, time, and the
marginal violation of each plan; the figure shows the data and the
purity-accuracy trade-off of ``class_ot`` as ``lam`` grows.
Run: ``python examples/plot_class_ot.py [output_dir]`` (or ``TIKHON_EXAMPLES_OUT``);
``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) runs one seed of 60 points.
"""

import os
import sys
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tikhon.solvers.transport import class_ot, sinkhorn  # noqa: E402

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"


def make_data(n=150, seed=0):
    """Three Gaussian classes; the target is the source rotated by 30 degrees and shifted."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [3.0, 0.5], [1.5, 2.8]])
    ys = rng.integers(0, 3, n)
    yt = rng.integers(0, 3, n)
    xs = centers[ys] + 0.6 * rng.normal(size=(n, 2))
    th = np.deg2rad(30.0)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    xt = (centers[yt] + 0.6 * rng.normal(size=(n, 2))) @ R.T + np.array([1.0, -0.5])
    C = ((xs[:, None] - xt[None]) ** 2).sum(-1)
    C /= C.max()
    return xs, ys, xt, yt, C


def scores(P, ys, yt, a, b):
    mass = np.stack([P[ys == c].sum(0) for c in range(3)])  # (classes, targets)
    purity = float(np.mean(mass.max(0) / np.maximum(mass.sum(0), 1e-300)))
    accuracy = float(np.mean(mass.argmax(0) == yt))
    viol = float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())
    return purity, accuracy, viol


def main(out_dir=".", n=150, seeds=(0, 1, 2), lam=0.02):
    try:
        import ot
    except ImportError:
        ot = None
    methods = {
        f"class_ot (lam={lam})": lambda a, b, C, ys: class_ot(a, b, C, ys, lam, tol=1e-6).x,
        "entropic OT (sinkhorn, eps=1e-2)": lambda a, b, C, ys: sinkhorn(a, b, C, 1e-2, tol=1e-9).x,
    }
    if ot is not None:
        def pot(a, b, C, ys):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ot.da.sinkhorn_l1l2_gl(a, ys, b, C, reg=1e-2, eta=lam / 1e-2 * 0.1, numItermax=10)
        methods["POT sinkhorn_l1l2_gl (reg=1e-2)"] = pot
    rows = {name: [] for name in methods}
    for seed in seeds:
        xs, ys, xt, yt, C = make_data(n, seed)
        a = np.full(n, 1.0 / n)
        b = np.full(n, 1.0 / n)
        for name, fn in methods.items():
            fn(a, b, C, ys)  # warm-up (numba compilation)
            t0 = time.perf_counter()
            P = fn(a, b, C, ys)
            dt = time.perf_counter() - t0
            rows[name].append((*scores(P, ys, yt, a, b), dt))
    print(f"{'method':<36} {'purity':>7} {'accuracy':>9} {'marg. viol.':>12} {'time [s]':>9}")
    for name, r in rows.items():
        r = np.array(r)
        print(f"{name:<36} {r[:, 0].mean():7.3f} {r[:, 1].mean():9.3f} {r[:, 2].mean():12.1e} {r[:, 3].mean():9.3f}")
    if ot is None:
        print("(POT not installed: its group-lasso OT was skipped)")

    # purity / accuracy of class_ot along a path of lam (warm-started), first seed
    xs, ys, xt, yt, C = make_data(n, seeds[0])
    a = np.full(n, 1.0 / n)
    lams = np.geomspace(1e-4, 0.3, 5 if QUICK else 10)
    path, P = [], None
    for lm in lams:
        res = class_ot(a, a, C, ys, lm, tol=1e-6, x0=P)
        P = res.x
        path.append(scores(P, ys, yt, a, a)[:2])
    path = np.array(path)

    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
    colors = np.array(["tab:blue", "tab:orange", "tab:green"])
    P = class_ot(a, a, C, ys, lam, tol=1e-6).x
    mass = np.stack([P[ys == c].sum(0) for c in range(3)])
    ax[0].scatter(*xs.T, c=colors[ys], marker="o", s=18, label="source (labelled)")
    ax[0].scatter(*xt.T, c=colors[mass.argmax(0)], marker="x", s=22, label="target (transferred label)")
    wrong = mass.argmax(0) != yt
    ax[0].scatter(*xt[wrong].T, facecolors="none", edgecolors="k", s=80, label="wrong label")
    ax[0].set_title(f"class_ot, lam = {lam}")
    ax[0].legend(fontsize=8, loc="lower left")
    ax[1].semilogx(lams, path[:, 0], "o-", label="purity")
    ax[1].semilogx(lams, path[:, 1], "s-", label="label accuracy")
    ax[1].set_xlabel("lam")
    ax[1].set_title("class_ot along the lam path")
    ax[1].legend()
    fig.tight_layout()
    path_png = os.path.join(out_dir, "class_ot.png")
    fig.savefig(path_png, dpi=110)
    print(f"saved {path_png}")
    return rows


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TIKHON_EXAMPLES_OUT", ".")
    main(out, **(dict(n=60, seeds=(0,)) if QUICK else {}))
