"""maid and inexact_gradient_descent: against the closed-form optimum of a ridge problem, on TV."""

import importlib.util
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
scipy_optimize = pytest.importorskip("scipy.optimize")

from tikhon.solvers import ConvergenceWarning
from tikhon.solvers.bilevel import SquaredError, inexact_gradient_descent, maid

# the ridge problem with its closed forms lives beside the hypergradient's tests
# (--import-mode=importlib puts no test folder on sys.path)
_spec = importlib.util.spec_from_file_location(
    "_bilevel_ridge", Path(__file__).with_name("test_hypergradient.py"))
_ridge = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ridge)
ridge_problem = _ridge.ridge_problem


def exact_loss(upper, lower, theta):
    return float(upper.value(lower.exact(torch.as_tensor(theta))))


@pytest.fixture(scope="module")
def ridge():
    upper, lower = ridge_problem()

    def fun(t):
        return exact_loss(upper, lower, t)

    def jac(t):
        return lower.exact_hypergradient(upper, torch.as_tensor(t)).numpy()

    opt = scipy_optimize.minimize(fun, np.zeros(lower.n_params), jac=jac, method="L-BFGS-B",
                                  options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 10_000})
    assert opt.success and np.all(np.abs(opt.x) < 5)  # an interior optimum
    return upper, lower, opt.x, opt.fun


def test_maid_reaches_the_closed_form_optimum(ridge):
    upper, lower, theta_opt, f_opt = ridge
    res = maid(upper, lower, np.zeros(lower.n_params), tol=1e-6, budget=200_000, progress=False)
    assert res.status == "converged", res.message
    assert isinstance(res.x, np.ndarray)
    np.testing.assert_allclose(res.x, theta_opt, atol=1e-3)
    assert exact_loss(upper, lower, res.x) - f_opt <= 1e-9
    h = res.history
    for key in ("eps", "delta", "step", "loss", "accepted", "n_lower", "n_cg", "bound"):
        assert len(h[key]) == res.n_iter
    assert np.all(np.diff(h["n_lower"]) >= 0) and np.all(np.diff(h["n_cg"]) >= 0)
    assert res.info["theta_path"].shape == (res.n_iter + 1, lower.n_params)
    # the theta returned is the one the criterion certified: the last iteration took no step
    assert h["accepted"][-1] == 0 and h["step"][-1] == 0
    np.testing.assert_array_equal(res.info["theta_path"][-1], res.info["theta_path"][-2])
    np.testing.assert_array_equal(res.info["theta_path"][-1], res.x)
    exact = lower.exact_hypergradient(upper, torch.as_tensor(res.x))
    assert float(torch.linalg.vector_norm(exact)) <= h["stationarity"][-1] <= 1e-6


def test_maid_true_loss_decreases_at_every_accepted_step(ridge):
    upper, lower, _, _ = ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.full(lower.n_params, 2.0), beta0=10.0, budget=20_000,
                   progress=False)
    accepted = res.history["accepted"].astype(bool)
    assert accepted.sum() >= 5 and (~accepted).sum() >= 1  # both branches ran
    path = res.info["theta_path"]
    true = np.array([exact_loss(upper, lower, t) for t in path])
    steps = np.diff(true)
    assert np.all(steps[accepted] < 0)
    assert np.all(steps[~accepted] == 0)  # a rejected iteration keeps theta


def test_fixed_schedule_reaches_the_optimum(ridge):
    upper, lower, theta_opt, _ = ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = inexact_gradient_descent(upper, lower, np.zeros(lower.n_params), step=20.0,
                                       max_iter=400, budget=10**6, progress=False)
    np.testing.assert_allclose(res.x, theta_opt, atol=1e-3)
    h = res.history
    if res.status == "converged":  # the certified theta is returned: no step at the last row
        assert h["accepted"][-1] == 0 and h["step"][-1] == 0
        h = {key: v[:-1] for key, v in h.items()}
    assert np.all(h["accepted"] == 1) and np.all(h["step"] == 20.0)


@pytest.mark.parametrize("schedule, expected", [
    ("geometric", 0.1 * 0.9 ** np.arange(1, 6)),
    ("quadratic", 0.1 / np.arange(2, 7) ** 2),
    ("cubic", 0.1 / np.arange(2, 7) ** 3),
])
def test_fixed_schedules(ridge, schedule, expected):
    upper, lower, _, _ = ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = inexact_gradient_descent(upper, lower, np.zeros(lower.n_params), step=20.0,
                                       schedule=schedule, delta0=0.01, max_iter=5,
                                       progress=False)
    np.testing.assert_allclose(res.history["eps"], expected, rtol=1e-12)
    np.testing.assert_allclose(res.history["delta"], expected / 10, rtol=1e-12)
    assert np.all(np.diff(res.history["loss"]) < 0)


def test_torch_in_torch_out_and_budget_status(ridge):
    upper, lower, _, _ = ridge
    theta0 = torch.zeros(lower.n_params, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="budget of 300 lower-level iterations"):
        res = maid(upper, lower, theta0, budget=300, progress=False)
    assert torch.is_tensor(res.x) and res.status == "max_iter" and not res.converged
    assert res.info["n_lower"] <= 300


@pytest.mark.parametrize("budget", [152, 300, 1000])
def test_budget_cut_rows_say_whether_theta_moved(ridge, budget):
    # a budget spent inside the shrink loop or the line search must not repeat the
    # previous iteration's accepted step
    upper, lower, _, _ = ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.full(lower.n_params, 2.0), beta0=10.0, budget=budget,
                   progress=False)
    assert res.status == "max_iter"
    moved = np.any(np.diff(res.info["theta_path"], axis=0) != 0, axis=1)
    np.testing.assert_array_equal(res.history["accepted"].astype(bool), moved)


def test_bound_test_running_out_rejects_the_iteration(ridge, monkeypatch):
    # max_shrink=0 with a loose eps0: the bound test fails; no line search may then run
    # along the uncertified p, nor with an eps smaller than x's accuracy
    from tikhon.solvers.bilevel import inexact

    upper, lower, _, _ = ridge
    searches = []
    original = inexact._MAID._lower

    def lower_solve(self, state, theta, x0, stop=None):
        if theta is not state.theta:  # a backtracking trial
            searches.append((state.x_eps, state.eps, state.bound, state.grad_norm))
        return original(self, state, theta, x0, stop)

    monkeypatch.setattr(inexact._MAID, "_lower", lower_solve)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.zeros(lower.n_params), max_shrink=0, eps0=0.3, delta0=0.3,
                   max_iter=15, progress=False)
    h = res.history
    failed = h["bound"] > (1 - 1e-4) * h["grad_norm"]
    assert failed.any() and (~failed).any()  # both cases ran
    assert np.all(h["accepted"][failed] == 0) and np.all(h["step"][failed] == 0)
    assert searches and all(x_eps <= eps for x_eps, eps, _, _ in searches)
    assert all(bound <= (1 - 1e-4) * g for _, _, bound, g in searches)


def test_backtracking_trials_warm_start_from_reusable_solutions(ridge, monkeypatch):
    # trial i > 0 starts from trial i - 1's solution (its theta is rho-times closer than
    # the accepted one's), the first trial from the accepted x~; after a failed line search
    # (theta kept) trial i starts from the failed search's trial i instead
    from tikhon.solvers.bilevel import inexact

    upper, lower, _, _ = ridge
    searches = {}
    original = inexact._MAID._lower

    def lower_solve(self, state, theta, x0, stop=None):
        sol = original(self, state, theta, x0, stop)
        if theta is not state.theta and sol is not None:  # a backtracking trial
            searches.setdefault(state.k, []).append((state.x, x0, sol.x))
        return sol

    monkeypatch.setattr(inexact._MAID, "_lower", lower_solve)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.full(lower.n_params, 2.0), beta0=10.0, budget=5000,
                   progress=False)
    accepted = res.history["accepted"].astype(bool)
    last, chained, reused = None, 0, 0
    for k in sorted(searches):
        failed = searches[last] if last is not None and not accepted[last] else []
        for i, (x_acc, x0, _) in enumerate(searches[k]):
            if i < len(failed):
                assert x0 is failed[i][2]
                reused += 1
            elif i == 0:
                assert x0 is x_acc
            else:
                assert x0 is searches[k][i - 1][2]
                chained += 1
        last = k
    assert chained >= 3 and reused >= 3  # both kinds occurred


def test_callback_sees_the_iteration_that_spends_the_budget(ridge):
    upper, lower, _, _ = ridge
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.full(lower.n_params, 2.0), beta0=10.0, budget=300,
                   callback=lambda s: seen.append(s.n_lower) and False, progress=False)
    assert res.status == "max_iter" and res.n_iter >= 1
    assert len(seen) == res.n_iter and seen[-1] == res.info["n_lower"] == 300


def test_callback_and_nonfinite_status(ridge):
    upper, lower, _, _ = ridge
    res = maid(upper, lower, np.zeros(lower.n_params), callback=lambda s: s.k >= 3,
               progress=False)
    assert res.status == "callback" and res.n_iter == 3
    # a NaN in the data makes the upper loss NaN: the run stops at once
    bad = SquaredError(upper.x_true)
    bad.x_true = upper.x_true * float("nan")  # SquaredError refuses a NaN target: corrupt it after
    res = inexact_gradient_descent(bad, lower, np.zeros(lower.n_params), step=1.0,
                                   max_iter=50, progress=False)
    assert res.status == "nonfinite" and res.n_iter == 1, res.message
    # maid too, with no solve beyond the initial one (no shrinking eps towards 0 on NaN)
    first = lower.solve(torch.zeros(lower.n_params, dtype=torch.float64), eps=0.1,
                        max_iter=100_000).n_iter
    res = maid(bad, lower, np.zeros(lower.n_params), max_iter=50, progress=False)
    assert res.status == "nonfinite" and res.n_iter == 1, res.message
    assert res.info["n_lower"] == first and res.history["eps"][-1] == 0.1


def test_diverging_fixed_step_stops_early(ridge):
    # step 200 throws theta to ~60, where every lower solve stops at lower_max_iter;
    # the ridge loss stays bounded, so only the failed solve tells
    upper, lower, _, _ = ridge
    res = inexact_gradient_descent(upper, lower, np.zeros(lower.n_params), step=200.0,
                                   max_iter=300, budget=10**6, lower_max_iter=10**4,
                                   progress=False)
    assert res.status == "diverged" and not res.converged, res.message
    assert res.n_iter == 1 and res.info["n_lower"] <= 10**4 + 100
    assert "lower_max_iter" in res.message and "step" in res.message


def test_budget_spent_by_the_initial_solve_keeps_the_history_keys(ridge):
    upper, lower, _, _ = ridge
    with pytest.warns(ConvergenceWarning, match="budget of 1 lower-level"):
        res = maid(upper, lower, np.zeros(lower.n_params), budget=1, progress=False)
    assert res.status == "max_iter" and res.n_iter == 0
    for key in ("loss", "eps", "delta", "step", "accepted", "n_lower", "n_cg", "grad_norm",
                "bound", "stationarity", "iteration", "time"):
        assert res.history[key].shape == (0,)


@pytest.mark.parametrize("kwargs, name", [
    ({"eps0": 0.0}, "eps0"), ({"delta0": -1.0}, "delta0"), ({"beta0": 0.0}, "beta0"),
    ({"rho": 1.0}, "rho"), ({"rho": 0.0}, "rho"), ({"tau": 1.5}, "tau"), ({"eta": 0.0}, "eta"),
    ({"nu": 0.9}, "nu"), ({"budget": 0}, "budget"), ({"max_shrink": -1}, "max_shrink"),
])
def test_maid_bad_input(ridge, kwargs, name):
    upper, lower, _, _ = ridge
    with pytest.raises(ValueError, match=f"maid: {name}"):
        maid(upper, lower, np.zeros(lower.n_params), progress=False, **kwargs)


def test_bad_theta_and_levels(ridge):
    upper, lower, _, _ = ridge
    with pytest.raises(ValueError, match="maid: theta"):
        maid(upper, lower, np.zeros(lower.n_params + 1), progress=False)
    with pytest.raises(ValueError, match="maid: theta"):
        maid(upper, lower, np.zeros((1, lower.n_params)), progress=False)
    with pytest.raises(TypeError, match="maid: lower"):
        maid(upper, upper, np.zeros(lower.n_params), progress=False)
    with pytest.raises(ValueError, match="inexact_gradient_descent: step"):
        inexact_gradient_descent(upper, lower, np.zeros(lower.n_params), step=-1.0)
    with pytest.raises(ValueError, match="inexact_gradient_descent: schedule"):
        inexact_gradient_descent(upper, lower, np.zeros(lower.n_params), step=1.0,
                                 schedule="linear")
    with pytest.raises(TypeError, match="maid: callback"):
        maid(upper, lower, np.zeros(lower.n_params), callback=3, progress=False)
    no_lipschitz = SquaredError(upper.x_true)
    del no_lipschitz.lipschitz
    with pytest.raises(ValueError, match="maid: upper.lipschitz"):
        maid(no_lipschitz, lower, np.zeros(lower.n_params), progress=False)
    with pytest.raises(TypeError, match=r"maid: lower.solve\(theta0\).x is torch.float64"):
        maid(upper, lower, torch.zeros(lower.n_params, dtype=torch.float32), progress=False)


def test_nonpositive_strong_convexity_named_by_the_solver(ridge):
    upper, lower, _, _ = ridge

    class Flat(type(lower)):
        def strong_convexity(self, theta):
            return 0.0

        def solve(self, theta, **kwargs):  # the true mu for the solves, 0 for the bound
            return lower.solve(theta, **kwargs)

    flat = Flat(lower.A, lower.y)
    with pytest.raises(ValueError, match=r"inexact_gradient_descent: lower.strong_convexity"):
        inexact_gradient_descent(upper, flat, np.zeros(lower.n_params), step=1.0,
                                 progress=False)


# ---- scalar smoothed TV: MAID against the grid search over lambda ---------------------------

def _tv_sets():
    from tikhon.data import random_ellipses

    rng = np.random.default_rng(0)
    clean = np.stack([random_ellipses(32, rng) for _ in range(8)])
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    t = torch.from_numpy
    return (t(clean[:4]), t(noisy[:4])), (t(clean[4:]), t(noisy[4:]))


def _denoise(lower, theta, eps=1e-5):
    sol = lower.solve(torch.as_tensor(theta, dtype=torch.float64), eps=eps, max_iter=50_000)
    assert sol.converged
    return sol.x


def test_maid_tv_matches_grid_search_psnr():
    from tikhon.solvers.bilevel import SmoothedTVDenoising

    from tikhon.metrics import psnr

    (x_train, y_train), (x_test, y_test) = _tv_sets()
    lower, upper = SmoothedTVDenoising(y_train), SquaredError(x_train)
    test_lower = SmoothedTVDenoising(y_test)
    log_nu = -5.0

    def test_psnr(theta):
        return psnr(_denoise(test_lower, theta).numpy(), x_test.numpy(), data_range=1.0)

    # grid over lambda at the initial nu, chosen on the training loss (the reference)
    grid = np.linspace(-4.5, 0.0, 10)
    train = [float(upper.value(_denoise(lower, [g, log_nu], eps=1e-4))) for g in grid]
    best = grid[int(np.argmin(train))]
    assert grid[0] < best < grid[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.array([-5.0, log_nu]), budget=2000, progress=False)
    psnr_maid, psnr_grid = test_psnr(res.x), test_psnr([best, log_nu])
    assert psnr_maid >= psnr_grid - 0.1, (res.x, best, psnr_maid, psnr_grid)
    assert res.history["loss"][-1] <= min(train) + 1e-4


def test_maid_tv_true_loss_decreases_at_every_accepted_step():
    from tikhon.solvers.bilevel import SmoothedTVDenoising

    (x_train, y_train), _ = _tv_sets()
    x_train, y_train = x_train[:2, ::2, ::2].contiguous(), y_train[:2, ::2, ::2].contiguous()
    lower, upper = SmoothedTVDenoising(y_train), SquaredError(x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.array([-5.0, -5.0]), beta0=1.0, budget=1500,
                   progress=False)
    accepted = res.history["accepted"].astype(bool)
    assert accepted.sum() >= 5
    true = np.array([float(upper.value(_denoise(lower, t, eps=1e-7)))
                     for t in res.info["theta_path"]])
    assert np.all(np.diff(true)[accepted] < 0)



def test_early_rejection_abandons_only_trials_that_would_fail(monkeypatch):
    # every trial the stop ended early must fail the line-search test when solved in full
    # from the same start: the decision is the full solve's, only the iterations are cut
    from tikhon.solvers.bilevel import SmoothedTVDenoising, inexact

    (x_train, y_train), _ = _tv_sets()
    x_train, y_train = x_train[:2, ::2, ::2].contiguous(), y_train[:2, ::2, ::2].contiguous()
    lower, upper = SmoothedTVDenoising(y_train), SquaredError(x_train)
    stopped = []
    original = inexact._MAID._lower

    def lower_solve(self, state, theta, x0, stop=None):
        sol = original(self, state, theta, x0, stop)
        if sol is not None and sol.stopped:
            stopped.append((theta, x0, state.eps, stop.threshold))
        return sol

    original_stop = inexact._MAID._rejection_certain

    def rejection_certain(self, threshold):
        stop = original_stop(self, threshold)
        stop.threshold = threshold
        return stop

    monkeypatch.setattr(inexact._MAID, "_lower", lower_solve)
    monkeypatch.setattr(inexact._MAID, "_rejection_certain", rejection_certain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(upper, lower, np.array([-5.0, -5.0]), beta0=1.0, budget=1500, progress=False)
    assert len(stopped) >= 2 and res.info["n_early_rejected"] == len(stopped)
    for theta, x0, eps, threshold in stopped:
        full = lower.solve(theta, eps=eps, max_iter=50_000, x0=x0)
        assert full.converged and not full.stopped
        new_upper = (float(upper.value(full.x)) + float(upper.grad(full.x).norm()) * eps
                     + upper.lipschitz * eps**2 / 2)
        assert new_upper > threshold


def test_early_rejection_switch_and_lower_levels_without_stop(ridge):
    from tikhon.solvers.bilevel import SmoothedTVDenoising

    (x_train, y_train), _ = _tv_sets()
    x_train, y_train = x_train[:2, ::2, ::2].contiguous(), y_train[:2, ::2, ::2].contiguous()
    lower, upper = SmoothedTVDenoising(y_train), SquaredError(x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        on = maid(upper, lower, np.array([-5.0, -5.0]), beta0=1.0, budget=600, progress=False)
        off = maid(upper, lower, np.array([-5.0, -5.0]), beta0=1.0, budget=600, progress=False,
                   early_reject=False)
    assert on.info["n_early_rejected"] > 0 and off.info["n_early_rejected"] == 0
    # a lower level whose solve has no stop keyword (the ridge of these tests) solves in full
    rupper, rlower, _, _ = ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = maid(rupper, rlower, np.zeros(rlower.n_params), beta0=10.0, max_iter=10,
                   progress=False)
    assert res.info["n_early_rejected"] == 0

    # a solve may return its own solution object (x, n_iter, converged), without `stopped`
    class OwnSolution(type(rlower)):
        def solve(self, theta, *, eps, max_iter, x0=None):
            sol = super().solve(theta, eps=eps, max_iter=max_iter, x0=x0)
            return types.SimpleNamespace(x=sol.x, n_iter=sol.n_iter, converged=sol.converged)

    own = OwnSolution(rlower.A, rlower.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mine = maid(rupper, own, np.zeros(rlower.n_params), beta0=10.0, max_iter=10,
                    progress=False)
    np.testing.assert_array_equal(mine.x, res.x)
    with pytest.raises(TypeError, match="maid: early_reject"):
        maid(rupper, rlower, np.zeros(rlower.n_params), early_reject="yes", progress=False)


def test_lower_solve_stop_ends_at_the_first_true():
    from tikhon.solvers.bilevel import SmoothedTVDenoising

    (_, y), _ = _tv_sets()
    lower = SmoothedTVDenoising(y[:1])
    theta = torch.tensor([-2.0, -3.0], dtype=torch.float64)
    seen = []

    def stop(x, bound):
        # the bound certifies the very point passed: ||grad g(x)|| / mu
        mu = lower.strong_convexity(theta)
        assert bound == pytest.approx(float(lower.grad(x, theta).norm()) / mu, rel=1e-12)
        seen.append(bound)
        return len(seen) == 4

    sol = lower.solve(theta, eps=1e-8, max_iter=1000, stop=stop)
    assert sol.stopped and not sol.converged and sol.n_iter == 4 and len(seen) == 4
    mu = lower.strong_convexity(theta)
    assert float(lower.grad(sol.x, theta).norm()) / mu == pytest.approx(seen[-1], rel=1e-12)
    full = lower.solve(theta, eps=1e-8, max_iter=10_000)
    assert full.converged and not full.stopped and full.n_iter > 4
    with pytest.raises(TypeError, match="stop"):
        lower.solve(theta, eps=1e-3, max_iter=10, stop=3)
