"""Input-convex neural networks: a scalar potential ``psi(x)`` convex in its input.

:class:`ICNN` is the potential of a learned proximal network
(:class:`~tikhon.learned.LearnedProximalNetwork`, whose output is ``grad psi``)
and of gradient-of-convex maps in general (Brenier maps of neural optimal
transport are such gradients). Convexity comes from the architecture: the
hidden-to-hidden weights are non-negative (restored by :meth:`ICNN.clamp_weights`
after each optimizer step), the activation is convex and non-decreasing, and
the input reaches every layer through unconstrained affine skip maps.
"""

from __future__ import annotations

import torch
from torch import nn

from tikhon._core.checks import (
    check_choice,
    check_int,
    check_nonneg,
    check_positive,
    check_positive_int,
)

__all__ = ["ICNN"]

_KINDS = ("dense", "conv")
_INITS = ("default", "small")
# the authors' image models start their non-negative weights at exp(N(-10, 0.1)):
# nearly zero, so the first potential is close to the affine skip terms
_SMALL_MEAN, _SMALL_STD = -10.0, 0.1


class ICNN(nn.Module):
    r"""An input-convex neural network ``psi(x)``: one value per sample, convex in ``x``.

    With ``z_0 = s(A_0 x + b_0)``, the layers are

    .. math::

        z_{k} = s(W_k z_{k-1} + A_k x + b_k), \quad k = 1, \dots, L, \qquad
        \psi(x) = \langle w, z_L \rangle + \langle a, x \rangle + c + \alpha \|x\|^2,

    where ``W_k >= 0`` and ``w >= 0`` entrywise and ``s`` is Softplus with
    sharpness ``beta`` (convex and non-decreasing), so that ``psi`` is convex
    ([AXK17]); ``alpha > 0`` makes it ``2 alpha``-strongly convex, so that its
    gradient is invertible. ``kind="conv"`` uses stride-1 convolutions with
    zero 'same' padding for every map and sums ``<w, z_L>`` over the pixels,
    so that the same network applies to images of any size (its gradient is a
    translation-equivariant image-to-image map).

    Parameters
    ----------
    in_dim : int
        The vector length (``kind="dense"``, input ``(batch, in_dim)``) or the
        number of image channels (``kind="conv"``, input ``(N, in_dim, H, W)``).
    hidden : int
        Width (units or channels) of every hidden layer.
    layers : int
        Number of non-negative hidden-to-hidden maps ``W_1 .. W_L`` (``>= 0``),
        as in the authors' code: ``layers=4`` has five Softplus layers.
    kind : {"dense", "conv"}
        Fully connected or convolutional.
    beta : float
        Softplus sharpness: ``s(t) = log(1 + exp(beta t)) / beta``.
    alpha : float
        Weight ``>= 0`` of the strongly convex term ``alpha ||x||^2``.
    kernel_size : int
        Odd kernel size of the convolutions (``kind="conv"`` only).
    init : {"default", "small"}, optional
        Initialisation of the non-negative weights: ``"default"`` (PyTorch's,
        then clamped at 0) or ``"small"`` (``exp(N(-10, 0.1))``, the authors'
        image models). Default: ``"default"`` for dense, ``"small"`` for conv.
    seed : int
        Seed of the initialisation (the global torch generator is left as it was).

    Attributes
    ----------
    first : torch.nn.Module
        ``A_0``, ``b_0``.
    hidden_maps : torch.nn.ModuleList
        ``W_1 .. W_L`` (no bias, non-negative).
    skips : torch.nn.ModuleList
        ``A_1 .. A_L`` with the biases ``b_k``.
    out_hidden : torch.nn.Module
        ``w`` (non-negative).
    out_skip : torch.nn.Module
        ``a`` and ``c``.

    See Also
    --------
    tikhon.learned.LearnedProximalNetwork : its gradient as a proximal operator.

    References
    ----------
    .. [AXK17] B. Amos, L. Xu and J. Z. Kolter, "Input convex neural networks",
       ICML 2017.
    .. [FBS24] Z. Fang, S. Buchanan and J. Sulam, "What's in a prior? Learned
       proximal networks for inverse problems", ICLR 2024.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import ICNN
    >>> psi = ICNN(3, hidden=8, layers=2)
    >>> x = torch.randn(5, 3)
    >>> psi(x).shape, psi.gradient(x).shape
    (torch.Size([5]), torch.Size([5, 3]))
    """

    def __init__(self, in_dim, *, hidden=50, layers=4, kind="dense", beta=10.0, alpha=0.0,
                 kernel_size=3, init=None, seed=0):
        super().__init__()
        where = type(self).__name__
        self.in_dim = check_positive_int(in_dim, "in_dim", where)
        self.hidden = check_positive_int(hidden, "hidden", where)
        self.layers = check_int(layers, "layers", where, minimum=0)
        self.kind = check_choice(kind, _KINDS, "kind", where)
        self.beta = check_positive(beta, "beta", where)
        self.alpha = check_nonneg(alpha, "alpha", where)
        self.kernel_size = check_positive_int(kernel_size, "kernel_size", where)
        if self.kind == "conv" and self.kernel_size % 2 == 0:
            raise ValueError(f"{where}: kernel_size must be odd ('same' padding), got {kernel_size}")
        self.init = check_choice("small" if init is None and kind == "conv" else (init or "default"),
                                 _INITS, "init", where)
        self.seed = check_int(seed, "seed", where, minimum=0)
        self.act = nn.Softplus(beta=self.beta)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build()
            self._init_nonneg()

    # -- construction ------------------------------------------------------------
    def _map(self, n_in, n_out, bias):
        if self.kind == "dense":
            return nn.Linear(n_in, n_out, bias=bias)
        k = self.kernel_size
        return nn.Conv2d(n_in, n_out, k, padding=k // 2, bias=bias)

    def _build(self):
        d, h = self.in_dim, self.hidden
        self.first = self._map(d, h, True)
        self.hidden_maps = nn.ModuleList([self._map(h, h, False) for _ in range(self.layers)])
        self.skips = nn.ModuleList([self._map(d, h, True) for _ in range(self.layers)])
        if self.kind == "dense":
            self.out_hidden = nn.Linear(h, 1, bias=False)
            self.out_skip = nn.Linear(d, 1, bias=True)
        else:
            self.out_hidden = nn.Conv2d(h, 1, 1, bias=False)
            self.out_skip = self._map(d, 1, True)

    def nonneg_parameters(self):
        """The weights kept non-negative (``W_1 .. W_L`` and ``w``).

        Returns
        -------
        list of torch.nn.Parameter
        """
        return [m.weight for m in self.hidden_maps] + [self.out_hidden.weight]

    def _init_nonneg(self):
        with torch.no_grad():
            for w in self.nonneg_parameters():
                if self.init == "small":
                    w.normal_(_SMALL_MEAN, _SMALL_STD).exp_()
                else:
                    w.clamp_(min=0.0)

    @torch.no_grad()
    def clamp_weights(self):
        """Set the negative hidden-to-hidden and output weights to 0 (in place).

        Call it after each optimizer step (as :func:`~tikhon.learned.train_lpn`
        does): it is the projection onto the weights for which ``psi`` is convex.
        """
        for w in self.nonneg_parameters():
            w.clamp_(min=0.0)

    def config(self):
        """The constructor arguments (JSON-serialisable): ``type(self)(**config())`` rebuilds it.

        Returns
        -------
        dict
        """
        return {"in_dim": self.in_dim, "hidden": self.hidden, "layers": self.layers,
                "kind": self.kind, "beta": self.beta, "alpha": self.alpha,
                "kernel_size": self.kernel_size, "init": self.init, "seed": self.seed}

    # -- evaluation --------------------------------------------------------------
    def _check_input(self, x, where):
        if not torch.is_tensor(x):
            raise TypeError(f"{where}: x must be a torch tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{where}: x must be a floating tensor, got {x.dtype}")
        if self.kind == "dense":
            ok = x.ndim == 2 and x.shape[1] == self.in_dim
            want = f"(batch, {self.in_dim})"
        else:
            ok = x.ndim == 4 and x.shape[1] == self.in_dim
            want = f"(N, {self.in_dim}, H, W)"
        if not ok:
            raise ValueError(f"{where}: x must have shape {want}, got {tuple(x.shape)}")

    def potential(self, x):
        """``psi(x)``, one value per sample.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_dim)`` (dense) or ``(N, in_dim, H, W)`` (conv).

        Returns
        -------
        torch.Tensor
            Shape ``(batch,)``.
        """
        self._check_input(x, f"{type(self).__name__}.potential")
        z = self.act(self.first(x))
        for W, A in zip(self.hidden_maps, self.skips):
            z = self.act(W(z) + A(x))
        out = self.out_hidden(z) + self.out_skip(x)
        out = out.reshape(out.shape[0], -1).sum(dim=1)
        if self.alpha:
            out = out + self.alpha * x.reshape(x.shape[0], -1).square().sum(dim=1)
        return out

    def forward(self, x):
        """``psi(x)`` (see :meth:`potential`).

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_dim)`` (dense) or ``(N, in_dim, H, W)`` (conv).

        Returns
        -------
        torch.Tensor
            Shape ``(batch,)``.
        """
        return self.potential(x)

    def gradient(self, x, *, create_graph=None):
        """``grad psi(x)`` by automatic differentiation, sample by sample.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_dim)`` (dense) or ``(N, in_dim, H, W)`` (conv).
        create_graph : bool, optional
            Keep the graph of the gradient (to differentiate through it:
            training needs this double backward). Default: when grad mode is on
            and the module is training or ``x`` requires grad.

        Returns
        -------
        torch.Tensor
            Same shape as ``x``; detached unless ``create_graph``.
        """
        if create_graph is None:
            create_graph = torch.is_grad_enabled() and (self.training or x.requires_grad)
        with torch.enable_grad():
            xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
            value = self.potential(xg).sum()
            (grad,) = torch.autograd.grad(value, xg, create_graph=bool(create_graph))
        return grad if create_graph else grad.detach()

    def extra_repr(self):
        return (f"in_dim={self.in_dim}, hidden={self.hidden}, layers={self.layers}, "
                f"kind={self.kind!r}, beta={self.beta:g}, alpha={self.alpha:g}")

