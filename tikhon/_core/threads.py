"""Thread counts of numba, OpenMP and BLAS for a block of code or a worker process.

On a few shared cores the threads of a small parallel region mostly wait on
each other (and a parallel region costs a wake-up of every thread), so callers
run small problems on fewer threads; the setting is restored on exit. numba
is imported only when a limit is set.

When tasks run side by side (Dask threads or worker processes), each task
gets its own few threads: numba's count is per thread (``numba_threads`` in
the task itself), the BLAS and OpenMP pools are per process (``blas_threads``
around a whole run, or once per worker process). Without these limits two
tasks on two cores start four numba and four BLAS threads that fight for
the cores.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["numba_threads", "blas_threads", "available_cores", "thread_limit_env"]

#: Environment variables that cap the thread pools of a process started with
#: them (numba, OpenMP, OpenBLAS, MKL, Apple Accelerate, NumExpr).
THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class numba_threads:
    """Context manager: at most ``n`` numba threads inside (``None``: leave the setting alone).

    numba's setting belongs to the calling thread, so a task of a thread pool
    sets its own.
    """

    def __init__(self, n):
        self.n, self.prev = n, None

    def __enter__(self):
        if self.n is not None:
            import numba

            self.prev = numba.get_num_threads()
            numba.set_num_threads(max(1, min(int(self.n), self.prev)))
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            import numba

            numba.set_num_threads(self.prev)


def blas_threads(n):
    """Context manager: at most ``n`` BLAS / OpenMP threads in this process (threadpoolctl).

    The limit is process-wide: use it around a whole run, not inside tasks
    that run side by side in one process. A no-op when ``n`` is None or
    threadpoolctl is not installed (tikhon's hot paths use no BLAS: the limit
    matters for user code and SciPy inside the tasks).
    """
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=max(1, int(n)))


def available_cores():
    """The number of cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def thread_limit_env(n):
    """Environment variables that cap every thread pool of a new worker process at ``n``."""
    return {name: str(max(1, int(n))) for name in THREAD_ENV_VARS}
