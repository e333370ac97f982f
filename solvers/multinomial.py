"""l1-penalized multinomial (softmax) logistic regression by proximal Newton.

The problem, for ``n`` samples ``x_i`` (rows of ``X``), ``K`` classes, labels
``Y`` (one-hot rows for hard labels, probability rows for soft labels) and
sample weights ``w`` rescaled to mean 1 (as scikit-learn rescales them in
``Lasso``)::

    min_{B, b}  F(B, b) = -(1/n) sum_i w_i sum_k Y_ik log softmax_k(x_i B + b) + lam ||B||_1

with ``B`` of shape ``(p, K)`` (one column per class, all penalized) and
unpenalized intercepts ``b``.

The method cycles over the classes. For class ``k``, with the other classes
fixed, the loss is a smooth function of the column ``eta_k = X B_k + b_k`` of
the linear predictor whose Hessian is diagonal in the samples,
``w_i p_ik (1 - p_ik) / n`` (the exact block of the multinomial Hessian). Its
second-order model plus the l1 term is a weighted Lasso (IRLS: working
response ``z = eta_k + (Y_k - p_k) / h``, weights ``w h``), solved by
:func:`tikhon.solvers.lasso` warm-started at the current column; a backtracking
line search on the true objective ``F`` (Armijo with the proximal-Newton
decrease, Tseng & Yun 2009) accepts the step. One outer iteration is one sweep
over the classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tikhon._core.checks import (
    check_finite_array,
    check_int,
    check_nonneg,
    check_positive_int,
    check_real_floating,
    check_shape,
    check_tolerance,
)
from tikhon._core.loop import Solver, State, run

__all__ = ["MultinomialProxNewton", "l1_logistic", "multinomial_objective", "prepare_labels"]

_WHERE = "l1_logistic"
# lower bound on the per-sample curvature p(1 - p): keeps the working response
# finite when a class probability saturates (glmnet uses the same device); the
# line search on the true objective keeps any positive curvature safe
_HMIN = 1e-5
# Armijo fraction of the predicted decrease, and the largest number of halvings
_ARMIJO = 1e-2
_MAX_HALVINGS = 40


def _log_partition(eta):
    """Row-wise ``log sum_k exp(eta_ik)``, computed stably."""
    m = eta.max(axis=1)
    return m + np.log(np.exp(eta - m[:, None]).sum(axis=1))


def multinomial_objective(eta, Y, w, B, lam):
    """``F`` of the module docstring from the linear predictor ``eta = X B + b``."""
    n = eta.shape[0]
    loss = float(w @ (_log_partition(eta) - np.einsum("ik,ik->i", Y, eta))) / n
    return loss + lam * float(np.abs(B).sum())


def prepare_labels(Y, n, where=_WHERE, name="Y"):
    """Labels as an ``(n, K)`` float64 array of probability rows, and the classes.

    Integer labels ``(n,)`` become one-hot rows (``classes`` = the sorted
    distinct labels); an ``(n, K)`` float array must have nonnegative rows that
    sum to 1 (within 1e-6; they are renormalized exactly), ``classes`` is then
    ``arange(K)``.
    """
    Y = np.asarray(Y)
    if Y.ndim == 1:
        if Y.dtype.kind not in "iu":
            raise TypeError(
                f"{where}: 1-D {name} must hold integer class labels, got dtype {Y.dtype} "
                "(pass soft labels as an (n, K) float array)"
            )
        check_shape(Y, (n,), name, where)
        classes, codes = np.unique(Y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"{where}: {name} must contain at least 2 classes, got {classes.size}")
        onehot = np.zeros((n, classes.size))
        onehot[np.arange(n), codes] = 1.0
        return onehot, classes
    if Y.ndim != 2:
        raise ValueError(f"{where}: {name} must be 1-D labels (n,) or 2-D soft labels (n, K), "
                         f"got shape {Y.shape}")
    Y = check_finite_array(Y, name, where, nonneg=True)
    if Y.shape[0] != n:
        raise ValueError(f"{where}: {name} has {Y.shape[0]} rows but X has {n}")
    if Y.shape[1] < 2:
        raise ValueError(f"{where}: {name} must have at least 2 columns (classes), got {Y.shape[1]}")
    s = Y.sum(axis=1)
    if np.any(np.abs(s - 1.0) > 1e-6):
        i = int(np.argmax(np.abs(s - 1.0)))
        raise ValueError(f"{where}: the rows of soft labels {name} must sum to 1 (row {i} sums to {s[i]:.8g})")
    Y = Y.astype(np.float64) / s[:, None]
    return Y, np.arange(Y.shape[1])


def _normalized_weights(sample_weight, n, where=_WHERE):
    """Sample weights rescaled to mean 1 (ones when None)."""
    if sample_weight is None:
        return np.ones(n)
    w = check_finite_array(sample_weight, "sample_weight", where, shape=(n,), nonneg=True)
    total = float(w.sum())
    if not total > 0:
        raise ValueError(f"{where}: sample_weight must have a positive sum")
    return np.asarray(w, dtype=np.float64) * (n / total)


@dataclass
class _MultinomialState(State):
    B: np.ndarray = None
    b: np.ndarray = None
    eta: np.ndarray = None
    objective: float = math.inf
    kkt: float = math.inf
    inner_tol: float = 1e-4
    n_inner: int = 0
    n_backtrack: int = 0


class MultinomialProxNewton(Solver):
    """Proximal Newton for l1 multinomial logistic regression (see the module docstring).

    One step is one sweep over the classes (a weighted Lasso, then a line
    search, per class), followed by the re-centring of the intercepts (their
    mean is set to 0: the softmax is invariant under adding one constant to
    every class's intercept, and this fixes that direction).
    """

    name = _WHERE
    criterion = "kkt"

    def __init__(self, X, Y, w, lam, *, fit_intercept=True, inner_max_iter=1000):
        from tikhon.solvers.coordinate_descent import lasso  # H1a's coordinate descent

        self._lasso = lasso
        self.X, self.Y, self.w, self.lam = X, Y, w, float(lam)
        self.fit_intercept = fit_intercept
        self.inner_max_iter = inner_max_iter
        self.n, self.p = X.shape
        self.K = Y.shape[1]

    # ------------------------------------------------------------------ protocol
    def init(self, B, b):
        s = _MultinomialState()
        s.B = np.array(B, dtype=np.float64)
        s.b = np.array(b, dtype=np.float64)
        s.eta = self._predict(s.B) + s.b
        s.objective = multinomial_objective(s.eta, self.Y, self.w, s.B, self.lam)
        s.kkt = math.inf
        s.n_inner = 0
        s.n_backtrack = 0
        s.inner_tol = 1e-4
        return s

    def step(self, state):
        X, Y, w, lam, n = self.X, self.Y, self.w, self.lam, self.n
        B, b, eta = state.B, state.b, state.eta
        F = state.objective
        # with two classes only the difference of the columns matters: the solver keeps class 1 at
        # zero (the binary model, an exact Newton block) and l1_logistic splits the result symmetrically
        for k in (range(self.K) if self.K > 2 else (0,)):
            lse = _log_partition(eta)
            pk = np.exp(eta[:, k] - lse)
            g = pk - Y[:, k]  # derivative of the loss in eta_k, times n / w
            hk = np.maximum(pk * (1.0 - pk), _HMIN)
            z = eta[:, k] - g / hk
            h = w * hk
            alpha = lam * n / float(h.sum())  # the Lasso's (1/(2 sum h)) normalisation
            res = self._lasso(X, z, alpha, sample_weight=h, fit_intercept=self.fit_intercept,
                              x0=B[:, k], intercept0=float(b[k]) if self.fit_intercept else None,
                              tol=state.inner_tol, max_iter=self.inner_max_iter)
            state.n_inner += int(res.n_iter)
            beta = np.asarray(res.x, dtype=np.float64)
            b_new = float(res.info.get("intercept", 0.0)) if self.fit_intercept else float(b[k])
            d_beta = beta - B[:, k]
            d_b = b_new - b[k]
            nz = np.flatnonzero(d_beta)
            if nz.size == 0 and d_b == 0.0:
                continue
            d_eta = (X[:, nz] @ d_beta[nz] if nz.size else np.zeros(n)) + d_b
            l1_old = float(np.abs(B[:, k]).sum())
            l1_rest = float(np.abs(B).sum()) - l1_old
            # predicted decrease of the proximal-Newton step (negative for a descent direction)
            delta = float((w * g) @ d_eta) / n + lam * (float(np.abs(beta).sum()) - l1_old)
            if not delta < 0:
                continue
            t = 1.0
            eta_k = eta[:, k].copy()
            accepted = False
            for _ in range(_MAX_HALVINGS):
                eta[:, k] = eta_k + t * d_eta
                Bk_t = B[:, k] + t * d_beta
                F_t = (float(w @ (_log_partition(eta) - np.einsum("ik,ik->i", Y, eta))) / n
                       + lam * (l1_rest + float(np.abs(Bk_t).sum())))
                if F_t <= F + _ARMIJO * t * delta:
                    accepted = True
                    break
                t *= 0.5
                state.n_backtrack += 1
            if accepted:
                B[:, k] = Bk_t
                b[k] += t * d_b
                F = F_t
            else:
                eta[:, k] = eta_k
        if self.K > 2:
            # adding one constant to a feature's coefficients in every class leaves the softmax
            # unchanged, and no one-class step moves along that direction: without this shift the
            # sweep stalls at a residual of about lam. The per-feature median minimizes the
            # penalty along it, so the objective cannot increase.
            c = np.median(B, axis=1)
            if np.any(c):
                B -= c[:, None]
                eta -= (X @ c)[:, None]
            if self.fit_intercept:
                cb = float(b.mean())
                b -= cb
                eta -= cb
        state.objective = multinomial_objective(eta, Y, w, B, lam)
        state.k += 1
        return state

    def monitor(self, state):
        state.kkt = self.kkt(state.B, state.eta)
        # the next sweep's Lasso subproblems are solved a decade past the current violation
        state.inner_tol = float(min(1e-4, max(0.1 * state.kkt, 1e-12)))
        return {"objective": state.objective, "kkt": state.kkt}

    # ------------------------------------------------------------------ helpers
    def _predict(self, B):
        return self.X @ B

    def kkt(self, B, eta):
        """Largest violation of the optimality conditions at ``(B, b)`` with ``eta = X B + b``.

        ``max( max_{jk} dist(-G_jk, lam d|B_jk|), max_k |g_k| )`` where ``G`` is
        the gradient of the loss in ``B`` and ``g`` in ``b`` (``g`` only with an
        intercept): 0 exactly at a minimizer.
        """
        n, lam = self.n, self.lam
        P = np.exp(eta - _log_partition(eta)[:, None])
        R = self.w[:, None] * (P - self.Y)
        G = self.X.T @ R / n
        viol = np.where(B > 0, np.abs(G + lam), np.where(B < 0, np.abs(G - lam),
                                                           np.maximum(np.abs(G) - lam, 0.0)))
        value = float(viol.max()) if viol.size else 0.0
        if self.fit_intercept:
            value = max(value, float(np.abs(R.sum(axis=0)).max()) / n)
        return value


def l1_logistic(X, Y, lam, *, sample_weight=None, fit_intercept=True, coef0=None, intercept0=None,
                tol=1e-6, max_iter=200, inner_max_iter=1000, callback=None, warn=True):
    r"""l1-penalized multinomial logistic regression, by proximal Newton.

    Minimizes

    .. math::

        F(B, b) = -\frac{1}{n}\sum_{i=1}^n w_i \sum_{k=1}^K Y_{ik}
        \log \operatorname{softmax}_k(x_i B + b) + \lambda \|B\|_1

    over ``B`` of shape ``(p, K)`` (all classes' coefficients penalized) and
    unpenalized intercepts ``b`` of shape ``(K,)``, where the sample weights
    ``w`` are rescaled to mean 1 (as scikit-learn's ``Lasso`` rescales them).

    Relation to scikit-learn: ``LogisticRegression(l1_ratio=1, C=C)`` (formerly
    ``penalty="l1"``) minimizes ``C sum_i s_i loss_i + ||B||_1`` with the raw
    weights ``s``; dividing by ``C sum(s)`` gives ``F`` with
    ``lam = 1 / (C sum(s))``, i.e. ``lam = 1 / (C n)`` without weights. For
    ``K = 2`` scikit-learn fits one binary coefficient vector ``beta``; ``F``'s
    minimum value is the same: with two classes only ``B_1 - B_2`` matters,
    the solver fits the binary model (an exact Newton block) and returns the
    symmetric split ``B = [beta / 2, -beta / 2]``, ``b = [c / 2, -c / 2]``
    (one of the minimizers, all of equal objective).

    The softmax is over-parametrized: adding one constant to every intercept
    changes nothing, and the solver fixes that direction by keeping
    ``mean(b) = 0`` (the coefficients are identified by the penalty).

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Design, float32 or float64 (computed in float64).
    Y : ndarray of shape (n,) or (n, K)
        Integer class labels, or soft labels (posterior probabilities): a
        nonnegative float array whose rows sum to 1.
    lam : float
        Penalty level, ``>= 0``.
    sample_weight : ndarray of shape (n,), optional
        Nonnegative weights with a positive sum.
    fit_intercept : bool
        Fit the intercepts ``b`` (else ``b = 0``).
    coef0, intercept0 : ndarray, optional
        Warm start, of shapes ``(p, K)`` and ``(K,)``. Default: ``B = 0`` and
        the intercepts of the model without features.
    tol : float
        Stop when the optimality residual ``info["kkt"]`` is ``<= tol``: the
        largest distance of minus the loss gradient to ``lam`` times the l1
        subdifferential over the coefficients, and the largest intercept
        gradient; it is in the units of ``lam`` and 0 exactly at a minimizer.
        Values below about 1e-9 may not be reachable: near the solution the
        weighted Lasso subproblems are exact only to rounding, their steps
        are rejected, and the run ends at ``max_iter`` with a warning.
    max_iter : int
        Outer iterations (one sweep over the classes each).
    inner_max_iter : int
        ``max_iter`` of each weighted Lasso subproblem.
    callback : callable, optional
        ``callback(state) -> bool`` after each sweep; True stops.
    warn : bool
        Warn (``ConvergenceWarning``) when ``max_iter`` is reached.

    Returns
    -------
    Result
        ``x``: the coefficients ``B`` (p, K); ``info["intercept"]`` (K,),
        ``info["objective"]`` (``F``), ``info["kkt"]`` (the residual above),
        ``info["classes"]`` (the labels of the columns), ``info["n_inner"]``
        (coordinate-descent epochs of the subproblems); ``history`` holds
        ``objective`` and ``kkt`` per sweep.

    Raises
    ------
    TypeError
        Non-float ``X``, non-integer 1-D labels.
    ValueError
        Wrong shapes, NaN/inf, negative ``lam`` or weights, soft-label rows
        that do not sum to 1, fewer than 2 classes.

    References
    ----------
    J. Friedman, T. Hastie, R. Tibshirani, "Regularization paths for generalized
    linear models via coordinate descent", J. Stat. Softw. 33 (2010).
    P. Tseng, S. Yun, "A coordinate gradient descent method for nonsmooth
    separable minimization", Math. Program. 117 (2009).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import l1_logistic
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5))
    >>> y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    >>> res = l1_logistic(X, y, 0.05)
    >>> res.converged, res.x.shape
    (True, (5, 3))
    """
    X = check_real_floating(X, "X", _WHERE)
    if X.ndim != 2:
        raise ValueError(f"{_WHERE}: X must be 2-D (n, p), got shape {X.shape}")
    X = check_finite_array(X, "X", _WHERE)
    n, p = X.shape
    if n == 0:
        raise ValueError(f"{_WHERE}: X has no rows")
    X = np.ascontiguousarray(X, dtype=np.float64) if X.dtype != np.float64 else X
    Yp, classes = prepare_labels(Y, n)
    K = Yp.shape[1]
    lam = check_nonneg(lam, "lam", _WHERE)
    w = _normalized_weights(sample_weight, n)
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise TypeError(f"{_WHERE}: fit_intercept must be a bool, got {fit_intercept!r}")
    tol = check_tolerance(tol, "tol", _WHERE)
    max_iter = check_positive_int(max_iter, "max_iter", _WHERE)
    inner_max_iter = check_int(inner_max_iter, "inner_max_iter", _WHERE)
    if coef0 is None:
        B0 = np.zeros((p, K))
    else:
        B0 = np.asarray(check_finite_array(coef0, "coef0", _WHERE, shape=(p, K)), dtype=np.float64)
    if not fit_intercept:
        b0 = np.zeros(K)
    elif intercept0 is None:
        # the intercepts of the featureless model: log of the weighted class frequencies
        freq = np.maximum(w @ Yp / n, 1e-12)
        b0 = np.log(freq) - np.log(freq).mean()
    else:
        b0 = np.asarray(check_finite_array(intercept0, "intercept0", _WHERE, shape=(K,)), dtype=np.float64)
    if K == 2:  # the reference parametrization of the binary model (see MultinomialProxNewton.step)
        B0 = np.column_stack([B0[:, 0] - B0[:, 1], np.zeros(p)])
        b0 = np.array([b0[0] - b0[1], 0.0])
    solver = MultinomialProxNewton(X, Yp, w, lam, fit_intercept=bool(fit_intercept),
                                   inner_max_iter=inner_max_iter)
    state = solver.init(B0, b0)
    state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback, warn=warn)
    if K == 2:  # split the difference symmetrically: same objective, mean(b) = 0
        state.B = np.column_stack([state.B[:, 0] / 2, -state.B[:, 0] / 2])
        state.b = np.array([state.b[0] / 2, -state.b[0] / 2])
    info = {"intercept": state.b.copy(), "objective": state.objective, "kkt": state.kkt,
            "classes": classes, "n_inner": state.n_inner, "n_backtrack": state.n_backtrack}
    return outcome.result(state.B.copy(), info=info)
