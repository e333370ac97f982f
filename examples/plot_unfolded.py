"""
Deep unfolding: supervised versus unsupervised training of ISTA, IHT and Chambolle-Pock
=======================================================================================

Reproduces the comparison of Nagahisa, Hayakawa and Iiguni ("Comparison
between supervised and unsupervised learning in deep unfolded sparse signal
recovery", arXiv:2509.01331) on Gaussian compressed sensing: ``n = 300``
unknowns, ``m = 150`` measurements by an i.i.d. Gaussian matrix with unit-norm
columns, Bernoulli-Gaussian signals with 10 % non-zeros, SNR 30 dB, ``T = 10``
layers. Each network is :class:`tikhon.learned.UnfoldedISTA` /
:class:`~tikhon.learned.UnfoldedIHT`: the solver's own ``step`` with per-layer
learned step sizes (and thresholds for ISTA), trained layer by layer with Adam
on the MSE to the true signal (supervised) or on the original objective
``0.5 ||Ax - y||^2 + lam R(x)`` (unsupervised). Printed: NMSE (dB) and
objective per layer / iteration, the train/test mismatch study (test at SNR
20 dB and at 15 % non-zeros) and an unrolled Chambolle-Pock for TV-CT on
random-ellipse phantoms (learned per-layer steps and TV weights) against
converged TV and the same number of plain iterations.

``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) shrinks the data sets
and the training. Usage: ``python examples/plot_unfolded.py [--out DIR]``
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
from tikhon.learned import (
    UnfoldedChambollePock,
    UnfoldedIHT,
    UnfoldedISTA,
    train_unfolded,
)
from tikhon.operators import MatrixOperator, Radon
from tikhon.solvers import tv_reconstruction

from tikhon.data import random_ellipses, simulate_sinogram

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"
torch.set_num_threads(1)  # two threads on two shared cores ran far slower

N, M, RHO, SNR, T = 300, 150, 0.10, 30.0, 10
LAM_L1, LAM_L0 = 0.05, 0.02
N_TRAIN, N_TEST = (300, 200) if QUICK else (2000, 500)
# Adam's learning rate is relative: the networks learn log-factors of the default steps
EPOCHS, BATCH, LR = (1, 100, 3e-2) if QUICK else (5, 200, 3e-2)


def cs_data(A, n_samples, rng, rho=RHO, snr_db=SNR):
    """Bernoulli-Gaussian signals and their noisy measurements (SNR per data set)."""
    X = rng.standard_normal((n_samples, N)) * (rng.random((n_samples, N)) < rho)
    clean = X @ A.T
    sigma = np.sqrt(np.mean(clean**2) / 10 ** (snr_db / 10))
    Y = clean + sigma * rng.standard_normal(clean.shape)
    return torch.from_numpy(X), torch.from_numpy(Y)


def nmse_db(x, x_true):
    x, x_true = np.asarray(x), np.asarray(x_true)
    return float(10 * np.log10(((x - x_true) ** 2).sum() / (x_true**2).sum()))


def curves(net, Y, X, n_iter=None):
    """NMSE (dB) and mean objective after each layer (or plain iteration)."""
    nm, ob = [], []

    def record(t, x):
        nm.append(nmse_db(x, X))
        ob.append(float(net.objective(x, Y).mean()))

    with torch.no_grad():
        net(Y, n_layers=n_iter, callback=record)
    return nm, ob


def plain(cls, A, arg, n_iter, **kw):
    """``n_iter`` plain iterations are an untrained network of ``n_iter`` layers."""
    return cls(A, arg, n_iter, **kw)


def sparse_study(rng):
    A = rng.standard_normal((M, N))
    A /= np.linalg.norm(A, axis=0)
    op = MatrixOperator(A)
    Xtr, Ytr = cs_data(A, N_TRAIN, rng)
    Xte, Yte = cs_data(A, N_TEST, rng)
    mismatch = {"SNR 20 dB": cs_data(A, N_TEST, rng, snr_db=20.0),
                "15 % non-zeros": cs_data(A, N_TEST, rng, rho=0.15)}

    models, train_time = {}, {}
    for name, cls, arg, loss in [
        ("supervised-ISTA", UnfoldedISTA, LAM_L1, "supervised"),
        ("unsupervised-ISTA", UnfoldedISTA, LAM_L1, "unsupervised"),
        ("supervised-IHT", UnfoldedIHT, LAM_L0, "supervised"),
        ("unsupervised-IHT", UnfoldedIHT, LAM_L0, "unsupervised"),
    ]:
        net = cls(op, arg, T)
        t0 = time.perf_counter()
        train_unfolded(net, (Ytr, Xtr), loss, epochs=EPOCHS, lr=LR, batch_size=BATCH, rng=0,
                       progress=False)
        train_time[name] = time.perf_counter() - t0
        print(f"trained {name} in {train_time[name]:.1f} s")
        models[name] = net

    # the plain methods are untrained networks: 100 iterations with the curves, and
    # long runs for the converged values (lasso: FISTA, convex; IHT: a local minimum)
    results = {
        "ISTA": curves(plain(UnfoldedISTA, op, LAM_L1, 100), Yte, Xte),
        "FISTA": curves(plain(UnfoldedISTA, op, LAM_L1, 100, accelerate=True), Yte, Xte),
        "IHT": curves(plain(UnfoldedIHT, op, LAM_L0, 100), Yte, Xte),
    }
    for name, net in models.items():
        results[name] = curves(net, Yte, Xte)
    n_long = 200 if QUICK else 2000
    with torch.no_grad():
        fista_long = plain(UnfoldedISTA, op, LAM_L1, n_long, accelerate=True)
        f_star = float(fista_long.objective(fista_long(Yte), Yte).mean())
        iht_long = plain(UnfoldedIHT, op, LAM_L0, n_long)
        x_iht = iht_long(Yte)
        iht_conv = (nmse_db(x_iht, Xte), float(iht_long.objective(x_iht, Yte).mean()))

    print(f"\n### Sparse recovery (n={N}, m={M}, {RHO:.0%} non-zeros, SNR {SNR:g} dB, T={T}, "
          f"lam_l1={LAM_L1}, lam_l0={LAM_L0}; test set of {N_TEST})\n")
    print("| method | NMSE @10 (dB) | NMSE @100 (dB) | objective @10 | objective @100 | "
          "objective @10 / converged l1 objective - 1 |")
    print("|---|---|---|---|---|---|")
    for name, (nm, ob) in results.items():
        long = len(nm) > T
        rel = f"{ob[T - 1] / f_star - 1:+.3f}" if "ISTA" in name else "-"
        print(f"| {name} | {nm[T - 1]:.2f} | {nm[99] if long else float('nan'):.2f} | "
              f"{ob[T - 1]:.4f} | {ob[99] if long else float('nan'):.4f} | {rel} |")
    print(f"| IHT, {n_long} iterations | {iht_conv[0]:.2f} | | {iht_conv[1]:.4f} | | - |")
    print(f"\nconverged l1 objective (FISTA, {n_long} iterations): {f_star:.4f}; "
          f"training times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in train_time.items()))
    print(f"ISTA iterations to reach within 10 % of the converged objective: "
          f"{next((k + 1 for k, v in enumerate(results['ISTA'][1]) if v <= 1.1 * f_star), None)}")

    print("\n### Train/test mismatch (trained at SNR 30 dB, 10 % non-zeros): NMSE (dB) after 10 "
          "layers / iterations\n")
    print("| test set | ISTA-10 | supervised-ISTA | unsupervised-ISTA | IHT-10 | supervised-IHT | "
          "unsupervised-IHT |")
    print("|---|---|---|---|---|---|---|")
    mism = {}
    with torch.no_grad():
        for label, (Xm, Ym) in [("matched", (Xte, Yte))] + list(mismatch.items()):
            row = {"ISTA-10": nmse_db(plain(UnfoldedISTA, op, LAM_L1, T)(Ym), Xm),
                   "IHT-10": nmse_db(plain(UnfoldedIHT, op, LAM_L0, T)(Ym), Xm)}
            for name, net in models.items():
                row[name] = nmse_db(net(Ym), Xm)
            mism[label] = row
            print(f"| {label} | {row['ISTA-10']:.2f} | {row['supervised-ISTA']:.2f} | "
                  f"{row['unsupervised-ISTA']:.2f} | {row['IHT-10']:.2f} | {row['supervised-IHT']:.2f} | "
                  f"{row['unsupervised-IHT']:.2f} |")
    return results, f_star, mism, train_time


def ct_study(rng):
    n, n_angles = (24, 12) if QUICK else (32, 20)
    n_train, n_test = (6, 3) if QUICK else (24, 8)
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    A = Radon((n, n), angles)

    def sample(k):
        x = random_ellipses(n, rng=rng)
        y = simulate_sinogram(x, angles, level=0.01, rng=rng)
        return x, y

    train = [sample(k) for k in range(n_train)]
    test = [sample(k) for k in range(n_test)]
    lam = 0.02
    Xtr = torch.from_numpy(np.stack([t[0] for t in train]))
    Ytr = torch.from_numpy(np.stack([t[1] for t in train]))
    Xte = np.stack([t[0] for t in test])
    Yte = torch.from_numpy(np.stack([t[1] for t in test]))

    nets, t_train = {}, 0.0
    for loss in ("supervised", "unsupervised"):
        # unsupervised: the TV objective with the fixed lam, so lam itself is not learned
        learn = ("tau", "sigma", "lam") if loss == "supervised" else ("tau", "sigma")
        net = UnfoldedChambollePock(A, lam, T, learn=learn)
        t0 = time.perf_counter()
        train_unfolded(net, (Ytr, Xtr), loss, epochs=1 if QUICK else 2, lr=LR,
                       batch_size=2 if QUICK else 4, rng=0, progress=False)
        t_train += time.perf_counter() - t0
        nets[loss] = net
    plain_cp = UnfoldedChambollePock(A, lam, T)
    tol = 1e-4 if QUICK else 1e-5
    converged = np.stack([tv_reconstruction(A, y.numpy(), lam, tol=tol, max_iter=20000).x for y in Yte])

    def psnr(x):
        return float(np.mean([10 * np.log10(1.0 / np.mean((a - b) ** 2)) for a, b in zip(x, Xte)]))

    with torch.no_grad():
        recon = {f"plain CP, {T} iterations": plain_cp(Yte).numpy(),
                 f"unrolled CP, {T} layers, supervised (steps + lam_t)": nets["supervised"](Yte).numpy(),
                 f"unrolled CP, {T} layers, unsupervised (steps)": nets["unsupervised"](Yte).numpy(),
                 f"converged TV (tol {tol:g})": converged}
        rows = [(k, psnr(v), float(plain_cp.objective(torch.from_numpy(v), Yte).mean()))
                for k, v in recon.items()]
        x_plain, x_learn = recon[f"plain CP, {T} iterations"], list(recon.values())[1]
    print(f"\n### Unrolled Chambolle-Pock, TV-CT ({n}x{n}, {n_angles} views, 1 % noise, lam={lam}; "
          f"trained on {n_train} random-ellipse phantoms in {t_train:.1f} s, tested on {n_test})\n")
    print("| reconstruction | mean PSNR (dB) | mean TV objective |")
    print("|---|---|---|")
    for name, p, o in rows:
        print(f"| {name} | {p:.2f} | {o:.4f} |")
    return (Xte[0], x_plain[0], x_learn[0], converged[0]), rows, t_train


def main(out_dir):
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    results, f_star, mism, train_time = sparse_study(rng)
    t1 = time.perf_counter()
    images, _, t_ct = ct_study(rng)
    print(f"\n(sparse study {t1 - t0:.1f} s, CT study {time.perf_counter() - t1:.1f} s)")
    print(f"\ntotal training time {sum(train_time.values()) + t_ct:.1f} s; "
          f"script {time.perf_counter() - t0:.1f} s")

    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    styles = {"ISTA": "k-", "FISTA": "k--", "supervised-ISTA": "C0o-", "unsupervised-ISTA": "C1s-",
              "IHT": "k:", "supervised-IHT": "C2o-", "unsupervised-IHT": "C3s-"}
    for name, (nm, ob) in results.items():
        k = np.arange(1, min(len(nm), 100) + 1)
        ax_n, ax_o = (axes[0, 0], axes[0, 1]) if "ISTA" in name else (axes[1, 0], axes[1, 1])
        ax_n.plot(k, nm[:len(k)], styles[name], label=name, ms=4)
        if "ISTA" in name:
            ax_o.semilogy(k, np.maximum(np.array(ob[:len(k)]) / f_star - 1, 1e-6), styles[name],
                          label=name, ms=4)
        else:
            ax_o.plot(k, ob[:len(k)], styles[name], label=name, ms=4)
    for ax in axes[:, 0]:
        ax.set(xscale="log", xlabel="layer / iteration", ylabel="NMSE (dB)")
        ax.legend()
    axes[0, 1].set(xscale="log", xlabel="layer / iteration", ylabel="F / F* - 1 (l1)")
    axes[1, 1].set(xscale="log", yscale="log", xlabel="layer / iteration", ylabel="l0 objective")
    axes[0, 1].legend()
    labels = list(mism)
    names = list(next(iter(mism.values())))
    for j, nm in enumerate(names):
        axes[0, 2].bar(np.arange(len(labels)) + 0.13 * j, [mism[lb][nm] for lb in labels], 0.13, label=nm)
    axes[0, 2].set_xticks(np.arange(len(labels)) + 0.33, labels)
    axes[0, 2].set(ylabel="NMSE (dB) after 10", title="train/test mismatch")
    axes[0, 2].legend(fontsize=7)
    truth, xp, xl, xc = images
    axes[1, 2].imshow(np.concatenate([truth, xp, xl, xc], axis=1), cmap="gray", vmin=0, vmax=1)
    axes[1, 2].set_title("truth | plain CP-10 | unrolled CP-10 | converged TV", fontsize=9)
    axes[1, 2].axis("off")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "unfolded.png")
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    main(parser.parse_args().out)
