"""
Train the learned proximal networks shipped as image priors
===========================================================

This script reproduces ``learned/weights/lpn_natural.safetensors`` and
``learned/weights/lpn_ellipses.safetensors``, the two image priors of
``examples/plot_lpn_inverse.py``. Each is a compact convolutional
:class:`~tikhon.learned.LearnedProximalNetwork` (see ``CONFIG`` for its width
and depth: paper-scale image LPNs, hidden width 64-256 and 40k steps, take
about a day on two CPU cores) trained by :func:`~tikhon.learned.train_lpn` with
the proximal matching loss on 32 x 32 patches corrupted by Gaussian noise:

* ``natural``: patches of scikit-image's bundled grayscale images
  (``TRAIN_IMAGES``, at scales 1/4 and 1/2, random flips). ``camera`` and
  ``astronaut`` (the test images) and ``chelsea`` (the validation image on
  which the example tunes its parameters) are held out.
* ``ellipses``: patches of random-ellipse phantoms
  (:func:`tikhon.data.random_ellipses`, seeds ``0 .. n_phantoms - 1``; the
  example validates on seed 9999 and tests on seeds from 10000 on).

Everything random is seeded: the same seed, thread count and machine give the
same weights. Each file's metadata records the configuration, the seed and the
training images. It runs for a few minutes per prior, so the documentation
shows it without running it::

    python examples/train_lpn_prior.py [--prior both|natural|ellipses] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# the example's held-out images: never a training image
TEST_IMAGES = ("camera", "astronaut")
VALIDATION_IMAGE = "chelsea"
TRAIN_IMAGES = ("brick", "grass", "gravel", "moon", "text", "page", "coins", "coffee", "rocket",
                "hubble_deep_field", "immunohistochemistry", "retina", "cell")
VALIDATION_PHANTOM_SEED = 9999
TEST_PHANTOM_SEED = 10000

# A compact model and a short schedule (minutes on one CPU thread); the authors'
# image LPNs are wider (64-256 channels) and train 20k l1 + 20k proximal-matching
# steps at lr 1e-4: with 200 + 400 steps here the main phase needs lr 1e-3.
MODEL = {"kind": "conv", "hidden": 16, "layers": 3, "kernel_size": 3, "beta": 10.0, "alpha": 0.01, "seed": 0}
TRAINING = {"sigma": 0.1, "loss": "proximal_matching", "pretrain_steps": 200, "n_steps": 400, "batch_size": 16,
                "lr": 1e-3, "pretrain_lr": 1e-3, "seed": 0}
CONFIG = {
    "natural": {"source": "images", "scales": (0.25, 0.5), "n_patches": 6000, "patch": 32, "data_seed": 2024},
    "ellipses": {"source": "ellipses", "phantom_size": 128, "n_phantoms": 60, "n_patches": 6000, "patch": 32,
                     "data_seed": 2025},
}
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "learned" / "weights"


def gray_image(name, scale=1.0):
    """A bundled scikit-image image as float64 grayscale in ``[0, 1]``, rescaled by ``scale``."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import rescale

    im = getattr(skimage.data, name)()
    im = rgb2gray(im[..., :3]) if im.ndim == 3 else im.astype(np.float64) / np.iinfo(im.dtype).max
    if scale != 1.0:
        im = rescale(im, scale, anti_aliasing=True)
    return np.clip(im, 0.0, 1.0)


def random_patches(images, n, size, rng, flips=True):
    """``n`` random ``size x size`` crops of ``images`` (a list of 2-D arrays), shape ``(n, size, size)``.

    Each patch picks an image with probability proportional to its number of
    crop positions, then a position uniformly; with ``flips`` a random
    horizontal and vertical flip.
    """
    images = [im for im in images if min(im.shape) >= size]
    counts = np.array([(im.shape[0] - size + 1) * (im.shape[1] - size + 1) for im in images], float)
    which = rng.choice(len(images), size=n, p=counts / counts.sum())
    out = np.empty((n, size, size))
    for k, im in enumerate(images):
        idx = np.flatnonzero(which == k)
        windows = np.lib.stride_tricks.sliding_window_view(im, (size, size))
        i = rng.integers(0, im.shape[0] - size + 1, idx.size)
        j = rng.integers(0, im.shape[1] - size + 1, idx.size)
        out[idx] = windows[i, j]
    if flips:
        flip_v = rng.random(n) < 0.5
        flip_h = rng.random(n) < 0.5
        out[flip_v] = out[flip_v, ::-1, :]
        out[flip_h] = out[flip_h, :, ::-1]
    return out


def training_patches(cfg):
    """The clean training patches of one prior, ``(n_patches, 1, patch, patch)`` float32."""
    rng = np.random.default_rng(cfg["data_seed"])
    if cfg["source"] == "images":
        images = [gray_image(name, s) for name in TRAIN_IMAGES for s in cfg["scales"]]
    else:
        from tikhon.data import random_ellipses

        images = [random_ellipses(cfg["phantom_size"], rng=seed) for seed in range(cfg["n_phantoms"])]
    patches = random_patches(images, cfg["n_patches"], cfg["patch"], rng)
    return patches[:, None].astype(np.float32)


def validation_patches(cfg, n=200, seed=5):
    """Clean patches of the validation image (never trained on), ``(n, 1, patch, patch)`` float32."""
    if cfg["source"] == "images":
        image = gray_image(VALIDATION_IMAGE, 0.5)
    else:
        from tikhon.data import random_ellipses

        image = random_ellipses(cfg["phantom_size"], rng=VALIDATION_PHANTOM_SEED)
    patches = random_patches([image], n, cfg["patch"], np.random.default_rng(seed), flips=False)
    return patches[:, None].astype(np.float32)


def denoising_psnr(lpn, clean, sigma, seed=0):
    """PSNR (dB, peak 1) of the noisy patches and of the network's output on them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    clean = torch.as_tensor(clean)
    noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
    with torch.no_grad():
        out = lpn.gradient(noisy, create_graph=False)

    def psnr(a):
        return float(-10 * torch.log10(torch.mean((a - clean) ** 2)))

    return psnr(noisy), psnr(out)


def train(name, out_dir, threads=1, verbose=True):
    """Train one prior and save it; returns the path of the weights file."""
    import torch
    from tikhon.learned import LearnedProximalNetwork, save_lpn, train_lpn

    torch.set_num_threads(threads)
    cfg = CONFIG[name]
    data = torch.from_numpy(training_patches(cfg))
    lpn = LearnedProximalNetwork(1, **MODEL)
    history = train_lpn(lpn, data, progress=verbose, **TRAINING)
    noisy, denoised = denoising_psnr(lpn, validation_patches(cfg), TRAINING["sigma"])
    if verbose:
        print(f"{name}: {history['steps']} steps in {history['time']:.0f} s ({history['status']}); "
              f"validation patches: noisy {noisy:.2f} dB -> LPN {denoised:.2f} dB")
    meta = {"script": "examples/train_lpn_prior.py", "prior": name, "data": cfg, "training": TRAINING,
                "sigma": TRAINING["sigma"], "threads": threads, "torch": torch.__version__,
                "train_images": list(TRAIN_IMAGES) if cfg["source"] == "images" else [],
                "n_phantoms": cfg.get("n_phantoms", 0),
                "validation_psnr": {"noisy": noisy, "lpn": denoised}, "seconds": history["time"]}
    path = Path(out_dir) / f"lpn_{name}.safetensors"
    save_lpn(lpn, path, meta=meta)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the LPN image priors shipped with tikhon.")
    parser.add_argument("--prior", choices=["both", *CONFIG], default="both")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    for name in (list(CONFIG) if args.prior == "both" else [args.prior]):
        t0 = time.perf_counter()
        path = train(name, args.out, threads=args.threads)
        print(f"{name}: wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
