"""l1-regularised inverse entropic optimal transport.

Given an observed coupling ``P_hat`` between points ``X`` (n x d1) and ``Y``
(m x d2), estimate a parametrised cost ``C_A = -sum_k A_k Phi_k`` (by default
bilinear, ``C_A(x, y) = -x^T A y``) by l1-penalised maximum likelihood in the
entropic OT model, as in Andrade, Peyre and Poon, "Sparsistency for Inverse
Optimal Transport" (ICLR 2024).
"""

from __future__ import annotations

import math

import numpy as np

from tikhon.operators._backend import is_torch, vdot
from tikhon.solvers._loop import check_tolerance, iterate
from tikhon.solvers._result import Result

_WHERE = "inverse_ot"


def _float_array(x, name, ndim):
    if is_torch(x):
        raise TypeError(f"{_WHERE}: {name} must be a NumPy array (torch tensors are not supported)")
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{_WHERE}: {name} must be a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{_WHERE}: {name} must be {ndim}-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{_WHERE}: {name} contains NaN or inf")
    return x.astype(np.float64, copy=False)


class _Model:
    """Features, observed coupling and the loss L(A) = <C_A, P_hat> - OT_eps(C_A)."""

    def __init__(self, X, Y, coupling, eps, features, a, b, sinkhorn_tol):
        from tikhon.solvers.transport.sinkhorn import sinkhorn

        self._sinkhorn = sinkhorn
        X = _float_array(X, "X", 2)
        Y = _float_array(Y, "Y", 2)
        P_hat = _float_array(coupling, "coupling", 2)
        n, m = X.shape[0], Y.shape[0]
        if P_hat.shape != (n, m):
            raise ValueError(f"{_WHERE}: coupling must have shape {(n, m)}, got {P_hat.shape}")
        if np.any(P_hat < 0):
            raise ValueError(f"{_WHERE}: coupling must be non-negative")
        mass = P_hat.sum()
        if mass <= 0:
            raise ValueError(f"{_WHERE}: coupling must have positive mass")
        P_hat = P_hat / mass
        try:
            eps = float(eps)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{_WHERE}: eps must be a number, got {eps!r}") from exc
        if not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"{_WHERE}: eps must be finite and > 0, got {eps!r}")
        a = P_hat.sum(axis=1) if a is None else _float_array(a, "a", 1)
        b = P_hat.sum(axis=0) if b is None else _float_array(b, "b", 1)
        if a.shape != (n,) or b.shape != (m,):
            raise ValueError(f"{_WHERE}: a and b must have lengths {n} and {m}")
        if np.any(a < 0) or np.any(b < 0):
            raise ValueError(f"{_WHERE}: a and b must be non-negative")
        a, b = a / a.sum(), b / b.sum()
        # points of zero mass carry no rows/columns of any model plan and no
        # observations; dropping them keeps every potential finite (a sampled
        # coupling leaves some points unobserved when N is small)
        ia, ib = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
        if ia.size < n or ib.size < m:
            a, b = a[ia] / a[ia].sum(), b[ib] / b[ib].sum()
            X, Y, P_hat = X[ia], Y[ib], P_hat[np.ix_(ia, ib)]
            P_hat = P_hat / P_hat.sum()
            if features is not None:
                features = _float_array(features, "features", 3)
                if features.shape[1:] != (n, m):
                    raise ValueError(
                        f"{_WHERE}: features must have shape (K, {n}, {m}), got {features.shape}"
                    )
                features = features[:, ia][:, :, ib]
            n, m = ia.size, ib.size
        if features is None:
            self.bilinear = True
            self.X, self.Y = X, Y
            self.shape = (X.shape[1], Y.shape[1])
        else:
            F = _float_array(features, "features", 3)
            if F.shape[1:] != (n, m):
                raise ValueError(
                    f"{_WHERE}: features must have shape (K, {n}, {m}), got {F.shape}"
                )
            self.bilinear = False
            self.F = F
            self.shape = (F.shape[0],)
        self.P_hat, self.a, self.b, self.eps = P_hat, a, b, eps
        self.sinkhorn_tol = sinkhorn_tol
        self.moments_hat = self.moments(P_hat)
        self.potentials = None
        self.n_sinkhorn = 0

    def cost(self, A):
        if self.bilinear:
            return -(self.X @ A) @ self.Y.T
        return -np.tensordot(A, self.F, axes=1)

    def moments(self, P):
        """<Phi_k, P> for every feature k."""
        if self.bilinear:
            return self.X.T @ P @ self.Y
        return np.tensordot(self.F, P, axes=([1, 2], [0, 1]))

    def value_grad(self, A):
        """L(A) and its gradient <Phi, P_A - P_hat>, by a warm-started Sinkhorn."""
        C = self.cost(A)
        f0, g0 = (None, None) if self.potentials is None else self.potentials
        res = self._sinkhorn(
            self.a, self.b, C, self.eps, tol=self.sinkhorn_tol, f0=f0, g0=g0, max_iter=100_000
        )
        self.n_sinkhorn += 1
        f, g = res.dual
        if not (res.converged and np.all(np.isfinite(f[self.a > 0])) and np.all(np.isfinite(g[self.b > 0]))):
            raise FloatingPointError(f"{_WHERE}: inner Sinkhorn failed: {res.message}")
        self.potentials = (f, g)
        P = res.x
        # dual value of entropic OT in the a/b-free potentials (constants in A dropped)
        ot = (
            float(np.dot(np.where(self.a > 0, f, 0.0), self.a))
            + float(np.dot(np.where(self.b > 0, g, 0.0), self.b))
            - self.eps * float(P.sum())
        )
        value = vdot(C, self.P_hat) - ot
        grad = self.moments(P) - self.moments_hat
        return value, grad


def _soft(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _kkt(A, grad, lam):
    """Largest distance of -grad to lam * subdifferential of ||A||_1."""
    on = A != 0
    r = np.where(on, np.abs(grad + lam * np.sign(A)), np.maximum(np.abs(grad) - lam, 0.0))
    return float(r.max()) if r.size else 0.0


def _solve(model, lam, A0, L0, tol, max_iter, callback, progress, warn, scale):
    """FISTA with backtracking and adaptive (gradient) restart for L(A) + lam ||A||_1."""
    state = {"A": A0.copy(), "Yk": A0.copy(), "tk": 1.0, "Lip": L0}
    state["fY"], state["gY"] = model.value_grad(A0)
    state["fA"], state["gA"] = state["fY"], state["gY"]

    def step(s):
        Yk, fY, gY = s["Yk"], s["fY"], s["gY"]
        Lip = max(s["Lip"] * 0.9, 1e-12)
        for _ in range(60):
            A_new = _soft(Yk - gY / Lip, lam / Lip)
            d = A_new - Yk
            f_new, g_new = model.value_grad(A_new)
            if f_new <= fY + vdot(gY, d) + 0.5 * Lip * vdot(d, d) + 1e-12 * abs(fY):
                break
            Lip *= 2.0
        A_old = s["A"]
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * s["tk"] ** 2))
        # restart the momentum when the step goes against the previous move
        if vdot(Yk - A_new, A_new - A_old) > 0:
            t_new, s["tk"] = 1.0, 1.0
        Y_next = A_new + ((s["tk"] - 1.0) / t_new) * (A_new - A_old)
        s.update(A=A_new, fA=f_new, gA=g_new, tk=t_new, Lip=Lip)
        if np.array_equal(Y_next, A_new):
            s["Yk"], s["fY"], s["gY"] = A_new, f_new, g_new
        else:
            s["Yk"] = Y_next
            s["fY"], s["gY"] = model.value_grad(Y_next)
        return s

    def monitor(s):
        obj = s["fA"] + lam * float(np.abs(s["A"]).sum())
        return {"objective": obj, "kkt": _kkt(s["A"], s["gA"], lam) / scale, "lipschitz": s["Lip"]}

    # the starting point may already be optimal (e.g. A = 0 above lam_max)
    if _kkt(state["A"], state["gA"], lam) / scale <= tol:
        from tikhon.solvers._loop import LoopOutcome

        rec = monitor(state)
        return state, LoopOutcome(True, 0, f"{_WHERE}: the initial point is optimal "
                                  f"(kkt = {rec['kkt']:.3g} <= tol = {tol:g})",
                                  {k: np.asarray([v]) for k, v in rec.items()}, 0.0)
    return iterate(
        state, step, monitor, criterion="kkt", tol=tol, max_iter=max_iter,
        callback=callback, progress=progress, name=_WHERE, warn=warn,
    )


def inverse_ot(
    X,
    Y,
    coupling,
    eps,
    lam,
    features=None,
    a=None,
    b=None,
    *,
    tol=1e-6,
    max_iter=500,
    x0=None,
    lam_path=None,
    sinkhorn_tol=1e-10,
    callback=None,
    progress=False,
    warn=True,
):
    """l1-regularised inverse entropic optimal transport.

    Estimates the parameter ``A`` of the cost ``C_A = -sum_k A_k Phi_k`` (by
    default the bilinear cost ``C_A(x_i, y_j) = -x_i^T A y_j``, i.e.
    ``Phi_(p,q)(x, y) = x_p y_q``) from an observed coupling ``P_hat`` by solving

    .. math::

        \\min_A\\ L(A) + \\lambda \\|A\\|_1, \\qquad
        L(A) = \\langle C_A, \\hat P\\rangle - \\mathrm{OT}_\\varepsilon(C_A),

    where :math:`\\mathrm{OT}_\\varepsilon(C) = \\min_{P \\in U(a, b)} \\langle C,
    P\\rangle + \\varepsilon \\mathrm{KL}(P | a b^T)`. ``L / eps`` is, up to a
    constant, the negative log-likelihood of ``P_hat`` under the entropic OT
    model ``P_A = exp((f + g - C_A) / eps)``; it is convex (OT_eps is a minimum
    of functions linear in C) with gradient ``<Phi_k, P_A - P_hat>`` (model
    minus observed feature moments). This is the estimator of Andrade, Peyre
    and Poon (ICLR 2024). Solved by FISTA with backtracking and adaptive
    restart; every gradient is one Sinkhorn solve warm-started from the
    previous potentials.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, d1)
        Source points.
    Y : numpy.ndarray, shape (m, d2)
        Target points.
    coupling : numpy.ndarray, shape (n, m)
        Observed (empirical) coupling, e.g. counts of sampled pairs ``(i, j)``;
        normalised to mass 1.
    eps : float
        Entropic regularisation of the model (> 0).
    lam : float or sequence of float
        l1 weight (>= 0). A sequence is solved as a regularisation path (in the
        given order, each solve warm-started from the previous one).
    features : numpy.ndarray, shape (K, n, m), optional
        Cost features ``Phi_k(x_i, y_j)``; then ``A`` has shape (K,).
    a, b : numpy.ndarray, optional
        Marginals of the model; by default those of ``coupling`` (which keeps
        ``L`` bounded below).
    tol : float
        Stop when the KKT residual ``max_k dist(-grad_k L, lam d|A_k|)``
        divided by ``lam_max = max |grad L(0)|`` is ``<= tol``.
    max_iter : int
        Maximum number of FISTA iterations (per value of lam).
    x0 : numpy.ndarray, optional
        Initial estimate (default zero).
    lam_path : sequence of float, optional
        Same as passing a sequence as ``lam``; ``lam`` is then solved last.
    sinkhorn_tol : float
        Marginal-violation tolerance of the inner Sinkhorn solves.
    callback : callable, optional
        ``callback(state) -> bool`` after every iteration; True stops.
    progress : bool
        Show a tqdm progress bar.
    warn : bool
        Warn (ConvergenceWarning) when ``max_iter`` is reached.

    Returns
    -------
    Result
        ``x``: the estimate of ``A`` (for the last lam); ``dual``: the model
        potentials ``(f, g)``; ``info``: ``plan`` (model coupling ``P_A``),
        ``lam_max``, ``loss`` (``L(A)``), ``n_sinkhorn``, and for a path
        ``path`` (array of estimates, one per lam), ``lams`` and
        ``path_converged``; ``history``: ``objective``, ``kkt``, ``lipschitz``.
    """
    tol = check_tolerance(tol)
    sinkhorn_tol = check_tolerance(sinkhorn_tol, "sinkhorn_tol")
    lams = []
    if lam_path is not None:
        lams.extend(np.atleast_1d(np.asarray(lam_path, dtype=float)).tolist())
    lams.extend(np.atleast_1d(np.asarray(lam, dtype=float)).tolist())
    if not lams:
        raise ValueError(f"{_WHERE}: lam is empty")
    for value in lams:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{_WHERE}: lam must be finite and >= 0, got {value!r}")
    is_path = len(lams) > 1
    model = _Model(X, Y, coupling, eps, features, a, b, sinkhorn_tol)
    zero = np.zeros(model.shape)
    _, grad0 = model.value_grad(zero)
    lam_max = float(np.abs(grad0).max())
    scale = lam_max if lam_max > 0 else 1.0
    if x0 is None:
        A = zero
    else:
        A = _float_array(x0, "x0", len(model.shape))
        if A.shape != model.shape:
            raise ValueError(f"{_WHERE}: x0 must have shape {model.shape}, got {A.shape}")
    # a curvature estimate: the Hessian of L is the model covariance of the
    # features over eps; backtracking corrects it
    prod = np.outer(model.a, model.b)
    if model.bilinear:
        second = float(model.a @ (model.X**2).sum(1)) * float(model.b @ (model.Y**2).sum(1))
    else:
        second = float(np.tensordot(model.F**2, prod, axes=([1, 2], [0, 1])).sum())
    Phi_var = max(second - float(np.sum(model.moments(prod) ** 2)), 0.0)
    Lip = max(Phi_var / model.eps, 1e-6)
    path, conv, hist, n_total, elapsed = [], [], {}, 0, 0.0
    message = ""
    for value in lams:
        state, out = _solve(model, value, A, Lip, tol, max_iter, callback, progress, warn, scale)
        A, Lip = state["A"], state["Lip"]
        path.append(A.copy())
        conv.append(out.converged)
        n_total += out.n_iter
        elapsed += out.elapsed
        hist = out.history
        message = out.message
    info = {
        "plan": None,
        "lam_max": lam_max,
        "loss": state["fA"],
        "n_sinkhorn": model.n_sinkhorn,
    }
    # the model plan at the returned estimate
    C = model.cost(A)
    f, g = model.potentials
    res = model._sinkhorn(model.a, model.b, C, model.eps, tol=sinkhorn_tol, f0=f, g0=g, max_iter=100_000)
    info["plan"] = res.x
    if is_path:
        info.update(path=np.stack(path), lams=np.asarray(lams), path_converged=np.asarray(conv))
    return Result(
        x=A,
        converged=bool(conv[-1]),
        n_iter=n_total,
        message=message,
        history=hist,
        elapsed=elapsed,
        steps={"step": 1.0 / state["Lip"]},
        dual=res.dual,
        info=info,
    )
