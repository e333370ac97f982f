"""Test-wide settings and shared fixtures (shared plain helpers: tests/helpers.py).

torch on two shared cores ran small ops 50-400x slower with two OpenMP threads
than with one, so tests use one thread unless they measure threading.
"""

import contextlib
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# --import-mode=importlib puts no test folder on sys.path: this makes
# ``import helpers`` work from every folder under tests/ (appended, so that the
# test folders, named like the subpackages, shadow nothing)
sys.path.append(str(Path(__file__).resolve().parent))


def pytest_configure(config):
    try:
        import torch
    except ImportError:
        return
    # numba's OpenMP layer shares the OpenMP runtime with torch: its pool, started
    # by the first parallel kernel, resets torch's thread count to the core count
    # if torch has run an op before. Start numba's pool first, then pin torch.
    import numba

    numba.get_num_threads()
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def single_numba_thread():
    """One numba thread for a module (``pytestmark = pytest.mark.usefixtures(...)``).

    Parallel kernels on the tests' small arrays only pay thread wake-ups on a
    shared machine.
    """
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


@pytest.fixture
def no_host_transfers(monkeypatch):
    """Context manager: inside it, moving a tensor's data to host memory raises.

    CPU tensors stand in for CUDA ones: ``Tensor.numpy``, ``Tensor.cpu``,
    ``Tensor.__array__`` and ``Tensor.tolist`` of more than 16 entries raise,
    and ``Gradient`` and ``Radon`` take their device-agnostic torch paths
    instead of the numba kernels on zero-copy views. Two things stay allowed:
    reading a few monitored scalars (a sync, not a copy of the data; the
    ``count_syncs`` fixture bounds how often), and uploading an operator's own
    NumPy data to the device (done once, then cached per device).
    """
    torch = pytest.importorskip("torch")
    from tikhon.operators.gradient import Gradient
    from tikhon.operators.radon import Radon

    def refuse(*args, **kwargs):
        raise AssertionError("host transfer inside a device-resident solve")

    small_tolist = torch.Tensor.tolist

    def tolist_scalars_only(self):
        # a handful of monitored scalars read in one go is a sync, not a data copy
        if self.numel() > 16:
            refuse()
        return small_tolist(self)

    @contextlib.contextmanager
    def guard():
        with monkeypatch.context() as m:
            m.setattr(Gradient, "_numba_on_torch_cpu", False)
            m.setattr(Radon, "_numba_on_torch_cpu", False)
            for name in ("numpy", "cpu", "__array__"):
                m.setattr(torch.Tensor, name, refuse)
            m.setattr(torch.Tensor, "tolist", tolist_scalars_only)
            yield

    return guard


@pytest.fixture
def count_syncs(monkeypatch):
    """Context manager counting tensor-to-Python conversions (host syncs on a GPU).

    ``float``, ``bool``, ``int``, ``item`` and ``tolist`` of a tensor wait for
    the device; yields a dict whose ``"n"`` is the count inside the block.
    """
    torch = pytest.importorskip("torch")
    names = ("__float__", "__bool__", "__int__", "__index__", "item", "tolist")

    @contextlib.contextmanager
    def guard():
        counter = {"n": 0}

        def counted(method):
            def wrapper(self, *args, **kwargs):
                counter["n"] += 1
                return method(self, *args, **kwargs)

            return wrapper

        with monkeypatch.context() as m:
            for name in names:
                m.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
            yield counter

    return guard
