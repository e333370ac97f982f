"""Argument checks of the transport solvers, built on :mod:`tikhon._core.checks`.

Only what is specific to transport lives here (a cost with its marginals, warm-start
potentials, the strictly positive marginals of the torch paths); every generic
check is the core's.
"""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import is_torch
from tikhon._core.checks import (
    check_cost_matrix,
    check_equal_mass,
    check_finite_array,
    check_marginal,
    check_same_device,
)

__all__ = ["cost_and_marginals", "potential", "problem"]


def cost_and_marginals(a, b, C, where, *, balanced, hint="normalise them", marginals_like=None):
    """``(a, b, C)`` checked: a finite cost and nonnegative marginals of its shape.

    NumPy inputs come back as float64 (``C`` C-contiguous, as the kernels read
    it); tensors keep ``C``'s dtype and must share its device (the marginals
    take ``marginals_like``'s dtype when given). ``balanced`` refuses marginals
    of different mass (``MASS_RTOL``, relative).
    """
    C = check_cost_matrix(C, where)
    check_same_device(where, a=a, b=b, C=C)
    n, m = C.shape
    like = C if marginals_like is None else marginals_like
    a = check_marginal(a, "a", n, where, like=like)
    b = check_marginal(b, "b", m, where, like=like)
    if balanced:
        check_equal_mass(a, b, where, hint)
    if not is_torch(C):
        C = np.ascontiguousarray(C, dtype=np.float64)
    return a, b, C


def potential(x, k, name, where, like):
    """A warm-start potential of length ``k``, or None.

    Finite; a NumPy one comes back as a float64 copy (the kernels update the
    potentials in place, never the caller's array), a tensor in ``like``'s
    dtype on its device.
    """
    if x is None:
        return None
    x = check_finite_array(x, name, where, shape=(k,))
    if is_torch(like):
        check_same_device(where, **{name: x, "C": like})
        return x.to(dtype=like.dtype)
    return np.array(x, dtype=np.float64)


def problem(a, b, C, f0, g0, where, *, balanced, hint="normalise them"):
    """A Sinkhorn problem checked: :func:`cost_and_marginals` and the two warm starts."""
    a, b, C = cost_and_marginals(a, b, C, where, balanced=balanced, hint=hint)
    n, m = C.shape
    return a, b, C, potential(f0, n, "f0", where, C), potential(g0, m, "g0", where, C)
