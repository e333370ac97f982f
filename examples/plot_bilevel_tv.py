"""
Bilevel learning of smoothed-TV parameters: MAID against fixed accuracy schedules and grid search
=================================================================================================

Learns ``theta = (log lam, log nu)`` of smoothed-TV denoising
(:class:`tikhon.solvers.bilevel.SmoothedTVDenoising`, the lower level of
Salehi, Mukherjee, Roberts and Ehrhardt's MAID paper) from 16 of
scikit-image's bundled images, converted to grayscale, centre-cropped,
resized to 96 x 96 and scaled to [0, 1], with Gaussian noise of standard
deviation 0.1 (seeded). The upper level is the mean squared error to the
clean images (:class:`~tikhon.solvers.bilevel.SquaredError`); other bundled
images are held out for the test PSNR. Compared, by the true cost (total
lower-level iterations):

- grid search over ``lam`` at the starting ``nu = e^-5`` (each point solved
  to ``||x - x*|| <= 1e-3``, warm-started along the grid: the cheapest
  honest grid), whose best loss is the reference;
- :func:`~tikhon.solvers.bilevel.maid` from ``theta0 = (-5, -5)``;
- :func:`~tikhon.solvers.bilevel.inexact_gradient_descent` with the
  geometric, quadratic and cubic accuracy schedules and a fixed step.

"Reached" is read two ways from the runs' own counters: the loss ``f(x~)``
that the method itself sees at its current ``theta`` is at most the grid
optimum's loss, or (stricter) its certified upper bound ``f(x~) + ||grad
f(x~)|| eps + L_f eps^2 / 2`` is. Then MAID's robustness to its ``eps0`` and ``beta0``, and per-pixel
TV weights learned by MAID for few-view CT (random-ellipse phantoms,
:class:`~tikhon.operators.Radon`,
:class:`~tikhon.solvers.bilevel.SmoothedTVReconstruction`) against the
hand-made weights of :func:`~tikhon.solvers.space_variant_weights` and the
pretrained :class:`~tikhon.learned.TVWeightNet`, all in the same smoothed-TV
model (``mu_floor = 1e-2``, ``nu`` learned by the scalar MAID run), tested on
held-out phantoms. This part is a reduced version of the issue's: 32 x 32
phantoms, 20 views, 1 % noise, 6 training and 4 test phantoms, 2000
lower-level iterations for the scalar MAID run and 2000 for the per-pixel
one; the network is the shipped one (trained on its own phantoms, not
retrained on these six), and the scale factor of the hand-made and network
weights (times MAID's ``lam``, from {1, 1.5, 2}) is picked on the test
phantoms, which favours those two.

``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) uses 4 training images
of 48 x 48 and small budgets. Usage: ``python examples/plot_bilevel_tv.py
[--out DIR] [--part all|tv|ct]`` (default: the ``TIKHON_EXAMPLES_OUT``
environment variable, else the current directory).
"""

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import torch
from tikhon.solvers.bilevel import (
    SmoothedTVDenoising,
    SmoothedTVReconstruction,
    SquaredError,
    inexact_gradient_descent,
    maid,
)

from tikhon.metrics import psnr

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"
torch.set_num_threads(1)  # two threads on two shared cores ran far slower

TRAIN = ["camera", "astronaut", "brick", "cat", "cell", "chelsea", "clock", "coffee", "coins",
         "grass", "gravel", "horse", "moon", "page", "rocket", "text"]
TEST = ["hubble_deep_field", "immunohistochemistry", "retina", "microaneurysms",
        "shepp_logan_phantom", "logo"]
SIGMA = 0.1
THETA0 = (-5.0, -5.0)
if QUICK:
    SIZE, N_TRAIN, N_TEST, BUDGET = 48, 4, 2, 400
    GRID = np.linspace(-5.0, 0.0, 11)
else:
    SIZE, N_TRAIN, N_TEST, BUDGET = 96, 16, 6, 1500
    GRID = np.linspace(-5.0, 0.0, 21)
# the fixed schedules need a step: the geometric schedule runs at each of these, and the
# other two at the best of them (the tuning runs are not charged to the schedules)
STEPS = (0.01, 0.03, 0.1)
EPS_GRID = 1e-3
# the CT part's Tikhonov floor (A scaled to norm 1): L / mu ~ 1 / MU_FLOOR, and the
# certificate ||grad g|| / mu is that much more pessimistic than the true distance
MU_FLOOR = 1e-2
LOWER_MAX_ITER = 20_000


# -- data ------------------------------------------------------------------------------------------
def load_image(name, n):
    """A bundled scikit-image picture: grayscale, centre-cropped square, ``n x n``, in [0, 1]."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some bundled files warn about their metadata
        im = np.asarray(getattr(skimage.data, name)())
    if im.ndim == 3:
        im = rgb2gray(im[..., :3])
    im = im.astype(np.float64)
    h, w = im.shape
    s = min(h, w)
    im = im[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    im = resize(im, (n, n), anti_aliasing=True)
    return (im - im.min()) / max(im.max() - im.min(), 1e-12)


def noisy_set(names, n, rng):
    x = np.stack([load_image(name, n) for name in names])
    return torch.from_numpy(x), torch.from_numpy(x + SIGMA * rng.standard_normal(x.shape))


# -- the methods, each with its cost -------------------------------------------------------------------
def grid_search(lower, upper, log_lams, log_nu):
    """Solve at each ``lam`` (warm-started along the grid); cumulative cost and loss per point."""
    rows, x, cost = [], None, 0
    for log_lam in log_lams:
        theta = torch.tensor([log_lam, log_nu], dtype=torch.float64)
        sol = lower.solve(theta, eps=EPS_GRID, max_iter=LOWER_MAX_ITER, x0=x)
        x, cost = sol.x, cost + sol.n_iter
        rows.append((float(log_lam), float(upper.value(sol.x)), cost))
    return rows


class Trace:
    """Callback: after each outer iteration, the certified upper bound of the loss and the cost."""

    def __init__(self, upper):
        self.upper, self.rows = upper, []

    def __call__(self, state):
        f = float(state.loss)
        g = float(self.upper.grad(state.x).norm())
        bound = f + g * state.x_eps + self.upper.lipschitz * state.x_eps**2 / 2
        self.rows.append((state.n_lower, state.n_cg, f, bound))
        return False

    def first_reach(self, target, certified=True):
        """Lower-level iterations when the certified bound (or ``f(x~)``) first met ``target``.

        None when it never did.
        """
        for n_lower, _, f, bound in self.rows:
            if (bound if certified else f) <= target:
                return n_lower
        return None


def run_maid(upper, lower, budget, **kw):
    trace = Trace(upper)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the budget is the stopping rule here
        res = maid(upper, lower, torch.tensor(THETA0, dtype=torch.float64), budget=budget,
                   callback=trace, progress=False, **kw)
    return res, trace, time.perf_counter() - t0


def run_schedule(upper, lower, budget, schedule, step):
    trace = Trace(upper)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = inexact_gradient_descent(upper, lower, torch.tensor(THETA0, dtype=torch.float64),
                                       step=step, schedule=schedule, eps0=0.1, budget=budget,
                                       callback=trace, progress=False)
    return res, trace, time.perf_counter() - t0


def test_psnr(theta, x_test, y_test):
    """Mean PSNR (dB) of the denoised held-out images at ``theta`` (solved to 1e-4)."""
    lower = SmoothedTVDenoising(y_test)
    sol = lower.solve(torch.as_tensor(theta, dtype=torch.float64), eps=1e-4,
                      max_iter=LOWER_MAX_ITER)
    return float(np.mean([psnr(a.numpy(), b.numpy(), data_range=1.0)
                          for a, b in zip(sol.x, x_test)]))


def _fmt(v):
    return "never" if v is None else f"{v}"


def _ratio(a, b):
    return "n/a" if a is None or b is None else f"{b / a:.2f}x"


# -- part 1: scalar TV ----------------------------------------------------------------------------------
def scalar_tv(rng):
    x_train, y_train = noisy_set(TRAIN[:N_TRAIN], SIZE, rng)
    x_test, y_test = noisy_set(TEST[:N_TEST], SIZE, rng)
    lower, upper = SmoothedTVDenoising(y_train), SquaredError(x_train)

    t0 = time.perf_counter()
    grid = grid_search(lower, upper, GRID, THETA0[1])
    t_grid = time.perf_counter() - t0
    best = min(grid, key=lambda r: r[1])
    target, grid_cost = best[1], grid[-1][2]

    runs = {"MAID": run_maid(upper, lower, BUDGET)}
    for step in STEPS:
        runs[f"geometric, step {step:g}"] = run_schedule(upper, lower, BUDGET, "geometric", step)

    def merit(name):  # the cost to the grid optimum, then the final loss
        trace = runs[name][1]
        reach = trace.first_reach(target)
        return (math.inf if reach is None else reach, trace.rows[-1][2] if trace.rows else math.inf)

    best_step = float(min((k for k in runs if k != "MAID"), key=merit).split()[-1])
    for schedule in ("quadratic", "cubic"):
        runs[f"{schedule}, step {best_step:g}"] = run_schedule(upper, lower, BUDGET, schedule,
                                                                best_step)

    lines = [(f"Scalar smoothed TV, {N_TRAIN} training images {SIZE}x{SIZE}, sigma = {SIGMA}, "
             f"theta0 = {THETA0}"),
             (f"grid search over log lam in [{GRID[0]:g}, {GRID[-1]:g}] ({len(GRID)} points, "
             f"nu = e^{THETA0[1]:g}): best log lam = {best[0]:.2f}, loss = {target:.5f}, "
             f"{grid_cost} lower-level iterations ({t_grid:.1f} s)"),
             "",
             (f"{'method':<24}{'final loss':>12}{'log lam':>9}{'log nu':>9}{'lower it.':>11}"
             f"{'CG it.':>8}{'reach f(x~)':>13}{'certified':>11}{'time s':>8}{'test PSNR':>11}")]
    reach, seen = {}, {}
    psnrs = {"grid search": test_psnr((best[0], THETA0[1]), x_test, y_test)}
    lines.append(f"{'grid search':<24}{target:>12.5f}{best[0]:>9.2f}{THETA0[1]:>9.2f}"
                 f"{grid_cost:>11}{0:>8}{grid_cost:>13}{grid_cost:>11}{t_grid:>8.1f}"
                 f"{psnrs['grid search']:>11.2f}")
    for name, (res, trace, elapsed) in runs.items():
        theta = np.asarray(res.x)
        reach[name] = trace.first_reach(target)
        seen[name] = trace.first_reach(target, certified=False)
        psnrs[name] = test_psnr(theta, x_test, y_test)
        final = trace.rows[-1][2] if trace.rows else float("nan")
        lines.append(f"{name:<24}{final:>12.5f}{theta[0]:>9.2f}{theta[1]:>9.2f}"
                     f"{res.info['n_lower']:>11}{res.info['n_cg']:>8}{_fmt(seen[name]):>13}"
                     f"{_fmt(reach[name]):>11}{elapsed:>8.1f}{psnrs[name]:>11.2f}")
    noisy = np.mean([psnr(y.numpy(), x.numpy(), data_range=1.0) for x, y in zip(x_test, y_test)])
    lines += ["", f"noisy test PSNR: {noisy:.2f} dB",
              ("lower-level iterations to reach the grid optimum (goals: grid / MAID >= 5x, "
              "best schedule / MAID >= 2x):")]
    for label, table in (("f(x~)", seen), ("certified", reach)):
        schedules = [v for k, v in table.items() if k != "MAID" and v is not None]
        best_schedule = min(schedules) if schedules else None
        lines.append(f"  {label:<10} grid / MAID = {_ratio(table['MAID'], grid_cost)}, "
                     f"best schedule / MAID = {_ratio(table['MAID'], best_schedule)}")
    return lines, grid, runs, target, (lower, upper)


def robustness(lower, upper, target, default):
    """MAID from other ``eps0`` and ``beta0``: final loss, theta and the cost to the grid optimum."""
    lines = [("MAID's robustness to its own eps0 (= delta0) and beta0 "
             f"(budget {BUDGET} lower-level iterations each)"),
             (f"{'eps0':>8}{'beta0':>8}{'final loss':>12}{'log lam':>9}{'log nu':>9}"
             f"{'outer it.':>10}{'reach f(x~)':>13}{'certified':>11}")]
    settings = [(1e-3, 0.1), (1e-1, 0.1), (10.0, 0.1), (1e-1, 1e-3), (1e-1, 10.0)]
    notes = []
    for eps0, beta0 in settings:
        if (eps0, beta0) == (1e-1, 0.1):
            res, trace, _ = default  # the defaults: the run of the table above
        else:
            res, trace, _ = run_maid(upper, lower, BUDGET, eps0=eps0, delta0=eps0, beta0=beta0)
        theta = np.asarray(res.x)
        # no row only when the initial solve spent the whole budget
        final = f"{trace.rows[-1][2]:.5f}" if trace.rows else "n/a"
        lines.append(f"{eps0:>8g}{beta0:>8g}{final:>12}{theta[0]:>9.2f}"
                     f"{theta[1]:>9.2f}{res.n_iter:>10}"
                     f"{_fmt(trace.first_reach(target, certified=False)):>13}"
                     f"{_fmt(trace.first_reach(target)):>11}")
        if res.n_iter and not res.history["accepted"].any():
            h = res.history
            notes.append(f"eps0 = {eps0:g}, beta0 = {beta0:g}: no step accepted: the line "
                         f"search's trial step {h['step'][-1]:g} along |p| = "
                         f"{h['grad_norm'][-1]:.3g} left the lower level too ill-conditioned to "
                         f"solve within the budget ({res.info['n_lower']} iterations spent)")
    return lines + notes


# -- part 2: per-pixel weights for few-view CT -------------------------------------------------------------
def ct_weights(rng, n=32, n_angles=20, n_train=6, n_test=4, noise=0.01, budget=2000):
    """Per-pixel TV weights learned by MAID against hand-made and network weights, one model."""
    from tikhon.learned import TVWeightNet
    from tikhon.solvers import fbp_reconstruction, space_variant_weights

    from tikhon.data import random_ellipses, simulate_sinogram

    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    # the projector simulate_sinogram uses (its detector count)
    _, A = simulate_sinogram(np.zeros((n, n)), angles, noise=None, return_operator=True)
    scale = 1.0 / float(A.norm())  # ||A|| = 1 after scaling keeps L / mu moderate

    def sample(k):
        xs, ys, fbps = [], [], []
        for _ in range(k):
            x = random_ellipses(n, rng=rng)
            y = simulate_sinogram(x, angles, level=noise, rng=rng)
            xs.append(x)
            ys.append(y * scale)
            fbps.append(fbp_reconstruction(A, y).x)
        return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
                torch.from_numpy(np.stack(fbps)))

    As = scale * A
    x_tr, y_tr, fbp_tr = sample(n_train)
    x_te, y_te, fbp_te = sample(n_test)
    # every solve starts from the filtered backprojections (L / mu ~ 1 / mu_floor here)
    train = SmoothedTVReconstruction(As, y_tr, weights="scalar", mu_floor=MU_FLOOR, x_init=fbp_tr)
    upper = SquaredError(x_tr)
    # the scalar model first (MAID on (log lam, log nu)), then per-pixel weights from it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res_s = maid(upper, train, torch.tensor([-5.0, -5.0], dtype=torch.float64),
                     budget=budget, progress=False)
        log_lam, log_nu = (float(v) for v in res_s.x)
        pixel = SmoothedTVReconstruction(As, y_tr, weights="pixel", mu_floor=MU_FLOOR,
                                         x_init=res_s.info["x"])
        theta0 = torch.cat([torch.full((n * n,), log_lam, dtype=torch.float64),
                            torch.tensor([log_nu], dtype=torch.float64)])
        res_p = maid(SquaredError(x_tr), pixel, theta0, budget=budget, progress=False)

    def solve_test(k, w):
        """The smoothed-TV solve of test phantom ``k`` with per-pixel weights ``w``."""
        lower = SmoothedTVReconstruction(As, y_te[k:k + 1], weights="pixel", mu_floor=MU_FLOOR,
                                         x_init=fbp_te[k:k + 1])
        theta = torch.cat([torch.log(torch.as_tensor(w, dtype=torch.float64)).reshape(-1),
                           torch.tensor([log_nu], dtype=torch.float64)])
        return lower.solve(theta, eps=1e-3, max_iter=LOWER_MAX_ITER).x[0]

    def test_with(per_image_weights):
        """Mean test PSNR with weights ``per_image_weights(k)`` for phantom ``k``."""
        return float(np.mean([psnr(solve_test(k, per_image_weights(k)).numpy(), x_te[k].numpy())
                              for k in range(n_test)]))

    lam = math.exp(log_lam)
    learned = res_p.x[:-1].exp().reshape(n, n).numpy()
    net = TVWeightNet.pretrained()
    lam_map = np.full((n, n), lam)
    rows = [("scalar TV (MAID's lam)", test_with(lambda k: lam_map)),
            ("per-pixel, learned by MAID", test_with(lambda k: learned))]
    pilot = [space_variant_weights(solve_test(k, lam_map).numpy()) for k in range(n_test)]
    # a tuned multiple of the hand-made weights: they lie in (0, 1]
    best_c = max((test_with(lambda k, c=c: c * lam * pilot[k]), c) for c in (1.0, 1.5, 2.0))
    rows.append((f"space_variant_weights of a TV pilot (x{best_c[1]:g})", best_c[0]))
    net_w = []
    for k in range(n_test):
        _, g = net.predict(fbp_te[k].numpy())
        net_w.append(space_variant_weights(g, kind="gradient"))
    best_n = max((test_with(lambda k, c=c: c * lam * net_w[k]), c) for c in (1.0, 1.5, 2.0))
    rows.append((f"TVWeightNet (pretrained) weights (x{best_n[1]:g})", best_n[0]))
    lines = [(f"Few-view CT: {n}x{n} random ellipses, {n_angles} views, {100 * noise:g}% noise, "
             f"{n_train} training / {n_test} test phantoms, smoothed TV (nu = e^{log_nu:.2f}), "
             f"mu_floor = {MU_FLOOR:g}, MAID budget {budget} lower-level iterations for the scalar "
             f"model, then {budget} for the per-pixel one"),
             (f"scalar MAID: {res_s.n_iter} outer iterations, {res_s.info['n_lower']} lower-level "
             f"iterations, theta = ({log_lam:.2f}, {log_nu:.2f}); per-pixel MAID: {res_p.n_iter} "
             f"outer iterations, {res_p.info['n_lower']} lower-level iterations, training loss "
             f"{float(upper.value(res_s.info['x'])):.4g} -> {float(upper.value(res_p.info['x'])):.4g}"),
             f"{'weights':<46}{'test PSNR':>10}"]
    lines += [f"{name:<46}{value:>10.2f}" for name, value in rows]
    return lines, learned


# -- figure and main -------------------------------------------------------------------------------------------
def plot(scalar, learned, path):
    panels = [p for p in (scalar, learned) if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    axes = list(axes[0])
    if scalar is not None:
        grid, runs, target = scalar
        ax = axes.pop(0)
        ax.plot([r[2] for r in grid], np.minimum.accumulate([r[1] for r in grid]), "k.-",
                label="grid search (best so far)")
        for name, (_, trace, _) in runs.items():
            ax.plot([r[0] for r in trace.rows], [r[2] for r in trace.rows], ".-", ms=3,
                    label=name)
        ax.axhline(target, color="gray", ls=":", lw=1, label="grid optimum")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("total lower-level iterations")
        ax.set_ylabel("upper loss ||x(theta) - x_true||^2 / (2N)")
        ax.legend(fontsize=7)
    if learned is not None:
        ax = axes.pop(0)
        im = ax.imshow(learned, cmap="magma")
        ax.set_title("per-pixel TV weights learned by MAID (few-view CT)", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    # left open: the documentation gallery captures the open figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    parser.add_argument("--part", choices=("all", "tv", "ct"), default="all",
                        help="run both parts, only scalar TV (with the robustness table) or only CT")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lines, scalar, learned = [], None, None
    if args.part in ("all", "tv"):
        tv_lines, grid, runs, target, (lower, upper) = scalar_tv(np.random.default_rng(0))
        lines += tv_lines + [""] + robustness(lower, upper, target, runs["MAID"])
        scalar = (grid, runs, target)
    if args.part in ("all", "ct"):
        kw = {"n": 16, "n_angles": 8, "n_train": 2, "n_test": 1, "budget": 300} if QUICK else {}
        ct_lines, learned = ct_weights(np.random.default_rng(1), **kw)
        lines += ([""] if lines else []) + ct_lines
    lines += ["", f"total time {time.perf_counter() - t0:.1f} s"]
    text = "\n".join(lines)
    print(text)
    suffix = "" if args.part == "all" else f"_{args.part}"
    (out / f"bilevel_tv{suffix}.txt").write_text(text + "\n")
    plot(scalar, learned, out / f"bilevel_tv{suffix}.png")
    print(f"wrote {out / f'bilevel_tv{suffix}.txt'} and {out / f'bilevel_tv{suffix}.png'}")


if __name__ == "__main__":
    main()
