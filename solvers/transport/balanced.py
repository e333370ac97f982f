"""Entropic optimal transport between balanced marginals: :func:`sinkhorn`.

Conventions (of every Sinkhorn solver here)
-------------------------------------------
The potentials are in the *a/b-free* form: the plan is

    P_ij = exp((f_i + g_j - C_ij) / eps),

so ``f`` and ``g`` are in the units of the cost and equal ``eps`` times POT's
``log_u`` / ``log_v`` of ``ot.sinkhorn(..., method="sinkhorn_log", log=True)``.
The entropic objective is ``<C, P> + eps KL(P | a b^T)`` (the generalised KL,
which is the convention of the debiased Sinkhorn divergence).

NumPy inputs run on numba kernels (float32 inputs are promoted; the outputs
are float64), torch inputs on plain torch operations on the tensors' device
and dtype (autograd flows through the iterations). The solvers themselves
live in :mod:`._log_domain` and :mod:`._scaling`, their shared stage logic in
:mod:`._staged`.
"""

from __future__ import annotations

import dataclasses
import math

from tikhon._core.arrays import all_finite, backend_of
from tikhon._core.checks import (
    check_callable,
    check_choice,
    check_positive,
    check_positive_int,
    check_tolerance,
)
from tikhon._core.loop import run, warn_unconverged
from tikhon.solvers.transport._log_domain import LogSinkhorn
from tikhon.solvers.transport._relaxation import Relaxation
from tikhon.solvers.transport._scaling import ScalingSinkhorn, kernel_precision
from tikhon.solvers.transport._staged import VERIFY_SLACK, cost_range, eps_schedule
from tikhon.solvers.transport._support import Support
from tikhon.solvers.transport._validation import problem

__all__ = ["sinkhorn"]

_NAME = "sinkhorn"


def _solve(solver, f0, g0, *, tol, max_iter, callback, progress):
    """Run ``solver`` and settle the status on the returned plan.

    Returns ``(state, outcome, plan, f, g)``. The loop's ``"converged"`` is
    already verified (see :mod:`._staged`); a ``max_iter`` stop whose returned
    plan meets ``tol`` on the last stage is converged too (no warning), and
    non-finite potentials or plan make the status ``"nonfinite"``.
    """
    state = solver.init(f0, g0)
    state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                         progress=progress, warn=False)
    plan, f, g = solver.final_plan(state)
    err = plan.marginal_error
    status, message = outcome.status, outcome.message
    last = solver.last(state)
    if status != "nonfinite" and not (all_finite(f) and all_finite(g) and math.isfinite(err)):
        status = "nonfinite"
        message = (f"{_NAME}: stopped at iteration {outcome.n_iter}: non-finite potentials or plan "
                   "(the iterates diverged or the input is invalid)")
    elif status == "converged" or (status == "max_iter" and last and err <= tol + VERIFY_SLACK):
        status = "converged"
        message = f"{_NAME}: converged, marginal_error = {err:.3g} <= tol = {tol:g}"
    elif status == "max_iter":
        message = (f"{_NAME}: reached max_iter={max_iter} at eps={state.eps:g} (stage "
                   f"{state.stage + 1} of {len(solver.schedule)}) without meeting tol={tol:g}; "
                   f"marginal_error = {err:.3g}")
        if state.n_roundoff:
            message += (f" (the iterations' own measure met tol at {state.n_roundoff} checks, the "
                        "returned plan's never did: round-off, tol is below what this dtype resolves "
                        "on this problem)")
        warn_unconverged(message)
    return state, dataclasses.replace(outcome, status=status, message=message), plan, f, g


def sinkhorn(
    a,
    b,
    C,
    eps,
    *,
    max_iter=10_000,
    tol=1e-9,
    eps_scaling=True,
    f0=None,
    g0=None,
    method="scaling",
    relax=True,
    kernel_dtype=None,
    callback=None,
    progress=False,
    check_every=None,
):
    r"""Entropic optimal transport by stabilised Sinkhorn iterations.

    Solves

    .. math:: \min_{P \ge 0,\ P 1 = a,\ P^T 1 = b} \langle C, P\rangle
              + \varepsilon\, \mathrm{KL}(P \,|\, a b^T)

    whose solution is :math:`P_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`
    for dual potentials ``f``, ``g`` (the a/b-free form: ``f / eps`` is POT's
    ``log_u`` of ``sinkhorn_log``). The iterations never leave the log domain
    in the sense that matters: either every update is an exact log-sum-exp
    (``method="log"``), or (``method="scaling"``, the default) the scalings run
    on a stabilised kernel ``exp((f_i + g_j - C_ij)/eps)`` that is rebuilt
    whenever the scalings grow past ``exp(100)`` (``exp(20)`` for a float32
    kernel) or a row/column underflows (Schmitzer's absorption), so both methods are stable for eps down to
    1e-4 (and below) on costs normalised to a maximum of 1.

    Parameters
    ----------
    a, b : array or tensor, shape (n,) and (m,), or None
        Nonnegative, finite marginals of equal mass (None: uniform). Points of
        zero mass are removed from the computation; their plan rows/columns
        are zero and their potentials ``-inf``.
    C : array or tensor, shape (n, m)
        Finite cost matrix.
    eps : float
        Entropic regularisation (> 0), in the units of ``C``.
    max_iter : int
        Maximum number of iterations over all eps stages (one iteration
        updates both potentials).
    tol : float
        Stop when the marginal violation of the plan,
        :math:`\|P 1 - a\|_1 + \|P^T 1 - b\|_1`, is ``<= tol`` (one of the two
        terms is zero after each half step, so this is the L1 violation of the
        other marginal). ``converged`` is checked again on the returned plan.
        POT's ``stopThr`` is the Euclidean norm of the column violation, which
        is smaller by up to ``sqrt(m)``.
    eps_scaling : bool or int
        ``True``: solve for a geometric sequence of eps from the cost's range
        down to ``eps`` (ratio 4), each stage warm-started with the previous
        potentials and solved to a violation of 1e-2; skipped when ``f0`` or
        ``g0`` is given. An int ``k`` gives ``k`` stages from the cost's range;
        ``False`` or 1 solves at ``eps`` directly.
    f0, g0 : array or tensor, optional
        Warm-start potentials (a/b-free form, as returned in ``dual``).
    method : {"scaling", "log"}
        NumPy inputs only: "scaling" (exp-domain matrix-vector products on a
        stabilised kernel, one extra n x m array; fastest) or "log" (fused
        log-sum-exp updates on numba kernels, no array besides ``C`` and the
        plan). Torch inputs always use log-domain updates.
    kernel_dtype : {None, "auto", "float32", "float64"}
        NumPy inputs, ``method="scaling"``: storage of the stabilised kernel
        (sums are always float64). float32 halves the memory traffic of the
        iterations, which dominates at large sizes; its rounding moves the
        marginals by at most ~1.2e-7 of the mass. ``None``/"auto": float32
        for the intermediate eps stages, and for the last one when
        ``tol >= 1e-6 * sum(a)``; float64 otherwise. "float32": all stages.
        Either way the returned plan is computed and checked in float64; if
        a float32 last stage stops above ``tol`` (its rounding floor), the
        solver goes on in float64 from the potentials it reached.
        ``info["kernel_dtype"]`` says what was used.
    relax : bool
        Over-relax the steps with a factor estimated from the observed
        convergence rate (see Notes), on NumPy and torch inputs alike; False
        gives plain Sinkhorn.
    callback : callable, optional
        ``callback(state) -> bool`` after every iteration; True stops.
        ``state`` is a :class:`~tikhon.solvers.transport._staged.SinkhornState`
        dataclass: ``k`` (iterations done; ``iteration`` is an alias),
        ``eps`` and ``stage`` (of the current eps stage), ``marginal_error``
        (latest measured) with ``measured`` (whether this iteration measured
        it), ``f``, ``g`` (potentials of the stage; for the "scaling" method
        without the scalings ``u``, ``v``, which the state also holds) and
        ``n_roundoff`` (see Returns).
    progress : bool
        Show a tqdm progress bar.
    check_every : int, optional
        Torch only: measure the violation every this many iterations (each
        check synchronises with the device; default 10). While over-relaxed
        (``relax=True``), every smallest multiple of it that is >= 10, since
        each measurement takes a plain column step. The NumPy kernels
        measure it every iteration at no cost.

    Returns
    -------
    Result
        ``x`` the plan (float64 for NumPy inputs; the input's dtype and
        device for torch), ``dual = (f, g)``, ``info`` with ``cost``
        (<C, P>), ``objective`` (the entropic objective above),
        ``marginal_error`` (of the returned plan), ``eps_schedule`` and
        ``method`` (NumPy also ``n_absorptions`` and ``kernel_dtype``);
        ``history`` has ``marginal_error`` and ``eps`` at the measured
        iterations (the last iteration of the budget always measures).
        ``status``:

        * ``"converged"``: the *returned* plan's marginal violation,
          recomputed from its potentials (float64 sums), is ``<= tol`` at
          the final ``eps``. When the iterations' own measure meets ``tol``
          but the recomputed one does not, the solver does not stop there:
          a float32 kernel is replaced by a float64 one, and otherwise the
          miss (round-off) is counted in the callback state's
          ``n_roundoff`` and the iterations go on;
        * ``"max_iter"``: the budget ran out first (a warning says so, and
          whether round-off was the reason);
        * ``"nonfinite"``: the potentials or the plan became NaN or inf;
        * ``"callback"``: the callback asked to stop.

    Raises
    ------
    TypeError
        Mixed NumPy and torch inputs, non-floating arrays.
    ValueError
        Shapes inconsistent with ``C``, negative or non-finite weights,
        marginals of different mass, non-finite ``C``, ``eps <= 0``.

    Notes
    -----
    Plain Sinkhorn needs ~1e5 iterations at eps = 1e-4 on a unit cost. With
    ``relax=True`` each stage runs 20 plain iterations, estimates the linear
    rate ``eta`` of the violation, then over-relaxes with
    ``w = 2 / (1 + sqrt(1 - eta))`` (capped at 1.95; halved towards 1 when
    the violation grows); every tenth column step (on torch, every smallest
    multiple of ``check_every`` that is >= 10) stays plain so that the
    measured violation is that of an actual plan. On torch the relaxed updates are
    ``f <- (1 - w) f + w f_sinkhorn`` (likewise ``g``) on the device; the
    factor is chosen on the host from the violations read at the checks,
    which are the only device-to-host transfers of the iterations. A run
    stopped while over-relaxed (``max_iter``, callback) takes one plain step
    before returning, so the plan returned is that of Sinkhorn potentials.

    The potentials, defined up to ``(f + c, g - c)``, are re-centred
    (``mean f = mean g``) at every eps stage and kernel rebuild: left alone,
    ``c`` drifts to about ten times the cost's range over the stages, which
    in float32 stalls the iterations far above ``tol``.

    Cost of the "scaling" method: one read of the kernel per iteration (the
    row step and the column sums for the next column step are fused, row by
    row), and one read of ``C`` per eps stage or absorption (an exact
    log-domain row step fused with the kernel rebuild). At n = m = 4000
    (float32 kernel, 64 MB) an iteration is bound by memory bandwidth.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers.transport import sinkhorn
    >>> rng = np.random.default_rng(0)
    >>> C = rng.random((50, 40))
    >>> res = sinkhorn(None, None, C, 1e-2)  # uniform marginals
    >>> res.status, res.x.shape
    ('converged', (50, 40))
    >>> bool(np.allclose(res.x.sum(axis=1), 1 / 50, atol=1e-6))
    True
    """
    backend = backend_of(_NAME, a=a, b=b, C=C, f0=f0, g0=g0)
    eps = check_positive(eps, "eps", _NAME)
    tol = check_tolerance(tol, "tol", _NAME)
    max_iter = check_positive_int(max_iter, "max_iter", _NAME)
    check_choice(method, ("scaling", "log"), "method", _NAME)
    if check_every is None:
        check_every = 10 if backend == "torch" else 1
    check_every = check_positive_int(check_every, "check_every", _NAME)
    check_callable(callback, "callback", _NAME)
    warm = f0 is not None or g0 is not None
    a, b, C, f0, g0 = problem(a, b, C, f0, g0, _NAME, balanced=True,
                              hint="normalise them, or use sinkhorn_unbalanced")
    support = Support(a, b, _NAME)
    a, b, C, f0, g0 = support.restrict(a, b, C, f0, g0)
    schedule = eps_schedule(eps, eps_scaling, cost_range(C), warm)
    # torch: always log-domain updates (kernel_dtype is checked, and unused)
    scaling = method == "scaling" and backend == "numpy"
    use32, use32_last = kernel_precision(kernel_dtype, a, b, tol, "scaling" if scaling else "log")
    relaxation = Relaxation(relax, spacing=check_every if backend == "torch" else 1)
    with support.kernel_threads():
        if scaling:
            solver = ScalingSinkhorn(C, a, b, schedule, relaxation, use32, use32_last)
        else:
            solver = LogSinkhorn(C, a, b, schedule, relaxation)
        state, outcome, plan, f, g = _solve(solver, f0, g0, tol=tol, max_iter=max_iter,
                                            callback=callback, progress=progress)
    P, f, g = support.embed(plan.P, f, g)
    info = {"cost": plan.cost, "objective": plan.objective, "marginal_error": plan.marginal_error,
            "eps_schedule": schedule, "method": method if backend == "numpy" else "log"}
    if backend == "numpy":
        info["n_absorptions"] = state.n_absorb if scaling else 0
        info["kernel_dtype"] = (None if not scaling else "float32, then float64" if state.switched
                                else "float32" if use32_last else "float32+float64" if use32
                                else "float64")
    return outcome.result(P, steps={"eps": eps}, dual=(f, g), info=info)
