"""asv suites for reconstruct_volume: memory with a zarr output, and throughput per scheduler.

Sizes: ``"small"`` (16 slices of 64 x 64, 30 angles; the default of a plain
``asv run``) and ``"acceptance"`` (issue 17: 64 slices of 128 x 128, 60 angles;
skipped under ``ASV_SKIP_SLOW``). TV runs a fixed number of iterations
(``tol=0``), so every configuration does the same work and only the
scheduling differs.

Run as a script, this file prints the whole comparison in one run (the
ratios are what to read; on a loaded machine they are noisy)::

    python tests/benchmarks/bench_volumes.py [--size acceptance] [--max-iter 100] [--configs ...]

(``--configs ""`` measures the memory only.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
import warnings

import numpy as np

SIZES = {"small": (16, 64, 30), "acceptance": (64, 128, 60)}  # slices, side, angles
CHUNK = 4
MAX_ITER = {"small": 100, "acceptance": 100}


def _skip_slow(is_slow):
    if is_slow and os.environ.get("ASV_SKIP_SLOW"):
        raise NotImplementedError("slow benchmark skipped (ASV_SKIP_SLOW)")


def make_stack(size):
    """A synthetic scan: random-ellipse slices (seeded), their noisy sinograms, and the angles."""
    from tikhon.data import random_ellipses, simulate_sinogram

    n_slices, side, n_angles = SIZES[size]
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    stack = np.stack([simulate_sinogram(random_ellipses(side, rng=i), angles, level=0.01,
                                        rng=1000 + i) for i in range(n_slices)])
    return stack, angles


def start_cluster(n_workers):
    """A LocalCluster of ``n_workers`` processes, one thread each, every thread pool capped at 1."""
    import dask
    from distributed import Client, LocalCluster

    from tikhon._core.threads import thread_limit_env

    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns
    # off glibc's adaptive mmap threshold: every freed 128^2 temporary goes back to the
    # OS and the next one page-faults in again (measured: 17.1 s -> 13.1 s for 32 slices
    # on one worker without it, the threaded scheduler's speed). A cluster for tikhon
    # should be started without it (docs: user guide, scale-out).
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=40,
                               env=thread_limit_env(1))
    return cluster, Client(cluster)


def solve(stack, angles, max_iter, **kwargs):
    from tikhon.solvers import ConvergenceWarning, reconstruct_volume

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return reconstruct_volume(stack, angles, "tv", tol=0.0, max_iter=max_iter, lam=0.05,
                                  chunk=CHUNK, progress=False, **kwargs)


def configure(config):
    """``(reconstruct_volume keywords, close)`` for a configuration name of the throughput table.

    ``threads-N``: Dask's threaded scheduler, N threads, one numba thread per
    task; ``processes-N``: a LocalCluster of N one-thread worker processes;
    ``numba-2-threads``: one process, the blocks in turn, numba's kernels on
    two threads (what a user gets without Dask).
    """
    if config.startswith("numba-"):
        return {"scheduler": "synchronous", "threads_per_task": int(config.split("-")[1])}, _nothing
    kind, n = config.rsplit("-", 1)
    if kind == "processes":
        cluster, client = start_cluster(int(n))

        def close():
            client.close()
            cluster.close()

        return {"scheduler": client}, close
    if kind == "threads":
        return {"scheduler": "threads", "n_workers": int(n), "threads_per_task": 1}, _nothing
    raise ValueError(f"unknown configuration {config!r}")


def _nothing():
    pass


class VolumeMemorySuite:
    """Peak memory of a volume written into a zarr store, against the same volume in memory."""

    params = [["small", "acceptance"]]
    param_names = ["size"]
    timeout = 1200

    def setup(self, size):
        _skip_slow(size == "acceptance")
        self.dir = tempfile.mkdtemp(prefix="bench_volumes_")
        stack, self.angles = make_stack(size)
        np.save(os.path.join(self.dir, "stack.npy"), stack)
        del stack
        self.max_iter = 20  # memory does not depend on the iteration count
        self.count = 0

    def teardown(self, size):
        shutil.rmtree(self.dir, ignore_errors=True)

    def _stack(self):
        return np.load(os.path.join(self.dir, "stack.npy"), mmap_mode="r")

    def peakmem_zarr_out(self, size):
        self.count += 1
        solve(self._stack(), self.angles, self.max_iter, n_workers=2,
              out=os.path.join(self.dir, f"out{self.count}.zarr"))

    def peakmem_in_memory(self, size):
        solve(self._stack(), self.angles, self.max_iter, n_workers=2)


class VolumeThroughputSuite:
    """Seconds for the stack on each scheduler (fixed iterations); slices/s = n_slices / time."""

    params = [["small", "acceptance"],
              ["threads-1", "threads-2", "processes-1", "processes-2", "numba-2-threads"]]
    param_names = ["size", "config"]
    timeout = 1800
    number = 1
    repeat = 1

    def setup(self, size, config):
        _skip_slow(size == "acceptance")
        self.stack, self.angles = make_stack(size)
        self.max_iter = MAX_ITER[size]
        self.kwargs, self.close = configure(config)
        # warm-up: every worker loads numba's cache and builds its Radon (and its norm)
        solve(self.stack[:4 * CHUNK], self.angles, 5, **self.kwargs)

    def teardown(self, size, config):
        self.close()

    def time_volume(self, size, config):
        solve(self.stack, self.angles, self.max_iter, **self.kwargs)


# ---------------------------------------------------------------------------
# the script: the whole table in one run
# ---------------------------------------------------------------------------
def _throughput(stack, angles, max_iter, configs):
    rows = []
    for config in configs:
        kwargs, close = configure(config)
        try:
            # warm-up: every worker loads numba's cache and builds its Radon (and its norm)
            solve(stack[:4 * CHUNK], angles, 5, **kwargs)
            t0 = time.perf_counter()
            res = solve(stack, angles, max_iter, **kwargs)
            seconds = time.perf_counter() - t0
        finally:
            close()
        rows.append((config, seconds, stack.shape[0] / seconds, res))
    return rows


def _traced_peak(stack, angles, max_iter, tmp):
    np.save(os.path.join(tmp, "stack.npy"), stack)
    mm = np.load(os.path.join(tmp, "stack.npy"), mmap_mode="r")
    # warm-up outside the trace: the first zarr write imports its codecs, the
    # first threaded run starts the pools
    solve(mm[:2 * CHUNK], angles, 2, n_workers=2, out=os.path.join(tmp, "warm.zarr"))
    quarter = mm[: max(2 * CHUNK, mm.shape[0] // 4)]
    runs = {"zarr out": (mm, {"out": os.path.join(tmp, "out.zarr")}),
            "zarr out, quarter stack": (quarter, {"out": os.path.join(tmp, "quarter.zarr")}),
            "in memory": (mm, {})}
    peaks = {}
    for label, (data, kwargs) in runs.items():
        tracemalloc.start()
        solve(data, angles, max_iter, n_workers=2, **kwargs)
        peaks[label] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peaks, quarter.shape[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="acceptance")
    parser.add_argument("--max-iter", type=int, default=None)
    parser.add_argument("--configs", default="threads-1,threads-2,processes-1,processes-2,"
                        "numba-2-threads")
    args = parser.parse_args(argv)
    max_iter = args.max_iter or MAX_ITER[args.size]
    stack, angles = make_stack(args.size)
    n_slices, side, n_angles = SIZES[args.size]
    print(f"reconstruct_volume, tv, {n_slices} slices of {side}x{side}, {n_angles} angles, "
          f"{max_iter} iterations per slice, blocks of {CHUNK}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    configs = [c for c in args.configs.split(",") if c]
    rows = _throughput(stack, angles, max_iter, configs)
    base = {kind: s for config, s, _, _ in rows for kind in ("threads", "processes")
            if config == f"{kind}-1"}
    print(f"{'config':<18}{'seconds':>9}{'slices/s':>10}{'vs 1 worker':>13}")
    for config, seconds, rate, _ in rows:
        kind = config.split("-")[0]
        ratio = f"{base[kind] / seconds:.2f}x" if kind in base else ""
        print(f"{config:<18}{seconds:>9.2f}{rate:>10.3f}{ratio:>13}")
    if rows:
        ref = rows[0][3].x
        worst = max(float(np.abs(r.x - ref).max()) for *_, r in rows)
        print(f"max |difference| between the configurations' volumes: {worst:.2e}")
    tmp = tempfile.mkdtemp(prefix="bench_volumes_")
    try:
        peaks, n_quarter = _traced_peak(stack, angles, 20, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    block = CHUNK * (side * side + n_angles * stack.shape[2]) * 8
    volume = n_slices * side * side * 8
    growth = peaks["zarr out"] - peaks["zarr out, quarter stack"]
    print("traced peak memory (tracemalloc, threads scheduler, 2 threads; the memory-mapped "
          "input is not traced):")
    for label, peak in peaks.items():
        print(f"  {label:<26}{peak / 1e6:>8.2f} MB")
    print(f"  one block (sinograms + images) {block / 1e6:.2f} MB, the volume {volume / 1e6:.2f} MB; "
          f"zarr out grows by {growth / 1e6:.2f} MB ({growth / block:.2f} blocks) from "
          f"{n_quarter} to {n_slices} slices: the rest is a constant (operators, solver "
          "workspace of the slices in flight, zarr)")


if __name__ == "__main__":
    main()
