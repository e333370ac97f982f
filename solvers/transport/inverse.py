"""l1-regularised inverse entropic optimal transport: :func:`inverse_ot`.

Given an observed coupling ``P_hat`` between points ``X`` (n x d1) and ``Y``
(m x d2), estimate a parametrised cost ``C_A = -sum_k A_k Phi_k`` (by default
bilinear, ``C_A(x, y) = -x^T A y``) by l1-penalised maximum likelihood in the
entropic OT model, as in Andrade, Peyre and Poon, "Sparsistency for Inverse
Optimal Transport" (ICLR 2024). The loss is :mod:`._inverse_model`'s; the
solver is the library's FISTA with the KKT residual as its criterion.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tikhon._core.arrays import copy, is_torch, torch_module, xp_maximum0, xp_sign, xp_where
from tikhon._core.checks import as_real_array, check_nonneg, check_tolerance
from tikhon._core.loop import run
from tikhon.operators.prox import L1, smooth_functional
from tikhon.solvers.first_order import ProximalGradient
from tikhon.solvers.transport._inverse_model import Model, backend_spec, float_array

__all__ = ["inverse_ot"]

_WHERE = "inverse_ot"


def _kkt(A, grad, lam):
    """Largest distance of -grad to lam * subdifferential of ||A||_1."""
    r = xp_where(A != 0, abs(grad + lam * xp_sign(A)), xp_maximum0(abs(grad) - lam))
    size = r.numel() if is_torch(r) else r.size
    return float(r.max()) if size else 0.0


class _InverseFISTA(ProximalGradient):
    """FISTA on ``L(A) + lam ||A||_1`` stopped on the KKT residual over ``scale``.

    ``L`` is the model's Sinkhorn-backed loss (``grad_with_value``: the
    backtracking keeps the gradient of every trial point, and the next
    gradient step at an accepted iterate reuses it).
    """

    def __init__(self, model, lam, scale, step):
        super().__init__(smooth_functional(model.value_grad), lam * L1(), step=step, accelerate=True,
                         backtracking=True, shrink=0.9, restart="gradient")
        self.name = _WHERE
        self.criterion = "kkt"
        self.lam, self.scale = lam, scale

    def monitor(self, state):
        # F (value plus penalty) and gx (the gradient at x) come from the backtracking
        return {"objective": state.F, "kkt": _kkt(state.x, state.gx, self.lam) / self.scale,
                "lipschitz": float(state.L)}


def _scalars(value, name):
    """A number, sequence, array or tensor of numbers as a list of Python floats."""
    if value is None:
        return []
    if is_torch(value):
        # parameters, not iterates: read once, before the iterations
        return [float(v) for v in value.detach().reshape(-1)]
    # as_real_array refuses strings and complex numbers, which float() would convert or truncate
    arr = as_real_array(value, name, _WHERE)
    if np.asarray(value).dtype == bool:
        raise TypeError(f"{_WHERE}: {name} must be a number or a sequence of numbers, got {value!r}")
    return np.atleast_1d(arr).ravel().tolist()


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
    and Poon (ICLR 2024). Solved by the library's FISTA
    (:class:`~tikhon.solvers.ProximalGradient` with backtracking, a step
    that may grow back by 1/0.9 per iteration, and gradient restart) on
    ``smooth_functional(L) + lam * L1()``, stopped on the KKT residual below;
    every evaluation of ``L`` and its gradient is one Sinkhorn solve
    warm-started from the previous potentials (a point evaluated twice is
    solved once).

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
        ``state`` is FISTA's :class:`~tikhon.solvers.first_order.ProxGradState`
        (``k``, ``x`` the estimate of ``A``, ``fx``/``gx`` the loss and its
        gradient there, ``L`` the inverse step, ...).
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
        ``status`` is that of the last ``lam``'s solve: ``"converged"``,
        ``"max_iter"`` or ``"callback"`` (``"nonfinite"`` cannot occur: a
        failed inner solve raises ``FloatingPointError`` instead).

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
    tol = check_tolerance(tol, "tol", _WHERE)
    sinkhorn_tol = check_tolerance(sinkhorn_tol, "sinkhorn_tol", _WHERE)
    spec = backend_spec({"X": X, "Y": Y, "coupling": coupling, "features": features, "a": a, "b": b,
                         "x0": x0})
    lams = [check_nonneg(v, "lam", _WHERE) for v in _scalars(lam_path, "lam_path") + _scalars(lam, "lam")]
    if not lams:
        raise ValueError(f"{_WHERE}: lam is empty")
    model = Model(X, Y, coupling, eps, features, a, b, sinkhorn_tol)
    zero = model.zeros()
    _, grad0 = model.value_grad(zero)
    lam_max = float(abs(grad0).max())
    scale = lam_max if lam_max > 0 else 1.0
    if x0 is None:
        A = zero
    else:
        A = float_array(x0, "x0", len(model.shape), spec)
        if tuple(A.shape) != model.shape:
            raise ValueError(f"{_WHERE}: x0 must have shape {model.shape}, got {tuple(A.shape)}")
    L = model.curvature()
    path, conv, n_total, elapsed = [], [], 0, 0.0
    for value in lams:
        solver = _InverseFISTA(model, value, scale, step=1.0 / L)
        state, outcome = run(solver, solver.init(A), tol=tol, max_iter=max_iter,
                             callback=callback, progress=progress, warn=warn)
        A, L = state.x, float(state.L)
        path.append(copy(A))
        conv.append(outcome.converged)
        n_total += outcome.n_iter
        elapsed += outcome.elapsed
    # the loss at the estimate comes from the backtracking test that accepted it
    info = {"lam_max": lam_max, "loss": float(state.fx), "n_sinkhorn": model.n_sinkhorn}
    # the model plan at the returned estimate (its last evaluation: no new solve)
    res = model.solution_at(A)
    info["plan"] = res.x
    if len(lams) > 1:
        if spec is None:
            info.update(path=np.stack(path), lams=np.asarray(lams), path_converged=np.asarray(conv))
        else:
            torch = torch_module()
            info.update(
                path=torch.stack(path),
                lams=torch.tensor(lams, dtype=spec[0], device=spec[1]),
                path_converged=torch.tensor(conv, dtype=torch.bool, device=spec[1]),
            )
    outcome = dataclasses.replace(outcome, n_iter=n_total, elapsed=elapsed)
    return outcome.result(A, steps={"step": 1.0 / L}, dual=res.dual, info=info)
