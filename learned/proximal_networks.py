"""Learned proximal networks: ``f = grad psi`` for an input-convex ``psi`` is a proximal operator.

For a convex ``psi`` the map ``f = grad psi`` is exactly the proximal operator
of the (possibly non-convex) regularizer ``R(x) = psi*(x) - ||x||^2 / 2``
(Gribonval and Nikolova), so a network of this form is a genuine prox: a
denoiser that plugs into :func:`~tikhon.solvers.admm` with a known objective.
:class:`LearnedProximalNetwork` is the :class:`~tikhon.learned.ICNN` whose
output is that gradient; :meth:`LearnedProximalNetwork.regularizer` evaluates
``R`` by inverting ``f`` (a smooth convex problem, solved by
:func:`~tikhon.solvers.fista`), and :meth:`LearnedProximalNetwork.as_prox`
wraps it as a :class:`~tikhon.operators.prox.Functional` with ``fixed_step``:
the network's prox has the strength it was trained at and ignores ``tau``.
:func:`train_lpn` trains it by proximal matching (:func:`proximal_matching_loss`),
whose minimiser tends to the MAP denoiser as ``gamma`` decreases, where the
squared error gives the MMSE denoiser. :func:`save_lpn` and :func:`load_lpn`
store it as safetensors with JSON metadata: loading runs no code.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tikhon.learned._model_files import read_model_file, write_model_file
from tikhon.learned.icnn import ICNN
from tikhon.operators.prox.base import Functional
from tikhon.operators.prox.indicators import Zero
from tikhon.operators.prox.smooth import smooth_functional
from tikhon.solvers.first_order import fista

from tikhon._core.arrays import is_torch, to_float
from tikhon._core.checks import (
    check_bool,
    check_choice,
    check_finite_array,
    check_int,
    check_positive,
    check_positive_int,
    check_tolerance,
)
from tikhon._core.loop import warn_unconverged

__all__ = ["LearnedProximalNetwork", "load_lpn", "proximal_matching_loss", "save_lpn", "train_lpn"]

_FORMAT = "tikhon-lpn/1"
_LOSSES = ("proximal_matching", "mse", "l1")
# the authors' train.py: gamma_min = 0.08 sqrt(d), four stages at 8, 4, 2, 1 times it
_GAMMA_MIN_PER_SQRT_DIM = 0.08
_GAMMA_STAGES = (8.0, 4.0, 2.0, 1.0)


class LearnedProximalNetwork(ICNN):
    r"""A learned proximal network ([FBS24]): ``f(x) = grad psi(x)`` for an :class:`~tikhon.learned.ICNN` ``psi``.

    Because ``psi`` is convex, ``f`` is the proximal operator of

    .. math::

        R(x) = \psi^*(x) - \tfrac12 \|x\|^2
             = \langle y, x\rangle - \tfrac12\|x\|^2 - \psi(y), \qquad
        y = \arg\min_y \psi(y) - \langle x, y\rangle \;(\text{i.e. } f(y) = x),

    that is ``f(y) = argmin_x R(x) + ||x - y||^2 / 2`` for every ``y``
    ([GN20]); ``R`` need not be convex. Trained as a denoiser at noise level
    ``sigma`` by :func:`train_lpn`, ``R`` approximates ``-sigma^2 log p``
    of the signals' prior (proximal matching) up to a constant.

    Parameters
    ----------
    in_dim : int
        Vector length (``kind="dense"``) or image channels (``kind="conv"``).
    hidden : int
        Width of the hidden layers.
    layers : int
        Number of non-negative hidden-to-hidden maps.
    kind : {"dense", "conv"}
        Fully connected (vectors, ``(batch, in_dim)``) or convolutional
        (images ``(N, in_dim, H, W)`` of any size).
    beta : float
        Softplus sharpness (10 in the authors' 1-D model).
    alpha : float
        Weight of ``alpha ||x||^2`` in ``psi``; ``alpha > 0`` makes ``f``
        invertible on the whole space, so ``R`` is finite everywhere (with
        ``alpha = 0`` it is ``+inf`` outside the range of ``f``).
    kernel_size : int
        Convolution kernel size (``kind="conv"``).
    init : {"default", "small"}, optional
        Initialisation of the non-negative weights (see :class:`~tikhon.learned.ICNN`).
    seed : int
        Seed of the initialisation.

    See Also
    --------
    tikhon.learned.train_lpn : training by proximal matching.
    tikhon.solvers.admm : plug-and-play with :meth:`as_prox`.

    Notes
    -----
    ``forward`` keeps the graph of the gradient (``create_graph``) when the
    module is training or its input requires grad, so that a loss on the
    output differentiates through ``grad psi`` (double backward).

    References
    ----------
    .. [FBS24] Z. Fang, S. Buchanan and J. Sulam, "What's in a prior? Learned
       proximal networks for inverse problems", ICLR 2024.
    .. [GN20] R. Gribonval and M. Nikolova, "A characterization of proximity
       operators", J. Math. Imaging Vis. 62, 2020.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import LearnedProximalNetwork
    >>> lpn = LearnedProximalNetwork(1, hidden=8, layers=2, alpha=0.1)
    >>> x = torch.linspace(-2, 2, 5).reshape(-1, 1)
    >>> lpn(x).shape, lpn.regularizer(x).shape
    (torch.Size([5, 1]), torch.Size([5]))
    """

    def forward(self, x):
        """The prox ``f(x) = grad psi(x)``.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_dim)`` (dense) or ``(N, in_dim, H, W)`` (conv).

        Returns
        -------
        torch.Tensor
            Same shape as ``x``.

        Raises
        ------
        TypeError
            If ``x`` is not a floating torch tensor (NumPy arrays go through
            :meth:`as_prox`).
        """
        if not torch.is_tensor(x):
            raise TypeError(f"{type(self).__name__}: x must be a torch tensor, got {type(x).__name__} "
                            "(for NumPy arrays use as_prox().prox)")
        return self.gradient(x)

    # -- the regularizer ---------------------------------------------------------
    def _net_tensor(self, x):
        """``x`` as a detached tensor of the parameters' dtype and device."""
        p = self.first.weight
        if is_torch(x):
            return x.detach().to(device=p.device, dtype=p.dtype)
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=p.device, dtype=p.dtype)

    def _invert(self, x, tol, max_iter):
        """``y`` with ``f(y) = x`` (``argmin psi(y) - <x, y>``) by FISTA with backtracking."""
        def conjugate_objective(y):
            with torch.enable_grad():
                yg = y.detach().requires_grad_(True)
                value = self.potential(yg).sum() - (yg * x).sum()
                (grad,) = torch.autograd.grad(value, yg)
            return value.detach(), grad

        scale = max(float(torch.linalg.vector_norm(x)), 1.0)
        # the criterion is ||grad psi(y) - x|| at the gradient step's point (Zero's prox is
        # the identity), made relative by the scale
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the status is reported in info instead
            res = fista(smooth_functional(conjugate_objective), Zero(), x.clone(), tol=tol * scale,
                        max_iter=max_iter, criterion="gradient_mapping",
                        record_objective=False)
        y = res.x.detach()
        with torch.no_grad():
            r = (self.gradient(y, create_graph=False) - x).reshape(x.shape[0], -1)
            residuals = torch.linalg.vector_norm(r, dim=1) / scale
        residual = float(torch.linalg.vector_norm(residuals))
        return y, {"residual": residual, "residuals": residuals, "status": res.status,
                   "iterations": res.n_iter}

    def regularizer(self, x, *, tol=1e-5, max_iter=2000, full_output=False):
        """The learned regularizer ``R(x) = <y, x> - ||x||^2 / 2 - psi(y)`` with ``f(y) = x``.

        ``y`` minimises the smooth convex ``psi(y) - <x, y>`` (FISTA with
        backtracking, from ``y = x``), stopped when the inversion residual
        ``||f(y) - x||`` is at most ``tol * max(||x||, 1)`` (norms over the
        whole batch). ``R`` is defined up to the constant of ``psi``. It is
        computed in the network's dtype (a float64 ``x`` given to a float32
        network is rounded to float32).

        When the inversion stops unconverged (with ``alpha = 0`` the range of
        ``f`` is bounded and an ``x`` outside it has no inverse: ``R(x) =
        +inf``), a :class:`~tikhon.solvers.ConvergenceWarning` names the
        samples left, and ``R`` is ``+inf`` for every sample whose own
        residual ``||f(y_i) - x_i|| / max(||x||, 1)`` is above ``tol``.

        Parameters
        ----------
        x : array or tensor
            In the network's layout: ``(batch, in_dim)`` (dense) or ``(N, C, H, W)`` (conv).
        tol : float
            Relative tolerance of the inversion residual.
        max_iter : int
            Iteration budget of the inversion.
        full_output : bool
            Also return the inversion's report.

        Returns
        -------
        R : array or tensor
            ``(batch,)``, one value per sample (``+inf`` where the inversion
            did not converge): NumPy (float64) for a NumPy ``x``, a detached
            tensor of the network's dtype on ``x``'s device for a tensor.
        info : dict
            Only with ``full_output``: ``y`` (the inverse, same type as
            ``R``), ``residual`` (``||f(y) - x|| / max(||x||, 1)``),
            ``residuals`` (per sample, ``||f(y_i) - x_i|| / max(||x||, 1)``,
            same type as ``R``), ``converged`` (per sample, boolean),
            ``status`` (the inversion's :class:`~tikhon.solvers.Result` status:
            ``"converged"``, or e.g. ``"max_iter"``: with ``alpha = 0`` an
            ``x`` outside the range of ``f`` is not reached) and ``iterations``.
        """
        where = f"{type(self).__name__}.regularizer"
        x = check_finite_array(x, "x", where)
        tol = check_tolerance(tol, "tol", where)
        max_iter = check_positive_int(max_iter, "max_iter", where)
        full_output = check_bool(full_output, "full_output", where)
        xt = self._net_tensor(x)
        self._check_input(xt, where)
        y, info = self._invert(xt, tol, max_iter)
        with torch.no_grad():
            b = xt.shape[0]
            R = ((y * xt).reshape(b, -1).sum(1) - 0.5 * xt.reshape(b, -1).square().sum(1)
                 - self.potential(y))
            converged = info["residuals"] <= tol
            if info["status"] != "converged":
                # a sample whose own residual is within tol is a genuine inverse; the others
                # have no value (x outside the range of f, or not reached)
                R = torch.where(converged, R, torch.full_like(R, math.inf))
        if not bool(converged.all()):
            left = torch.nonzero(~converged).ravel().tolist()
            worst = float(info["residuals"].max())
            warn_unconverged(f"{where}: the inversion stopped with status {info['status']!r}; samples "
                             f"{left[:10]}{'...' if len(left) > 10 else ''} ({len(left)} of {b}) have "
                             f"residual above tol = {tol:g} (worst {worst:.3g}): their R is +inf")
        info["converged"] = converged
        if is_torch(x):
            R, y = R.to(x.device), y.to(x.device)
            info["residuals"], info["converged"] = info["residuals"].to(x.device), converged.to(x.device)
        else:
            R = R.cpu().double().numpy()
            y = y.cpu().double().numpy()
            info["residuals"] = info["residuals"].cpu().double().numpy()
            info["converged"] = converged.cpu().numpy()
        if full_output:
            info["y"] = y
            return R, info
        return R

    def as_prox(self, *, tol=1e-5, max_iter=2000):
        """This network as a :class:`~tikhon.operators.prox.Functional` (a fixed-step prox).

        ``prox(x, tau)`` is ``f(x)`` whatever ``tau`` (``fixed_step = True``):
        :func:`~tikhon.solvers.admm` accepts it (plug-and-play, the strength
        set by the training noise level and ADMM's ``rho``), while
        :func:`~tikhon.solvers.ista`, :func:`~tikhon.solvers.fista` and
        :func:`~tikhon.solvers.chambolle_pock`, which need ``prox_{tau R}`` for
        varying ``tau``, refuse it. Its value is the sum of
        :meth:`regularizer` over the samples (a Python float, no graph; an
        inversion per call: pass ``record_objective=False`` to ADMM to skip it
        at every check; ``+inf`` with a warning if an inversion fails). A
        PnP-ADMM fixed point at penalty ``rho`` is stationary for
        ``F + rho R``, and that is the objective ADMM records. The inversion's
        tolerance is relative to the whole array's norm. It is not convex
        (``is_convex = False``).

        Parameters
        ----------
        tol : float
            Tolerance of the inversion behind the value.
        max_iter : int
            Iteration budget of that inversion.

        Returns
        -------
        Functional
            Works on NumPy arrays (through torch on the network's device and
            back, computed in the network's dtype, returned in the input's) and on tensors (graph kept when the input
            requires grad). Shapes: any shape for a dense network with
            ``in_dim = 1`` (an entrywise prior); ``(..., in_dim)`` for a
            dense one; ``(H, W)`` (one channel), ``(C, H, W)`` or
            ``(N, C, H, W)`` for a convolutional one.
        """
        where = f"{type(self).__name__}.as_prox"
        return _LPNProx(self, check_tolerance(tol, "tol", where),
                        check_positive_int(max_iter, "max_iter", where))


class _LPNProx(Functional):
    """The functional of :meth:`LearnedProximalNetwork.as_prox` (fixed step, non-convex)."""

    fixed_step = True
    is_convex = False

    def __init__(self, lpn, tol, max_iter):
        self.lpn, self.tol, self.max_iter = lpn, tol, max_iter

    def _layout(self, x):
        """``x`` reshaped to the network's batch layout (raises naming the accepted shapes)."""
        lpn, shape = self.lpn, tuple(x.shape)
        d = lpn.in_dim
        if lpn.kind == "dense":
            if d == 1:
                return (-1, 1)
            if len(shape) >= 1 and shape[-1] == d:
                return (-1, d)
            raise ValueError(f"{self._label()}: x must have shape (..., {d}), got {shape}")
        if len(shape) == 2 and d == 1:
            return (1, 1) + shape
        if len(shape) == 3 and shape[0] == d:
            return (1,) + shape
        if len(shape) == 4 and shape[1] == d:
            return shape
        raise ValueError(f"{self._label()}: x must have shape (H, W) (one channel), ({d}, H, W) "
                         f"or (N, {d}, H, W), got {shape}")

    def _prox(self, x, tau):
        layout = self._layout(x)
        p = self.lpn.first.weight
        if is_torch(x):
            xt = x.to(device=p.device, dtype=p.dtype).reshape(layout)
            keep = x.requires_grad and torch.is_grad_enabled()
            out = self.lpn.gradient(xt, create_graph=keep)
            return out.reshape(x.shape).to(device=x.device, dtype=x.dtype)
        xt = self.lpn._net_tensor(x).reshape(layout)
        out = self.lpn.gradient(xt, create_graph=False)
        return out.cpu().numpy().astype(x.dtype, copy=False).reshape(x.shape)

    def _call(self, x):
        xt = self.lpn._net_tensor(x).reshape(self._layout(x))
        # regularizer warns (ConvergenceWarning) and gives +inf for an unconverged sample
        return to_float(self.lpn.regularizer(xt, tol=self.tol, max_iter=self.max_iter).sum())

    def _label(self):
        return "LearnedProximalNetwork.as_prox()"


def proximal_matching_loss(output, target, gamma):
    """The proximal matching loss ``mean_i [1 - exp(-||output_i - target_i||^2 / gamma^2)]``.

    As ``gamma -> 0`` its expected value's minimiser over denoisers tends to
    the MAP estimate (the posterior's mode), where the squared error gives the
    posterior mean (MMSE) ([FBS24]). The norm runs over all axes but the first
    (the sample axis); the loss is not normalised by the dimension ``d``:
    scale ``gamma`` with ``sqrt(d)`` instead (the default schedule of
    :func:`train_lpn` does, as the authors' code).

    Parameters
    ----------
    output, target : torch.Tensor
        Same shape, leading sample axis.
    gamma : float
        The loss's scale, ``> 0``.

    Returns
    -------
    torch.Tensor
        0-d.

    References
    ----------
    .. [FBS24] Z. Fang, S. Buchanan and J. Sulam, "What's in a prior? Learned
       proximal networks for inverse problems", ICLR 2024.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import proximal_matching_loss
    >>> out, tgt = torch.zeros(2, 3), torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    >>> round(float(proximal_matching_loss(out, tgt, 1.0)), 6)  # (0 + 1 - e^-1) / 2
    0.31606
    """
    where = "proximal_matching_loss"
    for name, t in (("output", output), ("target", target)):
        if not torch.is_tensor(t):
            raise TypeError(f"{where}: {name} must be a torch tensor, got {type(t).__name__}")
    if output.shape != target.shape or output.ndim < 1:
        raise ValueError(f"{where}: output and target must have the same shape with a sample axis, "
                         f"got {tuple(output.shape)} and {tuple(target.shape)}")
    gamma = check_positive(gamma, "gamma", where)
    d2 = (output - target).reshape(output.shape[0], -1).square().sum(dim=1)
    return (1.0 - torch.exp(-d2 / (gamma * gamma))).mean()


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
def _stage_lengths(n, k):
    return [len(part) for part in np.array_split(np.arange(n), k)]


def _as_sequence(value, name, where):
    if isinstance(value, (list, tuple, np.ndarray)):
        values = [check_positive(v, f"{name}[{i}]", where) for i, v in enumerate(value)]
        if not values:
            raise ValueError(f"{where}: {name} must not be empty")
        return values
    return None


def _plan(lpn, sample_dim, *, loss, n_steps, pretrain_steps, gamma_schedule, lr, pretrain_lr, where):
    """The training stages: a list of ``(loss, steps, lr, gamma)``."""
    lrs = _as_sequence(lr, "lr", where)
    if lrs is None:
        lrs = [check_positive(lr, "lr", where)]
    stages = []
    if loss == "proximal_matching":
        pretrain = n_steps if pretrain_steps is None else check_int(pretrain_steps, "pretrain_steps", where,
                                                                     minimum=0)
        if pretrain:
            stages.append(("l1", pretrain, check_positive(pretrain_lr, "pretrain_lr", where), None))
        if gamma_schedule is None:
            gmin = _GAMMA_MIN_PER_SQRT_DIM * math.sqrt(sample_dim)
            gammas = [gmin * s for s in _GAMMA_STAGES]
        else:
            gammas = _as_sequence(gamma_schedule, "gamma_schedule", where)
            if gammas is None:
                raise TypeError(f"{where}: gamma_schedule must be a sequence of positive floats or None")
        if len(lrs) == 1:
            lrs = lrs * len(gammas)
        if len(lrs) != len(gammas):
            raise ValueError(f"{where}: lr has {len(lrs)} values but gamma_schedule {len(gammas)} stages")
        for n, step_lr, gamma in zip(_stage_lengths(n_steps, len(gammas)), lrs, gammas):
            stages.append(("proximal_matching", n, step_lr, gamma))
    else:
        if pretrain_steps:
            raise ValueError(f"{where}: pretrain_steps (l1 pre-training) is for loss='proximal_matching' "
                             f"only, got {pretrain_steps} with loss={loss!r}")
        if gamma_schedule is not None:
            raise ValueError(f"{where}: gamma_schedule is for loss='proximal_matching' only")
        for n, step_lr in zip(_stage_lengths(n_steps, len(lrs)), lrs):
            stages.append((loss, n, step_lr, None))
    return [s for s in stages if s[1] > 0]


def _loss_value(kind, out, target, gamma):
    if kind == "l1":
        return (out - target).abs().mean()
    if kind == "mse":
        return (out - target).square().mean()
    return proximal_matching_loss(out, target, gamma)


def _batch_source(lpn, sampler_or_data, where):
    """A function ``draw(n, generator) -> clean batch`` on the network's device and dtype."""
    p = lpn.first.weight
    if callable(sampler_or_data) and not is_torch(sampler_or_data):
        sampler = sampler_or_data

        def draw(n, gen):
            x = sampler(n, gen)
            if not torch.is_tensor(x):
                raise TypeError(f"{where}: the sampler must return a torch tensor, got {type(x).__name__}")
            if x.shape[0] != n:
                raise ValueError(f"{where}: the sampler returned {x.shape[0]} samples for n={n}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{where}: the sampler returned non-finite samples (NaN or inf)")
            return x.to(device=p.device, dtype=p.dtype)

        return draw
    data = check_finite_array(sampler_or_data, "sampler_or_data", where)
    data = lpn._net_tensor(data)
    if data.shape[0] < 1:
        raise ValueError(f"{where}: sampler_or_data holds no samples")
    lpn._check_input(data[:1], where)

    def draw(n, gen):
        idx = torch.randint(0, data.shape[0], (n,), generator=gen)
        return data[idx.to(data.device)]

    return draw


def _noise_levels(sigma, where):
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(f"{where}: sigma must be a float or a pair (lo, hi), got {sigma!r}")
        lo, hi = (check_positive(s, "sigma", where) for s in sigma)
        if lo > hi:
            raise ValueError(f"{where}: sigma = (lo, hi) needs lo <= hi, got {sigma!r}")
        return lo, hi
    s = check_positive(sigma, "sigma", where)
    return s, s


def train_lpn(lpn, sampler_or_data, *, sigma, loss="proximal_matching", n_steps=2000, pretrain_steps=None,
              gamma_schedule=None, batch_size=64, lr=1e-4, pretrain_lr=1e-3, seed=0, progress=True,
              checkpoint=None, checkpoint_every=1000):
    """Train a learned proximal network as a denoiser (Adam, weights clamped after every step).

    Each step draws clean samples ``x``, adds Gaussian noise ``y = x + sigma
    n`` and takes an Adam step on the loss between ``lpn(y)`` and ``x``, then
    :meth:`~tikhon.learned.ICNN.clamp_weights`. ``loss="proximal_matching"``
    follows [FBS24]: ``pretrain_steps`` of l1 loss (at ``pretrain_lr``), then
    :func:`proximal_matching_loss` with ``gamma`` decreased in equal-length
    stages over ``n_steps``; ``"mse"`` gives the MMSE denoiser, ``"l1"`` the
    posterior median.

    Parameters
    ----------
    lpn : LearnedProximalNetwork
        Trained in place.
    sampler_or_data : callable or array or tensor
        ``sampler(n, generator) -> tensor`` of ``n`` clean samples in the
        network's layout (drawn with the ``torch.Generator`` it is given), or
        the clean samples themselves (mini-batches drawn with replacement).
    sigma : float or tuple of float
        The noise level, or ``(lo, hi)`` for a level drawn uniformly per sample.
    loss : {"proximal_matching", "mse", "l1"}
        The training loss.
    n_steps : int
        Steps of the main phase (after the pre-training).
    pretrain_steps : int, optional
        l1 pre-training steps (``"proximal_matching"`` only; default
        ``n_steps``, the authors' 20000 + 20000; 0 for none).
    gamma_schedule : sequence of float, optional
        ``gamma`` of each stage of the main phase. Default: the authors'
        ``gamma_min * (8, 4, 2, 1)`` with ``gamma_min = 0.08 sqrt(d)`` (``d``
        the entries per sample); their 1-D experiment used 0.5, 0.4, 0.3, 0.2, 0.1.
    batch_size : int
        Samples per step.
    lr : float or sequence of float
        Adam's learning rate in the main phase: one value, or one per stage
        (for ``"mse"``/``"l1"`` the main phase is split into ``len(lr)``
        equal stages).
    pretrain_lr : float
        Learning rate of the l1 pre-training.
    seed : int
        Seeds the sampling and the noise (a ``torch.Generator`` on the CPU).
    progress : bool
        Show a tqdm bar.
    checkpoint : str or Path, optional
        Write :func:`save_lpn` there every ``checkpoint_every`` steps and at
        the end (atomically: a partial file never replaces a good one).
    checkpoint_every : int
        Steps between checkpoints.

    Returns
    -------
    dict
        ``loss`` (every step's value), ``stages`` (list of dicts: ``loss``,
        ``steps``, ``lr``, ``gamma``, ``final_loss`` (mean of its last 10%
        of steps)), ``steps``, ``time`` (s), ``seed``, ``status``
        (``"completed"``, or ``"nonfinite"`` when a loss was NaN or inf:
        training stops there with a warning, before the optimizer step, so
        the model keeps its last finite weights; the final checkpoint is then
        not written, the last periodic one is kept).

    Raises
    ------
    TypeError, ValueError
        For a model that is not a :class:`LearnedProximalNetwork`, samples of
        the wrong layout, or bad options (named).

    References
    ----------
    .. [FBS24] Z. Fang, S. Buchanan and J. Sulam, "What's in a prior? Learned
       proximal networks for inverse problems", ICLR 2024.
    """
    where = "train_lpn"
    if not isinstance(lpn, LearnedProximalNetwork):
        raise TypeError(f"{where}: lpn must be a LearnedProximalNetwork, got {type(lpn).__name__}")
    check_choice(loss, _LOSSES, "loss", where)
    n_steps = check_positive_int(n_steps, "n_steps", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    seed = check_int(seed, "seed", where, minimum=0)
    progress = check_bool(progress, "progress", where)
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every", where)
    lo, hi = _noise_levels(sigma, where)
    draw = _batch_source(lpn, sampler_or_data, where)
    gen = torch.Generator().manual_seed(seed)
    probe = draw(1, torch.Generator().manual_seed(seed))
    lpn._check_input(probe, where)
    sample_dim = probe[0].numel()
    stages = _plan(lpn, sample_dim, loss=loss, n_steps=n_steps, pretrain_steps=pretrain_steps,
                   gamma_schedule=gamma_schedule, lr=lr, pretrain_lr=pretrain_lr, where=where)
    total = sum(s[1] for s in stages)

    opt = torch.optim.Adam(lpn.parameters())
    history = {"loss": [], "stages": [], "steps": 0, "seed": seed, "status": "completed"}
    lpn.training_history = history  # live: checkpoints record the stages done so far
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"train_lpn ({loss})")
    t0 = time.perf_counter()
    lpn.train()
    try:
        for kind, n, step_lr, gamma in stages:
            for group in opt.param_groups:
                group["lr"] = step_lr
            stage_losses = []
            for _ in range(n):
                x = draw(batch_size, gen)
                noise = torch.randn(x.shape, generator=gen).to(x)
                if hi > lo:
                    level = lo + (hi - lo) * torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=gen)
                    noise = noise * level.to(x)
                else:
                    noise = noise * lo
                value = _loss_value(kind, lpn(x + noise), x, gamma)
                v = float(value.detach())
                history["loss"].append(v)
                stage_losses.append(v)
                history["steps"] += 1
                # checked before the step: a non-finite loss would make every weight NaN
                if not math.isfinite(v):
                    history["status"] = "nonfinite"
                    warnings.warn(f"{where}: the loss became {v} at step {history['steps']}; "
                                  "training stopped before that step, the model is left at its last "
                                  "finite step (lower lr?)", RuntimeWarning, stacklevel=2)
                    break
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                lpn.clamp_weights()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{v:.4g}", stage=kind if gamma is None else f"gamma={gamma:.3g}")
                if checkpoint is not None and history["steps"] % checkpoint_every == 0:
                    _checkpoint(lpn, checkpoint, seed, history)
            tail = stage_losses[-max(1, len(stage_losses) // 10):]
            history["stages"].append({"loss": kind, "steps": len(stage_losses), "lr": step_lr,
                                      "gamma": gamma, "final_loss": float(np.mean(tail))})
            if history["status"] != "completed":
                break
    finally:
        if bar is not None:
            bar.close()
        lpn.eval()
    history["time"] = time.perf_counter() - t0
    # a stopped run keeps the last periodic checkpoint: never overwrite it with a model the
    # schedule did not finish
    if checkpoint is not None and history["status"] == "completed":
        _checkpoint(lpn, checkpoint, seed, history)
    return history


def _checkpoint(lpn, path, seed, history):
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    save_lpn(lpn, tmp, seed=seed, meta={"step": history["steps"], "status": history["status"],
                                         "last_loss": history["loss"][-1] if history["loss"] else None})
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------
def save_lpn(lpn, path, *, seed=None, meta=None):
    """Save a learned proximal network as safetensors with a JSON metadata block.

    Parameters
    ----------
    lpn : LearnedProximalNetwork
    path : str or Path
    seed : int, optional
        The training seed (default: that of the last :func:`train_lpn` run, if any).
    meta : dict, optional
        Further JSON-serialisable facts (the training data, the noise level...).

    Notes
    -----
    The metadata (see ``tikhon.learned._model_files``) holds ``format``
    (``"tikhon-lpn/1"``), ``architecture``, tikhon's ``version``, ``seed``,
    ``config`` (the constructor arguments, from which :func:`load_lpn`
    rebuilds the network) and ``extra`` (``meta`` and the training stages).
    """
    where = "save_lpn"
    if not isinstance(lpn, LearnedProximalNetwork):
        raise TypeError(f"{where}: lpn must be a LearnedProximalNetwork, got {type(lpn).__name__}")
    hist = getattr(lpn, "training_history", None)
    if seed is None and hist is not None:
        seed = hist.get("seed")
    extra = {"meta": dict(meta or {}), "stages": hist["stages"] if hist else None}
    write_model_file(path, dict(lpn.state_dict()), format=_FORMAT, architecture=type(lpn).__name__,
                     script="tikhon.learned.train_lpn" if hist else None, seed=seed,
                     config=lpn.config(), extra=extra, where=where)


def load_lpn(path, *, device="cpu"):
    """Load a network saved by :func:`save_lpn` (tensors and JSON only: no code runs).

    Parameters
    ----------
    path : str or Path
    device : str or torch.device
        Where the network is placed.

    Returns
    -------
    LearnedProximalNetwork
        Rebuilt from the stored configuration, in eval mode, in the stored
        dtype; the decoded metadata is its ``file_metadata`` attribute.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a learned proximal network's, its configuration is
        unusable, or its tensors do not match it or are not of one floating
        dtype (messages start with ``load_lpn:``).
    """
    where = "load_lpn"
    tensors, meta = read_model_file(path, format=_FORMAT, where=where, device=device)
    if meta["architecture"] != LearnedProximalNetwork.__name__:
        raise ValueError(f"{where}: {path} holds a {meta['architecture']}, not a LearnedProximalNetwork")
    dtypes = {v.dtype for v in tensors.values()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        raise ValueError(f"{where}: {path} must hold tensors of one floating dtype, got "
                         f"{sorted(str(d) for d in dtypes)}")
    try:
        lpn = LearnedProximalNetwork(**meta["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {path} has an unusable config ({exc})") from None
    own = lpn.state_dict()
    if set(own) != set(tensors):
        raise ValueError(f"{where}: parameters {sorted(tensors)} in the file, {sorted(own)} for its config")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{where}: {k} has shape {tuple(v.shape)} in the file, "
                             f"{tuple(own[k].shape)} for its config")
    lpn = lpn.to(device=device, dtype=dtypes.pop())
    lpn.load_state_dict(tensors)
    lpn.file_metadata = meta
    return lpn.eval()
