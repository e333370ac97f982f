"""Conjugate gradients: the one CG loop of the library (NumPy arrays or torch tensors).

Used by :class:`~tikhon.operators.prox.SquaredL2`'s prox with an operator and
by the bilevel hypergradient's Hessian system. The stopping rule is the
caller's (a squared residual ``stop``), and so is what to do when the budget
runs out: each caller measures or warns in its own terms.
"""

from __future__ import annotations

from tikhon._core.arrays import copy, vdot, zeros_like

__all__ = ["conjugate_gradient"]


def conjugate_gradient(matvec, b, x0=None, *, stop, max_iter, r0=None, dot=vdot):
    """Solve ``A x = b`` for a symmetric positive definite ``A`` by conjugate gradients.

    Parameters
    ----------
    matvec : callable
        ``v -> A v``.
    b : array or tensor
        The right-hand side.
    x0 : array or tensor, optional
        The start (default zero, which costs no product).
    stop : float
        Stop once the squared norm of the recursively updated residual is at
        most ``stop``.
    max_iter : int
        Products with ``A`` at most (besides the one at ``x0``).
    r0 : array or tensor, optional
        ``b - A x0`` when the caller has it already.
    dot : callable, optional
        The inner product, a Python float (default
        :func:`~tikhon._core.arrays.vdot`, accumulated in float64; the
        hypergradient keeps its tensors' own precision, so that a float32
        solve is the float32 method it reports).

    Returns
    -------
    x : array or tensor
        The last iterate.
    rr : float
        The squared norm of the recursive residual at ``x`` (in finite
        precision it can fall below the true ``||b - A x||^2`` once that
        stalls: a caller that certifies the residual measures it).
    n_iter : int
        Iterations done. The loop also stops where ``A`` is not positive
        along a search direction (or a product is NaN).
    """
    if x0 is None:
        x, r = zeros_like(b), copy(b)
    else:
        x = x0
        r = b - matvec(x0) if r0 is None else r0
    p = copy(r)
    rr = dot(r, r)
    k = 0
    while rr > stop and k < max_iter:
        q = matvec(p)
        pq = dot(p, q)
        if not pq > 0:
            break
        alpha = rr / pq
        x = x + alpha * p
        r = r - alpha * q
        rr_new = dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
        k += 1
    return x, rr, k
