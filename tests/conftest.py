"""Test-wide settings.

torch on two shared cores ran small ops 50-400x slower with two OpenMP threads
than with one, so tests use one thread unless they measure threading.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
