"""Learned space-variant TV weights: a compact U-Net from an FBP image to the image and |grad|.

Following Morotti, Evangelista, Piccolomini et al. ("Space-variant TV boosted by
learning techniques in few-view tomographic imaging"), a small network maps a
quick reconstruction (filtered backprojection) to an estimate of the image and
of its gradient magnitude; the gradient estimate is turned into the per-pixel
weights of space-variant TV by :func:`tikhon.solvers.space_variant_weights`,
and the (convex) weighted-TV problem is then solved as usual:
:func:`learned_wtv_reconstruction` is that recipe, as ``tikhon demo`` runs it.

The network is trained with the "elastic" loss
``||x - x_true||^2 + beta * || g - |grad x_true| ||^2`` on random-ellipse
phantoms (never on Shepp-Logan); ``beta = 0`` trains an image-only variant.
``examples/train_tv_weight_net.py`` reproduces the committed weights.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from tikhon._core.checks import (
    as_real_array,
    check_choice,
    check_finite_array,
    check_nonneg,
    check_positive,
    check_positive_int,
)
from tikhon.solvers.tomography import DEFAULT_MAX_ITER

__all__ = [
    "TVWeightNet",
    "weights_from_network",
    "learned_wtv_reconstruction",
    "make_training_set",
    "train_tv_weight_net",
    "elastic_loss",
    "gradient_magnitude",
    "save_weights",
    "load_weights",
    "DEFAULT_WEIGHTS",
]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "tv_weight_net.safetensors"

_FORMAT = "tikhon-tv-weight-net/1"


def gradient_magnitude(x):
    """Pixel-wise |grad x| by forward differences with Neumann boundary (torch, batched).

    Parameters
    ----------
    x : torch.Tensor
        Images of shape ``(..., H, W)``.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``; matches ``tikhon.operators.Gradient`` followed by
        the Euclidean norm over the component axis.
    """
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    gx[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    gy[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    # the epsilon keeps the gradient of sqrt finite at flat pixels
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


def _block(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate"),
        nn.LeakyReLU(0.1),
        nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="replicate"),
        nn.LeakyReLU(0.1),
    )


class TVWeightNet(nn.Module):
    """Compact U-Net mapping a normalised FBP image to (image, gradient magnitude).

    Three resolution levels (``width``, ``2 width``, ``4 width`` channels); with
    ``width = 16`` it has about 1.2e5 parameters. It is fully convolutional:
    any image size works (inputs are padded to a multiple of 4 internally).
    The image channel is predicted as a correction of the input (residual
    learning); the gradient channel is made nonnegative by a softplus.

    Parameters
    ----------
    width : int
        Channels at full resolution.

    Notes
    -----
    Inputs are normalised by the caller-independent rule of :meth:`predict`:
    the FBP image is divided by its 99.5th percentile of absolute values, and
    outputs are scaled back, so the network sees images of order one whatever
    the attenuation units.
    """

    def __init__(self, width=16):
        super().__init__()
        c = check_positive_int(width, "width", "TVWeightNet")
        self.width = c
        self.enc1 = _block(1, c)
        self.enc2 = _block(c, 2 * c)
        self.mid = _block(2 * c, 4 * c)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.dec2 = _block(4 * c, 2 * c)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec1 = _block(2 * c, c)
        self.head = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        """Map normalised FBP images to estimates of the image and of its gradient magnitude.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, 1, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, 2, H, W)``: channel 0 the image, channel 1 the gradient
            magnitude (nonnegative).
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"TVWeightNet: expected input of shape (B, 1, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        xin = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        e1 = self.enc1(xin)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        m = self.mid(F.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        out = self.head(d1)[..., :h, :w]
        image = x + out[:, :1]
        grad = F.softplus(out[:, 1:2], beta=10.0)
        return torch.cat([image, grad], dim=1)

    @staticmethod
    def _scale(fbp):
        """The 99.5th percentile of ``|fbp|`` (linear interpolation, as ``np.percentile``)."""
        if isinstance(fbp, torch.Tensor):
            # sort rather than torch.quantile, which refuses more than 2^24 entries
            v = torch.sort(fbp.abs().reshape(-1)).values
            pos = 0.995 * (v.numel() - 1)
            lo = int(pos)
            hi = min(lo + 1, v.numel() - 1)
            s = float(v[lo] + (pos - lo) * (v[hi] - v[lo]))
        else:
            s = float(np.percentile(np.abs(fbp), 99.5))
        return s if s > 0 else 1.0

    @torch.no_grad()
    def predict(self, fbp_image):
        """Estimate the image and its gradient magnitude from an FBP image.

        Parameters
        ----------
        fbp_image : numpy.ndarray or torch.Tensor
            A 2-D filtered-backprojection image (any size, any intensity
            scale). A tensor is fed to the network without leaving device
            memory (it is moved to the network's device if that differs).

        Returns
        -------
        image, grad : numpy.ndarray or torch.Tensor
            The image estimate and the gradient-magnitude estimate, in the
            input's intensity units: float64 arrays for an array input,
            tensors of the input's dtype on the network's device for a tensor.
        """
        where = "TVWeightNet.predict"
        is_tensor = isinstance(fbp_image, torch.Tensor)
        if is_tensor:
            arr = check_finite_array(fbp_image, "fbp_image", where).detach()
        else:
            arr = check_finite_array(as_real_array(fbp_image, "fbp_image", where), "fbp_image", where)
        if arr.ndim != 2 or 0 in tuple(arr.shape):
            raise ValueError(f"{where}: fbp_image must be a non-empty 2-D image, got shape {tuple(arr.shape)}")
        scale = self._scale(arr)
        param = next(self.parameters())
        if is_tensor:
            inp = (arr / scale).to(device=param.device, dtype=param.dtype)[None, None]
        else:
            inp = torch.from_numpy(arr / scale).to(device=param.device, dtype=param.dtype)[None, None]
        was_training = self.training
        self.eval()
        try:
            out = self(inp)[0]
        finally:
            self.train(was_training)
        if is_tensor:
            out = out.to(dtype=arr.dtype)
        else:
            out = out.double().cpu().numpy()
        return out[0] * scale, out[1] * scale

    @classmethod
    def pretrained(cls, path=None, map_location="cpu"):
        """The network with the committed weights (trained on random ellipses).

        Parameters
        ----------
        path : str or Path, optional
            A weights file written by :func:`save_weights` (default: the file
            shipped in ``tikhon/learned/weights``).
        map_location : str or torch.device

        Returns
        -------
        TVWeightNet
            In eval mode.
        """
        return load_weights(DEFAULT_WEIGHTS if path is None else path, map_location=map_location)


def save_weights(net, path, meta=None):
    """Save a :class:`TVWeightNet` as safetensors with a JSON metadata block (no pickle).

    Parameters
    ----------
    net : TVWeightNet
    path : str or Path
        The file (safetensors whatever its suffix; ``.safetensors`` by
        convention).
    meta : dict, optional
        JSON-serialisable facts about the training run; ``script`` and
        ``seed`` (default: those of ``net.meta``, as
        :func:`train_tv_weight_net` sets them) are stored as the file's
        training script and seed, the rest as its ``extra`` block.

    Notes
    -----
    The file holds the float32 state dict and the metadata ``format``,
    ``architecture`` (``"TVWeightNet"``), ``version`` (tikhon's),
    ``script``, ``seed``, ``config`` (``{"width": ...}``) and ``extra``;
    :func:`load_weights` reads it without executing code.
    """
    from tikhon.learned._model_files import write_model_file

    where = "save_weights"
    if not isinstance(net, TVWeightNet):
        raise TypeError(f"{where}: net must be a TVWeightNet, got {type(net).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"{where}: meta must be a dict, got {type(meta).__name__}")
    facts = {**getattr(net, "meta", {}), **(meta or {})}
    for key in ("width", "architecture", "version", "format", "config", "extra"):
        facts.pop(key, None)
    script = facts.pop("script", None)
    seed = facts.pop("seed", None)
    state = {k: v.detach().to(torch.float32) for k, v in net.state_dict().items()}
    write_model_file(path, state, format=_FORMAT, architecture="TVWeightNet", script=script,
                     seed=seed, config={"width": net.width}, extra=facts, where=where)


def load_weights(path, map_location="cpu"):
    """Load a :class:`TVWeightNet` saved by :func:`save_weights` (no code runs on load).

    A safetensors file is read as tensors and JSON; a legacy torch checkpoint
    (``.pt``, a dict ``{"state_dict": ..., "meta": ...}``) is read with
    ``torch.load(weights_only=True)``, and refused with a ``ValueError`` if
    its pickle carries anything but tensors and plain containers.

    Parameters
    ----------
    path : str or Path
    map_location : str or torch.device
        Where the network's parameters live (e.g. ``"cuda"``).

    Returns
    -------
    TVWeightNet
        In eval mode; ``net.meta`` holds the training metadata (``script``,
        ``seed``, ``version`` and the ``extra`` facts, flattened).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a TVWeightNet file, or a checkpoint whose pickle
        carries code.
    """
    from tikhon.learned._model_files import (
        is_torch_checkpoint,
        load_torch_checkpoint,
        read_model_file,
    )

    where = "load_weights"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}: TVWeightNet weights not found at {path}")
    if is_torch_checkpoint(path):
        payload = load_torch_checkpoint(path, where=where)
        if not (isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict)):
            raise ValueError(f"{where}: {path} is not a TVWeightNet checkpoint (no state_dict)")
        meta = dict(payload.get("meta", {}))
        state, width = payload["state_dict"], int(meta.get("width", 16))
    else:
        state, info = read_model_file(path, format=_FORMAT, where=where)
        width = check_positive_int(info["config"].get("width"), "config['width']", where)
        meta = {**info["extra"], "script": info["script"], "seed": info["seed"],
                "version": info["version"], "width": width}
    net = TVWeightNet(width=width)
    net.load_state_dict(state)
    if isinstance(map_location, (str, torch.device)):
        # load_state_dict copies into the new module's CPU parameters
        net.to(map_location)
    net.meta = meta
    net.eval()
    return net


def weights_from_network(net, fbp_image, eta=None, p=0.5, source="gradient", eta_fraction=0.05):
    """Space-variant TV weights from the network's estimate.

    Parameters
    ----------
    net : TVWeightNet
    fbp_image : numpy.ndarray or torch.Tensor
        The FBP reconstruction fed to the network (a tensor stays in device
        memory; it moves to the network's device if that differs).
    eta, p, eta_fraction
        As in :func:`tikhon.solvers.space_variant_weights`.
    source : {"gradient", "image"}
        Use the network's gradient-magnitude channel, or the gradient of its
        image channel.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Weights in ``(0, 1]`` of the image shape (a tensor for a tensor input).
    """
    from tikhon.solvers.tomography import space_variant_weights

    check_choice(source, ("gradient", "image"), "source", "weights_from_network")
    image, grad = net.predict(fbp_image)
    if source == "gradient":
        return space_variant_weights(grad, eta=eta, p=p, kind="gradient", eta_fraction=eta_fraction)
    return space_variant_weights(image, eta=eta, p=p, kind="image", eta_fraction=eta_fraction)


@functools.lru_cache(maxsize=None)
def _pretrained_on(device):
    """The pretrained network on ``device`` (a string), loaded once per device."""
    return TVWeightNet.pretrained(map_location=device)


def learned_wtv_reconstruction(A, y, lam=None, net=None, p=0.5, eta_fraction=0.05,
                               tol=1e-4, max_iter=DEFAULT_MAX_ITER, progress=False):
    """Space-variant TV with weights from a :class:`TVWeightNet` applied to the FBP image.

    The network maps ``A.fbp(y)`` to an image and a gradient-magnitude
    estimate; the gradient channel gives the weights
    (:func:`tikhon.solvers.space_variant_weights` with ``kind="gradient"``;
    measured better than weights from the image channel) and the image
    channel, clipped at zero, the starting point of
    :func:`tikhon.solvers.tv_reconstruction` (least squares, ``x >= 0``).

    Parameters
    ----------
    A : Radon
        The projector (any operator with ``fbp``).
    y : numpy.ndarray or torch.Tensor
        Sinogram of shape ``A.out_shape``; a tensor is reconstructed on its
        device, network included.
    lam : float, optional
        TV weight; default ``tikhon.solvers.default_tv_lam(y, weighted=True)``
        (``Result.info`` records it and the noise estimate).
    net : TVWeightNet, optional
        Default: the pretrained network (:meth:`TVWeightNet.pretrained`), on
        ``y``'s device, loaded once per device.
    p, eta_fraction : float
        As in :func:`tikhon.solvers.space_variant_weights`.
    tol, max_iter, progress
        As in :func:`tikhon.solvers.tv_reconstruction`.

    Returns
    -------
    Result
        Of the weighted-TV solve (``n_iter`` counts its iterations; the
        network's time is not in ``elapsed``).
    """
    from tikhon.solvers.tomography import space_variant_weights, tv_reconstruction

    if not callable(getattr(A, "fbp", None)):
        raise TypeError(f"learned_wtv_reconstruction: A must have an fbp method (a Radon), got {type(A).__name__}")
    y = check_finite_array(y, "y", "learned_wtv_reconstruction", shape=A.out_shape)
    if net is None:
        net = _pretrained_on(str(y.device) if isinstance(y, torch.Tensor) else "cpu")
    # "auto" with weights: default_tv_lam(y, weighted=True), recorded in Result.info
    lam = "auto" if lam is None else check_nonneg(lam, "lam", "learned_wtv_reconstruction")
    image, grad = net.predict(A.fbp(y))
    w = space_variant_weights(grad, p=p, kind="gradient", eta_fraction=eta_fraction)
    return tv_reconstruction(A, y, lam, weights=w, x0=image, tol=tol, max_iter=max_iter, progress=progress)


def elastic_loss(output, target, beta=1.0):
    """The "elastic" loss: ``mean (x - x_true)^2 + beta * mean (g - |grad x_true|)^2``.

    Parameters
    ----------
    output : torch.Tensor
        Network output ``(B, 2, H, W)``.
    target : torch.Tensor
        True images ``(B, 1, H, W)`` (in the same normalised units).
    beta : float
        Weight of the gradient term (0: image-only training).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    where = "elastic_loss"
    beta = check_nonneg(beta, "beta", where)
    for name, t in (("output", output), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch tensor, got {type(t).__name__}")
    if output.ndim != 4 or output.shape[1] != 2 or tuple(target.shape) != (output.shape[0], 1, *output.shape[2:]):
        raise ValueError(f"{where}: output must be (B, 2, H, W) and target (B, 1, H, W); got shapes "
                         f"{tuple(output.shape)} and {tuple(target.shape)}")
    loss = F.mse_loss(output[:, :1], target)
    if beta > 0:
        loss = loss + beta * F.mse_loss(output[:, 1:2], gradient_magnitude(target))
    return loss


def make_training_set(n_images, size=128, angles=(30, 90), noise=(0.005, 0.02), rng=0):
    """Random-ellipse phantoms, their few-view noisy sinograms and FBP images.

    Parameters
    ----------
    n_images : int
        Number of pairs.
    size : int
        Image side.
    angles : (int, int)
        Range of the number of projection angles over [0, pi), drawn uniformly.
    noise : (float, float)
        Range of the relative Gaussian noise level, drawn log-uniformly.
    rng : int or numpy.random.Generator

    Returns
    -------
    fbp, truth : numpy.ndarray
        Arrays of shape ``(n_images, 1, size, size)`` (float32), each pair
        normalised by the FBP image's 99.5th percentile (as in
        :meth:`TVWeightNet.predict`).
    """
    from tikhon.data import random_ellipses, simulate_sinogram
    from tikhon.operators import Radon

    where = "make_training_set"
    rng = np.random.default_rng(rng)
    n_images = check_positive_int(n_images, "n_images", where)
    size = check_positive_int(size, "size", where)
    lo, hi = (check_positive_int(a, "angles", where) for a in angles)
    if lo > hi:
        raise ValueError(f"{where}: angles must be a range (low, high) with low <= high, got {tuple(angles)}")
    n0, n1 = (check_positive(v, "noise", where) for v in noise)
    if n0 > n1:
        raise ValueError(f"{where}: noise must be a range (low, high) with low <= high, got {tuple(noise)}")
    fbp = np.empty((n_images, 1, size, size), np.float32)
    truth = np.empty_like(fbp)
    radons = {}
    for i in range(n_images):
        img = random_ellipses(size, rng)
        n_ang = int(rng.integers(angles[0], angles[1] + 1))
        level = float(np.exp(rng.uniform(np.log(noise[0]), np.log(noise[1]))))
        ang = np.linspace(0.0, np.pi, n_ang, endpoint=False)
        if n_ang not in radons:
            radons[n_ang] = Radon((size, size), ang)
        sino = simulate_sinogram(img, ang, noise="gaussian", level=level, rng=rng)
        rec = radons[n_ang].fbp(sino)
        s = TVWeightNet._scale(rec)
        fbp[i, 0] = rec / s
        truth[i, 0] = img / s
    return fbp, truth


def train_tv_weight_net(
    fbp,
    truth,
    beta=1.0,
    width=16,
    epochs=20,
    batch_size=8,
    lr=2e-3,
    seed=0,
    crop=None,
    num_threads=None,
    time_limit=None,
    verbose=False,
):
    """Train a :class:`TVWeightNet` with the elastic loss (seeded, deterministic on CPU).

    Parameters
    ----------
    fbp, truth : numpy.ndarray
        Training pairs ``(N, 1, H, W)`` from :func:`make_training_set`.
    beta : float
        Weight of the gradient-magnitude term (0: image-only training).
    width : int
        Network width.
    epochs, batch_size, lr : int, int, float
        Adam with a cosine learning-rate decay over all steps.
    seed : int
        Seeds the initialisation, the shuffling, the crops and the rotations
        used as augmentation.
    crop : int, optional
        Train on random ``crop x crop`` patches (one random window per step),
        which is cheaper than full images; the network is fully convolutional,
        so it still applies to whole images of any size.
    num_threads : int, optional
        ``torch.set_num_threads`` for the run (restored afterwards).
    time_limit : float, optional
        Stop after this many seconds (at the end of a batch).
    verbose : bool
        Print the mean loss per epoch.

    Returns
    -------
    net : TVWeightNet
        In eval mode; ``net.meta`` describes the run.
    losses : list of float
        Mean training loss per epoch.
    """
    where = "train_tv_weight_net"
    fbp = check_finite_array(as_real_array(fbp, "fbp", where, np.float32), "fbp", where)
    truth = check_finite_array(as_real_array(truth, "truth", where, np.float32), "truth", where)
    if fbp.shape != truth.shape or fbp.ndim != 4 or fbp.shape[1] != 1 or 0 in fbp.shape:
        raise ValueError(f"{where}: fbp and truth must both be non-empty (N, 1, H, W); got {fbp.shape}, {truth.shape}")
    beta = check_nonneg(beta, "beta", where)
    epochs = check_positive_int(epochs, "epochs", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    lr = check_positive(lr, "lr", where)
    if crop is not None:
        crop = check_positive_int(crop, "crop", where)
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        torch.manual_seed(seed)
        gen = np.random.default_rng(seed)
        net = TVWeightNet(width=width)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        n = fbp.shape[0]
        steps_per_epoch = max(1, math.ceil(n / batch_size))
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        X = torch.from_numpy(fbp)
        Y = torch.from_numpy(truth)
        losses = []
        t0 = time.perf_counter()
        stop = False
        net.train()
        for epoch in range(epochs):
            order = gen.permutation(n)
            total_loss = 0.0
            for b in range(steps_per_epoch):
                idx = torch.from_numpy(order[b * batch_size:(b + 1) * batch_size])
                xb, yb = X[idx], Y[idx]
                if crop is not None and crop < xb.shape[-1]:
                    i0, j0 = (int(v) for v in gen.integers(0, xb.shape[-1] - crop + 1, size=2))
                    xb = xb[..., i0:i0 + crop, j0:j0 + crop]
                    yb = yb[..., i0:i0 + crop, j0:j0 + crop]
                # random flips/transposes: the geometry (angles over [0, pi)) is symmetric enough
                k = int(gen.integers(4))
                if k:
                    xb, yb = torch.rot90(xb, k, (2, 3)), torch.rot90(yb, k, (2, 3))
                opt.zero_grad(set_to_none=True)
                loss = elastic_loss(net(xb), yb, beta=beta)
                loss.backward()
                opt.step()
                sched.step()
                total_loss += loss.item() * len(idx)
                if time_limit is not None and time.perf_counter() - t0 > time_limit:
                    stop = True
                    break
            losses.append(total_loss / n)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.5f} ({time.perf_counter() - t0:.0f} s)")
            if stop:
                break
        net.eval()
        net.meta = {"beta": beta, "width": width, "epochs_run": len(losses), "n_train": n,
                    "size": fbp.shape[-1], "crop": crop, "seed": seed,
                    "script": "tikhon.learned.train_tv_weight_net",
                    "final_loss": losses[-1] if losses else float("nan")}
        return net, losses
    finally:
        torch.set_num_threads(old_threads)
