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

import numpy as np

from tikhon.operators._backend import is_torch
from tikhon.solvers._loop import check_tolerance, iterate
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
    labels = np.asarray(source_classes)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{_WHERE}: source_classes must be a 1-D array of length n = {n}, got shape {labels.shape}"
        )
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{_WHERE}: source_classes contains NaN or inf")
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
    return a, b * (sa / sb), C.astype(np.float64, copy=False), labels, lam


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


def class_ot(
    a,
    b,
    C,
    source_classes,
    lam,
    eps=0.0,
    *,
    method="ssnal",
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

    Methods. ``"ssnal"`` (default): a semismooth Newton augmented Lagrangian
    method on the dual. The dual is ``max <f, a> + <g, b>`` subject to
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
    kernel per iteration); simple, robust, slow.

    Both stop on an exact, certified primal-dual gap: the current plan is
    rounded onto ``U(a, b)`` (Altschuler et al.) for the upper bound, and the
    current potentials are made dual-feasible (per target, a closed-form
    shift) for the lower bound; the returned pair is the best one certified.

    Parameters
    ----------
    a : array-like, shape (n,), or None
        Source marginal (non-negative); None means uniform.
    b : array-like, shape (m,), or None
        Target marginal, same total mass as ``a``; None means uniform.
    C : numpy.ndarray, shape (n, m)
        Cost matrix (float32 or float64, finite).
    source_classes : array-like, shape (n,)
        Class label of every source point (any hashable NumPy dtype).
    lam : float
        Regularisation weight, >= 0 (0 gives exact unregularised OT).
    eps : float
        Entropic regularisation; only 0 (the exact problem) is implemented.
    method : {"ssnal", "douglas_rachford"}
        Algorithm (see above).
    tol : float
        Stop when the relative primal-dual gap
        ``(primal - dual) / max(|primal|, |dual|)`` is ``<= tol``.
    max_iter : int, optional
        Maximum number of iterations (Newton steps for ``"ssnal"``, default
        1000; splitting steps for ``"douglas_rachford"``, default 20000).
    x0 : numpy.ndarray, shape (n, m), optional
        Initial plan (warm start).
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
        (dual-feasible, their dual objective is a lower bound);
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
    >>> res = class_ot(None, None, C, rng.integers(0, 3, 30), lam=0.1)
    >>> res.converged
    True
    """
    from tikhon.operators._kernels import class_ot_numba as K

    tol = check_tolerance(tol)
    a, b, C, labels, lam = _validate(a, b, C, source_classes, lam, eps)
    n, m = C.shape
    _, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    a_s = np.ascontiguousarray(a[order])
    Ct = np.ascontiguousarray(C[order].T)
    mass = a.sum()

    if method not in ("ssnal", "douglas_rachford"):
        raise ValueError(f"{_WHERE}: method must be 'ssnal' or 'douglas_rachford', got {method!r}")
    ssnal = method == "ssnal"
    if max_iter is None:
        max_iter = 1000 if ssnal else 20000
    if check_every is None:
        check_every = 1 if ssnal else 50

    cscale = float(np.mean(np.abs(Ct)))
    if cscale == 0.0:
        cscale = max(lam, 1.0)
    if step is None:
        # the optimal plan is sparse (about n + m entries of size mass / n), so the
        # ratio of plan to reduced-cost norms, the natural DR step, scales like
        # mass / (n m) * sqrt(max(n, m)) / |C|; the factor 10 was tuned on
        # Gaussian-cluster problems with n in [60, 300], for both methods
        t = 10.0 * mass / (n * m) * np.sqrt(max(n, m)) / cscale
    else:
        t = float(step)
        if not np.isfinite(t) or t <= 0:
            raise ValueError(f"{_WHERE}: step must be finite and > 0, got {step!r}")

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
