"""Phantoms, analytic sinograms and noise models for few-view CT.

Ellipse phantoms
----------------
An ellipse phantom is an ``(k, 6)`` array whose rows are
``[intensity, a, b, x0, y0, phi]``: the ellipse adds ``intensity`` inside
``((x', y') / (a, b))`` with ``x' + i y' = ((x - x0) + i (y - y0)) e^{-i phi}``.
Coordinates are *normalised*: the image covers the square ``[-1, 1]^2``,
``x`` grows to the right (along columns), ``y`` grows *upwards* (row 0 is the
top, ``y = 1``), ``phi`` is in radians, counter-clockwise. This is the
convention of the classic Shepp-Logan table (with ``phi`` in radians instead
of degrees), so :func:`shepp_logan_ellipses` reproduces
``skimage.data.shepp_logan_phantom``.

Sinogram geometry
-----------------
The same as :class:`tikhon.operators.Radon`: parallel beam, angles in radians,
sinogram shape ``(n_angles, n_det)``, detector spacing one pixel, rotation
about the image centre, and the detector coordinate of a point ``(x, y)`` is
``s = x cos(theta) + y sin(theta)`` (``y`` upwards), as in
``skimage.transform.radon(image, np.degrees(angles), circle=False).T``. Line
integrals are in pixel units (a unit-intensity pixel crossed along its side
contributes 1).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tikhon._core.arrays import is_torch, to_host
from tikhon._core.checks import (
    as_real_array,
    check_choice,
    check_finite_array,
    check_float_dtype,
    check_int,
    check_nonneg,
    check_positive,
)

__all__ = [
    "shepp_logan",
    "shepp_logan_ellipses",
    "random_ellipses",
    "rasterize_ellipses",
    "ellipse_sinogram",
    "simulate_sinogram",
    "estimate_noise_sigma",
]


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _image_size(image_shape, where) -> int:
    if isinstance(image_shape, numbers.Integral) and not isinstance(image_shape, bool):
        shape = (int(image_shape), int(image_shape))
    else:
        try:
            shape = tuple(int(s) for s in image_shape)
        except TypeError as exc:
            raise TypeError(f"{where}: image_shape must be an int or a pair of ints, got {image_shape!r}") from exc
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{where}: image_shape must be square (n, n) for ellipse phantoms, got {shape}")
    return check_int(shape[0], "image_shape", where)


def _check_ellipses(ellipses, where) -> np.ndarray:
    e = as_real_array(ellipses, "ellipses", where)
    if e.ndim == 1 and e.size == 6:
        e = e[None, :]
    if e.ndim != 2 or e.shape[1] != 6:
        raise ValueError(
            f"{where}: ellipses must be an array of shape (k, 6) with rows "
            f"[intensity, a, b, x0, y0, phi], got shape {e.shape}"
        )
    check_finite_array(e, "ellipses", where)
    if np.any(e[:, 1:3] <= 0):
        raise ValueError(f"{where}: ellipses: the semi-axes a and b (columns 1 and 2) must be positive")
    return e


def _check_angles(angles, where) -> np.ndarray:
    a = to_host(angles)
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{where}: angles must be a non-empty 1-D array (radians), got shape {a.shape}")
    return check_finite_array(a, "angles", where)


def _as_generator(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _radon(n, angles, n_det):
    from tikhon.operators import Radon

    return Radon((n, n), angles, n_det=n_det)


# ---------------------------------------------------------------------------
# phantoms
# ---------------------------------------------------------------------------
_MODIFIED_SHEPP_LOGAN = np.array(
    [  # intensity, a, b, x0, y0, phi (degrees); Toft's modified Shepp-Logan table
        [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
        [-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0],
        [-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0],
        [-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0],
        [0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0],
        [0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0],
        [0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0],
        [0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0],
        [0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0],
        [0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0],
    ]
)


def shepp_logan_ellipses() -> np.ndarray:
    """The modified Shepp-Logan phantom (Toft) as a ``(10, 6)`` ellipse table.

    Rows are ``[intensity, a, b, x0, y0, phi]`` in the normalised coordinates
    of this module (``phi`` in radians). Its values lie in ``[0, 1]`` and
    :func:`rasterize_ellipses` of it matches
    ``skimage.data.shepp_logan_phantom()``; :func:`ellipse_sinogram` of it
    gives the exact sinogram.

    Returns
    -------
    numpy.ndarray of shape (10, 6)
    """
    e = _MODIFIED_SHEPP_LOGAN.copy()
    e[:, 5] = np.deg2rad(e[:, 5])
    return e


def shepp_logan(n=256, dtype=np.float64) -> np.ndarray:
    """The Shepp-Logan phantom bundled with scikit-image, resized to ``n x n``.

    ``skimage.data.shepp_logan_phantom()`` (400 x 400, modified Shepp-Logan
    intensities) resized with anti-aliasing (a Gaussian prefilter when
    shrinking) and bilinear interpolation, then clipped to ``[0, 1]``.

    Parameters
    ----------
    n : int, default 256
        Side of the square image.
    dtype : {numpy.float64, numpy.float32}
        Output dtype.

    Returns
    -------
    numpy.ndarray of shape (n, n)
        Values in ``[0, 1]``.

    Examples
    --------
    >>> from tikhon.data import shepp_logan
    >>> x = shepp_logan(64)
    >>> x.shape, float(x.min()) >= 0.0, float(x.max()) <= 1.0
    ((64, 64), True, True)
    """
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    n = check_int(n, "n", "shepp_logan", minimum=2)
    dtype = check_float_dtype(dtype, "dtype", "shepp_logan")
    img = shepp_logan_phantom()
    if img.shape != (n, n):
        img = resize(img, (n, n), order=1, anti_aliasing=n < img.shape[0], mode="edge")
    return np.clip(img, 0.0, 1.0).astype(dtype, copy=False)


def _sample_grid(n: int, supersample: int):
    """Normalised coordinates of the sub-pixel samples, shape (n * s,) each."""
    s = supersample
    # sub-sample centres of pixel j lie at j + (m + 1/2)/s - 1/2, m = 0..s-1
    t = (np.arange(n * s) + 0.5) / s - 0.5
    x = (t - (n - 1) / 2) * (2.0 / n)
    y = ((n - 1) / 2 - t) * (2.0 / n)
    return x, y


def _ellipse_values(ellipses: np.ndarray, n: int, supersample: int) -> np.ndarray:
    """Sum of the ellipses at every sub-pixel sample, shape (n*s, n*s)."""
    x, y = _sample_grid(n, supersample)
    m = n * supersample
    out = np.zeros((m, m))
    h = 2.0 / (n * supersample)  # spacing of the samples in normalised units
    for rho, a, b, x0, y0, phi in ellipses:
        # only the bounding box of each ellipse is evaluated, so small features are cheap
        c, s = math.cos(phi), math.sin(phi)
        hx = math.sqrt((a * c) ** 2 + (b * s) ** 2)
        hy = math.sqrt((a * s) ** 2 + (b * c) ** 2)
        j0 = max(int(np.searchsorted(x, x0 - hx - h)), 0)
        j1 = min(int(np.searchsorted(x, x0 + hx + h)), m)
        # y decreases with the row index
        i0 = max(int(np.searchsorted(-y, -(y0 + hy + h))), 0)
        i1 = min(int(np.searchsorted(-y, -(y0 - hy - h))), m)
        if i0 >= i1 or j0 >= j1:
            continue
        dx = x[None, j0:j1] - x0
        dy = y[i0:i1, None] - y0
        u = (dx * c + dy * s) / a
        v = (-dx * s + dy * c) / b
        out[i0:i1, j0:j1] += rho * (u * u + v * v <= 1.0)
    return out


def _block_mean(values: np.ndarray, n: int, s: int) -> np.ndarray:
    return values.reshape(n, s, n, s).mean(axis=(1, 3))


def rasterize_ellipses(ellipses, n, supersample=4, dtype=np.float64) -> np.ndarray:
    """Pixel image of a sum of ellipses, averaged over ``supersample**2`` points per pixel.

    Parameters
    ----------
    ellipses : array_like of shape (k, 6)
        Rows ``[intensity, a, b, x0, y0, phi]`` in normalised coordinates (see
        the module docstring).
    n : int
        Side of the square image; pixel ``(i, j)`` has its centre at
        ``x = (j - (n-1)/2) * 2/n``, ``y = ((n-1)/2 - i) * 2/n``.
    supersample : int, default 4
        Sub-samples per pixel along each axis; the pixel value is their mean,
        which approximates the pixel's area average (edges are partial-volume
        blurred as in a measured image).
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    numpy.ndarray of shape (n, n)
    """
    where = "rasterize_ellipses"
    e = _check_ellipses(ellipses, where)
    n = check_int(n, "n", where)
    s = check_int(supersample, "supersample", where)
    dtype = check_float_dtype(dtype, "dtype", where)
    return _block_mean(_ellipse_values(e, n, s), n, s).astype(dtype, copy=False)


def _uniform_in_ellipse(rng, a, b, x0, y0, phi, shrink):
    """A point uniformly distributed in the ellipse scaled by ``shrink``."""
    r = shrink * math.sqrt(rng.uniform())
    t = rng.uniform(0.0, 2 * math.pi)
    u, v = a * r * math.cos(t), b * r * math.sin(t)
    c, s = math.cos(phi), math.sin(phi)
    return x0 + c * u - s * v, y0 + s * u + c * v


def _inside(points_x, points_y, a, b, x0, y0, phi):
    c, s = math.cos(phi), math.sin(phi)
    dx, dy = points_x - x0, points_y - y0
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return u * u + v * v


def _boundary(a, b, x0, y0, phi, m=48):
    t = np.linspace(0.0, 2 * math.pi, m, endpoint=False)
    c, s = math.cos(phi), math.sin(phi)
    u, v = a * np.cos(t), b * np.sin(t)
    return x0 + c * u - s * v, y0 + s * u + c * v


def random_ellipses(n, rng=None, n_ellipses=(5, 12), rim=True, supersample=2,
                    return_params=False, dtype=np.float64):
    """A random ellipse phantom in ``[0, 1]``, built like a Shepp-Logan head.

    The distribution (all draws from ``rng``; normalised coordinates):

    1. **Skull**: an ellipse centred at ``(x0, y0)``, each uniform in
       ``[-0.05, 0.05]``, semi-axes ``a ~ U(0.55, 0.8)``, ``b ~ U(0.75, 0.95)``,
       angle ``phi ~ U(-pi/12, pi/12)`` (shrunk if needed so that it stays in
       the image), intensity ``r ~ U(0.6, 1)``.
    2. **Brain**: with ``rim=True``, a nested ellipse of the same angle whose
       semi-axes are the skull's minus a rim thickness ``~ U(0.02, 0.07)``,
       centre moved by ``U(-0.02, 0.02)`` along ``y``, and intensity ``v - r``
       with interior value ``v ~ U(0.1, 0.5)``. (``rim=False``: one ellipse of
       intensity ``v``.)
    3. **Features**: ``k ~ U{n_ellipses[0], ..., n_ellipses[1]}`` ellipses whose
       centres are uniform in the brain shrunk by 0.9 and which lie entirely in
       the brain (resampled otherwise), of one of three kinds: *large*
       (``a, b ~ U(0.08, 0.3)``, probability 0.4), *small* (``a, b ~
       U(0.015, 0.06)``, 0.35) or *thin* (``a ~ U(0.08, 0.3)``, ``b ~ U(0.008,
       0.03)``, 0.25); angle ``~ U(0, pi)``; contrast ``|c| ~ U(0.03, 0.4)``
       with a random sign (both brighter and darker structures, overlaps add).
    4. If the features push the brain outside ``[0, 1]`` at some sample point,
       all feature contrasts are multiplied by the largest factor that keeps
       it inside, so the returned parameters still describe the image exactly.

    Parameters
    ----------
    n : int
        Image side.
    rng : None, int or numpy.random.Generator
        Source of randomness; the same seed gives the same phantom.
    n_ellipses : int or (int, int), default (5, 12)
        Number of features, or the inclusive range it is drawn from.
    rim : bool, default True
        Draw a bright skull rim around the brain, as in Shepp-Logan.
    supersample : int, default 2
        Passed to :func:`rasterize_ellipses`.
    return_params : bool, default False
        Also return the ``(k + 2, 6)`` ellipse table (``k + 1`` without rim).
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    image : numpy.ndarray of shape (n, n)
        Values in ``[0, 1]``; equal to ``rasterize_ellipses(params, n,
        supersample)`` up to rounding.
    params : numpy.ndarray of shape (m, 6)
        Only with ``return_params=True``.
    """
    where = "random_ellipses"
    n = check_int(n, "n", where)
    rng = _as_generator(rng)
    dtype = check_float_dtype(dtype, "dtype", where)
    supersample = check_int(supersample, "supersample", where)
    if isinstance(n_ellipses, numbers.Integral):
        lo = hi = int(n_ellipses)
    else:
        try:
            lo, hi = (int(v) for v in n_ellipses)
        except (TypeError, ValueError) as exc:
            raise TypeError("n_ellipses must be an int or a pair (min, max)") from exc
    if lo < 0 or hi < lo:
        raise ValueError(f"n_ellipses must satisfy 0 <= min <= max, got ({lo}, {hi})")

    # 1-2: skull and brain
    x0, y0 = rng.uniform(-0.05, 0.05, size=2)
    a, b = rng.uniform(0.55, 0.8), rng.uniform(0.75, 0.95)
    phi = rng.uniform(-math.pi / 12, math.pi / 12)
    c, s = math.cos(phi), math.sin(phi)
    half_w = math.hypot(a * c, b * s) + abs(x0)
    half_h = math.hypot(a * s, b * c) + abs(y0)
    fit = min(1.0, 0.97 / max(half_w, half_h))
    a, b = a * fit, b * fit
    r = rng.uniform(0.6, 1.0)
    v = rng.uniform(0.1, 0.5)
    rows = []
    if rim:
        t = rng.uniform(0.02, 0.07)
        dy = rng.uniform(-0.02, 0.02)
        ba, bb, bx, by = a - t, b - t, x0, y0 + dy
        rows += [[r, a, b, x0, y0, phi], [v - r, ba, bb, bx, by, phi]]
    else:
        ba, bb, bx, by = a, b, x0, y0
        rows += [[v, a, b, x0, y0, phi]]

    # 3: features strictly inside the brain (boundary points within 0.97 of it)
    k = int(rng.integers(lo, hi + 1))
    features = []
    for _ in range(k):
        kind = rng.choice(3, p=[0.4, 0.35, 0.25])
        if kind == 0:
            fa, fb = rng.uniform(0.08, 0.3, size=2)
        elif kind == 1:
            fa, fb = rng.uniform(0.015, 0.06, size=2)
        else:
            fa, fb = rng.uniform(0.08, 0.3), rng.uniform(0.008, 0.03)
        fphi = rng.uniform(0.0, math.pi)
        contrast = rng.uniform(0.03, 0.4) * rng.choice([-1.0, 1.0])
        for _attempt in range(100):
            fx, fy = _uniform_in_ellipse(rng, ba, bb, bx, by, phi, 0.9)
            px, py = _boundary(fa, fb, fx, fy, fphi)
            if np.all(_inside(px, py, ba, bb, bx, by, phi) <= 0.97 ** 2):
                break
            # too big for where it landed: shrink it and try elsewhere
            fa, fb = 0.9 * fa, 0.9 * fb
        else:  # pragma: no cover - 100 shrinks make any feature tiny
            continue
        features.append([contrast, fa, fb, fx, fy, fphi])

    base = np.asarray(rows, dtype=np.float64)
    feats = np.asarray(features, dtype=np.float64).reshape(-1, 6)
    if feats.shape[0]:
        # 4: scale contrasts so that v + F stays in [0, 1] at every sample
        fvals = _ellipse_values(feats, n, supersample)
        fmax, fmin = fvals.max(), fvals.min()
        scale = 1.0
        if fmax > 0:
            scale = min(scale, (1.0 - v) / fmax)
        if fmin < 0:
            scale = min(scale, v / -fmin)
        feats[:, 0] *= scale
    params = np.concatenate([base, feats], axis=0)
    image = _block_mean(_ellipse_values(params, n, supersample), n, supersample)
    # the guarantee above is exact; the clip only removes rounding residue
    image = np.clip(image, 0.0, 1.0).astype(dtype, copy=False)
    return (image, params) if return_params else image


# ---------------------------------------------------------------------------
# sinograms
# ---------------------------------------------------------------------------
def ellipse_sinogram(ellipses, angles, n_det=None, image_shape=256, det_oversample=1,
                     dtype=np.float64, *, det_spacing=1.0, center=None, det_center=None) -> np.ndarray:
    """Exact line integrals of a sum of ellipses, in the geometry of :class:`~tikhon.operators.Radon`.

    The line integral of an ellipse ``(rho, a, b, x0, y0, phi)`` along the line
    ``x cos(theta) + y sin(theta) = s`` is
    ``2 rho a b sqrt(alpha^2 - s'^2) / alpha^2`` for ``|s'| <= alpha`` and 0
    otherwise, with ``s' = s - x0 cos(theta) - y0 sin(theta)`` and
    ``alpha^2 = a^2 cos^2(theta - phi) + b^2 sin^2(theta - phi)``.

    The detector geometry (``n_det``, ``det_spacing``, ``center``,
    ``det_center``) has the meaning and the defaults of
    :class:`~tikhon.operators.Radon`, so that ``ellipse_sinogram(e, angles,
    image_shape=n)`` is the exact counterpart of
    ``Radon((n, n), angles)(rasterize_ellipses(e, n))``. The ellipses' normalised
    square ``[-1, 1]^2`` is the image's pixel area, whose centre is the pixel
    position ``((n-1)/2, (n-1)/2)``; when Radon rotates about another point
    (its default ``(n//2, n//2)`` for even ``n``) the shift is accounted for.

    Parameters
    ----------
    ellipses : array_like of shape (k, 6)
        Rows ``[intensity, a, b, x0, y0, phi]`` (normalised coordinates).
    angles : array_like of shape (n_angles,)
        Projection angles in radians.
    n_det : int, optional
        Number of detector bins; Radon's default (the odd count covering the
        image diagonal) when omitted.
    image_shape : int or (int, int), default 256
        The square image grid ``(n, n)`` that fixes the scale: the normalised
        square spans ``n`` pixels and integrals are in pixel units.
    det_oversample : int, default 1
        Points per detector bin averaged (1: the integral along the ray through
        the bin centre, as Radon samples; more: the mean over the bin width).
    dtype : {numpy.float64, numpy.float32}
    det_spacing, center, det_center : optional
        As in :class:`~tikhon.operators.Radon`.

    Returns
    -------
    numpy.ndarray of shape (n_angles, n_det)
    """
    where = "ellipse_sinogram"
    e = _check_ellipses(ellipses, where)
    theta = _check_angles(angles, where)
    n = _image_size(image_shape, where)
    q = check_int(det_oversample, "det_oversample", where)
    dtype = check_float_dtype(dtype, "dtype", where)
    if n_det is not None:
        n_det = check_int(n_det, "n_det", where)
    # Radon validates and fills in the geometry, so its defaults are matched exactly
    from tikhon.operators import Radon

    geom = Radon((n, n), theta[:1], n_det=n_det, det_spacing=det_spacing,
                 center=center, det_center=det_center)
    n_det, ds = geom.n_det, geom.det_spacing
    ci, cj = geom.center

    offsets = (np.arange(q) + 0.5) / q - 0.5
    t = ((np.arange(n_det)[:, None] - geom.det_center + offsets[None, :]) * ds).ravel()
    cos_t, sin_t = np.cos(theta)[:, None], np.sin(theta)[:, None]
    # detector coordinate of the normalised origin, in pixels
    shift = ((n - 1) / 2 - cj) * cos_t + (ci - (n - 1) / 2) * sin_t
    s = (t[None, :] - shift) * (2.0 / n)
    out = np.zeros((theta.size, t.size))
    for rho, a, b, x0, y0, phi in e:
        sp = s - (x0 * cos_t + y0 * sin_t)
        alpha2 = ((a * np.cos(theta - phi)) ** 2 + (b * np.sin(theta - phi)) ** 2)[:, None]
        out += (2.0 * rho * a * b / alpha2) * np.sqrt(np.maximum(alpha2 - sp * sp, 0.0))
    out *= n / 2.0  # normalised length -> pixel units
    return out.reshape(theta.size, n_det, q).mean(axis=2).astype(dtype, copy=False)


def simulate_sinogram(image, angles, noise="gaussian", level=0.01, rng=None, n_det=None,
                      photons=1e4, mu_scale=None, relative_to="max", return_operator=False):
    """Simulate a noisy parallel-beam sinogram of ``image`` with :class:`~tikhon.operators.Radon`.

    Noise models:

    * ``"gaussian"``: ``y = A x + sigma * N(0, 1)`` with
      ``sigma = level * max|A x|`` (``relative_to="max"``) or
      ``sigma = level * ||A x||_2 / sqrt(A x .size)`` (``relative_to="norm"``,
      so that ``||noise|| ~ level * ||A x||``).
    * ``"poisson"``: Beer-Lambert photon counting. With the attenuation line
      integrals ``mu_scale * A x``, the detector counts are
      ``N ~ Poisson(photons * exp(-mu_scale * A x))`` and the returned
      sinogram is the log-transformed data
      ``-log(max(N, 1/2) / photons) / mu_scale`` (a zero count, which has no
      logarithm, is replaced by half a photon). ``mu_scale`` defaults to
      ``2 / n``: the image width is taken as 2 length units and the image
      values as attenuation per unit length. ``level`` is ignored.
    * ``None``: the clean sinogram.

    Parameters
    ----------
    image : array_like of shape (n, n)
        The ground truth, float32 or float64 (a torch tensor is moved to NumPy).
    angles : array_like of shape (n_angles,)
        Angles in radians.
    noise : {"gaussian", "poisson", None}
    level : float, default 0.01
        Relative Gaussian noise level, >= 0.
    rng : None, int or numpy.random.Generator
    n_det : int, optional
        Detector count; Radon's default when omitted.
    photons : float, default 1e4
        Incident photons per detector bin ``I0`` (Poisson), > 0.
    mu_scale : float, optional
        Attenuation scale (Poisson), > 0.
    relative_to : {"max", "norm"}
        How ``level`` is turned into a standard deviation (Gaussian).
    return_operator : bool, default False
        Also return the :class:`~tikhon.operators.Radon` operator used.

    Returns
    -------
    sinogram : numpy.ndarray of shape (n_angles, n_det)
        Same dtype as ``image``.
    operator : tikhon.operators.Radon
        Only with ``return_operator=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import shepp_logan, simulate_sinogram
    >>> angles = np.linspace(0, np.pi, 30, endpoint=False)
    >>> y, A = simulate_sinogram(shepp_logan(64), angles, level=0.01, rng=0, return_operator=True)
    >>> y.shape == A.out_shape == (30, 91)
    True
    """
    where = "simulate_sinogram"
    if is_torch(image):
        image = image.detach().cpu().numpy()
    image = check_finite_array(image, "image", where)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"{where}: image must be a square 2-D array, got shape {image.shape}")
    theta = _check_angles(angles, where)
    check_choice(noise, ("gaussian", "poisson", None), "noise", where)
    level = check_nonneg(level, "level", where)
    check_choice(relative_to, ("max", "norm"), "relative_to", where)
    photons = check_positive(photons, "photons", where)
    n = image.shape[0]
    mu_scale = 2.0 / n if mu_scale is None else check_positive(mu_scale, "mu_scale", where)
    rng = _as_generator(rng)

    A = _radon(n, theta, None if n_det is None else check_int(n_det, "n_det", where))
    clean = np.asarray(A(image), dtype=np.float64)
    if noise == "gaussian":
        if relative_to == "max":
            sigma = level * float(np.abs(clean).max())
        else:
            sigma = level * float(np.linalg.norm(clean)) / math.sqrt(clean.size)
        y = clean + sigma * rng.standard_normal(clean.shape)
    elif noise == "poisson":
        if np.any(clean < 0):
            raise ValueError("image must be non-negative for Poisson (Beer-Lambert) noise")
        counts = rng.poisson(photons * np.exp(-mu_scale * clean)).astype(np.float64)
        y = -np.log(np.maximum(counts, 0.5) / photons) / mu_scale
    else:
        y = clean
    y = y.astype(image.dtype, copy=False)
    return (y, A) if return_operator else y


def estimate_noise_sigma(sinogram):
    """Robust estimate of the standard deviation of white noise on a sinogram.

    Uses the median absolute second difference along the detector axis
    (``var = 6 sigma^2`` for white noise), which ignores the smooth part of the
    sinogram and is little affected by its few edges.

    Parameters
    ----------
    sinogram : numpy.ndarray or torch.Tensor
        Shape ``(n_angles, n_det)`` with ``n_det >= 3`` (a tensor is read back
        to the host once).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import estimate_noise_sigma, shepp_logan, simulate_sinogram
    >>> angles = np.linspace(0, np.pi, 60, endpoint=False)
    >>> clean = simulate_sinogram(shepp_logan(128), angles, noise=None)
    >>> noisy = clean + np.random.default_rng(0).normal(0.0, 1.0, clean.shape)
    >>> round(estimate_noise_sigma(noisy), 1)  # the true std is 1.0
    1.1
    """
    y = check_finite_array(to_host(sinogram), "sinogram", "estimate_noise_sigma")
    if y.ndim != 2 or y.shape[1] < 3:
        raise ValueError(f"estimate_noise_sigma: sinogram must be (n_angles, n_det >= 3), got shape {y.shape}")
    d = y[:, 2:] - 2.0 * y[:, 1:-1] + y[:, :-2]
    return float(np.median(np.abs(d)) / 0.6745 / np.sqrt(6.0))
