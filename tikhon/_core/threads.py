"""numba's thread count for a block of code.

On a few shared cores the threads of a small parallel region mostly wait on
each other (and a parallel region costs a wake-up of every thread), so callers
run small problems on fewer threads; the setting is restored on exit. numba
is imported only when a limit is set.
"""

from __future__ import annotations

__all__ = ["numba_threads"]


class numba_threads:
    """Context manager: at most ``n`` numba threads inside (``None``: leave the setting alone)."""

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
