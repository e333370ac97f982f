"""The ``tikhon`` command line: a few-view CT demo and reconstruction of user sinograms.

``tikhon demo`` simulates a noisy few-view sinogram of the Shepp-Logan phantom,
reconstructs it with the requested methods, prints a table of PSNR / SSIM /
iterations / seconds and saves the reconstructions (``.npy``) and a figure.
``tikhon reconstruct`` reconstructs a sinogram stored in a ``.npy``, TIFF,
``.txt`` (whitespace-separated) or ``.csv`` (comma-separated) file, or a 3-D
stack of sinograms (a ``.npy`` file, memory-mapped, or a zarr store) slice by
slice with :func:`tikhon.solvers.reconstruct_volume` into a zarr store
(``--out NAME.zarr``, ``--scheduler threads|processes|ADDRESS``).

Methods live in :data:`METHODS`, a dict ``name -> function(A, sinogram, args)
-> Result`` where ``A`` is the :class:`~tikhon.operators.Radon` operator,
``sinogram`` a NumPy array of shape ``A.out_shape``, ``args`` the parsed
command-line namespace (``args.lam``, ``args.max_iter``, ``args.tol``,
``args.device``) and the :class:`~tikhon.solvers.Result` holds the image
(``x``), ``n_iter`` and ``status``; a run that did not converge is marked in
the table. The built-in methods are the public recipes of
:mod:`tikhon.solvers.tomography` and :mod:`tikhon.learned`; with ``--device
cuda`` they run on float32 tensors on the GPU and hand back NumPy images.
A method whose optional dependency is missing raises :class:`MethodUnavailable`
and is skipped with a note; :func:`register_method` adds one.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from tikhon._core.arrays import all_finite, to_host
from tikhon._core.checks import check_nonneg, check_positive, check_positive_int
from tikhon._core.loop import ConvergenceWarning

__all__ = ["main", "build_parser", "METHODS", "register_method", "MethodUnavailable"]


class MethodUnavailable(RuntimeError):
    """A reconstruction method cannot run here (an optional dependency is missing)."""


class CLIError(Exception):
    """An error in the user's input, reported as one line without a traceback."""


# ---------------------------------------------------------------------------
# method registry
# ---------------------------------------------------------------------------
METHODS: dict = {}
DESCRIPTIONS: dict = {}


def register_method(name, func=None, description=""):
    """Register ``func(A, sinogram, args) -> Result`` under ``name``.

    Usable as a decorator (``@register_method("tv", description=...)``).
    """
    def deco(f):
        METHODS[name] = f
        DESCRIPTIONS[name] = description or (f.__doc__ or "").strip().splitlines()[0]
        return f

    return deco if func is None else deco(func)


def _builtin(name, description):
    """Register a built-in recipe; with ``--device`` it runs on a float32 tensor there."""

    def deco(recipe):
        def method(A, sinogram, args):
            device = getattr(args, "device", None)
            if device is None:
                return recipe(A, sinogram, args)
            res = recipe(A, _to_device(sinogram, device), args)
            # wait for the device here, so that the method's time is its real time
            # (the image comes back to host memory once, for the metrics and files)
            float(res.x.sum())
            return res

        method.__name__ = recipe.__name__
        register_method(name, method, description)
        return method

    return deco


def _solver_options(args):
    return {"max_iter": args.max_iter, "tol": args.tol}


@_builtin("fbp", "filtered backprojection (Radon.fbp)")
def _fbp(A, sinogram, args):
    from tikhon.solvers import fbp_reconstruction

    return fbp_reconstruction(A, sinogram)


@_builtin("tv", "isotropic TV, Chambolle-Pock (tikhon.solvers.tv_reconstruction)")
def _tv(A, sinogram, args):
    from tikhon.solvers import tv_reconstruction

    # "auto": default_tv_lam, with the noise estimate recorded in Result.info
    lam = "auto" if args.lam is None else args.lam
    return tv_reconstruction(A, sinogram, lam, **_solver_options(args))


@_builtin("wtv", "space-variant weighted TV from a TV pilot")
def _wtv(A, sinogram, args):
    from tikhon.solvers import pilot_wtv_reconstruction

    return pilot_wtv_reconstruction(A, sinogram, lam=args.lam, **_solver_options(args))


@_builtin("learned", "TV with weights from a learned TVWeightNet")
def _learned(A, sinogram, args):
    try:
        from tikhon.learned import learned_wtv_reconstruction
    except ImportError as exc:
        # the import error already says what is missing and how to install it
        # (tikhon._core.arrays.require_torch): repeat nothing of it
        raise MethodUnavailable(str(exc) or "needs PyTorch: pip install 'tikhon[learned]'") from exc
    return learned_wtv_reconstruction(A, sinogram, lam=args.lam, **_solver_options(args))


def _to_device(sinogram, device):
    """The sinogram as a float32 torch tensor on ``device`` (``--device``)."""
    import torch

    try:
        dev = torch.device(device)
        out = torch.as_tensor(np.asarray(sinogram, dtype=np.float32), device=dev)
    except (RuntimeError, AssertionError) as exc:  # unknown or unavailable device
        raise CLIError(f"--device {device}: {exc}") from exc
    return out


def _parse_methods(text):
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    if not names:
        raise CLIError("--methods is empty; choose from " + ", ".join(METHODS))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise CLIError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
        )
    return list(dict.fromkeys(names))


def _run_methods(names, A, sinogram, args, ref=None):
    """Run each method under a tqdm bar; return rows and the images, and notes for skips."""
    from tqdm import tqdm

    rows, images, notes = [], {}, []
    device = getattr(args, "device", None)
    if device is not None:
        # once, before any method is timed: the device's context start-up must
        # not be charged to the first method, and a bad --device is one error
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise CLIError(f"--device needs PyTorch (pip install 'tikhon[learned]'): {exc}") from exc
        _to_device(sinogram, device)
    bar = tqdm(names, desc="methods", unit="method", file=sys.stderr,
               disable=getattr(args, "quiet", False) or None)
    for name in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        # warnings would interleave with the bar: they are replayed after it; an
        # unconverged solve is marked in the table (from Result.status) instead
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                res = METHODS[name](A, sinogram, args)
            except MethodUnavailable as exc:
                notes.append(f"skipped {name}: {exc}")
                continue
        seconds = time.perf_counter() - t0
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        image = to_host(res.x)
        if not all_finite(image):
            notes.append(f"{name}: the reconstruction contains NaN or inf values")
            continue
        if res.status in ("nonfinite", "diverged"):
            notes.append(f"{name}: {res.message}")
            continue
        row = {"method": name, "iterations": int(res.n_iter), "seconds": seconds,
               "converged": res.converged, "lam": res.info.get("lam"),
               "noise_sigma": res.info.get("noise_sigma"), "lam_rule": res.info.get("lam_rule")}
        if ref is not None:
            from tikhon.metrics import psnr, ssim

            row["psnr"] = psnr(image, ref)
            row["ssim"] = ssim(image, ref)
        rows.append(row)
        images[name] = image
    bar.close()
    return rows, images, notes


def _format_lams(rows):
    """One line per method that used a TV weight: the ``lam`` and where it came from."""
    lines = []
    for r in rows:
        lam = r.get("lam")
        if lam is None:
            continue
        line = f"{r['method']}: lam = {float(lam):.4g}"
        if r.get("lam_rule"):
            line += f" ({r['lam_rule']}"
            if r.get("noise_sigma") is not None:
                line += f"; estimated noise std of the sinogram {float(r['noise_sigma']):.4g}"
            line += ")"
        else:
            line += " (--lam)"
        lines.append(line)
    return "\n".join(lines)


def _format_table(rows, metrics=True):
    head = f"{'method':<10}" + (f"{'PSNR [dB]':>11}{'SSIM':>8}" if metrics else "")
    head += f"{'iterations':>12}{'seconds':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['method']:<10}"
        if metrics:
            line += f"{r['psnr']:>11.2f}{r['ssim']:>8.4f}"
        mark = "" if r.get("converged", True) else "*"
        line += f"{str(r['iterations']) + mark:>12}{r['seconds']:>10.2f}"
        lines.append(line)
    if not all(r.get("converged", True) for r in rows):
        lines.append("* stopped at --max-iter before reaching --tol")
    return "\n".join(lines)


_METHOD_NOTES = {
    "fbp": "fbp: filtered\nbackprojection",
    "tv": "tv: total variation\n(Chambolle-Pock)",
    "wtv": "wtv: weighted TV,\nweights from a TV pilot",
    "learned": "learned: weighted TV,\nweights from a network\n(TVWeightNet)",
}


def _save_figure(path, ref, images, rows, setup=""):
    """Reconstructions (top) and absolute error maps (bottom); False when matplotlib is missing.

    The title states the setup; a footer explains the method names; the
    bottom-left cell, under the ground truth, holds the error colourbar.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    names = list(images)
    cols = len(names) + 1
    # Figure + Agg canvas directly: no pyplot, so no global backend is touched
    fig = Figure(figsize=(2.6 * cols, 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, cols, squeeze=False)
    vmax = float(ref.max())
    emax = max([float(np.abs(images[n] - ref).max()) for n in names] + [1e-12])
    axes[0, 0].imshow(ref, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("ground truth")
    by_name = {r["method"]: r for r in rows}
    for k, name in enumerate(names, start=1):
        r = by_name[name]
        axes[0, k].imshow(images[name], cmap="gray", vmin=0, vmax=vmax)
        axes[0, k].set_title(f"{name}: {r['psnr']:.1f} dB, SSIM {r['ssim']:.3f}", fontsize=9)
        im = axes[1, k].imshow(np.abs(images[name] - ref), cmap="magma", vmin=0, vmax=emax)
        axes[1, k].set_title(f"|{name} - truth|", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    # the cell under the ground truth has no error map: it explains the methods
    # and carries the colourbar of the error maps (no empty panel)
    axes[1, 0].axis("off")
    notes = [_METHOD_NOTES.get(n, n) for n in names]
    axes[1, 0].text(0.0, 1.0, "\n\n".join(notes), transform=axes[1, 0].transAxes, va="top",
                    ha="left", fontsize=8)
    if names:
        cbar = fig.colorbar(im, ax=axes[1, 1:].tolist(), shrink=0.8)
        cbar.set_label("absolute error |x - truth|\n(truth in [0, 1])", fontsize=8)
    if setup:
        fig.suptitle(setup, fontsize=10)
    fig.savefig(path, dpi=110)
    return True


# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------
def _cmd_demo(args):
    from tikhon.data import shepp_logan, simulate_sinogram

    names = _parse_methods(args.methods)
    if args.size < 16:
        raise CLIError(f"--size must be at least 16, got {args.size}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    ref = shepp_logan(args.size)
    angles = np.linspace(0.0, np.pi, args.angles, endpoint=False)
    sinogram, A = simulate_sinogram(ref, angles, noise="gaussian" if args.noise > 0 else None,
                                    level=args.noise, rng=args.seed, return_operator=True)
    setup = (f"Shepp-Logan {args.size}x{args.size}, {args.angles} views over [0, pi), "
             f"Gaussian noise {args.noise:g} x max|sinogram|, seed {args.seed}")
    print(f"tikhon demo: {setup}")
    rows, images, notes = _run_methods(names, A, sinogram, args, ref=ref)
    for note in notes:
        print(note)
    if rows:
        print(_format_table(rows))
        lams = _format_lams(rows)
        if lams:
            print(lams)
    np.save(out / "phantom.npy", ref)
    np.save(out / "sinogram.npy", sinogram)
    np.save(out / "angles.npy", angles)
    for name, image in images.items():
        np.save(out / f"recon_{name}.npy", image)
    if images and not args.no_figure:
        fig_path = out / "demo.png"
        if _save_figure(fig_path, ref, images, rows, setup=f"tikhon demo: {setup}"):
            print(f"figure: {fig_path}")
        else:
            print("figure skipped: matplotlib is not installed (pip install matplotlib)")
    print(f"arrays: {out}")
    return 0 if rows else 1


_NPY_MAGIC = b"\x93NUMPY"
_OUT_SUFFIXES = (".npy", ".tif", ".tiff")


def _load_array(path, what):
    """A real array from ``.npy``, ``.tif``/``.tiff``, ``.txt`` (whitespace) or ``.csv`` (commas)."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            with open(path, "rb") as fh:
                head = fh.read(len(_NPY_MAGIC))
            if head != _NPY_MAGIC:
                # NumPy would suggest allow_pickle=True here: an unsafe fix for a
                # file that is most often text saved under the wrong name
                kind = "text" if _looks_like_text(path) else "data"
                raise CLIError(
                    f"{what} {path} is not a NumPy .npy file (no .npy header); it looks like "
                    f"{kind}: " + ("rename it .txt (numbers separated by spaces) or .csv (by "
                                   "commas)" if kind == "text" else
                                   "save the array with numpy.save, or as .tif/.txt/.csv")
                )
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            from skimage.io import imread

            arr = imread(str(path))
        elif suffix in (".txt", ".csv"):
            arr = np.loadtxt(path, delimiter="," if suffix == ".csv" else None)
        else:
            raise CLIError(f"{what} {path}: unsupported file type {suffix!r} "
                           "(use .npy, .tif, .tiff, .txt or .csv)")
    except CLIError:
        raise
    except Exception as exc:  # a corrupt file: report it in one line
        raise CLIError(f"cannot read {what} {path}: {exc}") from exc
    arr = np.asarray(arr)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise CLIError(f"{what} {path} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _looks_like_text(path):
    with open(path, "rb") as fh:
        head = fh.read(512)
    try:
        head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return bool(head.strip())


# a span this close to 2 pi or below (in the unit given) reads as radians
_TWO_PI = 2 * math.pi * (1 + 1e-6)


def _check_angles_file(angles, degrees, path):
    """Refuse angle files whose unit contradicts ``--degrees`` (friction: silent garbage images)."""
    top = float(np.max(np.abs(angles)))
    span = float(np.ptp(angles)) if angles.size > 1 else 0.0
    # decided on the span, as for --degrees: radians over a full turn may start
    # anywhere ([pi/2, 5 pi/2)); one angle has no span, only its value
    if not degrees and (span if angles.size > 1 else top) > _TWO_PI:
        what = f"span {span:.4g}" if angles.size > 1 else f"reach {top:.4g}"
        raise CLIError(
            f"the angles in {path} {what}, beyond 2 pi radians: they look like "
            f"degrees; pass --degrees (angles files are read as radians unless --degrees)"
        )
    if degrees and angles.size > 2 and span <= _TWO_PI:
        raise CLIError(
            f"with --degrees the angles in {path} span only {span:.4g} degrees: they look like "
            f"radians ({math.degrees(span):.4g} degrees); drop --degrees"
        )


def _support_excess(sino, A):
    """How much the sinogram varies along the detector where an image of ``A.image_shape`` casts none.

    At angle ``theta`` a square image of side ``n`` projects onto
    ``|t| <= n/2 (|cos| + |sin|)``; bins beyond that (one bin of margin for the
    interpolation) must hold noise, plus perhaps a background constant along
    the detector (a flat-field error after the log, a dark-current offset):
    that is no reason to refuse. So the test is on the spread of each view's
    outside bins about their own median (mean absolute deviation, over the
    views with at least 3 such bins), not on their mean. Returns ``(spread,
    threshold)``, or ``None`` when no view has such bins.
    """
    from tikhon.data import estimate_noise_sigma

    n_rows, n_cols = A.image_shape
    t = np.arange(A.n_det) - A.det_center
    c, s_ = np.abs(np.cos(A.angles)), np.abs(np.sin(A.angles))
    reach = 0.5 * (n_cols * c + n_rows * s_) + 1.5
    outside = np.abs(t)[None, :] > reach[:, None]
    views = outside.sum(axis=1) >= 3
    if not views.any():
        return None
    out = outside[views]
    vals = np.where(out, sino[views], np.nan)
    med = np.nanmedian(vals, axis=1, keepdims=True)
    spread = float(np.abs(vals - med)[out].mean())
    sigma = estimate_noise_sigma(sino) if sino.shape[1] >= 3 else 0.0
    # noise alone gives a spread of ~0.8 sigma; a circle=True sinogram read as
    # circle=False puts the object's edges there (~10% of the maximum)
    threshold = max(0.02 * float(np.abs(sino).max()), 3.0 * sigma)
    return spread, threshold


def _check_support(sino, A, circle, size=None):
    """Refuse (``size`` implied) or warn about (``--size`` given) signal where the image casts none.

    A sinogram made by ``skimage.transform.radon(image)`` with its default
    ``circle=True`` has as many bins as the image side: read as
    ``circle=False`` it implies a smaller image, and its outer bins hold the
    object's edges. With ``--size`` the user chose the geometry: warn only.
    """
    if circle:
        return
    found = _support_excess(sino, A)
    if found is None or found[0] <= found[1]:
        return
    n_rows, n_cols = A.image_shape
    if size is not None:
        print(f"warning: the sinogram varies in detector bins that a {n_rows}x{n_cols} image "
              f"(--size {size}) never reaches; if it came from scikit-image's default "
              f"skimage.transform.radon(..., circle=True), pass --circle instead", file=sys.stderr)
        return
    raise CLIError(
        f"the sinogram has signal in detector bins that a {n_rows}x{n_cols} image never "
        f"reaches (the size implied by {A.n_det} bins, assuming "
        f"skimage.transform.radon(..., circle=False)); a sinogram from scikit-image's default "
        f"circle=True has as many bins as the image side: pass --circle (image side "
        f"{A.n_det}), or give the image side with --size"
    )


def _read_angles(args):
    """The angles of ``--angles-file`` or ``--angles``/``--angle-range``, in radians."""
    if args.angles_file is not None:
        angles = _load_array(args.angles_file, "angles").ravel()
        if not all_finite(angles):
            raise CLIError("the angles file contains NaN or inf values")
        _check_angles_file(angles, args.degrees, args.angles_file)
        return np.deg2rad(angles) if args.degrees else angles
    if args.angle_range > 360:
        raise CLIError(f"--angle-range must be in (0, 360] degrees, got {args.angle_range}")
    if args.angle_range <= _TWO_PI:
        raise CLIError(
            f"--angle-range is in degrees: {args.angle_range:g} degrees looks like radians "
            f"({math.degrees(args.angle_range):.4g} degrees); e.g. --angle-range 180"
        )
    return np.linspace(0.0, np.deg2rad(args.angle_range), args.angles, endpoint=False)


def _image_side(args, n_det):
    """The image side: ``n_det`` with ``--circle``, else ``--size`` or the side implied by ``n_det``."""
    from tikhon.solvers.volumes import image_side

    if args.circle:
        # skimage.transform.radon(image, circle=True): one bin per pixel of the
        # side, centred on bin n // 2, the image inside its inscribed circle
        if args.size is not None and args.size != n_det:
            raise CLIError(f"--circle: the image side is the detector count {n_det}, "
                           f"got --size {args.size}")
        return n_det
    return args.size if args.size is not None else image_side(n_det)


def _open_stack(path):
    """A 3-D stack to reconstruct slice by slice (memory-mapped or zarr), or None for a 2-D sinogram."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".zarr":
        if not path.exists():
            raise CLIError(f"sinogram file not found: {path}")
        try:
            import zarr
        except ImportError:
            raise CLIError(f"reading the zarr store {path} needs zarr: pip install "
                           "'tikhon[dask]'") from None
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:
            raise CLIError(f"cannot read the zarr store {path}: {exc}") from exc
        if not isinstance(node, zarr.Array):
            arrays = dict(node.arrays())
            if "sinograms" not in arrays and len(arrays) != 1:
                raise CLIError(f"the zarr group {path} holds {sorted(arrays) or 'no arrays'}: "
                               "name the stack 'sinograms'")
            node = arrays["sinograms"] if "sinograms" in arrays else next(iter(arrays.values()))
        return node
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception:
            return None  # _load_array explains what is wrong with the file
        return arr if arr.ndim == 3 else None
    return None


def _cmd_reconstruct(args):
    from tikhon.operators import Radon

    names = _parse_methods(args.method)
    if len(names) != 1:
        raise CLIError("reconstruct takes exactly one --method")
    name = names[0]
    stack = _open_stack(args.sinogram)
    if stack is not None:
        return _cmd_reconstruct_volume(args, stack, name)
    given = [opt for opt, value in (("--scheduler", args.scheduler != "threads"),
                                    ("--workers", args.workers is not None),
                                    ("--chunk", args.chunk is not None)) if value]
    if given:
        raise CLIError(f"{', '.join(given)}: for a 3-D stack only; {args.sinogram} is one 2-D "
                       "sinogram")
    out = Path(args.out)
    if out.suffix and out.suffix.lower() not in _OUT_SUFFIXES:
        # checked before the solve: a silent out.png.npy surprised users
        raise CLIError(f"--out {out}: the reconstruction is saved as .npy, .tif or .tiff (a float "
                       f"image), not {out.suffix!r}; e.g. --out {out.with_suffix('.npy')}")
    sino = _load_array(args.sinogram, "sinogram")
    if sino.ndim != 2:
        raise CLIError(f"the sinogram must be a 2-D array (n_angles, n_det) or a 3-D stack "
                       f"(n_slices, n_angles, n_det) in a .npy file or a zarr store, got shape "
                       f"{sino.shape}")
    if args.transpose:
        sino = sino.T
    if not all_finite(sino):
        raise CLIError("the sinogram contains NaN or inf values")

    angles = _read_angles(args)
    n_angles, n_det = sino.shape
    if angles.size != n_angles:
        hint = ""
        if angles.size == n_det:
            if args.transpose:
                hint = (" (with --transpose the file is read as (n_det, n_angles); this one "
                        "already has one row per angle: drop --transpose)")
            else:
                hint = (" (the sinogram looks transposed, as scikit-image's radon returns it: "
                        "pass --transpose)")
        raise CLIError(
            f"{angles.size} angles given but the sinogram has {n_angles} rows; the sinogram "
            f"must have shape (n_angles, n_det){hint}"
        )
    size = _image_side(args, n_det)
    A = Radon((size, size), angles, n_det=n_det)
    _check_support(sino, A, args.circle, args.size)
    rows, images, notes = _run_methods([name], A, sino, args)
    for note in notes:
        print(note, file=sys.stderr)
    if not rows:
        return 1
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    image = images[name]
    if out.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile
        except ImportError:
            raise CLIError("writing TIFF needs the tifffile package; use an .npy output") from None
        # minisblack: a 2-D float image, never read back as RGB
        tifffile.imwrite(str(out), image.astype(np.float32), photometric="minisblack")
    else:
        # no suffix: numpy.save appends .npy (the message below names the file)
        out = out.with_suffix(".npy") if not out.suffix else out
        np.save(out, image)
    print(_format_table(rows, metrics=False))
    lams = _format_lams(rows)
    if lams:
        print(lams)
    geometry = "circle=True (inscribed circle)" if args.circle else "circle=False"
    print(f"geometry: {n_angles} angles, {n_det} detector bins, image {size}x{size}, "
          f"scikit-image's {geometry}")
    print(f"reconstruction {image.shape[0]}x{image.shape[1]} saved to {out}")
    return 0


#: The methods that ``tikhon reconstruct`` runs on a 3-D stack (:func:`tikhon.solvers.reconstruct_volume`).
VOLUME_METHODS = ("fbp", "tv", "wtv")
_LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


def _volume_kwargs(name, args):
    if name == "fbp":
        return {}
    lam = args.lam
    if name == "tv" and lam is None:
        lam = "auto"  # each slice's own noise estimate (Result.info["lam"] per slice)
    return {"lam": lam, **_solver_options(args)}


def _cmd_reconstruct_volume(args, stack, name):
    """``tikhon reconstruct`` on a stack: :func:`tikhon.solvers.reconstruct_volume` into a zarr store."""
    from tikhon.operators import Radon
    from tikhon.solvers import reconstruct_volume

    if name not in VOLUME_METHODS:
        raise CLIError(f"method {name!r} is not available for a 3-D stack; choose one of "
                       f"{', '.join(VOLUME_METHODS)}")
    if args.transpose:
        raise CLIError("--transpose is not supported for a 3-D stack: store it as "
                       "(n_slices, n_angles, n_det)")
    if args.device is not None:
        raise CLIError("--device is not supported for a 3-D stack (the slices run on NumPy "
                       "with the numba kernels)")
    out = Path(args.out)
    if out.suffix.lower() != ".zarr":
        raise CLIError(f"--out {out}: a 3-D stack is written block by block into a zarr store; "
                       f"pass --out {out.with_suffix('.zarr')}")
    if stack.ndim != 3:
        raise CLIError(f"the stack must be 3-D (n_slices, n_angles, n_det), got shape {stack.shape}")
    if np.dtype(stack.dtype) not in (np.float32, np.float64):
        raise CLIError(f"the stack must hold float32 or float64 values, got {stack.dtype}; "
                       "convert it (e.g. numpy.save(path, stack.astype(numpy.float32)))")
    n_slices, n_angles, n_det = stack.shape
    angles = _read_angles(args)
    if angles.size != n_angles:
        raise CLIError(f"{angles.size} angles given but the stack has {n_angles} angles per "
                       f"slice (axis 1 of (n_slices, n_angles, n_det))")
    size = _image_side(args, n_det)
    middle = np.asarray(stack[n_slices // 2], dtype=np.float64)
    if not all_finite(middle):
        raise CLIError(f"the sinogram of slice {n_slices // 2} contains NaN or inf values")
    _check_support(middle, Radon((size, size), angles, n_det=n_det), args.circle, args.size)

    client = None
    scheduler = args.scheduler
    if scheduler not in _LOCAL_SCHEDULERS:
        try:
            from distributed import Client
        except ImportError:
            raise CLIError(f"--scheduler {scheduler}: a cluster address needs distributed: "
                           "pip install 'tikhon[dask]'") from None
        import dask

        try:
            client = scheduler = Client(scheduler,
                                        timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError, ValueError) as exc:
            raise CLIError(f"--scheduler {args.scheduler}: cannot connect to a Dask scheduler "
                           f"there ({exc}); use threads, processes or an address such as "
                           "tcp://host:8786") from exc
    try:
        with warnings.catch_warnings():
            # the table below marks the slices that stopped early
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = reconstruct_volume(stack, angles, name, scheduler=scheduler, out=str(out),
                                     chunk=args.chunk, progress=not args.quiet,
                                     image_shape=(size, size),
                                     n_workers=None if client is not None else args.workers,
                                     **_volume_kwargs(name, args))
    except TypeError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        if client is not None:
            client.close()
    info = res.info
    n_conv = int(info["converged"].sum())
    print(f"{'method':<10}{'slices':>8}{'converged':>11}{'iterations':>12}{'seconds':>10}")
    print(f"{name:<10}{n_slices:>8}{n_conv:>11}{int(info['n_iter'].sum()):>12}{res.elapsed:>10.2f}")
    if n_conv < n_slices:
        print(f"{n_slices - n_conv} slices stopped before reaching --tol: {res.message}")
    if info["blocks_skipped"]:
        print(f"resumed: {info['blocks_skipped']} of {info['n_blocks']} blocks were already "
              f"finished in {out}")
    lam = info["lam"][np.isfinite(info["lam"])]
    if lam.size:
        print(f"lam: {lam.min():.4g} to {lam.max():.4g} over the slices")
    print(f"geometry: {n_angles} angles, {n_det} detector bins, image {size}x{size}")
    print(f"volume {n_slices}x{size}x{size} saved to {out} (array 'x'; per-slice 'converged', "
          "'n_iter', 'status', 'lam')")
    return 0


def _option_type(convert, check, label):
    """An argparse ``type``: ``convert`` the text, then validate it with a tikhon check.

    argparse reports a ValueError or TypeError of a type function as
    "invalid <label> value: '<text>'", so the label names what is expected.
    """

    def parse(text):
        return check(convert(text), "value", "tikhon")

    parse.__name__ = label
    return parse


_positive_int = _option_type(int, check_positive_int, "positive integer")
_positive_float = _option_type(float, check_positive, "positive number")
_nonneg_float = _option_type(float, check_nonneg, "non-negative number")


def build_parser():
    """The argparse parser of the ``tikhon`` command."""
    from tikhon import __version__
    from tikhon.solvers.tomography import DEFAULT_MAX_ITER

    methods_help = "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items())
    parser = argparse.ArgumentParser(
        prog="tikhon",
        description="Regularized reconstruction for few-view CT (tikhon).",
    )
    parser.add_argument("--version", action="version", version=f"tikhon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def solver_options(p):
        p.add_argument("--lam", type=_nonneg_float, default=None,
                       help="TV weight (default: 6 x the sinogram's estimated noise std for tv, "
                       "12 x for wtv and learned, whose weights lie in (0, 1]; see "
                       "tikhon.solvers.default_tv_lam); the value used is printed")
        p.add_argument("--max-iter", type=_positive_int, default=DEFAULT_MAX_ITER,
                       help="maximum iterations of iterative methods per solve "
                       f"(default {DEFAULT_MAX_ITER}, as tikhon.solvers.tv_reconstruction)")
        p.add_argument("--tol", type=_positive_float, default=1e-4,
                       help="stopping tolerance of iterative methods (default 1e-4)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--device", default=None, metavar="DEVICE",
                       help="run the reconstructions on a torch device in float32 (e.g. cuda, "
                       "cuda:1, cpu); default: NumPy with the numba kernels, float64")

    demo = sub.add_parser("demo", help="few-view CT on the Shepp-Logan phantom",
                          description="Simulate a noisy few-view sinogram of the Shepp-Logan "
                          "phantom, reconstruct it and report PSNR/SSIM. Methods: " + methods_help)
    demo.add_argument("--size", type=_positive_int, default=256, help="image side (default 256)")
    demo.add_argument("--angles", type=_positive_int, default=60,
                      help="number of views over [0, pi) (default 60)")
    demo.add_argument("--noise", type=_nonneg_float, default=0.01,
                      help="Gaussian noise std relative to max|sinogram| (default 0.01)")
    demo.add_argument("--methods", default="fbp,tv,wtv,learned",
                      help="comma-separated methods (default fbp,tv,wtv,learned)")
    demo.add_argument("--out", default="tikhon_demo", help="output folder (default ./tikhon_demo)")
    demo.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    demo.add_argument("--no-figure", action="store_true", help="do not save the PNG figure")
    solver_options(demo)
    demo.set_defaults(func=_cmd_demo)

    rec = sub.add_parser("reconstruct", help="reconstruct a sinogram from a file",
                         description="Reconstruct a parallel-beam sinogram of shape "
                         "(n_angles, n_det) stored as .npy, .tif/.tiff, .txt (numbers separated "
                         "by spaces) or .csv (by commas). The geometry is that of "
                         "skimage.transform.radon(image, theta, circle=False).T: n_det = "
                         "ceil(sqrt(2) n) bins for an n x n image, centred on bin n_det // 2; "
                         "pass --circle for scikit-image's default circle=True (n_det = n). "
                         "A 3-D stack (n_slices, n_angles, n_det) in a .npy file or a zarr store "
                         "is reconstructed slice by slice on Dask into the zarr store --out "
                         "(tikhon.solvers.reconstruct_volume; a second run resumes it). "
                         "Methods: " + methods_help)
    rec.add_argument("sinogram", metavar="SINOGRAM",
                     help="sinogram file (.npy, .tif, .tiff, .txt, .csv), or a 3-D stack "
                     "(n_slices, n_angles, n_det) in a .npy file or a zarr store")
    group = rec.add_mutually_exclusive_group(required=True)
    group.add_argument("--angles-file", metavar="FILE",
                       help="file with the projection angles (.npy/.txt/.csv; radians unless "
                       "--degrees)")
    group.add_argument("--angles", type=_positive_int, metavar="N",
                       help="N equispaced angles over [0, --angle-range)")
    rec.add_argument("--angle-range", type=_positive_float, default=180.0,
                     help="angular range in DEGREES for --angles (default 180; a value <= 2 pi "
                     "is refused as radians)")
    rec.add_argument("--degrees", action="store_true",
                     help="the angles file is in degrees (skimage's theta); default radians")
    rec.add_argument("--circle", action="store_true",
                     help="the sinogram is skimage.transform.radon(..., circle=True), "
                     "scikit-image's default: as many detector bins as the image side")
    rec.add_argument("--transpose", action="store_true",
                     help="the file holds (n_det, n_angles), as skimage.transform.radon returns")
    rec.add_argument("--size", type=_positive_int, default=None,
                     help="image side (default: the side n with ceil(sqrt(2) n) = n_det, "
                     "scikit-image's circle=False; with --circle, n_det)")
    rec.add_argument("--method", default="fbp", help="reconstruction method (default fbp)")
    rec.add_argument("--out", default="recon.npy",
                     help="output file (.npy, .tif or .tiff; default recon.npy); for a 3-D "
                     "stack a zarr store NAME.zarr, resumed when run again")
    rec.add_argument("--scheduler", default="threads", metavar="SCHEDULER",
                     help="for a 3-D stack: threads (default), processes, synchronous, or the "
                     "address of a Dask scheduler (tcp://host:8786)")
    rec.add_argument("--workers", type=_positive_int, default=None,
                     help="for a 3-D stack: threads or processes (default: the cores)")
    rec.add_argument("--chunk", type=_positive_int, default=None,
                     help="for a 3-D stack: slices per block (task, zarr chunk, unit of resuming)")
    solver_options(rec)
    rec.set_defaults(func=_cmd_reconstruct)
    return parser


def main(argv=None) -> int:
    """Run the ``tikhon`` command line; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when an input is invalid or nothing could run, 2 on a
        usage error (as argparse).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message; hand back the code
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"tikhon {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # input validation inside the library
        print(f"tikhon {args.command}: error: {exc}", file=sys.stderr)
        return 1
