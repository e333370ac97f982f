"""
Learned proximal networks on a Laplacian prior: proximal matching versus MSE
============================================================================

The 1-D experiment of Fang, Buchanan and Sulam ("What's in a prior? Learned
proximal networks for inverse problems", ICLR 2024, Sec. 5.1): signals
``x ~ Laplace(0, 1)``, observations ``y = x + sigma n`` with ``sigma = 1``.
The MAP denoiser is soft thresholding at ``sigma^2 * 1 = 1`` (the prox of
``|x|``); the MMSE denoiser ``E[x | y]`` is a smooth shrinkage, computed here
by quadrature. The same :class:`~tikhon.learned.LearnedProximalNetwork` (four
non-negative hidden maps of width 50, Softplus with ``beta = 10``, as the
authors' 1-D model) is trained twice by :func:`~tikhon.learned.train_lpn`:

* with proximal matching (l1 pre-training, then ``gamma`` annealed from 0.5
  to 0.1 in four stages, a shorter schedule than the authors' 50 000 steps): it should approach soft thresholding, and its learned regularizer
  ``R`` (evaluated by inverting the network,
  :meth:`~tikhon.learned.LearnedProximalNetwork.regularizer`) should approach
  ``|x|`` up to a constant;
* with the squared error: it approaches the MMSE shrinkage instead.

Proximal matching at a finite ``gamma`` targets the maximiser of the
posterior smoothed at scale ``gamma``, not the exact MAP: the script computes
that best-possible denoiser too (by quadrature), which bounds how close any
network trained with the final ``gamma`` can get to soft thresholding near
the threshold ``|y| = 1``. The table prints the max abs error over
``[-3, 3]`` of each network to soft thresholding, to the MMSE denoiser and
to that proximal-matching optimum.

``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) trains for a few
hundred steps only. Usage: ``python examples/plot_lpn_laplacian.py [--out DIR]``
(default: the ``TIKHON_EXAMPLES_OUT`` environment variable, else the current
directory).
"""

import argparse
import os
import time

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import torch
from tikhon.learned import LearnedProximalNetwork, save_lpn, train_lpn

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"
torch.set_num_threads(1)  # two threads on two shared cores ran far slower

SIGMA = 1.0
ARCH = {"in_dim": 1, "hidden": 50, "layers": 4, "beta": 10.0}
# the authors anneal 0.5, 0.4, 0.3, 0.2, 0.1 over 30000 steps of 2000 samples after 20000 l1
# steps, with the learning rate decayed from 1e-3 to 1e-6: a constant 1e-3 lets the
# small-gamma stages drift (the tails shrink), so the rate decays with gamma here too
GAMMAS = [0.5, 0.3, 0.2, 0.1]
PM_LR = [1e-3, 1e-4, 1e-4, 1e-5]
MSE_LR = [1e-3, 1e-4]
if QUICK:
    PRETRAIN, STEPS, BATCH = 300, 400, 256
else:
    PRETRAIN, STEPS, BATCH = 3000, 6000, 1000
GRID = np.linspace(-3.0, 3.0, 601)


def laplace_sampler(n, gen):
    """``n`` draws of Laplace(0, 1) by the inverse CDF of the generator's uniforms."""
    u = torch.rand(n, 1, generator=gen, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()


def soft_threshold(y, t=SIGMA**2):
    return np.sign(y) * np.maximum(np.abs(y) - t, 0.0)


def _posterior(y, t):
    """The posterior density of x given y on the grid t (Laplace prior, Gaussian noise)."""
    logw = -np.abs(t)[None, :] - (y[:, None] - t[None, :]) ** 2 / (2 * SIGMA**2)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return w / np.trapezoid(w, t, axis=1)[:, None]


def mmse_denoiser(y):
    """``E[x | y]`` by quadrature on a fine grid."""
    t = np.linspace(-30.0, 30.0, 24001)
    return np.trapezoid(_posterior(y, t) * t[None, :], t, axis=1)


def proximal_matching_optimum(y, gamma):
    """``argmax_x E[exp(-(x - X)^2 / gamma^2) | y]``: the best denoiser for the loss at ``gamma``."""
    t = np.linspace(-15.0, 15.0, 6001)
    post = _posterior(y, t) * (t[1] - t[0])
    cand = np.linspace(-4.0, 4.0, 4001)
    kernel = np.exp(-(cand[:, None] - t[None, :]) ** 2 / gamma**2)
    return cand[np.argmax(post @ kernel.T, axis=1)]


def train(loss):
    lpn = LearnedProximalNetwork(**ARCH, seed=0)
    if loss == "proximal_matching":
        hist = train_lpn(lpn, laplace_sampler, sigma=SIGMA, loss=loss, pretrain_steps=PRETRAIN, n_steps=STEPS,
                         gamma_schedule=GAMMAS, lr=PM_LR, pretrain_lr=1e-3, batch_size=BATCH, seed=1,
                         progress=False)
    else:
        hist = train_lpn(lpn, laplace_sampler, sigma=SIGMA, loss=loss, n_steps=PRETRAIN + STEPS, lr=MSE_LR,
                         batch_size=BATCH, seed=1, progress=False)
    return lpn, hist


def learned_prox(lpn, y):
    with torch.no_grad():
        return lpn(torch.from_numpy(y).float().reshape(-1, 1)).double().numpy().ravel()


def main(out_dir):
    soft, mmse = soft_threshold(GRID), mmse_denoiser(GRID)
    best_pm = proximal_matching_optimum(GRID, GAMMAS[-1])
    nets, rows = {}, []
    for loss in ("proximal_matching", "mse"):
        t0 = time.perf_counter()
        lpn, hist = train(loss)
        elapsed = time.perf_counter() - t0
        f = learned_prox(lpn, GRID)
        # R on [-3, 3] within the range of the network (alpha = 0, as the authors' 1-D
        # model: f is bounded and R is +inf beyond its range), up to its value at 0
        lo, hi = learned_prox(lpn, np.array([-8.0, 8.0]))
        x_reg = np.linspace(max(-3.0, 0.98 * lo), min(3.0, 0.98 * hi), 121)
        R, info = lpn.regularizer(x_reg.reshape(-1, 1), tol=1e-5, max_iter=3000, full_output=True)
        R = R - np.interp(0.0, x_reg, R)
        nets[loss] = (f, x_reg, R, hist)
        rows.append((loss, hist["steps"], elapsed, np.abs(f - soft).max(), np.abs(f - mmse).max(),
                     np.abs(f - best_pm).max(), np.abs(R - np.abs(x_reg)).max(), info["status"],
                     info["residual"]))
        save_lpn(lpn, os.path.join(out_dir, f"lpn_laplacian_{loss}.safetensors"),
                 meta={"example": "plot_lpn_laplacian", "sigma": SIGMA, "quick": QUICK})

    print(f"Laplace(0, 1) prior, Gaussian noise sigma = {SIGMA}; errors are max |.| over y in [-3, 3]")
    print(f"(reference: the MMSE denoiser is {np.abs(mmse - soft).max():.3f} from soft thresholding; "
          f"the proximal-matching optimum at gamma = {GAMMAS[-1]} is {np.abs(best_pm - soft).max():.3f})")
    head = (f"{'loss':<18}{'steps':>7}{'time (s)':>10}{'to soft thr.':>14}{'to MMSE':>10}"
            f"{'to PM opt.':>12}{'R vs |x|':>10}  inversion")
    print(head)
    print("-" * len(head))
    for loss, steps, el, e_soft, e_mmse, e_pm, e_reg, status, resid in rows:
        print(f"{loss:<18}{steps:>7d}{el:>10.1f}{e_soft:>14.3f}{e_mmse:>10.3f}{e_pm:>12.3f}{e_reg:>10.3f}"
              f"  {status} (residual {resid:.1e})")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    f_pm, x_pm, R_pm, h_pm = nets["proximal_matching"]
    f_mse, x_mse, R_mse, h_mse = nets["mse"]
    ax = axes[0]
    ax.plot(GRID, soft, "k--", label="soft thresholding (MAP)")
    ax.plot(GRID, mmse, "k:", label="MMSE (quadrature)")
    ax.plot(GRID, best_pm, color="0.6", lw=1, label=f"PM optimum, gamma={GAMMAS[-1]}")
    ax.plot(GRID, f_pm, "C0", label="LPN, proximal matching")
    ax.plot(GRID, f_mse, "C1", label="LPN, MSE")
    ax.set(xlabel="y", ylabel="f(y)", title="learned prox")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(x_pm, np.abs(x_pm), "k--", label="|x|")
    ax.plot(x_pm, R_pm, "C0", label="LPN, proximal matching")
    ax.plot(x_mse, R_mse, "C1", label="LPN, MSE")
    ax.set(xlabel="x", ylabel="R(x) - R(0)", title="learned regularizer")
    ax.legend(fontsize=8)
    ax = axes[2]
    for h, c, lab in ((h_pm, "C0", "proximal matching (after l1)"), (h_mse, "C1", "MSE")):
        loss = np.array(h["loss"])
        k = max(1, len(loss) // 100)
        smooth = loss[: len(loss) // k * k].reshape(-1, k).mean(1)
        ax.plot(np.arange(len(smooth)) * k, smooth, c, label=lab)
    ax.set(xlabel="step", ylabel="training loss (running mean)", yscale="log", title="training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "lpn_laplacian.png")
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    main(out)
