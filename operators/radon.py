"""2-D parallel-beam Radon transform with its exact matched adjoint.

Discretisation: Joseph's ray-driven method. Each ray is sampled once per image
row (rays closer to vertical) or per column (the others), with linear
interpolation inside that row or column and the ray's path length per line as
weight. It is accurate for the forward projection (no pixel-driven
aliasing), and its exact transpose can be written as a gather over pixels, so
both directions parallelise without write races. NumPy inputs run numba
kernels (:mod:`tikhon.operators._kernels.radon_numba`); torch tensors run a
vectorised torch implementation of the same discretisation on their own device
(:mod:`tikhon.operators._radon_torch`).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from tikhon._core.arrays import is_torch, torch_module
from tikhon._core.checks import check_float_dtype, check_positive, check_positive_int, check_real
from tikhon._core.threads import numba_threads
from tikhon.operators.base import LinearOperator

__all__ = ["Radon", "FBP_FILTERS", "default_n_det"]

FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")

# below this many samples (angles x lines x bins) the kernels run on one thread
_SERIAL_WORK = 1_500_000


def default_n_det(image_shape):
    """scikit-image's detector count for ``radon(image, circle=False)``: ``ceil(sqrt(2) max(shape))``.

    scikit-image pads the image to a square of side ``ceil(sqrt(2) * max(shape))``
    (its diagonal covers the image at every angle) and keeps one bin per pixel of
    that side, centred on bin ``n_det // 2``, for even and odd counts alike.
    """
    # math.sqrt(2) * n is never an integer, so ceil has no rounding ambiguity
    return math.ceil(math.sqrt(2.0) * max(int(s) for s in image_shape))


def _pack_pairs(lines):
    """Float32 pairs of padded lines: entry ``j`` packs entries ``j`` and ``j + 1``.

    ``lines`` (..., n) float32; returns uint64 (..., n) with entry ``j`` of
    the line in the low half and entry ``j + 1`` (zero past the end) in the
    high half.
    """
    out = np.zeros(lines.shape + (2,), dtype=np.float32)
    out[..., 0] = lines
    out[..., :-1, 1] = lines[..., 1:]
    return out.view(np.uint64)[..., 0]


class Radon(LinearOperator):
    r"""2-D parallel-beam Radon transform (X-ray transform), Joseph's method.

    Maps an image of shape ``(n_rows, n_cols)`` to a sinogram of shape
    ``(n_angles, n_det)``: entry ``(a, k)`` is the line integral (in pixel
    units) along the ray ``x cos(theta_a) + y sin(theta_a) = t_k``, where
    ``x = col - center[1]`` points right, ``y = center[0] - row`` points up and
    ``t_k = (k - det_center) * det_spacing``.

    With the defaults the geometry is that of
    ``skimage.transform.radon(image, np.degrees(angles), circle=False).T``:
    rotation about the pixel ``(n_rows // 2, n_cols // 2)``, detector centred
    on bin ``n_det // 2``, one pixel per bin, and ``n_det =
    ceil(sqrt(2) * max(n_rows, n_cols))``, scikit-image's count (even or odd).
    The sinogram of ``skimage.transform.radon(image, theta, circle=True)``
    (scikit-image's default) has ``n_det = n`` bins for an ``n x n`` image:
    ``Radon((n, n), angles, n_det=n)`` is that geometry (the detector covers
    the inscribed circle; pixels outside it are not seen by every view).

    Parameters
    ----------
    image_shape : tuple of int
        ``(n_rows, n_cols)``.
    angles : array_like
        Projection angles in radians (1-D, finite, any order and range).
    n_det : int, optional
        Number of detector bins. Default: ``ceil(sqrt(2) * max(n_rows,
        n_cols))``, the count of ``skimage.transform.radon(..., circle=False)``
        (the diagonal of the square that holds the image).
    det_spacing : float
        Width of a detector bin in pixels (> 0).
    dtype : numpy dtype
        Default dtype for :meth:`~tikhon.operators.LinearOperator.norm` and :func:`~tikhon.operators.dot_test`;
        both float32 and float64 inputs are accepted (float32 is faster).
    center : tuple of float, optional
        Rotation centre as fractional ``(row, col)`` pixel indices. Default
        ``(n_rows // 2, n_cols // 2)`` (scikit-image); pass
        ``((n_rows - 1) / 2, (n_cols - 1) / 2)`` for the geometric centre that
        ASTRA uses.
    det_center : float, optional
        Fractional bin index of the ray through the rotation centre. Default
        ``n_det // 2`` (scikit-image); ASTRA uses ``(n_det - 1) / 2``.

    Notes
    -----
    The adjoint is the exact transpose of the discretised forward map (the
    dot test holds to rounding); it is a backprojection, not an inverse. For
    an approximate inverse use :meth:`fbp`.

    NumPy inputs run numba kernels (parallel over angles forward and over image
    lines backward); torch tensors, on any device, run a torch implementation
    of the same discretisation, with autograd through the matched adjoint.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import Radon
    >>> A = Radon((64, 64), np.linspace(0, np.pi, 90, endpoint=False))
    >>> A.out_shape  # skimage.transform.radon(x, np.degrees(angles), circle=False).T.shape
    (90, 91)
    >>> x = np.zeros((64, 64)); x[20:40, 25:35] = 1.0
    >>> rec = A.fbp(A(x))
    """

    # torch CPU tensors go through the numba kernels (zero-copy views, 10-40x
    # faster than torch ops on CPU); tests switch this off to exercise the
    # device-agnostic path that CUDA tensors take
    _numba_on_torch_cpu = True

    def __init__(self, image_shape, angles, n_det=None, det_spacing=1.0, dtype=np.float64,
                 *, center=None, det_center=None):
        try:
            shape = tuple(image_shape)
        except TypeError as exc:
            raise TypeError(f"Radon: image_shape must be a pair of ints, got {image_shape!r}") from exc
        if len(shape) != 2:
            raise ValueError(f"Radon: image_shape must have 2 entries, got {image_shape!r}")
        n_rows = check_positive_int(shape[0], "image_shape[0]", "Radon")
        n_cols = check_positive_int(shape[1], "image_shape[1]", "Radon")

        angles = np.asarray(angles)
        if angles.dtype.kind not in "fiu" or angles.dtype == bool:
            raise TypeError(f"Radon: angles must be real numbers, got dtype {angles.dtype}")
        angles = np.atleast_1d(angles.astype(np.float64))
        if angles.ndim != 1 or angles.size == 0:
            raise ValueError(f"Radon: angles must be a non-empty 1-D array, got shape {angles.shape}")
        if not np.all(np.isfinite(angles)):
            raise ValueError("Radon: angles must be finite (NaN or inf found)")

        if n_det is None:
            n_det = default_n_det((n_rows, n_cols))
        n_det = check_positive_int(n_det, "n_det", "Radon")
        det_spacing = check_positive(det_spacing, "det_spacing", "Radon")
        if center is None:
            center = (n_rows // 2, n_cols // 2)
        if len(tuple(center)) != 2:
            raise ValueError(f"Radon: center must be (row, col), got {center!r}")
        center = tuple(check_real(c, "center", "Radon") for c in center)
        det_center = float(n_det // 2) if det_center is None else check_real(det_center, "det_center", "Radon")

        dtype = check_float_dtype(dtype, "dtype", "Radon")
        super().__init__((n_rows, n_cols), (angles.size, n_det), dtype)
        self.image_shape = (n_rows, n_cols)
        self.angles = angles
        self.angles.setflags(write=False)
        self.n_det = n_det
        self.det_spacing = det_spacing
        self.center = center
        self.det_center = det_center
        self._build_tables()
        self._kernel_tables = {}
        self._torch_tables = {}

    # -- geometry tables ------------------------------------------------------
    def _build_tables(self):
        cos, sin = np.cos(self.angles), np.sin(self.angles)
        ci, cj = self.center
        dc, ds = self.det_center, self.det_spacing
        rows = np.abs(cos) >= np.abs(sin)
        # the denominators are at least 1/sqrt(2) in magnitude in their case
        den = np.where(rows, cos, sin)
        alpha = np.where(rows, cj - (dc * ds + ci * sin) / den, ci + (dc * ds - cj * cos) / den)
        beta = np.where(rows, sin, cos) / den
        gamma = np.where(rows, ds, -ds) / den
        self._rows_case = rows
        self._alpha, self._beta, self._gamma = alpha, beta, gamma
        self._weight = 1.0 / np.abs(den)
        self._inv_gamma = 1.0 / gamma
        # extra candidate bins per side in the adjoint gather (0 when |gamma| >= 1)
        self._n_extra = int(max(0, math.ceil(1.0 / np.min(np.abs(gamma)) - 1e-9) - 1))
        self._row_angles = np.flatnonzero(rows).astype(np.int64)
        self._col_angles = np.flatnonzero(~rows).astype(np.int64)
        n_rows, n_cols = self.image_shape
        self._work = self.angles.size * max(n_rows, n_cols) * self.n_det

    def _tables(self, dtype):
        """Tables of the numba kernels in ``dtype`` (cached per dtype).

        The line offsets ``c[a, m] = alpha[a] + beta[a] * m`` are computed in
        float64 and rounded once, so that the forward and adjoint kernels
        read identical positions. The families are stacked in slots (0: the
        row angles, 1: the column angles; a missing family has no slot in the
        forward).
        """
        dtype = np.dtype(dtype)
        t = self._kernel_tables.get(dtype)
        if t is not None:
            return t
        n_rows, n_cols = self.image_shape
        n_max = max(n_rows, n_cols)
        c = (self._alpha[:, None] + self._beta[:, None] * np.arange(n_max)).astype(dtype)
        sels = (self._row_angles, self._col_angles)
        n_sel = np.array([sel.size for sel in sels], dtype=np.int64)
        max_sel = int(n_sel.max())
        # the adjoint's per-family tables (slot 0: rows, 1: columns), padded
        # to max_sel angles (unit steps, zero weights: never read)
        c_fam = np.zeros((2, max_sel, n_max), dtype=dtype)
        gamma, inv_gamma = np.ones((2, max_sel), dtype=dtype), np.ones((2, max_sel), dtype=dtype)
        w = np.zeros((2, max_sel), dtype=dtype)
        for i, sel in enumerate(sels):
            c_fam[i, :sel.size] = c[sel]
            gamma[i, :sel.size] = self._gamma[sel]
            inv_gamma[i, :sel.size] = self._inv_gamma[sel]
            w[i, :sel.size] = self._weight[sel]
        t = {
            "c": c,
            # forward: slot of each angle among the families present
            "slot": np.where(self._rows_case, 0, 1 if n_sel[0] else 0).astype(np.int64),
            "gamma": self._gamma.astype(dtype),
            "w": self._weight.astype(dtype),
            "ar": np.arange(max(n_max, self.n_det), dtype=dtype),
            "n_sel": n_sel,
            "sel": sels,
            "c_fam": c_fam,
            "gamma_fam": gamma,
            "inv_gamma_fam": inv_gamma,
            "w_fam": w,
            "offsets": np.arange(-self._n_extra, self._n_extra + 2, dtype=dtype),
            "one": dtype.type(1.0),
        }
        self._kernel_tables[dtype] = t
        return t

    # -- maps -----------------------------------------------------------------
    def _threads(self):
        """Context for the numba calls: one thread on small problems.

        Waking the worker threads costs more than a small projection, and on
        a busy machine a parallel region waits for a time slice of each.
        """
        return numba_threads(1 if self._work < _SERIAL_WORK else None)

    def _forward(self, x):
        if is_torch(x):
            if x.device.type == "cpu" and self._numba_on_torch_cpu:
                return torch_module().from_numpy(self._forward(x.detach().contiguous().numpy()))
            from tikhon.operators import _radon_torch

            return _radon_torch.forward(self, x)
        from tikhon.operators._kernels import radon_numba as K

        t = self._tables(x.dtype)
        n_rows, n_cols = self.image_shape
        n_max, pad = max(n_rows, n_cols), K.IMG_PAD
        # the families present, stacked: the image's rows, the columns (its
        # transpose), each line zero padded on both sides
        imgs = [img for img, n in ((x, t["n_sel"][0]), (x.T, t["n_sel"][1])) if n]
        # float32 fast path: pixel pairs packed in uint64, one gather per sample
        pairs = x.dtype == np.float32 and sys.byteorder == "little"
        work = np.zeros((len(imgs), n_max, n_max + 2 * pad) + ((2,) if pairs else ()),
                        dtype=x.dtype)
        for i, img in enumerate(imgs):
            n, length = img.shape
            if pairs:
                work[i, :n, pad:pad + length, 0] = img
                work[i, :n, pad - 1:pad - 1 + length, 1] = img
            else:
                work[i, :n, pad:pad + length] = img
        if pairs:
            work = work.view(np.uint64)[..., 0]
        shapes = np.array([img.shape for img in imgs], dtype=np.int64)
        sino = np.empty(self.out_shape, dtype=x.dtype)
        with self._threads():
            K.forward(work, t["c"], t["slot"], shapes[:, 0].copy(), shapes[:, 1].copy(),
                      t["gamma"], t["w"], t["ar"], sino)
        return sino

    def _adjoint(self, y):
        if is_torch(y):
            if y.device.type == "cpu" and self._numba_on_torch_cpu:
                return torch_module().from_numpy(self._adjoint(y.detach().contiguous().numpy()))
            from tikhon.operators import _radon_torch

            return _radon_torch.adjoint(self, y)
        from tikhon.operators._kernels import radon_numba as K

        n_rows, n_cols = self.image_shape
        n_max = max(n_rows, n_cols)
        n_cand = 2 * self._n_extra + 2
        pad = K.SINO_PAD + 2 * self._n_extra
        dt = y.dtype.type
        t = self._tables(y.dtype)
        n_sel = t["n_sel"]
        sino = np.zeros((2, int(n_sel.max()), self.n_det + 2 * pad), dtype=y.dtype)
        for i, sel in enumerate(t["sel"]):
            # the path-length weights applied here, once per bin
            sino[i, :sel.size, pad:pad + self.n_det] = y[sel] * t["w_fam"][i, :sel.size, None]
        if y.dtype == np.float32 and sys.byteorder == "little" and n_cand == 2:
            # bins k and k + 1 in one uint64: one gather per pixel and angle
            sino = _pack_pairs(sino)
        lines = np.array([n_rows if n_sel[0] else 0, n_cols if n_sel[1] else 0], dtype=np.int64)
        out = np.empty((2, n_max, n_max), dtype=y.dtype)
        with self._threads():
            K.adjoint(sino, t["c_fam"], t["gamma_fam"], t["inv_gamma_fam"], n_sel,
                      lines, np.array([n_cols, n_rows], dtype=np.int64), dt(-pad),
                      dt(self.n_det + pad - n_cand), dt(pad), t["offsets"], t["ar"], t["one"], out)
        if not n_sel[0]:
            return np.ascontiguousarray(out[1, :n_cols, :n_rows].T)
        res = out[0, :n_rows, :n_cols]
        if n_sel[1]:
            res = res + out[1, :n_cols, :n_rows].T
        return np.ascontiguousarray(res)

    def abs(self):
        """``|A|``: the Radon weights are nonnegative, so this is ``self``."""
        return self

    # -- filtered backprojection ----------------------------------------------
    def angle_weights(self):
        """Quadrature weights of the angles on the half circle, for :meth:`fbp`.

        Each angle (taken modulo pi) gets half the gap to each neighbour, so a
        uniform set over 180 degrees gets ``pi / n_angles`` and one over 360
        degrees ``pi / n_angles`` as well (each direction is measured twice).
        A half-gap is capped at the median gap, so that the ends of a
        limited-angle set are not weighted by the missing wedge.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(n_angles,)``, summing to at most pi.
        """
        n = self.angles.size
        if n == 1:
            return np.array([math.pi])
        th = np.mod(self.angles, math.pi)
        order = np.argsort(th, kind="stable")
        s = th[order]
        gaps = np.diff(np.concatenate([s, [s[0] + math.pi]]))  # gap after each angle
        cap = np.median(gaps[gaps > 1e-12]) if np.any(gaps > 1e-12) else math.pi / n
        half = np.minimum(gaps, cap) / 2
        wsorted = half + np.roll(half, 1)
        out = np.empty(n)
        out[order] = wsorted
        return out

    def _fbp_filter(self, n_pad, name):
        """Real frequency response (rfft layout) of the windowed ramp filter."""
        # the ramp built from its band-limited spatial kernel (Kak & Slaney,
        # eq. 61) has no DC offset, unlike |f| sampled in frequency
        n = np.concatenate([np.arange(1, n_pad // 2 + 1, 2), np.arange(n_pad // 2 - 1, 0, -2)])
        h = np.zeros(n_pad)
        h[0] = 0.25
        h[1::2] = -1.0 / (np.pi * n) ** 2
        # |f| (f in cycles per bin); with the angle weights (pi / n_angles for
        # 180 degrees) this equals scikit-image's 2|f| times pi / (2 n_angles).
        # A detector spacing ds scales the filter by 1/ds and the adjoint by
        # ds relative to an interpolating backprojection, so ds cancels.
        filt = np.real(np.fft.rfft(h))
        if name == "ramp":
            return filt
        freq = np.arange(filt.size) / n_pad  # in [0, 1/2]
        if name == "shepp-logan":
            omega = np.pi * freq
            filt[1:] *= np.sin(omega[1:]) / omega[1:]
        elif name == "cosine":
            filt *= np.cos(np.pi * freq)
        elif name == "hamming":
            filt *= 0.54 + 0.46 * np.cos(2 * np.pi * freq)
        elif name == "hann":
            filt *= 0.5 + 0.5 * np.cos(2 * np.pi * freq)
        return filt

    def fbp(self, sinogram, filter="ramp"):
        """Filtered backprojection: an approximate inverse (not the adjoint).

        The sinogram is filtered along the detector axis with a windowed ramp
        (zero padded to a power of two at least twice ``n_det``, FFTs by
        ``scipy.fft`` or ``torch.fft``), weighted by :meth:`angle_weights` and
        backprojected with the matched adjoint. With 180-degree coverage this
        is ``pi / n_angles`` times the adjoint of the filtered data, the same
        scaling as ``skimage.transform.iradon``.

        Parameters
        ----------
        sinogram : numpy.ndarray or torch.Tensor
            Shape ``(n_angles, n_det)``, float32 or float64.
        filter : {"ramp", "shepp-logan", "cosine", "hamming", "hann"}
            Window applied to the ramp filter.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            The image, of the sinogram's array type, device and dtype.
        """
        if filter not in FBP_FILTERS:
            raise ValueError(f"Radon.fbp: filter must be one of {FBP_FILTERS}, got {filter!r}")
        y = self._validate(sinogram, self.out_shape, "sinogram", "fbp")
        n_pad = max(64, 1 << int(math.ceil(math.log2(2 * self.n_det))))
        key = (n_pad, filter)
        cache = self.__dict__.setdefault("_fbp_cache", {})
        if key not in cache:
            cache[key] = (self._fbp_filter(n_pad, filter), self.angle_weights())
        filt, wang = cache[key]
        if is_torch(y):
            from tikhon.operators import _radon_torch

            filtered = _radon_torch.filter_sinogram(self, y, filt, wang, n_pad, key)
        else:
            import scipy.fft

            spec = scipy.fft.rfft(y, n=n_pad, axis=1)
            spec *= filt.astype(y.dtype, copy=False)
            filtered = scipy.fft.irfft(spec, n=n_pad, axis=1)[:, :self.n_det]
            filtered *= wang.astype(y.dtype)[:, None]
            filtered = np.ascontiguousarray(filtered, dtype=y.dtype)
        return self.adjoint(filtered)

    def _label(self):
        return f"Radon({self.image_shape[0]}x{self.image_shape[1]}, {self.angles.size} angles)"
