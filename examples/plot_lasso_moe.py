"""
Lasso for high-dimensional mixtures of experts
==============================================

A softmax-gated mixture of Gaussian regression experts with ``p >> n``, fitted
by l1-penalized maximum likelihood (:class:`tikhon.solvers.LassoMoE`: EM whose
experts' M-step is the weighted Lasso :func:`tikhon.solvers.lasso` and whose
gate's M-step is :func:`tikhon.solvers.l1_logistic`).

1. Planted 2- and 3-expert problems (a gate on features 0 and 1, 5 active
   features per expert): support-recovery F1 of the experts and of the gate
   versus ``n``, with ``lam`` chosen by BIC (:func:`tikhon.solvers.lasso_moe_path`)
   and compared with the paper's rate ``(log n)^2 sqrt(log(2p+1)) / sqrt(n)``,
   for the paper's penalty ``lam ||beta||_1`` and for the scale-invariant
   ``lam sum_k ||beta_k||_1 / sigma_k`` of Städler, Bühlmann & van de Geer
   (``penalty="scaled"``).
2. The fitted gate on the 2-D slice of the two gating features.
3. scikit-learn's bundled diabetes data with added noise features: held-out
   log-likelihood of the mixture, of a single Lasso (one expert) and of an
   unpenalized mixture.

Usage: ``python examples/plot_lasso_moe.py [--out DIR]``; with
``TIKHON_EXAMPLES_QUICK=1`` the sizes shrink so that it runs in seconds.
"""

import argparse
import itertools
import os
import time
import warnings

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
from tikhon.solvers import ConvergenceWarning, LassoMoE, lasso_moe_path
from tikhon.solvers.mixture_of_experts import paper_lambda_bound

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"


def planted(n, p, K, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    gate = np.zeros((K, p))
    gate[:, :2] = 2.5 * rng.standard_normal((K, 2))
    beta = np.zeros((K, p))
    supports = []
    for k in range(K):
        S = rng.choice(np.arange(2, p), 5, replace=False)
        beta[k, S] = rng.choice([-1.0, 1.0], 5) * rng.uniform(0.6, 1.0, 5)
        supports.append(set(S.tolist()))
    eta = X @ gate.T
    P = np.exp(eta - eta.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    z = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    y = (X @ beta.T)[np.arange(n), z] + np.linspace(-1, 1, K)[z] + 0.5 * rng.standard_normal(n)
    return X, y, supports


def f1(est, true):
    est, true = set(est), set(true)
    return 1.0 if not est and not true else 2 * len(est & true) / (len(est) + len(true))


def expert_f1(coef, supports):
    K = coef.shape[0]
    return max(np.mean([f1(np.flatnonzero(coef[perm[k]]), supports[k]) for k in range(K)])
               for perm in itertools.permutations(range(K)))


def main(out_dir):
    p = 60 if QUICK else 500
    ns = [100, 200] if QUICK else [100, 200, 400, 1000]
    Ks = [2] if QUICK else [2, 3]
    # each penalty on its own scale: "paper" multiplies sigma_k^2 in the experts' Lasso level,
    # "scaled" multiplies sigma_k (of order sqrt(log p / n))
    lams = {"paper": [0.1, 0.03] if QUICK else [0.1, 0.05, 0.03, 0.02],
            "scaled": [0.15, 0.07] if QUICK else [0.15, 0.1, 0.085, 0.07, 0.06, 0.05]}
    # sigma_floor: the bounded parameter space the paper assumes (sigma >= 0.1 std(y)); without it
    # an expert interpolates a few samples with sigma -> 0 and the likelihood is unbounded
    common = {"n_init": 1 if QUICK else 2, "max_iter": 20 if QUICK else 100, "tol": 1e-5, "sigma_floor": 0.1}
    rows = []
    last = {}
    for K in Ks:
        for n in ns:
            X, y, supports = planted(n, p, K, seed=n + K)
            row = [K, n, p, paper_lambda_bound(n, p)]
            for penalty in ("paper", "scaled"):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model, _table = lasso_moe_path(X, y, lams[penalty], n_experts=K, penalty=penalty,
                                                   random_state=0, **common)
                gate_support = np.flatnonzero(np.any(model.gate_coef_ != 0, axis=0))
                row.append((model.lam_expert_, expert_f1(model.coef_, supports), f1(gate_support, {0, 1}),
                            float(model.sigma_.min()), time.perf_counter() - t0))
                if penalty == "scaled":
                    last[K] = (model, X)
            rows.append(row)
    print("| K | n | p | paper rate (log n)^2 sqrt(log(2p+1))/sqrt(n) | lam (BIC) paper / scaled "
          "| expert F1 paper / scaled | gate F1 paper / scaled | min sigma (true 0.5) paper / scaled "
          "| time (s) paper / scaled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for K, n, p_, bound, (la, fa, ga, sa, ta), (lb, fb, gb, sb, tb) in rows:
        print(f"| {K} | {n} | {p_} | {bound:.3g} | {la:g} / {lb:g} | {fa:.2f} / {fb:.2f} | {ga:.2f} / {gb:.2f} "
              f"| {sa:.3f} / {sb:.3f} | {ta:.1f} / {tb:.1f} |")

    # diabetes with noise features: held-out mean log-likelihood
    from sklearn.datasets import load_diabetes

    Xd, yd = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    n_noise = 30 if QUICK else 300
    Xd = np.hstack([Xd, rng.standard_normal((Xd.shape[0], n_noise))])
    Xd = (Xd - Xd.mean(axis=0)) / Xd.std(axis=0)
    yd = (yd - yd.mean()) / yd.std()
    idx = rng.permutation(len(yd))
    tr, te = idx[: int(0.7 * len(yd))], idx[int(0.7 * len(yd)):]
    dlams = [0.3, 0.1] if QUICK else [0.5, 0.3, 0.2, 0.1, 0.05, 0.03]
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, kw in (("single Lasso (1 expert)", {"n_experts": 1}),
                         ("LassoMoE, 2 experts", {"n_experts": 2}),
                         ("LassoMoE, 3 experts", {"n_experts": 3})):
            m, _ = lasso_moe_path(Xd[tr], yd[tr], dlams, criterion="heldout", random_state=0, **kw, **common)
            results[name] = (m.score(Xd[te], yd[te]), m.lam_expert_, int(np.count_nonzero(m.coef_)))
        m = LassoMoE(n_experts=2, lam=0.0, random_state=0, **common).fit(Xd[tr], yd[tr])
        results["unpenalized mixture, 2 experts"] = (m.score(Xd[te], yd[te]), 0.0, int(np.count_nonzero(m.coef_)))
    print(f"\ndiabetes + {n_noise} noise features (n_train = {len(tr)}, n_test = {len(te)}, "
          f"p = {Xd.shape[1]}), standardized")
    print("| model | held-out mean log-likelihood | lam | nonzero expert coefficients |")
    print("|---|---|---|---|")
    for name, (ll, lam, nnz) in results.items():
        print(f"| {name} | {ll:.3f} | {lam:g} | {nnz} |")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for K in Ks:
        sel = [r for r in rows if r[0] == K]
        for j, penalty in ((4, "paper"), (5, "scaled")):
            axes[0].plot([r[1] for r in sel], [r[j][1] for r in sel], "o-", label=f"experts, K={K}, {penalty}")
            axes[0].plot([r[1] for r in sel], [r[j][2] for r in sel], "s--", label=f"gate, K={K}, {penalty}")
    axes[0].set_xlabel("n")
    axes[0].set_ylabel("support F1")
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].legend()
    for K in Ks:
        sel = [r for r in rows if r[0] == K]
        for j, penalty in ((4, "paper"), (5, "scaled")):
            axes[1].loglog([r[1] for r in sel], [r[j][0] for r in sel], "o-", label=f"lam by BIC, K={K}, {penalty}")
    axes[1].loglog(ns, [paper_lambda_bound(n, p) for n in ns], "k:", label="paper rate (constant 1)")
    axes[1].set_xlabel("n")
    axes[1].legend()
    model, X = last[Ks[0]]
    g = np.linspace(-3, 3, 121)
    G0, G1 = np.meshgrid(g, g)
    grid = np.zeros((G0.size, X.shape[1]))
    grid[:, 0], grid[:, 1] = G0.ravel(), G1.ravel()
    proba = model.predict_proba(grid)[:, 0].reshape(G0.shape)
    im = axes[2].contourf(G0, G1, proba, levels=20, cmap="coolwarm")
    fig.colorbar(im, ax=axes[2])
    axes[2].set_xlabel("x_0")
    axes[2].set_ylabel("x_1")
    axes[2].set_title('fitted gate g_1 on the (x_0, x_1) slice (penalty="scaled")')
    fig.tight_layout()
    path = os.path.join(out_dir, "plot_lasso_moe.png")
    fig.savefig(path, dpi=80)
    print(f"saved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    main(parser.parse_args().out)
