"""Smoothed total-variation lower levels: denoising and reconstruction with any linear operator.

Both problems share the regularizer ``R(x, theta) = 1/2 sum_n sum_i w_i
phi_nu(|(grad x_n)_i|)`` over a batch of ``N`` images, with ``grad`` the
forward-difference :class:`~tikhon.operators.Gradient` (Neumann boundary) and
``phi_nu`` a smoothed absolute value whose second derivative is at most
``1 / nu``; the whole objective is divided by ``N``. The weights and ``nu``
are ``exp`` of the entries of ``theta``, so every ``theta`` is admissible and
the bilevel methods move it freely.
"""

from __future__ import annotations

import math

from tikhon.operators.base import LinearOperator

from tikhon._core.arrays import is_torch
from tikhon._core.checks import (
    check_choice,
    check_finite_array,
    check_positive,
)

from ._lower_solver import solve_lower_level
from .protocol import LowerLevel, finite_tensor

__all__ = ["SmoothedTVDenoising", "SmoothedTVReconstruction"]

# power iteration approaches ||A|| from below: the Lipschitz bound keeps a margin
_NORM_MARGIN = 1.02


class _SmoothedTV(LowerLevel):
    """The smoothed-TV regularizer shared by the two problems (configuration and closed forms)."""

    def _setup_regularizer(self, image_shape, smoothing, weights, where):
        from tikhon.operators import Gradient

        self.smoothing = check_choice(smoothing, ("sqrt", "huber"), "smoothing", where)
        self.weights = check_choice(weights, ("scalar", "pixel"), "weights", where)
        if len(image_shape) != 2:
            raise ValueError(f"{where}: the images must be 2-D, got shape {tuple(image_shape)}")
        self.image_shape = tuple(int(n) for n in image_shape)
        self._G = Gradient(self.image_shape)
        self._grad_norm2 = self._G.norm() ** 2  # exact (closed form)
        self.n_params = 2 if self.weights == "scalar" else math.prod(self.image_shape) + 1

    # -- theta ------------------------------------------------------------------
    def _check_theta(self, theta, where, finite=False):
        if not is_torch(theta):
            raise TypeError(f"{where}: theta must be a torch tensor, got {type(theta).__name__}")
        if theta.ndim != 1 or theta.shape[0] != self.n_params:
            raise ValueError(f"{where}: theta must have shape ({self.n_params},), got "
                             f"{tuple(theta.shape)}")
        if finite:
            check_finite_array(theta.detach(), "theta", where)
        return theta

    def _weights_and_nu(self, theta, like):
        """``(w, nu)``: w a 0-d tensor or of the image shape; both in ``like``'s dtype."""
        e = theta.to(dtype=like.dtype, device=like.device)
        if self.weights == "scalar":
            return e[0].exp(), e[1].exp()
        return e[:-1].exp().reshape(self.image_shape), e[-1].exp()

    def _max_weight_over_nu(self, theta):
        t = theta.detach().double()
        log_w = t[0] if self.weights == "scalar" else t[:-1].max()
        return math.exp(float(log_w) - float(t[-1]))

    # -- the regularizer ---------------------------------------------------------------
    def _grad_images(self, x):
        """``grad x_n`` for each image, stacked as ``(N, 2, H, W)``."""
        import torch

        return torch.stack([self._G.forward(xn) for xn in x])

    def _div_images(self, p):
        """``grad^T p_n`` for each image of ``p`` of shape ``(N, 2, H, W)``."""
        import torch

        return torch.stack([self._G.adjoint(pn) for pn in p])

    def _phi(self, gx, nu):
        """``phi_nu(|g|)`` pixelwise for ``gx`` of shape ``(N, 2, H, W)``."""
        sq = (gx * gx).sum(1)
        if self.smoothing == "sqrt":
            return (sq + nu * nu).sqrt()
        import torch

        # sqrt of a clamped square: the branch t <= nu never differentiates sqrt at 0
        t = sq.clamp_min(nu.detach() ** 2 * 0.25).sqrt()
        return torch.where(sq <= nu * nu, sq / (2 * nu), t - nu / 2)

    def _inverse_slope(self, gx, nu):
        """``phi_nu'(|g|) / |g|`` pixelwise: ``1 / sqrt(|g|^2 + nu^2)`` or ``1 / max(|g|, nu)``."""
        sq = (gx * gx).sum(1)
        if self.smoothing == "sqrt":
            return (sq + nu * nu).rsqrt()
        # clamped below nu: the unused branch never differentiates sqrt at 0
        return sq.clamp_min(nu.detach() ** 2 * 0.25).sqrt().maximum(nu).reciprocal()

    def _tv_value(self, x, theta):
        w, nu = self._weights_and_nu(theta, x)
        return 0.5 * (w * self._phi(self._grad_images(x), nu)).sum()

    def _tv_grad(self, x, theta):
        w, nu = self._weights_and_nu(theta, x)
        gx = self._grad_images(x)
        # the scalar factors multiply the (N, H, W) slope, not the (N, 2, H, W) field
        return self._div_images(gx * (0.5 * w * self._inverse_slope(gx, nu)).unsqueeze(1))

    def _tv_lipschitz(self, theta):
        """The largest eigenvalue of the regularizer's Hessian is at most ``1/2 max w ||grad||^2 / nu``."""
        return 0.5 * self._max_weight_over_nu(theta) * self._grad_norm2

    # -- the solve --------------------------------------------------------------------
    def _default_x0(self):
        raise NotImplementedError(f"{type(self).__name__}: a smoothed-TV problem must say where its solve starts")

    def solve(self, theta, *, eps, max_iter, x0=None, stop=None):
        """Minimise ``g(., theta)`` to ``||grad_x g|| / mu <= eps`` by accelerated gradient.

        Parameters
        ----------
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.
        eps : float
            Target accuracy: the returned ``x`` satisfies ``||x - x*|| <= eps``
            when ``converged``.
        max_iter : int
            Iteration budget (one gradient per iteration).
        x0 : torch.Tensor, optional
            Warm start (default: the problem's own start, see the class).
        stop : callable, optional
            ``stop(x, bound) -> bool`` at each certified iterate (see
            :meth:`LowerLevel.solve`); True ends the solve early.

        Returns
        -------
        LowerSolution
            The certified point, the iterations spent and whether ``eps`` was met.
        """
        return solve_lower_level(self, theta, eps=eps, max_iter=max_iter, x0=x0, stop=stop,
                                 where=f"{type(self).__name__}.solve")


class SmoothedTVDenoising(_SmoothedTV):
    r"""Smoothed-TV denoising of a batch of images, the lower level of [SMRE24]_.

    .. math::

        g(x, \theta) = \frac{1}{N}\Big(\frac12 \|x - y\|^2
            + \frac12 \sum_{n=1}^N \sum_i w_i\, \phi_\nu(|(\nabla x_n)_i|)\Big)

    with ``phi_nu(t) = sqrt(t^2 + nu^2)`` (``smoothing="sqrt"``, the paper's)
    or the Huber function ``t^2 / (2 nu)`` for ``t <= nu``, ``t - nu / 2``
    beyond (``smoothing="huber"``). Parametrization:

    - ``weights="scalar"``: ``theta = (log lam, log nu)``, every ``w_i = lam``
      (``n_params = 2``);
    - ``weights="pixel"``: ``theta = (log w_1, ..., log w_P, log nu)``, one
      weight per pixel of the ``H x W`` grid (row-major), shared by the ``N``
      images (``n_params = H W + 1``): bilevel learning of space-variant TV.

    ``g`` is ``mu``-strongly convex with ``mu = 1 / N`` and its gradient is
    ``L``-Lipschitz with ``L = (1 + max_i w_i ||\nabla||^2 / (2 nu)) / N``
    (``||\nabla||`` the exact norm of :class:`~tikhon.operators.Gradient`,
    ``phi_nu'' <= 1 / nu``).

    Parameters
    ----------
    y : torch.Tensor or numpy.ndarray
        Noisy images, shape ``(N, H, W)`` (NumPy becomes a float64 CPU tensor;
        a tensor keeps its device and dtype).
    smoothing : {"sqrt", "huber"}
        The smoothed absolute value ``phi_nu``.
    weights : {"scalar", "pixel"}
        One TV weight or one per pixel (see above).

    Notes
    -----
    :meth:`grad` is the closed form ``(x - y + 1/2 \nabla^T(w \phi_\nu'(\nabla
    x))) / N``, built from the operator's autograd-aware products, so it keeps
    the graph in ``x`` and ``theta`` (the hypergradient differentiates it
    again). ``solve`` runs
    ``StronglyConvexAGD`` (in ``tikhon.solvers.bilevel._lower_solver``)
    from ``x0`` (default ``y``).

    References
    ----------
    .. [SMRE24] M. S. Salehi, S. Mukherjee, L. Roberts and M. J. Ehrhardt, "An
       adaptively inexact first-order method for bilevel optimization with
       application to hyperparameter learning", SIAM Journal on Mathematics of
       Data Science, 2025 (arXiv:2308.10098).

    Examples
    --------
    >>> import torch
    >>> from tikhon.solvers.bilevel import SmoothedTVDenoising
    >>> y = torch.rand(2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> lower = SmoothedTVDenoising(y)
    >>> sol = lower.solve(torch.tensor([-3.0, -3.0], dtype=torch.float64), eps=1e-6, max_iter=500)
    >>> sol.converged, lower.n_params
    (True, 2)
    """

    def __init__(self, y, *, smoothing="sqrt", weights="scalar"):
        where = "SmoothedTVDenoising"
        self.y = finite_tensor(y, "y", where, ndim=3)
        self.n_samples = int(self.y.shape[0])
        self.x_shape = tuple(self.y.shape)
        self._setup_regularizer(self.y.shape[1:], smoothing, weights, where)

    def value(self, x, theta):
        """``g(x, theta)`` as a 0-d tensor.

        Parameters
        ----------
        x : torch.Tensor
            Images of the shape of ``y``.
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_theta(theta, "SmoothedTVDenoising.value")
        r = x - self.y
        return (0.5 * (r * r).sum() + self._tv_value(x, theta)) / self.n_samples

    def grad(self, x, theta):
        """``grad_x g(x, theta)`` in closed form, differentiable in ``x`` and ``theta``.

        Parameters
        ----------
        x : torch.Tensor
            Images of the shape of ``y``.
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_theta(theta, "SmoothedTVDenoising.grad")
        return (x - self.y + self._tv_grad(x, theta)) / self.n_samples

    def strong_convexity(self, theta):
        """``mu = 1 / N``.

        Parameters
        ----------
        theta : torch.Tensor
            Parameters (unused: the data term alone is strongly convex).

        Returns
        -------
        float
        """
        return 1.0 / self.n_samples

    def lipschitz(self, theta):
        """``(1 + max w ||grad||^2 / (2 nu)) / N``.

        Parameters
        ----------
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.

        Returns
        -------
        float
        """
        self._check_theta(theta, "SmoothedTVDenoising.lipschitz")
        return (1.0 + self._tv_lipschitz(theta)) / self.n_samples

    def _default_x0(self):
        return self.y.clone()


class SmoothedTVReconstruction(_SmoothedTV):
    r"""Smoothed-TV reconstruction ``A x_n ~ y_n`` for any linear operator, batched.

    .. math::

        g(x, \theta) = \frac{1}{N}\Big(\frac12 \sum_n \|A x_n - y_n\|^2
            + \frac{\mu_0}{2} \|x\|^2
            + \frac12 \sum_n \sum_i w_i\, \phi_\nu(|(\nabla x_n)_i|)\Big)

    with the regularizer and the parametrization of ``theta`` of
    :class:`SmoothedTVDenoising` (the lower level of [SMRE24b]_ with a
    forward operator in the data term). A forward operator of few-view CT has a
    null space, and TV smoothed by ``phi_nu`` is not strongly convex: the
    small Tikhonov term ``mu_floor`` (``mu_0`` above) makes ``g`` strongly
    convex with the certified ``mu = mu_floor / N`` (no bound on the
    smallest singular value of ``A`` is computed or assumed). ``L = (1.02
    ||A||^2 + mu_floor + max w ||\nabla||^2 / (2 nu)) / N`` with ``||A||`` by
    power iteration (the 2 % margin covers its approach from below).

    Parameters
    ----------
    A : LinearOperator
        The forward operator of one image (``A.in_shape`` 2-D), e.g.
        :class:`~tikhon.operators.Radon`.
    y : torch.Tensor or numpy.ndarray
        Data, shape ``(N, *A.out_shape)``.
    smoothing : {"sqrt", "huber"}
        The smoothed absolute value (see :class:`SmoothedTVDenoising`).
    weights : {"scalar", "pixel"}
        One TV weight or one per pixel of ``A.in_shape``.
    mu_floor : float
        The Tikhonov weight ``> 0`` that makes ``g`` strongly convex. It biases
        ``x*`` towards 0 by about ``mu_floor / (sigma^2 + mu_floor)`` along a
        singular direction of ``A`` with singular value ``sigma``: keep it
        well below ``||A||^2``.
    x_init : torch.Tensor or numpy.ndarray, optional
        Where ``solve`` starts when it is given no ``x0``, shape ``(N,
        *A.in_shape)`` (e.g. filtered backprojections); default zeros.

    Notes
    -----
    The condition number ``L / mu`` grows like ``||A||^2 / mu_floor``, so
    the start matters: MAID warm-starts every solve from the previous one,
    and ``x_init`` sets the first.

    References
    ----------
    .. [SMRE24b] M. S. Salehi, S. Mukherjee, L. Roberts and M. J. Ehrhardt, "An
       adaptively inexact first-order method for bilevel optimization with
       application to hyperparameter learning", SIAM Journal on Mathematics of
       Data Science, 2025 (arXiv:2308.10098).
    """

    def __init__(self, A, y, *, smoothing="sqrt", weights="scalar", mu_floor=1e-3, x_init=None):
        where = "SmoothedTVReconstruction"
        if not isinstance(A, LinearOperator):
            raise TypeError(f"{where}: A must be a tikhon LinearOperator, got {type(A).__name__}")
        self.A = A
        self.y = finite_tensor(y, "y", where)
        if tuple(self.y.shape[1:]) != tuple(A.out_shape) or self.y.ndim != len(A.out_shape) + 1:
            raise ValueError(f"{where}: y must have shape (N, *A.out_shape) = (N, "
                             f"{', '.join(map(str, A.out_shape))}), got {tuple(self.y.shape)}")
        self.mu_floor = check_positive(mu_floor, "mu_floor", where)
        self.n_samples = int(self.y.shape[0])
        self.x_shape = (self.n_samples, *A.in_shape)
        self._setup_regularizer(A.in_shape, smoothing, weights, where)
        self._A_norm2 = _NORM_MARGIN * float(A.norm()) ** 2
        if x_init is not None:
            x_init = check_finite_array(x_init, "x_init", where, shape=self.x_shape)
            x_init = x_init.detach().to(dtype=self.y.dtype, device=self.y.device) if is_torch(
                x_init) else finite_tensor(x_init, "x_init", where).to(self.y.dtype)
        self.x_init = x_init

    def _residuals(self, x):
        import torch

        return torch.stack([self.A.forward(xn) for xn in x]) - self.y

    def value(self, x, theta):
        """``g(x, theta)`` as a 0-d tensor.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, *A.in_shape)``.
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_theta(theta, "SmoothedTVReconstruction.value")
        r = self._residuals(x)
        data = 0.5 * (r * r).sum() + 0.5 * self.mu_floor * (x * x).sum()
        return (data + self._tv_value(x, theta)) / self.n_samples

    def grad(self, x, theta):
        """``grad_x g(x, theta)`` in closed form, differentiable in ``x`` and ``theta``.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, *A.in_shape)``.
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.

        Returns
        -------
        torch.Tensor
        """
        import torch

        self._check_theta(theta, "SmoothedTVReconstruction.grad")
        r = self._residuals(x)
        data = torch.stack([self.A.adjoint(rn) for rn in r]) + self.mu_floor * x
        return (data + self._tv_grad(x, theta)) / self.n_samples

    def strong_convexity(self, theta):
        """``mu = mu_floor / N``.

        Parameters
        ----------
        theta : torch.Tensor
            Parameters (unused).

        Returns
        -------
        float
        """
        return self.mu_floor / self.n_samples

    def lipschitz(self, theta):
        """``(1.02 ||A||^2 + mu_floor + max w ||grad||^2 / (2 nu)) / N``.

        Parameters
        ----------
        theta : torch.Tensor
            Parameters, shape ``(n_params,)``.

        Returns
        -------
        float
        """
        self._check_theta(theta, "SmoothedTVReconstruction.lipschitz")
        return (self._A_norm2 + self.mu_floor + self._tv_lipschitz(theta)) / self.n_samples

    def _default_x0(self):
        import torch

        if self.x_init is not None:
            return self.x_init.clone()
        return torch.zeros(self.x_shape, dtype=self.y.dtype, device=self.y.device)
