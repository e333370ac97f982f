"""Few-view CT reconstruction methods used by the command line (``tikhon demo``).

Each method has the signature ``method(A, sinogram, lam=None, max_iter=2000,
progress=False, tol=1e-4) -> (image, n_iter)`` where ``A`` is a
:class:`~tikhon.operators.Radon` operator and ``sinogram`` a NumPy array or a
torch tensor of shape ``A.out_shape``; ``lam=None`` picks the regularisation
weight from a noise estimate of the sinogram (:func:`default_lam`). A tensor
sinogram is reconstructed on its device (the image comes back as a tensor
there); only the noise estimate reads a host copy, once, before the solve.

* :func:`fbp`: filtered backprojection (``A.fbp``), 0 iterations;
* :func:`tv`: isotropic TV (:func:`tikhon.solvers.tv_reconstruction`);
* :func:`wtv`: space-variant TV with weights from a plain-TV pilot;
* :func:`learned`: space-variant TV with weights from the pretrained
  :class:`tikhon.learned.tv_weights.TVWeightNet` (needs torch).
"""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import is_torch

__all__ = ["fbp", "tv", "wtv", "learned", "default_lam", "estimate_noise_sigma", "METHODS"]

# lam = factor * (estimated noise std of the sinogram); tuned on Shepp-Logan and
# random ellipses, 256 x 256, 30-90 angles, 0.5-2 % noise (examples/plot_few_view_ct.py)
_LAM_FACTOR = {"tv": 6.0, "wtv": 12.0, "learned": 12.0}
# space-variant weights: w = (eta / sqrt(eta^2 + |grad x|^2))^(1 - p),
# eta = _ETA_FRACTION * max |grad x|
_P = 0.5
_ETA_FRACTION = {"wtv": 0.05, "learned": 0.05}


def estimate_noise_sigma(sinogram):
    """Robust estimate of the standard deviation of white noise on a sinogram.

    Uses the median absolute second difference along the detector axis
    (``var = 6 sigma^2`` for white noise), which ignores the smooth part of the
    sinogram and is little affected by its few edges.

    Parameters
    ----------
    sinogram : numpy.ndarray or torch.Tensor
        Shape ``(n_angles, n_det)`` with ``n_det >= 3``.

    Returns
    -------
    float
    """
    y = _host_float64(sinogram)
    if y.ndim != 2 or y.shape[1] < 3:
        raise ValueError(f"estimate_noise_sigma: sinogram must be (n_angles, n_det >= 3), got {y.shape}")
    d = y[:, 2:] - 2.0 * y[:, 1:-1] + y[:, :-2]
    return float(np.median(np.abs(d)) / 0.6745 / np.sqrt(6.0))


def _host_float64(a):
    """A float64 NumPy copy of an array or tensor (for scalar estimates, not for the solve)."""
    if is_torch(a):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def _nonneg(image):
    return image.clamp(min=0.0) if is_torch(image) else np.maximum(image, 0.0)


def default_lam(A, sinogram, method="tv"):
    """Regularisation weight used when ``lam`` is None: a factor times the noise estimate.

    Parameters
    ----------
    A : LinearOperator
        The projector (unused today; kept so the rule can depend on geometry).
    sinogram : numpy.ndarray
    method : {"tv", "wtv", "learned"}

    Returns
    -------
    float
    """
    if method not in _LAM_FACTOR:
        raise ValueError(f"default_lam: unknown method {method!r}")
    sigma = estimate_noise_sigma(sinogram)
    if sigma == 0:
        # noiseless data: a small weight that still removes the few-view streaks
        sigma = 1e-3 * float(np.abs(_host_float64(sinogram)).max())
    return _LAM_FACTOR[method] * sigma


def _solve(A, sinogram, lam, weights=None, x0=None, max_iter=2000, tol=1e-4, progress=False):
    from tikhon.solvers import tv_reconstruction

    # an unconverged solve warns (ConvergenceWarning); callers such as the CLI
    # record it and mark the method, so it must not be silenced here
    return tv_reconstruction(A, sinogram, lam, weights=weights, x0=x0, max_iter=max_iter,
                             tol=tol, progress=progress)


def fbp(A, sinogram, lam=None, max_iter=2000, progress=False, tol=1e-4):
    """Filtered backprojection (``lam``, ``max_iter`` and ``tol`` are ignored)."""
    return A.fbp(sinogram), 0


def tv(A, sinogram, lam=None, max_iter=2000, progress=False, tol=1e-4):
    """Isotropic TV with a nonnegativity constraint, by balanced Chambolle-Pock.

    Returns
    -------
    image : numpy.ndarray or torch.Tensor
        Of the sinogram's type (and device).
    n_iter : int
    """
    lam = default_lam(A, sinogram, "tv") if lam is None else float(lam)
    res = _solve(A, sinogram, lam, max_iter=max_iter, tol=tol, progress=progress)
    return res.x, int(res.n_iter)


def wtv(A, sinogram, lam=None, max_iter=2000, progress=False, tol=1e-4, pilot_lam=None):
    """Space-variant TV with weights from a plain-TV pilot reconstruction.

    The pilot is solved at ``pilot_lam`` (default: the TV default), its
    gradient gives the weights (:func:`tikhon.solvers.space_variant_weights`,
    ``p = 0.5``), and the weighted problem starts from the pilot. ``n_iter``
    counts both solves.
    """
    from tikhon.solvers import space_variant_weights

    pilot_lam = default_lam(A, sinogram, "tv") if pilot_lam is None else float(pilot_lam)
    lam = default_lam(A, sinogram, "wtv") if lam is None else float(lam)
    pilot = _solve(A, sinogram, pilot_lam, max_iter=max_iter, tol=tol, progress=progress)
    w = space_variant_weights(pilot.x, p=_P, eta_fraction=_ETA_FRACTION["wtv"])
    res = _solve(A, sinogram, lam, weights=w, x0=pilot.x, max_iter=max_iter, tol=tol, progress=progress)
    return res.x, int(pilot.n_iter) + int(res.n_iter)


_NETS = {}


def _pretrained_net(device="cpu"):
    """The pretrained network on ``device``, loaded once per device."""
    key = str(device)
    if key not in _NETS:
        try:
            from tikhon.learned.tv_weights import TVWeightNet
        except ImportError as exc:
            raise ImportError("the learned method needs PyTorch: pip install 'tikhon[learned]'") from exc
        _NETS[key] = TVWeightNet.pretrained(map_location=device)
    return _NETS[key]


def learned(A, sinogram, lam=None, max_iter=2000, progress=False, tol=1e-4, net=None):
    """Space-variant TV with weights from the pretrained TVWeightNet applied to the FBP image.

    Raises
    ------
    ImportError
        When torch is not installed.
    """
    from tikhon.solvers import space_variant_weights

    if net is None:
        net = _pretrained_net(sinogram.device if is_torch(sinogram) else "cpu")
    lam = default_lam(A, sinogram, "learned") if lam is None else float(lam)
    image, grad = net.predict(A.fbp(sinogram))
    # weights from the gradient channel (measured better than from the image
    # channel); the image channel is a good starting point for the solver
    w = space_variant_weights(grad, p=_P, kind="gradient", eta_fraction=_ETA_FRACTION["learned"])
    res = _solve(A, sinogram, lam, weights=w, x0=_nonneg(image), max_iter=max_iter,
                 tol=tol, progress=progress)
    return res.x, int(res.n_iter)


METHODS = {"fbp": fbp, "tv": tv, "wtv": wtv, "learned": learned}
