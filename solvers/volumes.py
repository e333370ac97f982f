"""Reconstruct a 3-D stack of parallel-beam sinograms slice-block by slice-block on Dask.

:func:`reconstruct_volume` maps one of the 2-D recipes of
:mod:`tikhon.solvers.tomography` over the slices of a stack (slices along the
first axis), one Dask task per block of slices, and writes the result either
into memory or block by block into a zarr store that a later call resumes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import mmap
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tikhon._core.checks import check_bool, check_float_dtype, check_positive_int
from tikhon._core.loop import ConvergenceWarning, Outcome, warn_unconverged
from tikhon._core.result import STATUSES

from .sweeps import limited_threads, plan_scheduler, require_dask, run_tasks, task_threads

__all__ = ["reconstruct_volume"]

#: The version of the store layout; a store of another layout is refused.
STORE_FORMAT = 1
_ATTR = "tikhon.reconstruct_volume"
_STORE_ARRAYS = ("x", "converged", "n_iter", "status", "lam", "done")


def _tv(A, y, **kwargs):
    from tikhon.solvers.tomography import tv_reconstruction

    return tv_reconstruction(A, y, **kwargs)


def _wtv(A, y, **kwargs):
    from tikhon.solvers.tomography import pilot_wtv_reconstruction

    return pilot_wtv_reconstruction(A, y, **kwargs)


def _fbp(A, y, **kwargs):
    from tikhon.solvers.tomography import fbp_reconstruction

    return fbp_reconstruction(A, y, **kwargs)


#: The built-in methods: name -> the 2-D recipe ``recipe(A, y, **solver_kwargs)``.
METHODS = {"tv": _tv, "wtv": _wtv, "fbp": _fbp}
_SIGNATURES = {"tv": "tv_reconstruction", "wtv": "pilot_wtv_reconstruction", "fbp": "fbp_reconstruction"}


def image_side(n_det):
    """The image side whose default detector count (scikit-image's ``circle=False``) is ``n_det``.

    ``ceil(sqrt(2) n)`` grows by more than one per side, so a count has at most
    one side; a count one above a side's (odd counts of tikhon 0.1) maps to that
    side; otherwise the largest side whose diagonal the detector covers.
    """
    from tikhon.operators.radon import default_n_det

    guess = math.floor(n_det / math.sqrt(2))
    for extra in (0, 1):
        for n in range(max(guess - 2, 1), guess + 3):
            if default_n_det((n, n)) + extra == n_det:
                return n
    return max(guess, 1)


# ---------------------------------------------------------------------------
# inputs: what a task reads its block from
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _NpyFile:
    """A memory-mapped ``.npy`` (or raw file) that each task maps again (nothing is pickled but the name)."""

    filename: str
    offset: int
    shape: tuple
    dtype: str
    fortran: bool

    def read(self, i0, i1):
        m = np.memmap(self.filename, dtype=self.dtype, mode="r", offset=self.offset,
                      shape=self.shape, order="F" if self.fortran else "C")
        return np.array(m[i0:i1])


@dataclass(frozen=True)
class _ZarrArray:
    """A zarr array (it pickles as its store's location and reads chunks where the task runs)."""

    array: Any

    def read(self, i0, i1):
        return np.asarray(self.array[i0:i1])


class _Source:
    """The stack, its shape and dtype, and the argument that hands a task its block."""

    def __init__(self, data, kind):
        self.data, self.kind = data, kind
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)

    def block(self, i0, i1):
        if self.kind in ("file", "zarr"):
            return (self.reader, None)
        # an ndarray view (no copy in the threaded scheduler) or a Dask slice
        # (computed as the task's input)
        return (None, self.data[i0:i1])

    def slice(self, i):
        if self.kind in ("file", "zarr"):
            return self.reader.read(i, i + 1)[0]
        return np.asarray(self.data[i])


def _is_dask_array(obj):
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(obj, da.Array)


def _is_zarr_array(obj):
    zarr = sys.modules.get("zarr")
    return zarr is not None and isinstance(obj, zarr.Array)


def _open_path(path, where):
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{where}: sinograms {path} does not exist")
    if path.suffix.lower() == ".npy" and path.is_file():
        return np.load(path, mmap_mode="r", allow_pickle=False)
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ValueError(f"{where}: sinograms {path} is neither a .npy file nor a zarr "
                         f"array ({exc})") from exc
    if isinstance(node, zarr.Array):
        return node
    arrays = dict(node.arrays())
    if "sinograms" in arrays:
        return arrays["sinograms"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise ValueError(f"{where}: the zarr group {path} holds {sorted(arrays) or 'no arrays'}; "
                     "name the stack 'sinograms' or pass the array itself")


def _source(sinograms, where):
    if isinstance(sinograms, (str, os.PathLike)):
        sinograms = _open_path(sinograms, where)
    if hasattr(sinograms, "__torch_function__") or type(sinograms).__module__.startswith("torch"):
        raise TypeError(f"{where}: sinograms must be a NumPy, memory-mapped, Dask or zarr array; "
                        "the volume recipes run on NumPy (pass tensor.cpu().numpy())")
    if _is_dask_array(sinograms):
        src = _Source(sinograms, "dask")
    elif _is_zarr_array(sinograms):
        src = _Source(sinograms, "zarr")
        src.reader = _ZarrArray(sinograms)
    elif isinstance(sinograms, np.memmap) and isinstance(sinograms.base, mmap.mmap) \
            and sinograms.filename is not None and (sinograms.flags.c_contiguous
                                                    or sinograms.flags.f_contiguous):
        src = _Source(sinograms, "file")
        src.reader = _NpyFile(str(sinograms.filename), int(sinograms.offset), src.shape,
                              src.dtype.str, not sinograms.flags.c_contiguous)
    else:
        arr = np.asarray(sinograms)
        if arr.dtype == object:
            raise TypeError(f"{where}: sinograms must be a real float32/float64 array, got "
                            "dtype object")
        src = _Source(arr, "numpy")
    if len(src.shape) != 3:
        raise ValueError(f"{where}: sinograms must be a 3-D stack (n_slices, n_angles, n_det), "
                         f"got shape {src.shape}" + (" (one 2-D sinogram: use tv_reconstruction "
                                                     "and the other 2-D recipes)"
                                                     if len(src.shape) == 2 else ""))
    if min(src.shape) < 1:
        raise ValueError(f"{where}: sinograms is empty (shape {src.shape})")
    try:
        check_float_dtype(src.dtype, "sinograms", where)
    except TypeError as exc:
        raise TypeError(f"{exc} (convert with .astype(np.float64))") from None
    if src.kind == "numpy" and not np.isfinite(src.data).all():
        bad = int(np.flatnonzero(~np.isfinite(src.data).reshape(src.shape[0], -1).all(axis=1))[0])
        raise ValueError(f"{where}: sinograms contains NaN or inf (first in slice {bad})")
    return src


def _angles(angles, n_angles, where):
    if hasattr(angles, "__torch_function__"):
        raise TypeError(f"{where}: angles must be a NumPy array or a sequence of numbers")
    arr = np.asarray(angles)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise TypeError(f"{where}: angles must be real numbers (radians), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{where}: angles must be 1-D, got shape {arr.shape}")
    if arr.size != n_angles:
        raise ValueError(f"{where}: {arr.size} angles given but sinograms has {n_angles} angles "
                         "(axis 1 of (n_slices, n_angles, n_det))")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: angles contains NaN or inf")
    return arr


def _method(method, solver_kwargs, where):
    """``(name, recipe)``; the keyword arguments are checked against the recipe's signature."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"{where}: unknown method {method!r}; choose one of "
                             f"{', '.join(map(repr, METHODS))} or pass a callable "
                             "method(A, sinogram, **solver_kwargs) -> Result")
        name, recipe = method, METHODS[method]
        from tikhon.solvers import tomography

        target = getattr(tomography, _SIGNATURES[method])
    elif callable(method):
        name = f"{getattr(method, '__module__', '?')}.{getattr(method, '__qualname__', repr(method))}"
        recipe = target = method
    else:
        raise TypeError(f"{where}: method must be 'tv', 'wtv', 'fbp' or a callable, got "
                        f"{type(method).__name__}")
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: let the call tell
        return name, recipe
    try:
        sig.bind(None, None, **solver_kwargs)
    except TypeError as exc:
        raise TypeError(f"{where}: method {name!r} does not take these solver_kwargs "
                        f"({exc}); its signature is {sig}") from None
    return name, recipe


# ---------------------------------------------------------------------------
# the zarr store
# ---------------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, np.ndarray):
        return {"array_sha1": hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest(),
                "shape": list(value.shape), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def _digest(*arrays):
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _store_params(src, angles, image_shape, name, solver_kwargs, chunk):
    """What a store is made of: a re-run must give the same to resume it."""
    return {
        "format": STORE_FORMAT,
        "shape": list(src.shape),
        "dtype": src.dtype.str,
        "image_shape": list(image_shape),
        "angles_sha1": _digest(angles),
        # a cheap check that the data are the same stack (not a hash of all of it)
        "data_sha1": _digest(src.slice(0), src.slice(src.shape[0] - 1)),
        "method": name,
        "solver_kwargs": json.loads(json.dumps(solver_kwargs, sort_keys=True, default=_jsonable)),
        "chunk": chunk,
    }


def _stored_params(path):
    """The parameters of an existing store at ``path`` (None: nothing there)."""
    import zarr

    if not path.exists():
        return None
    try:
        group = zarr.open_group(str(path), mode="r")
        params = group.attrs.get(_ATTR)
    except Exception:  # zarr's error differs with what is there (a file, a plain folder, an array)
        params = None
    if params is None:
        if path.is_dir() and not any(path.iterdir()):
            return None  # an empty folder: a new store
        raise ValueError(f"reconstruct_volume: out {path} exists and is not a store written by "
                         "reconstruct_volume; choose another path (nothing was overwritten)")
    return params


def _check_store(path, stored, params):
    differ = [k for k in params if stored.get(k) != params[k]]
    if differ:
        details = "; ".join(f"{k}: store {stored.get(k)!r}, now {params[k]!r}" for k in differ)
        raise ValueError(f"reconstruct_volume: out {path} was written with other parameters "
                         f"({details}); resume with the same input, angles, method, "
                         "solver_kwargs and chunk, or choose another out")


def _create_store(path, params, src, image_shape, n_blocks):
    import zarr

    n, chunk = src.shape[0], params["chunk"]
    group = zarr.open_group(str(path), mode="w")
    group.create("x", shape=(n, *image_shape), chunks=(chunk, *image_shape),
                       dtype=src.dtype, fill_value=np.nan)
    group.create("converged", shape=(n,), chunks=(chunk,), dtype=bool, fill_value=False)
    group.create("n_iter", shape=(n,), chunks=(chunk,), dtype=np.int64, fill_value=0)
    group.create("status", shape=(n,), chunks=(chunk,), dtype=np.int8, fill_value=-1)
    group.create("lam", shape=(n,), chunks=(chunk,), dtype=np.float64, fill_value=np.nan)
    # one chunk per block: a block's mark is its own file, written after its data
    group.create("done", shape=(n_blocks,), chunks=(1,), dtype=np.float64, fill_value=0.0)
    # the parameters last: a store without them is an interrupted creation
    group.attrs.update({_ATTR: {**params, "status_codes": list(STATUSES)}})
    return group


# ---------------------------------------------------------------------------
# one task: a block of slices
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    """What every block task needs (small: it travels with each task)."""

    recipe: Any
    name: str
    solver_kwargs: dict
    angles: np.ndarray
    image_shape: tuple
    n_det: int
    n_angles: int
    dtype: str
    threads: Any
    exclusive: bool
    out: Any
    status_codes: tuple


@functools.lru_cache(maxsize=4)
def _operator(image_shape, angles, n_det):
    """The slices' Radon operator, one per process: its norm (a power iteration) is computed once.

    The operator allocates its work arrays per call, so the tasks of a thread
    pool share it safely.
    """
    from tikhon.operators import Radon

    return Radon(image_shape, np.frombuffer(angles, dtype=np.float64), n_det=n_det)


def _solve_block(job, part, block, i0, i1):
    """Reconstruct slices ``i0:i1``; write them (and then the block's mark) to ``job.out`` if set."""
    reader, data = part
    y = reader.read(i0, i1) if reader is not None else np.asarray(data)
    m = i1 - i0
    if y.shape != (m, job.n_angles, job.n_det):
        raise ValueError(f"reconstruct_volume: block {block} read shape {y.shape}, expected "
                         f"{(m, job.n_angles, job.n_det)}")
    finite = np.isfinite(y).reshape(m, -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"reconstruct_volume: sinograms contains NaN or inf (slice "
                         f"{i0 + int(np.flatnonzero(~finite)[0])})")
    x = np.empty((m, *job.image_shape), dtype=job.dtype)
    converged = np.zeros(m, dtype=bool)
    n_iter = np.zeros(m, dtype=np.int64)
    status = np.empty(m, dtype=object)
    lam = np.full(m, np.nan)
    # warnings filters are process-wide: a task alone in its process may set them;
    # the threaded scheduler's caller silences them around the whole run
    quiet = warnings.catch_warnings() if job.exclusive else contextlib.nullcontext()
    with limited_threads(job.threads, job.exclusive), quiet:
        if job.exclusive:
            warnings.simplefilter("ignore", ConvergenceWarning)
        A = _operator(job.image_shape, job.angles.tobytes(), job.n_det)
        for s in range(m):
            res = job.recipe(A, np.ascontiguousarray(y[s]), **job.solver_kwargs)
            for field in ("x", "converged", "n_iter", "status"):
                if not hasattr(res, field):
                    raise TypeError(f"reconstruct_volume: method {job.name} must return a "
                                    f"tikhon Result, got {type(res).__name__}")
            img = np.asarray(res.x)
            if img.shape != job.image_shape:
                raise ValueError(f"reconstruct_volume: method {job.name} returned an image of "
                                 f"shape {img.shape} for slice {i0 + s}, expected {job.image_shape}")
            x[s] = img
            converged[s], n_iter[s], status[s] = bool(res.converged), int(res.n_iter), res.status
            value = getattr(res, "info", {}).get("lam")
            if isinstance(value, (int, float, np.number)):
                lam[s] = float(value)
    codes = np.array([_status_code(st, job) for st in status], dtype=np.int8)
    stats = {"converged": converged, "n_iter": n_iter, "status": codes, "lam": lam}
    if job.out is None:
        return {"x": x, **stats}
    import zarr

    group = zarr.open_group(job.out, mode="r+")
    group["x"][i0:i1] = x
    for key, value in stats.items():
        group[key][i0:i1] = value
    # after the data: a mark means the block's slices are all on disk
    group["done"][block] = time.time()
    return stats


def _status_code(status, job):
    if status not in job.status_codes:
        raise ValueError(f"reconstruct_volume: method {job.name} returned status {status!r}, "
                         f"not one of {job.status_codes}")
    return job.status_codes.index(status)


# ---------------------------------------------------------------------------
# the public function
# ---------------------------------------------------------------------------
def reconstruct_volume(sinograms, angles, method="tv", *, scheduler=None, out=None, chunk=None,
                       progress=True, image_shape=None, n_workers=None, threads_per_task=None,
                       **solver_kwargs):
    """Reconstruct a stack of parallel-beam sinograms slice by slice, one Dask task per block.

    A parallel-beam 3-D scan is a stack of independent 2-D problems: slice
    ``i`` (the first axis) is reconstructed from ``sinograms[i]`` by the 2-D
    recipe ``method`` with the :class:`~tikhon.operators.Radon` operator of
    ``angles``, exactly as a Python loop over the slices would (same
    function, same arguments, so the same images). Blocks of ``chunk``
    slices are the tasks: Dask's threaded scheduler by default (numba's
    kernels release the GIL), its multiprocessing scheduler, or any
    ``distributed`` cluster. With ``out`` the result goes block by block into
    a zarr store, and a later call with the same ``out`` resumes it.

    Parameters
    ----------
    sinograms : array, numpy.memmap, dask.array.Array, zarr.Array, str or path
        The stack ``(n_slices, n_angles, n_det)``, float32 or float64 (the
        images have that dtype). A memory-mapped ``.npy`` (``numpy.load(...,
        mmap_mode="r")``) and a zarr array are read block by block where
        each task runs (the file must be reachable from the workers); a
        Dask array's blocks are computed as the tasks' inputs; a path names
        a ``.npy`` file (memory-mapped) or a zarr array (or a zarr group
        holding one array, or an array named ``sinograms``).
    angles : array_like
        The ``n_angles`` projection angles in radians, the same for every slice.
    method : {"tv", "wtv", "fbp"} or callable
        The 2-D recipe: ``"tv"`` :func:`~tikhon.solvers.tv_reconstruction`,
        ``"wtv"`` :func:`~tikhon.solvers.pilot_wtv_reconstruction`, ``"fbp"``
        :func:`~tikhon.solvers.fbp_reconstruction`, or a callable
        ``method(A, sinogram, **solver_kwargs)`` that returns a
        :class:`~tikhon.solvers.Result` whose ``x`` is the image (for
        ``"processes"`` and a cluster it must be importable or picklable on
        the workers). ``lam="auto"`` (the default of ``"tv"``) estimates
        each slice's noise level from that slice.
    scheduler : None, str or distributed.Client
        ``None`` or ``"threads"`` (default: Dask's threaded scheduler, one
        thread per core), ``"processes"`` (Dask's multiprocessing scheduler),
        ``"synchronous"`` (the blocks one after the other in this thread) or
        a ``distributed.Client`` (a ``LocalCluster`` or any cluster).
    out : str or path, optional
        A zarr store (a folder) to write the volume into, block by block;
        the volume is never held in memory. A block's completion mark is
        written after its slices: a re-run with the same ``out`` skips the
        marked blocks and runs the rest (a block cut off by a killed worker
        or run is run again whole). A store written with another input,
        angles, method, ``solver_kwargs`` or ``chunk`` is refused, and so is
        a path that holds anything else. Default: the volume in memory.
    chunk : int, optional
        Slices per block (one task, one zarr chunk, the unit of resuming).
        Default: the store's when resuming, else ``n_slices / (2 n_workers)``
        rounded up, between 1 and 8.
    progress : bool
        Show a tqdm bar over the finished slices.
    image_shape : tuple of int, optional
        ``(n_rows, n_cols)`` of each slice's image; default the square whose
        side is scikit-image's for ``n_det`` bins (``circle=False``, as
        ``tikhon reconstruct``); ``(n_det, n_det)`` is ``circle=True``.
    n_workers : int, optional
        Threads or processes of the local schedulers (default: the cores
        this process may use).
    threads_per_task : int, optional
        numba threads (and BLAS threads, where a task has its process to
        itself) of each task. Default 1 when blocks run side by side (the
        scheduler's workers are the parallelism; more threads per task would
        oversubscribe the cores), else numba's own setting.
    **solver_kwargs
        Passed to the recipe for every slice (e.g. ``lam``, ``tol``,
        ``max_iter``); checked against its signature before anything runs.

    Returns
    -------
    Result
        ``x``: the volume ``(n_slices, n_rows, n_cols)``, a NumPy array, or
        the store's zarr array ``x`` with ``out``. ``status``: ``"converged"``
        when every slice converged, else the status of the first slice that
        did not (and one :class:`~tikhon.solvers.ConvergenceWarning` names
        them); ``n_iter`` the iterations of all slices together;
        ``elapsed`` this call's wall-clock time. Per slice, in ``info``:
        ``converged`` (bool array), ``n_iter`` (int array), ``status``
        (str array), ``lam`` (the weight used, NaN where the recipe has
        none); and ``n_blocks``, ``blocks_run``, ``blocks_skipped`` (finished
        by an earlier call on ``out``), ``chunk``, ``method``, ``out``.

    Raises
    ------
    TypeError
        If ``sinograms`` or ``angles`` is not real (or is a tensor),
        ``method`` is neither a known name nor callable, ``solver_kwargs``
        do not fit the recipe, or a callable method returns no Result.
    ValueError
        If ``sinograms`` is not a non-empty 3-D stack, holds NaN or inf,
        ``angles`` does not have ``n_angles`` finite entries, the method
        is unknown, ``out`` holds a store of other parameters or something
        else, or the scheduler is unknown.
    ImportError
        If Dask (or zarr, for ``out`` and zarr inputs) is not installed.

    Notes
    -----
    The completion marks are the ``done`` array of the store (one float per
    block: the time its mark was written, 0 for a block not finished). The
    store also holds ``x``, ``converged``, ``n_iter``, ``status`` (codes
    into the attribute ``status_codes``) and ``lam``, and the parameters in
    its attributes. Blocks are written to their own chunks, so workers never
    write the same file; two runs on the same ``out`` at once are not
    supported.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import shepp_logan, simulate_sinogram
    >>> from tikhon.solvers import reconstruct_volume
    >>> angles = np.linspace(0, np.pi, 20, endpoint=False)
    >>> stack = np.stack([simulate_sinogram(shepp_logan(32), angles, level=0.01, rng=i)
    ...                   for i in range(3)])
    >>> res = reconstruct_volume(stack, angles, "fbp", progress=False)
    >>> res.x.shape, res.info["converged"].tolist()
    ((3, 32, 32), [True, True, True])
    """
    where = "reconstruct_volume"
    t0 = time.perf_counter()
    src = _source(sinograms, where)
    n_slices, n_angles, n_det = src.shape
    angles = _angles(angles, n_angles, where)
    name, recipe = _method(method, solver_kwargs, where)
    progress = check_bool(progress, "progress", where)
    if image_shape is None:
        side = image_side(n_det)
        image_shape = (side, side)
    else:
        if isinstance(image_shape, (int, np.integer)) or len(image_shape) != 2:
            raise ValueError(f"{where}: image_shape must be (n_rows, n_cols), got {image_shape!r}")
        image_shape = tuple(check_positive_int(s, "image_shape", where) for s in image_shape)
    threads_per_task = check_positive_int(threads_per_task, "threads_per_task", where, allow_none=True)
    chunk = check_positive_int(chunk, "chunk", where, allow_none=True)
    plan = plan_scheduler(scheduler, n_workers, where)
    require_dask(where)

    store = stored = None
    if out is not None:
        if not isinstance(out, (str, os.PathLike)):
            raise TypeError(f"{where}: out must be a path (a zarr store folder), got "
                            f"{type(out).__name__}")
        try:
            import zarr  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"{where}: out= needs zarr: pip install 'tikhon[dask]'") from exc
        store = Path(out).expanduser().absolute()
        stored = _stored_params(store)
        if chunk is None and stored is not None:
            chunk = stored.get("chunk")
    if chunk is None:
        chunk = max(1, min(8, math.ceil(n_slices / (2 * plan.n_workers))))
    n_blocks = math.ceil(n_slices / chunk)
    bounds = [(b * chunk, min(n_slices, (b + 1) * chunk)) for b in range(n_blocks)]

    done = np.zeros(n_blocks)
    codes = tuple(STATUSES)
    if store is not None:
        params = _store_params(src, angles, image_shape, name, solver_kwargs, chunk)
        if stored is None:
            group = _create_store(store, params, src, image_shape, n_blocks)
        else:
            _check_store(store, stored, params)
            codes = tuple(stored.get("status_codes", codes))
            import zarr

            group = zarr.open_group(str(store), mode="r+")
            done = np.asarray(group["done"][:])
    todo = [b for b in range(n_blocks) if not done[b] > 0]

    job = _Job(recipe, name, dict(solver_kwargs), angles, image_shape, n_det, n_angles,
               src.dtype.str, task_threads(plan, threads_per_task), plan.exclusive,
               None if store is None else str(store), codes)
    volume = None if store is not None else np.empty((n_slices, *image_shape), dtype=src.dtype)
    stats = {"converged": np.zeros(n_slices, dtype=bool), "n_iter": np.zeros(n_slices, dtype=np.int64),
             "status": np.full(n_slices, -1, dtype=np.int8), "lam": np.full(n_slices, np.nan)}

    def collect(i, value):
        i0, i1 = bounds[todo[i]]
        if volume is not None:
            volume[i0:i1] = value.pop("x")
        for key, arr in value.items():
            stats[key][i0:i1] = arr

    calls = [(_solve_block, (job, src.block(*bounds[b]), b, *bounds[b])) for b in todo]
    skipped_slices = sum(bounds[b][1] - bounds[b][0] for b in range(n_blocks) if done[b] > 0)
    with warnings.catch_warnings():
        # the slices' own warnings would repeat one per slice: one summary below
        warnings.simplefilter("ignore", ConvergenceWarning)
        run_tasks(plan, calls, collect, progress=progress,
                  units=[bounds[b][1] - bounds[b][0] for b in todo], initial=skipped_slices,
                  desc=where)

    if store is not None:
        # every slice's statistics, those of earlier runs included
        stats = {key: np.asarray(group[key][:]) for key in stats}
        volume = group["x"]
    status = np.array([codes[c] if c >= 0 else "" for c in stats["status"]], dtype=object)
    status = status.astype(str)
    bad = np.flatnonzero(~stats["converged"])
    if bad.size:
        overall = str(status[bad[0]])
        listed = ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")
        counts = ", ".join(f"{int((status[bad] == s).sum())} {s}" for s in dict.fromkeys(status[bad]))
        message = (f"{where}: {bad.size} of {n_slices} slices did not converge ({counts}; "
                   f"slices {listed})")
        warn_unconverged(message)
    else:
        overall = "converged"
        message = f"{where}: all {n_slices} slices converged ({name}, {n_blocks} blocks of {chunk})"
    skipped = n_blocks - len(todo)
    if skipped:
        message += f"; {skipped} blocks were finished by an earlier run on {store}"
    outcome = Outcome(overall, int(stats["n_iter"].sum()), message,
                      elapsed=time.perf_counter() - t0)
    info = {"converged": stats["converged"], "n_iter": stats["n_iter"], "status": status,
            "lam": stats["lam"], "n_blocks": n_blocks, "blocks_run": len(todo),
            "blocks_skipped": skipped, "chunk": chunk, "method": name,
            "out": None if store is None else str(store)}
    return outcome.result(volume, info=info)
