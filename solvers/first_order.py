"""Proximal gradient methods: ISTA, FISTA (backtracking, adaptive restart) and IHT.

Each method is an ``*_init(...) -> state`` / ``*_step(state) -> state`` pair
(plain functions on a small mutable state object, so that the learned layer can
unroll exactly the same step), and a public function that drives the pair with
:func:`tikhon.solvers._loop.iterate` and returns a :class:`~tikhon.solvers.Result`.

References
----------
.. [BT09] A. Beck and M. Teboulle, "A fast iterative shrinkage-thresholding
   algorithm for linear inverse problems", SIAM J. Imaging Sci. 2(1), 2009.
.. [OC15] B. O'Donoghue and E. Candes, "Adaptive restart for accelerated
   gradient schemes", Found. Comput. Math. 15, 2015.
.. [BD09] T. Blumensath and M. Davies, "Iterative hard thresholding for
   compressed sensing", Appl. Comput. Harmon. Anal. 27(3), 2009.
.. [BD10] T. Blumensath and M. Davies, "Normalized iterative hard thresholding:
   guaranteed stability and performance", IEEE J. Sel. Top. Signal Process. 4(2), 2010.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from tikhon.operators._backend import check_real_floating, is_torch, norm, torch_module, vdot
from tikhon.operators.prox.base import Functional
from tikhon.solvers._loop import check_tolerance, iterate
from tikhon.solvers._result import Result

__all__ = [
    "ista",
    "fista",
    "iht",
    "ProxGradState",
    "ista_init",
    "ista_step",
    "fista_init",
    "fista_step",
    "IHTState",
    "iht_init",
    "iht_step",
]


# ---------------------------------------------------------------------------
# backend-agnostic helpers shared by the solvers of this package
# ---------------------------------------------------------------------------
def _copy(x):
    return x.clone() if is_torch(x) else x.copy()


# BLAS-free (see tikhon.operators._backend): solver loops interleave these with numba kernels
_norm = norm
_dot = vdot


def _finite(x) -> bool:
    if is_torch(x):
        return bool(torch_module().isfinite(x).all())
    return bool(np.isfinite(x).all())


def _tiny(x) -> float:
    if is_torch(x):
        return float(torch_module().finfo(x.dtype).tiny)
    return float(np.finfo(x.dtype).tiny)


def _check_array(x, name, where, allow_none=False):
    """A finite float32/float64 array or tensor; ``None`` passes when allowed."""
    if x is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: {name} is required")
    x = check_real_floating(x, name, where)
    if not _finite(x):
        raise ValueError(f"{where}: {name} contains NaN or inf")
    return x


def _check_functional(f, name, where):
    if not isinstance(f, Functional):
        raise TypeError(f"{where}: {name} must be a tikhon Functional, got {type(f).__name__}")
    return f


def _check_positive(value, name, where, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a positive number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be positive and finite, got {value!r}")
    return value


def _refuse_fixed_step(f, name, where):
    if getattr(f, "fixed_step", False):
        raise ValueError(
            f"{where}: {name} ({f._label()}) has a fixed step (its prox ignores tau), but this "
            "solver needs prox_{tau " + name + "} for varying tau; use admm (plug-and-play) instead"
        )


def _make_result(state, outcome, x, steps, dual=None, info=None):
    return Result(
        x=x,
        converged=outcome.converged,
        n_iter=outcome.n_iter,
        message=outcome.message,
        history=outcome.history,
        elapsed=outcome.elapsed,
        steps=steps,
        dual=dual,
        info={} if info is None else info,
    )


# ---------------------------------------------------------------------------
# ISTA / FISTA
# ---------------------------------------------------------------------------
_RESTARTS = {None: None, "none": None, "adaptive": "gradient", "gradient": "gradient", "function": "function"}


@dataclass
class ProxGradState:
    """State of ISTA/FISTA.

    Attributes
    ----------
    x : array or tensor
        Current iterate ``x_k``.
    x_prev : array or tensor
        Previous iterate ``x_{k-1}``.
    y : array or tensor
        Point where the last gradient step was taken (``x_{k-1}`` for ISTA,
        the extrapolated point for FISTA).
    t : float
        FISTA momentum parameter (1 after a restart).
    L : float
        Current Lipschitz estimate (the step is ``1 / L``).
    F : float
        Objective ``f(x_k) + g(x_k)`` when it was computed for free (backtracking
        or function restart), else ``nan``.
    """

    f: Functional
    g: Functional
    x: object
    x_prev: object
    y: object
    L: float
    t: float = 1.0
    accelerate: bool = False
    backtracking: bool = False
    eta: float = 2.0
    restart: str | None = None
    F: float = math.nan
    F_prev: float = math.nan
    y_step: object = None
    k: int = 0
    n_restarts: int = 0
    n_backtracks: int = 0


def _prox_grad_init(f, g, x0, step, backtracking, eta, restart, accelerate, where):
    f = _check_functional(f, "f", where)
    g = _check_functional(g, "g", where)
    if not f.is_smooth:
        raise ValueError(f"{where}: f ({f._label()}) must be smooth (is_smooth=True, with grad)")
    _refuse_fixed_step(g, "g", where)
    x0 = _check_array(x0, "x0", where)
    step = _check_positive(step, "step", where)
    eta = _check_positive(eta, "eta", where, allow_none=False)
    if eta <= 1:
        raise ValueError(f"{where}: eta (backtracking factor) must be > 1, got {eta}")
    lip = f.lipschitz
    if backtracking is None:
        backtracking = step is None and lip is None
    if step is not None:
        L = 1.0 / step
    elif lip is not None and lip > 0:
        L = float(lip)
    elif backtracking:
        L = 1.0  # backtracking grows it as needed
    elif lip is not None and lip == 0:
        L = 1.0  # f is affine: any step is safe for it
    else:
        raise ValueError(
            f"{where}: f.lipschitz is unknown; pass step=... or backtracking=True"
        )
    if restart not in _RESTARTS:
        raise ValueError(
            f"{where}: restart must be one of 'adaptive', 'gradient', 'function' or None, got {restart!r}"
        )
    x = _copy(x0)
    return ProxGradState(
        f=f, g=g, x=x, x_prev=x, y=x, L=L, t=1.0, accelerate=accelerate,
        backtracking=bool(backtracking), eta=eta, restart=_RESTARTS[restart] if accelerate else None,
    )


def _forward_backward(state, y):
    """One proximal gradient step from ``y``; backtracks on ``L`` when enabled."""
    f, g = state.f, state.g
    grad = f._grad(y)
    if not state.backtracking:
        z = g._prox(y - grad / state.L, 1.0 / state.L)
        return z, math.nan
    fy = float(f._call(y))
    for _ in range(60):
        z = g._prox(y - grad / state.L, 1.0 / state.L)
        d = z - y
        fz = float(f._call(z))
        # the sufficient-decrease test of [BT09]; the relative slack absorbs rounding
        bound = fy + _dot(grad, d) + 0.5 * state.L * _dot(d, d)
        if fz <= bound + 1e-12 * abs(bound) or not math.isfinite(fz):
            return z, fz
        state.L *= state.eta
        state.n_backtracks += 1
    return z, fz


def ista_init(f, g, x0, step=None, backtracking=None, eta=2.0):
    """Initial :class:`ProxGradState` for :func:`ista_step` (see :func:`ista`)."""
    return _prox_grad_init(f, g, x0, step, backtracking, eta, None, False, "ista")


def ista_step(state):
    """One ISTA iteration ``x+ = prox_{g/L}(x - grad f(x) / L)``."""
    state.y_step = state.x
    z, fz = _forward_backward(state, state.x)
    state.x_prev, state.y, state.x = state.x, state.x, z
    state.F_prev = state.F
    state.F = fz + float(state.g._call(z)) if state.backtracking else math.nan
    state.k += 1
    return state


def fista_init(f, g, x0, step=None, backtracking=None, eta=2.0, restart="adaptive"):
    """Initial :class:`ProxGradState` for :func:`fista_step` (see :func:`fista`)."""
    state = _prox_grad_init(f, g, x0, step, backtracking, eta, restart, True, "fista")
    if state.restart == "function":
        state.F = float(state.f._call(state.x)) + float(state.g._call(state.x))
    return state


def fista_step(state):
    """One FISTA iteration with optional adaptive restart ([BT09], [OC15])."""
    x_old = state.x
    y = state.y
    state.y_step = y
    z, fz = _forward_backward(state, y)
    state.F_prev = state.F
    if state.backtracking or state.restart == "function":
        if not math.isfinite(fz):
            fz = float(state.f._call(z))
        state.F = fz + float(state.g._call(z))
    restart = False
    if state.restart == "gradient" and is_torch(z):
        _gradient_restart_on_device(state, y, z, x_old)
        state.x_prev, state.x = x_old, z
        state.k += 1
        return state
    if state.restart == "gradient":
        # gradient scheme of [OC15]: the step z - y and the move z - x_old disagree
        restart = _dot(y - z, z - x_old) > 0
    elif state.restart == "function":
        restart = state.F > state.F_prev
    if restart:
        state.t = 1.0
        state.n_restarts += 1
        state.y = z
    else:
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * state.t * state.t))
        beta = (state.t - 1.0) / t_new
        state.t = t_new
        state.y = z + beta * (z - x_old)
    state.x_prev, state.x = x_old, z
    state.k += 1
    return state


def _gradient_restart_on_device(state, y, z, x_old):
    """The gradient restart and momentum update as tensor ops: no host sync per iteration.

    The same arithmetic as the NumPy branch of :func:`fista_step`, with the
    restart test, ``t`` and the restart count kept as 0-d tensors on the
    device and the branch taken by ``torch.where``.
    """
    torch = torch_module()
    restart = ((y - z) * (z - x_old)).sum() > 0
    t = state.t if is_torch(state.t) else z.new_tensor(state.t)
    t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
    beta = torch.where(restart, torch.zeros_like(t), (t - 1.0) / t_new)
    state.t = torch.where(restart, torch.ones_like(t), t_new)
    state.n_restarts = state.n_restarts + restart.to(torch.int64)
    state.y = z + beta * (z - x_old)


def _run_prox_grad(name, state, step_fn, tol, max_iter, criterion, callback, progress,
                   check_every, record_objective):
    if criterion not in ("change", "gradient_mapping"):
        raise ValueError(f"{name}: criterion must be 'change' or 'gradient_mapping', got {criterion!r}")
    tol = check_tolerance(tol)

    def monitor(s):
        x = s.x
        out = {}
        change = _norm(x - s.x_prev) / max(_norm(x), _tiny(x))
        gmap = s.L * _norm(s.y_step - x)
        out["change"] = change
        out["gradient_mapping"] = gmap
        if record_objective:
            F = s.F
            if not math.isfinite(F):
                F = float(s.f._call(x)) + float(s.g._call(x))
            out["objective"] = F
        out["step"] = 1.0 / s.L
        return out

    state, outcome = iterate(
        state, step_fn, monitor, criterion=criterion, tol=tol, max_iter=max_iter,
        callback=callback, progress=progress, check_every=check_every, name=name,
    )
    info = {"n_backtracks": state.n_backtracks}
    if state.accelerate:
        info["n_restarts"] = int(state.n_restarts)
    return _make_result(state, outcome, state.x, {"step": 1.0 / state.L, "L": state.L}, info=info)


_PROX_GRAD_DOC = """
    Parameters
    ----------
    f : Functional
        Smooth term (``is_smooth``, with ``grad``); ``f.lipschitz`` gives the step.
    g : Functional
        Term with a proximal map (must not be ``fixed_step``: the step varies
        with backtracking).
    x0 : array or tensor
        Starting point (NumPy float32/float64 or torch tensor; the iterates keep
        its type, device and dtype).
    step : float, optional
        Step size ``1 / L``. Default ``1 / f.lipschitz``.
    backtracking : bool, optional
        Beck-Teboulle backtracking (the step shrinks by ``eta`` until the
        quadratic upper bound holds; it never grows back). Default: used only
        when neither ``step`` nor ``f.lipschitz`` is known. With a known
        Lipschitz constant it is safe to leave off, which saves one evaluation
        of ``f`` per iteration.
    eta : float
        Backtracking factor (> 1).
    tol : float
        Tolerance on ``criterion``.
    max_iter : int
        Maximum number of iterations.
    criterion : {"change", "gradient_mapping"}
        ``"change"`` (default): relative change of the iterate,
        ``||x_{k+1} - x_k|| / max(||x_{k+1}||, tiny)``.
        ``"gradient_mapping"``: norm of the composite gradient mapping
        ``L ||y_k - x_{k+1}||`` at the point ``y_k`` the step was taken from
        (zero exactly at a minimiser; absolute, in the units of ``grad f``).
    callback : callable, optional
        ``callback(state) -> bool``; True stops.
    progress : bool
        Show a tqdm progress bar.
    check_every : int
        Evaluate the criterion (and record history) every this many iterations.
    record_objective : bool
        Record ``f(x) + g(x)`` in the history; this costs one evaluation of each
        term per check unless backtracking already computed it.

    Returns
    -------
    Result
        ``x``; ``history`` with ``change``, ``gradient_mapping``, ``objective``,
        ``step``, ``time``; ``steps`` with the final ``step`` and ``L``;
        ``info["n_backtracks"]`` (and ``info["n_restarts"]`` for FISTA).
"""


def ista(f, g, x0, step=None, *, backtracking=None, eta=2.0, tol=1e-6, max_iter=1000,
         criterion="change", callback=None, progress=False, check_every=1,
         record_objective=True):
    """Proximal gradient descent (ISTA) for ``min_x f(x) + g(x)``.

    ``x_{k+1} = prox_{g/L}(x_k - grad f(x_k) / L)``; converges at rate O(1/k)
    in objective for convex ``f`` and ``g``.
    """
    state = ista_init(f, g, x0, step=step, backtracking=backtracking, eta=eta)
    return _run_prox_grad("ista", state, ista_step, tol, max_iter, criterion, callback,
                          progress, check_every, record_objective)


ista.__doc__ += _PROX_GRAD_DOC


def fista(f, g, x0, step=None, *, backtracking=None, restart="adaptive", eta=2.0, tol=1e-6,
          max_iter=1000, criterion="change", callback=None, progress=False, check_every=1,
          record_objective=True):
    """Accelerated proximal gradient (FISTA) for ``min_x f(x) + g(x)``.

    Nesterov/Beck-Teboulle momentum ``y = x_k + (t_k - 1)/t_{k+1} (x_k - x_{k-1})``
    with adaptive restart ([OC15]): ``restart="adaptive"`` (alias of
    ``"gradient"``) resets the momentum when ``<y_k - x_{k+1}, x_{k+1} - x_k> > 0``
    (free); ``"function"`` when the objective increases (one evaluation of
    ``f`` and ``g`` per iteration); ``None`` disables it.
    """
    state = fista_init(f, g, x0, step=step, backtracking=backtracking, eta=eta, restart=restart)
    return _run_prox_grad("fista", state, fista_step, tol, max_iter, criterion, callback,
                          progress, check_every, record_objective)


fista.__doc__ += _PROX_GRAD_DOC.replace(
    "    eta : float",
    """    restart : {"adaptive", "gradient", "function", None}
        Restart scheme (see above).
    eta : float""",
)


# ---------------------------------------------------------------------------
# IHT
# ---------------------------------------------------------------------------
@dataclass
class IHTState:
    """State of :func:`iht_step`.

    Attributes
    ----------
    x, x_prev : array or tensor
        Current and previous iterates (at most ``sparsity`` non-zeros).
    grad : array or tensor
        ``grad f(x)`` (cached: the normalized rule reuses it).
    mu : float
        The last step size.
    """

    f: Functional
    x: object
    x_prev: object
    grad: object
    sparsity: int
    mu: float
    normalized: bool
    kappa: float = 2.0
    c: float = 0.01
    k: int = 0
    n_shrinks: int = 0


def _hard_threshold(v, s):
    """Keep the ``s`` entries of largest magnitude (ties broken arbitrarily)."""
    flat = v.reshape(-1)
    n = flat.shape[0]
    if s >= n:
        return _copy(v)
    if is_torch(v):
        torch = torch_module()
        idx = torch.topk(flat.abs(), s, sorted=False).indices
        out = torch.zeros_like(flat)
        out[idx] = flat[idx]
        return out.reshape(v.shape)
    idx = np.argpartition(np.abs(flat), n - s)[n - s:]
    out = np.zeros_like(flat)
    out[idx] = flat[idx]
    return out.reshape(v.shape)


def _support_mask(v):
    return v != 0


def iht_init(f, x0, sparsity, step=None, step_rule="fixed"):
    """Initial :class:`IHTState` for :func:`iht_step` (see :func:`iht`)."""
    where = "iht"
    f = _check_functional(f, "f", where)
    if not f.is_smooth:
        raise ValueError(f"{where}: f ({f._label()}) must be smooth (is_smooth=True, with grad)")
    x0 = _check_array(x0, "x0", where)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (numbers.Integral,)) or sparsity < 1:
        raise ValueError(f"{where}: sparsity must be a positive integer, got {sparsity!r}")
    if step_rule not in ("fixed", "normalized"):
        raise ValueError(f"{where}: step_rule must be 'fixed' or 'normalized', got {step_rule!r}")
    step = _check_positive(step, "step", where)
    normalized = step_rule == "normalized"
    if step is None and not normalized:
        if f.lipschitz is None or f.lipschitz <= 0:
            raise ValueError(
                f"{where}: f.lipschitz is unknown; pass step=... or step_rule='normalized'"
            )
        step = 1.0 / float(f.lipschitz)
    x = _hard_threshold(x0, int(sparsity))
    return IHTState(f=f, x=x, x_prev=x, grad=f._grad(x), sparsity=int(sparsity),
                    mu=math.nan if step is None else step, normalized=normalized)


def _curvature(f, x, gx, d):
    """``<d, grad f(x + d) - grad f(x)>`` (= ``||A d||^2`` for ``f = ||Ax - b||^2 / 2``)."""
    return _dot(d, f._grad(x + d) - gx)


def iht_step(state):
    """One (normalized) iterative hard thresholding iteration ([BD09], [BD10])."""
    f, x, gx, s = state.f, state.x, state.grad, state.sparsity
    if not state.normalized:
        x_new = _hard_threshold(x - state.mu * gx, s)
        g_new = f._grad(x_new)
    else:
        # step along the gradient restricted to the current support (or to the
        # support of H_s(-grad) at the start), exact line search for quadratics
        mask = _support_mask(x)
        if not bool(mask.any()):
            mask = _support_mask(_hard_threshold(-gx, s))
        gs = gx * mask
        num = _dot(gs, gs)
        if num == 0.0:
            state.x_prev = x
            state.k += 1
            return state
        mu = num / max(_curvature(f, x, gx, -gs), _tiny(x))
        x_new = _hard_threshold(x - mu * gx, s)
        g_new = f._grad(x_new)
        # [BD10]: when the support changes, the step must satisfy
        # mu <= (1 - c) ||dx||^2 / ||A dx||^2, else shrink it
        for _ in range(30):
            if bool(((x_new != 0) == mask).all()):
                break
            d = x_new - x
            dd = _dot(d, d)
            curv = _dot(d, g_new - gx)
            if curv <= 0 or mu <= (1.0 - state.c) * dd / curv:
                break
            mu /= state.kappa * (1.0 - state.c)
            state.n_shrinks += 1
            x_new = _hard_threshold(x - mu * gx, s)
            g_new = f._grad(x_new)
        state.mu = mu
    state.x_prev, state.x, state.grad = x, x_new, g_new
    state.k += 1
    return state


def iht(f, x0, sparsity, step=None, *, step_rule="fixed", tol=1e-6, max_iter=1000,
        callback=None, progress=False, check_every=1, record_objective=True):
    """Iterative hard thresholding for ``min f(x)`` subject to ``||x||_0 <= sparsity``.

    ``x_{k+1} = H_s(x_k - mu grad f(x_k))`` where ``H_s`` keeps the ``s``
    entries of largest magnitude ([BD09]).

    Parameters
    ----------
    f : Functional
        Smooth data term, e.g. ``SquaredL2(b, op=A)``.
    x0 : array or tensor
        Starting point (hard-thresholded first).
    sparsity : int
        Number ``s`` of non-zeros kept.
    step : float, optional
        Fixed step ``mu`` (``step_rule="fixed"``); default ``1 / f.lipschitz``.
        Recovery guarantees of [BD09] assume ``||A|| < 1`` with ``mu = 1``;
        ``1 / L`` is the scale-invariant choice.
    step_rule : {"fixed", "normalized"}
        ``"normalized"``: the normalized IHT of [BD10], with the exact line
        search step ``||g_S||^2 / ||A g_S||^2`` on the current support ``S``
        and its shrinking safeguard when the support changes. The curvature
        ``||A v||^2`` is measured as ``<v, grad f(x + v) - grad f(x)>`` (exact
        for quadratic ``f``), which costs one extra gradient per iteration.
    tol : float
        Tolerance on the relative change ``||x_{k+1} - x_k|| / max(||x_{k+1}||, tiny)``.
    max_iter, callback, progress, check_every :
        As in :func:`fista`.
    record_objective : bool
        Record ``f(x)`` in the history (one evaluation of ``f`` per check).

    Returns
    -------
    Result
        ``x``; ``history`` with ``change``, ``objective``, ``step``;
        ``steps["step"]`` the last step size.
    """
    state = iht_init(f, x0, sparsity, step=step, step_rule=step_rule)

    def monitor(s):
        out = {"change": _norm(s.x - s.x_prev) / max(_norm(s.x), _tiny(s.x))}
        if record_objective:
            out["objective"] = float(s.f._call(s.x))
        out["step"] = s.mu
        return out

    state, outcome = iterate(
        state, iht_step, monitor, criterion="change", tol=check_tolerance(tol), max_iter=max_iter,
        callback=callback, progress=progress, check_every=check_every, name="iht",
    )
    return _make_result(state, outcome, state.x, {"step": state.mu},
                        info={"n_shrinks": state.n_shrinks})
