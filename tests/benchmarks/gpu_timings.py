"""Radon and TV-CT timings on a torch device (CUDA or CPU) against the CPU NumPy path.

For each image size it times, on torch tensors of the chosen device:

* the Radon forward projection ``A(x)`` and its matched adjoint ``A.T(y)``
  (``tikhon.operators._radon_torch``);
* one Chambolle-Pock iteration of :func:`tikhon.solvers.tv_reconstruction`
  (a run of ``--iters`` iterations with ``tol=0`` and ``check_every=iters``,
  divided by ``--iters``);

then the same three on NumPy arrays (the numba kernels) for the CPU/device
ratio; learned space-variant TV weights end to end (FBP, the pretrained
:class:`~tikhon.learned.TVWeightNet`, the weights) on both paths; and, when ``import deepinv`` works, ``deepinv.physics.Tomography``'s
forward and adjoint on the same device (same angles, ``circle=False``; its
own detector and interpolation, and its adjoint is not the exact one).

Every timing is a median over ``--repeats`` repeats after a warm-up, with the
min and max; a repeat of a fast operation loops it until it lasts at least
20 ms. On CUDA, ``torch.cuda.synchronize`` brackets every timed region. The
last column checks that the device computed the same thing as the NumPy
path (relative l2 difference of the outputs). Nothing is extrapolated: a row
is what was measured on this machine, at that moment.

Usage::

    python tests/benchmarks/gpu_timings.py --device cuda --sizes 512 1024 --angles 180 \\
        --iters 50 --dtype float32 --out gpu_timings.md
    python tests/benchmarks/gpu_timings.py --device cpu --sizes 128 --iters 5
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

import numpy as np

# a repeat of a fast operation is looped until it lasts this long
_MIN_REPEAT_S = 0.02
_MAX_LOOPS = 1000


class Timing:
    """Seconds per call: median, min and max over repeats."""

    def __init__(self, times, loops):
        self.times = [float(t) for t in times]
        self.loops = int(loops)

    @property
    def median(self):
        return float(np.median(self.times))

    def format(self):
        ms = [1e3 * t for t in (self.median, min(self.times), max(self.times))]
        return f"{_fmt(ms[0])} [{_fmt(ms[1])}–{_fmt(ms[2])}]"


def _fmt(ms):
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def timed(fn, sync, repeats=5, warmup=1, per_call=1, calibrate=True):
    """Time ``fn()``: warm-up, then the median (with min/max) over ``repeats`` repeats.

    Parameters
    ----------
    fn : callable
        The work; its result is ignored.
    sync : callable
        Waits for the device to finish (``torch.cuda.synchronize``; a no-op on CPU).
    repeats, warmup : int
        Timed repeats and untimed calls before them.
    per_call : int
        Units of work per call (iterations of a solver): times are divided by it.
    calibrate : bool
        Loop ``fn`` within a repeat until the repeat lasts ``_MIN_REPEAT_S``, so
        that timer resolution and launch latency do not dominate short calls.

    Returns
    -------
    Timing
    """
    for _ in range(warmup):
        fn()
    sync()
    loops = 1
    if calibrate:
        t0 = time.perf_counter()
        fn()
        sync()
        one = time.perf_counter() - t0
        loops = int(min(_MAX_LOOPS, max(1, math.ceil(_MIN_REPEAT_S / max(one, 1e-9)))))
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / (loops * per_call))
    return Timing(times, loops)


def _rel_diff(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float(np.linalg.norm(a - b))


def _problem(n, n_angles, dtype, seed=0):
    """Shepp-Logan image, its Radon operator and a sinogram with 1 % Gaussian noise."""
    from tikhon.data import shepp_logan
    from tikhon.operators import Radon

    x = shepp_logan(n).astype(dtype)
    A = Radon((n, n), np.linspace(0.0, np.pi, n_angles, endpoint=False))
    y = A(x)
    rng = np.random.default_rng(seed)
    y = (y + 0.01 * np.abs(y).max() * rng.standard_normal(y.shape)).astype(dtype)
    return A, x, y


def _tv_runner(A, y, lam, iters):
    from tikhon.solvers import tv_reconstruction

    def run(max_iter=iters):
        with warnings.catch_warnings():
            # tol=0 never converges: the ConvergenceWarning is expected
            warnings.simplefilter("ignore")
            return tv_reconstruction(A, y, lam, tol=0.0, max_iter=max_iter, check_every=max_iter)

    return run


def _deepinv_rows(torch, device, n, n_angles, tdtype, sync, repeats):
    """deepinv's Tomography forward/adjoint timings, or the reason there are none."""
    try:
        from deepinv.physics import Tomography
    except ImportError as exc:
        print(f"  deepinv: not installed ({exc})")
        return None, None, "deepinv not installed"
    except Exception as exc:  # noqa: BLE001 - e.g. torchvision built for another torch
        print(f"  deepinv: import failed ({type(exc).__name__}: {exc})")
        return None, None, f"deepinv import failed: {type(exc).__name__}"
    try:
        phys = Tomography(angles=n_angles, img_width=n, circle=False, device=device, dtype=tdtype)
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.rand((1, 1, n, n), generator=gen, dtype=tdtype).to(device)
        y = phys.A(x)
        fwd = timed(lambda: phys.A(x), sync, repeats)
        adj = timed(lambda: phys.A_adjoint(y), sync, repeats)
        return fwd, adj, None
    except Exception as exc:  # noqa: BLE001 - report the peer's failure, keep our rows
        print(f"  deepinv: failed ({type(exc).__name__}: {exc})")
        return None, None, f"deepinv failed: {type(exc).__name__}"


def measure(device="cuda", sizes=(512, 1024), n_angles=180, iters=50, dtype="float32",
            repeats=5, cpu=True, peers=True, learned=True):
    """Measure the rows of the table.

    Returns
    -------
    rows : list of dict
        One per (operation, size): ``op``, ``n``, ``dev``/``cpu``/``peer``
        (:class:`Timing` or None), ``diff`` (relative difference to the NumPy
        result, or None).
    notes : list of str
    """
    import torch

    from tikhon.solvers import default_tv_lam
    from tikhon._core.arrays import is_torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    tdtype = getattr(torch, dtype)
    if dev.type == "cuda":
        def sync():
            torch.cuda.synchronize(dev)
    else:
        def sync():
            pass

    rows, notes = [], []
    for n in sizes:
        print(f"size {n}x{n}, {n_angles} angles, {dtype} on {dev}")
        A, x_np, y_np = _problem(n, n_angles, dtype)
        A.norm()  # cached on the operator: step sizes are not what is timed
        lam = default_tv_lam(y_np)
        x_t = torch.from_numpy(x_np).to(dev)
        y_t = torch.from_numpy(y_np).to(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        # default arguments bind this size's operator and data in the closures
        t_fwd = timed(lambda A=A, x=x_t: A(x), sync, repeats)
        t_adj = timed(lambda A=A, y=y_t: A.T(y), sync, repeats)
        tv_dev = _tv_runner(A, y_t, lam, iters)
        tv_dev(max_iter=2)  # warm-up: tables, kernels, allocator
        res_dev = tv_dev()
        sync()
        t_tv = timed(tv_dev, sync, repeats, warmup=0, per_call=iters, calibrate=False)
        # a solver that converts tensors to NumPy internally returns NumPy duals:
        # say so rather than pass a host loop off as a device timing
        p_dual = res_dev.dual[0] if res_dev.dual else None
        if not (is_torch(p_dual) and p_dual.device.type == dev.type):
            notes.append(f"{n}: tv_reconstruction on {dev} tensors did not keep its iterates on {dev} "
                         "(NumPy loop); the device row of the TV iteration times that.")
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            notes.append(f"{n}: peak CUDA memory allocated by torch: {peak:.0f} MiB")
        print(f"  device: forward {t_fwd.format()} ms, adjoint {t_adj.format()} ms, "
              f"TV iteration {t_tv.format()} ms")

        c_fwd = c_adj = c_tv = None
        d_fwd = d_adj = d_tv = None
        if cpu:
            y_ref = A(x_np)
            A.T(y_np)
            c_fwd = timed(lambda A=A, x=x_np: A(x), lambda: None, repeats)
            c_adj = timed(lambda A=A, y=y_np: A.T(y), lambda: None, repeats)
            tv_cpu = _tv_runner(A, y_np, lam, iters)
            tv_cpu(max_iter=2)
            res_cpu = tv_cpu()
            c_tv = timed(tv_cpu, lambda: None, repeats, warmup=0, per_call=iters, calibrate=False)
            d_fwd = _rel_diff(A(x_t).cpu().numpy(), y_ref)
            d_adj = _rel_diff(A.T(y_t).cpu().numpy(), A.T(y_np))
            d_tv = _rel_diff(res_dev.x.cpu().numpy(), res_cpu.x)
            print(f"  CPU NumPy: forward {c_fwd.format()} ms, adjoint {c_adj.format()} ms, "
                  f"TV iteration {c_tv.format()} ms")

        p_fwd = p_adj = None
        if peers:
            p_fwd, p_adj, why = _deepinv_rows(torch, dev, n, n_angles, tdtype, sync, repeats)
            if why and why not in notes:
                notes.append(why)
            if p_fwd is not None:
                print(f"  deepinv: forward {p_fwd.format()} ms, adjoint {p_adj.format()} ms")

        rows += [
            {"op": "Radon forward", "n": n, "dev": t_fwd, "cpu": c_fwd, "peer": p_fwd, "diff": d_fwd},
            {"op": "Radon adjoint", "n": n, "dev": t_adj, "cpu": c_adj, "peer": p_adj, "diff": d_adj},
            {"op": "TV-CT CP iteration", "n": n, "dev": t_tv, "cpu": c_tv, "peer": None, "diff": d_tv},
        ]
        if learned:
            row = _learned_row(torch, dev, A, y_np, y_t, tdtype, sync, repeats, cpu)
            if isinstance(row, str):
                if row not in notes:
                    notes.append(row)
            else:
                row["n"] = n
                rows.append(row)
    return rows, notes


def _learned_row(torch, dev, A, y_np, y_t, tdtype, sync, repeats, cpu):
    """Learned TV weights end to end (FBP -> TVWeightNet -> weights) on the device and on NumPy."""
    try:
        from tikhon.learned import TVWeightNet, weights_from_network
    except ImportError as exc:
        return f"learned weights not timed: {exc}"
    net_dev = TVWeightNet.pretrained(map_location=dev).to(tdtype)
    t_dev = timed(lambda: weights_from_network(net_dev, A.fbp(y_t)), sync, repeats)
    print(f"  learned weights: device {t_dev.format()} ms")
    row = {"op": "learned TV weights (FBP, net, weights)", "dev": t_dev, "cpu": None, "peer": None,
           "diff": None}
    if cpu:
        net_cpu = TVWeightNet.pretrained().to(tdtype)
        t_cpu = timed(lambda: weights_from_network(net_cpu, A.fbp(y_np)), lambda: None, repeats)
        w_dev = weights_from_network(net_dev, A.fbp(y_t))
        row["cpu"] = t_cpu
        row["diff"] = _rel_diff(w_dev.cpu().numpy(), weights_from_network(net_cpu, A.fbp(y_np)))
        print(f"  learned weights: CPU NumPy {t_cpu.format()} ms")
    return row


def _ratio(num, den):
    if num is None or den is None:
        return "—"
    return f"{num.median / den.median:.2f}"


def _diff(d):
    return "—" if d is None else f"{d:.1e}"


def table(rows):
    """The Markdown table of the rows (times in ms: median [min–max])."""
    lines = [
        ("| operation | size | device (ms) | CPU NumPy (ms) | CPU / device | deepinv (ms) "
         "| deepinv / device | rel. diff vs NumPy |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['n']}² | {r['dev'].format()} "
            f"| {r['cpu'].format() if r['cpu'] else '—'} | {_ratio(r['cpu'], r['dev'])} "
            f"| {r['peer'].format() if r['peer'] else '—'} | {_ratio(r['peer'], r['dev'])} "
            f"| {_diff(r['diff'])} |"
        )
    return "\n".join(lines)


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(args, torch):
    import numba

    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return "\n".join([
        f"# tikhon Radon / TV-CT timings on {args.device}",
        "",
        (f"- device: {name}; torch {torch.__version__}; numba {numba.__version__}; "
         f"{os.cpu_count()} CPUs visible"),
        f"- threads (read after the runs): torch {torch.get_num_threads()}, numba {numba.get_num_threads()}",
        (f"- problem: Shepp-Logan n x n, {args.angles} angles over [0, pi), {args.dtype}, "
         f"TV-CT: {args.iters} iterations (tol=0) divided by {args.iters}"),
        (f"- times: median [min–max] over {args.repeats} repeats after a warm-up, in ms per call; "
         "a TV-CT row includes the solver's set-up (one application of A and grad, the "
         f"allocations) spread over the {args.iters} iterations"),
        ("- CPU / device > 1: the device is faster; rel. diff: relative l2 difference of the "
         "device output to the NumPy output"),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device: cuda, cuda:1, cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and numba threads (default: torch 1, numba its default)")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU NumPy reference")
    parser.add_argument("--no-peers", action="store_true", help="skip deepinv")
    parser.add_argument("--no-learned", action="store_true", help="skip the learned-weights row")
    parser.add_argument("--out", default=None, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    for name in ("angles", "iters", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if any(n < 2 for n in args.sizes):
        parser.error("--sizes must be >= 2")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")

    import numba
    import torch

    # numba's OpenMP layer shares the OpenMP runtime with torch, and launching
    # its pool sets the runtime's thread count to numba's: launch it before
    # torch's count is set, or torch silently runs on numba's count
    numba.get_num_threads()
    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.threads or 1)

    rows, notes = measure(args.device, args.sizes, args.angles, args.iters, args.dtype,
                          args.repeats, cpu=not args.no_cpu, peers=not args.no_peers,
                          learned=not args.no_learned)
    report = header(args, torch) + "\n\n" + table(rows) + "\n"
    if notes:
        report += "\n" + "\n".join(f"- {s}" for s in notes) + "\n"
    print()
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
