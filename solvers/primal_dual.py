"""Chambolle-Pock primal-dual hybrid gradient (PDHG) for ``min_x f(Kx) + g(x)``.

The iteration (dual step first, as in Algorithm 1/2 of [CP11]) is::

    y+    = prox_{sigma f*}(y + sigma K xbar)
    x+    = prox_{tau g}(x - tau K^T y+)
    xbar+ = x+ + theta (x+ - x)

Only ``K xbar`` is ever needed, never ``xbar`` itself, and ``K xbar+ = K x+ +
theta (K x+ - K x)`` is a linear combination of cached products: one iteration
costs exactly one application of ``K`` and one of ``K^T``, and the residuals and
the objective reuse the cached ``K x`` and ``K^T y``.

References
----------
.. [CP11] A. Chambolle and T. Pock, "A first-order primal-dual algorithm for
   convex problems with applications to imaging", J. Math. Imaging Vis. 40, 2011.
.. [PC11] T. Pock and A. Chambolle, "Diagonal preconditioning for first order
   primal-dual algorithms in convex optimization", ICCV 2011.
.. [GEB15] T. Goldstein, E. Esser and R. Baraniuk, "Adaptive primal-dual hybrid
   gradient methods for saddle-point problems", arXiv:1305.0546, 2015.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from tikhon.operators._backend import full, is_torch, torch_module
from tikhon.operators.base import LinearOperator
from tikhon.solvers._loop import check_tolerance, iterate
from tikhon.solvers.first_order import (
    _check_array,
    _check_functional,
    _check_positive,
    _make_result,
    _norm,
    _tiny,
)

__all__ = ["chambolle_pock", "PDHGState", "chambolle_pock_init", "chambolle_pock_step"]

_GAMMA_FRACTION = 0.3


@dataclass
class PDHGState:
    """State of :func:`chambolle_pock_step`.

    Attributes
    ----------
    x, y : array or tensor
        Current primal and dual iterates.
    Kx, Kxbar, KTy : array or tensor
        Cached ``K x``, ``K xbar`` and ``K^T y``.
    x_prev, y_prev, Kxbar_prev :
        The previous iterates and the ``K xbar`` used in the last dual step
        (kept by reference, for the residuals).
    tau, sigma : float or array
        Steps for the next iteration; ``tau_used`` and ``sigma_used`` are those
        of the last one.
    theta : float
        Over-relaxation parameter (updated when accelerating).
    gamma : float
        Acceleration parameter (0: constant steps).
    """

    K: LinearOperator
    f: object
    fconj: object
    g: object
    x: object
    y: object
    Kx: object
    Kxbar: object
    KTy: object
    tau: object
    sigma: object
    theta: float
    gamma: float
    x_prev: object = None
    y_prev: object = None
    Kxbar_prev: object = None
    tau_used: object = None
    sigma_used: object = None
    inplace: bool = False
    buf_x: object = None
    buf_y: object = None
    k: int = 0


def _as_step(value, like, shape, name, where):
    """A scalar step as a float, an array step as an array/tensor of ``like``'s type."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return _check_positive(value, name, where)
    if is_torch(value):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return _check_positive(float(arr), name, where)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{where}: {name} must be positive and finite everywhere")
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError as exc:
        raise ValueError(f"{where}: {name} of shape {arr.shape} does not broadcast to {shape}") from exc
    if is_torch(like):
        return torch_module().as_tensor(np.ascontiguousarray(arr), dtype=like.dtype, device=like.device)
    return np.ascontiguousarray(arr, dtype=like.dtype)


def _preconditioners(K, like, where):
    """Steps of [PC11] with alpha = 1: ``tau = 1 / |K|^T 1``, ``sigma = 1 / |K| 1``."""
    try:
        Kabs = K.abs()
    except NotImplementedError as exc:
        raise NotImplementedError(
            f"{where}: precondition=True needs K.abs() (entrywise |K|), which "
            f"{K._label()} does not provide; pass tau= and sigma= instead"
        ) from exc
    rows = np.asarray(Kabs.forward(np.ones(K.in_shape)), dtype=np.float64)
    cols = np.asarray(Kabs.adjoint(np.ones(K.out_shape)), dtype=np.float64)
    # an all-zero row or column decouples that variable from K: any step is valid
    # for it, and 1 keeps the prox well defined
    with np.errstate(divide="ignore"):
        sigma = np.where(rows > 0, 1.0 / rows, 1.0)
        tau = np.where(cols > 0, 1.0 / cols, 1.0)
    return tau, sigma


def chambolle_pock_init(K, f, g, x0=None, y0=None, tau=None, sigma=None, theta=1.0, gamma=None,
                        precondition=False, step_ratio=None):
    """Initial :class:`PDHGState` (see :func:`chambolle_pock` for the arguments)."""
    where = "chambolle_pock"
    if not isinstance(K, LinearOperator):
        raise TypeError(f"{where}: K must be a tikhon LinearOperator, got {type(K).__name__}")
    f = _check_functional(f, "f", where)
    g = _check_functional(g, "g", where)
    for name, h in (("f", f), ("g", g)):
        if h.fixed_step:
            raise ValueError(
                f"{where}: {name} ({h._label()}) has a fixed step (its prox ignores tau); "
                "chambolle_pock needs prox_{tau " + name + "} for varying tau (and the "
                "conjugate of f): use admm for plug-and-play priors"
            )
    if x0 is None:
        x0 = np.zeros(K.in_shape, dtype=K.dtype if K.dtype in (np.float32, np.float64) else np.float64)
    x0 = _check_array(x0, "x0", where)
    if tuple(x0.shape) != K.in_shape:
        raise ValueError(f"{where}: x0 has shape {tuple(x0.shape)}, expected K.in_shape = {K.in_shape}")
    if y0 is None:
        y0 = full(K.out_shape, 0.0, x0)
    y0 = _check_array(y0, "y0", where)
    if tuple(y0.shape) != K.out_shape:
        raise ValueError(f"{where}: y0 has shape {tuple(y0.shape)}, expected K.out_shape = {K.out_shape}")
    if is_torch(x0) != is_torch(y0) or x0.dtype != y0.dtype:
        raise TypeError(f"{where}: x0 and y0 must have the same array type and dtype")
    if isinstance(theta, bool) or not isinstance(theta, numbers.Real) or not (0.0 <= theta <= 1.0):
        raise ValueError(f"{where}: theta must be in [0, 1], got {theta!r}")
    if step_ratio is not None:
        step_ratio = _check_positive(step_ratio, "step_ratio", where)
    if gamma is not None:
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not (
            math.isfinite(gamma) and gamma >= 0
        ):
            raise ValueError(f"{where}: gamma must be a finite number >= 0, got {gamma!r}")
        gamma = float(gamma)
        if gamma > 0 and precondition:
            raise ValueError(f"{where}: acceleration (gamma > 0) is not available with precondition=True")
    else:
        mu = float(getattr(g, "strong_convexity", 0.0) or 0.0)
        # any gamma <= mu is covered by [CP11]; the full modulus shrinks tau so fast
        # that TV denoising was ~100x less accurate after 1000 iterations than with 0.3 mu
        gamma = _GAMMA_FRACTION * mu if (mu > 0 and not precondition) else 0.0

    ratio = 1.0 if step_ratio is None else step_ratio
    if precondition:
        if tau is not None or sigma is not None:
            raise ValueError(f"{where}: pass either precondition=True or explicit tau/sigma, not both")
        T, S = _preconditioners(K, x0, where)
        # scaling T by 1/c and S by c keeps ||S^1/2 K T^1/2|| <= 1 ([PC11], Lemma 2)
        c = math.sqrt(ratio)
        tau = _as_step(T / c, x0, K.in_shape, "tau", where)
        sigma = _as_step(S * c, y0, K.out_shape, "sigma", where)
    else:
        if tau is None or sigma is None:
            L = float(K.norm(like=x0))
            if not (L > 0 and math.isfinite(L)):
                raise ValueError(f"{where}: ||K|| = {L} (K must be non-zero); pass tau and sigma")
            if tau is None and sigma is None:
                # tau sigma ||K||^2 = 0.98 < 1 leaves room for the power-iteration error
                tau = 0.99 / (L * math.sqrt(ratio))
                sigma = 0.99 * math.sqrt(ratio) / L
            elif sigma is None:
                tau = _check_positive(tau, "tau", where)
                sigma = 0.98 / (tau * L * L)
            else:
                sigma = _check_positive(sigma, "sigma", where)
                tau = 0.98 / (sigma * L * L)
        tau = _as_step(tau, x0, K.in_shape, "tau", where)
        sigma = _as_step(sigma, y0, K.out_shape, "sigma", where)
        if gamma > 0 and not isinstance(tau, float):
            raise ValueError(f"{where}: acceleration (gamma > 0) needs scalar steps")

    x = x0.clone() if is_torch(x0) else x0.copy()
    y = y0.clone() if is_torch(y0) else y0.copy()
    Kx = K.forward(x)
    KTy = K.adjoint(y)
    Kxbar = Kx.clone() if is_torch(Kx) else Kx.copy()
    inplace = not is_torch(x)
    state = PDHGState(
        K=K, f=f, fconj=f.conj, g=g, x=x, y=y, Kx=Kx, Kxbar=Kxbar, KTy=KTy, tau=tau, sigma=sigma,
        theta=float(theta), gamma=gamma, x_prev=x, y_prev=y, Kxbar_prev=Kxbar,
        tau_used=tau, sigma_used=sigma, inplace=inplace,
    )
    if inplace:
        state.buf_x = np.empty_like(x)
        state.buf_y = np.empty_like(y)
    return state


def _detach_from(out, buf):
    """Copy ``out`` if a prox handed back (a view of) the work buffer it was given."""
    if isinstance(out, np.ndarray) and np.may_share_memory(out, buf):
        return out.copy()
    return out


def chambolle_pock_step(state):
    """One PDHG iteration; on NumPy arrays the vector updates run in place."""
    K, tau, sigma = state.K, state.tau, state.sigma
    if state.inplace:
        v = np.multiply(state.Kxbar, sigma, out=state.buf_y)
        v += state.y
        y_new = _detach_from(state.fconj._prox(v, sigma), state.buf_y)
        KTy = K.adjoint(y_new)
        u = np.multiply(KTy, -tau, out=state.buf_x)
        u += state.x
        x_new = _detach_from(state.g._prox(u, tau), state.buf_x)
        Kx_new = K.forward(x_new)
    else:
        y_new = state.fconj._prox(state.y + sigma * state.Kxbar, sigma)
        KTy = K.adjoint(y_new)
        x_new = state.g._prox(state.x - tau * KTy, tau)
        Kx_new = K.forward(x_new)

    theta = state.theta
    state.tau_used, state.sigma_used = tau, sigma
    if state.gamma > 0:
        # Algorithm 2 of [CP11]
        theta = 1.0 / math.sqrt(1.0 + 2.0 * state.gamma * tau)
        state.theta = theta
        state.tau = theta * tau
        state.sigma = sigma / theta

    # K xbar+ = K x+ + theta (K x+ - K x), written into a recycled buffer
    if state.inplace:
        # the previous K xbar is no longer needed once this step is done
        buf = state.Kxbar_prev
        if buf is state.Kxbar or buf.dtype != Kx_new.dtype:
            buf = np.empty_like(Kx_new)
        Kxbar_new = np.subtract(Kx_new, state.Kx, out=buf)
        if theta != 1.0:
            Kxbar_new *= theta
        Kxbar_new += Kx_new
    else:
        Kxbar_new = Kx_new + theta * (Kx_new - state.Kx)

    state.x_prev, state.y_prev, state.Kxbar_prev = state.x, state.y, state.Kxbar
    state.x, state.y, state.Kx, state.KTy, state.Kxbar = x_new, y_new, Kx_new, KTy, Kxbar_new
    state.k += 1
    return state


def residuals(state):
    """Relative primal and dual residuals of the last iterate (see :func:`chambolle_pock`).

    Returns
    -------
    primal, dual : float
    """
    # optimality of the dual-first iteration at (x+, y+):
    #   p = (x - x+) / tau                    in  dg(x+) + K^T y+
    #   d = (y - y+) / sigma + K xbar - K x+  in  df*(y+) - K x+
    p = (state.x_prev - state.x) / state.tau_used
    d = (state.y_prev - state.y) / state.sigma_used + (state.Kxbar_prev - state.Kx)
    np_, nd = _norm(p), _norm(d)
    tiny = _tiny(state.x)
    scale_p = max(_norm(state.KTy), _norm(p - state.KTy), tiny)
    scale_d = max(_norm(state.Kx), _norm(d + state.Kx), tiny)
    return np_ / scale_p, nd / scale_d


def objective(state):
    """Primal objective ``f(K x) + g(x)`` at the current iterate (uses the cached ``K x``)."""
    return float(state.f._call(state.Kx)) + float(state.g._call(state.x))


def gap(state):
    """Primal objective, dual objective and relative gap.

    The gap ``f(Kx) + g(x) + f*(y) + g*(-K^T y)`` is divided by
    ``max(|primal|, |dual|, tiny)``; it is ``inf`` while an indicator in ``f*``
    or ``g*`` is violated.
    """
    primal = objective(state)
    dual = -float(state.fconj._call(state.y)) - float(state.g.conj._call(-state.KTy))
    if not (math.isfinite(primal) and math.isfinite(dual)):
        return primal, dual, math.inf
    return primal, dual, (primal - dual) / max(abs(primal), abs(dual), _tiny(state.x))


def chambolle_pock(K, f, g, x0=None, y0=None, *, tau=None, sigma=None, theta=1.0, gamma=None,
                   precondition=False, step_ratio=None, criterion="residual", tol=1e-6,
                   max_iter=1000, callback=None, progress=False, check_every=10):
    """Chambolle-Pock primal-dual algorithm for ``min_x f(K x) + g(x)``.

    Parameters
    ----------
    K : LinearOperator
    f : Functional
        Convex; only ``f.conj.prox`` (Moreau identity) is used in the iteration.
    g : Functional
        Convex, with a prox. Neither ``f`` nor ``g`` may be ``fixed_step``.
    x0, y0 : array or tensor, optional
        Starting points (default zeros of ``K.in_shape`` / ``K.out_shape``, in
        ``K.dtype``). A torch ``x0`` runs the same iteration on tensors.
    tau, sigma : float or array, optional
        Primal and dual steps. Default (no preconditioning):
        ``tau = 0.99 / (||K|| sqrt(r))`` and ``sigma = 0.99 sqrt(r) / ||K||``
        with ``r = step_ratio`` (so ``tau sigma ||K||^2 = 0.98``); when only one
        is given the other is chosen so that ``tau sigma ||K||^2 = 0.98``.
        Arrays (entrywise steps) need functionals whose prox is separable.
    theta : float in [0, 1]
        Over-relaxation parameter (1 in [CP11]).
    gamma : float, optional
        Acceleration (Algorithm 2 of [CP11], O(1/k^2) for a ``gamma``-strongly
        convex ``g``): ``theta_k = 1 / sqrt(1 + 2 gamma tau_k)``,
        ``tau_{k+1} = theta_k tau_k``, ``sigma_{k+1} = sigma_k / theta_k``.
        Any ``gamma <= g.strong_convexity`` converges; the default is
        ``0.3 * g.strong_convexity`` (0, i.e. off, when ``g`` is not strongly
        convex or when preconditioning): on TV denoising the full modulus
        shrank ``tau`` too fast (about 100x less accurate after 1000
        iterations), [CP11] used 0.7. Pass 0 to switch acceleration off.
    precondition : bool
        Diagonal preconditioning of [PC11] with alpha = 1:
        ``tau_j = 1 / sum_i |K_ij|``, ``sigma_i = 1 / sum_j |K_ij|`` from
        ``K.abs()`` (rows or columns of zeros get step 1); ``step_ratio = r``
        scales them to ``tau / sqrt(r)`` and ``sigma sqrt(r)``.
    step_ratio : float, optional
        ``sigma / tau`` (default 1). Balancing the steps matters in practice:
        e.g. 100 (``tau = 0.1 / L``, ``sigma = 10 / L``) for TV-regularized CT.
    criterion : {"residual", "gap"}
        ``"residual"`` (default): ``max(primal, dual)`` relative residuals of
        [GEB15], for the dual-first iteration at the new iterate:
        ``p = (x_k - x_{k+1}) / tau`` (an element of ``dg(x) + K^T y``) and
        ``d = (y_k - y_{k+1}) / sigma + K xbar_k - K x_{k+1}`` (an element of
        ``df*(y) - K x``); ``primal = ||p|| / max(||K^T y||, ||p - K^T y||)``,
        ``dual = ||d|| / max(||K x||, ||d + K x||)`` - each residual relative
        to the two terms that cancel at a saddle point. No extra operator
        application is needed.
        ``"gap"``: relative primal-dual gap
        ``(f(Kx) + g(x) + f*(y) + g*(-K^T y)) / max(|primal|, |dual|)``; needs
        closed-form values of ``f*`` and ``g*``. While the gap is infinite (an
        indicator function violated by rounding or an infeasible iterate) the
        residual criterion stands in for it (``history["gap"]`` holds inf there;
        ``history["gap_or_residual"]`` is the value tested against ``tol``).
    tol : float
        Tolerance on the criterion.
    max_iter : int
    callback : callable, optional
        ``callback(state) -> bool``; True stops.
    progress : bool
        tqdm progress bar.
    check_every : int
        Evaluate the criterion and record history every this many iterations
        (a check costs about one iteration's worth of vector operations).

    Returns
    -------
    Result
        ``x``; ``dual = y``; ``history`` with ``objective`` (``f(Kx) + g(x)``),
        ``primal_residual``, ``dual_residual``, ``residual`` (their maximum),
        plus ``gap`` and ``gap_or_residual`` with ``criterion="gap"``; ``steps``
        with the final ``tau``, ``sigma`` (floats, or arrays when
        preconditioning) and ``theta``.

    Notes
    -----
    One iteration applies ``K`` and ``K^T`` once each; on NumPy arrays the
    vector updates are done in place in reused buffers.
    """
    if criterion not in ("residual", "gap"):
        raise ValueError(f"chambolle_pock: criterion must be 'residual' or 'gap', got {criterion!r}")
    tol = check_tolerance(tol)
    state = chambolle_pock_init(K, f, g, x0, y0, tau=tau, sigma=sigma, theta=theta, gamma=gamma,
                                precondition=precondition, step_ratio=step_ratio)
    if criterion == "gap":
        try:
            state.fconj._call(state.y)
            state.g.conj._call(-state.KTy)
        except NotImplementedError as exc:
            raise ValueError(
                "chambolle_pock: criterion='gap' needs closed-form values of f* and g* "
                f"({exc}); use criterion='residual'"
            ) from exc

    gap_state = {"infinite": 0, "last_finite": True}

    def monitor(s):
        rp, rd = residuals(s)
        out = {"objective": objective(s), "primal_residual": rp, "dual_residual": rd,
               "residual": max(rp, rd)}
        if criterion == "gap":
            _, _, rel = gap(s)
            finite = math.isfinite(rel)
            gap_state["last_finite"] = finite
            if not finite:
                gap_state["infinite"] += 1
            out["gap"] = rel
            out["gap_or_residual"] = abs(rel) if finite else out["residual"]
        return out

    key = "residual" if criterion == "residual" else "gap_or_residual"
    state, outcome = iterate(state, chambolle_pock_step, monitor, criterion=key, tol=tol,
                             max_iter=max_iter, callback=callback, progress=progress,
                             check_every=check_every, name="chambolle_pock")
    if criterion == "gap" and outcome.converged:
        what = "relative gap" if gap_state["last_finite"] else "residual (the gap was infinite)"
        outcome.message = outcome.message.replace("gap_or_residual =", f"{what} =")
    steps = {"tau": state.tau_used, "sigma": state.sigma_used, "theta": state.theta}
    return _make_result(state, outcome, state.x, steps, dual=state.y,
                        info={"n_infinite_gap": gap_state["infinite"]} if criterion == "gap" else {})
