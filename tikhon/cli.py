"""The ``tikhon`` command line: a few-view CT demo and reconstruction of user sinograms.

``tikhon demo`` simulates a noisy few-view sinogram of the Shepp-Logan phantom,
reconstructs it with the requested methods, prints a table of PSNR / SSIM /
iterations / seconds and saves the reconstructions (``.npy``) and a figure.
``tikhon reconstruct`` reconstructs a sinogram stored in a ``.npy`` or TIFF file.

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
    from tikhon.solvers import default_tv_lam, tv_reconstruction

    lam = default_tv_lam(sinogram) if args.lam is None else args.lam
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
        raise MethodUnavailable(f"needs PyTorch (pip install 'tikhon[learned]'): {exc}") from exc
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
        if res.status == "nonfinite":
            notes.append(f"{name}: {res.message}")
            continue
        row = {"method": name, "iterations": int(res.n_iter), "seconds": seconds,
               "converged": res.converged}
        if ref is not None:
            from tikhon.metrics import psnr, ssim

            row["psnr"] = psnr(image, ref)
            row["ssim"] = ssim(image, ref)
        rows.append(row)
        images[name] = image
    bar.close()
    return rows, images, notes


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


def _save_figure(path, ref, images, rows):
    """Reconstructions (top) and absolute error maps (bottom); False when matplotlib is missing."""
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
    axes[1, 0].axis("off")
    if names:
        fig.colorbar(im, ax=axes[1, 1:].tolist(), shrink=0.8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
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
    print(f"tikhon demo: Shepp-Logan {args.size}x{args.size}, {args.angles} views over [0, pi), "
          f"Gaussian noise {args.noise:g} x max|sinogram|, seed {args.seed}")
    rows, images, notes = _run_methods(names, A, sinogram, args, ref=ref)
    for note in notes:
        print(note)
    if rows:
        print(_format_table(rows))
    np.save(out / "phantom.npy", ref)
    np.save(out / "sinogram.npy", sinogram)
    np.save(out / "angles.npy", angles)
    for name, image in images.items():
        np.save(out / f"recon_{name}.npy", image)
    if images and not args.no_figure:
        fig_path = out / "demo.png"
        if _save_figure(fig_path, ref, images, rows):
            print(f"figure: {fig_path}")
        else:
            print("figure skipped: matplotlib is not installed (pip install matplotlib)")
    print(f"arrays: {out}")
    return 0 if rows else 1


def _load_array(path, what):
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            from skimage.io import imread

            arr = imread(str(path))
        elif suffix in (".txt", ".csv"):
            arr = np.loadtxt(path, delimiter="," if suffix == ".csv" else None)
        else:
            raise CLIError(f"{what} {path}: unsupported file type {suffix!r} (use .npy, .tif or .tiff)")
    except CLIError:
        raise
    except Exception as exc:  # a corrupt file: report it in one line
        raise CLIError(f"cannot read {what} {path}: {exc}") from exc
    arr = np.asarray(arr)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise CLIError(f"{what} {path} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _size_from_n_det(n_det):
    """An image side whose default detector count (Radon's or skimage's) is ``n_det``.

    Two sides often share a count (Radon rounds it up to an odd number); the
    even one is taken, as image sides usually are.
    """
    guess = int(math.floor(n_det / math.sqrt(2)))
    found = []
    for n in range(max(guess - 2, 1), guess + 3):
        diag = math.ceil(math.hypot(n, n))
        if n_det in (diag + 1 - diag % 2, diag):
            found.append(n)
    if not found:
        return max(guess, 1)
    even = [n for n in found if n % 2 == 0]
    return (even or found)[0]


def _cmd_reconstruct(args):
    from tikhon.operators import Radon

    names = _parse_methods(args.method)
    if len(names) != 1:
        raise CLIError("reconstruct takes exactly one --method")
    name = names[0]
    sino = _load_array(args.sinogram, "sinogram")
    if sino.ndim != 2:
        raise CLIError(f"the sinogram must be a 2-D array (n_angles, n_det), got shape {sino.shape}")
    if args.transpose:
        sino = sino.T
    if not all_finite(sino):
        raise CLIError("the sinogram contains NaN or inf values")

    if args.angles_file is not None:
        angles = _load_array(args.angles_file, "angles").ravel()
        if args.degrees:
            angles = np.deg2rad(angles)
        if not all_finite(angles):
            raise CLIError("the angles file contains NaN or inf values")
    else:
        if args.angle_range > 360:
            raise CLIError(f"--angle-range must be in (0, 360] degrees, got {args.angle_range}")
        angles = np.linspace(0.0, np.deg2rad(args.angle_range), args.angles, endpoint=False)
    n_angles, n_det = sino.shape
    if angles.size != n_angles:
        hint = ""
        if angles.size == n_det:
            hint = (" (the sinogram looks transposed, as scikit-image's radon returns it: "
                    "pass --transpose)")
        raise CLIError(
            f"{angles.size} angles given but the sinogram has {n_angles} rows; the sinogram "
            f"must have shape (n_angles, n_det){hint}"
        )
    size = args.size if args.size is not None else _size_from_n_det(n_det)
    A = Radon((size, size), angles, n_det=n_det)
    rows, images, notes = _run_methods([name], A, sino, args)
    for note in notes:
        print(note, file=sys.stderr)
    if not rows:
        return 1
    out = Path(args.out)
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
        if out.suffix.lower() != ".npy":
            out = out.with_name(out.name + ".npy")
        np.save(out, image)
    print(_format_table(rows, metrics=False))
    print(f"reconstruction {image.shape[0]}x{image.shape[1]} saved to {out}")
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
                       help="TV weight (default: proportional to the noise level and max|sinogram|)")
        p.add_argument("--max-iter", type=_positive_int, default=3000,
                       help="maximum iterations of iterative methods per solve (default 3000)")
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
                         "(n_angles, n_det) stored as .npy or .tif/.tiff. Methods: " + methods_help)
    rec.add_argument("sinogram", metavar="SINOGRAM", help="sinogram file (.npy, .tif, .tiff)")
    group = rec.add_mutually_exclusive_group(required=True)
    group.add_argument("--angles-file", metavar="FILE",
                       help="file with the projection angles (.npy/.txt; radians unless --degrees)")
    group.add_argument("--angles", type=_positive_int, metavar="N",
                       help="N equispaced angles over [0, --angle-range)")
    rec.add_argument("--angle-range", type=_positive_float, default=180.0,
                     help="angular range in degrees for --angles (default 180)")
    rec.add_argument("--degrees", action="store_true", help="the angles file is in degrees")
    rec.add_argument("--transpose", action="store_true",
                     help="the file holds (n_det, n_angles), as skimage.transform.radon returns")
    rec.add_argument("--size", type=_positive_int, default=None,
                     help="image side (default: the even side whose diagonal n_det covers)")
    rec.add_argument("--method", default="fbp", help="reconstruction method (default fbp)")
    rec.add_argument("--out", default="recon.npy", help="output file (.npy or .tif; default recon.npy)")
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
