"""Class-based optimal transport with a sum-of-norms (group lasso) regulariser.

Solves, for source points with class labels ``y_i`` and ``I_c = {i : y_i = c}``,

.. math::

    \\min_{P \\in U(a, b)} \\langle C, P\\rangle
        + \\lambda \\sum_{j=1}^m \\sum_{c} \\|P_{I_c, j}\\|_2,
    \\qquad U(a, b) = \\{P \\ge 0,\\ P 1 = a,\\ P^T 1 = b\\},

the sum-of-norms class regulariser of Rahbar, Panahi, Chehreghani, Dubhashi and
Krim, "Recovery Bounds on Class-Based Optimal Transport: A Sum-of-Norms
Regularization Framework" (ICML 2023): each target point is encouraged to receive
its mass from as few source classes as possible.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from tikhon._core.arrays import is_torch, torch_module
from tikhon.solvers._loop import ConvergenceWarning, check_tolerance, iterate
from tikhon.solvers._result import Result

_WHERE = "class_ot"


def _as_vector(x, name, length=None):
    if is_torch(x):
        raise TypeError(f"{_WHERE}: {name} must be a NumPy array (torch tensors are not supported)")
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == bool:
        raise TypeError(f"{_WHERE}: {name} must be a real floating array, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim != 1:
        raise ValueError(f"{_WHERE}: {name} must be one-dimensional, got shape {x.shape}")
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{_WHERE}: {name} must have length {length}, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{_WHERE}: {name} contains NaN or inf")
    if np.any(x < 0):
        raise ValueError(f"{_WHERE}: {name} must be non-negative")
    return x


def _validate(a, b, C, source_classes, lam, eps):
    if is_torch(C):
        raise TypeError(f"{_WHERE}: C must be a NumPy array (torch tensors are not supported)")
    C = np.asarray(C)
    if C.dtype not in (np.float32, np.float64):
        raise TypeError(f"{_WHERE}: C must be a float32 or float64 array, got dtype {C.dtype}")
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"{_WHERE}: C must be a non-empty 2-D array, got shape {C.shape}")
    if not np.all(np.isfinite(C)):
        raise ValueError(f"{_WHERE}: C contains NaN or inf")
    n, m = C.shape
    a = np.full(n, 1.0 / n) if a is None else _as_vector(a, "a", n)
    b = np.full(m, 1.0 / m) if b is None else _as_vector(b, "b", m)
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        raise ValueError(f"{_WHERE}: the marginals a and b must have positive mass")
    if abs(sa - sb) > 1e-8 * max(sa, sb):
        raise ValueError(
            f"{_WHERE}: the marginals must have equal mass, got sum(a) = {sa:.12g} "
            f"and sum(b) = {sb:.12g}"
        )
    if is_torch(source_classes):
        # NumPy data with tensor labels: the labels join the data on the host
        source_classes = source_classes.detach().cpu().numpy()
    labels = np.asarray(source_classes)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{_WHERE}: source_classes must be a 1-D array of length n = {n}, got shape {labels.shape}"
        )
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{_WHERE}: source_classes contains NaN or inf")
    lam = _check_lam_eps(lam, eps)
    return a, b * (sa / sb), C.astype(np.float64, copy=False), labels, lam


def _check_lam_eps(lam, eps):
    try:
        lam = float(lam)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{_WHERE}: lam must be a number, got {lam!r}") from exc
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"{_WHERE}: lam must be finite and >= 0, got {lam!r}")
    try:
        eps = float(eps)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{_WHERE}: eps must be a number, got {eps!r}") from exc
    if eps != 0.0:
        raise ValueError(
            f"{_WHERE}: only the exact problem eps = 0 is implemented, got eps = {eps!r} "
            "(for an entropic variant use POT's ot.da.sinkhorn_l1l2_gl)"
        )
    return lam


def class_regularizer(P, source_classes):
    """The sum-of-norms class regulariser ``R(P) = sum_j sum_c ||P[I_c, j]||_2``.

    Parameters
    ----------
    P : numpy.ndarray, shape (n, m)
        A transport plan (sources along rows).
    source_classes : array-like, shape (n,)
        Class label of each source point.

    Returns
    -------
    float
    """
    P = np.asarray(P, dtype=np.float64)
    labels = np.asarray(source_classes)
    if P.ndim != 2 or labels.shape != (P.shape[0],):
        raise ValueError("class_regularizer: P must be (n, m) and source_classes of length n")
    _, inverse = np.unique(labels, return_inverse=True)
    sq = np.zeros((inverse.max() + 1, P.shape[1]))
    np.add.at(sq, inverse, P * P)
    return float(np.sqrt(sq).sum())


def _round_to_polytope(X, a_s, b):
    """Altschuler-Weed-Rigollet rounding: the nearest-in-l1 feasible plan built
    from a non-negative ``X`` (target-major, shape (m, n)); exact marginals."""
    src = X.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.where(src > a_s, a_s / src, 1.0)
    Xr = X * fx[None, :]
    tgt = Xr.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fy = np.where(tgt > b, b / tgt, 1.0)
    Xr *= fy[:, None]
    err_a = a_s - Xr.sum(axis=0)
    err_b = b - Xr.sum(axis=1)
    tot = err_a.sum()
    if tot > 0:
        # broadcasting, not np.outer: BLAS threads oversubscribe a shared machine
        Xr += np.maximum(err_b, 0.0)[:, None] * (np.maximum(err_a, 0.0) / tot)[None, :]
    return Xr


def _choose_step(step, mass, n, m, cscale, lam):
    """The user's step, checked, or the default ``10 mass sqrt(max(n, m)) / (n m mean|C|)``."""
    if step is not None:
        t = float(step)
        if not np.isfinite(t) or t <= 0:
            raise ValueError(f"{_WHERE}: step must be finite and > 0, got {step!r}")
        return t
    if cscale == 0.0:
        cscale = max(lam, 1.0)
    # the optimal plan is sparse (about n + m entries of size mass / n), so the
    # ratio of plan to reduced-cost norms, the natural DR step, scales like
    # mass / (n m) * sqrt(max(n, m)) / |C|; the factor 10 was tuned on
    # Gaussian-cluster problems with n in [60, 300], for both methods
    return 10.0 * mass / (n * m) * np.sqrt(max(n, m)) / cscale


def class_ot(
    a,
    b,
    C,
    source_classes,
    lam,
    eps=0.0,
    *,
    method=None,
    tol=1e-6,
    max_iter=None,
    x0=None,
    step=None,
    check_every=None,
    callback=None,
    progress=False,
    warn=True,
):
    """Class-regularised optimal transport with a sum-of-norms (group) penalty.

    Solves the convex program

    .. math::

        \\min_{P \\in U(a, b)} \\langle C, P\\rangle
            + \\lambda \\sum_{j=1}^m \\sum_{c} \\|P_{I_c, j}\\|_2

    where ``I_c`` are the source points of class ``c``: every target column is
    pushed to receive mass from few source classes. This is the group
    ("target-wise class sparsity") form of the sum-of-norms class regulariser of
    Rahbar et al. (ICML 2023); the paper's fusion form, which sums norms of
    differences between plan rows of same-class sources, is not implemented.

    Methods. ``"ssnal"`` (the default for NumPy inputs): a semismooth Newton
    augmented Lagrangian method on the dual. The dual is ``max <f, a> + <g, b>`` subject to
    ``||(f_i + g_j - C_ij)^+_{i in I_c}||_2 <= lam`` for every target ``j`` and
    class ``c``; its augmented Lagrangian, with the plan as multiplier, is
    minimised over the slack in closed form (the prox of
    ``G = lam R + i_{P >= 0}``: clip, then group shrinkage), which leaves a
    smooth convex function of the ``n + m`` potentials. Each iteration is one
    Newton step on it (generalised Hessian: per active group, identity plus
    rank one; solved by conjugate gradients on the active entries only) with
    an Armijo line search; the plan multiplier is updated once the marginal
    violation is small against the plan's change. It converges in a few tens
    of Newton steps where first-order splitting needs thousands on this
    nearly linear program. ``"douglas_rachford"``: Douglas-Rachford splitting
    between ``G`` and ``<C, P> + i_{P 1 = a, P^T 1 = b}`` (a fused numba
    kernel per iteration); simple, robust, slow. It is also the method for
    torch tensors (CPU or CUDA, float32 or float64), where every iteration is a
    fixed sequence of whole-tensor ops on the input's device, with no host
    round trip; SSNAL's sparse Newton-CG is a CPU algorithm and refuses
    tensors.

    Both stop on an exact, certified primal-dual gap: the current plan is
    rounded onto ``U(a, b)`` (Altschuler et al.) for the upper bound, and the
    current potentials are made dual-feasible (per target, a closed-form
    shift) for the lower bound; the returned pair is the best one certified.

    Parameters
    ----------
    a : array-like or torch.Tensor, shape (n,), or None
        Source marginal (non-negative); None means uniform.
    b : array-like or torch.Tensor, shape (m,), or None
        Target marginal, same total mass as ``a``; None means uniform.
    C : numpy.ndarray or torch.Tensor, shape (n, m)
        Cost matrix (float32 or float64, finite). ``a``, ``b``, ``C`` (and
        ``x0``) are all NumPy arrays or all torch tensors on ``C``'s device;
        mixing raises a TypeError.
    source_classes : array-like or torch.Tensor, shape (n,)
        Class label of every source point (any NumPy dtype; with torch
        inputs also an integer tensor, moved to ``C``'s device once).
    lam : float
        Regularisation weight, >= 0 (0 gives exact unregularised OT).
    eps : float
        Entropic regularisation; only 0 (the exact problem) is implemented.
    method : {None, "ssnal", "douglas_rachford"}
        Algorithm (see above). None (default) means ``"ssnal"`` for NumPy
        inputs and ``"douglas_rachford"`` for torch tensors; ``"ssnal"`` with
        torch tensors raises a ValueError.
    tol : float
        Stop when the relative primal-dual gap
        ``(primal - dual) / max(|primal|, |dual|)`` is ``<= tol``.
    max_iter : int, optional
        Maximum number of iterations (Newton steps for ``"ssnal"``, default
        1000; splitting steps for ``"douglas_rachford"``, default 20000).
    x0 : numpy.ndarray or torch.Tensor, shape (n, m), optional
        Initial plan (warm start), of the same array type as ``C``.
    step : float, optional
        Initial augmented Lagrangian penalty (``"ssnal"``) or the
        Douglas-Rachford step; by default
        ``10 * sum(a) / (n m) * sqrt(max(n, m)) / mean|C|``. The solution does
        not depend on it, the speed does.
    check_every : int, optional
        Evaluate the stopping test every this many iterations (default 1 for
        ``"ssnal"``, which certifies the gap only when its residuals say it may
        be near ``tol`` and every 10 steps; 50 for ``"douglas_rachford"``).
    callback : callable, optional
        ``callback(state) -> bool``; True stops.
    progress : bool
        Show a tqdm progress bar.
    warn : bool
        Warn (ConvergenceWarning) when ``max_iter`` is reached.

    Returns
    -------
    Result
        ``x``: the plan, shape (n, m), exactly in ``U(a, b)`` up to rounding
        (the rounded iterate the gap certifies); ``dual``: potentials ``(f, g)``
        (dual-feasible, their dual objective is a lower bound). With torch
        inputs, ``x``, ``f`` and ``g`` are tensors on ``C``'s device and dtype
        (the certificate is computed in float64, so for float32 inputs the
        reported bounds are those of the float64 plan before the final cast);
        the info values are Python floats in every case.
        ``info``: ``objective``, ``dual_objective``, ``gap``, ``regularizer``,
        ``transport_cost``; ``history``: ``objective``, ``dual_objective``,
        ``rel_gap`` (of the best certified pair so far), ``residual`` (relative
        marginal violation of the current iterate) and, for ``"ssnal"``,
        ``dual_residual`` (relative change of the plan multiplier).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers.transport import class_ot
    >>> rng = np.random.default_rng(0)
    >>> xs, xt = rng.normal(size=(30, 2)), rng.normal(size=(20, 2))
    >>> C = ((xs[:, None] - xt[None]) ** 2).sum(-1)
    >>> y = rng.integers(0, 3, 30)
    >>> res = class_ot(None, None, C, y, lam=0.1)
    >>> res.converged
    True

    The same problem on torch tensors (here on the CPU; a CUDA tensor keeps
    the whole solve on the GPU) runs Douglas-Rachford:

    >>> import torch
    >>> res_t = class_ot(None, None, torch.as_tensor(C), torch.as_tensor(y), lam=0.1, tol=1e-5)
    >>> res_t.converged, res_t.x.dtype, res_t.info["method"]
    (True, torch.float64, 'douglas_rachford')
    >>> abs(res_t.info["objective"] - res.info["objective"]) <= 1e-5 * res.info["objective"]
    True
    """
    tol = check_tolerance(tol)
    if method not in (None, "ssnal", "douglas_rachford"):
        raise ValueError(f"{_WHERE}: method must be 'ssnal' or 'douglas_rachford', got {method!r}")
    if _is_torch_call(a, b, C, x0):
        if method == "ssnal":
            raise ValueError(
                f"{_WHERE}: method='ssnal' (a sparse Newton-CG method) runs on the CPU only; "
                "pass NumPy arrays for SSNAL, or use method='douglas_rachford' (the default "
                "for torch tensors)"
            )
        return _class_ot_torch(a, b, C, source_classes, lam, eps, tol=tol, max_iter=max_iter, x0=x0,
                               step=step, check_every=check_every, callback=callback,
                               progress=progress, warn=warn)
    if method is None:
        method = "ssnal"

    from tikhon.operators._kernels import class_ot_numba as K

    a, b, C, labels, lam = _validate(a, b, C, source_classes, lam, eps)
    n, m = C.shape
    _, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    a_s = np.ascontiguousarray(a[order])
    Ct = np.ascontiguousarray(C[order].T)
    mass = a.sum()

    ssnal = method == "ssnal"
    if max_iter is None:
        max_iter = 1000 if ssnal else 20000
    if check_every is None:
        check_every = 1 if ssnal else 50

    t = _choose_step(step, mass, n, m, float(np.mean(np.abs(Ct))), lam)

    if x0 is None:
        Z = b[:, None] * a_s[None, :]
    else:
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != (n, m):
            raise ValueError(f"{_WHERE}: x0 must have shape {(n, m)}, got {x0.shape}")
        if not np.all(np.isfinite(x0)):
            raise ValueError(f"{_WHERE}: x0 contains NaN or inf")
        Z = np.ascontiguousarray(x0[order].T)
    g_tmp = np.empty(m)

    def certify(s, X, f, g):
        """Rounded plan (upper bound) and feasible potentials (lower bound)."""
        P = _round_to_polytope(X, a_s, b)
        cost, reg = K.plan_objective(P, Ct, starts)
        primal = cost + lam * reg
        K.feasible_g(Ct, starts, f, g, lam, g_tmp)
        dual = float(f @ a_s + g_tmp @ b)
        denom = max(abs(primal), abs(dual))
        gap = primal - dual
        rel = gap / denom if denom > 0 else abs(gap)
        best = s["best"]
        if best is None or rel < best["rel"]:
            s["best"] = {"P": P, "f": f.copy(), "g": g_tmp.copy(), "rel": rel, "primal": primal,
                         "dual": dual, "cost": cost, "reg": reg}
        return primal, dual, rel

    if ssnal:
        state, step_fn, monitor = _ssnal_setup(K, Z, Ct, starts, a_s, b, lam, t, tol, certify)
    else:
        state, step_fn, monitor = _dr_setup(K, Z, Ct, starts, a_s, b, lam, t, certify)

    state, outcome = iterate(
        state,
        step_fn,
        monitor,
        criterion="rel_gap",
        tol=tol,
        max_iter=max_iter,
        callback=callback,
        progress=progress,
        check_every=check_every,
        name=_WHERE,
        warn=warn,
    )
    best = state["best"]
    if best is None:
        certify(state, *state["point"]())
        best = state["best"]
    inv_order = np.empty_like(order)
    inv_order[order] = np.arange(n)
    plan = best["P"].T[inv_order]
    f = best["f"][inv_order]
    return Result(
        x=np.ascontiguousarray(plan),
        converged=outcome.converged,
        n_iter=outcome.n_iter,
        message=outcome.message,
        history=outcome.history,
        elapsed=outcome.elapsed,
        steps={"sigma" if ssnal else "step": state["t"]},
        dual=(f, best["g"]),
        info={
            "objective": best["primal"],
            "dual_objective": best["dual"],
            "gap": best["primal"] - best["dual"],
            "rel_gap": best["rel"],
            "transport_cost": best["cost"],
            "regularizer": best["reg"],
            "method": method,
        },
    )


def _dr_setup(K, Z, Ct, starts, a_s, b, lam, t, certify):
    """Douglas-Rachford state, step and monitor (see :func:`class_ot`)."""
    n, m = a_s.shape[0], b.shape[0]
    state = {
        "Z": Z,
        "X": np.empty_like(Z),
        "Y": np.empty_like(Z),
        "X_prev": np.zeros_like(Z),
        "u": np.zeros(n),
        "v": np.zeros(m),
        "t": t,
        "res2": np.inf,
        "xn2": 1.0,
        "best": None,
    }
    # before any step, certify the starting point itself
    state["point"] = lambda: (state["Z"], state["u"] / t, state["v"] / t)

    def step_fn(s):
        s["X_prev"], s["X"] = s["X"], s["X_prev"]
        res2, xn2 = K.dr_step(s["Z"], Ct, starts, s["t"], s["t"] * lam, a_s, b, s["X"], s["Y"], s["u"], s["v"])
        s["res2"], s["xn2"] = res2, xn2
        s["point"] = lambda: (s["X"], s["u"] / s["t"], s["v"] / s["t"])
        return s

    def monitor(s):
        primal, dual, rel = certify(s, *s["point"]())
        rp = np.sqrt(s["res2"]) / max(np.sqrt(s["xn2"]), 1e-300)
        return {"objective": primal, "dual_objective": dual, "rel_gap": rel, "residual": rp}

    return state, step_fn, monitor


def _ssnal_setup(K, Q, Ct, starts, a_s, b, lam, sigma, tol, certify):
    """Semismooth Newton augmented Lagrangian on the dual (see :func:`class_ot`).

    The dual is ``max <f, a> + <g, b>`` s.t. ``f_i + g_j - C_ij`` lies, group by
    group, in ``K = {w : ||w^+||_2 <= lam}``. Its augmented Lagrangian with the
    plan ``Q`` as multiplier, minimised over the slack in closed form, is the
    convex C^1 function ``phi(f, g)`` of the kernel module, whose gradient is
    the marginal violation of ``P = prox_{sigma G}(Q + sigma (f + g - C))``.
    Each iteration is one Newton-CG step on ``phi`` with an Armijo line search;
    once the marginal violation is small against the change of the plan,
    ``Q <- P`` (the multiplier update) and ``sigma`` grows.
    """
    n, m = a_s.shape[0], b.shape[0]
    ncls = starts.shape[0] - 1
    ngrp = m * ncls
    buf = {
        "ent_i": np.empty(n * m, dtype=np.int64),
        "ent_p": np.empty(n * m),
        "grp_j": np.empty(ngrp, dtype=np.int64),
        "grp_ptr": np.empty(ngrp + 1, dtype=np.int64),
        "grp_al": np.empty(ngrp),
        "grp_co": np.empty(ngrp),
    }
    alt = {key: np.empty_like(v) for key, v in buf.items()}
    norm_ab = float(np.sqrt(a_s @ a_s + b @ b))
    rows, cols = np.empty(n), np.empty(m)
    crange = float(Ct.max() - Ct.min()) or 1.0

    def evaluate(s, f, g, P, jac):
        nrm2, diff2, ng = K.ssn_prox(
            s["Q"], Ct, starts, f, g, s["t"], s["t"] * lam, P, rows, cols,
            jac["ent_i"], jac["ent_p"], jac["grp_j"], jac["grp_ptr"], jac["grp_al"], jac["grp_co"],
        )
        gf, gg = rows - a_s, cols - b
        phi = -float(f @ a_s) - float(g @ b) + nrm2 / (2.0 * s["t"])
        pinf = float(np.sqrt(gf @ gf + gg @ gg)) / norm_ab
        dinf = float(np.sqrt(diff2 / max(nrm2, 1e-300)))
        return {"phi": phi, "ng": ng, "gf": gf, "gg": gg, "pinf": pinf, "dinf": dinf, "jac": jac}

    # start from dual-feasible reduced-cost potentials (column then row minima):
    # f + g - C <= 0 with a zero in every row and column, so the first prox
    # already has entries in every row and column and Newton starts in its basin
    g0 = Ct.min(axis=1)
    f0 = (Ct - g0[:, None]).min(axis=0)
    state = {"Q": Q, "t": sigma, "f": f0, "g": g0, "P": np.empty_like(Q),
             "P_try": np.empty_like(Q), "best": None, "k": 0, "cg": 0, "outer": 0, "inner": 0}
    state["cur"] = evaluate(state, state["f"], state["g"], state["P"], buf)
    state["point"] = lambda: (state["P"], state["f"], state["g"])
    df, dg = np.empty(n), np.empty(m)

    def step_fn(s):
        cur = s["cur"]
        # the multiplier update: the inner problem is solved well enough when
        # the marginal violation is a fraction of the plan's change (the dual
        # infeasibility), as in SDPNAL+/SSNAL practice
        # (sigma doubles: faster growth stalled the inner Newton on LP-like
        # instances); an inner solve that stalls anyway is cut short and sigma
        # halved, which keeps the method convergent, if slower
        inner_ok = s["k"] > 0 and cur["pinf"] <= 0.2 * cur["dinf"]
        stalled = s["inner"] >= 30
        if inner_ok or stalled:
            s["Q"], s["P"] = s["P"], s["Q"]
            s["t"] *= 0.5 if stalled else 2.0
            s["outer"] += 1
            s["inner"] = 0
            cur = evaluate(s, s["f"], s["g"], s["P"], cur["jac"])
        s["inner"] += 1
        s["k"] += 1
        jac = cur["jac"]
        pinf = cur["pinf"]
        # Newton system (sigma A J A^T + mu I) d = -grad; mu keeps it definite where
        # a potential touches no active entry, and vanishes as the residual does
        mu = s["t"] * 1e-2 * min(1e-2, pinf)
        s["cg"] += K.ssn_cg(cur["ng"], jac["ent_i"], jac["ent_p"], jac["grp_j"], jac["grp_ptr"], jac["grp_al"],
                            jac["grp_co"], s["t"], mu, -cur["gf"], -cur["gg"], min(1e-2, pinf), 500, df, dg)
        slope = float(cur["gf"] @ df + cur["gg"] @ dg)
        other = alt if jac is buf else buf
        # a potential never needs to move by more than the cost range in one
        # step; early, near-singular Newton systems propose far more
        dmax = max(float(np.abs(df).max()), float(np.abs(dg).max()), 1e-300)
        alpha = min(1.0, crange / dmax)
        for _ in range(40):
            f_new = s["f"] + alpha * df
            g_new = s["g"] + alpha * dg
            new = evaluate(s, f_new, g_new, s["P_try"], other)
            if new["phi"] <= cur["phi"] + 1e-4 * alpha * slope:
                break
            alpha *= 0.5
        s["alpha"] = alpha
        s["f"], s["g"] = f_new, g_new
        s["P"], s["P_try"] = s["P_try"], s["P"]
        s["cur"] = new
        return s

    def monitor(s):
        cur = s["cur"]
        # the certificate costs a few Newton steps' worth of work: compute it when
        # the residuals say the gap may be near tol, and every 10 iterations
        if s["best"] is None or max(cur["pinf"], cur["dinf"]) <= 100 * max(tol, 1e-12) or s["k"] % 10 == 0:
            certify(s, s["P"], s["f"], s["g"])
        best = s["best"]
        return {"objective": best["primal"], "dual_objective": best["dual"], "rel_gap": best["rel"],
                "residual": cur["pinf"], "dual_residual": cur["dinf"]}

    return state, step_fn, monitor


# ----------------------------------------------------------------------------
# torch path: Douglas-Rachford with whole-tensor ops on the input's device


def _is_torch_call(a, b, C, x0):
    flags = {name: is_torch(x) for name, x in (("a", a), ("b", b), ("C", C), ("x0", x0)) if x is not None}
    if any(flags.values()) and not all(flags.values()):
        kinds = ", ".join(f"{k}: {'torch' if v else 'NumPy'}" for k, v in flags.items())
        raise TypeError(
            f"{_WHERE}: mixed NumPy and torch inputs ({kinds}); pass a, b, C (and x0) "
            "all as NumPy arrays or all as torch tensors"
        )
    return any(flags.values())


def _torch_marginal(torch, w, name, k, C):
    """A marginal as a float64 tensor on C's device (validated), plus its input dtype."""
    if w is None:
        return torch.full((k,), 1.0 / k, dtype=torch.float64, device=C.device), C.dtype
    if not w.dtype.is_floating_point:
        raise TypeError(f"{_WHERE}: {name} must be a floating tensor, got {w.dtype}")
    if w.device != C.device:
        raise ValueError(f"{_WHERE}: {name} is on {w.device} but C is on {C.device}; put them on one device")
    if tuple(w.shape) != (k,):
        raise ValueError(f"{_WHERE}: {name} must have shape ({k},), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{_WHERE}: {name} contains NaN or inf")
    if bool((w < 0).any()):
        raise ValueError(f"{_WHERE}: {name} must be non-negative")
    return w.to(torch.float64), w.dtype


def _torch_labels(torch, source_classes, n, device):
    """Class index (0..ncls-1, int64 tensor on ``device``) of every source point."""
    if is_torch(source_classes):
        labels = source_classes
        if labels.dtype.is_complex:
            raise TypeError(f"{_WHERE}: source_classes must be real or integer, got {labels.dtype}")
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(
                f"{_WHERE}: source_classes must be a 1-D array of length n = {n}, "
                f"got shape {tuple(labels.shape)}"
            )
        if labels.dtype.is_floating_point and not bool(torch.isfinite(labels).all()):
            raise ValueError(f"{_WHERE}: source_classes contains NaN or inf")
        _, inverse = torch.unique(labels.to(device), sorted=True, return_inverse=True)
        return inverse.to(torch.int64)
    if is_torch(source_classes):
        # NumPy data with tensor labels: the labels join the data on the host
        source_classes = source_classes.detach().cpu().numpy()
    labels = np.asarray(source_classes)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{_WHERE}: source_classes must be a 1-D array of length n = {n}, got shape {labels.shape}"
        )
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{_WHERE}: source_classes contains NaN or inf")
    _, inverse = np.unique(labels, return_inverse=True)
    # host labels go to the device once, before any iteration
    return torch.as_tensor(inverse.reshape(-1).astype(np.int64), device=device)


def _validate_torch(a, b, C, source_classes, lam, eps):
    torch = torch_module()
    if C.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{_WHERE}: C must be a float32 or float64 tensor, got {C.dtype}")
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"{_WHERE}: C must be a non-empty 2-D tensor, got shape {tuple(C.shape)}")
    if not bool(torch.isfinite(C).all()):
        raise ValueError(f"{_WHERE}: C contains NaN or inf")
    n, m = C.shape
    a, da = _torch_marginal(torch, a, "a", n, C)
    b, db = _torch_marginal(torch, b, "b", m, C)
    sa, sb = float(a.sum()), float(b.sum())
    if sa <= 0 or sb <= 0:
        raise ValueError(f"{_WHERE}: the marginals a and b must have positive mass")
    # float32 marginals normalised by the user still differ in mass by ~1e-7
    rtol = 1e-8 if da == db == torch.float64 else 1e-6
    if abs(sa - sb) > rtol * max(sa, sb):
        raise ValueError(
            f"{_WHERE}: the marginals must have equal mass, got sum(a) = {sa:.12g} "
            f"and sum(b) = {sb:.12g}"
        )
    inverse = _torch_labels(torch, source_classes, n, C.device)
    lam = _check_lam_eps(lam, eps)
    return a, b * (sa / sb), inverse, lam, sa


def _class_ot_torch(a, b, C, source_classes, lam, eps, *, tol, max_iter, x0, step, check_every,
                    callback, progress, warn):
    """Douglas-Rachford on torch tensors (see :func:`class_ot`); same iteration,
    step rule and certificate as the NumPy ``"douglas_rachford"`` path."""
    torch = torch_module()
    # a cost that requires grad would otherwise record every iteration's graph
    with torch.no_grad():
        return _class_ot_torch_impl(torch, a, b, C, source_classes, lam, eps, tol=tol, max_iter=max_iter,
                                    x0=x0, step=step, check_every=check_every, callback=callback,
                                    progress=progress, warn=warn)


def _class_ot_torch_impl(torch, a, b, C, source_classes, lam, eps, *, tol, max_iter, x0, step, check_every,
                         callback, progress, warn):
    from tikhon.operators._kernels import class_ot_torch as KT

    a64, b64, inverse, lam, mass = _validate_torch(a, b, C, source_classes, lam, eps)
    n, m = C.shape
    dtype, device = C.dtype, C.device
    # sources sorted by class: every group P[I_c, j] is a contiguous row block
    order = torch.sort(inverse, stable=True).indices
    cls = inverse[order].contiguous()
    ncls = int(cls[-1]) + 1
    Cs = C[order].contiguous()
    C64 = Cs.to(torch.float64)
    # the certificate's per-target level search reads the cost target-major
    Ct64 = C64.T.contiguous()
    a64s = a64[order].contiguous()
    a_s, b_w = a64s.to(dtype), b64.to(dtype)

    if max_iter is None:
        max_iter = 20000
    if check_every is None:
        check_every = 50
    t = float(_choose_step(step, mass, n, m, float(C64.abs().mean()), lam))
    if x0 is None:
        Z = a_s[:, None] * b_w[None, :]
    else:
        if not x0.dtype.is_floating_point:
            raise TypeError(f"{_WHERE}: x0 must be a floating tensor, got {x0.dtype}")
        if tuple(x0.shape) != (n, m):
            raise ValueError(f"{_WHERE}: x0 must have shape {(n, m)}, got {tuple(x0.shape)}")
        if x0.device != device:
            raise ValueError(f"{_WHERE}: x0 is on {x0.device} but C is on {device}")
        if not bool(torch.isfinite(x0).all()):
            raise ValueError(f"{_WHERE}: x0 contains NaN or inf")
        Z = x0[order].to(dtype).contiguous()
    tC = Cs * t
    tlam = t * lam

    def certify(s, X, f, g, *extra):
        """Rounded plan (upper bound) and feasible potentials (lower bound), in
        float64; one host read of all the scalars, ``extra`` ones included."""
        P = KT.round_to_polytope(X.to(torch.float64), a64s, b64)
        cost, reg = KT.plan_objective(P, C64, cls, ncls)
        f64 = f.to(torch.float64)
        g_feas = KT.feasible_g(Ct64, cls, f64, g.to(torch.float64), lam)
        dual = (f64 * a64s).sum() + (g_feas * b64).sum()
        cost, reg, dual, *extra = torch.stack([cost, reg, dual, *extra]).tolist()
        primal = cost + lam * reg
        denom = max(abs(primal), abs(dual))
        gap = primal - dual
        rel = gap / denom if denom > 0 else abs(gap)
        best = s["best"]
        if best is None or rel < best["rel"]:
            s["best"] = {"P": P, "f": f64, "g": g_feas, "rel": rel, "primal": primal,
                         "dual": dual, "cost": cost, "reg": reg}
        return primal, dual, rel, extra

    zero = torch.zeros((), dtype=dtype, device=device)
    state = {"Z": Z, "X": Z, "u": torch.zeros(n, dtype=dtype, device=device),
             "v": torch.zeros(m, dtype=dtype, device=device), "t": t, "res2": zero, "xn2": zero,
             "best": None, "k": 0}
    # before any step, certify the starting point itself
    state["point"] = lambda: (state["Z"], state["u"] / t, state["v"] / t)

    def step_fn(s):
        s["k"] += 1
        # the residual norms only on the iterations iterate() will monitor
        norms = s["k"] % check_every == 0 or s["k"] == max_iter
        X, u, v, res2, xn2 = KT.dr_step(s["Z"], tC, cls, ncls, tlam, a_s, b_w, norms)
        s["X"], s["u"], s["v"] = X, u, v
        if norms:
            s["res2"], s["xn2"] = res2, xn2
        s["point"] = lambda: (s["X"], s["u"] / t, s["v"] / t)
        return s

    def monitor(s):
        primal, dual, rel, (res2, xn2) = certify(s, *s["point"](), s["res2"].to(torch.float64),
                                                 s["xn2"].to(torch.float64))
        rp = math.sqrt(res2) / max(math.sqrt(xn2), 1e-300)
        return {"objective": primal, "dual_objective": dual, "rel_gap": rel, "residual": rp}

    state, outcome = iterate(
        state,
        step_fn,
        monitor,
        criterion="rel_gap",
        tol=tol,
        max_iter=max_iter,
        callback=callback,
        progress=progress,
        check_every=check_every,
        name=_WHERE,
        warn=False,
    )
    if warn and not outcome.converged and outcome.n_iter == max_iter and "max_iter" in outcome.message:
        # warned here, not in iterate, so that the warning points at the caller of class_ot
        warnings.warn(outcome.message, ConvergenceWarning, stacklevel=4)
    best = state["best"]
    if best is None:
        certify(state, *state["point"]())
        best = state["best"]
    # back to the caller's source order, device and dtype
    plan = torch.empty_like(best["P"]).index_copy_(0, order, best["P"]).to(dtype)
    f = torch.empty_like(best["f"]).index_copy_(0, order, best["f"]).to(dtype)
    return Result(
        x=plan,
        converged=outcome.converged,
        n_iter=outcome.n_iter,
        message=outcome.message,
        history=outcome.history,
        elapsed=outcome.elapsed,
        steps={"step": t},
        dual=(f, best["g"].to(dtype)),
        info={
            "objective": best["primal"],
            "dual_objective": best["dual"],
            "gap": best["primal"] - best["dual"],
            "rel_gap": best["rel"],
            "transport_cost": best["cost"],
            "regularizer": best["reg"],
            "method": "douglas_rachford",
        },
    )
