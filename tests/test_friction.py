"""The newcomer friction points of issue 18, each at its root (CLI, Radon, recipes, messages).

Point 3 (Radon's default ``n_det`` = scikit-image's for every size) is tested in
tests/operators/test_radon.py; the README / .gitignore lines of point 6 in
tests/test_docs.py.
"""

import inspect
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from tikhon.operators import Radon

from tikhon.cli import build_parser, main
from tikhon.data import estimate_noise_sigma, shepp_logan, simulate_sinogram
from tikhon.metrics import psnr

skimage_transform = pytest.importorskip("skimage.transform")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Sinograms of a 64 x 64 Shepp-Logan made by scikit-image, as a user would."""
    d = tmp_path_factory.mktemp("friction")
    x = shepp_logan(64)
    theta = np.linspace(0.0, 180.0, 40, endpoint=False)
    np.save(d / "sino.npy", skimage_transform.radon(x, theta, circle=False).T)
    np.save(d / "sino_circle.npy", skimage_transform.radon(x, theta).T)  # skimage's default
    np.save(d / "deg.npy", theta)
    np.save(d / "rad.npy", np.deg2rad(theta))
    return d, x


def _err(capsys, argv):
    rc = main(argv + ["--quiet"])
    return rc, capsys.readouterr().err


# -- 1. angle units ------------------------------------------------------------
def test_degrees_without_flag_are_refused(files, capsys):
    d, _ = files
    rc, err = _err(capsys, ["reconstruct", str(d / "sino.npy"), "--angles-file", str(d / "deg.npy"),
                            "--out", str(d / "r.npy")])
    assert rc == 1 and "look like degrees" in err and "pass --degrees" in err


def test_radians_with_degrees_flag_are_refused(files, capsys):
    d, _ = files
    rc, err = _err(capsys, ["reconstruct", str(d / "sino.npy"), "--angles-file", str(d / "rad.npy"),
                            "--degrees", "--out", str(d / "r.npy")])
    assert rc == 1 and "look like radians" in err and "drop --degrees" in err


def test_angle_range_in_radians_is_refused(files, capsys):
    d, _ = files
    rc, err = _err(capsys, ["reconstruct", str(d / "sino.npy"), "--angles", "40",
                            "--angle-range", "3.14159", "--out", str(d / "r.npy")])
    assert rc == 1 and "--angle-range is in degrees" in err and "180 degrees" in err


def test_correct_units_still_run(files, capsys):
    d, x = files
    out = d / "ok.npy"
    assert main(["reconstruct", str(d / "sino.npy"), "--angles-file", str(d / "deg.npy"), "--degrees",
                 "--out", str(out), "--quiet"]) == 0
    assert psnr(np.load(out), x) > 18
    assert main(["reconstruct", str(d / "sino.npy"), "--angles-file", str(d / "rad.npy"),
                 "--out", str(out), "--quiet"]) == 0


# -- 2. scikit-image's circle=True sinograms -------------------------------------
def test_circle_sinogram_is_detected(files, capsys):
    d, _ = files
    rc, err = _err(capsys, ["reconstruct", str(d / "sino_circle.npy"), "--angles-file",
                            str(d / "deg.npy"), "--degrees", "--out", str(d / "r.npy")])
    assert rc == 1 and "circle=True" in err and "--circle" in err
    assert "help" not in err  # one line, no traceback


def test_circle_option_reconstructs_skimage_default(files, capsys):
    d, x = files
    out = d / "circle.npy"
    assert main(["reconstruct", str(d / "sino_circle.npy"), "--angles-file", str(d / "deg.npy"),
                 "--degrees", "--circle", "--out", str(out), "--quiet"]) == 0
    rec = np.load(out)
    assert rec.shape == x.shape  # the image side is the detector count
    # inside the inscribed circle, the only part every view sees
    ii, jj = np.mgrid[:64, :64]
    inside = (ii - 32) ** 2 + (jj - 32) ** 2 < 30 ** 2
    err = np.linalg.norm((rec - x)[inside]) / np.linalg.norm(x[inside])
    assert err < 0.35, err
    assert "circle=True" in capsys.readouterr().out
    # as good as the circle=False reconstruction inside the circle (computed here,
    # not left behind by another test)
    ref_out = d / "circle_ref.npy"
    assert main(["reconstruct", str(d / "sino.npy"), "--angles-file", str(d / "deg.npy"), "--degrees",
                 "--out", str(ref_out), "--quiet"]) == 0
    ref = np.load(ref_out)
    assert err < 1.3 * np.linalg.norm((ref - x)[inside]) / np.linalg.norm(x[inside])


@pytest.mark.parametrize("per_view", [False, True])
def test_constant_background_is_not_refused(files, capsys, per_view):
    # a flat-field error after the log: a background constant along the detector
    # (per view or overall, ~1.5% of the maximum), with or without --size
    d, x = files
    sino = np.load(d / "sino.npy")
    rng = np.random.default_rng(3)
    level = 0.015 * sino.max() * (rng.uniform(0.5, 1.5, (sino.shape[0], 1)) if per_view else 1.0)
    noisy = sino + level + 0.005 * sino.max() * rng.standard_normal(sino.shape)
    path = d / f"background_{per_view}.npy"
    np.save(path, noisy)
    for extra in ([], ["--size", "64"]):
        out = d / "bg.npy"
        rc, err = _err(capsys, ["reconstruct", str(path), "--angles-file", str(d / "deg.npy"),
                                "--degrees", "--out", str(out)] + extra)
        assert rc == 0 and "error" not in err and "warning" not in err, err
        assert np.load(out).shape == x.shape


def test_circle_sinogram_with_size_given_only_warns(files, capsys):
    # --size chooses the geometry: warn, worded from the --size used, and run
    d, _ = files
    out = d / "warned.npy"
    rc, err = _err(capsys, ["reconstruct", str(d / "sino_circle.npy"), "--angles-file",
                            str(d / "deg.npy"), "--degrees", "--size", "45", "--out", str(out)])
    assert rc == 0 and np.load(out).shape == (45, 45)
    assert "warning" in err and "45x45" in err and "--size 45" in err and "--circle" in err
    assert "implied" not in err


def test_radians_over_a_full_turn_not_starting_at_zero(files, capsys, tmp_path):
    _, x = files
    theta = np.linspace(0.0, 2 * np.pi, 60, endpoint=False) + np.pi / 2
    np.save(tmp_path / "sino.npy", skimage_transform.radon(x, np.rad2deg(theta), circle=False).T)
    np.save(tmp_path / "rad.npy", theta)
    out = tmp_path / "r.npy"
    rc, err = _err(capsys, ["reconstruct", str(tmp_path / "sino.npy"), "--angles-file",
                            str(tmp_path / "rad.npy"), "--out", str(out)])
    assert rc == 0, err
    assert psnr(np.load(out), x) > 18
    # the same angles in degrees span far over 2 pi: still refused without --degrees
    np.save(tmp_path / "deg.npy", np.rad2deg(theta))
    rc, err = _err(capsys, ["reconstruct", str(tmp_path / "sino.npy"), "--angles-file",
                            str(tmp_path / "deg.npy"), "--out", str(out)])
    assert rc == 1 and "look like degrees" in err


def test_circle_geometry_matches_skimage(files):
    d, x = files
    theta = np.load(d / "deg.npy")
    A = Radon(x.shape, np.deg2rad(theta), n_det=64)
    ref = np.load(d / "sino_circle.npy")
    assert np.linalg.norm(A(x) - ref) / np.linalg.norm(ref) < 0.02


# -- 4. the regularisation weight and one max_iter ------------------------------
def test_auto_lam_recorded_and_printed(tmp_path, capsys):
    from tikhon.solvers import (
        default_tv_lam,
        pilot_wtv_reconstruction,
        tv_reconstruction,
    )

    x = shepp_logan(32)
    angles = np.linspace(0, np.pi, 16, endpoint=False)
    y, A = simulate_sinogram(x, angles, level=0.02, rng=1, return_operator=True)
    res = tv_reconstruction(A, y, max_iter=20)  # lam defaults to "auto"
    sigma = estimate_noise_sigma(y)
    assert res.info["noise_sigma"] == pytest.approx(sigma)
    assert res.info["lam"] == pytest.approx(default_tv_lam(y)) == pytest.approx(6 * sigma)
    w = np.ones(x.shape)
    assert tv_reconstruction(A, y, weights=w, max_iter=5).info["lam"] == pytest.approx(12 * sigma)
    assert "noise_sigma" not in tv_reconstruction(A, y, 0.5, max_iter=5).info
    with pytest.raises(ValueError, match="lam"):
        tv_reconstruction(A, y, "big")
    pw = pilot_wtv_reconstruction(A, y, max_iter=10)
    assert pw.info["lam"] == pytest.approx(12 * sigma) and pw.info["pilot_lam"] == pytest.approx(6 * sigma)
    rc = main(["demo", "--size", "32", "--angles", "12", "--methods", "fbp,tv", "--max-iter", "20",
               "--no-figure", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    line = [s for s in out.splitlines() if s.startswith("tv: lam = ")]
    assert line and "noise std" in line[0]
    y_demo = np.load(tmp_path / "sinogram.npy")
    assert f"{default_tv_lam(y_demo):.4g}" in line[0]
    assert f"{estimate_noise_sigma(y_demo):.4g}" in line[0]
    help_text = build_parser()._subparsers._group_actions[0].choices["demo"].format_help()
    assert "noise std" in " ".join(help_text.split())


def test_one_max_iter_default():
    from tikhon.solvers import pilot_wtv_reconstruction, tv_reconstruction
    from tikhon.solvers.tomography import DEFAULT_MAX_ITER

    funcs = [tv_reconstruction, pilot_wtv_reconstruction]
    try:
        from tikhon.learned import learned_wtv_reconstruction
    except ImportError:
        pass
    else:
        funcs.append(learned_wtv_reconstruction)
    for f in funcs:
        assert inspect.signature(f).parameters["max_iter"].default == DEFAULT_MAX_ITER, f
    for cmd in (["demo"], ["reconstruct", "s.npy", "--angles", "3"]):
        assert build_parser().parse_args(cmd).max_iter == DEFAULT_MAX_ITER


# -- 5. messages ---------------------------------------------------------------
def test_transpose_advice_on_a_correct_sinogram(files, capsys):
    d, _ = files
    rc, err = _err(capsys, ["reconstruct", str(d / "sino.npy"), "--angles", "40", "--transpose",
                            "--out", str(d / "r.npy")])
    assert rc == 1 and "drop --transpose" in err and "pass --transpose" not in err


def test_text_file_named_npy(tmp_path, capsys):
    p = tmp_path / "s.npy"
    p.write_text("1 2 3\n4 5 6\n")
    rc, err = _err(capsys, ["reconstruct", str(p), "--angles", "2", "--out", str(tmp_path / "r.npy")])
    assert rc == 1 and "not a NumPy .npy file" in err and ".txt" in err
    assert "allow_pickle" not in err and "pickle" not in err


def test_out_with_another_suffix_is_refused_before_solving(files, capsys, tmp_path):
    d, _ = files
    rc, err = _err(capsys, ["reconstruct", str(d / "sino.npy"), "--angles", "40",
                            "--out", str(tmp_path / "r.png")])
    assert rc == 1 and ".png" in err and "r.npy" in err
    assert list(tmp_path.iterdir()) == []  # neither r.png nor r.png.npy


def test_csv_input_documented_and_read(files, capsys, tmp_path):
    d, x = files
    np.savetxt(tmp_path / "s.csv", np.load(d / "sino.npy"), delimiter=",")
    np.savetxt(tmp_path / "deg.csv", np.load(d / "deg.npy")[None], delimiter=",")
    out = tmp_path / "r.npy"
    assert main(["reconstruct", str(tmp_path / "s.csv"), "--angles-file", str(tmp_path / "deg.csv"),
                 "--degrees", "--out", str(out), "--quiet"]) == 0
    assert psnr(np.load(out), x) > 18
    help_text = build_parser()._subparsers._group_actions[0].choices["reconstruct"].format_help()
    assert ".csv" in help_text


def test_no_torch_note_is_said_once(tmp_path):
    # scikit-image's metrics probe torch on import: load them first, then hide torch
    code = ("import sys\n"
            "from skimage.metrics import peak_signal_noise_ratio, structural_similarity\n"
            "sys.modules['torch'] = None\n"
            "from tikhon.cli import main\n"
            f"sys.exit(main(['demo', '--size', '16', '--angles', '6', '--methods', 'fbp,learned', "
            f"'--no-figure', '--quiet', '--out', {str(tmp_path)!r}]))\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    note = [s for s in proc.stdout.splitlines() if s.startswith("skipped learned")]
    assert len(note) == 1 and note[0].count("PyTorch") == 1, note
    assert "pip install" in note[0]


def test_image_side_from_detector_count():
    from tikhon.operators.radon import default_n_det

    from tikhon.solvers.volumes import image_side as _size_from_n_det

    for n in range(16, 301):
        assert _size_from_n_det(default_n_det((n, n))) == n
    # a count no side gives (one above a side's: tikhon 0.1 bumped even counts to
    # odd ones) reads as that side
    counts = {default_n_det((n, n)) for n in range(16, 301)}
    odd_legacy = [(n, default_n_det((n, n)) + 1) for n in range(16, 300)
                  if default_n_det((n, n)) % 2 == 0 and default_n_det((n, n)) + 1 not in counts]
    assert odd_legacy
    for n, count in odd_legacy:
        assert _size_from_n_det(count) == n


def test_transport_warnings_point_at_the_caller():
    from tikhon.solvers import ConvergenceWarning
    from tikhon.solvers.transport import sinkhorn_divergence, sinkhorn_unbalanced

    rng = np.random.default_rng(0)
    C = rng.random((20, 20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        sinkhorn_unbalanced(None, None, C, 1e-3, 1.0, max_iter=3)
        sinkhorn_divergence(rng.random((20, 2)), rng.random((20, 2)), 1e-3, max_iter=3)
    hits = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(hits) >= 2
    assert all(w.filename == __file__ and w.lineno in (line, line + 1) for w in hits)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_sinkhorn_warning_points_at_the_caller(backend):
    from tikhon.solvers import ConvergenceWarning
    from tikhon.solvers.transport import sinkhorn

    C = np.random.default_rng(0).random((20, 20))
    if backend == "torch":
        torch = pytest.importorskip("torch")
        C = torch.as_tensor(C)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        res = sinkhorn(None, None, C, 1e-3, max_iter=3)
    assert res.status == "max_iter"
    hits = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert hits, [str(w.message) for w in caught]
    assert hits[0].filename == __file__ and hits[0].lineno == line
