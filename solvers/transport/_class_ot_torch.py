"""Torch kernels of :func:`tikhon.solvers.transport.class_ot` (CPU or CUDA).

The torch counterpart of :mod:`._class_ot_kernels`, written with whole-tensor ops
so that one iteration is a fixed sequence of device kernels with no host round
trip. Arrays are stored *source-major*: a plan ``Z`` of shape ``(n, m)`` has its
rows (source points) sorted by class, and ``cls`` (shape ``(n,)``, int64, on
the device) holds the class index of every sorted row, non-decreasing. Group
sums ``sum_{i in I_c} Z[i, j]`` are then a row ``index_add_`` (a contiguous
row-block reduction; the column layout of the numba kernels made the same
reduction ten times slower in torch), and the per-group factors are spread
back with a row gather.

Only the caller imports this module, and only once it holds a tensor, so
importing :mod:`tikhon.solvers` never loads torch.
"""

from __future__ import annotations

import torch


def group_sums(Q, cls, ncls):
    """``S[c, j] = sum_{i : cls[i] = c} Q[i, j]``, shape ``(ncls, m)``."""
    return torch.zeros((ncls, Q.shape[1]), dtype=Q.dtype, device=Q.device).index_add_(0, cls, Q)


def dr_step(Z, tC, cls, ncls, tlam, a, b, norms=True):
    """One Douglas-Rachford step for min <C,P> + lam R(P) over U(a, b), in place on ``Z``.

    ``X = prox_{t G}(Z)`` (non-negativity, then group shrinkage),
    ``Y = Proj_A(2X - Z - tC)`` (affine marginal constraints), ``Z += Y - X``
    (same algebra as :func:`._class_ot_kernels.dr_step`, transposed).

    Returns
    -------
    X : tensor, shape (n, m)
    u, v : tensors, shapes (n,), (m,)
        Multipliers of the projection (``t`` times the potentials f, g).
    res2, xn2 : 0-d tensors or None
        ``||X - Y||^2`` and ``||X||^2`` (left on the device: reading them is a
        synchronisation, done only at monitoring time); None unless ``norms``
        (two passes saved on the steps nobody monitors).
    """
    n, m = Z.shape
    X = torch.clamp(Z, min=0.0)
    if tlam > 0.0:
        # 1 - tlam / ||group||, floored at 0: an empty group (norm 0) gives
        # -inf, floored too; in-place ops keep the kernel count low (on a GPU,
        # launches, not bandwidth, bound the small problems)
        scale = torch.sqrt_(group_sums(X * X, cls, ncls)).reciprocal_().mul_(-tlam).add_(1.0).clamp_(min=0.0)
        X.mul_(scale.index_select(0, cls))
    # D = W - X with W = 2X - Z - tC the reflected point; the marginals of W
    # come from those of X and D, and Z + (Y - X) = Z + D + u + v
    D = torch.sub(X, Z).sub_(tC)
    u = a - X.sum(dim=1) - D.sum(dim=1)
    u = u / m - u.sum() / (n * m)
    v = (b - X.sum(dim=0) - D.sum(dim=0)) / n
    D.add_(u[:, None]).add_(v[None, :])
    Z.add_(D)
    if not norms:
        return X, u, v, None, None
    # D is now Y - X
    res2 = torch.linalg.vector_norm(D) ** 2
    xn2 = torch.linalg.vector_norm(X) ** 2
    return X, u, v, res2, xn2


def round_to_polytope(X, a, b):
    """Altschuler-Weed-Rigollet rounding of a plan ``X`` (shape (n, m)) onto
    ``U(a, b)``: scale rows then columns down to their marginals, then spread
    the missing mass as a rank-one term; the marginals are exact."""
    Xr = torch.clamp(X, min=0.0)
    src = Xr.sum(dim=1)
    Xr.mul_(torch.where(src > a, a / src, torch.ones_like(src))[:, None])
    tgt = Xr.sum(dim=0)
    Xr.mul_(torch.where(tgt > b, b / tgt, torch.ones_like(tgt))[None, :])
    err_a = torch.clamp(a - Xr.sum(dim=1), min=0.0)
    err_b = torch.clamp(b - Xr.sum(dim=0), min=0.0)
    tot = err_a.sum()
    # tot = 0 means err_a = 0: the term vanishes without a host-side branch
    share = torch.where(tot > 0, err_a / tot, torch.zeros_like(err_a))
    Xr.add_(share[:, None] * err_b[None, :])
    return Xr


def plan_objective(P, C, cls, ncls):
    """``(<C, P>, sum_j sum_c ||P[I_c, j]||_2)`` as 0-d tensors."""
    cost = (P * C).sum()
    reg = torch.sqrt(group_sums(P * P, cls, ncls)).sum()
    return cost, reg


def _segment_cumsum(x, start):
    """Cumulative sums along dim 1 restarted at every segment; ``start[r, q]``
    is the column where the segment holding ``(r, q)`` begins."""
    cs = torch.cumsum(x, dim=1)
    cs = torch.cat([torch.zeros_like(cs[:, :1]), cs], dim=1)
    return cs[:, 1:] - cs.gather(1, start)


def feasible_g(Ct, cls, f, g, lam):
    """Shift every target potential ``g_j`` so that each group constraint
    ``||(f_i + g_j - C_ij)^+_{i in I_c}||_2 <= lam`` holds, one with equality.

    ``Ct`` is the *target-major* cost, shape ``(m, n)``. For target ``j`` the
    new potential is ``g_j - max_c d_c`` where the level ``d_c`` solves
    ``||(w_{I_c} - d_c)^+||_2 = lam``, ``w = f + g_j - C_{:, j}``.

    Only entries with ``w_i >= max(w) - lam`` can matter: the group holding
    ``max(w)`` has a level of at least ``max(w) - lam``, so a group whose level
    is lower cannot win, and entries below that bound never reach the levels
    that can. So the rows are cut to their ``k`` largest entries (``k`` the
    largest such count over targets; one host synchronisation), sorted by class
    with a stable sort (each group then a descending run), and every group's
    level comes in closed form from the segmented sums of its top entries, as
    in :func:`._class_ot_kernels._level`.

    Returns
    -------
    tensor, shape (m,)
    """
    W = f[None, :] + g[:, None] - Ct
    rowmax = W.max(dim=1).values
    if lam == 0.0:
        return g - rowmax
    m, n = W.shape
    low = rowmax - lam
    k = int((W >= low[:, None]).sum(dim=1).max())
    # NaN potentials leave k = 0; keep the shapes valid and let NaN propagate
    k = min(max(k, 1), n)
    vals, idx = torch.topk(W, k, dim=1, largest=True, sorted=True)
    grp, perm = torch.sort(cls[idx], dim=1, stable=True)
    vs = vals.gather(1, perm)
    keep = vs >= low[:, None]
    pos = torch.arange(k, device=W.device).expand(m, k)
    new_grp = torch.ones_like(keep)
    new_grp[:, 1:] = grp[:, 1:] != grp[:, :-1]
    start = torch.cummax(torch.where(new_grp, pos, torch.zeros_like(pos)), dim=1).values
    top = vs.gather(1, start)
    # relative to the group maximum: the sums stay small and exact-ish
    wr = torch.where(keep, vs - top, torch.zeros_like(vs))
    s1 = _segment_cumsum(wr, start)
    s2 = _segment_cumsum(wr * wr, start)
    cnt = (pos - start + 1).to(W.dtype)
    # d solves cnt d^2 - 2 s1 d + s2 - lam^2 = 0 (smaller root), valid on the
    # interval where exactly the cnt largest entries lie above it
    disc = torch.clamp(s1 * s1 - cnt * (s2 - lam * lam), min=0.0)
    d = (s1 - torch.sqrt(disc)) / cnt
    nxt = torch.full_like(wr, -torch.inf)
    more = keep[:, 1:] & ~new_grp[:, 1:]
    nxt[:, :-1] = torch.where(more, wr[:, 1:], nxt[:, :-1])
    valid = keep & (d >= nxt)
    # the level of a group is its first valid candidate
    first = valid & (_segment_cumsum(valid.to(torch.int64), start) == 1)
    best = torch.where(first, d + top, torch.full_like(d, -torch.inf)).max(dim=1).values
    return g - best
