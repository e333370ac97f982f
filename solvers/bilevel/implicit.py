"""The hypergradient of a bilevel problem by implicit differentiation, with its error bound.

At a lower-level solution ``x*(theta)``, ``grad_x g(x*, theta) = 0``; the
implicit function theorem gives ``dx*/dtheta = -A^{-1} B`` with ``A = Hess_xx
g`` and ``B = d2_{theta x} g`` (an ``n_x`` by ``n_params`` matrix), so the
hypergradient of ``f(x*(theta))`` is ``-B^T A^{-1} grad f``. Here it is taken
at an approximate ``x~`` and with an approximate adjoint ``q ~ A^{-1} grad f``
(conjugate gradients), and the bound on the error that these two
approximations cause comes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tikhon._core.arrays import backend_of, is_torch
from tikhon._core.cg import conjugate_gradient
from tikhon._core.checks import (
    check_finite_array,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_tolerance,
)

from .protocol import LowerLevel, UpperLevel

__all__ = ["hypergradient"]

_WHERE = "hypergradient"
# power iterations on B^T B per call: a cold start, and a warm start from the
# previous call's vector (B changes little between MAID's iterates)
_POWER_COLD, _POWER_WARM = 8, 1
# the Lipschitz probes run at every call until _PROBE_STABLE probes in a row raised
# neither running maximum by more than _PROBE_RISE, then at every _PROBE_EVERY-th call
_PROBE_STABLE, _PROBE_RISE, _PROBE_EVERY = 3, 0.1, 10


@dataclass(frozen=True)
class _Estimates:
    """The online estimates of the constants of the bound (carried from call to call)."""

    B: float  # ||d2_{theta x} g(x~)||, by power iteration
    L_B: float  # Lipschitz constant of x -> d2_{theta x} g(x), running max of probes
    L_A: float  # Lipschitz constant of x -> Hess_xx g(x), running max of probes
    v: object  # the power iteration's vector (theta-space), for a warm start
    calls: int = 1  # calls that have updated these estimates
    stable: int = 0  # probes in a row that raised neither maximum by more than _PROBE_RISE


@dataclass(frozen=True)
class _HyperGradient:
    grad: object
    residual: float
    n_iter: int
    converged: bool
    bound: float
    eps: float
    q: object
    estimates: _Estimates


class _Linearization:
    """The derivatives of ``grad_x g`` at one point, the graph of ``grad`` built once.

    A lower level that overrides :meth:`LowerLevel.hvp` or
    :meth:`LowerLevel.mixed_vjp` is called for those products instead.
    """

    def __init__(self, lower, x, theta):
        import torch

        self.lower = lower
        self.own_hvp = type(lower).hvp is not LowerLevel.hvp
        self.own_mixed = type(lower).mixed_vjp is not LowerLevel.mixed_vjp
        self.x = x.detach().requires_grad_(True)
        self.theta = theta.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                self.gx = lower.grad(self.x, self.theta)
        except RuntimeError as err:  # torch's shape mismatch: say which argument
            raise ValueError(f"{_WHERE}: x of shape {tuple(x.shape)} does not fit the lower "
                             f"level (lower.grad(x, theta) failed: {err})") from err
        if tuple(self.gx.shape) != tuple(x.shape):
            raise ValueError(f"{_WHERE}: lower.grad returned shape {tuple(self.gx.shape)} "
                             f"for x of shape {tuple(x.shape)}")

    def _grad(self, out, wrt, v, create_graph=False):
        import torch

        with torch.enable_grad():
            (d,) = torch.autograd.grad(out, wrt, grad_outputs=v, retain_graph=True,
                                       create_graph=create_graph, allow_unused=True)
        return torch.zeros_like(wrt) if d is None else d

    def hvp(self, v):
        if self.own_hvp:
            return self.lower.hvp(self.x.detach(), self.theta.detach(), v)
        if not self.gx.requires_grad:
            raise ValueError(f"{_WHERE}: lower.grad(x, theta) keeps no autograd graph; "
                             "keep it (create_graph) or override LowerLevel.hvp")
        return self._grad(self.gx, self.x, v)

    def mixed_vjp(self, w, create_graph=False):
        """``B^T w``, in theta-space."""
        if self.own_mixed:
            return self.lower.mixed_vjp(self.x.detach(), self.theta.detach(), w)
        if not self.gx.requires_grad:
            raise ValueError(f"{_WHERE}: lower.grad(x, theta) keeps no autograd graph; "
                             "keep it (create_graph) or override LowerLevel.mixed_vjp")
        return self._grad(self.gx, self.theta, w, create_graph=create_graph)

    def both(self, q):
        """``(A q, B^T q)``: one backward pass through the graph for the two."""
        if self.own_hvp or self.own_mixed:
            return self.hvp(q), self.mixed_vjp(q)
        import torch

        with torch.enable_grad():
            Aq, m = torch.autograd.grad(self.gx, (self.x, self.theta), grad_outputs=q,
                                        retain_graph=True, allow_unused=True)
        return (torch.zeros_like(self.x) if Aq is None else Aq,
                torch.zeros_like(self.theta) if m is None else m)

    def mixed_jvp(self, v):
        """``B v``, in x-space, by a forward difference of ``grad_x g`` in ``theta``.

        Only the bound's power iteration uses it: the difference costs one
        gradient without a graph (``grad_x g`` at this point is at hand), far
        less than differentiating ``w -> B^T w`` once more, and its relative
        error, about the step ``1e-6``, is immaterial to a norm estimate.
        """
        import torch

        s = 1e-6 * max(1.0, _norm(self.theta.detach()))
        with torch.no_grad():
            moved = self.lower.grad(self.x.detach(), self.theta.detach() + s * v)
        return ((moved - self.gx.detach()) / s).detach()


def _dot(a, b):
    return float((a * b).sum())


def _norm(a):
    import torch

    return float(torch.linalg.vector_norm(a))


def _cg(hvp, b, q0, tol, max_iter):
    """Conjugate gradients on ``A q = b`` until ``||r|| <= tol``; ``(q, iterations, A q0)``.

    ``r`` is the recursively updated residual, which in finite precision can
    fall far below the true ``||b - A q||`` once that stalls: the caller
    measures the true residual of the ``q`` returned. The third value is the
    exact ``A q`` when no iteration ran from a given ``q0`` (a warm start that
    already met ``tol``), else None.
    """
    if q0 is None:
        q, _, k = conjugate_gradient(hvp, b, stop=tol * tol, max_iter=max_iter, dot=_dot)
        return q, k, None
    Aq0 = hvp(q0)
    q, _, k = conjugate_gradient(hvp, b, q0, stop=tol * tol, max_iter=max_iter, r0=b - Aq0,
                                 dot=_dot)
    return q, k, (Aq0 if k == 0 else None)


def _power(lin, v, n):
    """``n`` power iterations on ``B^T B`` from ``v``; ``(lower bound of ||B||, vector)``."""
    import torch

    best = 0.0
    if v is None or _norm(v) == 0:
        v = torch.ones_like(lin.theta)
    v = v / _norm(v)
    for _ in range(n):
        u = lin.mixed_jvp(v)
        nu = _norm(u)
        if nu == 0:
            break
        w = lin.mixed_vjp(u)
        nw = _norm(w)
        best = max(best, nu, nw / nu)  # ||B v|| and ||B^T u|| / ||u||, both <= ||B||
        if nw == 0:
            break
        v = w / nw
    return best, v


def _hypergradient(upper, lower, theta, x, *, tol, rtol, max_iter, eps=None, q0=None,
                   estimates=None, where=_WHERE):
    """The computation of :func:`hypergradient` on torch tensors, inputs trusted."""
    # checked here, before any product: the bound divides by mu
    mu = check_positive(float(lower.strong_convexity(theta)), "lower.strong_convexity(theta)",
                        where)
    L_f = float(upper.lipschitz)  # checked with the levels
    lin = _Linearization(lower, x, theta)
    if eps is None:
        eps = _norm(lin.gx.detach()) / mu
    b = upper.grad(x.detach()).detach()
    nb = _norm(b)
    target = max(tol, rtol * nb)
    q, k, Aq = _cg(lin.hvp, b, q0, target, max_iter)
    # the true residual (CG's recursive one drifts below it in finite precision);
    # through the graph one backward pass gives A q and B^T q together
    if Aq is None:
        Aq, m0 = lin.both(q)
    else:  # the warm start met the tolerance: its A q is exact already
        m0 = lin.mixed_vjp(q)
    Aq, m0 = Aq.detach(), m0.detach()
    residual = _norm(b - Aq)
    grad = -m0

    # ||B(x~)||: power iteration, warm-started; ||B^T q|| / ||q|| is a lower bound too
    cold = estimates is None
    B, v = _power(lin, None if cold else estimates.v, _POWER_COLD if cold else _POWER_WARM)
    nq = _norm(q)
    if nq > 0:
        B = max(B, _norm(m0) / nq)
    # Lipschitz constants of x -> A(x) and x -> B(x): a probe along grad_x g (a
    # cheap direction correlated with x~ - x* ~ A^{-1} grad_x g), kept as running maxima
    L_A = 0.0 if cold else estimates.L_A
    L_B = 0.0 if cold else estimates.L_B
    calls = 1 if cold else estimates.calls + 1
    stable = 0 if cold else estimates.stable
    if nq > 0 and (stable < _PROBE_STABLE or calls % _PROBE_EVERY == 0):
        gx = lin.gx.detach()
        ng = _norm(gx)
        direction = gx / ng if ng > 0 else q / nq
        h = max(eps, 1e-6 * (1.0 + _norm(x)))
        probe = _Linearization(lower, x.detach() + h * direction, theta)
        Aq1, m1 = probe.both(q)
        new_A = _norm(Aq1 - Aq) / (h * nq)
        new_B = _norm(m1.detach() - m0) / (h * nq)
        # quotients at the rounding level of the products (a constant Hessian) are no rise
        floor_A, floor_B = (1e-12 * _norm(a) / (h * nq) for a in (Aq, m0))
        rose = (new_A > max((1 + _PROBE_RISE) * L_A, floor_A)
                or new_B > max((1 + _PROBE_RISE) * L_B, floor_B))
        stable = 0 if rose else stable + 1
        L_A, L_B = max(L_A, new_A), max(L_B, new_B)
    # ||h - p|| <= ||(B* - B~)^T A*^{-1} b*|| + ||B~^T (A*^{-1} b* - A~^{-1} b~)||
    #            + ||B~^T (A~^{-1} b~ - q)||, with ||b* - b~|| <= L_f eps,
    # ||A*^{-1} - A~^{-1}|| <= L_A eps / mu^2 and ||b*|| <= ||b~|| + L_f eps
    lip = L_B / mu + B * L_A / mu**2
    c = B * L_f / mu + lip * nb
    bound = c * eps + (B / mu) * residual + lip * L_f * eps**2
    return _HyperGradient(
        grad=grad, residual=residual, n_iter=k, converged=residual <= target,
        bound=float(bound), eps=float(eps), q=q.detach(),
        estimates=_Estimates(B=float(B), L_B=float(L_B), L_A=float(L_A), v=v.detach(),
                             calls=calls, stable=stable),
    )


def hypergradient(upper, lower, theta, x, *, tol=0.0, rtol=1e-8, max_iter=1000, eps=None,
                  q0=None, estimates=None):
    r"""The hypergradient of ``f(x*(theta))`` at an approximate ``x``, with an error bound.

    Solves ``A q = grad f(x)`` with ``A = Hess_xx g(x, theta)`` by conjugate
    gradients (from ``q0``, else zero) and returns ``p = -B^T q`` with ``B =
    d2_{theta x} g(x, theta)``. The Hessian-vector products and the mixed
    products are taken by double autograd through ``lower.grad`` (the graph is
    built once per call) unless the lower level overrides ``hvp`` or
    ``mixed_vjp`` of :class:`~tikhon.solvers.bilevel.LowerLevel` with a closed
    form.

    With ``||x - x*|| <= eps`` and the CG residual ``delta = ||A q - grad
    f(x)||``, the distance of ``p`` to the exact hypergradient ``h`` is at most

    ``omega = c eps + (B / mu) delta + L_f (L_B / mu + B L_A / mu^2) eps^2``,
    ``c = B L_f / mu + (L_B / mu + B L_A / mu^2) ||grad f(x)||``,

    the bound of Salehi et al. written out: ``mu`` is
    ``lower.strong_convexity(theta)``, ``L_f`` is ``upper.lipschitz``, ``B``
    the norm of ``d2_{theta x} g(x)`` and ``L_B``, ``L_A`` the Lipschitz
    constants of ``x -> d2_{theta x} g(x)`` and ``x -> Hess_xx g(x)`` (``L_A``
    enters through ``||A(x*)^{-1} - A(x)^{-1}|| <= L_A eps / mu^2``). The
    constants are estimated online: ``B`` by power iteration on ``B^T B``
    (warm-started from the previous call's vector), ``L_B`` and ``L_A`` as the
    running maxima of difference quotients of ``B^T q`` and ``A q`` along
    ``grad_x g(x)`` (cheap, and correlated with ``x - x* ~ A^{-1} grad_x
    g(x)``, the same direction only when ``A`` is a multiple of the
    identity); these
    probes run at every call until three in a row raised neither maximum by
    more than 10%, then at every tenth call (they cost a second graph of
    ``grad``). They are
    estimates, so ``omega`` is an estimate of a bound, not a certificate;
    ``tests/solvers/bilevel/test_hypergradient.py`` checks it against the true
    error. The authors' code probes in a random direction instead.

    Parameters
    ----------
    upper : UpperLevel
        The upper-level loss ``f`` (its ``grad`` and ``lipschitz``).
    lower : LowerLevel
        The lower-level problem ``g`` (its ``grad``, ``strong_convexity``, and
        optionally ``hvp`` and ``mixed_vjp``).
    theta : numpy.ndarray or torch.Tensor
        The parameters, 1-D with ``lower.n_params`` entries.
    x : numpy.ndarray or torch.Tensor
        The approximate lower-level solution at ``theta``. NumPy inputs are
        converted to float64 CPU tensors and the results converted back;
        tensors stay on their device.
    tol : float
        Absolute CG tolerance: CG stops once its residual is at most
        ``max(tol, rtol ||grad f(x)||)`` (default 0: the relative ``rtol``
        alone, which does not depend on the scale of ``f``). MAID passes its
        ``delta`` here with ``rtol=0``.
    rtol : float
        Relative CG tolerance, as a fraction of ``||grad f(x)||`` (the
        issue's "CG to a relative residual").
    max_iter : int
        Most CG iterations.
    eps : float, optional
        A bound on ``||x - x*||``. By default it is measured as ``||grad_x
        g(x, theta)|| / mu``, which strong convexity guarantees.
    q0 : numpy.ndarray or torch.Tensor, optional
        A starting point for CG (e.g. the ``q`` of a previous call at a nearby
        point).
    estimates : object, optional
        The ``estimates`` returned by a previous call, to warm-start the power
        iteration and continue the running maxima; ``None`` starts afresh.

    Returns
    -------
    object
        A frozen dataclass with the fields ``grad`` (the hypergradient ``p``,
        like ``theta``), ``residual`` (the true CG residual ``delta = ||A q -
        grad f(x)||`` of the ``q`` returned, recomputed after CG: the
        recursion's residual can fall orders of magnitude below it in float32
        or on an ill-conditioned ``A``), ``n_iter`` (CG iterations, one
        Hessian-vector product each; a call costs ``n_iter`` products, one
        more with ``q0``, one for the true residual and the mixed product
        together, and the bound's power iteration and probe), ``converged``
        (whether the true residual meets the tolerance),
        ``bound`` (``omega`` above), ``eps`` (the accuracy of ``x`` it used),
        ``q`` (the adjoint, like ``x``) and ``estimates`` (the constants ``B``,
        ``L_B``, ``L_A`` and the power iteration's vector, to pass to the next
        call).

    Raises
    ------
    ValueError
        ``theta`` not 1-D with ``lower.n_params`` entries, ``x`` of a shape
        the lower level does not take, non-finite inputs, negative
        tolerances, ``lower.strong_convexity(theta)`` not > 0, an
        ``upper.lipschitz`` that is missing, negative or not finite.
    TypeError
        ``upper`` or ``lower`` of the wrong kind, mixed NumPy and torch
        inputs, tensors of different dtypes or devices.

    References
    ----------
    M. S. Salehi, S. Mukherjee, L. Roberts and M. J. Ehrhardt, "An adaptively
    inexact first-order method for bilevel optimization with application to
    hyperparameter learning", SIAM J. Math. Data Sci., 2025 (arXiv:2308.10098).

    F. Pedregosa, "Hyperparameter optimization with approximate gradient",
    ICML 2016.
    """
    upper, lower = _check_levels(upper, lower, _WHERE)
    kind = backend_of(_WHERE, theta=theta, x=x, q0=q0)
    tol = check_tolerance(tol, "tol", _WHERE)
    rtol = check_tolerance(rtol, "rtol", _WHERE)
    max_iter = check_positive_int(max_iter, "max_iter", _WHERE)
    eps = check_nonneg(eps, "eps", _WHERE, allow_none=True)
    theta = _as_tensor(_check_theta(theta, lower, _WHERE))
    x = _as_tensor(check_finite_array(x, "x", _WHERE))
    _check_same_kind(theta, x, "x", _WHERE)
    if q0 is not None:
        q0 = _as_tensor(check_finite_array(q0, "q0", _WHERE, shape=x.shape))
        _check_same_kind(theta, q0, "q0", _WHERE)
    if estimates is not None and not isinstance(estimates, _Estimates):
        raise TypeError(f"{_WHERE}: estimates must be the estimates of a previous call, "
                        f"got {type(estimates).__name__}")
    out = _hypergradient(upper, lower, theta, x, tol=tol, rtol=rtol, max_iter=max_iter,
                         eps=eps, q0=q0, estimates=estimates)
    if kind == "numpy":
        out = _HyperGradient(**{**out.__dict__, "grad": out.grad.numpy(), "q": out.q.numpy()})
    return out


def _as_tensor(a):
    import numpy as np
    import torch

    if is_torch(a):
        return a.detach()
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _check_levels(upper, lower, where):
    if not isinstance(upper, UpperLevel):
        raise TypeError(f"{where}: upper must be an UpperLevel, got {type(upper).__name__}")
    if not isinstance(lower, LowerLevel):
        raise TypeError(f"{where}: lower must be a LowerLevel, got {type(lower).__name__}")
    if not hasattr(upper, "lipschitz"):
        raise ValueError(f"{where}: upper.lipschitz is missing (the Lipschitz constant of "
                         "grad f enters the error bound)")
    check_nonneg(upper.lipschitz, "upper.lipschitz", where)
    return upper, lower


def _check_same_kind(theta, a, name, where):
    """``a`` (a tensor) of ``theta``'s dtype and device: torch would mix them silently."""
    if a.dtype != theta.dtype or a.device != theta.device:
        raise TypeError(f"{where}: {name} is {a.dtype} on {a.device}, theta {theta.dtype} on "
                        f"{theta.device}; give both the same dtype and device")


def _check_theta(theta, lower, where):
    """``theta`` when it is a finite 1-D float array with ``lower.n_params`` entries."""
    theta = check_finite_array(theta, "theta", where)
    n = getattr(lower, "n_params", None)
    if theta.ndim != 1 or (n is not None and theta.shape[0] != n):
        expected = f"({n},)" if n is not None else "1-D"
        raise ValueError(f"{where}: theta has shape {tuple(theta.shape)}, expected {expected} "
                         "(one entry per parameter of the lower level)")
    return theta
