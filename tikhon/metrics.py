"""Image-quality metrics: thin wrappers over :mod:`skimage.metrics`.

Every metric takes the estimate first and the reference second, accepts NumPy
arrays or torch tensors (converted to NumPy float64 on the CPU), checks that
both have the same shape and are finite, and returns a Python float.

The default ``data_range`` of :func:`psnr` and :func:`ssim` is the dynamic
range of the *reference*, ``ref.max() - ref.min()``. scikit-image's own default
uses the dtype's range, which for float images is 2 (the range [-1, 1]) and
silently inflates PSNR by 6 dB for images in [0, 1]; taking the range from the
reference makes the numbers comparable across data sets and independent of the
estimate, which may overshoot.
"""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import to_numpy
from tikhon._core.checks import check_finite_array, check_positive

__all__ = ["psnr", "ssim", "nmse"]


def _to_numpy(a, name: str, where: str) -> np.ndarray:
    """A real (float, integer or bool) array or tensor as a finite float64 NumPy array."""
    arr = to_numpy(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where}: {name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{where}: {name} is empty")
    return check_finite_array(arr.astype(np.float64, copy=False), name, where)


def _pair(x, ref, where: str):
    x = _to_numpy(x, "x", where)
    ref = _to_numpy(ref, "ref", where)
    if x.shape != ref.shape:
        raise ValueError(
            f"{where}: x and ref must have the same shape, got x {x.shape} and ref {ref.shape}"
        )
    return x, ref


def _data_range(ref: np.ndarray, data_range, where: str) -> float:
    if data_range is None:
        data_range = float(ref.max() - ref.min())
        if data_range <= 0:
            raise ValueError(
                f"{where}: ref is constant, so the default data_range "
                "(ref.max() - ref.min()) is 0; pass data_range explicitly"
            )
        return data_range
    return check_positive(data_range, "data_range", where)


def psnr(x, ref, data_range=None) -> float:
    """Peak signal-to-noise ratio of ``x`` against ``ref``, in dB.

    ``10 log10(data_range**2 / mean((x - ref)**2))``, computed by
    :func:`skimage.metrics.peak_signal_noise_ratio`.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The estimate.
    ref : array_like or torch.Tensor
        The reference (ground truth), same shape as ``x``.
    data_range : float, optional
        The peak value range. Defaults to ``ref.max() - ref.min()`` (not the
        dtype range used by scikit-image).

    Returns
    -------
    float
        PSNR in dB; ``inf`` when ``x`` equals ``ref``.

    Raises
    ------
    ValueError
        Shapes differ, an input is empty or non-finite, ``data_range`` is not
        positive, or ``ref`` is constant and no ``data_range`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.metrics import psnr
    >>> ref = np.zeros((8, 8)); ref[2:6, 2:6] = 1.0
    >>> round(psnr(ref + 0.1, ref), 2)  # 10 log10(1 / 0.01)
    20.0
    """
    from skimage.metrics import peak_signal_noise_ratio

    x, ref = _pair(x, ref, "psnr")
    dr = _data_range(ref, data_range, "psnr")
    if np.array_equal(x, ref):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, x, data_range=dr))


def ssim(x, ref, data_range=None, **kwargs) -> float:
    """Mean structural similarity index of ``x`` against ``ref``.

    Computed by :func:`skimage.metrics.structural_similarity` with its default
    7 x 7 uniform window (pass ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` for the settings of Wang et al. 2004).

    Parameters
    ----------
    x : array_like or torch.Tensor
        The estimate, a 2-D image or an N-d volume (every side at least the
        window size, 7 by default).
    ref : array_like or torch.Tensor
        The reference, same shape as ``x``.
    data_range : float, optional
        Defaults to ``ref.max() - ref.min()``.
    **kwargs
        Passed to :func:`skimage.metrics.structural_similarity` (e.g.
        ``win_size``, ``gaussian_weights``).

    Returns
    -------
    float
        The mean SSIM, at most 1.

    Raises
    ------
    ValueError
        As :func:`psnr`, or when the image is smaller than the window.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.metrics import ssim
    >>> ref = np.random.default_rng(0).random((32, 32))
    >>> ssim(ref, ref)
    1.0
    """
    from skimage.metrics import structural_similarity

    x, ref = _pair(x, ref, "ssim")
    dr = _data_range(ref, data_range, "ssim")
    win = kwargs.get("win_size") or 7
    if min(ref.shape) < win:
        raise ValueError(
            f"ssim: x and ref of shape {ref.shape} are smaller than the SSIM window "
            f"({win}); pass a smaller odd win_size"
        )
    for key in ("channel_axis", "full", "gradient"):
        if kwargs.get(key):
            raise ValueError(f"ssim: {key!r} is not supported; the wrapper returns the mean SSIM")
    return float(structural_similarity(ref, x, data_range=dr, **kwargs))


def nmse(x, ref) -> float:
    """Normalised mean squared error ``||x - ref||^2 / ||ref||^2``.

    The square of :func:`skimage.metrics.normalized_root_mse` with Euclidean
    normalisation; 0 is perfect and 1 is the error of the zero image.

    Parameters
    ----------
    x : array_like or torch.Tensor
        The estimate.
    ref : array_like or torch.Tensor
        The reference, same shape, not identically zero.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes differ, an input is empty or non-finite, or ``ref`` is zero.
    """
    from skimage.metrics import normalized_root_mse

    x, ref = _pair(x, ref, "nmse")
    if not np.any(ref):
        raise ValueError("nmse: ref is identically zero, so the normalised error is undefined")
    return float(normalized_root_mse(ref, x, normalization="euclidean") ** 2)
