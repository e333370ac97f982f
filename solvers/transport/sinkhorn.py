"""Entropic optimal transport: stabilised Sinkhorn, Sinkhorn divergence, unbalanced Sinkhorn.

Conventions (all three solvers)
-------------------------------
The potentials are in the *a/b-free* form: the plan is

    P_ij = exp((f_i + g_j - C_ij) / eps),

so ``f`` and ``g`` are in the units of the cost and equal ``eps`` times POT's
``log_u`` / ``log_v`` of ``ot.sinkhorn(..., method="sinkhorn_log", log=True)``.
The entropic objective is ``<C, P> + eps KL(P | a b^T)`` (the generalised KL,
which is the convention of the debiased Sinkhorn divergence).

NumPy inputs run on numba kernels (float32 inputs are promoted; the outputs
are float64; the scaling method may store its stabilised kernel in float32,
with float64 sums, when the tolerance allows it: see ``kernel_dtype``). Torch inputs run on plain torch operations on the
tensors' device and dtype (autograd flows through the iterations).
"""

from __future__ import annotations

import math
import time
import warnings
from types import SimpleNamespace

import numpy as np

from tikhon._core.arrays import is_torch, torch_module
from tikhon.solvers._loop import ConvergenceWarning, check_tolerance
from tikhon.solvers._result import Result

__all__ = ["sinkhorn", "sinkhorn_divergence", "sinkhorn_unbalanced"]

# Scalings u, v of the exp-domain path are absorbed into the potentials when
# |log u| or |log v| exceeds this: far below float64's range (log ~ 709), so the
# stabilised kernel neither overflows nor loses significant entries to underflow.
_ABSORB_LOG = 100.0
# The float32 kernel stores entries below _TINY32 (just above float32's
# smallest normal number) as 0; with |log u|, |log v| <= _ABSORB_LOG32 what
# they would become stays below n m 1e-37 e^40 ~ 1e-20 n m: negligible.
_ABSORB_LOG32 = 20.0
_TINY32 = 1e-37
_TINY64 = 1e-300
# The float32 kernel (half the memory traffic) is used for the last stage
# when tol >= _F32_TOL * mass: its rounding (relative 6e-8 per entry, float64
# sums) moves the marginals by at most ~1.2e-7 of the mass, and the returned
# plan is verified in float64 anyway (a miss continues in float64).
_F32_TOL = 1e-6
# marginal violation to which the intermediate stages of epsilon scaling are
# solved: a rough solve is enough to warm-start the next, smaller eps
_STAGE_TOL = 1e-2
# ratio between consecutive eps of the automatic schedule
_AUTO_FACTOR = 4.0
# cost entries from which the numba kernels run in parallel
_PARALLEL_MIN_SIZE = 1 << 20

_NAME = "sinkhorn"


# ----------------------------------------------------------------------------
# validation


def _backend_of(*arrays, where):
    flags = [is_torch(x) for x in arrays if x is not None]
    if any(flags) and not all(flags):
        raise TypeError(
            f"{where}: mixed NumPy and torch inputs; pass all of a, b, C (and f0, g0) "
            "as NumPy arrays or all as torch tensors"
        )
    return "torch" if any(flags) else "numpy"


def _check_eps(eps, name="eps", where=_NAME):
    if isinstance(eps, bool):
        raise TypeError(f"{where}: {name} must be a positive number, got a bool")
    if is_torch(eps):
        eps = float(eps)
    try:
        eps = float(eps)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: {name} must be a positive number, got {eps!r}") from exc
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"{where}: {name} must be finite and > 0, got {eps!r}")
    return eps


def _check_max_iter(max_iter):
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"{_NAME}: max_iter must be a positive integer, got {max_iter!r}")
    return int(max_iter)


def _validate_numpy(a, b, C, where, balanced=True):
    C = np.asarray(C)
    if C.dtype.kind != "f" or C.dtype not in (np.float32, np.float64):
        raise TypeError(f"{where}: C must be a float32 or float64 array, got dtype {C.dtype}")
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"{where}: C must be a non-empty 2-D array, got shape {C.shape}")
    n, m = C.shape
    if not np.isfinite(C).all():
        raise ValueError(f"{where}: C contains NaN or inf")
    out = []
    for name, w, k in (("a", a, n), ("b", b, m)):
        if w is None:
            w = np.full(k, 1.0 / k)
        w = np.asarray(w)
        if w.dtype.kind not in "fiu":
            raise TypeError(f"{where}: {name} must be a real array, got dtype {w.dtype}")
        w = w.astype(np.float64)
        if w.shape != (k,):
            raise ValueError(
                f"{where}: {name} must have shape ({k},) to match C of shape {C.shape}, "
                f"got {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ValueError(f"{where}: {name} contains NaN or inf")
        if (w < 0).any():
            raise ValueError(f"{where}: {name} has negative entries")
        if w.sum() <= 0:
            raise ValueError(f"{where}: {name} has zero total mass")
        out.append(w)
    a, b = out
    if balanced:
        sa, sb = a.sum(), b.sum()
        if abs(sa - sb) > 1e-6 * max(sa, sb):
            raise ValueError(
                f"{where}: the marginals a and b must have equal mass "
                f"(sum(a) = {sa:.9g}, sum(b) = {sb:.9g}); normalise them, or use "
                "sinkhorn_unbalanced"
            )
    return a, b, np.ascontiguousarray(C, dtype=np.float64)


def _validate_torch(a, b, C, where, balanced=True):
    torch = torch_module()
    if C.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{where}: C must be a float32 or float64 tensor, got {C.dtype}")
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"{where}: C must be a non-empty 2-D tensor, got shape {tuple(C.shape)}")
    n, m = C.shape
    if not bool(torch.isfinite(C).all()):
        raise ValueError(f"{where}: C contains NaN or inf")
    out = []
    for name, w, k in (("a", a, n), ("b", b, m)):
        if w is None:
            w = torch.full((k,), 1.0 / k, dtype=C.dtype, device=C.device)
        if not w.dtype.is_floating_point:
            raise TypeError(f"{where}: {name} must be a floating tensor, got {w.dtype}")
        if tuple(w.shape) != (k,):
            raise ValueError(
                f"{where}: {name} must have shape ({k},) to match C of shape "
                f"{tuple(C.shape)}, got {tuple(w.shape)}"
            )
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"{where}: {name} contains NaN or inf")
        if bool((w < 0).any()):
            raise ValueError(f"{where}: {name} has negative entries")
        if float(w.sum()) <= 0:
            raise ValueError(f"{where}: {name} has zero total mass")
        out.append(w.to(C.dtype))
    a, b = out
    if balanced:
        sa, sb = float(a.sum()), float(b.sum())
        if abs(sa - sb) > 1e-6 * max(sa, sb):
            raise ValueError(
                f"{where}: the marginals a and b must have equal mass "
                f"(sum(a) = {sa:.9g}, sum(b) = {sb:.9g}); normalise them, or use "
                "sinkhorn_unbalanced"
            )
    return a, b, C


def _eps_schedule(eps, eps_scaling, C_range, warm):
    """Decreasing eps values ending at ``eps``."""
    if isinstance(eps_scaling, bool):
        if not eps_scaling or warm:
            return [eps]
        start = max(C_range, eps)
        k = max(1, int(math.ceil(math.log(start / eps) / math.log(_AUTO_FACTOR))) + 1)
    elif isinstance(eps_scaling, (int, np.integer)):
        if eps_scaling < 1:
            raise ValueError(f"{_NAME}: eps_scaling must be True, False or an int >= 1, got {eps_scaling!r}")
        k = int(eps_scaling)
        start = max(C_range, eps)
    else:
        raise TypeError(f"{_NAME}: eps_scaling must be a bool or an int, got {eps_scaling!r}")
    if k == 1 or start <= eps:
        return [eps]
    return [float(x) for x in np.geomspace(start, eps, k)]


def _check_potential(x, k, name, backend, like=None):
    if x is None:
        return None
    if backend == "torch":
        torch = torch_module()
        if tuple(x.shape) != (k,):
            raise ValueError(f"{_NAME}: {name} must have shape ({k},), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{_NAME}: {name} contains NaN or inf")
        return x.to(dtype=like.dtype, device=like.device)
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (k,):
        raise ValueError(f"{_NAME}: {name} must have shape ({k},), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{_NAME}: {name} contains NaN or inf")
    return x.copy()


# ----------------------------------------------------------------------------
# the driver shared by the NumPy and torch paths


class _Driver:
    """Iteration budget, history, callback, progress bar and stop message."""

    def __init__(self, max_iter, callback, progress, name):
        self.max_iter = max_iter
        self.callback = callback
        self.name = name
        self.k = 0
        self.t0 = time.perf_counter()
        self.hist = {"iteration": [], "time": [], "marginal_error": [], "eps": []}
        self.stop_message = None
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=max_iter, desc=name, leave=False)

    def record(self, err, eps):
        self.hist["iteration"].append(self.k)
        self.hist["time"].append(time.perf_counter() - self.t0)
        self.hist["marginal_error"].append(float(err))
        self.hist["eps"].append(eps)
        if self.bar is not None:
            self.bar.set_postfix({"eps": f"{eps:.1e}", "err": f"{err:.2e}"}, refresh=False)

    def tick(self, state_fn):
        """Count one iteration; False when the budget is spent or the callback stops."""
        self.k += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None and self.callback(state_fn()):
            self.stop_message = f"{self.name}: stopped by the callback at iteration {self.k}"
            return False
        return self.k < self.max_iter

    def close(self):
        if self.bar is not None:
            self.bar.close()
        hist = {key: np.asarray(v, dtype=float) for key, v in self.hist.items()}
        return hist, time.perf_counter() - self.t0


def _finish(driver, converged_loop, final_err, tol, nonfinite, eps, stages):
    """Converged flag and message from the *verified* marginal violation of the returned plan."""
    name = driver.name
    if nonfinite:
        return False, f"{name}: stopped at iteration {driver.k}: non-finite potentials ({nonfinite})"
    if not math.isfinite(final_err):
        return False, f"{name}: the plan has a non-finite marginal violation"
    # summation order differs between the iteration and the final check: allow
    # a few ulps of the total mass
    if final_err <= tol + 1e-14:
        return True, f"{name}: converged, marginal_error = {final_err:.3g} <= tol = {tol:g}"
    if driver.stop_message is not None:
        return False, driver.stop_message
    if converged_loop:
        return False, (
            f"{name}: the returned plan's marginal violation {final_err:.3g} exceeds tol = {tol:g} "
            "(round-off: tol is too small for this problem)"
        )
    msg = (
        f"{name}: reached max_iter={driver.max_iter} at eps={eps:g} (stage {stages}) without "
        f"meeting tol={tol:g}; marginal_error = {final_err:.3g}"
    )
    warnings.warn(msg, ConvergenceWarning, stacklevel=4)
    return False, msg


# ----------------------------------------------------------------------------
# NumPy path


def _numpy_plan(C, f, g, eps, a, b):
    from tikhon.operators._kernels import sinkhorn_numba as kern

    n, m = C.shape
    P = np.empty((n, m))
    row = np.empty(n)
    nb = max(1, min(numba_threads(), n))
    col_part = np.zeros((nb, m))
    cost, plogp = kern.plan_and_stats(C, f, g, eps, P, row, col_part)
    col = col_part.sum(axis=0)
    err = float(np.abs(row - a).sum() + np.abs(col - b).sum())
    return P, row, col, float(cost), float(plogp), err


def numba_threads():
    import numba

    return numba.get_num_threads()


class _threads_for:
    """Run small problems on one numba thread.

    Below about a million cost entries a parallel region costs more than it
    saves (and far more on a loaded machine, where the threads wait on each
    other), so those run serially; the setting is restored on exit.
    """

    def __init__(self, size):
        self.size = size

    def __enter__(self):
        import numba

        self.saved = numba.get_num_threads()
        if self.size < _PARALLEL_MIN_SIZE:
            numba.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self.saved)


def _kl_objective(cost, plogp, row, col, a, b, eps):
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(row > 0, np.log(np.where(a > 0, a, 1.0)), 0.0)
        lb = np.where(col > 0, np.log(np.where(b > 0, b, 1.0)), 0.0)
    kl = plogp - row @ la - col @ lb - row.sum() + a.sum() * b.sum()
    return cost + eps * kl


class _Relaxation:
    """Over-relaxation of the Sinkhorn steps with an estimated factor.

    Plain Sinkhorn converges linearly at a rate ``eta`` that tends to 1 as eps
    shrinks (1e5 iterations at eps = 1e-4 on a unit cost). Over-relaxed steps
    ``f <- (1 - w) f + w T(f)`` with ``w = 2 / (1 + sqrt(1 - eta))`` (Thibault
    et al. 2021; Lehmann et al. 2021) bring the rate to about ``w - 1``. Each
    stage starts plain, estimates ``eta`` from the error decay, then relaxes;
    every ``check``-th iteration takes a plain column step so that the
    measured violation is that of an actual plan, and an error that grows
    halves ``w - 1`` (the safeguard that keeps the iteration convergent).

    The controller is host-side scalar logic fed only with the violations
    measured at the iterations where :meth:`measuring` is true: every
    ``spacing``-th iteration while plain (1 for the NumPy kernels, which get
    the violation for free; ``check_every`` on torch, where each measurement
    is a device synchronisation) and every ``check``-th while relaxed.
    """

    _CHECK = 10
    _PLAIN = 20  # plain iterations per stage before estimating eta
    _WINDOW = 10  # iterations over which the plain rate is measured

    def __init__(self, enabled, check=None, spacing=1):
        self.enabled = enabled
        self.check = self._CHECK if check is None else int(check)
        self.spacing = int(spacing)
        # the plain rate is taken over >= _WINDOW iterations, once >= _PLAIN
        # iterations have been measured: at spacing 1 the 11th-last and last
        # of 20 errors, at spacing 10 the errors of iterations 10 and 20
        self.lag = max(1, -(-self._WINDOW // self.spacing))
        self.n_plain = max(self.lag + 1, -(-self._PLAIN // self.spacing))
        self.reset()

    def reset(self):
        self.omega = 1.0
        self.it = 0
        self.errs = []
        self.best = math.inf
        self.eta = 0.0

    def column_omega(self):
        """omega of the next column step; 1 on the iterations that measure."""
        self.it += 1
        return 1.0 if self.measuring() else self.omega

    def measuring(self):
        if self.omega == 1.0:
            return self.it % self.spacing == 0
        return self.it % self.check == 0

    def update(self, err):
        if not self.enabled:
            return
        self.errs.append(err)
        if self.omega == 1.0:
            k = self.lag
            if len(self.errs) >= self.n_plain and self.errs[-1] > 0 and self.errs[-1 - k] > 0:
                self._set_omega((self.errs[-1] / self.errs[-1 - k]) ** (1.0 / (k * self.spacing)))
                self.errs = [err]
            return
        if err > 2.0 * self.best:
            self.omega = 1.0 + 0.5 * (self.omega - 1.0)
            if self.omega < 1.01:
                self.omega = 1.0
            self.errs = [err]
            self.best = err
            return
        self.best = min(self.best, err)
        if len(self.errs) >= 6 and self.errs[-6] > 0 and self.errs[-1] > 0:
            # errors measured every `check` iterations: observed rate rho under w;
            # Young's relation (rho + w - 1)^2 = rho w^2 eta gives back eta
            rho = (self.errs[-1] / self.errs[-6]) ** (1.0 / (5 * self.check))
            w = self.omega
            if 0.0 < rho < 1.0 and rho > w - 1.0:
                self._set_omega(max(self.eta, (rho + w - 1.0) ** 2 / (rho * w * w)))
            self.errs = [err]

    def _set_omega(self, eta):
        if 0.0 < eta < 1.0:
            self.eta = eta
            self.omega = max(self.omega, min(1.95, 2.0 / (1.0 + math.sqrt(1.0 - eta))))
            self.best = math.inf if self.omega == 1.0 else self.best


def _sinkhorn_numpy(a, b, C, eps, schedule, f0, g0, tol, method, driver, relax,
                    use32=False, use32_last=False):
    from tikhon.operators._kernels import sinkhorn_numba as kern

    n, m = C.shape
    nb = numba_threads()
    loga, logb = np.log(a), np.log(b)
    f = np.zeros(n) if f0 is None else f0
    g = np.zeros(m) if g0 is None else g0
    f_new, g_new = np.empty(n), np.empty(m)
    err = np.inf
    converged = False
    nonfinite = ""
    n_absorb = 0
    stage = 0
    cur_eps = schedule[0]
    state = SimpleNamespace(iteration=0, eps=cur_eps, marginal_error=err, f=f, g=g)
    rx = _Relaxation(relax)

    def state_fn():
        state.iteration, state.eps, state.marginal_error = driver.k, cur_eps, err
        return state

    budget_left = True
    if method == "log":
        for stage, cur_eps in enumerate(schedule):
            last = stage == len(schedule) - 1
            target = tol if last else max(tol, _STAGE_TOL)
            rx.reset()
            if f0 is None and stage == 0:
                kern.row_lse_update(C, g, loga, cur_eps, 1.0, f, f_new, 1.0)
                f, f_new = f_new, f
            while budget_left:
                kern.col_lse_update(C, f, logb, cur_eps, 1.0, g, g_new, nb, rx.column_omega())
                g, g_new = g_new, g
                # e: violation of the plan (f, g) (column-exact when measuring), before f moves
                e, _ = kern.row_lse_update(C, g, loga, cur_eps, 1.0, f, f_new, rx.omega)
                if rx.measuring():
                    err = e
                    driver.record(err, cur_eps)
                    if not math.isfinite(err):
                        nonfinite = "marginal error"
                        break
                    if err <= target:
                        converged = last
                        break
                    rx.update(err)
                f, f_new = f_new, f
                state.f, state.g = f, g
                budget_left = driver.tick(state_fn)
            if nonfinite or not budget_left:
                break
        state.f, state.g = f, g
    else:
        K = None
        u, v = np.ones(n), np.ones(m)
        u_old = np.empty(n)
        scratch = np.empty((nb, m))
        col_part = np.zeros((nb, m))
        stats = np.empty((nb, 3))
        absorb_log = _ABSORB_LOG

        def resync(eps_now, first=False):
            """Absorb v into g; fused exact row step and kernel rebuild (u = v = 1).

            The row step recomputes f from g, so u needs no absorbing.
            """
            nonlocal f, g, g_new, n_absorb
            n_absorb += 1
            if not first:
                g += eps_now * np.log(v)
            elif f0 is not None and g0 is None:
                # only f0 given: the first step is the column step from it
                kern.col_lse_update(C, f, logb, eps_now, 1.0, g, g_new, nb, 1.0)
                g, g_new = g_new, g
            if not np.isfinite(g).all():
                return False
            kern.rebuild_rows(C, g, loga, eps_now, K, f, scratch, col_part, tiny)
            if (col_part.sum(axis=0) <= 0.0).any():
                # a whole column of the row-normalised kernel underflowed: an
                # exact log-domain column step first, then rebuild
                kern.col_lse_update(C, f, logb, eps_now, 1.0, g, g_new, nb, 1.0)
                g, g_new = g_new, g
                kern.rebuild_rows(C, g, loga, eps_now, K, f, scratch, col_part, tiny)
            u.fill(1.0)
            v.fill(1.0)
            state.f, state.g = f, g
            return bool(np.isfinite(f).all())

        for stage, cur_eps in enumerate(schedule):
            last = stage == len(schedule) - 1
            target = tol if last else max(tol, _STAGE_TOL)
            rx.reset()
            want = np.float32 if (use32 and not (last and not use32_last)) else np.float64
            if K is None or K.dtype != want:
                K = None  # free the old kernel before allocating the new one
                K = np.empty((n, m), dtype=want)
            # entries stored as 0 below ``tiny`` (no subnormals in the passes);
            # the absorption bound keeps what they would become negligible
            tiny = _TINY32 if want == np.float32 else _TINY64
            absorb_log = _ABSORB_LOG32 if want == np.float32 else _ABSORB_LOG
            if stage > 0:
                # potentials solved at the previous eps carry over (f follows from g)
                g += schedule[stage - 1] * np.log(v)
                v.fill(1.0)
            if not resync(cur_eps, first=stage == 0):
                nonfinite = "potentials"
                break
            while budget_left:
                _, smin, vbig = kern.column_step(col_part, v, b, rx.column_omega())
                u_old[:] = u
                kern.sinkhorn_pass(K, v, a, u, rx.omega, col_part, stats)
                e = float(stats[:, 0].sum())
                rmin = float(stats[:, 1].min())
                ubig = float(stats[:, 2].max())
                if not math.isfinite(e) or rmin <= 0.0 or smin <= 0.0:
                    # a row or column of the stabilised kernel underflowed:
                    # an exact log-domain resync, then go on
                    u[:] = u_old
                    if not resync(cur_eps):
                        nonfinite = "potentials"
                        break
                    rx.reset()
                    budget_left = driver.tick(state_fn)
                    continue
                if rx.measuring():
                    err = e
                    driver.record(err, cur_eps)
                    if err <= target:
                        # err is the violation of diag(u_old) K diag(v): keep that plan
                        u[:] = u_old
                        converged = last
                        break
                    rx.update(err)
                if ubig > absorb_log or vbig > absorb_log:
                    if not resync(cur_eps):
                        nonfinite = "potentials"
                        break
                budget_left = driver.tick(state_fn)
            if nonfinite or not budget_left:
                break
        f = f + cur_eps * np.log(u)
        g = g + cur_eps * np.log(v)
        del K
    if not nonfinite and not (np.isfinite(f).all() and np.isfinite(g).all()):
        nonfinite = "potentials"
    return f, g, converged, nonfinite, cur_eps, stage, n_absorb


def _kernel_precision(kernel_dtype, a, b, tol, method):
    """(float32 kernel for the intermediate stages, float32 kernel for the last stage)."""
    if kernel_dtype is None or kernel_dtype == "auto":
        choice = "auto"
    else:
        try:
            choice = np.dtype(kernel_dtype).name
        except TypeError as exc:
            raise TypeError(f"{_NAME}: kernel_dtype must be None, 'auto', 'float32' or "
                            f"'float64', got {kernel_dtype!r}") from exc
        if choice not in ("float32", "float64"):
            raise ValueError(f"{_NAME}: kernel_dtype must be None, 'auto', 'float32' or "
                             f"'float64', got {kernel_dtype!r}")
    if method != "scaling" or choice == "float64":
        return False, False
    # every row / column keeps an entry above float32's normal range
    fits = a.min() / b.size > 1e-25 and b.min() / a.size > 1e-25 and a.sum() < 1e25
    if not fits:
        return False, False
    if choice == "float32":
        return True, True
    return True, tol >= _F32_TOL * float(a.sum())


def _embed(P, f, g, ia, ib, shape):
    """Put the support solution back into full-size arrays (zero mass: zero rows, -inf potentials)."""
    n, m = shape
    if ia is None and ib is None:
        return P, f, g
    rows = np.arange(n) if ia is None else ia
    cols = np.arange(m) if ib is None else ib
    P_full = np.zeros((n, m))
    P_full[np.ix_(rows, cols)] = P
    f_full = np.full(n, -np.inf)
    f_full[rows] = f
    g_full = np.full(m, -np.inf)
    g_full[cols] = g
    return P_full, f_full, g_full


# ----------------------------------------------------------------------------
# torch path


def _sinkhorn_torch(a, b, C, eps, schedule, f0, g0, tol, driver, check_every, relax):
    """Log-domain Sinkhorn on torch tensors, over-relaxed like the NumPy ``log`` method.

    Everything stays on the tensors' device; the only device-to-host traffic
    is the scalar marginal violation, read every ``check_every`` iterations
    (the relaxation controller runs on the host from those values). No
    in-place operation touches the potentials, so autograd flows through the
    iterations.
    """
    torch = torch_module()
    loga, logb = torch.log(a), torch.log(b)
    f = torch.zeros_like(a) if f0 is None else f0
    g = torch.zeros_like(b) if g0 is None else g0
    converged = False
    nonfinite = ""
    err = math.inf
    cur_eps = schedule[0]
    stage = 0
    state = SimpleNamespace(iteration=0, eps=cur_eps, marginal_error=err, f=f, g=g)
    # a measurement needs a plain column step (the violation of an actual
    # plan), so while relaxed measure at a multiple of check_every that is
    # >= _CHECK: at check_every = 1 every column step would otherwise be plain
    relaxed_check = check_every * max(1, -(-_Relaxation._CHECK // check_every))
    rx = _Relaxation(relax, check=relaxed_check, spacing=check_every)

    def state_fn():
        state.iteration, state.eps, state.marginal_error, state.f, state.g = (
            driver.k, cur_eps, err, f, g)
        return state

    budget_left = True
    for stage, cur_eps in enumerate(schedule):
        last = stage == len(schedule) - 1
        target = tol if last else max(tol, _STAGE_TOL)
        rx.reset()
        # C / eps once per stage: each half step then needs one n x m
        # temporary (g / eps - C / eps) before the log-sum-exp instead of two
        Ce = C / cur_eps
        if f0 is None and stage == 0:
            f = cur_eps * (loga - torch.logsumexp(g[None, :] / cur_eps - Ce, dim=1))
        while budget_left:
            wc = rx.column_omega()
            g_new = cur_eps * (logb - torch.logsumexp(f[:, None] / cur_eps - Ce, dim=0))
            g = g_new if wc == 1.0 else (1.0 - wc) * g + wc * g_new
            lse = torch.logsumexp(g[None, :] / cur_eps - Ce, dim=1)
            # the row step uses the omega in force before this measurement, as
            # the NumPy kernels do (they measure and update in one pass)
            wr = rx.omega
            if rx.measuring():
                # row sums of the plan (f, g), column-exact (plain column
                # step on measuring iterations), before f moves
                err = float((torch.exp(f / cur_eps + lse) - a).abs().sum().detach())
                driver.record(err, cur_eps)
                if not math.isfinite(err):
                    nonfinite = "marginal error"
                    break
                if err <= target:
                    converged = last
                    break
                rx.update(err)
            f_new = cur_eps * (loga - lse)
            f = f_new if wr == 1.0 else (1.0 - wr) * f + wr * f_new
            budget_left = driver.tick(state_fn)
        if nonfinite or not budget_left:
            break
    if not converged and not nonfinite and rx.omega != 1.0:
        # stopped (max_iter, callback) after an over-relaxed step: one plain
        # step, so that the returned plan is that of Sinkhorn potentials and
        # its reported marginal error is not inflated by the extrapolation
        g = cur_eps * (logb - torch.logsumexp(f[:, None] / cur_eps - Ce, dim=0))
        f = cur_eps * (loga - torch.logsumexp(g[None, :] / cur_eps - Ce, dim=1))
    if not nonfinite and not bool(torch.isfinite(f).all() & torch.isfinite(g).all()):
        nonfinite = "potentials"
    return f, g, converged, nonfinite, cur_eps, stage


# ----------------------------------------------------------------------------
# public API


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
        ``callback(state) -> bool`` after every iteration; ``state`` has
        ``iteration``, ``eps`` (of the current stage), ``marginal_error``
        (latest measured) and ``f``, ``g`` (potentials of the stage, without the
        scalings of the "scaling" method). True stops.
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
        device for torch), ``dual = (f, g)``, ``converged`` (only when the
        returned plan's marginal violation is ``<= tol``), ``info`` with
        ``cost`` (<C, P>), ``objective`` (the entropic objective above),
        ``marginal_error`` (of the returned plan), ``eps_schedule`` and
        ``method``; ``history`` has ``marginal_error`` and ``eps`` per
        iteration.

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
    which are the only device-to-host transfers of the iterations.

    Cost of the "scaling" method: one read of the kernel per iteration (the
    row step and the column sums for the next column step are fused, row by
    row), and one read of ``C`` per eps stage or absorption (an exact
    log-domain row step fused with the kernel rebuild). At n = m = 4000
    (float32 kernel, 64 MB) an iteration is bound by memory bandwidth.

    Non-finite potentials stop the solver with ``converged=False`` and a
    message; reaching ``max_iter`` warns (:class:`ConvergenceWarning`).
    """
    backend = _backend_of(a, b, C, f0, g0, where=_NAME)
    eps = _check_eps(eps)
    tol = check_tolerance(tol)
    max_iter = _check_max_iter(max_iter)
    if method not in ("scaling", "log"):
        raise ValueError(f"{_NAME}: method must be 'scaling' or 'log', got {method!r}")
    if check_every is None:
        check_every = 10 if backend == "torch" else 1
    if isinstance(check_every, bool) or not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise ValueError(f"{_NAME}: check_every must be a positive integer, got {check_every!r}")
    warm = f0 is not None or g0 is not None

    if backend == "torch":
        torch = torch_module()
        a, b, C = _validate_torch(a, b, C, _NAME)
        f0 = _check_potential(f0, C.shape[0], "f0", backend, like=C)
        g0 = _check_potential(g0, C.shape[1], "g0", backend, like=C)
        if bool((a == 0).any()) or bool((b == 0).any()):
            raise ValueError(
                f"{_NAME}: torch inputs need strictly positive a and b "
                "(drop the zero-mass points)"
            )
        C_range = float((C.max() - C.min()).detach())
        schedule = _eps_schedule(eps, eps_scaling, C_range, warm)
        driver = _Driver(max_iter, callback, progress, _NAME)
        try:
            f, g, conv, nonfinite, cur_eps, stage = _sinkhorn_torch(
                a, b, C, eps, schedule, f0, g0, tol, driver, int(check_every), bool(relax))
        finally:
            history, elapsed = driver.close()
        P = torch.exp((f[:, None] + g[None, :] - C) / cur_eps)
        with torch.no_grad():
            row, col = P.sum(1), P.sum(0)
            final_err = float((row - a).abs().sum() + (col - b).abs().sum())
        cost = (C * P).sum()
        logP = (f[:, None] + g[None, :] - C) / cur_eps
        kl = (P * (logP - torch.log(a)[:, None] - torch.log(b)[None, :])).sum() - P.sum() + a.sum() * b.sum()
        objective = cost + eps * kl
        ok = cur_eps == eps and not nonfinite
        converged, message = _finish(driver, conv and ok, final_err, tol, nonfinite, cur_eps, stage)
        converged = converged and ok
        return Result(
            x=P, converged=converged, n_iter=driver.k, message=message, history=history,
            elapsed=elapsed, steps={"eps": eps}, dual=(f, g),
            info={"cost": cost, "objective": objective, "marginal_error": final_err,
                  "eps_schedule": schedule, "method": "log"},
        )

    a, b, C = _validate_numpy(a, b, C, _NAME)
    n, m = C.shape
    f0 = _check_potential(f0, n, "f0", backend)
    g0 = _check_potential(g0, m, "g0", backend)
    ia = None if (a > 0).all() else np.flatnonzero(a > 0)
    ib = None if (b > 0).all() else np.flatnonzero(b > 0)
    Cs, as_, bs = C, a, b
    if ia is not None or ib is not None:
        rows = np.arange(n) if ia is None else ia
        cols = np.arange(m) if ib is None else ib
        Cs = np.ascontiguousarray(C[np.ix_(rows, cols)])
        as_, bs = a[rows], b[cols]
        f0 = None if f0 is None else f0[rows].copy()
        g0 = None if g0 is None else g0[cols].copy()
    schedule = _eps_schedule(eps, eps_scaling, float(Cs.max() - Cs.min()), warm)
    use32, use32_last = _kernel_precision(kernel_dtype, as_, bs, tol, method)
    kernel_used = "float32" if use32_last else ("float32+float64" if use32 else "float64")
    if method == "log":
        kernel_used = None
    driver = _Driver(max_iter, callback, progress, _NAME)
    with _threads_for(Cs.size):
        try:
            f, g, conv, nonfinite, cur_eps, stage, n_absorb = _sinkhorn_numpy(
                as_, bs, Cs, eps, schedule, f0, g0, tol, method, driver, relax, use32, use32_last)
            P, row, col, cost, plogp, final_err = _numpy_plan(Cs, f, g, cur_eps, as_, bs)
            if (use32_last and conv and not nonfinite and final_err > tol + 1e-14
                    and driver.k < max_iter and driver.stop_message is None):
                # the float32 kernel's rounding floor is above tol on this
                # problem: go on in float64 from the potentials reached
                del P
                f, g, conv, nonfinite, cur_eps, _, extra = _sinkhorn_numpy(
                    as_, bs, Cs, eps, [eps], f, g, tol, method, driver, relax)
                n_absorb += extra
                kernel_used = "float32, then float64"
                P, row, col, cost, plogp, final_err = _numpy_plan(Cs, f, g, cur_eps, as_, bs)
        finally:
            history, elapsed = driver.close()
    objective = _kl_objective(cost, plogp, row, col, as_, bs, cur_eps)
    ok = cur_eps == eps and not nonfinite
    converged, message = _finish(driver, conv and ok, final_err, tol, nonfinite, cur_eps, stage)
    converged = converged and ok
    P, f, g = _embed(P, f, g, ia, ib, (n, m))
    return Result(
        x=P, converged=converged, n_iter=driver.k, message=message, history=history,
        elapsed=elapsed, steps={"eps": eps}, dual=(f, g),
        info={"cost": cost, "objective": float(objective), "marginal_error": final_err,
              "eps_schedule": schedule, "method": method, "n_absorptions": n_absorb,
              "kernel_dtype": kernel_used},
    )


def _cost_matrix(X, Y, cost):
    if is_torch(X):
        torch = torch_module()
        if callable(cost):
            return cost(X, Y)
        D = torch.cdist(X, Y)
        return D * D if cost == "sqeuclidean" else D
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if callable(cost):
        return np.asarray(cost(X, Y), dtype=np.float64)
    D2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    np.maximum(D2, 0.0, out=D2)
    return D2 if cost == "sqeuclidean" else np.sqrt(D2)


def sinkhorn_divergence(X, Y, eps, a=None, b=None, cost="sqeuclidean", *, loss="entropic", **kwargs):
    r"""Debiased Sinkhorn divergence between two point clouds.

    .. math:: S_\varepsilon(a, b) = OT_\varepsilon(a, b)
              - \tfrac12 (OT_\varepsilon(a, a) + OT_\varepsilon(b, b))

    Parameters
    ----------
    X, Y : array or tensor, shape (n, d) and (m, d)
        Support points.
    eps : float
        Entropic regularisation (> 0).
    a, b : array or tensor, optional
        Weights (default uniform).
    cost : {"sqeuclidean", "euclidean"} or callable
        Ground cost; ``sqeuclidean`` is ``|x - y|^2`` (as POT's ``dist``).
    loss : {"entropic", "cost"}
        ``"entropic"``: :math:`OT_\varepsilon` is the entropic objective
        ``<C, P> + eps KL(P | a b^T)`` (Feydy et al. 2019; nonnegative,
        metrises weak convergence); ``"cost"``: only ``<C, P>`` (Genevay et al.
        2018; what POT's ``empirical_sinkhorn_divergence`` computes).
    **kwargs
        Passed to :func:`sinkhorn` (``tol``, ``max_iter``, ...).

    Returns
    -------
    float or tensor
        The divergence (a 0-d tensor for torch inputs).
    """
    where = "sinkhorn_divergence"
    _backend_of(X, Y, a, b, where=where)
    eps = _check_eps(eps, where=where)
    if loss not in ("entropic", "cost"):
        raise ValueError(f"{where}: loss must be 'entropic' or 'cost', got {loss!r}")
    if not callable(cost) and cost not in ("sqeuclidean", "euclidean"):
        raise ValueError(f"{where}: cost must be 'sqeuclidean', 'euclidean' or a callable, got {cost!r}")
    for name, Z in (("X", X), ("Y", Y)):
        if Z.ndim != 2:
            raise ValueError(f"{where}: {name} must be 2-D (points x dimensions), got shape {tuple(Z.shape)}")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{where}: X and Y must have the same dimension, got {X.shape[1]} and {Y.shape[1]}")
    key = "objective" if loss == "entropic" else "cost"
    vals = []
    for P, Q, p, q in ((X, Y, a, b), (X, X, a, a), (Y, Y, b, b)):
        r = sinkhorn(p, q, _cost_matrix(P, Q, cost), eps, **kwargs)
        vals.append(r.info[key])
    return vals[0] - 0.5 * (vals[1] + vals[2])


def sinkhorn_unbalanced(a, b, C, eps, rho, *, max_iter=10_000, tol=1e-9, f0=None, g0=None,
                        callback=None, progress=False):
    r"""Unbalanced entropic transport with KL-relaxed marginals (log domain).

    Solves

    .. math:: \min_{P \ge 0} \langle C, P\rangle + \varepsilon\,\mathrm{KL}(P | a b^T)
              + \rho\,\mathrm{KL}(P 1 | a) + \rho\,\mathrm{KL}(P^T 1 | b)

    (POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, eps, rho)`` with its
    default ``reg_type="kl"``) by Chizat et al.'s scaling iterations in the
    log domain: ``f_i = eps log a_i - rho/(rho+eps) * eps LSE_j((g_j - C_ij)/eps)``,
    with ``P_ij = exp((f_i + g_j - C_ij)/eps)``.

    Parameters
    ----------
    a, b : array or tensor, shape (n,), (m,)
        Nonnegative finite weights (any masses; zero-mass points are dropped).
    C : array or tensor, shape (n, m)
        Finite cost.
    eps : float
        Entropic regularisation (> 0).
    rho : float
        Marginal relaxation (> 0; ``inf`` gives balanced transport).
    max_iter : int
        Maximum number of iterations.
    tol : float
        Stop when the largest change of a potential in one iteration,
        divided by ``eps`` (i.e. of ``log u``, ``log v``), is ``<= tol``.
    f0, g0 : array or tensor, optional
        Warm-start potentials.
    callback, progress
        As in :func:`sinkhorn`.

    Returns
    -------
    Result
        ``x`` the plan, ``dual = (f, g)``, ``info`` with ``cost``,
        ``objective`` and ``potential_change``.
    """
    where = "sinkhorn_unbalanced"
    backend = _backend_of(a, b, C, f0, g0, where=where)
    eps = _check_eps(eps, where=where)
    try:
        rho = float(rho)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: rho must be a positive number, got {rho!r}") from exc
    if math.isnan(rho) or rho <= 0:
        raise ValueError(f"{where}: rho must be > 0, got {rho!r}")
    tol = check_tolerance(tol)
    max_iter = _check_max_iter(max_iter)
    kappa = 1.0 if math.isinf(rho) else rho / (rho + eps)
    driver = _Driver(max_iter, callback, progress, where)
    state = SimpleNamespace(iteration=0, eps=eps, marginal_error=math.nan, f=None, g=None)
    change = math.inf
    nonfinite = ""
    converged = False
    if backend == "torch":
        torch = torch_module()
        a, b, C = _validate_torch(a, b, C, where, balanced=False)
        if bool((a == 0).any()) or bool((b == 0).any()):
            raise ValueError(f"{where}: torch inputs need strictly positive a and b")
        loga, logb = torch.log(a), torch.log(b)
        f = torch.zeros_like(a) if f0 is None else _check_potential(f0, C.shape[0], "f0", backend, C)
        g = torch.zeros_like(b) if g0 is None else _check_potential(g0, C.shape[1], "g0", backend, C)
        try:
            while True:
                f_new = eps * loga - kappa * eps * torch.logsumexp((g[None, :] - C) / eps, dim=1)
                g_new = eps * logb - kappa * eps * torch.logsumexp((f_new[:, None] - C) / eps, dim=0)
                change = float(torch.maximum((f_new - f).abs().max(), (g_new - g).abs().max())) / eps
                f, g = f_new, g_new
                state.f, state.g = f, g
                driver.record(change, eps)
                if not math.isfinite(change):
                    nonfinite = "potentials"
                    break
                if change <= tol:
                    converged = True
                    break
                if not driver.tick(lambda: state):
                    break
        finally:
            history, elapsed = driver.close()
        P = torch.exp((f[:, None] + g[None, :] - C) / eps)
        row, col = P.sum(1), P.sum(0)
        cost = (C * P).sum()

        def kl(p, q):
            return (p * torch.log(p / q)).sum() - p.sum() + q.sum()

        logP = (f[:, None] + g[None, :] - C) / eps
        ent = (P * (logP - loga[:, None] - logb[None, :])).sum() - P.sum() + a.sum() * b.sum()
        objective = cost + eps * ent + (0.0 if math.isinf(rho) else rho * (kl(row, a) + kl(col, b)))
    else:
        a, b, C = _validate_numpy(a, b, C, where, balanced=False)
        from tikhon.operators._kernels import sinkhorn_numba as kern

        n, m = C.shape
        ia, ib = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
        full = ia.size == n and ib.size == m
        Cs = C if full else np.ascontiguousarray(C[np.ix_(ia, ib)])
        as_, bs = a[ia], b[ib]
        loga, logb = np.log(as_), np.log(bs)
        f = np.zeros(ia.size) if f0 is None else _check_potential(f0, n, "f0", backend)[ia]
        g = np.zeros(ib.size) if g0 is None else _check_potential(g0, m, "g0", backend)[ib]
        f_new, g_new = np.empty_like(f), np.empty_like(g)
        with _threads_for(Cs.size):
            nb = numba_threads()
            try:
                while True:
                    _, df = kern.row_lse_update(Cs, g, loga, eps, kappa, f, f_new, 1.0)
                    _, dg = kern.col_lse_update(Cs, f_new, logb, eps, kappa, g, g_new, nb, 1.0)
                    f, f_new = f_new, f
                    g, g_new = g_new, g
                    state.f, state.g = f, g
                    change = max(df, dg) / eps
                    driver.record(change, eps)
                    if not math.isfinite(change):
                        nonfinite = "potentials"
                        break
                    if change <= tol:
                        converged = True
                        break
                    if not driver.tick(lambda: state):
                        break
            finally:
                history, elapsed = driver.close()
            P, row, col, cost, plogp, _ = _numpy_plan(Cs, f, g, eps, as_, bs)
        with np.errstate(divide="ignore", invalid="ignore"):
            def kl(p, q):
                return float(np.sum(np.where(p > 0, p * np.log(p / q), 0.0)) - p.sum() + q.sum())

        objective = _kl_objective(cost, plogp, row, col, as_, bs, eps)
        if not math.isinf(rho):
            objective += rho * (kl(row, as_) + kl(col, bs))
        P, f, g = _embed(P, f, g, None if ia.size == n else ia, None if ib.size == m else ib, (n, m))
        objective = float(objective)
    history = dict(history)
    history["potential_change"] = history.pop("marginal_error")
    if nonfinite:
        converged, message = False, f"{where}: stopped at iteration {driver.k}: non-finite {nonfinite}"
    elif converged:
        message = f"{where}: converged, potential_change = {change:.3g} <= tol = {tol:g}"
    elif driver.stop_message is not None:
        message = driver.stop_message
    else:
        message = f"{where}: reached max_iter={max_iter} without meeting tol={tol:g}; potential_change = {change:.3g}"
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return Result(
        x=P, converged=converged, n_iter=driver.k, message=message, history=history,
        elapsed=elapsed, steps={"eps": eps}, dual=(f, g),
        info={"cost": cost, "objective": objective, "potential_change": change, "rho": rho},
    )
