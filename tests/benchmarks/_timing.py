"""Timing helper for the peer comparison (median over repeats, with the spread)."""

from __future__ import annotations

import time

import numpy as np


def median_time(fn, repeats=5, warmup=1):
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times.

    Returns
    -------
    median : float
        Median wall-clock seconds.
    spread : float
        Half the interquartile range, in seconds.
    result : object
        What the last call returned.
    """
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float(med), float((q3 - q1) / 2), result
