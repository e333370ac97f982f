"""LassoMoE.fit vs the same EM built from scikit-learn's M-steps.

The baseline is the straightforward EM one writes with scikit-learn: the
experts' M-step is ``Lasso(alpha=lam sigma_k^2 n / n_k, warm_start=True)
.fit(X, y, sample_weight=tau_k)`` and the closed-form ``sigma_k^2``; the gate's
M-step is ``LogisticRegression(l1_ratio=1, C=1/(n lam), solver="saga",
warm_start=True)`` on the soft labels, expanded as ``K`` weighted copies of
the samples (scikit-learn takes no soft labels). Both run the same number of
EM iterations from the same start (tikhon's first start: the residual split of
a pooled Lasso), and the table reports the penalized objective ``J`` each
reached (lower is better), so the times are read with the accuracy delivered.
"""

from __future__ import annotations

import warnings

import numpy as np

N_ITER = 30


def _problem(quick):
    n, p = (150, 40) if quick else (400, 200)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p))
    gate = np.zeros(p)
    gate[:2] = [2.5, -2.0]
    beta = np.zeros((2, p))
    beta[0, 2:7] = [1.0, -1.0, 0.8, 0.6, -0.7]
    beta[1, 7:12] = [-1.0, 0.9, 0.7, -0.8, 1.0]
    z = (rng.random(n) < 1 / (1 + np.exp(-X @ gate))).astype(int)
    y = (X @ beta.T)[np.arange(n), z] + np.array([0.5, -0.5])[z] + 0.5 * rng.standard_normal(n)
    return X, y, 0.05


def _objective(X, y, lam, gamma, gamma0, beta, beta0, sigma2):
    from tikhon.solvers.mixture_of_experts import _log_joint, _logsumexp_rows

    L = _log_joint(X, y, gamma, gamma0, beta, beta0, sigma2)
    return -_logsumexp_rows(L).mean() + lam * (np.abs(gamma).sum() + np.abs(beta).sum())


def _sklearn_em(X, y, lam, tau0, sigma2, n_iter):
    from sklearn.linear_model import Lasso, LogisticRegression
    from tikhon.solvers.mixture_of_experts import _log_joint, _logsumexp_rows

    n, p = X.shape
    K = tau0.shape[1]
    tau = tau0
    experts = [Lasso(alpha=1.0, warm_start=True, tol=1e-8, max_iter=10_000) for _ in range(K)]
    gate = LogisticRegression(l1_ratio=1.0, C=1.0 / (n * lam), solver="saga", warm_start=True, tol=1e-6,
                              max_iter=1000)
    beta, beta0 = np.zeros((K, p)), np.zeros(K)
    sigma2 = np.array(sigma2, dtype=float)
    gamma, gamma0 = np.zeros((K, p)), np.zeros(K)
    Xrep = np.tile(X, (K, 1))
    yrep = np.repeat(np.arange(K), n)
    for _ in range(n_iter + 1):
        for k in range(K):
            nk = tau[:, k].sum()
            experts[k].set_params(alpha=lam * sigma2[k] * n / nk)
            experts[k].fit(X, y, sample_weight=tau[:, k])
            beta[k], beta0[k] = experts[k].coef_, experts[k].intercept_
            r = y - X @ beta[k] - beta0[k]
            sigma2[k] = tau[:, k] @ r ** 2 / nk
        gate.fit(Xrep, yrep, sample_weight=tau.T.ravel())
        if K == 2:  # binary: one vector; the symmetric softmax parametrization has the same J
            gamma[1], gamma0[1] = gate.coef_[0] / 2, gate.intercept_[0] / 2
            gamma[0], gamma0[0] = -gamma[1], -gamma0[1]
        else:
            gamma[:], gamma0[:] = gate.coef_, gate.intercept_
        L = _log_joint(X, y, gamma, gamma0, beta, beta0, sigma2)
        tau = np.exp(L - _logsumexp_rows(L)[:, None])
    return gamma, gamma0, beta, beta0, sigma2


def run(quick: bool) -> list[dict]:
    from _timing import median_time
    from tikhon.solvers import ConvergenceWarning, LassoMoE
    from tikhon.solvers.mixture_of_experts import _EM

    X, y, lam = _problem(quick)
    Xf = np.asfortranarray(X)
    em = _EM(Xf, y, 2, lam, lam, 0.0, N_ITER, "warn")
    tau0 = em.random_start(np.random.default_rng(0), 0)
    sigma2_0 = em.initial_parameters(tau0)[1]  # the same start for both: posteriors and noise levels

    def tikhon():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = LassoMoE(n_experts=2, lam=lam, n_init=1, max_iter=N_ITER, tol=0.0, random_state=0).fit(X, y)
        return m.objective_

    def sklearn():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _objective(X, y, lam, *_sklearn_em(X, y, lam, tau0, sigma2_0, N_ITER))

    repeats = 3
    t_tik, s_tik, J_tik = median_time(tikhon, repeats=repeats)
    row = {"problem": f"LassoMoE K=2, {X.shape[0]}x{X.shape[1]}, lam {lam:g}, {N_ITER} EM iterations",
           "peer": "EM with scikit-learn Lasso + LogisticRegression(l1, saga)", "tikhon_s": t_tik,
           "tikhon_spread": s_tik, "tikhon_accuracy": f"J = {J_tik:.8f}", "note": "same start"}
    t, s, J = median_time(sklearn, repeats=repeats)
    row.update(peer_s=t, peer_spread=s, peer_accuracy=f"J = {J:.8f}")
    return [row]


if __name__ == "__main__":
    import sys

    for r in run("--quick" in sys.argv):
        print(r)
