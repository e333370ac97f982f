"""Private numba kernels of tikhon.operators (compiled with cache=True)."""
