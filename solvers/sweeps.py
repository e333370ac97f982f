"""Parameter sweeps on a Dask scheduler, and the task runner that the volume reconstruction shares.

:func:`parameter_sweep` calls a function at each point of a grid, one Dask task
per point, and returns the table of its outputs. The private part of this
module runs a list of tasks on a scheduler named the way both public functions
take it (``None`` / ``"threads"``, ``"processes"``, ``"synchronous"`` or a
``distributed.Client``), with the threads of each task limited and a tqdm
bar over the finished tasks. Dask is imported only when a sweep or a volume
runs.
"""

from __future__ import annotations

import importlib
import itertools
import math
import numbers
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from tikhon._core.checks import check_bool, check_callable, check_positive_int
from tikhon._core.loop import warn_at_caller
from tikhon._core.threads import available_cores, blas_threads, numba_threads

__all__ = ["parameter_sweep"]

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


# ---------------------------------------------------------------------------
# schedulers and the task runner
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """Where the tasks run: a local Dask scheduler or a ``distributed.Client``."""

    kind: str  # one of LOCAL_SCHEDULERS or "distributed"
    client: Any
    n_workers: int  # how many tasks run at once
    exclusive: bool  # each task has its process to itself (process-wide limits are safe)


def _is_client(obj):
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(obj, distributed.Client)


def require_dask(where):
    """Import dask, or raise an ImportError that says how to install it."""
    try:
        import dask
    except ImportError as exc:
        raise ImportError(f"{where} needs Dask: pip install 'tikhon[dask]'") from exc
    return dask


def _numba_thread_safe():
    """Whether numba's threading layer accepts parallel kernels launched from several threads.

    Its ``tbb`` and ``omp`` layers do; ``workqueue``, the fallback when neither
    library is installed, aborts the process on concurrent launches.
    """
    import numba

    layer = numba.config.THREADING_LAYER
    if layer in ("tbb", "omp", "safe", "threadsafe"):
        return True
    if layer == "workqueue":
        return False
    for pool in ("tbbpool", "omppool"):  # what "default" picks, in its order
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}")
        except ImportError:
            continue
        return True
    return False


def plan_scheduler(scheduler, n_workers, where):
    """The :class:`_Plan` for a ``scheduler`` argument (and ``n_workers`` for the local ones)."""
    n_workers = check_positive_int(n_workers, "n_workers", where, allow_none=True)
    if scheduler is None:
        scheduler = "threads"
    if isinstance(scheduler, str):
        if scheduler not in LOCAL_SCHEDULERS:
            raise ValueError(
                f"{where}: scheduler must be one of {', '.join(map(repr, LOCAL_SCHEDULERS))} "
                f"or a distributed.Client, got {scheduler!r} (for a cluster address, pass "
                f"distributed.Client({scheduler!r}))"
            )
        if scheduler == "synchronous":
            return _Plan("synchronous", None, 1, True)
        n = n_workers or available_cores()
        if scheduler == "threads" and n > 1 and not _numba_thread_safe():
            warn_at_caller(f"{where}: numba's threading layer here is 'workqueue', which must not "
                           "run parallel kernels from several threads at once: running one task "
                           "at a time (install tbb, or use scheduler='processes')")
            n = 1
        return _Plan(scheduler, None, n, scheduler == "processes" or n == 1)
    if _is_client(scheduler):
        if n_workers is not None:
            raise ValueError(f"{where}: n_workers sizes the local schedulers; a distributed "
                             "Client runs on the workers its cluster has")
        nthreads = scheduler.nthreads()
        if not nthreads:
            raise ValueError(f"{where}: the distributed Client {scheduler} has no workers")
        return _Plan("distributed", scheduler, int(sum(nthreads.values())),
                     all(int(v) == 1 for v in nthreads.values()))
    raise TypeError(f"{where}: scheduler must be None, one of "
                    f"{', '.join(map(repr, LOCAL_SCHEDULERS))} or a distributed.Client, "
                    f"got {type(scheduler).__name__}")


def task_threads(plan, threads):
    """numba's thread count for one task: ``threads``, else 1 when tasks run side by side.

    ``None`` comes back for a task that runs alone (numba keeps its own setting).
    """
    if threads is not None:
        return threads
    return 1 if plan.n_workers > 1 else None


class limited_threads:
    """Inside a task: ``threads`` numba threads, and as many BLAS threads when ``exclusive``.

    BLAS pools are per process: a task shares its process with others in the
    threaded scheduler (the caller limits them around the whole run there).
    """

    def __init__(self, threads, exclusive):
        self.threads, self.exclusive = threads, exclusive
        self.numba = numba_threads(threads)
        self.blas = None

    def __enter__(self):
        self.numba.__enter__()
        # after numba's: its first use loads the OpenMP runtime, which a limit set
        # before would not see (threadpoolctl applies a limit when it is created)
        self.blas = blas_threads(self.threads if self.exclusive else None)
        self.blas.__enter__()
        return self

    def __exit__(self, *exc):
        self.blas.__exit__(*exc)
        self.numba.__exit__(*exc)


def run_tasks(plan, calls, on_result, *, progress=False, units=None, initial=0, desc=None):
    """Run ``calls`` (``(func, args)`` pairs) as Dask tasks; ``on_result(i, value)`` for each.

    ``on_result`` runs in the calling process, as results arrive (at the end
    for the local schedulers), so that nothing but the tasks' return values
    crosses back. ``units[i]`` is how much task ``i`` advances the progress bar
    (default 1), which starts at ``initial``. Arguments that are Dask
    collections (a slice of a Dask array) are computed as the task's inputs.
    The first exception of a task is raised here (the remaining tasks of a
    distributed run are cancelled).
    """
    dask = require_dask(desc or "run_tasks")
    units = [1] * len(calls) if units is None else list(units)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=initial + sum(units), initial=initial, desc=desc, leave=False)
    run_id = uuid.uuid4().hex[:12]
    keys = [f"tikhon-{run_id}-{i}" for i in range(len(calls))]
    tasks = [dask.delayed(func, pure=False)(*args, dask_key_name=key)
             for key, (func, args) in zip(keys, calls)]
    try:
        if plan.kind == "distributed":
            _run_distributed(plan.client, tasks, keys, on_result, bar, units)
        else:
            _run_local(dask, plan, tasks, keys, on_result, bar, units)
    finally:
        if bar is not None:
            bar.close()


def _run_local(dask, plan, tasks, keys, on_result, bar, units):
    from dask.callbacks import Callback

    position = {key: i for i, key in enumerate(keys)}

    class Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            i = position.get(key)
            if i is not None and bar is not None:
                bar.update(units[i])

    # the threaded scheduler's tasks share this process's BLAS pool: limit it once
    blas = blas_threads(1 if plan.kind == "threads" and plan.n_workers > 1 else None)
    with Bar(), blas:
        values = dask.compute(*tasks, scheduler=plan.kind, num_workers=plan.n_workers)
    for i, value in enumerate(values):
        on_result(i, value)


def _run_distributed(client, tasks, keys, on_result, bar, units):
    from distributed import as_completed

    futures = client.compute(tasks)
    position = {f.key: i for i, f in enumerate(futures)}
    try:
        for future in as_completed(futures):
            i = position[future.key]
            on_result(i, future.result())
            del future
            if bar is not None:
                bar.update(units[i])
    except BaseException:
        client.cancel(futures)
        raise


# ---------------------------------------------------------------------------
# parameter sweeps
# ---------------------------------------------------------------------------
def _grid_points(grid, where):
    """The list of points (dicts) of ``grid``, in the documented order."""
    if isinstance(grid, dict):
        if not grid:
            raise ValueError(f"{where}: grid is empty")
        names = list(grid)
        values = []
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"{where}: grid keys must be parameter names (str), got {name!r}")
            v = grid[name]
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                raise TypeError(f"{where}: grid[{name!r}] must be a sequence of values, got "
                                f"{type(v).__name__} (wrap a single value in a list)")
            v = list(v)
            if not v:
                raise ValueError(f"{where}: grid[{name!r}] has no values")
            values.append(v)
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, (list, tuple)):
        if not grid:
            raise ValueError(f"{where}: grid is empty")
        for i, point in enumerate(grid):
            if not isinstance(point, dict):
                raise TypeError(f"{where}: grid[{i}] must be a dict of parameters, got "
                                f"{type(point).__name__}")
            for name in point:
                if not isinstance(name, str):
                    raise TypeError(f"{where}: grid[{i}] has a key {name!r} that is not a str")
        return [dict(p) for p in grid]
    raise TypeError(f"{where}: grid must be a dict of name -> values or a list of dicts, "
                    f"got {type(grid).__name__}")


def _is_scalar(value):
    if isinstance(value, np.ndarray):
        return value.ndim == 0
    return isinstance(value, (numbers.Number, str, bool, np.generic)) or value is None


def _scalar(value):
    return value.item() if isinstance(value, (np.ndarray, np.generic)) else value


def _summarize(value, fn_name):
    """The row of one output: a dict of scalars, a Result's summary, or ``{"value": scalar}``."""
    from tikhon._core.result import Result

    if isinstance(value, Result):
        row = {"converged": bool(value.converged), "status": value.status,
               "n_iter": int(value.n_iter), "elapsed": float(value.elapsed)}
        for key, v in value.info.items():
            if _is_scalar(v) and key not in row:
                row[key] = _scalar(v)
        return row
    if isinstance(value, dict):
        row = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"parameter_sweep: fn {fn_name} returned a dict with a key "
                                f"{key!r} that is not a str")
            if not _is_scalar(v):
                raise TypeError(f"parameter_sweep: fn {fn_name} returned {type(v).__name__} for "
                                f"{key!r}; each output must be a scalar (reduce arrays to numbers "
                                "inside fn)")
            row[key] = _scalar(v)
        return row
    if _is_scalar(value):
        return {"value": _scalar(value)}
    raise TypeError(f"parameter_sweep: fn {fn_name} must return a dict of scalars, a Result or "
                    f"a scalar, got {type(value).__name__}")


def _sweep_point(fn, point, threads, exclusive):
    """One task: ``fn(**point)`` summarized into a row (a Result's arrays never leave the worker)."""
    with limited_threads(threads, exclusive):
        value = fn(**point)
    return _summarize(value, getattr(fn, "__qualname__", repr(fn)))


def _column(values):
    """A column as a NumPy array: numbers and bools keep their type, the rest is object."""
    if any(v is None for v in values):
        if all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in values):
            return np.array([math.nan if v is None else v for v in values], dtype=float)
        return np.array(values, dtype=object)
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float)
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=str)
    return np.array(values, dtype=object)


def _same_value(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and other objects without one truth value
        return False


def _has_pandas():
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def parameter_sweep(fn, grid, *, scheduler=None, as_frame=None, n_workers=None,
                    threads_per_task=None, progress=False):
    """Evaluate ``fn`` at every point of a parameter grid, one Dask task per point.

    Parameters
    ----------
    fn : callable
        ``fn(**point)`` returns a dict of scalars (one column each), a
        :class:`~tikhon.solvers.Result` (summarized in the task as the columns
        ``converged``, ``status``, ``n_iter``, ``elapsed`` and the scalar
        entries of ``info``, e.g. ``lam`` or ``objective``) or a scalar (the
        column ``value``). Arrays are not collected: reduce them to numbers
        (an error, a PSNR) inside ``fn``. For ``"processes"`` and a
        distributed Client, ``fn`` must be importable or picklable
        (cloudpickle) on the workers.
    grid : dict or list of dict
        A dict ``name -> values`` for the Cartesian product of the values
        (``itertools.product`` in the dict's order: the last name varies
        fastest), or a list of dicts, one per point, taken in order.
    scheduler : None, str or distributed.Client
        ``None`` or ``"threads"`` (Dask's threaded scheduler, the default),
        ``"processes"``, ``"synchronous"`` (one task after the other, in this
        thread), or a ``distributed.Client`` (any cluster).
    as_frame : bool, optional
        The table's type: ``True`` a ``pandas.DataFrame``, ``False`` a
        dict of NumPy arrays, ``None`` (default) a DataFrame when pandas is
        installed, else the dict.
    n_workers : int, optional
        Threads or processes of the local schedulers (default: the cores
        this process may use).
    threads_per_task : int, optional
        numba threads of each task (default 1 when tasks run side by side,
        else numba's own setting).
    progress : bool
        Show a tqdm bar over the finished points.

    Returns
    -------
    pandas.DataFrame or dict of str to numpy.ndarray
        One row per point, in the grid's order, whatever order the tasks
        finished in: first a column per parameter, then a column per
        output. A column that some points lack holds NaN (numbers) or None.
        An output named like a parameter (a Result's ``info["lam"]`` when
        ``lam`` is swept) is that parameter's column when the values agree.

    Raises
    ------
    TypeError
        If ``fn`` is not callable, ``grid`` is not a dict or a list of dicts,
        a grid entry is not a sequence, or ``fn`` returns something else
        than a dict of scalars, a Result or a scalar.
    ValueError
        If the grid is empty or the scheduler is unknown.
    ImportError
        If Dask is not installed, or ``as_frame=True`` without pandas.

    Examples
    --------
    >>> from tikhon.solvers import parameter_sweep
    >>> table = parameter_sweep(lambda a, b: {"sum": a + b}, {"a": [1, 2], "b": [10, 20]},
    ...                         scheduler="synchronous", as_frame=False)
    >>> table["a"].tolist(), table["b"].tolist(), table["sum"].tolist()
    ([1, 1, 2, 2], [10, 20, 10, 20], [11, 21, 12, 22])
    """
    where = "parameter_sweep"
    check_callable(fn, "fn", where, allow_none=False)
    points = _grid_points(grid, where)
    if as_frame is not None:
        as_frame = check_bool(as_frame, "as_frame", where)
    if as_frame and not _has_pandas():
        raise ImportError(f"{where}: as_frame=True needs pandas: pip install pandas")
    progress = check_bool(progress, "progress", where)
    threads_per_task = check_positive_int(threads_per_task, "threads_per_task", where, allow_none=True)
    plan = plan_scheduler(scheduler, n_workers, where)
    require_dask(where)
    threads = task_threads(plan, threads_per_task)
    rows = [None] * len(points)

    def collect(i, row):
        rows[i] = row

    run_tasks(plan, [(_sweep_point, (fn, p, threads, plan.exclusive)) for p in points], collect,
              progress=progress, desc=where)
    names = list(dict.fromkeys(name for p in points for name in p))
    for p, row in zip(points, rows):
        for name in names:
            # a Result's info repeats its parameters (lam): the same value is one column
            if name in row and not _same_value(row.pop(name), p.get(name)):
                raise ValueError(f"{where}: fn returned an output {name!r} that differs from "
                                 f"the grid parameter of that name; rename the output")
    outputs = list(dict.fromkeys(k for row in rows for k in row))
    table = {name: _column([p.get(name) for p in points]) for name in names}
    for k in outputs:
        table[k] = _column([row.get(k) for row in rows])
    if as_frame is None:
        as_frame = _has_pandas()
    if as_frame:
        import pandas as pd

        return pd.DataFrame(table)
    return table
