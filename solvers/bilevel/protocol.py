"""The two levels of a bilevel problem, as the hypergradient and MAID see them.

A bilevel problem learns parameters ``theta`` (a 1-D float64 torch tensor) by
minimizing an upper-level loss ``f(x*(theta))`` where ``x*(theta) = argmin_x
g(x, theta)`` and ``g`` is smooth and ``mu``-strongly convex in ``x``. The
methods of this package never see ``x*``: they ask the lower level for an
``x~`` with ``||x~ - x*|| <= eps`` (guaranteed by ``||grad_x g(x~)|| / mu <=
eps``), and differentiate its optimality condition ``grad_x g(x*, theta) =
0``. Both levels compute on torch tensors (autograd gives the Hessian-vector
products); NumPy inputs are converted by the public functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tikhon._core.arrays import is_torch, require_torch
from tikhon._core.checks import check_finite_array

__all__ = ["LowerLevel", "LowerSolution", "SquaredError", "UpperLevel"]


def finite_tensor(a, name, where, ndim=None):
    """``a`` as a detached finite float tensor (NumPy input becomes a float64 CPU tensor)."""
    torch = require_torch()
    a = check_finite_array(a, name, where)
    if not is_torch(a):
        a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{where}: {name} must have {ndim} axes, got shape {tuple(a.shape)}")
    return a.detach()


@dataclass(frozen=True)
class LowerSolution:
    """An approximate lower-level solution.

    Parameters
    ----------
    x : torch.Tensor
        The iterate ``x~``.
    n_iter : int
        Iterations the lower-level solver spent (the cost MAID accounts for).
    converged : bool
        Whether ``||grad_x g(x~)|| / mu <= eps`` was reached.
    stopped : bool
        Whether the caller's ``stop`` ended the solve before that (then
        ``converged`` is False).
    """

    x: object
    n_iter: int
    converged: bool
    stopped: bool = False


class LowerLevel:
    """``g(x, theta)``: smooth and ``mu``-strongly convex in ``x``.

    Subclasses implement :meth:`value`, :meth:`strong_convexity`,
    :meth:`lipschitz` and :meth:`solve`; :meth:`grad` defaults to autograd
    of :meth:`value` and may be overridden by a closed form. ``grad`` must keep
    the autograd graph in both ``x`` and ``theta`` (``create_graph``): the
    hypergradient takes Hessian-vector products and mixed derivatives through
    it.
    """

    #: number of entries of ``theta``
    n_params: int

    def value(self, x, theta):
        """``g(x, theta)``.

        Parameters
        ----------
        x : torch.Tensor
            The lower-level variable.
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.

        Returns
        -------
        torch.Tensor
            A 0-d tensor.
        """
        raise NotImplementedError(f"{type(self).__name__}.value: a LowerLevel must implement value(x, theta)")

    def grad(self, x, theta):
        """``grad_x g(x, theta)``, differentiable in ``x`` and ``theta``.

        Parameters
        ----------
        x : torch.Tensor
            The lower-level variable.
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.

        Returns
        -------
        torch.Tensor
            Of the shape of ``x``, with its autograd graph.
        """
        import torch

        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.value(x, theta), x, create_graph=True)
        return g

    def hvp(self, x, theta, v):
        """``Hess_xx g(x, theta) v`` (optional closed form).

        The default takes it by double autograd through :meth:`grad`;
        :func:`~tikhon.solvers.bilevel.hypergradient` then builds the graph of
        ``grad`` once per call and reuses it for every product. A subclass that
        overrides this method is used as is (one call per product), and the
        result need not keep a graph.

        Parameters
        ----------
        x : torch.Tensor
            The point of the Hessian.
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.
        v : torch.Tensor
            The direction, of the shape of ``x``.

        Returns
        -------
        torch.Tensor
            Of the shape of ``x``.
        """
        import torch

        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (h,) = torch.autograd.grad(self.grad(x, theta), x, grad_outputs=v)
        return h

    def mixed_vjp(self, x, theta, w):
        """``d2_{theta x} g(x, theta)^T w``: a vector of ``n_params`` entries (optional closed form).

        The derivative in ``theta`` of ``<grad_x g(x, theta), w>``. The default
        takes it by autograd through :meth:`grad` (and
        :func:`~tikhon.solvers.bilevel.hypergradient` reuses the graph it built
        for the Hessian-vector products); an override is called as is.

        Parameters
        ----------
        x : torch.Tensor
            The point of the derivative.
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.
        w : torch.Tensor
            The vector, of the shape of ``x``.

        Returns
        -------
        torch.Tensor
            Shape ``(n_params,)``.
        """
        import torch

        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            if not theta.requires_grad:
                theta = theta.detach().requires_grad_(True)
            (m,) = torch.autograd.grad(self.grad(x, theta), theta, grad_outputs=w,
                                       create_graph=w.requires_grad)
        return m

    def strong_convexity(self, theta):
        """``mu``, a lower bound of the Hessian's eigenvalues in ``x``.

        Parameters
        ----------
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.

        Returns
        -------
        float
        """
        raise NotImplementedError(f"{type(self).__name__}.strong_convexity: a LowerLevel must implement it")

    def lipschitz(self, theta):
        """An upper bound of the Hessian's eigenvalues in ``x``.

        Parameters
        ----------
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.

        Returns
        -------
        float
        """
        raise NotImplementedError(f"{type(self).__name__}.lipschitz: a LowerLevel must implement it")

    def solve(self, theta, *, eps, max_iter, x0=None, stop=None):
        """An approximate minimizer with ``||grad_x g|| / mu <= eps``.

        Parameters
        ----------
        theta : torch.Tensor
            The parameters, shape ``(n_params,)``.
        eps : float
            The accuracy asked for: ``||x - x*|| <= eps``.
        max_iter : int
            The most iterations the solver may spend.
        x0 : torch.Tensor, optional
            A warm start (MAID passes the previous iterate).
        stop : callable, optional
            ``stop(x, bound) -> bool``, called at the iterates with a
            distance certificate ``||x - x*|| <= bound``; True ends the solve
            there (``stopped``). MAID passes it to abandon a line-search
            trial as soon as its rejection is certain. A subclass whose solve
            has no ``stop`` keyword is called without it.

        Returns
        -------
        LowerSolution
        """
        raise NotImplementedError(f"{type(self).__name__}.solve: a LowerLevel must implement it")


class UpperLevel:
    """``f(x)``, the upper-level loss, smooth with an ``L_f``-Lipschitz gradient."""

    #: Lipschitz constant of ``grad f`` (enters the inexact Armijo test)
    lipschitz: float

    def value(self, x):
        """``f(x)``.

        Parameters
        ----------
        x : torch.Tensor
            The lower-level variable.

        Returns
        -------
        torch.Tensor
            A 0-d tensor.
        """
        raise NotImplementedError(f"{type(self).__name__}.value: an UpperLevel must implement value(x)")

    def grad(self, x):
        """``grad f(x)``.

        Parameters
        ----------
        x : torch.Tensor
            The lower-level variable.

        Returns
        -------
        torch.Tensor
            Of the shape of ``x``.
        """
        import torch

        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.value(x), x)
        return g


class SquaredError(UpperLevel):
    """``f(x) = ||x - x_true||^2 / (2 N)``, with ``N`` the number of training samples.

    Parameters
    ----------
    x_true : torch.Tensor or numpy.ndarray
        The ground truth, finite real floats, its first axis the samples (``N =
        x_true.shape[0]``); a NumPy array becomes a float64 CPU tensor.
    """

    def __init__(self, x_true):
        where = "SquaredError"
        x_true = finite_tensor(x_true, "x_true", where)
        if x_true.ndim == 0 or x_true.shape[0] == 0:
            raise ValueError(f"{where}: x_true must have a non-empty first axis (the samples), "
                             f"got shape {tuple(x_true.shape)}")
        self.x_true = x_true
        self.n_samples = int(x_true.shape[0])
        self.lipschitz = 1.0 / self.n_samples

    def _check_x(self, x, where):
        if tuple(x.shape) != tuple(self.x_true.shape):
            raise ValueError(f"{where}: x must have the shape of x_true {tuple(self.x_true.shape)}, "
                             f"got {tuple(x.shape)}")

    def value(self, x):
        """``||x - x_true||^2 / (2 N)``.

        Parameters
        ----------
        x : torch.Tensor
            Of the shape of ``x_true``.

        Returns
        -------
        torch.Tensor
            A 0-d tensor.
        """
        self._check_x(x, "SquaredError.value")
        return ((x - self.x_true) ** 2).sum() / (2 * self.n_samples)

    def grad(self, x):
        """``(x - x_true) / N``.

        Parameters
        ----------
        x : torch.Tensor
            Of the shape of ``x_true``.

        Returns
        -------
        torch.Tensor
            Of the shape of ``x``.
        """
        self._check_x(x, "SquaredError.grad")
        return (x - self.x_true) / self.n_samples
