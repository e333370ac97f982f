"""Penalty modules: differentiable regularizers of weights (or any tensor) as ``torch.nn.Module``.

Every penalty here is a module whose ``forward(x)`` takes one tensor and
returns a 0-d tensor with the autograd graph kept, to be added to a training
loss. The generic ones are built from tikhon's
:class:`~tikhon.operators.prox.Functional` objects, the same that the imaging
solvers and :func:`~tikhon.learned.attach_prox` use:

* :class:`Penalty`: ``lam * f(x)`` (a functional's torch value);
* :class:`MoreauEnvelope`: ``lam * min_z f(z) + ||z - x||^2 / (2 t)``, smooth
  for any functional with a prox;
* :class:`SquaredDistance`: ``lam / 2 * dist(x, C)^2`` for a constraint set
  ``C`` given as an indicator functional (its prox is the projection);

and the seed papers' penalties: :class:`NormLoss` (rows pushed to unit norm),
:class:`CauchySchwarz` (binary, one-sided binary, ternary and orthogonal
kinds), :class:`GroupOrthogonality` and :class:`HyperSparse`.

One way to apply a penalty to a model: ``penalty.sum_over(params,
model=net)`` sums ``penalty(p)`` over the parameters that ``params`` selects,
read exactly as :class:`~tikhon.learned.ProxRule` reads its ``params`` (a
name pattern, a module type, a module, or tensors). A grouping ``dim`` has
the meaning of :class:`~tikhon.learned.ProxRule`'s: with ``dim=d`` the
penalty sees the matrix of shape ``(p.shape[d], -1)`` whose row ``i`` is the
slice ``p.select(d, i)`` flattened (for a ``Linear.weight`` and ``dim=0``:
one row per output neuron).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tikhon._core.checks import (
    check_bool,
    check_choice,
    check_functional,
    check_int,
    check_interval,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_real_floating,
)
from tikhon.learned.weight_prox import _grouped, _select_params
from tikhon.operators.prox.weight_sets import Oblique

__all__ = [
    "CauchySchwarz",
    "GroupOrthogonality",
    "HyperSparse",
    "MoreauEnvelope",
    "NormLoss",
    "Penalty",
    "SquaredDistance",
]


def _check_dim(dim, where):
    return None if dim is None else check_int(dim, "dim", where, minimum=-(2**31))


class _WeightPenalty(nn.Module):
    """The shared machinery: the weight ``lam``, the grouping ``dim``, ``sum_over``."""

    def __init__(self, lam, dim, where):
        super().__init__()
        self._where = where
        self.lam = check_nonneg(lam, "lam", where)
        self.dim = _check_dim(dim, where)

    def _input(self, x):
        where = f"{self._where}.forward"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: x must be a torch.Tensor, got {type(x).__name__}")
        x = check_real_floating(x, "x", where)
        if self.dim is not None:
            if x.ndim == 0:
                raise ValueError(f"{where}: dim={self.dim} needs x with at least 1 dimension, got a 0-d tensor")
            if not -x.ndim <= self.dim < x.ndim:
                raise ValueError(f"{where}: dim={self.dim} is out of range for x of shape {tuple(x.shape)}")
        return x

    def forward(self, x):
        """The penalty's value at ``x``.

        Parameters
        ----------
        x : torch.Tensor
            A float32/float64 tensor (a weight, a batch of logits, ...).

        Returns
        -------
        torch.Tensor
            A 0-d tensor of ``x``'s dtype with the autograd graph kept.
        """
        x = self._input(x)
        return self.lam * self._value(x)

    def sum_over(self, params, *, model=None):
        """``sum_p self(p)`` over the parameters ``params`` selects, as :class:`~tikhon.learned.ProxRule` does.

        Parameters
        ----------
        params : str, type, tuple of types, Module, Tensor or iterable of Tensors
            A ``fnmatch`` pattern over ``model.named_parameters()`` names, a
            module type (the ``weight`` of each submodule of that type), a
            module (all its parameters) or explicit tensors; the selection of
            :class:`~tikhon.learned.ProxRule`'s ``params``.
        model : torch.nn.Module, optional
            Required when ``params`` is a pattern or a module type.

        Returns
        -------
        torch.Tensor
            A 0-d tensor (graph kept): the term to add to the training loss.
        """
        selected = _select_params(params, model, f"{self._where}.sum_over")
        total = self(selected[0][1])
        for _, p in selected[1:]:
            total = total + self(p)
        return total

    def extra_repr(self):
        return f"lam={self.lam}, dim={self.dim}"


def _rows(x, dim):
    """The ``(groups, entries)`` matrix of ``x`` (``dim=None``: one row, the whole tensor)."""
    return x.reshape(1, -1) if dim is None else _grouped(x, dim)


_CS_KINDS = ("binary", "one_sided", "ternary", "orthogonal")


class CauchySchwarz(_WeightPenalty):
    r"""Cauchy-Schwarz regularizers: the gap of a Cauchy-Schwarz inequality, zero exactly on a set.

    For vectors ``u, v`` the gap ``||u||^2 ||v||^2 - <u, v>^2`` is ``>= 0``
    and zero exactly when ``u`` and ``v`` are linearly dependent; choosing
    ``u, v`` as functions of ``x`` gives a smooth (polynomial) penalty that
    vanishes exactly on a scale-free set, so the scale is not a parameter
    (Taner, Wang and Studer 2025). For one vector ``x`` of length ``N``
    (``sum`` over its entries):

    * ``"binary"`` (``u = x∘x``, ``v = 1``): ``N sum x^4 - (sum x^2)^2``,
      zero iff ``x in {-a, a}^N`` for some ``a >= 0`` (scaled binary);
    * ``"one_sided"`` (``u = x∘x``, ``v = x``):
      ``(sum x^2)(sum x^4) - (sum x^3)^2``, zero iff ``x in {0, a}^N``;
    * ``"ternary"`` (``u = x∘x∘x``, ``v = x``):
      ``(sum x^2)(sum x^6) - (sum x^4)^2``, zero iff ``x in {-a, 0, a}^N``;
    * ``"orthogonal"`` (``u = Gram``, ``v = I``) for a matrix ``X`` with
      ``k = min`` of its two sizes and ``G`` the ``k x k`` Gram matrix of its
      shorter side: ``k ||G||_F^2 - ||X||_F^4``, zero iff ``G = a I``
      (orthogonal rows, or columns, of one common norm).

    The vector kinds act on each row of the grouped matrix (``dim``: one
    scale ``a`` per row, e.g. per output neuron with ``dim=0`` on a
    ``Linear.weight``) and sum over the rows; ``dim=None`` takes the whole
    tensor as one vector. The orthogonal kind acts on the grouped matrix
    (``dim=None``: ``x`` must be 2-D).

    Parameters
    ----------
    kind : {"binary", "one_sided", "ternary", "orthogonal"}
        The set the penalty vanishes on.
    lam : float
        Weight ``>= 0`` of the penalty (default 1).
    dim : int or None
        Grouping, as in :class:`~tikhon.learned.ProxRule` (default ``None``).

    Notes
    -----
    The penalties are homogeneous (degree 4 for ``"binary"`` and
    ``"orthogonal"``, 6 for ``"one_sided"``, 8 for ``"ternary"``), so
    ``lam`` must follow the weights' scale. The closest point of the binary
    set is :class:`~tikhon.operators.prox.ScaledBinary`'s projection
    ``mean|x| sign(x)`` (binarize after training with it), the ternary one
    :class:`~tikhon.operators.prox.ScaledTernary`'s. The vector kinds are
    as in the authors' code (github.com/IIP-Group/CS_regularizers:
    ``binary_recovery.m``, ``osb_ternary_recovery.m``, and
    ``regularization_modules.py`` with ``p=4, q=2, r=4`` for ``"binary"``).
    The authors' network experiments divide the sum by the number of
    weights of the layer (``normalization_type='elenum'``) and default to a
    Hölder variant (``r = 2``); here there is no normalization and the
    degree is as above. For ``"orthogonal"`` the authors'
    ``orth_matrix_recovery.m`` uses ``N ||X^T X||_F^2 - ||X||_F^4`` with
    ``N`` the number of rows, only for square ``X``; ``k = min`` of the
    sizes is the gap that vanishes on tall or wide matrices too.

    References
    ----------
    .. [TWS25] S. Taner, Z. Wang and C. Studer, "Cauchy-Schwarz
       regularizers", International Conference on Learning Representations
       (ICLR), 2025.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import CauchySchwarz
    >>> cs = CauchySchwarz("binary", dim=0)
    >>> float(cs(torch.tensor([[0.5, -0.5, 0.5], [2.0, 2.0, -2.0]])))
    0.0
    >>> float(cs(torch.tensor([[1.0, 0.0]])))  # N sum x^4 - (sum x^2)^2 = 2 - 1
    1.0
    """

    def __init__(self, kind="binary", lam=1.0, dim=None):
        super().__init__(lam, dim, "CauchySchwarz")
        self.kind = check_choice(kind, _CS_KINDS, "kind", "CauchySchwarz")

    def _value(self, x):
        if self.kind == "orthogonal":
            if self.dim is None and x.ndim != 2:
                raise ValueError(
                    f"CauchySchwarz.forward: kind='orthogonal' needs a 2-D x (or dim=), got shape {tuple(x.shape)}"
                )
            m = x if self.dim is None else _grouped(x, self.dim)
            g = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
            return min(m.shape) * (g * g).sum() - (m * m).sum() ** 2
        r = _rows(x, self.dim)
        r2 = r * r
        if self.kind == "binary":
            gap = r.shape[1] * (r2 * r2).sum(1) - r2.sum(1) ** 2
        elif self.kind == "one_sided":
            gap = r2.sum(1) * (r2 * r2).sum(1) - (r2 * r).sum(1) ** 2
        else:
            r4 = r2 * r2
            gap = r2.sum(1) * (r4 * r2).sum(1) - r4.sum(1) ** 2
        return gap.sum()

    def extra_repr(self):
        return f"kind={self.kind!r}, " + super().extra_repr()


def _view(x, dim):
    """What a functional sees: ``x`` itself (``dim=None``) or its ``(groups, entries)`` matrix."""
    return x if dim is None else _grouped(x, dim)


class Penalty(_WeightPenalty):
    """``lam * f(x)`` for a tikhon functional ``f``, differentiable through its torch value.

    The value is the functional's own (private) torch value, which keeps the
    autograd graph: ``Penalty(L1(), 1e-4)`` is the usual l1 penalty,
    ``Penalty(L21(axis=1), lam, dim=0)`` the group lasso of the rows,
    ``Penalty(NuclearNorm(), lam)`` the nuclear norm (differentiable where the
    singular values are distinct and non-zero). Penalties through the loss
    are subgradient methods: for exact zeros use the prox instead
    (:func:`~tikhon.learned.attach_prox`).

    Parameters
    ----------
    f : Functional
        A functional whose torch value is a tensor (not an indicator, whose
        value is 0 or inf: use :class:`SquaredDistance`; not ``L0``, whose
        count has no gradient).
    lam : float
        Weight ``>= 0`` (default 1).
    dim : int or None
        Grouping, as in :class:`~tikhon.learned.ProxRule`: with ``dim=d`` the
        functional sees the matrix ``(x.shape[d], -1)`` (default ``None``: ``x``
        as it is).

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import Penalty
    >>> from tikhon.operators.prox import L1
    >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
    >>> Penalty(L1(), lam=0.5)(w).backward()
    >>> w.grad
    tensor([ 0.5000, -0.5000])
    """

    def __init__(self, f, lam=1.0, dim=None):
        super().__init__(lam, dim, "Penalty")
        self.f = check_functional(f, "f", "Penalty")

    def _value(self, x):
        v = self.f._call(_view(x, self.dim))
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f"Penalty.forward: f={self.f!r} has no differentiable torch value (it returned "
                f"{type(v).__name__}); for a constraint set use SquaredDistance, for any prox MoreauEnvelope"
            )
        return v.to(x.dtype)

    def extra_repr(self):
        return f"f={self.f!r}, " + super().extra_repr()


_ENVELOPE = None


def _envelope_function():
    """The autograd Function of a Moreau envelope: value from the prox, gradient ``(x - p) / t``."""
    global _ENVELOPE
    if _ENVELOPE is None:

        class _NoSecondDerivative(torch.autograd.Function):
            # wraps the envelope's gradient under create_graph=True, so that differentiating
            # it fails with a clear message instead of a silently partial second derivative
            @staticmethod
            def forward(ctx, grad, x):
                return grad.clone()

            @staticmethod
            def backward(ctx, *_):
                raise RuntimeError(
                    "MoreauEnvelope: the envelope is once differentiable here (its gradient (x - prox(x)) / t "
                    "has no Hessian through a generic prox); double backward / Hessian-vector products "
                    "are not supported"
                )

        class _Envelope(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, f, t, with_f):
                xd = x.detach()
                p = f.prox(xd, t)
                r = xd - p
                value = (r * r).sum() / (2 * t)
                if with_f:
                    value = value + float(f._call(p))
                ctx.save_for_backward(r, x)
                ctx.t = t
                return value.to(x.dtype)

            @staticmethod
            def backward(ctx, g):
                r, x = ctx.saved_tensors
                grad = g.detach() * r / ctx.t
                if torch.is_grad_enabled():  # create_graph=True
                    grad = _NoSecondDerivative.apply(grad, x)
                return grad, None, None, None

        _ENVELOPE = _Envelope
    return _ENVELOPE


class MoreauEnvelope(_WeightPenalty):
    r"""The Moreau envelope of a functional: ``lam * min_z f(z) + ||z - x||^2 / (2 t)``.

    The minimiser is the prox, ``p = prox_{t f}(x)``, so the value is
    ``f(p) + ||x - p||^2 / (2 t)`` and the gradient ``(x - p) / t``: a
    ``1/t``-smooth penalty for any convex ``f`` with a prox (Moreau 1965),
    whatever ``f``'s own smoothness. For ``f = L1()`` it is the Huber
    function of each entry (``x^2 / (2t)`` for ``|x| <= t``, ``|x| - t/2``
    beyond), for an indicator ``dist(x, C)^2 / (2t)``. For a non-convex
    ``f`` (``L0``, the weight sets) the same formulas hold wherever the prox
    is single valued.

    Parameters
    ----------
    f : Functional
        A tikhon functional with a prox (the prox is called on the detached
        input; the gradient is the envelope's closed form, so no graph runs
        through the prox).
    t : float
        Smoothing parameter ``> 0`` (the envelope tends to ``f`` as ``t -> 0``).
    lam : float
        Weight ``>= 0`` (default 1).
    dim : int or None
        Grouping, as in :class:`~tikhon.learned.ProxRule` (default ``None``).

    Notes
    -----
    The backward pass is once differentiable: differentiating the gradient
    (``create_graph=True``, then a second backward) raises a RuntimeError.

    References
    ----------
    .. [Mor65] J.-J. Moreau, "Proximité et dualité dans un espace
       hilbertien", Bulletin de la Société Mathématique de France 93,
       273-299, 1965.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import MoreauEnvelope
    >>> from tikhon.operators.prox import L1
    >>> huber = MoreauEnvelope(L1(), t=1.0)
    >>> float(huber(torch.tensor([0.5, -3.0])))  # 0.5^2 / 2 + (3 - 1/2)
    2.625
    """

    _with_f = True

    def __init__(self, f, t=1.0, lam=1.0, dim=None):
        super().__init__(lam, dim, type(self).__name__)
        self.f = check_functional(f, "f", self._where)
        if f.fixed_step:
            raise ValueError(f"{self._where}: f has a fixed step (its prox ignores t)")
        self.t = check_positive(t, "t", self._where)

    def _value(self, x):
        return _envelope_function().apply(_view(x, self.dim), self.f, self.t, self._with_f)

    def extra_repr(self):
        return f"f={self.f!r}, t={self.t}, " + super().extra_repr()


class SquaredDistance(MoreauEnvelope):
    r"""Half the squared distance to a set: ``lam / 2 * ||x - P_C(x)||^2``.

    The set is given by its indicator functional, whose prox is the
    projection ``P_C`` (:class:`~tikhon.operators.prox.Oblique`,
    :class:`~tikhon.operators.prox.Stiefel`,
    :class:`~tikhon.operators.prox.SpectralBall`,
    :class:`~tikhon.operators.prox.ScaledBinary`,
    :class:`~tikhon.operators.prox.ScaledTernary`,
    :class:`~tikhon.operators.prox.TopK`,
    :class:`~tikhon.operators.prox.Box`, ...). It is the Moreau envelope
    of the indicator at ``t = 1`` and its gradient is ``lam (x - P_C(x))``
    (where the projection is single valued): a soft version of projected
    training, pulling weights towards the set without putting them on it.

    Parameters
    ----------
    projection : Functional
        The indicator of ``C`` (the first call checks that its values at the
        input ``x`` and at ``x + 1`` are in ``{0, inf}`` and 0 at the
        projection).
    lam : float
        Weight ``>= 0`` (default 1).
    dim : int or None
        Grouping, as in :class:`~tikhon.learned.ProxRule` (default ``None``);
        e.g. ``SquaredDistance(Oblique(), dim=0)`` on a ``Conv2d.weight``
        pulls each flattened filter to unit norm.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import SquaredDistance
    >>> from tikhon.operators.prox import Oblique
    >>> float(SquaredDistance(Oblique())(torch.tensor([[3.0, 4.0]])))  # (5 - 1)^2 / 2
    8.0
    """

    _with_f = False

    def __init__(self, projection, lam=1.0, dim=None):
        super().__init__(projection, 1.0, lam, dim)
        self._checked = False

    def _value(self, x):
        if not self._checked:
            # an indicator takes the values 0 and inf, 0 at its projection; any other f would make
            # 1/2 ||x - prox_f(x)||^2 a different function with another gradient
            # the values are also checked at x + 1: at x = 0 a norm (L1) is 0 as well
            v = _view(x.detach(), self.dim)
            values = (float(self.f._call(v)), float(self.f._call(v + 1)))
            if any(a not in (0.0, math.inf) for a in values) or float(self.f._call(self.f.prox(v, 1.0))) != 0.0:
                raise ValueError(
                    f"SquaredDistance: projection={self.f!r} is not an indicator (its value at its prox is not 0); "
                    "use MoreauEnvelope for a general functional"
                )
            self._checked = True
        return super()._value(x)

    def extra_repr(self):
        return f"projection={self.f!r}, lam={self.lam}, dim={self.dim}"


class NormLoss(SquaredDistance):
    r"""Norm Loss: ``lam * sum_i (||w_i|| - 1)^2``, every row pushed to unit norm.

    A soft constraint to the oblique manifold (unit-norm rows, the set of
    :class:`~tikhon.operators.prox.Oblique`): it is ``2 lam`` times
    :class:`SquaredDistance` to that set, since the nearest unit vector to
    ``w_i`` is ``w_i / ||w_i||`` at distance ``|1 - ||w_i|| |``. The gradient
    is ``2 lam (1 - 1 / ||w_i||) w_i``, zero exactly on the manifold.

    Parameters
    ----------
    lam : float
        Weight ``>= 0`` (default 1).
    dim : int or None
        Grouping (default ``0``: one weight vector per output neuron of a
        ``Linear.weight`` or per filter of a ``Conv2d.weight``); ``None``:
        the whole tensor is one vector.

    References
    ----------
    .. [GSB21] T. Georgiou, S. Schmitt, T. Bäck, W. Chen and M. Lew, "Norm
       Loss: An efficient yet effective regularization method for deep
       neural networks", arXiv:2103.06583, 2021.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import NormLoss
    >>> float(NormLoss()(torch.tensor([[3.0, 4.0], [0.6, 0.8]])))  # (5 - 1)^2 + 0
    16.0
    """

    def __init__(self, lam=1.0, dim=0):
        super().__init__(Oblique(axis=-1), lam=lam, dim=dim)
        self._checked = True  # Oblique is an indicator

    def _value(self, x):
        if self.dim is None:
            x = x.reshape(1, -1)
        return 2 * super()._value(x)

    def extra_repr(self):
        return f"lam={self.lam}, dim={self.dim}"


class GroupOrthogonality(_WeightPenalty):
    r"""Group orthogonalization: ``lam * sum_g ||Gram(W_g) - I||_F^2`` over groups of filters.

    The rows of the grouped matrix ``W`` (``(c_out, d)``: one flattened
    filter or neuron per row, ``dim=0``) are split into ``groups`` groups of
    ``m = c_out / groups`` consecutive rows ``W_g`` (``strided=True``: rows
    ``g, g + groups, g + 2 groups, ...``); each group is pushed to
    orthonormality, with the Gram matrix of its shorter side: ``W_g W_g^T``
    (``m x m``) when ``m <= d``, ``W_g^T W_g`` otherwise. Cheaper than
    orthogonalizing the whole layer (``groups = 1``), whose Gram matrix is
    ``c_out x c_out`` (Kurtz, Bar and Giryes 2023).

    Parameters
    ----------
    groups : int
        Number of groups ``>= 1``; must divide the number of rows.
    lam : float
        Weight ``>= 0`` (default 1).
    dim : int or None
        Grouping of a parameter into rows (default ``0``); ``None``: ``x``
        must be a matrix.
    strided : bool
        Interleaved groups instead of consecutive ones (default ``False``).
        The consecutive layout is the reference code's ``inter_reg_loss``
        with ``num_groups = groups``. The reference code's "intra" mode
        (``intra_reg_loss``) with ``num_groups = N`` takes one filter of each
        of ``N`` consecutive blocks per set, ``c_out / N`` sets of ``N`` rows:
        that is ``strided=True`` with ``groups = c_out / N`` here (``groups``
        always counts the sets that are orthogonalized).

    References
    ----------
    .. [KBG23] Y. Kurtz, N. Bar and R. Giryes, "Group orthogonalization
       regularization for vision models adaptation and robustness",
       arXiv:2306.10001, 2023.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import GroupOrthogonality
    >>> w = torch.eye(4)[[0, 1, 0, 1]]  # rows (e0, e1) twice: two orthonormal pairs
    >>> float(GroupOrthogonality(groups=2)(w)), float(GroupOrthogonality(groups=1)(w))
    (0.0, 4.0)
    """

    def __init__(self, groups=1, lam=1.0, dim=0, strided=False):
        super().__init__(lam, dim, "GroupOrthogonality")
        self.groups = check_positive_int(groups, "groups", self._where)
        self.strided = check_bool(strided, "strided", self._where)

    def _value(self, x):
        if self.dim is None and x.ndim != 2:
            raise ValueError(f"GroupOrthogonality.forward: x must be a matrix (or use dim=), got shape {tuple(x.shape)}")
        w = _view(x, self.dim)
        n, d = w.shape
        if n % self.groups:
            raise ValueError(f"GroupOrthogonality.forward: groups={self.groups} does not divide the {n} rows of x")
        m = n // self.groups
        wg = w.reshape(m, self.groups, d).transpose(0, 1) if self.strided else w.reshape(self.groups, m, d)
        gram = wg @ wg.transpose(1, 2) if m <= d else wg.transpose(1, 2) @ wg
        eye = torch.eye(gram.shape[-1], dtype=x.dtype, device=x.device)
        return ((gram - eye) ** 2).sum()

    def extra_repr(self):
        return f"groups={self.groups}, strided={self.strided}, " + super().extra_repr()


# atanh(1 / sqrt(3)) = 0.6585: the inflection point of sech^2 sits at the threshold weight
_HS_SCALE = math.atanh(1.0 / math.sqrt(3.0))


class HyperSparse(_WeightPenalty):
    r"""HyperSparse: an adaptive (reweighted) l1 penalty that spares the largest weights.

    With ``w`` all the weights (flattened; ``sum_over`` takes the
    selected parameters together, one global threshold), ``w_k`` the
    magnitude below which the fraction ``rate`` of the weights lies, ``s =
    atanh(1/sqrt(3)) / w_k`` and ``T = sum_j tanh(s |w_j|)``, the penalty is

    ``HS(w) = lam * sg(||w||_1 / T) * sum_i tanh(s |w_i|)``

    (``sg``: stop-gradient; ``s`` is not differentiated either). Its value is
    ``lam ||w||_1`` and its gradient

    ``lam * s ||w||_1 / T * sech^2(s |w_i|) sign(w_i)``:

    about ``lam`` (l1) for the small weights, decaying smoothly to 0 beyond
    the threshold, so the weights to be pruned are shrunk while the largest
    ``1 - rate`` keep (and exchange) their magnitudes (Glandorf, Kaiser and
    Rosenhahn 2023). The authors' code writes the same gradient as
    ``sum_i |w_i| T / sg(T) - ||w||_1`` (whose value is 0); the form here
    reports ``||w||_1``.

    Parameters
    ----------
    rate : float
        The target fraction of small weights, ``0 <= rate < 1`` (default 0.9).
    lam : float
        Weight ``>= 0`` (default 1). The paper's Adaptive Regularized
        Training raises ``lam`` by a constant factor every epoch until the
        pruned network keeps its accuracy; that schedule is the caller's
        (``penalty.lam`` is a plain attribute).

    Notes
    -----
    Defined through its gradient (a stop-gradient construction), so the
    finite differences of the value are not its gradient: tests compare the
    gradient with the closed form above and with the authors' expression.

    References
    ----------
    .. [GKR23] P. Glandorf, T. Kaiser and B. Rosenhahn, "HyperSparse neural
       networks: Shifting exploration to exploitation through adaptive
       regularization", arXiv:2308.07163, 2023.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import HyperSparse
    >>> w = torch.tensor([0.01, -0.02, 0.03, 1.0, 2.0, -1.5], requires_grad=True)
    >>> hs = HyperSparse(rate=0.4)  # threshold: the 3rd smallest magnitude, 0.03
    >>> hs(w).backward()  # the value is ||w||_1 = 4.56
    >>> w.grad.abs() > 1.0  # the small weights are pushed to 0, the large ones spared
    tensor([ True,  True,  True, False, False, False])
    """

    def __init__(self, rate=0.9, lam=1.0):
        super().__init__(lam, None, "HyperSparse")
        self.rate = check_interval(rate, "rate", self._where, 0.0, 1.0, open_hi=True)

    def _value(self, x):
        a = x.reshape(-1).abs()
        n = a.numel()
        if n == 0:
            return x.new_zeros(())
        ad = a.detach()
        wk = torch.kthvalue(ad, min(math.floor(self.rate * n) + 1, n)).values
        s = _HS_SCALE / wk.clamp_min(torch.finfo(x.dtype).tiny)
        th = torch.tanh(s * a)
        c = ad.sum() / th.detach().sum().clamp_min(torch.finfo(x.dtype).tiny)
        return c * th.sum()

    def sum_over(self, params, *, model=None):
        """``self(w)`` for ``w`` the concatenation of the selected parameters (one global threshold).

        Parameters
        ----------
        params : str, type, tuple of types, Module, Tensor or iterable of Tensors
            The selection, as :class:`~tikhon.learned.ProxRule`'s ``params``.
        model : torch.nn.Module, optional
            Required when ``params`` is a pattern or a module type.

        Returns
        -------
        torch.Tensor
            A 0-d tensor (graph kept); its value is ``lam`` times the sum of
            the parameters' l1 norms.
        """
        selected = _select_params(params, model, "HyperSparse.sum_over")
        return self(torch.cat([p.reshape(-1) for _, p in selected]))

    def extra_repr(self):
        return f"rate={self.rate}, lam={self.lam}"
