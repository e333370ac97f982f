"""tv_reconstruction is chambolle_pock: the same iterates as the former specialised loop.

The former ``tv_reconstruction`` (tikhon 0.1) ran its own primal-first PDHG on
``K = [A; nu grad]``. From ``y0 = 0`` its first primal step returns ``x0``, so
its primal iterate ``n + 1`` and dual iterate ``n`` are the dual-first
``chambolle_pock`` iterates ``n``: the same sequence, half a step apart. The reference below is that loop, written
out in plain NumPy; the comparison covers the options of the torch tests
except ``step_ratio="adaptive"``, whose balancing reads the residuals, whose
definition changed (block-wise relative residuals). The reference was checked
against the former ``tv_reconstruction`` itself: its iterate 151 agreed to 3e-16
relative (0 in four of the five cases) on this problem.
"""

import math

import numpy as np
import pytest

from tikhon.data import shepp_logan
from tikhon.operators import Gradient, Radon
from tikhon.solvers import ConvergenceWarning, space_variant_weights, tv_reconstruction


def _primal_first_tv(A, y, lam, n_iter, weights=None, data="l2", x0=None, precondition=False,
                     nonneg=True, ratio=3.0):
    shape = A.in_shape
    G = Gradient(shape)
    w = np.ones(shape) if weights is None else weights
    project = (lambda v: np.maximum(v, 0)) if nonneg else (lambda v: v)
    x = np.zeros(shape) if x0 is None else project(x0)
    norm_A = A.norm() * 1.02
    nu = norm_A / (2.0 * math.sqrt(len(shape)))
    radius = (lam / nu) * w
    if precondition:
        rows = A.abs()(np.ones(shape))
        cols = A.abs().T(np.ones(A.out_shape)) + nu * G.abs().T(np.ones(G.out_shape))
        tau = 1.0 / np.where(cols > 0, cols, 1.0) / ratio
        sp = 1.0 / np.where(rows > 0, rows, 1.0) * ratio
        sq = ratio / (2.0 * nu)
    else:
        L = math.sqrt(norm_A**2 + (nu * 2.0 * math.sqrt(len(shape))) ** 2)
        tau, sp = 1.0 / (ratio * L), ratio / L
        sq = sp
    p, q = np.zeros(A.out_shape), np.zeros((len(shape),) + shape)
    Ax, Gx = A(x), G(x)
    for _ in range(n_iter):
        p_prev, q_prev = p, q.copy()
        x_new = project(x - tau * (A.T(p) + nu * G.T(q)))
        Ax_new, Gx_new = A(x_new), G(x_new)
        v = p + sp * (2.0 * Ax_new - Ax)
        if data == "l2":
            p = (v - sp * y) / (1.0 + sp)
        else:
            p = 0.5 * (v + 1.0 - np.sqrt((v - 1.0) ** 2 + 4.0 * sp * y))
        q = q + (sq * nu) * (2.0 * Gx_new - Gx)
        mag = np.sqrt((q * q).sum(axis=0))
        q *= np.divide(radius, mag, out=np.ones_like(mag), where=mag > radius)
        x, Ax, Gx = x_new, Ax_new, Gx_new
    # the duals of the iteration before the last one (the half-step offset), with
    # q rescaled to the dual of grad itself
    return x, p_prev, nu * q_prev


@pytest.fixture(scope="module")
def problem():
    n = 32
    A = Radon((n, n), np.linspace(0.0, np.pi, 16, endpoint=False))
    x_true = shepp_logan(n)
    y = A(x_true) + 0.01 * np.abs(A(x_true)).max() * np.random.default_rng(3).standard_normal(A.out_shape)
    return A, x_true, y


@pytest.mark.parametrize("case", ["tv", "weighted", "kl", "precondition", "x0", "signed"])
def test_same_iterates_as_the_former_loop(problem, case):
    A, x_true, y = problem
    opts = {"weighted": {"weights": space_variant_weights(x_true)}, "kl": {"data": "kl"},
            "precondition": {"precondition": True}, "x0": {"x0": x_true},
            "signed": {"nonneg": False, "x0": x_true - 0.5}}.get(case, {})
    if case == "kl":
        y = np.maximum(y, 0)
    n = 150
    with pytest.warns(ConvergenceWarning):
        res = tv_reconstruction(A, y, 0.05, tol=0.0, max_iter=n, check_every=n, **opts)
    x_ref, p_ref, q_ref = _primal_first_tv(A, y, 0.05, n + 1, **opts)
    scale = np.abs(x_ref).max()
    np.testing.assert_allclose(res.x, x_ref, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(res.dual[0], p_ref, rtol=0, atol=1e-9 * np.abs(p_ref).max())
    np.testing.assert_allclose(res.dual[1], q_ref, rtol=0, atol=1e-9 * np.abs(q_ref).max())
