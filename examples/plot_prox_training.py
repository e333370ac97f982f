"""
Proximal training: one prox operator for images and for network weights
========================================================================

The functionals of :mod:`tikhon.operators.prox` regularize network weights
through :func:`tikhon.learned.attach_prox`, a post-step hook that applies
``prox_{lr * lam * f}`` to chosen parameters after every optimizer step, and
the very same objects regularize images in the solvers. On scikit-learn's
bundled digits (8x8 images; fixed stratified train / validation / test split)
an MLP 64-256-256-10 is trained densely, then:

1. **prox-L1** (stochastic ISTA: SGD + the L1 prox in the scalar metric),
   then a masked fine-tune (:func:`~tikhon.learned.sparsity_mask`,
   :func:`~tikhon.learned.freeze_mask`), against global magnitude pruning
   (``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``) of
   the dense net to the same sparsity followed by the same fine-tune (the
   issue's baseline). The prox net trains ``PROX_EPOCHS`` epochs more than
   that baseline (40 + 20 fine-tune against 20, after the same 60 dense
   epochs), so a second, equal-budget baseline fine-tunes the magnitude-pruned
   net for ``PROX_EPOCHS + FT_EPOCHS`` epochs: most of the margin over the
   issue's baseline is that budget;
2. **one** :class:`~tikhon.operators.prox.NuclearNorm` object completes
   scikit-image's camera image from 50 % of its pixels
   (:func:`tikhon.solvers.fista` on ``SquaredL2(b, op=Mask) + lam * NuclearNorm``)
   and makes the hidden weight matrices exactly low rank during training
   (then a fine-tune at those ranks);
3. the **Cauchy-Schwarz binary penalty**
   (:class:`~tikhon.learned.CauchySchwarz`) during a fine-tune, then per-row
   binarization (the :class:`~tikhon.operators.prox.ScaledBinary` projection
   of every row), against binarizing a net fine-tuned without the penalty.

Every ``lam`` is chosen on the validation split (pixels held out of the
observed ones for the image); the test split is only reported. Experiment 1
uses SGD and the scalar metric because that is exactly the stochastic
proximal gradient method on ``loss + lam ||W||_1``. In exploratory runs on
the validation split (not part of this script), Adam with its diagonal
metric (``metric="adam"``, exact for L1) stayed at or below 88.1 % sparsity
for ``lam`` from 1e-3 to 1e-2 (never 90 %; not monotone in ``lam``; the net
collapsed at 1e-2), and Adam with the scalar metric zeroed every weight for
``lam >= 1.5`` (Adam's step is at most about ``lr`` per coordinate, so the
threshold ``lr * lam`` wins); at ``lam`` 1.0 and 1.2 it gave 94.8 % and
98.0 % sparsity, losing to magnitude pruning at the first and beating it at
the second.

``TIKHON_EXAMPLES_QUICK=1`` (the documentation build) shortens the training
and completes a 128x128 camera: a smoke run whose numbers do not test the
bars (it prints so). Usage:
``python examples/plot_prox_training.py [--out DIR]`` (default: the
``TIKHON_EXAMPLES_OUT`` environment variable, else the current directory).
"""

import argparse
import copy
import itertools
import os
import time

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tikhon.learned import (
    CauchySchwarz,
    ProxRule,
    attach_prox,
    freeze_mask,
    sparsity_mask,
)
from tikhon.operators import Mask
from tikhon.operators.prox import L1, NuclearNorm, ScaledBinary, SquaredL2
from tikhon.solvers import fista
from torch.nn.utils import prune

QUICK = os.environ.get("TIKHON_EXAMPLES_QUICK", "0") == "1"
torch.set_num_threads(1)  # two threads on two shared cores ran far slower

BATCH = 64
DENSE_EPOCHS, PROX_EPOCHS, FT_EPOCHS = (20, 15, 8) if QUICK else (60, 40, 20)
SGD_LR = 0.05  # SGD with momentum 0.9 and a cosine schedule in the prox phases
L1_LAMS = (0.02, 0.04) if QUICK else (0.01, 0.02, 0.03, 0.04)
NUC_LAMS = (0.5,) if QUICK else (0.2, 0.5)
NUC_EPOCHS, NUC_BATCH = (8, 128) if QUICK else (30, 128)
CS_LAMS = (0.03,) if QUICK else (0.01, 0.03, 0.1)
CAMERA = 128 if QUICK else 512
MC_LAMS = (0.25, 0.5, 1.0)  # per 512 pixels of side: scaled with the image size
RANK_RTOL = 1e-5  # singular values below RANK_RTOL * sigma_max are float32 round-off


# ---------------------------------------------------------------------------
# data, model, training
# ---------------------------------------------------------------------------
def load_digits_split(seed=0):
    """Digits scaled to [0, 1], split 56 / 14 / 30 % (train / val / test), stratified."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_rest, X_te, y_rest, y_te = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    X_tr, X_va, y_tr, y_va = train_test_split(X_rest, y_rest, test_size=0.2, random_state=seed,
                                              stratify=y_rest)
    as_t = lambda X, y: (torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long))
    return {"train": as_t(X_tr, y_tr), "val": as_t(X_va, y_va), "test": as_t(X_te, y_te)}


def make_mlp(seed=0, widths=(64, 256, 256, 10)):
    """The MLP 64-256-256-10 with ReLU (torch's default init under ``manual_seed(seed)``)."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(widths) - 2 else [])
    return torch.nn.Sequential(*layers)


def linears(net):
    return [m for m in net if isinstance(m, torch.nn.Linear)]


def accuracy(net, data, split):
    X, y = data[split]
    with torch.no_grad():
        return 100.0 * float((net(X).argmax(1) == y).float().mean())


def weight_sparsity(net):
    """Per cent of zero entries over all ``Linear`` weights (biases not counted)."""
    ws = [m.weight for m in linears(net)]
    return 100.0 * (1 - sum(int(w.count_nonzero()) for w in ws) / sum(w.numel() for w in ws))


def train(net, data, epochs, *, sgd=False, cosine=None, seed=0, hooks=(), penalty=None, batch=BATCH):
    """Mini-batch cross-entropy training, in place.

    ``sgd=False``: Adam (lr 1e-3). ``sgd=True``: SGD (lr ``SGD_LR``,
    momentum 0.9). ``cosine`` (default: ``sgd``): a cosine schedule of the
    learning rate to 0, so that proximal steps or penalties settle. ``hooks``: callables ``optimizer -> handle`` (``attach_prox``,
    ``freeze_mask``), removed at the end; ``penalty``: ``net -> loss term``.
    """
    if sgd:
        opt = torch.optim.SGD(net.parameters(), lr=SGD_LR, momentum=0.9)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    handles = [h(opt) for h in hooks]
    X, y = data["train"]
    n_batches = -(-len(y) // batch)
    cosine = sgd if cosine is None else cosine
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * n_batches) if cosine else None
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            opt.zero_grad()
            loss = F.cross_entropy(net(X[idx]), y[idx])
            if penalty is not None:
                loss = loss + penalty(net)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    for h in handles:
        h.remove()
    return net


def masked_finetune(net, data, epochs, seed=1):
    """Fine-tune all parameters with the zero pattern of the weights fixed (debiasing)."""
    masks = sparsity_mask(net, pattern="*.weight")
    return train(net, data, epochs, seed=seed, hooks=[lambda o: freeze_mask(o, masks, model=net)])


def train_dense(data, epochs=DENSE_EPOCHS, seed=0):
    return train(make_mlp(seed), data, epochs, seed=seed)


# ---------------------------------------------------------------------------
# experiment 1: prox-L1 against magnitude pruning
# ---------------------------------------------------------------------------
def prox_l1(dense, data, lam, epochs=PROX_EPOCHS, seed=2):
    """A copy of ``dense`` trained by stochastic ISTA on ``loss + lam * ||W||_1`` (all Linear weights)."""
    net = copy.deepcopy(dense)
    rule = ProxRule(L1(), lam, torch.nn.Linear)
    return train(net, data, epochs, sgd=True, seed=seed,
                 hooks=[lambda o: attach_prox(o, rule, model=net, metric="scalar")])


def magnitude_prune(dense, n_zero):
    """A copy of ``dense`` with its ``n_zero`` smallest weights (globally, all Linear layers) zeroed."""
    net = copy.deepcopy(dense)
    params = [(m, "weight") for m in linears(net)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=int(n_zero))
    for m, name in params:
        prune.remove(m, name)  # bake the mask into the weight: a plain (sparse) Linear again
    return net


def l1_experiment(dense, data, lams=L1_LAMS, prox_epochs=PROX_EPOCHS, ft_epochs=FT_EPOCHS,
                  max_loss=1.0):
    """Prox-L1 + fine-tune for each ``lam``, and magnitude pruning to each one's sparsity.

    The chosen ``lam`` is the largest whose fine-tuned validation accuracy is
    within ``max_loss`` points of the dense net's (the first one if none is).
    Returns ``{"rows": [...], "chosen": row}``; each row holds ``lam``,
    ``sparsity`` and the validation / test accuracies of both methods. The
    magnitude net of each row gets the same ``ft_epochs`` fine-tune (the
    issue's baseline); the chosen row also holds ``mag_eq_val`` /
    ``mag_eq_test``: magnitude pruning then a fine-tune of
    ``prox_epochs + ft_epochs`` epochs, the prox net's training budget after
    the dense net.
    """
    dense_val = accuracy(dense, data, "val")
    n_weights = sum(m.weight.numel() for m in linears(dense))
    rows = []
    for lam in lams:
        net = prox_l1(dense, data, lam, prox_epochs)
        sp = weight_sparsity(net)
        before = accuracy(net, data, "val")
        masked_finetune(net, data, ft_epochs)
        mag = magnitude_prune(dense, round(sp / 100 * n_weights))
        mag_before = accuracy(mag, data, "val")
        masked_finetune(mag, data, ft_epochs)
        rows.append({
            "lam": lam, "sparsity": sp, "mag_sparsity": weight_sparsity(mag), "net": net, "mag": mag,
            "prox_val_before_ft": before, "mag_val_before_ft": mag_before,
            "prox_val": accuracy(net, data, "val"), "prox_test": accuracy(net, data, "test"),
            "mag_val": accuracy(mag, data, "val"), "mag_test": accuracy(mag, data, "test"),
        })
    ok = [r for r in rows if r["prox_val"] >= dense_val - max_loss]
    chosen = max(ok, key=lambda r: r["lam"]) if ok else rows[0]
    eq = magnitude_prune(dense, round(chosen["sparsity"] / 100 * n_weights))
    masked_finetune(eq, data, prox_epochs + ft_epochs)
    chosen.update(mag_eq=eq, mag_eq_epochs=prox_epochs + ft_epochs,
                  mag_eq_val=accuracy(eq, data, "val"), mag_eq_test=accuracy(eq, data, "test"))
    return {"rows": rows, "chosen": chosen}


# ---------------------------------------------------------------------------
# experiment 2: one NuclearNorm for an image and for weights
# ---------------------------------------------------------------------------
def camera(size=CAMERA):
    img = skdata.camera().astype(np.float32) / 255.0
    f = img.shape[0] // size
    return torch.from_numpy(img.reshape(size, f, size, f).mean(axis=(1, 3)))


def psnr(x, ref):
    return float(10 * torch.log10(1.0 / torch.mean((x - ref) ** 2)))


def complete(img, observed, lam, nuclear, max_iter=300):
    """``argmin_X 0.5 ||X[observed] - img[observed]||^2 + lam ||X||_*`` by FISTA."""
    op = Mask(observed)
    res = fista(SquaredL2(b=op(img), op=op), lam * nuclear, torch.zeros_like(img),
                tol=1e-4, max_iter=max_iter, record_objective=False)
    return res


def completion_experiment(nuclear, size=CAMERA, seed=0, lams=MC_LAMS):
    """Matrix completion of the camera from 50 % of its pixels; ``lam`` from 10 % held-out observed pixels."""
    img = camera(size)
    rng = np.random.default_rng(seed)
    observed = rng.random(img.shape) < 0.5
    held = observed & (rng.random(img.shape) < 0.1)
    fit = observed & ~held
    held_t = torch.from_numpy(held)
    scale = size / 512
    errs = {}
    for lam in lams:
        x = complete(img, fit, lam * scale, nuclear).x
        errs[lam] = float(torch.mean((x - img)[held_t] ** 2))
    lam = min(errs, key=errs.get)
    res = complete(img, observed, lam * scale, nuclear)
    zero_fill = img * torch.from_numpy(observed)
    return {"img": img, "zero_fill": zero_fill, "x": res.x, "lam": lam, "status": res.status,
            "n_iter": res.n_iter, "heldout_mse": errs,
            "psnr_zero": psnr(zero_fill, img), "psnr": psnr(res.x, img),
            "rank": int(torch.linalg.matrix_rank(res.x, rtol=RANK_RTOL))}


def hidden_ranks(net, rtol=RANK_RTOL):
    return [int(torch.linalg.matrix_rank(m.weight.detach(), rtol=rtol)) for m in linears(net)[:-1]]


def prox_nuclear(dense, data, lam, nuclear, epochs=NUC_EPOCHS, seed=3):
    """A copy of ``dense`` trained by proximal SGD on ``loss + lam * sum ||W_hidden||_*``."""
    net = copy.deepcopy(dense)
    rule = ProxRule(nuclear, lam, [m.weight for m in linears(net)[:-1]])
    return train(net, data, epochs, sgd=True, seed=seed, batch=NUC_BATCH,
                 hooks=[lambda o: attach_prox(o, rule, metric="scalar")])


def rank_projection(weights, ranks):
    """A hook factory for :func:`train`: after every step, each weight is cut to its rank (truncated SVD).

    The low-rank counterpart of :func:`~tikhon.learned.freeze_mask`: the
    fine-tune keeps the ranks the nuclear-norm prox found and removes the
    shrinkage of the singular values (debiasing).
    """
    def project(*_):
        with torch.no_grad():
            for w, r in zip(weights, ranks):
                u, s, vh = torch.linalg.svd(w, full_matrices=False)
                w.copy_((u[:, :r] * s[:r]) @ vh[:r])

    def attach(optimizer):
        project()
        return optimizer.register_step_post_hook(project)

    return attach


def nuclear_training_experiment(dense, data, nuclear, lams=NUC_LAMS, ft_epochs=FT_EPOCHS, max_loss=1.0):
    """Low-rank training then a fixed-rank fine-tune for each ``lam``.

    Chosen: the largest ``lam`` whose fine-tuned validation accuracy is
    within ``max_loss`` points of the dense net's.
    """
    dense_val = accuracy(dense, data, "val")
    rows = []
    for lam in lams:
        net = prox_nuclear(dense, data, lam, nuclear)
        ranks = hidden_ranks(net)
        before_val, before_test = accuracy(net, data, "val"), accuracy(net, data, "test")
        train(net, data, ft_epochs, seed=5, batch=NUC_BATCH,
              hooks=[rank_projection([m.weight for m in linears(net)[:-1]], ranks)])
        rows.append({"lam": lam, "ranks": ranks, "ranks_after_ft": hidden_ranks(net), "net": net,
                     "val_before_ft": before_val, "test_before_ft": before_test,
                     "val": accuracy(net, data, "val"), "test": accuracy(net, data, "test")})
    ok = [r for r in rows if r["val"] >= dense_val - max_loss]
    return {"rows": rows, "chosen": max(ok, key=lambda r: r["lam"]) if ok else rows[0]}


# ---------------------------------------------------------------------------
# experiment 3: Cauchy-Schwarz binary penalty, then per-row binarization
# ---------------------------------------------------------------------------
def binarize_rows(net):
    """A copy of ``net`` whose every Linear weight row is projected onto the scaled binary vectors."""
    out = copy.deepcopy(net)
    proj = ScaledBinary(axis=-1)
    with torch.no_grad():
        for m in linears(out):
            m.weight.copy_(proj.prox(m.weight, 1.0))
    return out


def binary_experiment(dense, data, lams=CS_LAMS, epochs=FT_EPOCHS * 2, seed=4, cosine=True):
    """Fine-tune with and without ``CauchySchwarz("binary")`` (one scale per row), then binarize."""
    plain = train(copy.deepcopy(dense), data, epochs, seed=seed, cosine=cosine)
    rows = []
    for lam in lams:
        cs = CauchySchwarz(kind="binary", lam=lam, dim=0)
        net = copy.deepcopy(dense)
        train(net, data, epochs, seed=seed, cosine=cosine,
              penalty=lambda n, cs=cs: cs.sum_over(torch.nn.Linear, model=n))
        b = binarize_rows(net)
        rows.append({"lam": lam, "net": net, "val": accuracy(b, data, "val"), "test": accuracy(b, data, "test"),
                     "val_before": accuracy(net, data, "val"), "test_before": accuracy(net, data, "test")})
    chosen = max(rows, key=lambda r: (r["val"], r["lam"]))
    pb = binarize_rows(plain)
    return {"rows": rows, "chosen": chosen, "plain_val": accuracy(pb, data, "val"),
            "plain_test": accuracy(pb, data, "test"), "plain_unbinarized_test": accuracy(plain, data, "test")}


# ---------------------------------------------------------------------------
def main(out_dir):
    t_start = time.perf_counter()
    data = load_digits_split(0)
    dense = train_dense(data)
    dense_val, dense_test = accuracy(dense, data, "val"), accuracy(dense, data, "test")
    print(f"dense MLP 64-256-256-10: val {dense_val:.2f} %, test {dense_test:.2f} %")

    t0 = time.perf_counter()
    e1 = l1_experiment(dense, data)
    t1 = time.perf_counter()
    print(f"\n1. prox-L1 (SGD + L1 prox, then masked fine-tune) vs global magnitude pruning "
          f"+ the same fine-tune ({t1 - t0:.1f} s)")
    print(f"{'lam':>6} {'sparsity %':>10} {'prox val':>9} {'prox test':>9} {'mag val':>8} {'mag test':>8}")
    for r in e1["rows"]:
        mark = "  <- chosen on val" if r is e1["chosen"] else ""
        print(f"{r['lam']:6.3f} {r['sparsity']:10.2f} {r['prox_val']:9.2f} {r['prox_test']:9.2f} "
              f"{r['mag_val']:8.2f} {r['mag_test']:8.2f}{mark}")
    c = e1["chosen"]
    print(f"budgets after the {DENSE_EPOCHS} dense epochs: prox {PROX_EPOCHS} prox-SGD + {FT_EPOCHS} fine-tune; "
          f"magnitude {FT_EPOCHS} fine-tune (above). Equal budget at the chosen lam: magnitude + "
          f"{c['mag_eq_epochs']} fine-tune epochs: val {c['mag_eq_val']:.2f}, test {c['mag_eq_test']:.2f}")

    nuclear = NuclearNorm()  # one object: the image solver and the training hook below
    mc = completion_experiment(nuclear)
    t2 = time.perf_counter()
    e2 = nuclear_training_experiment(dense, data, nuclear)
    t3 = time.perf_counter()
    print(f"\n2a. matrix completion, camera {CAMERA}x{CAMERA}, 50 % observed ({t2 - t1:.1f} s): "
          f"zero filling {mc['psnr_zero']:.2f} dB, nuclear norm {mc['psnr']:.2f} dB "
          f"(+{mc['psnr'] - mc['psnr_zero']:.2f} dB; lam {mc['lam']} per 512 px chosen on held-out pixels, "
          f"rank {mc['rank']}, {mc['status']} in {mc['n_iter']} iterations)")
    print(f"2b. nuclear-norm prox on the hidden weights, then a fixed-rank fine-tune ({t3 - t2:.1f} s); "
          f"ranks of (256x64, 256x256)")
    for r in e2["rows"]:
        mark = "  <- chosen on val" if r is e2["chosen"] else ""
        print(f"   lam {r['lam']:.3f}: ranks {r['ranks']} (after fine-tune {r['ranks_after_ft']}); "
              f"prox: val {r['val_before_ft']:.2f}, test {r['test_before_ft']:.2f}; "
              f"fine-tuned: val {r['val']:.2f}, test {r['test']:.2f}{mark}")

    e3 = binary_experiment(dense, data)
    t4 = time.perf_counter()
    print(f"\n3. Cauchy-Schwarz binary penalty, then per-row binarization ({t4 - t3:.1f} s)")
    print(f"   fine-tuned without penalty: {e3['plain_unbinarized_test']:.2f} test; binarized: "
          f"val {e3['plain_val']:.2f}, test {e3['plain_test']:.2f}")
    for r in e3["rows"]:
        mark = "  <- chosen on val" if r is e3["chosen"] else ""
        print(f"   lam {r['lam']:g}: before binarization test {r['test_before']:.2f}; binarized val "
              f"{r['val']:.2f}, test {r['test']:.2f}{mark}")

    c1, c2, c3 = e1["chosen"], e2["chosen"], e3["chosen"]
    print(f"\nsummary (test accuracy %, dense net: {dense_test:.2f})")
    if QUICK:
        print("quick mode (shortened training): these numbers are a smoke run and do not test the bars; "
              "the full run (without TIKHON_EXAMPLES_QUICK) does")
    low_rank = all(r < min(m.weight.shape) for r, m in zip(c2["ranks"], linears(c2["net"])))
    rows = [
        ("1. prox-L1 sparsity", f"{c1['sparsity']:.2f} %", ">= 90 %", c1["sparsity"] >= 90),
        ("1. prox-L1 accuracy loss vs dense", f"{dense_test - c1['prox_test']:.2f} pt", "<= 1 pt",
         dense_test - c1["prox_test"] <= 1),
        (f"1. minus magnitude, same {FT_EPOCHS}-ep FT (+{PROX_EPOCHS} ep prox)",
         f"{c1['prox_test'] - c1['mag_test']:+.2f} pt", "> 0 (issue)", c1["prox_test"] > c1["mag_test"]),
        (f"1. minus magnitude, equal budget ({c1['mag_eq_epochs']}-ep FT)",
         f"{c1['prox_test'] - c1['mag_eq_test']:+.2f} pt", "> 0 (fair)", c1["prox_test"] > c1["mag_eq_test"]),
        ("2. completion gain over zero filling", f"{mc['psnr'] - mc['psnr_zero']:.2f} dB", ">= 8 dB",
         mc["psnr"] - mc["psnr_zero"] >= 8),
        ("2. low-rank training: hidden ranks", f"{c2['ranks']}", "< full (256x64, 256x256)", low_rank),
        ("2. low-rank training accuracy loss", f"{dense_test - c2['test']:.2f} pt", "<= 1 pt",
         dense_test - c2["test"] <= 1),
        ("3. CS + binarize: loss vs dense", f"{dense_test - c3['test']:.2f} pt", "<= 0.5 pt",
         dense_test - c3["test"] <= 0.5),
        ("3. CS + binarize minus plain binarize", f"{c3['test'] - e3['plain_test']:+.2f} pt", ">= 1 pt",
         c3["test"] - e3["plain_test"] >= 1),
    ]
    print(f"{'experiment':<48} {'measured':>22} {'bar':>26} {'':>5}")
    for name, got, bar, hit in rows:
        print(f"{name:<48} {got:>22} {bar:>26} {'HIT' if hit else 'MISS':>5}")
    print(f"\nscript {time.perf_counter() - t_start:.1f} s")

    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    sps = [r["sparsity"] for r in e1["rows"]]
    axes[0, 0].plot(sps, [r["prox_test"] for r in e1["rows"]], "C0o-", label="prox-L1 + fine-tune")
    axes[0, 0].plot(sps, [r["mag_test"] for r in e1["rows"]], "C1s-", label="magnitude + fine-tune")
    axes[0, 0].axhline(dense_test, color="k", ls=":", label="dense")
    axes[0, 0].set(xlabel="weight sparsity (%)", ylabel="test accuracy (%)", title="1. sparsity")
    axes[0, 0].legend()
    axes[0, 1].imshow((linears(c1["net"])[0].weight.detach() != 0).numpy(), aspect="auto", cmap="gray_r",
                      interpolation="nearest")
    axes[0, 1].set(title="1. prox-L1 mask of fc1 (256 x 64)", xlabel="input pixel", ylabel="neuron")
    for k, r in enumerate(e2["rows"]):
        for j, m in enumerate(linears(r["net"])[:2]):
            s = torch.linalg.svdvals(m.weight.detach())
            axes[0, 2].semilogy(s.clamp_min(1e-8).numpy(), f"C{k}" + ("-" if j else "--"),
                                label=f"lam {r['lam']}, fc{j + 1}")
    axes[0, 2].set(title="2. singular values of hidden weights", xlabel="index", ylim=(1e-8, None))
    axes[0, 2].legend(fontsize=7)
    axes[1, 0].imshow(torch.cat([mc["img"], mc["zero_fill"], mc["x"].clamp(0, 1)], dim=1).numpy(),
                      cmap="gray", vmin=0, vmax=1)
    axes[1, 0].set_title(f"2. truth | 50 % observed ({mc['psnr_zero']:.1f} dB) | nuclear ({mc['psnr']:.1f} dB)",
                         fontsize=8)
    axes[1, 0].axis("off")
    w_cs = linears(c3["net"])[1].weight.detach().reshape(-1).numpy()
    w_pl = linears(dense)[1].weight.detach().reshape(-1).numpy()
    axes[1, 1].hist(w_pl, 100, alpha=0.6, label="dense fc2")
    axes[1, 1].hist(w_cs, 100, alpha=0.6, label=f"CS binary fc2 (lam {c3['lam']:g})")
    axes[1, 1].set(title="3. weight histogram before binarization", yscale="log")
    axes[1, 1].legend(fontsize=8)
    names = ["dense", "CS + bin", "plain + bin"]
    vals = [dense_test, c3["test"], e3["plain_test"]]
    axes[1, 2].bar(names, vals, color=["k", "C0", "C1"])
    axes[1, 2].set(ylim=(min(vals) - 5, 100), ylabel="test accuracy (%)", title="3. binarized nets")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "prox_training.png")
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    return {"dense_test": dense_test, "l1": e1, "completion": mc, "nuclear": e2, "binary": e3}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("TIKHON_EXAMPLES_OUT", "."))
    main(parser.parse_args().out)
