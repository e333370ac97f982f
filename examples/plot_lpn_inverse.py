"""
Learned proximal networks as priors: PnP-ADMM for deblurring and few-view CT
============================================================================

A learned proximal network (LPN, Fang, Buchanan and Sulam, ICLR 2024) is the
gradient of a convex function, hence exactly the proximal map of some
regularizer ``R``. Used as the prox of ``g`` in plug-and-play ADMM
(:func:`tikhon.solvers.admm` with ``A = None``)::

    x+ = argmin_x tau/2 ||K x - y||^2 + 1/2 ||x - (z - u)||^2   (conjugate gradients)
    z+ = LPN(x+ + u)
    u+ = u + x+ - z+

the iteration solves ``min_x tau/2 ||K x - y||^2 + R(x)``: the network's
strength is fixed by the noise level it was trained at (``as_prox()`` is a
``fixed_step`` functional, so ADMM's penalty only balances the split) and the
data weight ``tau`` is the one parameter, tuned like TV's ``lambda``.

Two problems, each on held-out images:

* (a) deblurring: :class:`~tikhon.operators.Convolution` with a Gaussian
  kernel (std 1.5 px) and 1 % Gaussian noise, on scikit-image's ``camera``
  and ``astronaut`` (the prior ``lpn_natural`` was trained on patches of the
  other bundled images);
* (b) few-view CT: :class:`~tikhon.operators.Radon` with 30 views (20 in the
  quick mode) over 180 degrees and 1 % noise, on random-ellipse phantoms
  (prior ``lpn_ellipses``, trained on other phantoms).

The baseline is TV (:func:`tikhon.solvers.tv_reconstruction`, which takes any
linear operator, so the same recipe serves both problems). TV's ``lambda``
and the LPN's ``tau`` are each chosen by a log grid on a validation image
(``chelsea`` for deblurring, phantom seed 9999 for CT), never on a test
image. The table reports PSNR and SSIM (:mod:`tikhon.metrics`) with the
iterations and status of each solve; the last panel of the figure is the
learned regularizer ``R`` along the segment from a clean test patch to its
noisy version.

The priors are compact (see ``examples/train_lpn_prior.py``, which
reproduces the shipped weights): this compares a small learned prior with
TV, not the paper's image models.

Usage: ``python examples/plot_lpn_inverse.py [--out DIR]`` (default the
``TIKHON_EXAMPLES_OUT`` environment variable, else the current directory).
The full run uses 96 x 96 images; ``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) is
only a smoke run (its numbers are not the results): 32 x 32 crops, one test image per
problem, a two-point TV grid, at most 150 ADMM iterations, the LPN at its MAP weight
``tau = sigma_prior^2 / sigma_noise^2`` without a grid (each PnP solve costs a network
gradient per iteration) and a five-point regularizer curve on a 16 x 16 crop.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from tikhon.operators import Convolution
from tikhon.operators.prox import SquaredL2
from tikhon.solvers import ConvergenceWarning, admm, tv_reconstruction

from tikhon.data import estimate_noise_sigma, random_ellipses, simulate_sinogram
from tikhon.metrics import psnr, ssim

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"

SIZE = 32 if QUICK else 96
BLUR_STD, NOISE = 1.5, 0.01
N_ANGLES = 20 if QUICK else 30
TEST_IMAGES = ("camera",) if QUICK else ("camera", "astronaut")
TEST_PHANTOMS = (10000,) if QUICK else (10000, 10001)
VALIDATION_IMAGE, VALIDATION_PHANTOM = "chelsea", 9999
# log grids (factors around a centre); each is widened while its best value sits on an edge.
# The quick mode does not tune the LPN's weight: it runs the MAP value sigma_prior^2 / sigma_noise^2.
GRID = (0.5, 1.0) if QUICK else (0.25, 0.5, 1.0, 2.0, 4.0)
PNP_GRID = (1.0,) if QUICK else (0.5, 1.0, 2.0)
TOL = 1e-3  # PnP-ADMM's relative residual tolerance (TV runs to TV_TOL)
TV_TOL = 1e-3 if QUICK else 1e-4
MAX_ITER = 150 if QUICK else 300


# -- data ---------------------------------------------------------------------
def gray_image(name, scale):
    """A bundled scikit-image image, grayscale in ``[0, 1]``, rescaled by ``scale``."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import rescale

    im = getattr(skimage.data, name)()
    im = rgb2gray(im[..., :3]) if im.ndim == 3 else im.astype(np.float64) / np.iinfo(im.dtype).max
    return np.clip(rescale(im, scale, anti_aliasing=True), 0.0, 1.0)


def center_crop(im, n):
    i, j = (im.shape[0] - n) // 2, (im.shape[1] - n) // 2
    return np.ascontiguousarray(im[i:i + n, j:j + n])


def natural_image(name):
    """A ``SIZE x SIZE`` centre crop of a 128 x 128 test or validation image."""
    # camera and astronaut are 512 x 512 (scale 1/4); chelsea is 300 x 451 (scale 1/2, cropped)
    im = gray_image(name, 0.25 if name in ("camera", "astronaut") else 0.5)
    return center_crop(center_crop(im, 128), SIZE)


def phantom(seed):
    return random_ellipses(SIZE, rng=seed)


def gaussian_kernel(std, radius=None):
    radius = int(np.ceil(3 * std)) if radius is None else radius
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / std) ** 2)
    k = np.outer(k, k)
    return k / k.sum()


def blur_problem(x, seed):
    """``(K, y)``: Gaussian blur with a zero boundary, noise std ``NOISE`` (images in [0, 1])."""
    K = Convolution(x.shape, gaussian_kernel(BLUR_STD), boundary="zero")
    rng = np.random.default_rng(seed)
    return K, K.forward(x) + NOISE * rng.standard_normal(x.shape)


def ct_problem(x, seed):
    """``(A, y)``: ``N_ANGLES`` parallel views, Gaussian noise ``NOISE * max |A x|``."""
    angles = np.linspace(0.0, np.pi, N_ANGLES, endpoint=False)
    y, A = simulate_sinogram(x, angles, noise="gaussian", level=NOISE, rng=seed, return_operator=True)
    return A, y


# -- solvers --------------------------------------------------------------------
def tv_solve(A, y, lam):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = tv_reconstruction(A, y, lam, tol=TV_TOL, max_iter=2 * MAX_ITER if QUICK else 3000,
                                check_every=10)
    return res, time.perf_counter() - t0


def pnp_solve(A, y, prior, tau, x0, tol=TOL, max_iter=MAX_ITER):
    """PnP-ADMM: ``f = tau/2 ||A x - y||^2`` (prox by CG), ``g`` the LPN's fixed-step prox.

    ``x0`` must be an image in the prior's range (the data or FBP): ``A^T y``
    is far outside it for the Radon transform, and PnP then diverges.
    """
    f = tau * SquaredL2(b=y, op=A, cg_tol=1e-6)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = admm(f, prior, None, x0=x0, rho=1.0, tol=tol, max_iter=max_iter, record_objective=False)
    return res, time.perf_counter() - t0


def tune(solve, x_true, centre, grid=GRID, max_extend=None):
    """Best PSNR of ``solve(p)`` over ``centre * grid``, widened by 2x while the best is on an edge.

    Returns the best parameter and the ``{param: PSNR}`` table.
    """
    table = {}
    if max_extend is None:
        max_extend = 0 if QUICK or len(grid) == 1 else 3

    def at(p):
        if p not in table:
            table[p] = psnr(solve(p)[0].x, x_true, data_range=1.0)
        return table[p]

    for f in grid:
        at(centre * f)
    for _ in range(max_extend):
        ps = sorted(table)
        best = max(table, key=table.get)
        if best == ps[0]:
            at(ps[0] / 2)
        elif best == ps[-1]:
            at(ps[-1] * 2)
        else:
            break
    return max(table, key=table.get), dict(sorted(table.items()))


def row(method, x, x_true, res=None, param=float("nan"), seconds=0.0):
    return {"method": method, "x": x, "param": param, "seconds": seconds,
                "psnr": psnr(x, x_true, data_range=1.0), "ssim": ssim(x, x_true, data_range=1.0),
                "n_iter": 0 if res is None else res.n_iter, "status": "-" if res is None else res.status}


# -- the experiments --------------------------------------------------------------
def run_problem(kind, prior, verbose=True):
    """Tune TV and PnP-LPN on the validation image, then run both on the test images.

    ``prior`` is an entry of :func:`load_priors` (``prox``: the LPN's fixed-step
    functional, ``sigma``: its training noise level).
    """
    if kind == "deblur":
        make, truth = blur_problem, natural_image
        cases = TEST_IMAGES
        val = truth(VALIDATION_IMAGE)
        naive = "blurred data"
    else:
        make, truth = ct_problem, phantom
        cases = TEST_PHANTOMS
        val = truth(VALIDATION_PHANTOM)
        naive = "FBP"
    A, y = make(val, seed=1)
    sigma_noise = estimate_noise_sigma(y)
    # TV: 6 sigma is tikhon's CT default; deblurring (||K|| = 1) wants far less (measured on the grid)
    lam_tv, grid_tv = tune(lambda lam: tv_solve(A, y, lam), val,
                           centre=(0.5 if kind == "deblur" else 6.0) * sigma_noise)
    # R ~ -sigma_prior^2 log p (the prior's denoising MAP), so the MAP data weight is
    # tau = sigma_prior^2 / sigma_noise^2
    x0 = y if kind == "deblur" else A.fbp(y)
    tau_pnp, grid_pnp = tune(lambda tau: pnp_solve(A, y, prior["prox"], tau, x0), val,
                             centre=(prior["sigma"] / sigma_noise) ** 2, grid=PNP_GRID)
    if verbose:
        print(f"{kind}: validation grids (PSNR)\n  TV lambda: {_fmt_grid(grid_tv)}\n  PnP tau:   {_fmt_grid(grid_pnp)}")
    results = {}
    for k, case in enumerate(cases):
        x_true = truth(case)
        A, y = make(x_true, seed=100 + k)
        rows = []
        x_naive = y if kind == "deblur" else A.fbp(y)
        rows.append(row(naive, x_naive, x_true))
        res, sec = tv_solve(A, y, lam_tv)
        rows.append(row("TV", res.x, x_true, res, lam_tv, sec))
        res, sec = pnp_solve(A, y, prior["prox"], tau_pnp, x_naive)
        rows.append(row("PnP-ADMM (LPN)", res.x, x_true, res, tau_pnp, sec))
        results[case] = {"x_true": x_true, "rows": rows, "history": res.history}
    return results, {"tv": grid_tv, "pnp": grid_pnp}


def _fmt_grid(grid):
    return " ".join(f"{p:.3g}:{q:.2f}" for p, q in grid.items())


def format_table(title, results):
    lines = [title, (f"{'image':>10s} {'method':16s} {'PSNR':>7s} {'SSIM':>7s} {'param':>8s} {'iters':>6s} "
                    f"{'status':>10s} {'seconds':>8s}")]
    for case, r in results.items():
        for rw in r["rows"]:
            lines.append(f"{case!s:>10s} {rw['method']:16s} {rw['psnr']:7.2f} {rw['ssim']:7.4f} "
                         f"{rw['param']:8.3g} {rw['n_iter']:6d} {rw['status']:>10s} {rw['seconds']:8.1f}")
    return "\n".join(lines)


def load_priors(weights=None):
    """The LPN priors (default: the shipped ones) and the facts their files record."""
    import tikhon.learned
    from tikhon.learned import load_lpn

    weights = weights or os.path.join(os.path.dirname(tikhon.learned.__file__), "weights")
    priors = {}
    for kind, name in (("deblur", "natural"), ("ct", "ellipses")):
        path = os.path.join(weights, f"lpn_{name}.safetensors")
        lpn = load_lpn(path)
        extra = lpn.file_metadata["extra"]["meta"]
        held_out = set(TEST_IMAGES) | {VALIDATION_IMAGE}
        if kind == "deblur" and held_out & set(extra.get("train_images", ())):
            raise RuntimeError(f"{path} was trained on a test or validation image")
        if kind == "ct" and max(TEST_PHANTOMS + (VALIDATION_PHANTOM,)) < extra.get("n_phantoms", 0):
            raise RuntimeError(f"{path} was trained on a test or validation phantom")
        priors[kind] = {"lpn": lpn, "prox": lpn.as_prox(), "sigma": float(extra["sigma"]), "path": path}
    return priors


def regularizer_curve(lpn, clean, sigma, seed=0, n_points=5 if QUICK else 21):
    """``R((1 - t) clean + t noisy)`` for ``t`` in ``[0, 1]``, one batch of inversions."""
    import torch

    rng = np.random.default_rng(seed)
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    t = np.linspace(0.0, 1.0, n_points)
    path = (1 - t)[:, None, None] * clean + t[:, None, None] * noisy
    with torch.no_grad():
        values, info = lpn.regularizer(path[:, None], full_output=True)
    return t, np.asarray(values), info


def plot(deblur, ct, curve, path):
    import matplotlib

    matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 6.6))
    grid = fig.add_gridspec(2, 5, width_ratios=(1, 1, 1, 1, 1.5))
    for i, (title, results) in enumerate((("deblurring", deblur), ("few-view CT", ct))):
        case, r = next(iter(results.items()))
        panels = [("ground truth", r["x_true"], None)] + [(rw["method"], rw["x"], rw) for rw in r["rows"]]
        for j, (name, x, rw) in enumerate(panels):
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(x, cmap="gray", vmin=0, vmax=1)
            label = f"{title}: {case}" if rw is None else f"{name}\n{rw['psnr']:.2f} dB, SSIM {rw['ssim']:.3f}"
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    ax = fig.add_subplot(grid[:, 4])
    for label, (t, values) in curve.items():
        ax.plot(t, values - values[0], "o-", ms=3, label=label)
    ax.set_xlabel("t   (x = (1 - t) clean + t noisy)")
    ax.set_ylabel("R(x) - R(clean)")
    ax.set_title("learned regularizer along clean -> noisy", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    # left open: the documentation gallery captures the open figures


def main(argv=None):
    parser = argparse.ArgumentParser(description="PnP-ADMM with learned proximal networks vs TV.")
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    parser.add_argument("--weights", default=None, help="folder of lpn_*.safetensors (default: the shipped)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # two threads on two shared cores ran far slower
    t0 = time.perf_counter()
    if QUICK:
        print("TIKHON_EXAMPLES_QUICK=1: a smoke run (32 x 32 crops, short grids and budgets); "
              "its numbers are not the example's results")
    priors = load_priors(args.weights)
    tables, results = [], {}
    for kind, title in (("deblur", f"(a) deblurring, Gaussian blur std {BLUR_STD} px, {100 * NOISE:g}% noise"),
                        ("ct", f"(b) few-view CT, {N_ANGLES} views, {100 * NOISE:g}% noise")):
        results[kind], grids = run_problem(kind, priors[kind])
        tables.append(format_table(f"{title}, {SIZE} x {SIZE}", results[kind]))
        tables.append(f"validation grids (PSNR): TV lambda {_fmt_grid(grids['tv'])}; "
                      f"PnP tau {_fmt_grid(grids['pnp'])}")
    curve = {}
    m = 16 if QUICK else 64
    for kind, label in (("deblur", "natural prior, camera"), ("ct", "ellipse prior, phantom")):
        _case, r = next(iter(results[kind].items()))
        t, values, info = regularizer_curve(priors[kind]["lpn"], center_crop(r["x_true"], m), priors[kind]["sigma"])
        curve[f"{label} ({m} x {m} crop)"] = (t, values)
        tables.append(f"R along clean -> noisy ({label}): " + " ".join(f"{v:.3g}" for v in values)
                      + f"  (inversion residual max {np.max(np.asarray(info['residual'])):.1e})")
    text = "\n\n".join(tables)
    print(text)
    with open(os.path.join(args.out, "lpn_inverse.txt"), "w") as fh:
        fh.write(text + "\n")
    plot(results["deblur"], results["ct"], curve, os.path.join(args.out, "lpn_inverse.png"))
    print(f"total {time.perf_counter() - t0:.0f} s; wrote lpn_inverse.txt and lpn_inverse.png to {args.out}")


if __name__ == "__main__":
    main()
