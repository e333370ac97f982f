"""The tikhon command line: demo and reconstruct, in process and as ``python -m tikhon``."""

import dataclasses
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tikhon.cli import METHODS, build_parser, main
from tikhon.data import shepp_logan, simulate_sinogram
from tikhon.metrics import psnr
from tikhon.operators import Radon
from tikhon.solvers import ConvergenceWarning, Result


def table_value(text, method, column):
    """Read a number from the printed table (columns: PSNR, SSIM, iterations, seconds)."""
    m = re.search(rf"^{method}\s+([-\d.]+)\s+([-\d.]+)\s+(\d+)\*?\s+([\d.]+)$", text, re.M)
    assert m, f"no table row for {method} in:\n{text}"
    return float(m.group({"psnr": 1, "ssim": 2, "iter": 3, "seconds": 4}[column]))


def test_demo_in_process(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--size", "64", "--angles", "20", "--methods", "fbp",
               "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "PSNR" in text and "SSIM" in text
    for name in ("phantom.npy", "sinogram.npy", "angles.npy", "recon_fbp.npy"):
        assert (out / name).is_file()
    recon = np.load(out / "recon_fbp.npy")
    ref = shepp_logan(64)
    assert recon.shape == (64, 64)
    np.testing.assert_array_equal(np.load(out / "phantom.npy"), ref)
    # the printed PSNR is that of the saved reconstruction, and FBP is reasonable
    assert table_value(text, "fbp", "psnr") == pytest.approx(psnr(recon, ref), abs=0.006)
    assert table_value(text, "fbp", "psnr") > 15
    assert np.load(out / "sinogram.npy").shape == (20, Radon((64, 64), [0.0]).n_det)
    pytest.importorskip("matplotlib")
    assert (out / "demo.png").stat().st_size > 1000
    assert "figure:" in text


def test_demo_subprocess(tmp_path):
    out = tmp_path / "d"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "tikhon", "demo", "--size", "64", "--angles", "20",
         "--methods", "fbp", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert table_value(proc.stdout, "fbp", "psnr") > 15
    assert (out / "recon_fbp.npy").is_file()


def test_demo_figure_skipped_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    rc = main(["demo", "--size", "32", "--angles", "8", "--methods", "fbp",
               "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    assert "figure skipped" in capsys.readouterr().out
    assert not (tmp_path / "demo.png").exists()


def test_demo_tv_plugs_in(tmp_path, capsys):
    rc = main(["demo", "--size", "32", "--angles", "12", "--methods", "fbp,tv,learned",
               "--max-iter", "30", "--out", str(tmp_path), "--quiet", "--no-figure"])
    text = capsys.readouterr().out
    assert rc == 0
    if "skipped tv" in text:
        pytest.skip("tikhon.solvers.tv_reconstruction is not available")
    assert 1 <= table_value(text, "tv", "iter") <= 30
    assert (tmp_path / "recon_tv.npy").is_file()
    assert "skipped learned" in text or "learned" in re.findall(r"^(\w+)\s", text, re.M)


def test_demo_bad_arguments(tmp_path, capsys):
    assert main(["demo", "--methods", "fbp,magic", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown method" in err and "magic" in err and "fbp" in err
    assert main(["demo", "--size", "-3"]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["demo", "--noise", "abc"]) == 2
    assert main(["frobnicate"]) == 2
    assert main([]) == 2


def test_method_registry_signature():
    assert {"fbp", "tv", "wtv", "learned"} <= set(METHODS)
    A = Radon((16, 16), np.linspace(0, np.pi, 10, endpoint=False))
    args = build_parser().parse_args(["demo"])
    res = METHODS["fbp"](A, A(np.ones((16, 16))), args)
    assert isinstance(res, Result)
    assert res.x.shape == (16, 16) and res.n_iter == 0 and res.status == "converged"


def test_unconverged_mark_comes_from_the_status(tmp_path, capsys, monkeypatch):
    def stalled(A, sinogram, args):  # no warning, status max_iter: marked
        return dataclasses.replace(METHODS["fbp"](A, sinogram, args), status="max_iter", converged=False)

    def noisy(A, sinogram, args):  # a ConvergenceWarning, status converged: not marked
        warnings.warn("inner solve stopped early", ConvergenceWarning)
        return METHODS["fbp"](A, sinogram, args)

    monkeypatch.setitem(METHODS, "stalled", stalled)
    monkeypatch.setitem(METHODS, "noisy", noisy)
    common = ["demo", "--size", "32", "--angles", "8", "--no-figure", "--quiet"]
    assert main(common + ["--methods", "stalled", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^stalled\s.*\s0\*\s", out, re.M) and "stopped at --max-iter" in out
    assert main(common + ["--methods", "noisy", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert table_value(out, "noisy", "iter") == 0 and "*" not in out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    ref = shepp_logan(64)
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    sino, A = simulate_sinogram(ref, angles, level=0.005, rng=0, return_operator=True)
    np.save(d / "sino.npy", sino)
    np.save(d / "angles.npy", angles)
    return d, ref, angles, sino, A


def test_reconstruct_npy(saved, capsys):
    d, ref, angles, sino, A = saved
    out = d / "recon.npy"
    rc = main(["reconstruct", str(d / "sino.npy"), "--angles", "30", "--size", "64",
               "--method", "fbp", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    recon = np.load(out)
    np.testing.assert_allclose(recon, A.fbp(sino), rtol=1e-10, atol=1e-12)
    assert psnr(recon, ref) > 18
    assert "saved to" in capsys.readouterr().out
    # angles from a file, in degrees, and the image size inferred from n_det
    np.savetxt(d / "deg.txt", np.degrees(angles))
    out2 = d / "recon2.npy"
    assert main(["reconstruct", str(d / "sino.npy"), "--angles-file", str(d / "deg.txt"),
                 "--degrees", "--out", str(out2), "--quiet"]) == 0
    np.testing.assert_allclose(np.load(out2), recon, rtol=1e-10, atol=1e-12)


def test_reconstruct_tiff_and_transpose(saved, capsys):
    pytest.importorskip("tifffile")
    import tifffile

    d, ref, angles, sino, A = saved
    tifffile.imwrite(d / "sino_t.tif", sino.T.astype(np.float32), photometric="minisblack")
    out = d / "recon.tif"
    rc = main(["reconstruct", str(d / "sino_t.tif"), "--angles-file", str(d / "angles.npy"),
               "--transpose", "--size", "64", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    recon = tifffile.imread(out)
    assert recon.shape == (64, 64)
    assert psnr(recon, ref) > 18


def test_reconstruct_errors(saved, tmp_path, capsys):
    d, *_ = saved
    sino = str(d / "sino.npy")
    assert main(["reconstruct", sino, "--angles", "31", "--out", str(tmp_path / "r.npy")]) == 1
    err = capsys.readouterr().err
    assert "31 angles" in err and "30 rows" in err
    np.save(tmp_path / "t.npy", np.load(sino).T)
    assert main(["reconstruct", str(tmp_path / "t.npy"), "--angles", "30"]) == 1
    assert "--transpose" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "missing.npy"), "--angles", "30"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["reconstruct", sino]) == 2  # neither --angles nor --angles-file
    assert main(["reconstruct", sino, "--angles", "30", "--angles-file", sino]) == 2
    capsys.readouterr()
    assert main(["reconstruct", sino, "--angles", "30", "--method", "nope"]) == 1
    assert "unknown method" in capsys.readouterr().err
    np.save(tmp_path / "nan.npy", np.full((30, 91), np.nan))
    assert main(["reconstruct", str(tmp_path / "nan.npy"), "--angles", "30"]) == 1
    assert "NaN" in capsys.readouterr().err
    assert main(["reconstruct", sino, "--angles", "30", "--chunk", "2"]) == 1
    assert "--chunk: for a 3-D stack only" in capsys.readouterr().err
    np.save(tmp_path / "4d.npy", np.zeros((2, 2, 30, 91)))
    assert main(["reconstruct", str(tmp_path / "4d.npy"), "--angles", "30"]) == 1
    err = capsys.readouterr().err
    assert "2-D" in err and "3-D stack" in err
    # a 3-D stack is written to a zarr store, never to the default recon.npy
    np.save(tmp_path / "3d.npy", np.zeros((2, 30, 91)))
    assert main(["reconstruct", str(tmp_path / "3d.npy"), "--angles", "30"]) == 1
    assert "zarr store" in capsys.readouterr().err
    (tmp_path / "x.png").write_bytes(b"")
    assert main(["reconstruct", str(tmp_path / "x.png"), "--angles", "30"]) == 1
    assert "unsupported" in capsys.readouterr().err


def test_unconverged_runs_are_marked(tmp_path, capsys):
    rc = main(["demo", "--size", "32", "--angles", "8", "--methods", "tv", "--max-iter", "2",
               "--no-figure", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "stopped at --max-iter" in out


def test_demo_on_a_torch_device_matches_numpy(tmp_path, capsys):
    pytest.importorskip("torch")
    args = ["demo", "--size", "48", "--angles", "16", "--methods", "fbp,tv,wtv,learned", "--no-figure",
            "--quiet", "--max-iter", "400"]
    assert main(args + ["--out", str(tmp_path / "np")]) == 0
    text_np = capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "dev"), "--device", "cpu"]) == 0
    text_dev = capsys.readouterr().out
    for method in ("fbp", "tv", "wtv", "learned"):
        a = np.load(tmp_path / "np" / f"recon_{method}.npy")
        b = np.load(tmp_path / "dev" / f"recon_{method}.npy")
        assert b.dtype == np.float64 and b.shape == a.shape
        # float32 on the device against float64 NumPy: same solution to float32 accuracy
        assert table_value(text_dev, method, "psnr") == pytest.approx(
            table_value(text_np, method, "psnr"), abs=0.05)
    assert main(args[:5] + ["--methods", "fbp", "--out", str(tmp_path / "bad"), "--device", "nonsense"]) == 1
    assert "--device nonsense" in capsys.readouterr().err


@pytest.fixture(scope="module")
def saved_stack(tmp_path_factory):
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    from tikhon.data import random_ellipses

    d = tmp_path_factory.mktemp("stack")
    angles = np.linspace(0, np.pi, 20, endpoint=False)
    stack = np.stack([simulate_sinogram(random_ellipses(32, rng=i), angles, level=0.01, rng=i)
                      for i in range(4)])
    np.save(d / "stack.npy", stack)
    return d, angles, stack


def test_reconstruct_stack_to_zarr_and_resume(saved_stack, capsys):
    import zarr

    from tikhon.solvers import reconstruct_volume

    d, angles, stack = saved_stack
    out = d / "fbp.zarr"
    args = ["reconstruct", str(d / "stack.npy"), "--angles", "20", "--method", "fbp",
            "--out", str(out), "--chunk", "2", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert f"saved to {out}" in text and re.search(r"^fbp\s+4\s+4\s+0\s", text, re.M)
    A = Radon((32, 32), angles, n_det=stack.shape[2])
    vol = zarr.open_group(str(out), mode="r")["x"][:]
    np.testing.assert_allclose(vol, np.stack([A.fbp(s) for s in stack]), rtol=1e-10, atol=1e-12)
    assert main(args) == 0
    assert "resumed: 2 of 2 blocks" in capsys.readouterr().out
    # tv on processes, from a zarr input, with the CLI's solver options
    z = zarr.open_array(str(d / "stack.zarr"), mode="w", shape=stack.shape, dtype=stack.dtype)
    z[:] = stack
    out_tv = d / "tv.zarr"
    assert main(["reconstruct", str(d / "stack.zarr"), "--angles", "20", "--method", "tv",
                 "--out", str(out_tv), "--scheduler", "processes", "--workers", "2",
                 "--max-iter", "50", "--tol", "1e-3", "--quiet"]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "stopped before reaching --tol" in text or re.search(r"^tv\s+4\s+4\s", text, re.M)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = reconstruct_volume(stack, angles, "tv", max_iter=50, tol=1e-3, lam="auto",
                                 scheduler="synchronous", progress=False)
    np.testing.assert_allclose(zarr.open_group(str(out_tv), mode="r")["x"][:], ref.x,
                               rtol=0, atol=1e-6)


def test_reconstruct_stack_errors(saved_stack, tmp_path, capsys):
    d, angles, stack = saved_stack
    src = str(d / "stack.npy")
    out = str(tmp_path / "o.zarr")
    assert main(["reconstruct", src, "--angles", "21", "--out", out]) == 1
    assert "21 angles given but the stack has 20" in capsys.readouterr().err
    assert main(["reconstruct", src, "--angles", "20", "--out", out, "--method", "learned"]) == 1
    assert "not available for a 3-D stack" in capsys.readouterr().err
    assert main(["reconstruct", src, "--angles", "20", "--out", out, "--transpose"]) == 1
    assert "--transpose" in capsys.readouterr().err
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["reconstruct", src, "--angles", "20", "--out", out, "--scheduler",
                     "tcp://127.0.0.1:1"]) == 1
    assert "cannot connect" in capsys.readouterr().err
    np.save(tmp_path / "int.npy", np.zeros((2, 20, 46), dtype=np.int16))
    assert main(["reconstruct", str(tmp_path / "int.npy"), "--angles", "20", "--out", out]) == 1
    assert "float32 or float64" in capsys.readouterr().err
    bad = stack.copy()
    bad[1, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    assert main(["reconstruct", str(tmp_path / "inf.npy"), "--angles", "20", "--out",
                 str(tmp_path / "inf.zarr"), "--quiet"]) == 1
    assert "slice 1" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "missing.zarr"), "--angles", "20", "--out", out]) == 1
    assert "not found" in capsys.readouterr().err
    # a store of other parameters is refused, in one line
    assert main(["reconstruct", src, "--angles", "20", "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["reconstruct", src, "--angles", "20", "--out", out, "--method", "tv",
                 "--quiet"]) == 1
    assert "other parameters" in capsys.readouterr().err
