"""Class-based optimal transport with a sum-of-norms (group lasso) regulariser: :func:`class_ot`.

Solves, for source points with class labels ``y_i`` and ``I_c = {i : y_i = c}``,

.. math::

    \\min_{P \\in U(a, b)} \\langle C, P\\rangle
        + \\lambda \\sum_{j=1}^m \\sum_{c} \\|P_{I_c, j}\\|_2,
    \\qquad U(a, b) = \\{P \\ge 0,\\ P 1 = a,\\ P^T 1 = b\\},

the sum-of-norms class regulariser of Rahbar, Panahi, Chehreghani, Dubhashi and
Krim, "Recovery Bounds on Class-Based Optimal Transport: A Sum-of-Norms
Regularization Framework" (ICML 2023): each target point is encouraged to receive
its mass from as few source classes as possible.

This module validates, dispatches and builds the one result; the methods are
:mod:`._ssnal` and :mod:`._douglas_rachford` (on either layout of
:mod:`._class_ot_layout`), the certificate :mod:`._class_ot_certificate`.
"""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import all_finite, backend_of, is_torch, torch_module
from tikhon._core.checks import (
    as_real_array,
    check_callable,
    check_choice,
    check_finite_array,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_real,
    check_same_device,
    check_tolerance,
)
from tikhon._core.loop import run
from tikhon.solvers.transport._class_ot_certificate import certify
from tikhon.solvers.transport._class_ot_layout import NumpyLayout, TorchLayout
from tikhon.solvers.transport._douglas_rachford import DouglasRachford
from tikhon.solvers.transport._ssnal import SSNAL
from tikhon.solvers.transport._validation import cost_and_marginals

__all__ = ["class_ot", "class_regularizer"]

_WHERE = "class_ot"


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
    P = check_finite_array(as_real_array(P, "P", "class_regularizer"), "P", "class_regularizer")
    labels = np.asarray(source_classes)
    if P.ndim != 2 or labels.shape != (P.shape[0],):
        raise ValueError("class_regularizer: P must be (n, m) and source_classes of length n")
    _, inverse = np.unique(labels, return_inverse=True)
    sq = np.zeros((inverse.max() + 1, P.shape[1]))
    np.add.at(sq, inverse, P * P)
    return float(np.sqrt(sq).sum())


def _class_index(source_classes, n, C):
    """Class index ``0..ncls-1`` of every source point, on ``C``'s backend (int64).

    Tensor labels with tensor data are indexed on the device; any other
    labels on the host (NumPy data with tensor labels: the labels join the
    data there), then sent to the device once, before any iteration.
    """
    labels = source_classes
    on_device = is_torch(labels) and is_torch(C)
    if is_torch(labels) and not on_device:
        labels = labels.detach().cpu().numpy()
    if not on_device:
        labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{_WHERE}: source_classes must be a 1-D array of length n = {n}, got shape {tuple(labels.shape)}"
        )
    if on_device:
        torch = torch_module()
        if labels.dtype.is_complex:
            raise TypeError(f"{_WHERE}: source_classes must be real or integer, got {labels.dtype}")
        floating = labels.dtype.is_floating_point
    else:
        floating = labels.dtype.kind == "f"
    if floating and not all_finite(labels):
        raise ValueError(f"{_WHERE}: source_classes contains NaN or inf")
    if on_device:
        _, inverse = torch.unique(labels.to(C.device), sorted=True, return_inverse=True)
        return inverse.to(torch.int64)
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return torch_module().as_tensor(inverse, device=C.device) if is_torch(C) else inverse


def _choose_step(step, mass, n, m, cscale, lam):
    """The user's step, or the default ``10 mass sqrt(max(n, m)) / (n m mean|C|)``."""
    if step is not None:
        return step
    if cscale == 0.0:
        cscale = max(lam, 1.0)
    # the optimal plan is sparse (about n + m entries of size mass / n), so the
    # ratio of plan to reduced-cost norms, the natural DR step, scales like
    # mass / (n m) * sqrt(max(n, m)) / |C|; the factor 10 was tuned on
    # Gaussian-cluster problems with n in [60, 300], for both methods
    t = float(10.0 * mass / (n * m) * np.sqrt(max(n, m)) / cscale)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{_WHERE}: no default step for this scale of C and a (mean |C| = {cscale:g}, "
                         f"mass {mass:g}); rescale them or pass step=...")
    return t


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
        ``callback(state) -> bool`` after every iteration; True stops.
        ``state`` is a dataclass with ``k`` (iterations done) and ``best``
        (the best :class:`~._class_ot_certificate.Certificate` so far, or
        None): an ``SSNALState`` (``f``, ``g``, ``t`` = sigma, ...) or a
        ``DRState`` (``Z``, ``X``, ``u``, ``v``, ...).
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
        ``status``: ``"converged"`` (certified gap ``<= tol``),
        ``"max_iter"`` (with a warning unless ``warn=False``),
        ``"nonfinite"`` (the gap or the iterates became NaN or inf) or
        ``"callback"``.

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
    tol = check_tolerance(tol, "tol", _WHERE)
    check_choice(method, (None, "ssnal", "douglas_rachford"), "method", _WHERE)
    backend = backend_of(_WHERE, a=a, b=b, C=C, x0=x0)
    if backend == "torch" and method == "ssnal":
        raise ValueError(
            f"{_WHERE}: method='ssnal' (a sparse Newton-CG method) runs on the CPU only; "
            "pass NumPy arrays for SSNAL, or use method='douglas_rachford' (the default "
            "for torch tensors)"
        )
    if method is None:
        method = "douglas_rachford" if backend == "torch" else "ssnal"
    ssnal = method == "ssnal"
    max_iter = check_positive_int(max_iter, "max_iter", _WHERE, allow_none=True)
    max_iter = (1000 if ssnal else 20000) if max_iter is None else max_iter
    check_every = check_positive_int(check_every, "check_every", _WHERE, allow_none=True)
    check_every = (1 if ssnal else 50) if check_every is None else check_every
    step = check_positive(step, "step", _WHERE, allow_none=True)
    check_callable(callback, "callback", _WHERE)

    a, b, C, inverse, lam = _validate(a, b, C, source_classes, lam, eps)
    n, m = C.shape
    x0 = check_finite_array(x0, "x0", _WHERE, shape=(n, m), allow_none=True)
    check_same_device(_WHERE, C=C, x0=x0)
    layout = (TorchLayout if backend == "torch" else NumpyLayout)(a, b, C, inverse)
    t = _choose_step(step, layout.mass, n, m, layout.cost_scale, lam)
    if ssnal:
        solver = SSNAL(layout, lam, t)
    else:
        solver = DouglasRachford(layout, lam, t)
    with layout.context():
        state = solver.init(layout.initial_plan(x0))
        state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                             progress=progress, check_every=check_every, warn=warn)
        best = state.best
        if best is None:  # stopped before any check: certify where it stands
            best, *_ = certify(layout, None, *solver.point(state), lam)
        plan, f, g = layout.to_user(best.P, best.f, best.g)
    return outcome.result(
        plan,
        steps={"sigma" if ssnal else "step": state.t if ssnal else t},
        dual=(f, g),
        info={
            "objective": best.primal,
            "dual_objective": best.dual,
            "gap": best.primal - best.dual,
            "rel_gap": best.rel,
            "transport_cost": best.cost,
            "regularizer": best.reg,
            "method": method,
        },
    )


def _validate(a, b, C, source_classes, lam, eps):
    """``(a, b, C, class index, lam)``: marginals of equal mass (``b`` rescaled to ``a``'s).

    NumPy: float64 arrays. Torch: float64 marginals and ``C`` as given, all on
    ``C``'s device.
    """
    # torch marginals in float64 on C's device: the certificate is float64
    like = (torch_module().empty(0, dtype=torch_module().float64, device=C.device)
            if is_torch(C) else None)
    a, b, C = cost_and_marginals(a, b, C, _WHERE, balanced=True, marginals_like=like)
    sa, sb = float(a.sum()), float(b.sum())
    inverse = _class_index(source_classes, C.shape[0], C)
    lam = check_nonneg(lam, "lam", _WHERE)
    if check_real(eps, "eps", _WHERE) != 0.0:
        raise ValueError(
            f"{_WHERE}: only the exact problem eps = 0 is implemented, got eps = {eps!r} "
            "(for an entropic variant use POT's ot.da.sinkhorn_l1l2_gl)"
        )
    return a, b * (sa / sb), C, inverse, lam
