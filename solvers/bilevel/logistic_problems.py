"""Multinomial logistic regression with one l2 penalty per weight, and its validation loss.

The lower level learns the weights ``W`` (features x classes) of a softmax
classifier on training data; the upper level is the cross-entropy of ``W`` on
held-out data. Learning one penalty per weight is the classic many-parameter
test of hyperparameter optimization (Pedregosa's HOAG, the MAID paper's
third experiment).
"""

from __future__ import annotations

import math

import numpy as np

from tikhon._core.arrays import is_torch, require_torch
from tikhon._core.checks import check_finite_array, check_positive_int

from ._lower_solver import solve_lower_level
from .protocol import LowerLevel, UpperLevel, finite_tensor

__all__ = ["CrossEntropy", "L2MultinomialLogistic"]


def _features(X, name, where):
    X = finite_tensor(X, name, where)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where}: {name} must be a non-empty 2-D array (samples, features), "
                         f"got shape {tuple(X.shape)}")
    return X


def _labels(y, n_samples, n_classes, name, where):
    """Integer labels in ``[0, n_classes)`` as a one-hot tensor ``(n, K)`` of dtype ``float64``."""
    torch = require_torch()
    if is_torch(y):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"{where}: {name} must hold integer class labels, got {y.dtype}")
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n_samples,):
        raise ValueError(f"{where}: {name} must have shape ({n_samples},), got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{where}: {name} must lie in [0, {n_classes}), got labels from "
                         f"{y.min()} to {y.max()}")
    return torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.int64), n_classes)


def _mean_cross_entropy(X, Y, W):
    """``mean_i -log softmax(x_i W)_{y_i}`` (log-sum-exp: no overflow)."""
    Z = X @ W
    return (Z.logsumexp(dim=1) - (Z * Y).sum(1)).mean()


def _cross_entropy_grad(X, Y, W):
    """``X^T (softmax(X W) - Y) / n``."""
    return X.T @ ((X @ W).softmax(dim=1) - Y) / X.shape[0]


def _spectral_norm(X):
    import torch

    return float(torch.linalg.matrix_norm(X.detach().double().cpu(), ord=2))


class L2MultinomialLogistic(LowerLevel):
    r"""Mean cross-entropy of a softmax classifier plus one l2 penalty per weight.

    .. math::

        g(W, \theta) = \frac1n \sum_{i=1}^n \Big(\log \sum_k e^{(x_i W)_k}
            - (x_i W)_{y_i}\Big) + \frac12 \sum_j e^{\theta_j} W_j^2

    for ``W`` of shape ``(d, K)`` (features x classes) and ``theta`` of shape
    ``(d K,)``, one log-penalty per weight in ``W``'s row-major order. There
    is no intercept: append a column of ones to ``X`` for one (its weights
    are then penalized by their own entries of ``theta``). ``g`` is
    ``mu``-strongly convex with ``mu = min_j e^{theta_j}``, and its gradient
    ``X^T (softmax(X W) - Y) / n + e^theta * W`` is ``L``-Lipschitz with ``L
    = ||X||_2^2 / (2 n) + max_j e^{theta_j}`` (the softmax Hessian ``diag p -
    p p^T`` is at most ``1/2``, [Boh92]_). Learning one penalty per weight
    is the many-hyperparameter test problem of [Ped16]_.

    Parameters
    ----------
    X : torch.Tensor or numpy.ndarray
        Training features, shape ``(n, d)`` (NumPy becomes float64).
    y : array of int
        Training labels in ``[0, n_classes)``, shape ``(n,)``.
    n_classes : int
        Number of classes ``K >= 2``.

    Notes
    -----
    With every ``theta_j = log alpha`` this is scikit-learn's
    ``LogisticRegression(C=1 / (n alpha), fit_intercept=False)`` with the
    multinomial loss. :meth:`solve` runs the accelerated gradient of
    ``StronglyConvexAGD`` (in ``tikhon.solvers.bilevel._lower_solver``) from
    ``x0`` (default zeros).

    References
    ----------
    .. [Boh92] D. Böhning, "Multinomial logistic regression algorithm", Annals of
       the Institute of Statistical Mathematics 44, 197-200, 1992.
    .. [Ped16] F. Pedregosa, "Hyperparameter optimization with approximate
       gradient", ICML 2016.

    Examples
    --------
    >>> import torch
    >>> from tikhon.solvers.bilevel import L2MultinomialLogistic
    >>> X = torch.randn(30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> lower = L2MultinomialLogistic(X, torch.arange(30) % 3, 3)
    >>> sol = lower.solve(torch.zeros(lower.n_params, dtype=torch.float64), eps=1e-6, max_iter=500)
    >>> sol.converged, tuple(sol.x.shape)
    (True, (4, 3))
    """

    def __init__(self, X, y, n_classes):
        where = "L2MultinomialLogistic"
        self.n_classes = check_positive_int(n_classes, "n_classes", where)
        if self.n_classes < 2:
            raise ValueError(f"{where}: n_classes must be at least 2, got {n_classes}")
        self.X = _features(X, "X", where)
        self.n_samples, self.n_features = (int(s) for s in self.X.shape)
        self.Y = _labels(y, self.n_samples, self.n_classes, "y", where).to(
            dtype=self.X.dtype, device=self.X.device)
        self.x_shape = (self.n_features, self.n_classes)
        self.n_params = self.n_features * self.n_classes
        self._loss_lipschitz = _spectral_norm(self.X) ** 2 / (2 * self.n_samples)

    def _check_theta(self, theta, where, finite=False):
        if not is_torch(theta):
            raise TypeError(f"{where}: theta must be a torch tensor, got {type(theta).__name__}")
        if theta.ndim != 1 or theta.shape[0] != self.n_params:
            raise ValueError(f"{where}: theta must have shape ({self.n_params},) (one entry per "
                             f"weight of the {self.n_features} x {self.n_classes} matrix W), got "
                             f"{tuple(theta.shape)}")
        if finite:
            check_finite_array(theta.detach(), "theta", where)
        return theta

    def _penalties(self, theta, like):
        return theta.to(dtype=like.dtype, device=like.device).exp().reshape(self.x_shape)

    def value(self, x, theta):
        """``g(W, theta)`` as a 0-d tensor.

        Parameters
        ----------
        x : torch.Tensor
            The weights ``W``, shape ``(d, K)``.
        theta : torch.Tensor
            Log-penalties, shape ``(d K,)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_theta(theta, "L2MultinomialLogistic.value")
        return (_mean_cross_entropy(self.X, self.Y, x)
                + 0.5 * (self._penalties(theta, x) * x * x).sum())

    def grad(self, x, theta):
        """``grad_W g`` in closed form, differentiable in ``W`` and ``theta``.

        Parameters
        ----------
        x : torch.Tensor
            The weights ``W``, shape ``(d, K)``.
        theta : torch.Tensor
            Log-penalties, shape ``(d K,)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_theta(theta, "L2MultinomialLogistic.grad")
        return _cross_entropy_grad(self.X, self.Y, x) + self._penalties(theta, x) * x

    def strong_convexity(self, theta):
        """``mu = min_j e^{theta_j}``.

        Parameters
        ----------
        theta : torch.Tensor
            Log-penalties, shape ``(d K,)``.

        Returns
        -------
        float
        """
        self._check_theta(theta, "L2MultinomialLogistic.strong_convexity")
        return math.exp(float(theta.detach().min()))

    def lipschitz(self, theta):
        """``||X||_2^2 / (2 n) + max_j e^{theta_j}``.

        Parameters
        ----------
        theta : torch.Tensor
            Log-penalties, shape ``(d K,)``.

        Returns
        -------
        float
        """
        self._check_theta(theta, "L2MultinomialLogistic.lipschitz")
        return self._loss_lipschitz + math.exp(float(theta.detach().max()))

    def solve(self, theta, *, eps, max_iter, x0=None, stop=None):
        """Minimise ``g(., theta)`` to ``||grad_W g|| / mu <= eps`` by accelerated gradient.

        Parameters
        ----------
        theta : torch.Tensor
            Log-penalties, shape ``(d K,)``.
        eps : float
            Target accuracy (``||W - W*|| <= eps`` when ``converged``).
        max_iter : int
            Iteration budget (one gradient per iteration).
        x0 : torch.Tensor, optional
            Warm start of shape ``(d, K)`` (default zeros).
        stop : callable, optional
            ``stop(x, bound) -> bool`` at each certified iterate (see
            :meth:`LowerLevel.solve`); True ends the solve early.

        Returns
        -------
        LowerSolution
            The certified point, the iterations spent and whether ``eps`` was met.
        """
        return solve_lower_level(self, theta, eps=eps, max_iter=max_iter, x0=x0, stop=stop,
                                 where="L2MultinomialLogistic.solve")

    def _default_x0(self):
        import torch

        return torch.zeros(self.x_shape, dtype=self.X.dtype, device=self.X.device)


class CrossEntropy(UpperLevel):
    """The upper level of :class:`L2MultinomialLogistic`: the mean cross-entropy on held-out data.

    ``f(W) = mean_i -log softmax(x_i W)_{y_i}`` over the validation set; its
    gradient is ``||X_val||_2^2 / (2 n_val)``-Lipschitz (``lipschitz``).

    Parameters
    ----------
    X_val : torch.Tensor or numpy.ndarray
        Validation features, shape ``(n_val, d)``.
    y_val : array of int
        Validation labels in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes (default ``max(y_val) + 1``; pass the lower level's
        when a class may be missing from the validation set).

    Examples
    --------
    >>> import torch
    >>> from tikhon.solvers.bilevel import CrossEntropy
    >>> f = CrossEntropy(torch.eye(3, dtype=torch.float64), torch.arange(3))
    >>> round(float(f.value(torch.zeros(3, 3, dtype=torch.float64))), 4)  # log 3
    1.0986
    """

    def __init__(self, X_val, y_val, n_classes=None):
        where = "CrossEntropy"
        self.X = _features(X_val, "X_val", where)
        n = int(self.X.shape[0])
        if n_classes is None:
            labels = y_val.detach().cpu().numpy() if is_torch(y_val) else np.asarray(y_val)
            if labels.dtype.kind not in "iu":
                raise TypeError(f"{where}: y_val must hold integer class labels, got dtype "
                                f"{labels.dtype}")
            n_classes = int(labels.max()) + 1 if labels.size else 2
        self.n_classes = check_positive_int(n_classes, "n_classes", where)
        self.Y = _labels(y_val, n, self.n_classes, "y_val", where).to(
            dtype=self.X.dtype, device=self.X.device)
        self.labels = self.Y.argmax(1)
        self.lipschitz = _spectral_norm(self.X) ** 2 / (2 * n)

    def _check_x(self, x, where):
        shape = (int(self.X.shape[1]), self.n_classes)
        if tuple(x.shape) != shape:
            raise ValueError(f"{where}: W must have shape {shape}, got {tuple(x.shape)}")

    def value(self, x):
        """``f(W)`` as a 0-d tensor.

        Parameters
        ----------
        x : torch.Tensor
            The weights ``W``, shape ``(d, K)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_x(x, "CrossEntropy.value")
        return _mean_cross_entropy(self.X, self.Y, x)

    def grad(self, x):
        """``grad f(W) = X_val^T (softmax(X_val W) - Y_val) / n_val``.

        Parameters
        ----------
        x : torch.Tensor
            The weights ``W``, shape ``(d, K)``.

        Returns
        -------
        torch.Tensor
        """
        self._check_x(x, "CrossEntropy.grad")
        return _cross_entropy_grad(self.X, self.Y, x)

    def accuracy(self, x):
        """The fraction of validation samples whose most probable class under ``W`` is their label.

        Parameters
        ----------
        x : torch.Tensor
            The weights ``W``, shape ``(d, K)``.

        Returns
        -------
        float
        """
        self._check_x(x, "CrossEntropy.accuracy")
        return float(((self.X @ x).argmax(1) == self.labels).double().mean())
