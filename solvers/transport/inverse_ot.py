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

from tikhon._core.arrays import is_torch, torch_module, vdot
from tikhon._core.arrays import copy, xp_maximum0, xp_sign, xp_where
from tikhon.operators.prox.l1 import L1
from tikhon.solvers._loop import LoopOutcome, check_tolerance, iterate
from tikhon.solvers._result import Result

_WHERE = "inverse_ot"
# the proximal step of the l1 penalty: soft thresholding
_L1 = L1()
_INNER_MAX_ITER = 100_000
# float32 rounds the model plan exp((f + g - C) / eps) to a relative error of
# about 6e-8 |C| / eps per entry, so its marginal violation cannot be pushed
# much below 1e-5 (and a 1e-10 target would spin for the whole budget)
_F32_SINKHORN_TOL = 1e-5
# slack of the backtracking test, relative to |L|: L is a difference of two
# terms of the size of <C, P>, whose rounding the test must not mistake for a
# too-long step (which would double the Lipschitz estimate 60 times)
_SLACK = {"float64": 1e-12, "float32": 1e-5}


# ----------------------------------------------------------------------------
# backend dispatch: NumPy arrays (float64 throughout, as before) or torch
# tensors (their promoted dtype, on their device); torch is never imported here


def _backend_spec(named):
    """None for NumPy inputs, ``(dtype, device)`` for torch inputs.

    ``named`` maps argument names to values (None entries are skipped). Mixed
    NumPy / torch inputs raise TypeError naming both groups; tensors on
    different devices raise ValueError naming them.
    """
    tensors = [(k, v) for k, v in named.items() if v is not None and is_torch(v)]
    others = [k for k, v in named.items() if v is not None and not is_torch(v)]
    if not tensors:
        return None
    if others:
        raise TypeError(
            f"{_WHERE}: mixed NumPy and torch inputs: {', '.join(k for k, _ in tensors)} "
            f"{'is a torch tensor' if len(tensors) == 1 else 'are torch tensors'} but "
            f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} not; pass all array "
            "inputs as NumPy arrays or all as torch tensors"
        )
    torch = torch_module()
    for k, v in tensors:
        if v.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{_WHERE}: {k} must be a float32 or float64 tensor, got {v.dtype}")
    devices = {str(v.device) for _, v in tensors}
    if len(devices) > 1:
        where = ", ".join(f"{k} on {v.device}" for k, v in tensors)
        raise ValueError(f"{_WHERE}: all tensors must be on one device, got {where}")
    dtype = torch.float64 if any(v.dtype == torch.float64 for _, v in tensors) else torch.float32
    return dtype, tensors[0][1].device


def _float_array(x, name, ndim, spec=None):
    """Validate one array input; NumPy -> float64 array, torch -> tensor of ``spec``."""
    if spec is not None:
        if not is_torch(x):
            raise TypeError(f"{_WHERE}: {name} must be a torch tensor like the other inputs")
        torch = torch_module()
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{_WHERE}: {name} must be a float32 or float64 tensor, got {x.dtype}")
        if x.ndim != ndim:
            raise ValueError(f"{_WHERE}: {name} must be {ndim}-D, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{_WHERE}: {name} contains NaN or inf")
        # an argmin is not differentiated through its iterations: no graph
        return x.detach().to(dtype=spec[0], device=spec[1])
    if is_torch(x):
        raise TypeError(f"{_WHERE}: {name} is a torch tensor but the other inputs are NumPy arrays")
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{_WHERE}: {name} must be a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{_WHERE}: {name} must be {ndim}-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{_WHERE}: {name} contains NaN or inf")
    return x.astype(np.float64, copy=False)


def _tensordot(x, y, axes):
    if is_torch(x):
        return torch_module().tensordot(x, y, dims=axes)
    return np.tensordot(x, y, axes=axes)


def _flatnonzero(w):
    if is_torch(w):
        return torch_module().nonzero(w).reshape(-1)
    return np.flatnonzero(w)


def _size(x):
    return x.numel() if is_torch(x) else x.size


def _submatrix(P, rows, cols):
    if is_torch(P):
        return P.index_select(0, rows).index_select(1, cols)
    return P[np.ix_(rows, cols)]


def _outer(u, v):
    return torch_module().outer(u, v) if is_torch(u) else np.outer(u, v)


def _array_equal(x, y):
    return torch_module().equal(x, y) if is_torch(x) else np.array_equal(x, y)


def _zeros(shape, spec):
    if spec is None:
        return np.zeros(shape)
    return torch_module().zeros(shape, dtype=spec[0], device=spec[1])


def _dtype_name(x):
    return str(x.dtype).rsplit(".", 1)[-1]


def _scalars(value, name):
    """A number, sequence, array or tensor of numbers as a list of Python floats."""
    if value is None:
        return []
    if is_torch(value):
        # parameters, not iterates: read once, before the iterations
        return [float(v) for v in value.detach().reshape(-1)]
    try:
        return np.atleast_1d(np.asarray(value, dtype=float)).ravel().tolist()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{_WHERE}: {name} must be a number or a sequence of numbers, got {value!r}") from exc


class _Model:
    """Features, observed coupling and the loss L(A) = <C_A, P_hat> - OT_eps(C_A)."""

    def __init__(self, X, Y, coupling, eps, features, a, b, sinkhorn_tol):
        from tikhon.solvers.transport.sinkhorn import sinkhorn

        self._sinkhorn = sinkhorn
        spec = _backend_spec(
            {"X": X, "Y": Y, "coupling": coupling, "features": features, "a": a, "b": b}
        )
        self.spec = spec
        X = _float_array(X, "X", 2, spec)
        Y = _float_array(Y, "Y", 2, spec)
        P_hat = _float_array(coupling, "coupling", 2, spec)
        n, m = X.shape[0], Y.shape[0]
        if tuple(P_hat.shape) != (n, m):
            raise ValueError(f"{_WHERE}: coupling must have shape {(n, m)}, got {tuple(P_hat.shape)}")
        if bool((P_hat < 0).any()):
            raise ValueError(f"{_WHERE}: coupling must be non-negative")
        mass = P_hat.sum()
        if not float(mass) > 0:
            raise ValueError(f"{_WHERE}: coupling must have positive mass")
        P_hat = P_hat / mass
        if isinstance(eps, bool):
            raise TypeError(f"{_WHERE}: eps must be a number, got {eps!r}")
        try:
            eps = float(eps)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{_WHERE}: eps must be a number, got {eps!r}") from exc
        if not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"{_WHERE}: eps must be finite and > 0, got {eps!r}")
        a = P_hat.sum(1) if a is None else _float_array(a, "a", 1, spec)
        b = P_hat.sum(0) if b is None else _float_array(b, "b", 1, spec)
        if tuple(a.shape) != (n,) or tuple(b.shape) != (m,):
            raise ValueError(f"{_WHERE}: a and b must have lengths {n} and {m}")
        if bool((a < 0).any()) or bool((b < 0).any()):
            raise ValueError(f"{_WHERE}: a and b must be non-negative")
        if not (float(a.sum()) > 0 and float(b.sum()) > 0):
            raise ValueError(f"{_WHERE}: a and b must have positive mass")
        a, b = a / a.sum(), b / b.sum()
        # points of zero mass carry no rows/columns of any model plan and no
        # observations; dropping them keeps every potential finite (a sampled
        # coupling leaves some points unobserved when N is small)
        ia, ib = _flatnonzero(a > 0), _flatnonzero(b > 0)
        if _size(ia) < n or _size(ib) < m:
            a, b = a[ia] / a[ia].sum(), b[ib] / b[ib].sum()
            X, Y, P_hat = X[ia], Y[ib], _submatrix(P_hat, ia, ib)
            P_hat = P_hat / P_hat.sum()
            if features is not None:
                features = _float_array(features, "features", 3, spec)
                if tuple(features.shape[1:]) != (n, m):
                    raise ValueError(
                        f"{_WHERE}: features must have shape (K, {n}, {m}), got {tuple(features.shape)}"
                    )
                features = features[:, ia][:, :, ib]
            n, m = _size(ia), _size(ib)
        if features is None:
            self.bilinear = True
            self.X, self.Y = X, Y
            self.shape = (X.shape[1], Y.shape[1])
        else:
            F = _float_array(features, "features", 3, spec)
            if tuple(F.shape[1:]) != (n, m):
                raise ValueError(
                    f"{_WHERE}: features must have shape (K, {n}, {m}), got {tuple(F.shape)}"
                )
            self.bilinear = False
            self.F = F
            self.shape = (F.shape[0],)
        self.P_hat, self.a, self.b, self.eps = P_hat, a, b, eps
        if spec is not None and spec[0] == torch_module().float32:
            sinkhorn_tol = max(sinkhorn_tol, _F32_SINKHORN_TOL)
        self.sinkhorn_tol = sinkhorn_tol
        self.slack = _SLACK[_dtype_name(P_hat)]
        self.moments_hat = self.moments(P_hat)
        self.potentials = None
        self.n_sinkhorn = 0

    def cost(self, A):
        if self.bilinear:
            return -(self.X @ A) @ self.Y.T
        return -_tensordot(A, self.F, 1)

    def moments(self, P):
        """<Phi_k, P> for every feature k."""
        if self.bilinear:
            return self.X.T @ P @ self.Y
        return _tensordot(self.F, P, ([1, 2], [0, 1]))

    def plan(self, C):
        """Warm-started Sinkhorn solve for the cost C (the Result; potentials stored)."""
        f0, g0 = (None, None) if self.potentials is None else self.potentials
        res = self._sinkhorn(
            self.a, self.b, C, self.eps, tol=self.sinkhorn_tol, f0=f0, g0=g0,
            max_iter=_INNER_MAX_ITER,
        )
        self.n_sinkhorn += 1
        ok = res.converged
        if not ok and self.spec is not None and self.slack > _SLACK["float64"]:
            # float32: the iterations met the tolerance (they stopped before the
            # budget) but the returned plan's rounding misses it; that rounding
            # is the precision float32 offers, so the plan is used
            ok = res.n_iter < _INNER_MAX_ITER and math.isfinite(res.info["marginal_error"])
        return res, ok

    def value_grad(self, A):
        """L(A) and its gradient <Phi, P_A - P_hat>, by a warm-started Sinkhorn."""
        C = self.cost(A)
        res, ok = self.plan(C)
        f, g = res.dual
        P = res.x
        # dual value of entropic OT in the a/b-free potentials (constants in A
        # dropped); every a_i, b_j > 0 here (zero-mass points were dropped)
        if self.spec is None:
            if not (ok and np.all(np.isfinite(f)) and np.all(np.isfinite(g))):
                raise FloatingPointError(f"{_WHERE}: inner Sinkhorn failed: {res.message}")
            ot = float(np.dot(f, self.a)) + float(np.dot(g, self.b)) - self.eps * float(P.sum())
            value = vdot(C, self.P_hat) - ot
        else:
            # one device synchronisation: the value is reduced on the device in
            # float64; non-finite potentials make it non-finite
            f64 = torch_module().float64
            value = float(
                (C * self.P_hat).sum(dtype=f64)
                - (f * self.a).sum(dtype=f64)
                - (g * self.b).sum(dtype=f64)
                + self.eps * P.sum(dtype=f64)
            )
            if not (ok and math.isfinite(value)):
                raise FloatingPointError(f"{_WHERE}: inner Sinkhorn failed: {res.message}")
        self.potentials = (f, g)
        grad = self.moments(P) - self.moments_hat
        return value, grad


def _kkt(A, grad, lam):
    """Largest distance of -grad to lam * subdifferential of ||A||_1."""
    r = xp_where(A != 0, abs(grad + lam * xp_sign(A)), xp_maximum0(abs(grad) - lam))
    return float(r.max()) if _size(r) else 0.0


def _solve(model, lam, A0, L0, tol, max_iter, callback, progress, warn, scale):
    """FISTA with backtracking and adaptive (gradient) restart for L(A) + lam ||A||_1."""
    state = {"A": copy(A0), "Yk": copy(A0), "tk": 1.0, "Lip": L0}
    state["fY"], state["gY"] = model.value_grad(A0)
    state["fA"], state["gA"] = state["fY"], state["gY"]
    slack = model.slack

    def step(s):
        Yk, fY, gY = s["Yk"], s["fY"], s["gY"]
        Lip = max(s["Lip"] * 0.9, 1e-12)
        for _ in range(60):
            A_new = _L1._prox(Yk - gY / Lip, lam / Lip)
            d = A_new - Yk
            f_new, g_new = model.value_grad(A_new)
            if f_new <= fY + vdot(gY, d) + 0.5 * Lip * vdot(d, d) + slack * abs(fY):
                break
            Lip *= 2.0
        A_old = s["A"]
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * s["tk"] ** 2))
        # restart the momentum when the step goes against the previous move
        if vdot(Yk - A_new, A_new - A_old) > 0:
            t_new, s["tk"] = 1.0, 1.0
        Y_next = A_new + ((s["tk"] - 1.0) / t_new) * (A_new - A_old)
        s.update(A=A_new, fA=f_new, gA=g_new, tk=t_new, Lip=Lip)
        if _array_equal(Y_next, A_new):
            s["Yk"], s["fY"], s["gY"] = A_new, f_new, g_new
        else:
            s["Yk"] = Y_next
            s["fY"], s["gY"] = model.value_grad(Y_next)
        return s

    def monitor(s):
        obj = s["fA"] + lam * float(abs(s["A"]).sum())
        return {"objective": obj, "kkt": _kkt(s["A"], s["gA"], lam) / scale, "lipschitz": s["Lip"]}

    # the starting point may already be optimal (e.g. A = 0 above lam_max)
    if _kkt(state["A"], state["gA"], lam) / scale <= tol:
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

    The array inputs are either all NumPy arrays (computed in float64) or all
    torch tensors (float32 or float64, on one device, CPU or CUDA): then the
    same iterations run on torch operations on that device, in the promoted
    dtype of the inputs, without copies to the host (only scalar reductions
    are read, for the line search and the stopping test), and the arrays of
    the result are tensors of that device and dtype. Inputs that require
    gradients are detached: the solver is not differentiated through.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (n, d1)
        Source points.
    Y : numpy.ndarray or torch.Tensor, shape (m, d2)
        Target points.
    coupling : numpy.ndarray or torch.Tensor, shape (n, m)
        Observed (empirical) coupling, e.g. counts of sampled pairs ``(i, j)``;
        normalised to mass 1.
    eps : float
        Entropic regularisation of the model (> 0).
    lam : float or sequence of float (or a tensor of them)
        l1 weight (>= 0). A sequence is solved as a regularisation path (in the
        given order, each solve warm-started from the previous one).
    features : numpy.ndarray or torch.Tensor, shape (K, n, m), optional
        Cost features ``Phi_k(x_i, y_j)``; then ``A`` has shape (K,).
    a, b : numpy.ndarray or torch.Tensor, optional
        Marginals of the model; by default those of ``coupling`` (which keeps
        ``L`` bounded below).
    tol : float
        Stop when the KKT residual ``max_k dist(-grad_k L, lam d|A_k|)``
        divided by ``lam_max = max |grad L(0)|`` is ``<= tol``.
    max_iter : int
        Maximum number of FISTA iterations (per value of lam).
    x0 : numpy.ndarray or torch.Tensor, optional
        Initial estimate (default zero).
    lam_path : sequence of float, optional
        Same as passing a sequence as ``lam``; ``lam`` is then solved last.
    sinkhorn_tol : float
        Marginal-violation tolerance of the inner Sinkhorn solves. For
        float32 tensors it is raised to at least 1e-5, and an inner solve
        whose iterations met it but whose plan misses it by float32 rounding
        (about ``6e-8 |C| / eps`` per entry) is accepted: in float32 the
        gradient is accurate to roughly that level, so ask for ``tol`` of
        1e-4 rather than 1e-6.
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
        Arrays are float64 NumPy arrays for NumPy inputs, tensors of the
        inputs' device and (promoted) dtype for torch inputs
        (``path_converged`` a bool tensor); scalars are Python numbers.

    Raises
    ------
    TypeError
        Mixed NumPy and torch inputs (the message names both groups),
        non-floating arrays, a non-numeric ``eps``.
    ValueError
        Inconsistent shapes, NaN or inf, a negative or empty ``coupling``,
        negative marginals, ``eps <= 0``, ``lam < 0``, tensors on different
        devices.
    FloatingPointError
        An inner Sinkhorn solve failed (non-finite potentials or no
        convergence within 100000 iterations).
    """
    tol = check_tolerance(tol)
    sinkhorn_tol = check_tolerance(sinkhorn_tol, "sinkhorn_tol")
    spec = _backend_spec(
        {"X": X, "Y": Y, "coupling": coupling, "features": features, "a": a, "b": b, "x0": x0}
    )
    lams = _scalars(lam_path, "lam_path") + _scalars(lam, "lam")
    if not lams:
        raise ValueError(f"{_WHERE}: lam is empty")
    for value in lams:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{_WHERE}: lam must be finite and >= 0, got {value!r}")
    is_path = len(lams) > 1
    model = _Model(X, Y, coupling, eps, features, a, b, sinkhorn_tol)
    zero = _zeros(model.shape, spec)
    _, grad0 = model.value_grad(zero)
    lam_max = float(abs(grad0).max())
    scale = lam_max if lam_max > 0 else 1.0
    if x0 is None:
        A = zero
    else:
        A = _float_array(x0, "x0", len(model.shape), spec)
        if tuple(A.shape) != model.shape:
            raise ValueError(f"{_WHERE}: x0 must have shape {model.shape}, got {tuple(A.shape)}")
    # a curvature estimate: the Hessian of L is the model covariance of the
    # features over eps; backtracking corrects it
    prod = _outer(model.a, model.b)
    if model.bilinear:
        second = float(model.a @ (model.X**2).sum(1)) * float(model.b @ (model.Y**2).sum(1))
    else:
        second = float(_tensordot(model.F**2, prod, ([1, 2], [0, 1])).sum())
    Phi_var = max(second - float((model.moments(prod) ** 2).sum()), 0.0)
    Lip = max(Phi_var / model.eps, 1e-6)
    path, conv, hist, n_total, elapsed = [], [], {}, 0, 0.0
    message = ""
    for value in lams:
        state, out = _solve(model, value, A, Lip, tol, max_iter, callback, progress, warn, scale)
        A, Lip = state["A"], state["Lip"]
        path.append(copy(A))
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
    res, _ = model.plan(model.cost(A))
    info["plan"] = res.x
    if is_path:
        if spec is None:
            info.update(path=np.stack(path), lams=np.asarray(lams), path_converged=np.asarray(conv))
        else:
            torch = torch_module()
            info.update(
                path=torch.stack(path),
                lams=torch.tensor(lams, dtype=spec[0], device=spec[1]),
                path_converged=torch.tensor(conv, dtype=torch.bool, device=spec[1]),
            )
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
