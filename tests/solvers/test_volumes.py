"""reconstruct_volume: the same images as a Python loop of the 2-D recipe, on threads, processes
and a LocalCluster; memory-mapped, zarr and Dask inputs; zarr output that resumes after a kill."""

import os
import signal
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from tikhon.data import random_ellipses, simulate_sinogram  # noqa: E402
from tikhon.operators import Radon  # noqa: E402
from tikhon.solvers import (  # noqa: E402
    ConvergenceWarning,
    Result,
    fbp_reconstruction,
    pilot_wtv_reconstruction,
    reconstruct_volume,
    tv_reconstruction,
)

N, N_ANGLES, N_SLICES = 32, 20, 6
ANGLES = np.linspace(0, np.pi, N_ANGLES, endpoint=False)
# a loose tolerance keeps the solves short; the comparison is of the same iterations
TV = {"tol": 1e-3, "max_iter": 2000}


@pytest.fixture(scope="module")
def stack():
    return np.stack([simulate_sinogram(random_ellipses(N, rng=i), ANGLES, level=0.01, rng=100 + i)
                     for i in range(N_SLICES)])


@pytest.fixture(scope="module")
def operator(stack):
    return Radon((N, N), ANGLES, n_det=stack.shape[2])


@pytest.fixture(scope="module")
def tv_loop(stack, operator):
    """The reference: the 2-D recipe slice by slice in a Python loop."""
    results = [tv_reconstruction(operator, s, **TV) for s in stack]
    return np.stack([r.x for r in results]), np.array([r.n_iter for r in results])


@pytest.fixture(scope="module")
def cluster_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def test_threads_cluster_and_loop_agree(stack, tv_loop, cluster_client):
    ref, n_iter = tv_loop
    threaded = reconstruct_volume(stack, ANGLES, "tv", chunk=2, n_workers=2, progress=False, **TV)
    clustered = reconstruct_volume(stack, ANGLES, "tv", scheduler=cluster_client, chunk=2,
                                   progress=False, **TV)
    for res in (threaded, clustered):
        assert isinstance(res, Result) and res.converged
        assert res.x.shape == (N_SLICES, N, N)
        assert np.abs(res.x - ref).max() <= 1e-6
        np.testing.assert_array_equal(res.info["n_iter"], n_iter)
        assert res.info["converged"].all() and (res.info["status"] == "converged").all()
        assert res.n_iter == n_iter.sum() and res.info["n_blocks"] == 3
        # lam="auto" is estimated per slice, from that slice
        assert np.unique(res.info["lam"]).size == N_SLICES


def test_processes_and_synchronous_schedulers(stack, operator):
    ref = np.stack([fbp_reconstruction(operator, s).x for s in stack])
    for scheduler in ("processes", "synchronous"):
        res = reconstruct_volume(stack, ANGLES, "fbp", scheduler=scheduler, n_workers=2 if
                                 scheduler == "processes" else None, chunk=4, progress=False)
        assert np.abs(res.x - ref).max() <= 1e-12
        assert res.info["n_blocks"] == 2 and res.n_iter == 0


def test_wtv_matches_its_loop(stack, operator):
    sub = stack[:2]
    ref = np.stack([pilot_wtv_reconstruction(operator, s, **TV).x for s in sub])
    res = reconstruct_volume(sub, ANGLES, "wtv", chunk=1, n_workers=2, progress=False, **TV)
    assert np.abs(res.x - ref).max() <= 1e-6


def test_each_task_runs_one_numba_thread(stack):
    seen = []

    def recorder(A, y):
        import numba

        seen.append(numba.get_num_threads())
        return fbp_reconstruction(A, y)

    reconstruct_volume(stack, ANGLES, recorder, chunk=1, n_workers=2, progress=False)
    assert seen == [1] * N_SLICES
    seen.clear()
    reconstruct_volume(stack, ANGLES, recorder, chunk=3, n_workers=2, threads_per_task=2,
                       progress=False)
    import numba

    assert seen == [min(2, numba.config.NUMBA_NUM_THREADS)] * N_SLICES


THREADS_METHOD = '''
import numba
from tikhon.solvers import fbp_reconstruction

def threads_seen(A, y):
    """FBP, reporting in info["lam"] numba's threads + 10 x the largest BLAS/OpenMP pool."""
    res = fbp_reconstruction(A, y)
    try:
        from threadpoolctl import threadpool_info
        pools = max([p["num_threads"] for p in threadpool_info()] or [1])
    except ImportError:
        pools = 1
    res.info["lam"] = numba.get_num_threads() + 10 * pools
    return res
'''


def test_cluster_workers_run_one_numba_and_one_blas_thread(stack, tmp_path, cluster_client):
    (tmp_path / "threadsmethod.py").write_text(THREADS_METHOD)
    # a lambda travels by value (a bound sys.path.insert would edit a copy of this list)
    cluster_client.run(lambda folder: sys.path.insert(0, folder), str(tmp_path))
    sys.path.insert(0, str(tmp_path))
    try:
        from threadsmethod import threads_seen

        res = reconstruct_volume(stack, ANGLES, threads_seen, scheduler=cluster_client, chunk=2,
                                 progress=False)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("threadsmethod", None)
        cluster_client.run(lambda folder: sys.path.remove(folder), str(tmp_path))
    np.testing.assert_array_equal(res.info["lam"], 11.0)


def test_inputs_memmap_zarr_dask_and_paths(stack, operator, tmp_path):
    import dask.array as da

    ref = np.stack([fbp_reconstruction(operator, s).x for s in stack])
    np.save(tmp_path / "stack.npy", stack)
    mm = np.load(tmp_path / "stack.npy", mmap_mode="r")
    z = zarr.open_array(str(tmp_path / "stack.zarr"), mode="w", shape=stack.shape,
                        chunks=(1, N_ANGLES, stack.shape[2]), dtype=stack.dtype)
    z[:] = stack
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("sinograms", shape=stack.shape, dtype=stack.dtype)[:] = stack
    group.create_array("angles", shape=(N_ANGLES,), dtype=float)[:] = ANGLES
    inputs = {
        "memmap": mm,
        "zarr": z,
        "dask": da.from_array(stack, chunks=(4, N_ANGLES, stack.shape[2])),
        "npy path": str(tmp_path / "stack.npy"),
        "zarr path": tmp_path / "stack.zarr",
        "zarr group": tmp_path / "group.zarr",
        "float32": stack.astype(np.float32),
    }
    for what, data in inputs.items():
        res = reconstruct_volume(data, ANGLES, "fbp", chunk=2, n_workers=2, progress=False)
        tol = 1e-4 if what == "float32" else 1e-12
        assert np.abs(res.x - ref).max() <= tol * max(1.0, np.abs(ref).max()), what
        assert res.x.dtype == (np.float32 if what == "float32" else np.float64), what


def test_memmap_and_zarr_inputs_on_a_cluster(stack, operator, tmp_path, cluster_client):
    ref = np.stack([fbp_reconstruction(operator, s).x for s in stack])
    np.save(tmp_path / "stack.npy", stack)
    z = zarr.open_array(str(tmp_path / "stack.zarr"), mode="w", shape=stack.shape,
                        chunks=(2, N_ANGLES, stack.shape[2]), dtype=stack.dtype)
    z[:] = stack
    for data in (np.load(tmp_path / "stack.npy", mmap_mode="r"), z):
        res = reconstruct_volume(data, ANGLES, "fbp", scheduler=cluster_client, chunk=2,
                                 out=tmp_path / f"out_{type(data).__name__}.zarr", progress=False)
        assert np.abs(res.x[:] - ref).max() <= 1e-12


def test_zarr_output_and_its_layout(stack, tv_loop, tmp_path):
    ref, n_iter = tv_loop
    out = tmp_path / "vol.zarr"
    res = reconstruct_volume(stack, ANGLES, "tv", out=out, chunk=4, n_workers=2, progress=False,
                             **TV)
    assert isinstance(res.x, zarr.Array) and res.x.chunks == (4, N, N)
    assert np.abs(res.x[:] - ref).max() <= 1e-6
    group = zarr.open_group(str(out), mode="r")
    assert (group["done"][:] > 0).all() and group["done"].shape == (2,)
    np.testing.assert_array_equal(group["n_iter"][:], n_iter)
    codes = group.attrs["tikhon.reconstruct_volume"]["status_codes"]
    assert [codes[c] for c in group["status"][:]] == ["converged"] * N_SLICES
    # a second call finds every block finished and runs nothing
    again = reconstruct_volume(stack, ANGLES, "tv", out=out, progress=False, **TV)
    assert again.info["blocks_run"] == 0 and again.info["blocks_skipped"] == 2
    assert again.info["chunk"] == 4  # the store's, when not given
    assert np.array_equal(again.x[:], res.x[:])
    assert "earlier run" in again.message


SLOW_METHOD = '''
import os, time
from tikhon.solvers import tv_reconstruction

def slow_tv(A, y, **kwargs):
    time.sleep(float(os.environ.get("SLOW_TV_DELAY", "0")))
    return tv_reconstruction(A, y, **kwargs)
'''

RUNNER = '''
import sys
import numpy as np
sys.path.insert(0, {folder!r})
from slowmethod import slow_tv
from tikhon.solvers import reconstruct_volume
if __name__ == "__main__":
    reconstruct_volume(np.load({stack!r}, mmap_mode="r"), np.load({angles!r}), slow_tv,
                       out={out!r}, chunk=1, n_workers=2, progress=False, **{kwargs!r})
    print("finished")
'''


def _done_marks(out):
    try:
        return np.asarray(zarr.open_group(str(out), mode="r")["done"][:])
    except Exception:  # the store is being created, or a mark is being written
        return None


def test_resume_after_the_run_is_killed(stack, tv_loop, tmp_path):
    ref, n_iter = tv_loop
    (tmp_path / "slowmethod.py").write_text(SLOW_METHOD)
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "angles.npy", ANGLES)
    out = tmp_path / "killed.zarr"
    script = tmp_path / "run.py"
    script.write_text(RUNNER.format(folder=str(tmp_path), stack=str(tmp_path / "stack.npy"),
                                    angles=str(tmp_path / "angles.npy"), out=str(out), kwargs=TV))
    env = dict(os.environ, SLOW_TV_DELAY="1.0", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while True:
            marks = _done_marks(out)
            if marks is not None and (marks > 0).sum() >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no block finished in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no cleanup of any kind: as a crashed node
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = _done_marks(out)
    finished = np.flatnonzero(before > 0)
    assert 2 <= finished.size < N_SLICES, before

    sys.path.insert(0, str(tmp_path))
    try:
        from slowmethod import slow_tv

        res = reconstruct_volume(str(tmp_path / "stack.npy"), ANGLES, slow_tv, out=out, chunk=1,
                                 n_workers=2, progress=False, **TV)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowmethod", None)
    after = _done_marks(out)
    assert res.info["blocks_skipped"] == finished.size
    assert res.info["blocks_run"] == N_SLICES - finished.size
    # the finished blocks were not written again: their marks are those of the killed run
    np.testing.assert_array_equal(after[finished], before[finished])
    assert (after > 0).all()
    assert np.abs(res.x[:] - ref).max() <= 1e-6
    np.testing.assert_array_equal(res.info["n_iter"], n_iter)


def test_zarr_output_holds_a_few_blocks_not_the_volume(tmp_path):
    # traced (NumPy) memory at two stack sizes: with out= the peak must not grow with the stack
    n, n_angles = 96, 12
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    sino = simulate_sinogram(random_ellipses(n, rng=0), angles, level=0.01, rng=0)
    peaks = {}
    for n_slices in (4, 24):
        big = np.ascontiguousarray(np.broadcast_to(sino, (n_slices, *sino.shape)))
        np.save(tmp_path / f"s{n_slices}.npy", big)
        del big
        mm = np.load(tmp_path / f"s{n_slices}.npy", mmap_mode="r")
        reconstruct_volume(mm[:2], angles, "fbp", scheduler="synchronous", progress=False)  # warm
        tracemalloc.start()
        reconstruct_volume(mm, angles, "fbp", scheduler="synchronous", out=tmp_path / f"o{n_slices}.zarr",
                           chunk=2, progress=False)
        peaks[n_slices] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    slice_bytes = n * n * 8
    # 20 more slices would be 20 x slice_bytes in memory; a block is 2 slices (the rest of
    # the growth is the bookkeeping of 10 more tasks, a few kB each)
    assert peaks[24] - peaks[4] < 4 * slice_bytes, (peaks, slice_bytes)


def test_unconverged_slices_are_reported(stack):
    with pytest.warns(ConvergenceWarning, match="6 of 6 slices did not converge") as record:
        res = reconstruct_volume(stack, ANGLES, "tv", chunk=3, n_workers=2, progress=False,
                                 max_iter=5)
    assert len([w for w in record if issubclass(w.category, ConvergenceWarning)]) == 1
    assert res.status == "max_iter" and not res.converged
    assert not res.info["converged"].any() and (res.info["status"] == "max_iter").all()
    np.testing.assert_array_equal(res.info["n_iter"], 5)


def test_callable_method(stack, operator):
    def halved(A, y, scale=0.5):
        r = fbp_reconstruction(A, y)
        return Result(x=scale * r.x, converged=True, n_iter=1, message="", status="converged")

    res = reconstruct_volume(stack, ANGLES, halved, chunk=2, progress=False, scale=0.25)
    ref = np.stack([0.25 * fbp_reconstruction(operator, s).x for s in stack])
    assert np.abs(res.x - ref).max() <= 1e-12 and res.n_iter == N_SLICES
    with pytest.raises(TypeError, match="must return a tikhon Result"):
        reconstruct_volume(stack, ANGLES, lambda A, y: A.fbp(y), progress=False)
    with pytest.raises(TypeError, match="does not take these solver_kwargs"):
        reconstruct_volume(stack, ANGLES, halved, progress=False, lam=1.0)


def test_store_of_other_parameters_is_refused(stack, tmp_path):
    out = tmp_path / "s.zarr"
    reconstruct_volume(stack, ANGLES, "fbp", out=out, chunk=2, progress=False)
    cases = [
        (dict(method="tv", max_iter=3), "method"),
        (dict(method="fbp", chunk=3), "chunk"),
        (dict(method="tv", lam=0.1, max_iter=3), "method"),
    ]
    for kwargs, what in cases:
        with pytest.raises(ValueError, match=f"other parameters.*{what}"):
            reconstruct_volume(stack, ANGLES, out=out, progress=False, **kwargs)
    with pytest.raises(ValueError, match="data_sha1"):
        reconstruct_volume(stack[::-1].copy(), ANGLES, "fbp", out=out, progress=False)
    with pytest.raises(ValueError, match="angles_sha1"):
        reconstruct_volume(stack, ANGLES + 0.01, "fbp", out=out, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a store written by reconstruct_volume"):
        reconstruct_volume(stack, ANGLES, "fbp", out=other, progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_bad_input(stack):
    f = reconstruct_volume
    with pytest.raises(ValueError, match="3-D stack.*tv_reconstruction"):
        f(stack[0], ANGLES, progress=False)
    with pytest.raises(ValueError, match="3-D stack"):
        f(stack[None], ANGLES, progress=False)
    with pytest.raises(ValueError, match="empty"):
        f(stack[:0], ANGLES, progress=False)
    with pytest.raises(TypeError, match="sinograms must be float32 or float64"):
        f(stack.astype(np.int32), ANGLES, progress=False)
    with pytest.raises(TypeError, match="sinograms"):
        f(stack.astype(complex), ANGLES, progress=False)
    with pytest.raises(ValueError, match="19 angles given but sinograms has 20"):
        f(stack, ANGLES[:-1], progress=False)
    with pytest.raises(ValueError, match="angles must be 1-D"):
        f(stack, ANGLES[None], progress=False)
    with pytest.raises(TypeError, match="angles must be real"):
        f(stack, ANGLES.astype(complex), progress=False)
    bad = stack.copy()
    bad[4, 3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*slice 4"):
        f(bad, ANGLES, progress=False)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        f(stack, ANGLES, "magic", progress=False)
    with pytest.raises(TypeError, match="method must be"):
        f(stack, ANGLES, 3, progress=False)
    with pytest.raises(TypeError, match="'fbp' does not take these solver_kwargs"):
        f(stack, ANGLES, "fbp", progress=False, lam=1.0)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        f(stack, ANGLES, "fbp", scheduler="gpu", progress=False)
    with pytest.raises(TypeError, match="scheduler must be"):
        f(stack, ANGLES, "fbp", scheduler=2, progress=False)
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        f(stack, ANGLES, "fbp", chunk=0, progress=False)
    with pytest.raises(TypeError, match="out must be a path"):
        f(stack, ANGLES, "fbp", out=3, progress=False)
    with pytest.raises(ValueError, match="image_shape"):
        f(stack, ANGLES, "fbp", image_shape=(32,), progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        f("/nonexistent/stack.npy", ANGLES, progress=False)
    with pytest.raises(TypeError, match="progress must be a bool"):
        f(stack, ANGLES, "fbp", progress="yes")
    # a slice's failure names the slice; nothing is left half-done in memory
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = f(stack[:2], ANGLES, "fbp", chunk=1, progress=False)
    assert res.converged
