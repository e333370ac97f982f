"""Gradient descent with a Sobolev H^s data term, stopped early (implicit regularization).

:func:`sobolev_fit` minimises ``1/2 ||A x - y||_{H^s}^2`` (optionally plus an
explicit regularizer) by (proximal) gradient descent and stops it early. The
H^s norm lives on ``A``'s output grid and is the periodic one of
:class:`~tikhon.operators.SobolevWeight`: ``||r||_{H^s} = ||W_s r||_2`` with
``W_s`` the Fourier multiplier ``(1 + |xi|^2)^(s/2)``. The data term is the
existing :class:`~tikhon.operators.prox.SquaredL2` with ``op = W_s A`` and
``b = W_s y``, and the iteration is :class:`~tikhon.solvers.ProximalGradient`'s
step (no second gradient loop); :class:`SobolevDescent` adds the residuals in
L2 and H^s, the error to a reference and the stopping rules, and the shared
:func:`~tikhon._core.loop.run` drives it.

References
----------
.. [ZHLY21] B. Zhu, J. Hu, Y. Lou and Y. Yang, "Implicit regularization effects of the
   Sobolev norms in image processing", arXiv:2109.06255, 2021.
.. [EHN96] H. W. Engl, M. Hanke and A. Neubauer, "Regularization of inverse
   problems", Kluwer, 1996 (the discrepancy principle for iterative methods).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from tikhon.operators.base import LinearOperator
from tikhon.operators.basic import Identity
from tikhon.operators.prox import SquaredL2, Zero
from tikhon.operators.sobolev import SobolevWeight

from tikhon._core.arrays import copy, full, norm, norms, tiny, to_float
from tikhon._core.checks import (
    check_bool,
    check_callable,
    check_choice,
    check_finite_array,
    check_functional,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_real,
    check_step,
    check_tolerance,
)
from tikhon._core.loop import Solver, State, run

from .first_order import ProximalGradient

__all__ = [
    "SobolevDescent",
    "SobolevState",
    "sobolev_data_term",
    "sobolev_fit",
    "white_noise_sobolev_level",
]

_WHERE = "sobolev_fit"


def _check_operator(A, where):
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: A must be a tikhon LinearOperator, got {type(A).__name__}")
    return A


def _check_order(s, where):
    if not isinstance(s, numbers.Real) or isinstance(s, bool):
        raise TypeError(f"{where}: s must be a real number, got {s!r}")
    return check_real(s, "s", where)


def sobolev_data_term(A, y, s, spacing=1.0):
    r"""The smooth data term ``1/2 ||A x - y||_{H^s}^2`` as a :class:`SquaredL2`.

    Parameters
    ----------
    A : LinearOperator
        Forward operator.
    y : array
        Data of shape ``A.out_shape``.
    s : float
        Sobolev order (any real; 0 is plain least squares).
    spacing : float or sequence of float
        Grid spacing of ``A``'s output grid (sets the frequencies ``xi``).

    Returns
    -------
    SquaredL2
        ``SquaredL2(b=W_s y, op=W_s @ A)`` with ``W_s = SobolevWeight(A.out_shape, s, spacing)``:
        its gradient is ``A^T W_{2s} (A x - y)`` and its Lipschitz constant
        ``||W_s A||^2`` (exactly ``max W_s^2`` when ``A`` is the identity).
    """
    A = _check_operator(A, "sobolev_data_term")
    s = _check_order(s, "sobolev_data_term")
    y = check_finite_array(y, "y", "sobolev_data_term", shape=A.out_shape)
    W = SobolevWeight(A.out_shape, s, spacing)
    f = SquaredL2(b=W(y), op=W if isinstance(A, Identity) else W @ A)
    if isinstance(A, Identity):
        f._lip = W.norm() ** 2  # exact: the largest multiplier (power iteration is slow here)
    return f


def white_noise_sobolev_level(shape, s, sigma, spacing=1.0):
    r"""Root-mean-square H^s norm of white Gaussian noise, ``sigma * sqrt(sum_xi (1 + |xi|^2)^s)``.

    For noise ``e`` with i.i.d. ``N(0, sigma^2)`` entries on a grid of
    ``shape``, ``E ||W_s e||_2^2 = sigma^2 trace(W_s^2) = sigma^2 sum_xi
    (1 + |xi|^2)^s`` (the sum over the full DFT grid); its square root is the
    ``noise_level`` to give :func:`sobolev_fit` with ``discrepancy_norm="sobolev"``.

    Parameters
    ----------
    shape : int or tuple of int
        Grid of the noise (``A``'s output shape).
    s : float
        Sobolev order.
    sigma : float
        Standard deviation of the noise (``>= 0``).
    spacing : float or sequence of float
        Grid spacing, as in :func:`sobolev_fit`.

    Returns
    -------
    float
        ``sqrt(E ||W_s e||_2^2)``; for ``s = 0`` it is ``sigma * sqrt(n)``, the L2 level.
    """
    where = "white_noise_sobolev_level"
    s = _check_order(s, where)
    sigma = check_nonneg(sigma, "sigma", where)
    shape = tuple(int(n) for n in np.atleast_1d(shape))
    m = SobolevWeight(shape, s, spacing).multiplier ** 2  # half spectrum (rfft) on the last axis
    n_last = shape[-1]
    # the rfft half counts every bin but the zero (and, for even n, the Nyquist) bin twice
    weight = np.full(m.shape[-1], 2.0)
    weight[0] = 1.0
    if n_last % 2 == 0:
        weight[-1] = 1.0
    return float(sigma * math.sqrt(float((m * weight).sum())))


@dataclass
class SobolevState(State):
    """State of :class:`SobolevDescent`.

    Attributes
    ----------
    x, x_prev : array or tensor
        Current and previous iterates.
    inner : ProxGradState or None
        State of the wrapped :class:`ProximalGradient` (H^s path); None on the
        preconditioned path.
    """

    x: Any = None
    x_prev: Any = None
    inner: Any = None


class SobolevDescent(Solver):
    """Gradient descent on ``1/2 ||A x - y||_{H^s}^2 (+ lam R(x))`` with early stopping.

    The solver object behind :func:`sobolev_fit` (see there for the
    parameters). On the H^s path each step is one
    :meth:`ProximalGradient.step` on ``f = sobolev_data_term(A, y, s)`` and
    ``g = lam * reg``; on the preconditioned path it is
    ``x <- x - t W_{2s} A^T (A x - y)``.
    """

    name = _WHERE

    def __init__(self, A, y, s, *, step=None, stop="none", noise_level=None, tau=1.0,
                 discrepancy_norm="l2", reg=None, lam=1.0, reference=None, preconditioned=False,
                 spacing=1.0):
        where = self.name
        self.A = _check_operator(A, where)
        self.s = _check_order(s, where)
        self.y = check_finite_array(y, "y", where, shape=A.out_shape)
        self.W = SobolevWeight(A.out_shape, self.s, spacing)
        self.preconditioned = check_bool(preconditioned, "preconditioned", where)
        if self.preconditioned:
            if A.in_shape != A.out_shape:
                raise ValueError(f"{where}: preconditioned=True needs A.in_shape == A.out_shape "
                                 f"(the weight acts on the image), got {A.in_shape} -> {A.out_shape}")
            if reg is not None:
                raise ValueError(f"{where}: reg is not supported with preconditioned=True "
                                 "(the prox would be needed in the H^-s metric)")
        self.discrepancy_norm = check_choice(discrepancy_norm, ("l2", "sobolev"),
                                             "discrepancy_norm", where)
        self.tau = check_positive(tau, "tau", where)
        self.noise_level = check_positive(noise_level, "noise_level", where, allow_none=True)
        if isinstance(stop, bool):
            raise TypeError(f"{where}: stop must be 'discrepancy', 'none' or an int, got {stop!r}")
        if isinstance(stop, numbers.Integral):
            self.n_stop = check_positive_int(stop, "stop", where)
            stop = "iterations"
        else:
            self.n_stop = None
            check_choice(stop, ("discrepancy", "none"), "stop", where)
        if stop == "discrepancy" and self.noise_level is None:
            raise ValueError(f"{where}: stop='discrepancy' needs noise_level=...")
        self.stop = stop
        self.criterion = {"discrepancy": "discrepancy", "none": "change",
                          "iterations": "change"}[stop]
        self.reference = check_finite_array(reference, "reference", where, shape=A.in_shape,
                                            allow_none=True)
        self._ref_norm = None if self.reference is None else max(norm(self.reference), 1e-300)
        self.lam = check_nonneg(lam, "lam", where)
        if reg is not None:
            check_functional(reg, "reg", where)
        self.reg = reg
        self.g = Zero() if reg is None else (reg if self.lam == 1.0 else self.lam * reg)
        if step is not None:
            step = check_step(step, where, "step")
        if self.preconditioned:
            self.P = SobolevWeight(A.in_shape, 2 * self.s, spacing)
            if step is None:
                V = SobolevWeight(A.in_shape, self.s, spacing)
                lip = V.norm() ** 2 if isinstance(A, Identity) else float((A @ V).norm()) ** 2
                step = 1.0 / lip
            self.step_size = step
            self.inner = None
        else:
            self.f = sobolev_data_term(A, self.y, self.s, spacing)
            self.inner = ProximalGradient(self.f, self.g, step=step, accelerate=False,
                                          backtracking=False, record_objective=False)
            self.step_size = 1.0 / self.inner.L0

    # -- protocol -------------------------------------------------------------
    def init(self, x0=None):
        """The initial state (``x0`` copied; default zeros of ``A.in_shape``)."""
        if x0 is None:
            x0 = full(self.A.in_shape, 0.0, self.y)  # the data's array type, dtype and device
        x0 = check_finite_array(x0, "x0", self.name, shape=self.A.in_shape)
        if self.preconditioned:
            x = copy(x0)
            return SobolevState(x=x, x_prev=x)
        inner = self.inner.init(x0)
        return SobolevState(x=inner.x, x_prev=inner.x, inner=inner)

    def step(self, state, *, step=None, lam=None):
        """One (proximal) gradient step; ``step`` and ``lam`` override the configured ones."""
        if self.preconditioned:
            t = self.step_size if step is None else step
            r = self.A.forward(state.x) - self.y
            x_new = state.x - t * self.P.forward(self.A.adjoint(r))
            state.x_prev, state.x = state.x, x_new
        else:
            inner = self.inner.step(state.inner, step=step, lam=lam)
            state.x_prev, state.x = inner.x_prev, inner.x
        state.k += 1
        return state

    def residuals(self, x):
        """``(||A x - y||_2, ||A x - y||_{H^s})``."""
        r = self.A.forward(x) - self.y
        return norm(r), norm(self.W.forward(r))

    def monitor(self, state):
        x = state.x
        n_change, n_x = norms(x - state.x_prev, x)
        res_l2, res_hs = self.residuals(x)
        if self.preconditioned:
            objective = 0.5 * res_l2 ** 2  # the L2 misfit, descended in the H^-s metric
        else:
            objective = 0.5 * res_hs ** 2 + to_float(self.g._call(x))
        out = {"change": n_change / max(n_x, tiny(x)), "residual_l2": res_l2,
               "residual_hs": res_hs, "objective": objective, "step": float(self.step_size)}
        if self.noise_level is not None:
            res = res_l2 if self.discrepancy_norm == "l2" else res_hs
            out["discrepancy"] = res / (self.tau * self.noise_level)
        if self.reference is not None:
            out["error"] = norm(x - self.reference) / self._ref_norm
        return out

    def done(self, state, record, tol):
        if self.stop == "iterations":
            return state.k >= self.n_stop
        if self.stop == "discrepancy":
            return record["discrepancy"] <= 1.0
        return record["change"] <= tol

    def describe(self, record, tol):
        if self.stop == "iterations":
            return f"the prescribed {self.n_stop} iterations are done"
        if self.stop == "discrepancy":
            which = "||A x - y||_2" if self.discrepancy_norm == "l2" else "||A x - y||_{H^s}"
            return (f"discrepancy principle: {which} <= tau * noise_level "
                    f"(ratio {record['discrepancy']:.4g}, tau = {self.tau:g})")
        return super().describe(record, tol)


def sobolev_fit(A, y, s, *, x0=None, step=None, max_iter=1000, stop=None, noise_level=None,
                tau=1.0, discrepancy_norm="l2", reg=None, lam=1.0, reference=None,
                preconditioned=False, spacing=1.0, tol=1e-8, callback=None, progress=False,
                check_every=1):
    r"""Fit ``y ~ A x`` in the Sobolev norm H^s by gradient descent, stopped early.

    Minimises ``F(x) = 1/2 ||A x - y||_{H^s}^2 + lam R(x)`` by (proximal)
    gradient descent from ``x0``, where
    ``||r||_{H^s}^2 = sum_xi (1 + |xi|^2)^s |F r(xi)|^2`` (normalised DFT)
    is the periodic Sobolev norm on ``A``'s output grid
    (:class:`~tikhon.operators.SobolevWeight`). Without ``reg`` the
    iteration is ``x <- x - t A^T W_{2s} (A x - y)``: for ``s < 0`` it fits
    the high frequencies, where white noise dominates, more slowly than the
    low ones, so stopping early regularizes without a penalty ([ZHLY21]).

    Parameters
    ----------
    A : LinearOperator
        Forward operator (:class:`~tikhon.operators.Identity` for denoising,
        :class:`~tikhon.operators.Convolution` for deblurring, ...).
    y : array
        Data of shape ``A.out_shape`` (finite, float32/float64).
    s : float
        Sobolev order: 0 is ordinary least squares (Landweber), negative orders
        damp high frequencies, positive ones emphasise them.
    x0 : array, optional
        Start (default zeros of ``A.in_shape``).
    step : float, optional
        Step size; default ``1 / ||W_s A||^2`` (the Lipschitz constant of the
        gradient: exact for ``A = Identity``, power iteration otherwise), and
        ``1 / ||A W_s||^2`` on the preconditioned path.
    max_iter : int
        Iteration budget (a ConvergenceWarning when reached without meeting the stop rule).
    stop : {"discrepancy", "none"} or int, optional
        ``"discrepancy"`` (the default when ``noise_level`` is given): stop at the
        first iterate with ``||A x - y|| <= tau * noise_level`` (Morozov's
        discrepancy principle, [EHN96]), the norm being ``discrepancy_norm``;
        ``"none"`` (the default otherwise): run until the relative change
        ``||x_k - x_{k-1}|| / ||x_k|| <= tol``; an int ``k``: exactly ``k``
        iterations (status ``"converged"``: that is the rule asked for).
    noise_level : float, optional
        Norm of the noise ``||y - A x_true||`` in the norm ``discrepancy_norm``
        (for white noise of standard deviation ``sigma`` on ``m`` samples,
        ``sigma * sqrt(m)`` in L2; :func:`white_noise_sobolev_level` in H^s).
    tau : float
        Safety factor of the discrepancy principle, usually 1.0 to 1.1 (the
        theory of [EHN96] asks ``tau > 1``; 1.0 stops latest). Default 1.0.
    discrepancy_norm : {"l2", "sobolev"}
        Norm of the residual that the discrepancy principle compares with
        ``tau * noise_level``: the plain L2 norm (default, the usual reading of
        a noise level) or the H^s norm of the fit.
    reg : Functional, optional
        Explicit regularizer ``R`` with a prox (e.g. ``L1``, ``NonNegative``):
        the method becomes the proximal gradient method (ISTA).
    lam : float
        Weight of ``reg`` (``>= 0``).
    reference : array, optional
        Ground truth of ``A.in_shape``: the history then records
        ``error = ||x_k - reference|| / ||reference||``.
    preconditioned : bool
        Run the equivalent view: L2 gradient descent preconditioned by the
        Sobolev weight of the image grid, ``x <- x - t W_{2s} A^T (A x - y)``
        (a descent on ``1/2 ||A x - y||_2^2`` in the H^{-s} metric, a
        "Sobolev gradient flow"). It gives the same iterates as the H^s data
        term whenever ``A`` commutes with the weight (``Identity``,
        ``Convolution(..., boundary="periodic")``, any Fourier multiplier on
        the same grid) and the same step is used; otherwise it is a different
        method. Needs ``A.in_shape == A.out_shape``; no ``reg``.
    spacing : float or sequence of float
        Grid spacing ``h``; the frequencies are ``xi = 2 pi k / (n h)``
        (default 1: pixel units, ``|xi| <= pi`` per axis). It sets where the
        weight ``(1 + |xi|^2)^s`` turns from 1 to ``|xi|^{2s}``.
    tol : float
        Tolerance of ``stop="none"``.
    callback : callable, optional
        ``callback(state) -> bool`` after every iteration (``state.x`` is the
        iterate); True stops (status ``"callback"``).
    progress : bool
        tqdm progress bar.
    check_every : int
        Iterations between checks (history, stop rule); the discrepancy
        principle is only tested at checks, so keep 1 to stop at the first
        iterate that meets it.

    Returns
    -------
    Result
        ``x``; ``history`` with ``residual_l2`` (``||A x - y||_2``),
        ``residual_hs`` (``||A x - y||_{H^s}``), ``objective``, ``change``,
        ``step``, ``discrepancy`` (residual over ``tau * noise_level``, when a
        noise level is given) and ``error`` (with ``reference``);
        ``steps["step"]``; ``info`` with ``s``, ``stop`` and ``preconditioned``.

    Raises
    ------
    TypeError
        If ``A`` is not a LinearOperator, ``s`` not a real number, or arrays not float.
    ValueError
        On shape mismatches, NaN/inf data, a nonpositive ``step``, ``tau`` or
        ``noise_level``, ``stop="discrepancy"`` without ``noise_level``, an
        unknown ``stop``/``discrepancy_norm``, or ``reg`` with ``preconditioned=True``.

    Notes
    -----
    Boundary: the weight is periodic on ``A``'s output grid, so a
    non-periodic image has a jump across its border that the weight reads as
    high frequencies (which ``s < 0`` fits late); pad the image if this
    matters.

    With ``A = Identity`` and ``x0 = 0`` each Fourier coefficient follows
    ``x_k(xi) = (1 - (1 - t w(xi))^k) y(xi)``, ``w = (1 + |xi|^2)^s``: a
    spectral filter that reaches ``y`` itself as ``k -> oo``, so the stopping
    index is the regularization parameter. For ``s = 0`` and the default step
    the first iterate is already ``y``.

    References
    ----------
    [ZHLY21], [EHN96] (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import Identity
    >>> from tikhon.solvers import sobolev_fit
    >>> rng = np.random.default_rng(0)
    >>> clean = np.outer(np.hanning(32), np.hanning(32))
    >>> noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    >>> res = sobolev_fit(Identity(clean.shape), noisy, -1.0, noise_level=0.1 * 32)
    >>> res.status, bool(np.linalg.norm(res.x - clean) < np.linalg.norm(noisy - clean))
    ('converged', True)
    """
    if stop is None:
        stop = "none" if noise_level is None else "discrepancy"
    check_callable(callback, "callback", _WHERE)
    check_tolerance(tol, "tol", _WHERE)
    solver = SobolevDescent(A, y, s, step=step, stop=stop, noise_level=noise_level, tau=tau,
                            discrepancy_norm=discrepancy_norm, reg=reg, lam=lam,
                            reference=reference, preconditioned=preconditioned, spacing=spacing)
    if solver.n_stop is not None:
        max_iter = solver.n_stop
    state = solver.init(x0)
    state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                         progress=progress, check_every=check_every)
    info = {"s": solver.s, "stop": solver.stop, "preconditioned": solver.preconditioned}
    return outcome.result(state.x, steps={"step": float(solver.step_size)}, info=info)
