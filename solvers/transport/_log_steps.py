"""Log-domain Sinkhorn half steps on NumPy arrays (numba kernels) or torch tensors.

The two classes have one interface, so that the balanced log-domain solver and
the unbalanced one are each written once:

``row(f, g, eps, out, kappa=1, omega=1, measure=False, shift=False) -> (f_new, err, shift)``
    ``f_new = (1 - omega) f + omega (eps log a - kappa eps LSE_j((g_j - C_ij)/eps))``;
    ``err`` the L1 row violation of the plan ``(f, g)`` *before* the update
    (None when not asked for and not free), ``shift`` the largest
    ``|f_new - f|`` (None when not asked for and not free).
``col(f, g, eps, out, kappa=1, omega=1, shift=False) -> (g_new, shift)``
    The same over the columns, updating ``g``.

``kappa = 1`` is the balanced update, ``rho / (rho + eps)`` the KL-relaxed one.
NumPy writes ``f_new`` into the buffer ``out`` (the kernels never allocate);
torch ignores ``out`` and makes new tensors (no in-place update of a
potential, so autograd flows through the iterations). NumPy returns floats,
torch 0-d tensors for ``shift`` (no device synchronisation until read) and a
float for ``err`` (the one synchronisation of a measured iteration).
"""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import is_torch, torch_module

__all__ = ["log_steps"]


class _NumpySteps:
    """Fused log-sum-exp kernels; the row kernel gets the violation for free."""

    def __init__(self, C, a, b):
        from tikhon.solvers.transport import _sinkhorn_kernels as kern

        self.kern = kern
        self.C = C
        self.loga, self.logb = np.log(a), np.log(b)
        # the row blocks of the column kernel: the threads in effect (see _support.Support.kernel_threads)
        self.nb = kern.numba_threads()

    def zeros(self, k):
        return np.zeros(k)

    def spare(self, x):
        return np.empty_like(x)

    def row(self, f, g, eps, out, kappa=1.0, omega=1.0, measure=False, shift=False):
        err, moved = self.kern.row_lse_update(self.C, g, self.loga, eps, kappa, f, out, omega)
        return out, err, moved

    def col(self, f, g, eps, out, kappa=1.0, omega=1.0, shift=False):
        _, moved = self.kern.col_lse_update(self.C, f, self.logb, eps, kappa, g, out, self.nb, omega)
        return out, moved


class _TorchSteps:
    """``torch.logsumexp`` on the tensors' device and dtype."""

    def __init__(self, C, a, b):
        self.torch = torch_module()
        self.C, self.a = C, a
        self.loga, self.logb = self.torch.log(a), self.torch.log(b)
        self._Ce = (None, None)

    def zeros(self, k):
        return self.torch.zeros(k, dtype=self.C.dtype, device=self.C.device)

    def spare(self, x):
        return None

    def scaled_cost(self, eps):
        """``C / eps``, kept for the latest eps: each half step then needs one
        n x m temporary (``g / eps - C / eps``) before the log-sum-exp, not two."""
        if self._Ce[0] != eps:
            self._Ce = (eps, self.C / eps)
        return self._Ce[1]

    def _update(self, old, logw, lse, eps, kappa, omega):
        new = eps * (logw - lse) if kappa == 1.0 else eps * logw - kappa * eps * lse
        return new if omega == 1.0 else (1.0 - omega) * old + omega * new

    def row(self, f, g, eps, out, kappa=1.0, omega=1.0, measure=False, shift=False):
        torch = self.torch
        lse = torch.logsumexp(g[None, :] / eps - self.scaled_cost(eps), dim=1)
        # row sums of the plan (f, g) are exp(f / eps + lse), before f moves
        err = float((torch.exp(f / eps + lse) - self.a).abs().sum().detach()) if measure else None
        f_new = self._update(f, self.loga, lse, eps, kappa, omega)
        return f_new, err, _shift(f_new, f) if shift else None

    def col(self, f, g, eps, out, kappa=1.0, omega=1.0, shift=False):
        lse = self.torch.logsumexp(f[:, None] / eps - self.scaled_cost(eps), dim=0)
        g_new = self._update(g, self.logb, lse, eps, kappa, omega)
        return g_new, _shift(g_new, g) if shift else None


def _shift(new, old):
    return (new - old).detach().abs().max()


def log_steps(C, a, b):
    """The half steps for ``C``'s backend (NumPy float64 arrays or tensors)."""
    return _TorchSteps(C, a, b) if is_torch(C) else _NumpySteps(C, a, b)
