"""Proximal gradient methods: ISTA, FISTA (backtracking, adaptive restart) and IHT.

Each method is a solver object (configuration: the functionals and fixed
options) with ``init(x0, ...) -> state``, ``step(state, **hyper) -> state``,
``monitor(state)`` and ``optimality(x, **hyper)`` (see :mod:`tikhon._core.loop`);
the public functions :func:`ista`, :func:`fista` and :func:`iht` drive them with
the shared loop and return a :class:`~tikhon.solvers.Result`. The learned layer
unrolls the very same ``step`` with per-layer tensors as hyperparameters.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from tikhon._core.arrays import copy, is_torch, norms, tiny, to_float, torch_module, vdot
from tikhon._core.checks import (
    check_choice,
    check_finite_array,
    check_functional,
    check_int,
    check_positive,
    check_positive_int,
    check_smooth,
    check_step,
    refuse_fixed_step,
)
from tikhon._core.loop import Solver, State, run

__all__ = [
    "ista",
    "fista",
    "iht",
    "ProximalGradient",
    "ProxGradState",
    "IHT",
    "IHTState",
]

_RESTARTS = {None: None, "none": None, "adaptive": "gradient", "gradient": "gradient",
             "function": "function"}
# relative slack of the sufficient-decrease test: rounding of f's value must
# not read as a too-long step (which would grow L by eta up to 60 times)
_SLACK = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
_MAX_BACKTRACKS = 60


def _slack(x):
    if is_torch(x):
        return 1e-5 if x.dtype == torch_module().float32 else 1e-12
    return _SLACK.get(np.dtype(x.dtype), 1e-12)


def _initial_lipschitz(f, step, backtracking, where):
    """``L`` (the inverse step) from ``step``, ``f.lipschitz`` or a backtracking start."""
    if step is not None:
        return 1.0 / step
    lip = f.lipschitz
    if lip is not None and lip > 0:
        return float(lip)
    if backtracking or (lip is not None and lip == 0):
        return 1.0  # backtracking grows it as needed; an affine f allows any step
    raise ValueError(f"{where}: f.lipschitz is unknown; pass step=... or backtracking=True")


# ---------------------------------------------------------------------------
# ISTA / FISTA
# ---------------------------------------------------------------------------
@dataclass
class ProxGradState(State):
    """State of :class:`ProximalGradient` (ISTA and FISTA).

    Attributes
    ----------
    x, x_prev : array or tensor
        Current and previous iterates ``x_k``, ``x_{k-1}``.
    y : array or tensor
        Point of the next gradient step (``x_k`` for ISTA, the extrapolated
        point for FISTA).
    y_step : array or tensor
        Point the last gradient step was taken from.
    L : float or tensor
        Current Lipschitz estimate: the step is ``1 / L``.
    t : float or tensor
        FISTA momentum parameter (1 after a restart).
    F, F_prev : float
        Objective ``f(x_k) + g(x_k)`` (and the previous one) where it was
        computed for free (backtracking, function restart), else ``nan``.
    fx, gx : float and array, or None
        Value and gradient of ``f`` at ``x`` where the last backtracking test
        computed them (``f.grad_with_value``); reused when ``y`` is ``x``.
    n_restarts, n_backtracks : int (or tensor)
        Momentum restarts and step reductions so far.
    """

    x: Any = None
    x_prev: Any = None
    y: Any = None
    y_step: Any = None
    L: Any = 1.0
    t: Any = 1.0
    F: float = math.nan
    F_prev: float = math.nan
    fx: Any = None
    gx: Any = None
    n_restarts: Any = 0
    n_backtracks: int = 0


class ProximalGradient(Solver):
    """Proximal gradient descent for ``min_x f(x) + g(x)``, plain (ISTA) or accelerated (FISTA).

    Parameters
    ----------
    f : Functional
        Smooth term (``is_smooth``, with a gradient).
    g : Functional
        Term with a proximal map, not ``fixed_step`` (the step varies).
    step : float or tensor, optional
        Step size ``1 / L`` (default ``1 / f.lipschitz``; with backtracking,
        where it starts).
    accelerate : bool
        FISTA momentum ([BT09]).
    backtracking : bool, optional
        Beck-Teboulle backtracking; default: only when neither ``step`` nor
        ``f.lipschitz`` is known.
    eta : float
        Backtracking factor (> 1).
    shrink : float
        Factor in ``(0, 1]`` applied to ``L`` before each backtracking search:
        1 (default) never lets the step grow back; below 1 the step adapts up
        as well as down (one more trial per iteration at most, on average).
    restart : {"adaptive", "gradient", "function", None}
        FISTA restart scheme ([OC15]).
    criterion : {"change", "gradient_mapping"}
        Stopping criterion (see :func:`fista`).
    record_objective : bool
        Record ``f(x) + g(x)`` at every check.
    """

    def __init__(self, f, g, *, step=None, accelerate=False, backtracking=None, eta=2.0, shrink=1.0,
                 restart="adaptive", criterion="change", record_objective=True):
        where = self.name = "fista" if accelerate else "ista"
        self.f = check_smooth(f, "f", where)
        self.g = refuse_fixed_step(check_functional(g, "g", where), "g", where)
        self.accelerate = bool(accelerate)
        if step is not None:
            step = check_step(step, where, "step")
        self.backtracking = (step is None and self.f.lipschitz is None) if backtracking is None \
            else bool(backtracking)
        self.L0 = _initial_lipschitz(self.f, step, self.backtracking, where)
        self.eta = check_positive(eta, "eta", where)
        if self.eta <= 1:
            raise ValueError(f"{where}: eta (backtracking factor) must be > 1, got {eta}")
        self.shrink = check_positive(shrink, "shrink", where)
        if self.shrink > 1:
            raise ValueError(f"{where}: shrink must be in (0, 1], got {shrink}")
        check_choice(restart, tuple(_RESTARTS), "restart", where)
        self.restart = _RESTARTS[restart] if accelerate else None
        self.criterion = check_choice(criterion, ("change", "gradient_mapping"), "criterion", where)
        self.record_objective = bool(record_objective)

    def init(self, x0):
        """The initial state at ``x0`` (copied)."""
        x0 = check_finite_array(x0, "x0", self.name)
        x = copy(x0)
        state = ProxGradState(x=x, x_prev=x, y=x, y_step=x, L=self.L0)
        if self.restart == "function":
            state.F = to_float(self.f._call(x)) + to_float(self.g._call(x))
        return state

    # -- one iteration ------------------------------------------------------------
    def _forward_backward(self, state, y, lam):
        """``prox_{lam g / L}(y - grad f(y) / L)``; backtracks on ``L`` when enabled.

        Returns ``(z, f(z), grad f(z))``, the last two ``nan``/None unless the
        backtracking test computed them.
        """
        f, g = self.f, self.g
        reuse = y is state.x and state.gx is not None
        if not self.backtracking:
            grad = state.gx if reuse else f._grad(y)
            t = 1.0 / state.L
            return g._prox(y - t * grad, t if lam is None else t * lam), math.nan, None
        fy, grad = (state.fx, state.gx) if reuse else f._value_and_grad(y)
        fy = to_float(fy)
        L = state.L * self.shrink if self.shrink != 1.0 else state.L
        slack = _slack(y)
        for _ in range(_MAX_BACKTRACKS):
            t = 1.0 / L
            z = g._prox(y - t * grad, t if lam is None else t * lam)
            d = z - y
            if f.grad_with_value:
                fz, gz = f._value_and_grad(z)
            else:
                fz, gz = f._call(z), None
            fz = to_float(fz)
            # the sufficient-decrease test of [BT09]; +inf (outside f's domain, as
            # a likelihood may be) asks for a shorter step, NaN stops the search
            bound = fy + vdot(grad, d) + 0.5 * L * vdot(d, d)
            if fz <= bound + slack * abs(bound) or math.isnan(fz):
                break
            L *= self.eta
            state.n_backtracks += 1
        state.L = L
        return z, fz, gz

    def step(self, state, *, step=None, lam=None):
        """One ISTA/FISTA iteration.

        Parameters
        ----------
        state : ProxGradState
        step : float or tensor, optional
            Step size for this iteration (replaces ``1 / state.L``; a tensor
            keeps the autograd graph). Backtracking, when on, starts from it.
        lam : float or tensor, optional
            Weight of ``g`` for this iteration: the prox is that of
            ``lam * g`` (default 1).

        Returns
        -------
        ProxGradState
            ``state``, updated.
        """
        if step is not None:
            state.L = 1.0 / step
        x_old, y = state.x, state.y
        z, fz, gz = self._forward_backward(state, y, lam)
        state.y_step = y
        state.F_prev = state.F
        if self.backtracking or self.restart == "function":
            if not math.isfinite(fz):
                fz = to_float(self.f._call(z))
            gval = to_float(self.g._call(z))
            state.F = fz + (gval if lam is None else to_float(lam) * gval)
        if not self.accelerate:
            y_next = z
        elif self.restart == "gradient" and is_torch(z):
            y_next = _gradient_restart_on_device(state, y, z, x_old)
        else:
            if self.restart == "gradient":
                # gradient scheme of [OC15]: the step z - y and the move z - x_old disagree
                restart = vdot(y - z, z - x_old) > 0
            else:
                restart = self.restart == "function" and state.F > state.F_prev
            if restart:
                state.t = 1.0
                state.n_restarts += 1
                y_next = z
            else:
                t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * state.t * state.t))
                beta = (state.t - 1.0) / t_new
                state.t = t_new
                y_next = z + beta * (z - x_old)
        state.x_prev, state.x, state.y = x_old, z, y_next
        state.fx, state.gx = (fz, gz) if gz is not None else (None, None)
        state.k += 1
        return state

    def monitor(self, state):
        x = state.x
        n_change, n_x, n_map = norms(x - state.x_prev, x, state.y_step - x)
        L = float(state.L)
        out = {"change": n_change / max(n_x, tiny(x)), "gradient_mapping": L * n_map}
        if self.record_objective:
            F = state.F
            if not math.isfinite(F):
                F = to_float(self.f._call(x)) + to_float(self.g._call(x))
            out["objective"] = F
        out["step"] = 1.0 / L
        return out

    def optimality(self, x, *, step=None, lam=None):
        """Fixed-point residual ``x - prox_{t lam g}(x - t grad f(x))`` (zero at a minimiser).

        ``step`` (``t``) defaults to ``1 / f.lipschitz``; with tensors the
        residual keeps the autograd graph (implicit differentiation).
        """
        if step is None:
            lip = self.f.lipschitz
            if not lip:
                raise ValueError(f"{self.name}: optimality needs step=... (f.lipschitz is unknown)")
            step = 1.0 / lip
        t_g = step if lam is None else step * lam
        return x - self.g._prox(x - step * self.f._grad(x), t_g)

    def solve(self, x0, *, tol=1e-6, max_iter=1000, callback=None, progress=False, check_every=1):
        """Run from ``x0`` to the tolerance; the :class:`~tikhon.solvers.Result`."""
        state = self.init(x0)
        state, outcome = run(self, state, tol=tol, max_iter=max_iter, callback=callback,
                             progress=progress, check_every=check_every)
        info = {"n_backtracks": state.n_backtracks}
        if self.accelerate:
            info["n_restarts"] = int(state.n_restarts)
        L = float(state.L)
        return outcome.result(state.x, steps={"step": 1.0 / L, "L": L}, info=info)


def _gradient_restart_on_device(state, y, z, x_old):
    """The gradient restart and momentum update as tensor ops: no host sync per iteration.

    The same arithmetic as the NumPy branch of :meth:`ProximalGradient.step`,
    with the restart test, ``t`` and the restart count kept as 0-d tensors
    on the device and the branch taken by ``torch.where``.
    """
    torch = torch_module()
    restart = ((y - z) * (z - x_old)).sum() > 0
    t = state.t if is_torch(state.t) else z.new_tensor(state.t)
    t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
    beta = torch.where(restart, torch.zeros_like(t), (t - 1.0) / t_new)
    state.t = torch.where(restart, torch.ones_like(t), t_new)
    state.n_restarts = state.n_restarts + restart.to(torch.int64)
    return z + beta * (z - x_old)


_PROX_GRAD_DOC = """
    Parameters
    ----------
    f : Functional
        Smooth term (``is_smooth``, with ``grad``); ``f.lipschitz`` gives the step.
        A user's term (a likelihood, an inner solver's loss) comes from
        :func:`~tikhon.operators.prox.smooth_functional`.
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
        quadratic upper bound holds). Default: used only when neither
        ``step`` nor ``f.lipschitz`` is known. With a known Lipschitz
        constant it is safe to leave off, which saves one evaluation of ``f``
        per iteration.
    eta : float
        Backtracking factor (> 1).
    shrink : float
        Factor in ``(0, 1]`` applied to ``L`` before each backtracking search
        (1: the step never grows back; 0.9 lets it adapt upwards too).
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
        ``callback(state) -> bool`` after every iteration (a
        :class:`ProxGradState`); True stops.
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

    See Also
    --------
    ProximalGradient : the solver object (``init``/``step``/``monitor``/``optimality``).
"""


def ista(f, g, x0, step=None, *, backtracking=None, eta=2.0, shrink=1.0, tol=1e-6, max_iter=1000,
         criterion="change", callback=None, progress=False, check_every=1,
         record_objective=True):
    """Proximal gradient descent (ISTA) for ``min_x f(x) + g(x)``.

    ``x_{k+1} = prox_{g/L}(x_k - grad f(x_k) / L)``; converges at rate O(1/k)
    in objective for convex ``f`` and ``g``.
    """
    solver = ProximalGradient(f, g, step=step, accelerate=False, backtracking=backtracking, eta=eta,
                              shrink=shrink, criterion=criterion,
                              record_objective=record_objective)
    return solver.solve(x0, tol=tol, max_iter=max_iter, callback=callback,
                        progress=progress, check_every=check_every)


ista.__doc__ += _PROX_GRAD_DOC + '''
    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import MatrixOperator
    >>> from tikhon.operators.prox import L1, SquaredL2
    >>> from tikhon.solvers import ista
    >>> rng = np.random.default_rng(0)
    >>> Phi = rng.standard_normal((40, 100)) / np.sqrt(40)
    >>> x_true = np.zeros(100); x_true[[3, 30, 70]] = [1.0, -2.0, 1.5]
    >>> f = SquaredL2(b=Phi @ x_true, op=MatrixOperator(Phi))
    >>> res = ista(f, 0.01 * L1(), np.zeros(100), tol=1e-8, max_iter=20000)
    >>> res.converged, np.flatnonzero(np.abs(res.x) > 0.1).tolist()
    (True, [3, 30, 70])
'''


def fista(f, g, x0, step=None, *, backtracking=None, restart="adaptive", eta=2.0, shrink=1.0,
          tol=1e-6, max_iter=1000, criterion="change", callback=None, progress=False,
          check_every=1, record_objective=True):
    """Accelerated proximal gradient (FISTA) for ``min_x f(x) + g(x)``.

    Nesterov/Beck-Teboulle momentum ``y = x_k + (t_k - 1)/t_{k+1} (x_k - x_{k-1})``
    with adaptive restart ([OC15]): ``restart="adaptive"`` (alias of
    ``"gradient"``) resets the momentum when ``<y_k - x_{k+1}, x_{k+1} - x_k> > 0``
    (free); ``"function"`` when the objective increases (one evaluation of
    ``f`` and ``g`` per iteration); ``None`` disables it.
    """
    solver = ProximalGradient(f, g, step=step, accelerate=True, backtracking=backtracking, eta=eta,
                              shrink=shrink, restart=restart, criterion=criterion,
                              record_objective=record_objective)
    return solver.solve(x0, tol=tol, max_iter=max_iter, callback=callback,
                        progress=progress, check_every=check_every)


fista.__doc__ += _PROX_GRAD_DOC.replace(
    "    eta : float",
    """    restart : {"adaptive", "gradient", "function", None}
        Restart scheme (see above).
    eta : float""",
) + '''
    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import MatrixOperator
    >>> from tikhon.operators.prox import L1, SquaredL2
    >>> from tikhon.solvers import fista
    >>> rng = np.random.default_rng(0)
    >>> Phi = rng.standard_normal((40, 100)) / np.sqrt(40)
    >>> x_true = np.zeros(100); x_true[[3, 30, 70]] = [1.0, -2.0, 1.5]
    >>> f = SquaredL2(b=Phi @ x_true, op=MatrixOperator(Phi))
    >>> res = fista(f, 0.01 * L1(), np.zeros(100), tol=1e-8, max_iter=5000)
    >>> res.converged, np.flatnonzero(np.abs(res.x) > 0.1).tolist()
    (True, [3, 30, 70])
'''


# ---------------------------------------------------------------------------
# IHT
# ---------------------------------------------------------------------------
@dataclass
class IHTState(State):
    """State of :class:`IHT`.

    Attributes
    ----------
    x, x_prev : array or tensor
        Current and previous iterates (at most ``sparsity`` non-zeros).
    grad : array or tensor
        ``grad f(x)`` (cached: the normalized rule reuses it).
    mu : float or tensor
        The last step size (0 before the normalized rule's first line search).
    n_shrinks : int
        Step reductions of the normalized rule so far.
    """

    x: Any = None
    x_prev: Any = None
    grad: Any = None
    mu: Any = 0.0
    n_shrinks: int = 0


def _hard_threshold(v, s, batch_dims=0):
    """Keep the ``s`` entries of largest magnitude (ties broken arbitrarily).

    With ``batch_dims > 0`` the leading ``batch_dims`` axes index independent
    problems: each keeps its own ``s`` entries (one vectorised top-k).
    """
    lead = tuple(v.shape[:batch_dims])
    flat = v.reshape(math.prod(lead), -1)
    n = flat.shape[1]
    if s >= n:
        return copy(v)
    if is_torch(v):
        torch = torch_module()
        idx = torch.topk(flat.abs(), s, dim=1, sorted=False).indices
        out = torch.zeros_like(flat).scatter(1, idx, flat.gather(1, idx))
        return out.reshape(v.shape)
    idx = np.argpartition(np.abs(flat), n - s, axis=1)[:, n - s:]
    out = np.zeros_like(flat)
    np.put_along_axis(out, idx, np.take_along_axis(flat, idx, axis=1), axis=1)
    return out.reshape(v.shape)


class IHT(Solver):
    """Iterative hard thresholding for ``min f(x)`` subject to ``||x||_0 <= sparsity``.

    Parameters
    ----------
    f : Functional
        Smooth data term.
    sparsity : int
        Number ``s`` of non-zeros kept.
    step : float or tensor, optional
        The fixed step (default ``1 / f.lipschitz``; unused by the normalized rule).
    step_rule : {"fixed", "normalized"}
        See :func:`iht`.
    record_objective : bool
        Record ``f(x)`` at every check.
    batch_dims : int
        Number of leading axes of ``x`` that index independent problems, each
        keeping its own ``sparsity`` entries (0: the whole array is one
        problem). Only with ``step_rule="fixed"`` (the normalized rule's line
        search is one scalar for the whole array).
    """

    name = "iht"
    criterion = "change"
    kappa = 2.0
    c = 0.01

    def __init__(self, f, sparsity, *, step=None, step_rule="fixed", record_objective=True,
                 batch_dims=0):
        self.f = check_smooth(f, "f", self.name)
        self.sparsity = check_positive_int(sparsity, "sparsity", self.name)
        check_choice(step_rule, ("fixed", "normalized"), "step_rule", self.name)
        self.normalized = step_rule == "normalized"
        self.batch_dims = check_int(batch_dims, "batch_dims", self.name, minimum=0)
        if self.batch_dims and self.normalized:
            raise ValueError(f"{self.name}: batch_dims > 0 needs step_rule='fixed'")
        self.record_objective = bool(record_objective)
        if step is not None:
            step = check_step(step, self.name, "step")
        elif not self.normalized:
            if self.f.lipschitz is None or self.f.lipschitz <= 0:
                raise ValueError(
                    f"{self.name}: f.lipschitz is unknown; pass step=... or step_rule='normalized'"
                )
            step = 1.0 / float(self.f.lipschitz)
        # the normalized rule reports 0 until its first line search
        self.mu0 = 0.0 if step is None else step

    def init(self, x0):
        """The initial state ``H_s(x0)``."""
        x0 = check_finite_array(x0, "x0", self.name)
        x = _hard_threshold(x0, self.sparsity, self.batch_dims)
        return IHTState(x=x, x_prev=x, grad=self.f._grad(x), mu=self.mu0)

    def step(self, state, *, step=None):
        """One (normalized) IHT iteration ([BD09], [BD10]).

        ``step`` (float or tensor) replaces the fixed step for this iteration;
        the normalized rule chooses its own (with host-side line-search tests).
        """
        f, x, gx, s = self.f, state.x, state.grad, self.sparsity
        if step is not None or not self.normalized:
            mu = state.mu if step is None else step
            x_new = _hard_threshold(x - mu * gx, s, self.batch_dims)
            g_new = f._grad(x_new)
            state.mu = mu
        else:
            # step along the gradient restricted to the current support (or to the
            # support of H_s(-grad) at the start), exact line search for quadratics
            mask = x != 0
            if not bool(mask.any()):
                mask = _hard_threshold(-gx, s) != 0
            gs = gx * mask
            num = vdot(gs, gs)
            if num == 0.0:
                state.x_prev = x
                state.k += 1
                return state
            mu = num / max(vdot(-gs, f._grad(x - gs) - gx), tiny(x))
            x_new = _hard_threshold(x - mu * gx, s)
            g_new = f._grad(x_new)
            # [BD10]: when the support changes, the step must satisfy
            # mu <= (1 - c) ||dx||^2 / ||A dx||^2, else shrink it
            for _ in range(30):
                if bool(((x_new != 0) == mask).all()):
                    break
                d = x_new - x
                dd = vdot(d, d)
                curv = vdot(d, g_new - gx)
                if curv <= 0 or mu <= (1.0 - self.c) * dd / curv:
                    break
                mu /= self.kappa * (1.0 - self.c)
                state.n_shrinks += 1
                x_new = _hard_threshold(x - mu * gx, s)
                g_new = f._grad(x_new)
            state.mu = mu
        state.x_prev, state.x, state.grad = x, x_new, g_new
        state.k += 1
        return state

    def monitor(self, state):
        n_change, n_x = norms(state.x - state.x_prev, state.x)
        out = {"change": n_change / max(n_x, tiny(state.x))}
        if self.record_objective:
            out["objective"] = to_float(self.f._call(state.x))
        out["step"] = float(state.mu)
        return out

    def optimality(self, x, *, step):
        """Fixed-point residual ``x - H_s(x - step grad f(x))``."""
        return x - _hard_threshold(x - step * self.f._grad(x), self.sparsity, self.batch_dims)


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

    See Also
    --------
    IHT : the solver object.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import MatrixOperator
    >>> from tikhon.operators.prox import L1, SquaredL2
    >>> from tikhon.solvers import iht
    >>> rng = np.random.default_rng(0)
    >>> Phi = rng.standard_normal((40, 100)) / np.sqrt(40)
    >>> x_true = np.zeros(100); x_true[[3, 30, 70]] = [1.0, -2.0, 1.5]
    >>> f = SquaredL2(b=Phi @ x_true, op=MatrixOperator(Phi))
    >>> res = iht(f, np.zeros(100), 3, step_rule="normalized", tol=1e-10, max_iter=2000)
    >>> np.flatnonzero(res.x).tolist(), bool(np.allclose(res.x, x_true, atol=1e-6))
    ([3, 30, 70], True)
    """
    solver = IHT(f, sparsity, step=step, step_rule=step_rule, record_objective=record_objective)
    state = solver.init(x0)
    state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                         progress=progress, check_every=check_every)
    return outcome.result(state.x, steps={"step": float(state.mu)},
                          info={"n_shrinks": state.n_shrinks})
