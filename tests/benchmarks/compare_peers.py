"""Side-by-side timings of tikhon and its peers, in one process, on the same inputs.

Each area lives in a ``peers_<area>.py`` module beside this script, exposing
``run(quick) -> list[dict]`` (one row per comparison). This driver runs the
requested areas and prints one Markdown table: medians over repeats with half
the interquartile range, the speed-up (peer time / tikhon time; > 1 means
tikhon is faster) and the accuracy each side reached.

Usage::

    python tests/benchmarks/compare_peers.py            # everything, full sizes
    python tests/benchmarks/compare_peers.py --quick    # small sizes
    python tests/benchmarks/compare_peers.py --only radon denoising

Ratios are meaningful within one run on one machine only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available_areas():
    return sorted(p.stem[len("peers_"):] for p in HERE.glob("peers_*.py"))


def _fmt_time(t, spread):
    if t is None:
        return "n/a"
    return f"{t:.4g} ± {spread:.2g}" if spread else f"{t:.4g}"


def format_table(rows):
    header = (
        "| problem | peer | tikhon s | peer s | speed-up (peer/tikhon) | tikhon accuracy | peer accuracy | note |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for r in rows:
        t, p = r.get("tikhon_s"), r.get("peer_s")
        ratio = f"{p / t:.3g}x" if (t and p) else "n/a"
        lines.append(
            f"| {r.get('problem', '')} | {r.get('peer', '')} | "
            f"{_fmt_time(t, r.get('tikhon_spread'))} | {_fmt_time(p, r.get('peer_spread'))} | {ratio} | "
            f"{r.get('tikhon_accuracy', '')} | {r.get('peer_accuracy', '')} | {r.get('note', '')} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    parser.add_argument("--only", nargs="*", default=None, help=f"areas among {available_areas()}")
    parser.add_argument("--threads", type=int, default=None, help="numba/BLAS threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    sys.path.insert(0, str(HERE))
    areas = args.only or available_areas()
    unknown = set(areas) - set(available_areas())
    if unknown:
        parser.error(f"unknown areas {sorted(unknown)}; available: {available_areas()}")
    print(f"# tikhon vs peers ({'quick' if args.quick else 'full'}), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    rows = []
    for area in areas:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"peers_{area}")
            area_rows = module.run(quick=args.quick)
        except Exception as exc:  # one broken area must not hide the others
            traceback.print_exc()
            area_rows = [{"problem": area, "peer": "-", "note": f"area failed: {exc!r}"}]
        rows.extend(area_rows)
        print(f"[{area}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
