"""
Train the TVWeightNet shipped with tikhon
=========================================

This script reproduces ``learned/weights/*.safetensors``. It trains for about 13 minutes,
so the documentation shows it without running it.

The network maps a filtered-backprojection image to an estimate of the image
and of its gradient magnitude (Morotti, Evangelista, Piccolomini et al.). It is
trained on random-ellipse phantoms (``tikhon.data.random_ellipses``, never on
Shepp-Logan) at 128 x 128, with few-view (20-60 angles over 180 degrees) noisy
(0.5-2 % Gaussian) sinograms; 20-60 views at 128 px undersample like 40-120
views at 256 px. Two variants are trained with the same data and seed:

* ``tv_weight_net.safetensors``: the "elastic" loss ``|x - x_true|^2 + beta |g - |grad x_true||^2``
  with ``beta = 1`` (the committed default used by ``TVWeightNet.pretrained()``);
* ``tv_weight_net_image_only.safetensors``: ``beta = 0`` (image-only, for comparison).

Training uses random 64 x 64 crops and a fixed number of steps (30 epochs of
16 batches of 16): about 6.5 minutes per variant on one thread of a busy
2-core machine (the committed files were trained with ``--threads 1``, the
two variants side by side; other thread counts give slightly different
floating-point results). Run::

    python examples/train_tv_weight_net.py [--variant both|elastic|image] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from tikhon.learned.tv_weights import (
    DEFAULT_WEIGHTS,
    make_training_set,
    save_weights,
    train_tv_weight_net,
)

CONFIG = dict(n_train=256, size=128, angles=(20, 60), noise=(0.005, 0.02), data_seed=2024,
              width=16, epochs=30, batch_size=16, crop=64, lr=2e-3, seed=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the TVWeightNet shipped with tikhon.")
    parser.add_argument("--variant", choices=["both", "elastic", "image"], default="both")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS.parent)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = dict(CONFIG, epochs=args.epochs)

    t0 = time.perf_counter()
    fbp, truth = make_training_set(cfg["n_train"], size=cfg["size"], angles=cfg["angles"],
                                   noise=cfg["noise"], rng=cfg["data_seed"])
    val_fbp, val_truth = make_training_set(16, size=cfg["size"], angles=cfg["angles"],
                                           noise=cfg["noise"], rng=cfg["data_seed"] + 1)
    print(f"training set: {fbp.shape} in {time.perf_counter() - t0:.0f} s")

    variants = {"elastic": (1.0, "tv_weight_net.safetensors"), "image": (0.0, "tv_weight_net_image_only.safetensors")}
    chosen = list(variants) if args.variant == "both" else [args.variant]
    for name in chosen:
        beta, filename = variants[name]
        t1 = time.perf_counter()
        net, losses = train_tv_weight_net(
            fbp, truth, beta=beta, width=cfg["width"], epochs=cfg["epochs"],
            batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"], crop=cfg["crop"],
            num_threads=args.threads, verbose=True,
        )
        seconds = time.perf_counter() - t1
        with torch.no_grad():
            out = net(torch.from_numpy(val_fbp))
        val_img = float(torch.mean((out[:, :1] - torch.from_numpy(val_truth)) ** 2))
        fbp_err = float(np.mean((val_fbp - val_truth) ** 2))
        print(f"{name}: beta={beta} trained in {seconds:.0f} s; validation image MSE {val_img:.2e} "
              f"(FBP {fbp_err:.2e})")
        meta = dict(net.meta, train_seconds=round(seconds, 1), val_image_mse=val_img,
                    data_seed=cfg["data_seed"], angles=cfg["angles"], noise=cfg["noise"],
                    script="examples/train_tv_weight_net.py")
        save_weights(net, args.out / filename, meta=meta)
        print(f"saved {args.out / filename}")


if __name__ == "__main__":
    main()
