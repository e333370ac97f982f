"""l1-penalized softmax-gated mixture of Gaussian regression experts (LassoMoE), fitted by EM.

The model, for ``K`` experts: ``y | x ~ sum_k g_k(x) N(beta_k0 + x beta_k, sigma_k^2)`` with
the gate ``g_k(x) = softmax_k(gamma_k0 + x gamma_k)``. The estimator minimizes the
penalized negative log-likelihood

    J = -(1/n) sum_i log sum_k g_k(x_i) N(y_i; beta_k0 + x_i beta_k, sigma_k^2)
        + lam_gate ||gamma||_1 + lam_expert ||beta||_1

(intercepts and noise levels unpenalized) by EM, the algorithm of the authors'
group (Chamroukhi & Huynh; the HDME package):

* E-step: the posteriors ``tau_ik`` of the experts, in the log domain;
* experts' M-step, per expert and at its current ``sigma_k``: the tau-weighted
  Lasso ``(1/n) sum_i tau_ik (y_i - b - x_i beta)^2 / (2 sigma_k^2) + lam_expert
  ||beta||_1``, i.e. :func:`tikhon.solvers.lasso` with ``sample_weight = tau_k``
  at ``alpha = lam_expert sigma_k^2 n / n_k`` (``n_k = sum_i tau_ik``; the Lasso
  normalizes its weights to mean one), then ``sigma_k^2`` in closed form (the
  tau-weighted mean squared residual). Each is an exact conditional
  maximization of the EM surrogate (ECM), so ``J`` cannot increase beyond
  the Lasso's certified duality gap;
* gate M-step: :func:`tikhon.solvers.l1_logistic` on the soft labels ``tau``,
  warm-started, whose line search only accepts decreases.

``J`` is recomputed at every E-step and checked: an increase beyond the
M-steps' certified tolerances is a bug, reported by a warning (or an error with
``on_increase="raise"``, used by the tests).

``penalty="scaled"`` replaces the experts' penalty by the scale-invariant one of
Städler, Bühlmann & van de Geer (2010), ``lam_expert sum_k ||beta_k||_1 / sigma_k``
(their ``lam sum_k pi_k^gamma ||phi_k||_1`` at ``gamma = 0``, ``phi_k = beta_k /
sigma_k``; their mixing weights ``pi_k`` are constants, here the gate depends on
``x``, so ``gamma = 0`` keeps the gate's M-step as it is). In ``phi_k`` and
``rho_k = 1 / sigma_k`` the expert's M-step is convex; it alternates (block
coordinate descent, each block exact):

* at fixed ``rho_k``: the tau-weighted Lasso in ``beta_k = phi_k / rho_k``, i.e.
  :func:`tikhon.solvers.lasso` at ``alpha = lam_expert sigma_k n / n_k``
  (proportional to ``sigma_k``, as the universal Lasso level, where the paper's
  penalty gives ``sigma_k^2``);
* at fixed ``phi_k``: ``rho_k`` (with the intercept) in closed form, the positive
  root of ``A rho^2 - B rho - n_k = 0`` with ``A = sum_i tau_ik (y_i - ybar)^2``,
  ``B = sum_i tau_ik (y_i - ybar)(x_i phi_k - xbar phi_k)`` (tau-weighted means),
  clipped at ``1 / sigma_min``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

try:  # scikit-learn is an optional dependency (extra "sparse")
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("LassoMoE needs scikit-learn: pip install 'tikhon[sparse]'") from exc

from tikhon._core.checks import (
    check_choice,
    check_int,
    check_interval,
    check_nonneg,
    check_tolerance,
)
from tikhon._core.loop import ConvergenceWarning, warn_at_caller

__all__ = ["LAMBDA_AUTO_CONSTANT", "LassoMoE", "lasso_moe_path", "paper_lambda_bound", "scaled_lambda_auto"]

_WHERE = "LassoMoE"
_LOG_2PI = math.log(2.0 * math.pi)
# noise variances are kept above this fraction of var(y) whatever sigma_floor says
# (sigma_floor=0 would let log(sigma^2) reach -inf)
_SIGMA2_FLOOR = 1e-12
# experts whose posterior mass falls below this many samples keep their
# parameters (their M-step is ill-posed; keeping them cannot increase J)
_MIN_MASS = 1e-8
# coordinate-descent epochs per expert M-step: near-interpolating experts (p > n, sigma -> its
# floor) make the Lasso slow; an unfinished M-step still certifies its gap, which the check uses
_MAX_EPOCHS = 2000
# the first expert M-step of a start runs at this fraction of the Lasso's alpha_max
_INIT_ALPHA_FRACTION = 0.2

#: ``lam="auto"`` is this constant times ``paper_lambda_bound`` (see its docstring)
LAMBDA_AUTO_CONSTANT = 0.005
# penalty="scaled": rounds of (Lasso at fixed rho_k, rho_k in closed form) per expert M-step, stopped
# earlier when sigma_k moves by less than this relative amount (every round decreases J: GEM)
_SCALED_ROUNDS = 10
_SCALED_RTOL = 1e-4


def paper_lambda_bound(n, p):
    """The order of the paper's lower bound on lam: ``(log n)^2 sqrt(log(2p + 1)) / sqrt(n)``.

    Nguyen, Nguyen, Chamroukhi & McLachlan (arXiv:2009.10622) give a lower
    bound on lam of this order for their l1-oracle inequality on the KL risk,
    times constants of the bounded parameter space (bounds on the gate and
    expert parameters, ``K``) that are not meant to be evaluated. The rate
    itself is far above useful levels on standardized data: 5.2 at ``n = 200,
    p = 500``, where every lam above ~0.09 already gives ``beta = 0`` on the
    planted problems of the tests. ``lam="auto"`` therefore uses
    ``LAMBDA_AUTO_CONSTANT`` (0.005) times the rate, which keeps the
    paper's dependence on ``n`` and ``p`` and lands at ~0.03 at that size; the
    constant is a convention, not a calibration: choose lam with
    :func:`lasso_moe_path` (BIC or held-out likelihood).
    """
    return math.log(n) ** 2 * math.sqrt(math.log(2 * p + 1)) / math.sqrt(n)


def _expert_penalty(beta, sigma2, penalty):
    """``sum_k ||beta_k||_1`` (paper) or ``sum_k ||beta_k||_1 / sigma_k`` (scaled)."""
    l1 = np.abs(beta).sum(axis=1)
    if penalty == "scaled":
        return float((l1 / np.sqrt(sigma2)).sum())
    return float(l1.sum())


def scaled_lambda_auto(n, p, n_experts=1):
    """``lam="auto"`` for ``penalty="scaled"``: ``sqrt(2 log(p) / (K n))``.

    With the scaled penalty the expert's Lasso level is ``alpha = lam sigma_k n
    / n_k``; the universal level of a Lasso on ``n_k`` samples is ``sigma_k
    sqrt(2 log(p) / n_k)``; both agree at ``lam = sqrt(2 log(p) n_k) / n``,
    i.e. this value for balanced experts (``n_k = n / K``). It is the order
    ``sqrt(log p / n)`` of Städler et al.'s theory (up to their log factors),
    not a calibration. At a fixed point of the M-step the noise level obeys
    ``sigma_k^2 = MSE_k + lam sigma_k (n / n_k) ||beta_k||_1`` (the two KKT
    conditions combined): with strong signals the penalty inflates ``sigma_k``
    far above the noise and the effective level ``alpha`` with it. On the
    planted ``n = 200, p = 500`` problem of the tests (``||beta_k||_1 ~ 11``,
    noise 0.5) this level (0.18) ends at or near ``beta = 0``; choose lam with
    :func:`lasso_moe_path`.
    """
    return math.sqrt(2.0 * math.log(max(p, 2)) / (n_experts * n))


def _log_gate(X, gamma, gamma0):
    """log softmax of the gate, (n, K)."""
    eta = X @ gamma.T + gamma0
    m = eta.max(axis=1, keepdims=True)
    return eta - (m + np.log(np.exp(eta - m).sum(axis=1, keepdims=True)))


def _log_joint(X, y, gamma, gamma0, beta, beta0, sigma2):
    """``log g_k(x_i) + log N(y_i; mu_ik, sigma_k^2)``, (n, K)."""
    mu = X @ beta.T + beta0
    return (_log_gate(X, gamma, gamma0)
            - 0.5 * (_LOG_2PI + np.log(sigma2)) - 0.5 * (y[:, None] - mu) ** 2 / sigma2)


def _logsumexp_rows(L):
    m = L.max(axis=1)
    return m + np.log(np.exp(L - m[:, None]).sum(axis=1))


class LassoMoE(RegressorMixin, BaseEstimator):
    """Softmax-gated mixture of Gaussian regression experts with l1 penalties, by EM.

    Minimizes the penalized negative log-likelihood ``J`` of the module
    docstring (``-(1/n) sum_i log sum_k g_k(x_i) N(y_i; beta_k0 + x_i beta_k,
    sigma_k^2) + lam_gate ||gamma||_1 + lam_expert P(beta, sigma)``; intercepts
    and noise levels unpenalized) with ``P = ||beta||_1`` (``penalty="paper"``,
    the default) or ``P = sum_k ||beta_k||_1 / sigma_k`` (``penalty="scaled"``).
    With ``penalty="paper"`` the expert M-step at a fixed ``sigma_k`` is the
    tau-weighted Lasso of scikit-learn's convention at
    ``alpha = lam_expert sigma_k^2 n / n_k``; with one expert it is exactly the
    Lasso at ``alpha = lam_expert * sigma_**2``. With ``penalty="scaled"`` it is
    ``alpha = lam_expert sigma_k n / n_k`` alternated with a closed-form update
    of ``sigma_k`` (see the module docstring). The penalty is not invariant
    to the scale of the features: standardize ``X`` (e.g. ``StandardScaler`` in
    a ``Pipeline``).

    Parameters
    ----------
    n_experts : int
        Number of experts ``K``.
    lam : float or "auto" or None
        Penalty level shared by the gate and the experts. ``None`` or
        ``"auto"``: ``LAMBDA_AUTO_CONSTANT`` times the paper's rate
        ``(log n)^2 sqrt(log(2p + 1)) / sqrt(n)`` (``paper_lambda_bound``).
    lam_gate, lam_expert : float, optional
        Separate levels for the gate and the experts (default: ``lam``).
    penalty : {"paper", "scaled"}
        The experts' penalty. ``"paper"``: ``lam_expert sum_k ||beta_k||_1``
        on the unscaled likelihood (Nguyen et al.). With ``sigma_k`` free its
        likelihood gain from a signal grows like ``log(sigma_y / sigma_k)``
        while the penalty grows linearly in ``||beta||_1``: on the planted
        ``n = 200, p = 500`` problem of the tests it either kills every
        coefficient or lets an expert interpolate (support F1 ~0.1).
        ``"scaled"``: the scale-invariant ``lam_expert sum_k ||beta_k||_1 /
        sigma_k`` of Städler, Bühlmann & van de Geer (2010) with their
        ``gamma = 0`` (no weighting by the mixing proportions); its ``lam`` is
        on the scale of a Lasso's ``alpha / sigma``, i.e. ``~ sqrt(log p / n)``.
        Measured on the same planted problem it helps but does not fix
        recovery: at the M-step's fixed point ``sigma_k^2 = MSE_k + lam
        sigma_k (n / n_k) ||beta_k||_1`` inflates ``sigma`` (1.5-2.5 for a true
        0.5), and the expert F1 at the lam chosen by BIC is 0.74 / 0.12 / 0.95
        on three seeds (see the tests' xfail).
    n_init : int
        Random starts (random hard assignments of the samples to the experts);
        the fit with the smallest ``J`` is kept.
    max_iter : int
        EM iterations per start.
    tol : float
        Stop a start when ``J`` decreased by less than ``tol * max(1, |J|)`` in
        one EM iteration.
    sigma_floor : float
        Lower bound on the noise levels, as a fraction of ``std(y)``. The
        penalized likelihood is unbounded without one (an expert through a few
        samples with ``sigma -> 0``; with ``p > n`` through many); the paper's
        theory assumes such a bounded parameter space. The floor is part of the
        model: the M-step for ``sigma_k`` is the constrained maximizer.
    random_state : int, numpy.random.Generator, RandomState or None
        Seeds the starts; the same int seed gives bit-identical parameters.
    on_increase : {"warn", "raise"}
        What to do when ``J`` increases across an EM iteration by more than the
        M-steps' certified tolerances (a bug): warn, or raise ``RuntimeError``.

    Notes
    -----
    ``lam="auto"`` is ``LAMBDA_AUTO_CONSTANT * paper_lambda_bound(n, p)`` for
    ``penalty="paper"`` and ``sqrt(2 log(p) / (K n))`` for
    ``penalty="scaled"`` (the universal Lasso level of balanced experts in
    units of ``sigma``; see ``scaled_lambda_auto``, which also explains why
    it is too large when the signal is strong against the noise).

    Attributes
    ----------
    gate_coef_ : ndarray (K, p)
    gate_intercept_ : ndarray (K,)
        Gate parameters (``mean(gate_intercept_) = 0``; the softmax is
        invariant under a common shift).
    coef_ : ndarray (K, p)
    intercept_ : ndarray (K,)
    sigma_ : ndarray (K,)
        The experts' coefficients, intercepts and noise standard deviations.
    lam_gate_, lam_expert_ : float
        The penalty levels used.
    objective_ : float
        ``J`` at the fitted parameters.
    objective_path_ : ndarray
        ``J`` after every EM iteration of the kept start (nonincreasing).
    n_iter_ : int
    converged_ : bool
        Of the kept start.
    n_features_in_ : int

    References
    ----------
    T. Nguyen, H. D. Nguyen, F. Chamroukhi, G. J. McLachlan, "Non-asymptotic
    oracle inequalities for the Lasso in high-dimensional mixture of experts"
    (arXiv:2009.10622).
    F. Chamroukhi, B.-T. Huynh, "Regularized maximum likelihood estimation and
    feature selection in mixtures-of-experts models", J. SFdS 160 (2019).
    N. Städler, P. Bühlmann, S. van de Geer, "l1-penalization for mixture
    regression models", TEST 19 (2010), 209-256 (``penalty="scaled"``).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import LassoMoE
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 10))
    >>> left = X[:, 0] < 0
    >>> y = np.where(left, 2 * X[:, 1], -2 * X[:, 2]) + 0.1 * rng.standard_normal(200)
    >>> model = LassoMoE(n_experts=2, lam=0.02, random_state=0).fit(X, y)
    >>> model.coef_.shape, bool(model.score(X, y) > 0)
    ((2, 10), True)
    """

    def __init__(self, n_experts=2, lam=None, lam_gate=None, lam_expert=None, penalty="paper", n_init=4,
                 max_iter=200, tol=1e-6, sigma_floor=1e-3, random_state=None, on_increase="warn"):
        self.n_experts = n_experts
        self.lam = lam
        self.lam_gate = lam_gate
        self.lam_expert = lam_expert
        self.penalty = penalty
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.sigma_floor = sigma_floor
        self.random_state = random_state
        self.on_increase = on_increase

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # score() is the mean log-likelihood, not R^2: scikit-learn's "R^2 > 0.5" check does not apply
        tags.regressor_tags.poor_score = True
        return tags

    # ------------------------------------------------------------------ settings
    def _penalties(self, n, p):
        lam = self.lam
        if lam is None or (isinstance(lam, str) and lam == "auto"):
            lam = (scaled_lambda_auto(n, p, self.n_experts) if self.penalty == "scaled"
                   else LAMBDA_AUTO_CONSTANT * paper_lambda_bound(n, p))
        elif isinstance(lam, str):
            raise ValueError(f"{_WHERE}: lam must be a number >= 0, 'auto' or None, got {lam!r}")
        else:
            lam = check_nonneg(lam, "lam", _WHERE)
        lam_g = lam if self.lam_gate is None else check_nonneg(self.lam_gate, "lam_gate", _WHERE)
        lam_e = lam if self.lam_expert is None else check_nonneg(self.lam_expert, "lam_expert", _WHERE)
        return lam_g, lam_e

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y):
        """Fit by EM from ``n_init`` random starts; keep the smallest penalized objective.

        Parameters
        ----------
        X : array-like (n, p)
        y : array-like (n,)

        Returns
        -------
        self
        """
        K = check_int(self.n_experts, "n_experts", _WHERE)
        n_init = check_int(self.n_init, "n_init", _WHERE)
        max_iter = check_int(self.max_iter, "max_iter", _WHERE)
        tol = check_tolerance(self.tol, "tol", _WHERE)
        check_choice(self.on_increase, ("warn", "raise"), "on_increase", _WHERE)
        penalty = check_choice(self.penalty, ("paper", "scaled"), "penalty", _WHERE)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, ensure_min_samples=2)
        n, p = X.shape
        if K > n // 2:
            raise ValueError(f"{_WHERE}: n_experts={K} needs at least 2 samples per expert, "
                             f"got {n} samples")
        lam_g, lam_e = self._penalties(n, p)
        X = np.asfortranarray(X)  # the Lasso's kernels read columns
        y = np.ascontiguousarray(y, dtype=np.float64)
        if isinstance(self.random_state, np.random.Generator):
            # the project's convention; drawing consumes the generator, as any use of it does
            seeds = self.random_state.integers(np.iinfo(np.int32).max, size=n_init)
        else:
            seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=n_init)
        floor = check_nonneg(self.sigma_floor, "sigma_floor", _WHERE)
        em = _EM(X, y, K, lam_g, lam_e, tol, max_iter, self.on_increase, sigma_floor=floor, penalty=penalty)
        best = None
        for index, seed in enumerate(seeds):
            fit = em.run(em.random_start(np.random.default_rng(int(seed)), index))
            if best is None or fit["objective"] < best["objective"]:
                best = fit
        self.gate_coef_ = best["gamma"]
        self.gate_intercept_ = best["gamma0"]
        self.coef_ = best["beta"]
        self.intercept_ = best["beta0"]
        self.sigma_ = np.sqrt(best["sigma2"])
        self.objective_ = best["objective"]
        self.objective_path_ = np.asarray(best["path"])
        self.n_iter_ = best["n_iter"]
        self.converged_ = best["converged"]
        self.lam_gate_, self.lam_expert_ = lam_g, lam_e
        if not self.converged_:
            warn_at_caller(f"{_WHERE}: EM reached max_iter={max_iter} without meeting tol={tol:g} "
                           "(increase max_iter)", ConvergenceWarning)
        return self

    # ------------------------------------------------------------------ prediction
    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def predict_proba(self, X):
        """The gate's probabilities ``g_k(x)``, (n, K)."""
        X = self._check_X(X)
        return np.exp(_log_gate(X, self.gate_coef_, self.gate_intercept_))

    def predict(self, X):
        """The gated mean ``sum_k g_k(x) (beta_k0 + x beta_k)``, (n,)."""
        X = self._check_X(X)
        g = np.exp(_log_gate(X, self.gate_coef_, self.gate_intercept_))
        return np.einsum("ik,ik->i", g, X @ self.coef_.T + self.intercept_)

    def _loglik(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, reset=False)
        L = _log_joint(X, y, self.gate_coef_, self.gate_intercept_, self.coef_, self.intercept_,
                       self.sigma_ ** 2)
        return _logsumexp_rows(L), X.shape[0]

    def score(self, X, y, sample_weight=None):
        """Mean log-likelihood of ``(X, y)`` under the fitted mixture (higher is better)."""
        check_is_fitted(self)
        ll, _ = self._loglik(X, y)
        if sample_weight is None:
            return float(ll.mean())
        sw = np.asarray(sample_weight, dtype=np.float64)
        return float(sw @ ll / sw.sum())

    def n_parameters(self):
        """Free parameters: nonzero expert coefficients, the gate's identifiable ones, intercepts, sigmas.

        A gate row (feature) with ``m`` nonzero entries among ``K`` carries
        ``min(m, K - 1)`` free parameters (the softmax ignores a common shift).
        """
        check_is_fitted(self)
        K = self.coef_.shape[0]
        nnz_rows = np.count_nonzero(self.gate_coef_, axis=0)
        df_gate = int(np.minimum(nnz_rows, K - 1).sum()) + (K - 1)
        return int(np.count_nonzero(self.coef_)) + K + K + df_gate

    def bic(self, X, y):
        """Bayesian information criterion ``-2 n loglik + df log n`` (lower is better)."""
        ll, n = self._loglik(X, y)
        return float(-2.0 * ll.sum() + self.n_parameters() * math.log(n))


class _EM:
    """The EM iterations of LassoMoE on validated float64 data (X Fortran-ordered)."""

    def __init__(self, X, y, K, lam_g, lam_e, tol, max_iter, on_increase, sigma_floor=1e-3, penalty="paper"):
        from tikhon.solvers.coordinate_descent import alpha_max, lasso
        from tikhon.solvers.multinomial import l1_logistic

        self._lasso, self._l1_logistic, self._alpha_max = lasso, l1_logistic, alpha_max
        self.X, self.y, self.K = X, y, K
        self.lam_g, self.lam_e = lam_g, lam_e
        self.tol, self.max_iter, self.on_increase = tol, max_iter, on_increase
        self.n, self.p = X.shape
        self.penalty = penalty
        vy = float(np.var(y))
        self.sigma2_min = max(sigma_floor ** 2, _SIGMA2_FLOOR) * (vy if vy > 0 else 1.0)
        # inner tolerances: the Lasso's duality gap and the gate's optimality residual
        self.lasso_tol = 1e-10
        self.gate_tol = 1e-8

    def random_start(self, rng, index=0):
        """Posteriors of a hard assignment of the samples to the experts.

        The first start splits the samples by the quantiles of the residuals of
        one pooled Lasso (at a tenth of its alpha_max): samples that one
        regression over- and under-predicts tend to come from different
        experts. The other starts are random assignments.
        """
        n, K = self.n, self.K
        if index == 0 and K > 1:
            a = 0.1 * self._alpha_max(self.X, self.y)
            res = self._lasso(self.X, self.y, a, tol=1e-6) if a > 0 else None
            r = self.y - (self.X @ res.x + res.info["intercept"] if res is not None else self.y.mean())
            ranks = np.argsort(np.argsort(r, kind="stable"), kind="stable")
            labels = (ranks * K) // n
        else:
            labels = rng.permutation(np.arange(n) % K)
        tau = np.zeros((n, K))
        tau[np.arange(n), labels] = 1.0
        return tau

    def objective(self, params):
        gamma, gamma0, beta, beta0, sigma2 = params
        L = _log_joint(self.X, self.y, gamma, gamma0, beta, beta0, sigma2)
        lse = _logsumexp_rows(L)
        J = (-float(lse.mean()) + self.lam_g * float(np.abs(gamma).sum())
             + self.lam_e * _expert_penalty(beta, sigma2, self.penalty))
        return J, np.exp(L - lse[:, None])

    def _lasso_step(self, k, t, nk, alpha, beta, beta0, sigma2):
        """beta_k, beta_k0 <- the tau-weighted Lasso at ``alpha``; returns its gap in J's units."""
        with warnings.catch_warnings():
            # an unfinished M-step is still an EM step (GEM); its certified gap enters the check
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = self._lasso(self.X, self.y, alpha, sample_weight=t, fit_intercept=True, x0=beta[k],
                              intercept0=float(beta0[k]), tol=self.lasso_tol, max_epochs=_MAX_EPOCHS)
        beta[k] = res.x
        beta0[k] = float(res.info["intercept"])
        # the Lasso objective (1/(2 n_k)) sum tau r^2 + alpha |beta| is J's expert part times
        # sigma^2 n / n_k (for both penalties: with "scaled", alpha = lam sigma n / n_k)
        return float(res.info.get("gap", 0.0)) * nk / (self.n * sigma2[k])

    def _experts(self, tau, beta, beta0, sigma2):
        """Expert M-step (in place); returns the certified slack in J's units."""
        X, y, n = self.X, self.y, self.n
        slack = 0.0
        for k in range(self.K):
            t = tau[:, k]
            nk = float(t.sum())
            if nk < _MIN_MASS * n:
                continue
            if self.penalty == "scaled":
                slack += self._scaled_expert(k, t, nk, beta, beta0, sigma2)
                continue
            slack += self._lasso_step(k, t, nk, self.lam_e * sigma2[k] * n / nk, beta, beta0, sigma2)
            r = y - X @ beta[k] - beta0[k]
            sigma2[k] = max(float(t @ (r * r)) / nk, self.sigma2_min)
        return slack

    def _scaled_expert(self, k, t, nk, beta, beta0, sigma2):
        """Städler et al.'s M-step for expert k: alternate the Lasso in phi_k and rho_k in closed form.

        The expert's part of the EM surrogate in ``(phi, phi0, rho) = (beta, beta0, 1) / sigma``,
        ``(1/n) sum_i t_i [-log rho + (rho y_i - phi0 - x_i phi)^2 / 2] + lam ||phi||_1``, is jointly
        convex; both blocks are solved exactly (the Lasso up to its certified gap), so J cannot
        increase.
        """
        X, y, n = self.X, self.y, self.n
        ybar = float(t @ y) / nk
        yc = y - ybar
        A = float(t @ (yc * yc))
        rho_max = 1.0 / math.sqrt(self.sigma2_min)
        slack = 0.0
        for _ in range(_SCALED_ROUNDS):
            sigma = math.sqrt(sigma2[k])
            slack += self._lasso_step(k, t, nk, self.lam_e * sigma * n / nk, beta, beta0, sigma2)
            if A <= 0.0:  # constant y under this expert: sigma on its floor
                sigma2[k] = self.sigma2_min
                break
            # at fixed phi = beta / sigma, profile out phi0 (= rho ybar - xbar phi) and solve for rho
            m = X @ beta[k] / sigma
            mbar = float(t @ m) / nk
            B = float(t @ (yc * (m - mbar)))
            rho = min((B + math.sqrt(B * B + 4.0 * A * nk)) / (2.0 * A), rho_max)
            sigma_new = 1.0 / rho
            beta[k] *= sigma_new / sigma
            beta0[k] = ybar - sigma_new * mbar
            sigma2[k] = sigma_new * sigma_new
            if abs(sigma_new - sigma) <= _SCALED_RTOL * sigma:
                break
        return slack

    def _gate(self, tau, gamma, gamma0):
        if self.K == 1:
            return
        res = self._l1_logistic(self.X, tau, self.lam_g, coef0=gamma.T, intercept0=gamma0,
                                tol=self.gate_tol, max_iter=50, warn=False)
        gamma[:] = res.x.T
        gamma0[:] = res.info["intercept"]

    def initial_parameters(self, tau):
        """Experts' intercepts and noise levels from the start's posteriors (beta = 0)."""
        n, K, y = self.n, self.K, self.y
        nk = np.maximum(tau.sum(axis=0), 1e-300)
        beta0 = (tau.T @ y) / nk
        sigma2 = np.maximum(np.einsum("ik,ik->k", tau, (y[:, None] - beta0) ** 2) / nk, self.sigma2_min)
        if self.lam_e > 0:
            # start the noise levels where the first weighted Lasso keeps some features
            # (alpha = _INIT_ALPHA_FRACTION alpha_max): from sigma^2 = var(y) a signal much
            # above the noise puts alpha = lam var(y) n / n_k above alpha_max, and beta = 0
            # with sigma^2 = var(y) is a fixed point of EM
            for k in range(K):
                if np.count_nonzero(tau[:, k] > 0) < 2:
                    continue  # no level to start from: every column is constant under one sample
                a_max = self._alpha_max(self.X, y, sample_weight=tau[:, k])
                # alpha = lam sigma^2 n / n_k (paper) or lam sigma n / n_k (scaled)
                s = _INIT_ALPHA_FRACTION * a_max * float(nk[k]) / (n * self.lam_e)
                s2 = s * s if self.penalty == "scaled" else s
                if s2 > 0:
                    sigma2[k] = max(min(sigma2[k], s2), self.sigma2_min)
        return beta0, sigma2

    def run(self, tau):
        _n, p, K = self.n, self.p, self.K
        beta = np.zeros((K, p))
        beta0, sigma2 = self.initial_parameters(tau)
        gamma = np.zeros((K, p))
        gamma0 = np.zeros(K)
        # a first M-step from the start's posteriors
        self._experts(tau, beta, beta0, sigma2)
        self._gate(tau, gamma, gamma0)
        params = (gamma, gamma0, beta, beta0, sigma2)
        J, tau = self.objective(params)
        path = [J]
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):
            slack = self._experts(tau, beta, beta0, sigma2)
            self._gate(tau, gamma, gamma0)
            J_new, tau = self.objective(params)
            path.append(J_new)
            excess = J_new - J - slack - 1e-12 * max(1.0, abs(J))
            if excess > 0:
                msg = (f"{_WHERE}: the penalized objective increased from {J:.12g} to {J_new:.12g} at EM "
                       f"iteration {it}, beyond the M-steps' certified tolerance {slack:.3g}")
                if self.on_increase == "raise":
                    raise RuntimeError(msg)
                warn_at_caller(msg, RuntimeWarning)
            decrease = J - J_new
            J = J_new
            if not math.isfinite(J):
                break
            if decrease <= self.tol * max(1.0, abs(J)):
                converged = True
                break
        return {"gamma": gamma, "gamma0": gamma0, "beta": beta, "beta0": beta0, "sigma2": sigma2,
                "objective": J, "path": path, "n_iter": it, "converged": converged}


def lasso_moe_path(X, y, lams, *, criterion="bic", X_val=None, y_val=None, validation_fraction=0.25,
                   random_state=None, **params):
    """Fit :class:`LassoMoE` along ``lams`` and pick the level by BIC or held-out likelihood.

    Parameters
    ----------
    X, y : array-like
        Training data.
    lams : sequence of float
        Penalty levels (shared by the gate and the experts), fitted from the
        largest to the smallest.
    criterion : {"bic", "heldout"}
        ``"bic"``: the smallest BIC on the training data; ``"heldout"``: the
        largest mean log-likelihood on ``(X_val, y_val)``, or, when they are
        not given, on a random ``validation_fraction`` of the data held out
        from the fits (the chosen level is then refitted on all the data).
    X_val, y_val : array-like, optional
        Validation data for ``criterion="heldout"``.
    validation_fraction : float
        Share of the data held out when ``criterion="heldout"`` and no
        validation data are given (default 0.25).
    random_state : int or None
        Seeds the models (and the hold-out split).
    **params
        Other :class:`LassoMoE` parameters (``n_experts``, ``n_init``, ...).

    Returns
    -------
    best : LassoMoE
        The selected model, fitted on ``X, y``.
    table : dict
        ``lam``, ``bic`` (or ``heldout``) and ``nnz`` (nonzero expert
        coefficients) per level, in the order fitted.
    """
    check_choice(criterion, ("bic", "heldout"), "criterion", "lasso_moe_path")
    lams = np.sort(np.asarray(lams, dtype=np.float64).ravel())[::-1]
    if lams.size == 0:
        raise ValueError("lasso_moe_path: lams must not be empty")
    for lam in lams:
        check_nonneg(float(lam), "lams", "lasso_moe_path")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fit_X, fit_y = X, y
    if criterion == "heldout" and X_val is None:
        validation_fraction = check_interval(validation_fraction, "validation_fraction",
                                             "lasso_moe_path", 0.0, 1.0, open_lo=True, open_hi=True)
        rng = np.random.default_rng(random_state)
        idx = rng.permutation(X.shape[0])
        n_val = round(validation_fraction * X.shape[0])
        if not 1 <= n_val <= X.shape[0] - 2:
            raise ValueError(f"lasso_moe_path: validation_fraction={validation_fraction:g} of "
                             f"{X.shape[0]} samples leaves {n_val} for validation and "
                             f"{X.shape[0] - n_val} for fitting")
        X_val, y_val = X[idx[:n_val]], y[idx[:n_val]]
        fit_X, fit_y = X[idx[n_val:]], y[idx[n_val:]]
    table = {"lam": [], criterion: [], "nnz": []}
    best, best_value, best_lam = None, None, None
    for lam in lams:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LassoMoE(lam=float(lam), random_state=random_state, **params).fit(fit_X, fit_y)
        value = model.bic(fit_X, fit_y) if criterion == "bic" else -model.score(X_val, y_val)
        table["lam"].append(float(lam))
        table[criterion].append(value if criterion == "bic" else -value)
        table["nnz"].append(int(np.count_nonzero(model.coef_)))
        if best_value is None or value < best_value:
            best, best_value, best_lam = model, value, float(lam)
    if fit_X is not X:
        best = LassoMoE(lam=best_lam, random_state=random_state, **params).fit(X, y)
    return best, {key: np.asarray(v) for key, v in table.items()}
