"""Proximal training of neural-network weights: a post-step hook on any torch optimizer.

:func:`attach_prox` registers ``optimizer.register_step_post_hook``: after every
``optimizer.step()`` the prox of a tikhon :class:`~tikhon.operators.prox.Functional`
(:class:`~tikhon.operators.prox.L1`, :class:`~tikhon.operators.prox.L21`,
:class:`~tikhon.operators.prox.NuclearNorm`, :class:`~tikhon.operators.prox.L0`,
:class:`~tikhon.operators.prox.Box`, the weight sets of
:mod:`tikhon.operators.prox.weight_sets`, ...) is applied in place to the
parameters a :class:`ProxRule` selects: the optimizer's step is the gradient
step and the hook the proximal step of proximal gradient descent (with SGD,
exactly ISTA on the mini-batch loss; Yang et al.'s ProxSGD for other
optimizers). The optimizer is not wrapped, so learning-rate schedulers,
``state_dict``/``load_state_dict`` and checkpointing are untouched; the step of
the prox is ``lr * lam`` with the parameter group's *current* ``lr``, so a
schedule is followed. The same functional objects serve the imaging solvers.

:func:`sparsity_mask` reads a model's zero pattern and :func:`freeze_mask`
re-applies it after every step (fine-tuning, "debiasing", with the pattern
fixed).

References
----------
.. [YLC20] Y. Yang, Y. Yuan, A. Chatzimichailidis, R. J. G. van Sloun, L. Lei
   and S. Chatzinotas, "ProxSGD: Training structured neural networks under
   regularization and constraints", ICLR 2020.
.. [KB15] D. P. Kingma and J. Ba, "Adam: A method for stochastic
   optimization", ICLR 2015.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from tikhon.operators._kernels import weight_prox_numba
from tikhon.operators.prox.base import ScaledFunctional
from tikhon.operators.prox.groups import L21
from tikhon.operators.prox.indicators import Box, NonNegative, Zero
from tikhon.operators.prox.l1 import L0, L1

from tikhon._core.arrays import require_torch
from tikhon._core.checks import (
    check_callable,
    check_choice,
    check_functional,
    check_int,
    check_nonneg,
)

__all__ = ["ProxHandle", "ProxRule", "attach_prox", "freeze_mask", "sparsity_mask"]

# functionals whose prox acts entry by entry, so that a per-coordinate step
# (Adam's diagonal metric) is exact for them
_SEPARABLE = (L1, L0, Box, NonNegative, Zero)


def _unscaled(f):
    while isinstance(f, ScaledFunctional):
        f = f.f
    return f


@dataclass
class ProxRule:
    """Which parameters get which prox, with which weight, from which step.

    Parameters
    ----------
    functional : Functional
        A tikhon functional; its prox ``prox_{lr * lam * f}`` is applied.
    lam : float
        Regularization weight ``>= 0``; ``0`` leaves the parameters untouched.
    params : str, type, tuple of types, Module, Tensor or iterable of Tensors
        The selection. A ``str`` is a ``fnmatch`` pattern over the names of
        ``model.named_parameters()`` (e.g. ``"*.weight"``, ``"fc1.*"``); a
        module type (or a tuple of types, e.g. ``torch.nn.Linear``) selects the
        ``weight`` of every submodule of that type; a module instance selects
        all its parameters; a tensor or an iterable of tensors (read once, so
        ``net.parameters()`` works) is an explicit list. Patterns and types
        need ``model=`` in :func:`attach_prox`.
    start_step : int
        The prox is applied from the step after ``start_step`` completed
        optimizer steps (counted from :func:`attach_prox`; default 0: from the
        first step). A dense warm-up is ``start_step > 0``.
    dim : int or None
        Grouping. ``None``: the functional sees the parameter as it is. An int
        ``d``: it sees the matrix of shape ``(p.shape[d], -1)`` whose row ``i``
        is the slice ``p.select(d, i)`` flattened, so ``L21(axis=1)`` with
        ``dim=0`` zeroes whole output filters of a ``Conv2d.weight``
        (``(out, in, kh, kw)``), as ``L21(axis=0)`` zeroes gradient vectors in
        TV; row-wise sets (:class:`~tikhon.operators.prox.Oblique`, ...) and
        matrix functionals (:class:`~tikhon.operators.prox.NuclearNorm`) act
        on that matrix. A ``Linear.weight`` is already ``(out, in)``, so
        ``L21(axis=1)`` alone makes its rows (neurons) group sparse.
    """

    functional: Any
    lam: float
    params: Any
    start_step: int = 0
    dim: int | None = None

    def __post_init__(self):
        where = "ProxRule"
        check_functional(self.functional, "functional", where)
        if self.functional.fixed_step:
            raise ValueError(f"{where}: functional has a fixed step (its prox ignores lr * lam)")
        self.lam = check_nonneg(self.lam, "lam", where)
        self.start_step = check_int(self.start_step, "start_step", where, minimum=0)
        if self.dim is not None:
            self.dim = check_int(self.dim, "dim", where, minimum=-(2**31))
            base = _unscaled(self.functional)
            if isinstance(base, L21) and base.axis not in (1, -1):
                raise ValueError(
                    f"{where}: with dim={self.dim} the functional sees the (groups, entries) matrix, "
                    f"so L21 must have axis=1 (got axis={base.axis})"
                )
        if self.params is None:
            raise ValueError(f"{where}: params is required (a name pattern, a module type or tensors)")
        if not isinstance(self.params, (str, type, tuple)) and not hasattr(self.params, "named_parameters"):
            try:  # a generator such as net.parameters() is read once, here
                self.params = self.params if hasattr(self.params, "shape") else list(self.params)
            except TypeError as exc:
                raise TypeError(
                    f"{where}: params must be a name pattern, a module type, a module or tensors, "
                    f"got {type(self.params).__name__}"
                ) from exc


def _select(rule, model, where):
    return _select_params(rule.params, model, where)


def _select_params(sel, model, where):
    """``[(name, parameter)]`` for a selection as :class:`ProxRule` takes it (``params``)."""
    torch = require_torch()
    if isinstance(sel, (str, type)) or (
        isinstance(sel, tuple) and sel and all(isinstance(t, type) for t in sel)
    ):
        if model is None:
            raise ValueError(f"{where}: model is required when a rule selects parameters by name or module type")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(sel, str):
            out = [(n, p) for n, p in model.named_parameters() if fnmatch.fnmatchcase(n, sel)]
        else:
            out = [
                (f"{n}.weight" if n else "weight", m.weight)
                for n, m in model.named_modules()
                if isinstance(m, sel) and isinstance(getattr(m, "weight", None), torch.Tensor)
            ]
        if not out:
            raise ValueError(f"{where}: params {sel!r} selects no parameter of the model")
        return out
    if isinstance(sel, torch.nn.Module):
        out = list(sel.named_parameters())
        if not out:
            raise ValueError(f"{where}: params is a module without parameters")
        return out
    items = _tensors(sel, "params", "a name pattern, a module type or tensors", where)
    return [(f"params[{i}]", p) for i, p in enumerate(items)]


def _tensors(value, name, kinds, where):
    """A tensor or an iterable of tensors as a non-empty list (else TypeError naming ``name``)."""
    torch = require_torch()
    if isinstance(value, torch.Tensor):
        value = [value]
    try:
        items = list(value)
    except TypeError as exc:
        raise TypeError(f"{where}: {name} must be {kinds}, got {type(value).__name__}") from exc
    if not items or not all(isinstance(p, torch.Tensor) for p in items):
        raise TypeError(f"{where}: {name} must be {kinds} (a non-empty list of tensors)")
    return items


class _StepHook:
    """A removable post-step hook (``remove()``, or use it as a context manager)."""

    def __init__(self, optimizer, fn):
        import torch

        where = type(self).__name__
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{where}: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        check_callable(fn, "fn", where, allow_none=False)
        self.optimizer = optimizer
        self.steps = 0
        self._fn = fn
        self._handle = optimizer.register_step_post_hook(self._hook)

    def _hook(self, optimizer, args, kwargs):
        self.steps += 1
        self._fn(self.steps)

    def remove(self):
        """Unregister the hook (idempotent)."""
        self._handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class ProxHandle(_StepHook):
    """The handle :func:`attach_prox` returns.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimizer whose steps trigger the hook.
    fn : callable
        ``fn(step)``, run after every optimizer step (built by :func:`attach_prox`).

    Attributes
    ----------
    steps : int
        Optimizer steps seen since :func:`attach_prox`.
    metric : str
        ``"adam"`` or ``"scalar"``.
    """


def _group_index(optimizer, where):
    return {id(p): gi for gi, g in enumerate(optimizer.param_groups) for p in g["params"]}


def _lr(group):
    lr = group["lr"]
    return float(lr)  # a tensor lr (capturable Adam) is read once per step


class _Entry:
    """One selected parameter, with what the hook needs of its rule read once, at attach time."""

    __slots__ = ("base", "group", "kind", "name", "p", "rule", "views")

    def __init__(self, rule, name, p, group):
        self.rule, self.name, self.p, self.group = rule, name, p, group
        self.kind = _fast_kind(rule.functional)
        self.base = _unscaled(rule.functional)
        self.views = (_NumpyView(), _NumpyView()) if self.kind is not None else None


def _grouped(x, dim):
    if dim is None:
        return x
    return x.movedim(dim, 0).reshape(x.shape[dim], -1)


def _ungrouped(z, p, dim):
    if dim is None:
        return z
    moved = p.movedim(dim, 0).shape
    return z.reshape(moved).movedim(0, dim)


def _adam_tau(base, t, v, a, eps):
    """The Adam-metric step for the generic path: ``t / (a sqrt(v) + eps)`` per coordinate
    for a separable prox; for the others the step at Adam's denominator of the mean second
    moment, over each group (L21) or over the parameter (the heuristic of ``metric="adam"``)."""
    if isinstance(base, _SEPARABLE):
        return (t / a) / v.sqrt().add_(eps / a)
    if isinstance(base, L21):
        return (t / a) / v.mean(dim=base.axis, keepdim=True).sqrt_().add_(eps / a)
    return t / (a * math.sqrt(float(v.mean())) + eps)


def _fast_kind(f):
    """``("l1", c)`` / ``("l21", c, axis)`` for ``c * L1()`` / ``c * L21(axis)`` with scalar weights, else None.

    The hook runs after every step, so these two (the common sparsity
    penalties) get fused in-place kernels instead of the functional's generic
    out-of-place prox; the result is the same map.
    """
    c = 1.0
    while isinstance(f, ScaledFunctional):
        if not isinstance(f.c, float):
            return None
        c *= f.c
        f = f.f
    if type(f) is L1 and isinstance(f.weights, float):
        return ("l1", c * f.weights)
    if type(f) is L21 and isinstance(f.weights, float):
        return ("l21", c * f.weights, f.axis)
    return None


def _adam_moment(state, group, p):
    """``(v, a, eps)``: Adam's second moment of ``p`` (``max_exp_avg_sq`` with amsgrad) and the
    constants of its denominator ``a sqrt(v) + eps``, ``a = 1 / sqrt(1 - beta2^t)``; ``(None, 0, 0)``
    before the parameter's first step."""
    st = state.get(p)
    if not st or "exp_avg_sq" not in st:
        return None, 0.0, 0.0
    v = st["max_exp_avg_sq"] if group.get("amsgrad", False) and "max_exp_avg_sq" in st else st["exp_avg_sq"]
    a = 1.0 / math.sqrt(1.0 - float(group["betas"][1]) ** float(st["step"]))
    return v, a, float(group["eps"])


def _fast_prox(torch, kind, x, t, d, views):
    """In place on ``x``: the prox of ``c * L1`` or ``c * L21`` with step ``t`` (scalar metric,
    ``d`` None) or in Adam's metric (``d = (v, a, eps)`` from :func:`_adam_moment`); ``views``
    are the entry's two :class:`_NumpyView` (of ``x`` and ``v``)."""
    thr = t * kind[1]
    if thr == 0:
        return
    if _fast_prox_numba(kind, x, thr, d, views):
        # the kernels write through a NumPy view, which autograd does not see: count the
        # write as torch's in-place operations do, so a graph that saved x still fails loudly
        torch.autograd.graph.increment_version(x)
        return
    _fast_prox_torch(torch, kind, x, thr, d)


class _NumpyView:
    """A NumPy view (no copy) of a C-contiguous float CPU tensor's memory, or None for any
    other tensor; kept between steps and rebuilt when the tensor's memory or layout changes
    (``module.to()``, ``load_state_dict``), because making it costs more than a small kernel."""

    __slots__ = ("array", "key")

    def __init__(self):
        self.key, self.array = None, None

    def get(self, t):
        key = (t.data_ptr(), t.is_cpu, t.dtype, t.shape, t.stride())
        if key != self.key:
            ok = t.is_cpu and t.is_contiguous() and str(t.dtype) in ("torch.float32", "torch.float64")
            self.key, self.array = key, (t.detach().numpy() if ok else None)
        return self.array


def _fast_prox_numba(kind, x, thr, d, views):
    """The fused kernels of :mod:`tikhon.operators._kernels.weight_prox_numba` on CPU tensors;
    False (nothing done) when the layout or device needs the torch path."""
    xn = views[0].get(x)
    if xn is None:
        return False
    if d is not None:
        v, a, eps = d
        vn = views[1].get(v)
        if vn is None or vn.dtype != xn.dtype or vn.shape != xn.shape:
            return False
        thr, eps = thr / a, eps / a
    if xn.size == 0:
        return True
    c = xn.dtype.type
    if kind[0] == "l1":
        if d is None:
            weight_prox_numba.soft_threshold_(xn.reshape(-1), c(thr))
        else:
            weight_prox_numba.soft_threshold_metric_(xn.reshape(-1), vn.reshape(-1), c(thr), c(eps))
        return True
    if xn.ndim == 0 or kind[2] not in (-1, xn.ndim - 1):
        return False  # groups along another axis (strided rows) or a scalar: the torch path
    rows = xn.reshape(-1, xn.shape[-1])
    if d is None:
        weight_prox_numba.shrink_rows_(rows, c(thr))
    else:
        weight_prox_numba.shrink_rows_metric_(rows, vn.reshape(rows.shape), c(thr), c(eps))
    return True


def _fast_prox_torch(torch, kind, x, thr, d):
    """:func:`_fast_prox` with tensor operations (any device and layout)."""
    if kind[0] == "l1":
        if d is None:
            x.sub_(x.clamp(-thr, thr))  # soft threshold: x - clip(x, -thr, thr)
        else:
            # soft threshold at t = thr / (a sqrt(v) + eps) = (thr / a) / (sqrt(v) + eps / a):
            # x - clip(x, -t, t), whose zeros are exact (as the numba kernel's)
            v, a, eps = d
            t = v.sqrt().add_(eps / a).reciprocal_().mul_(thr / a)
            x.sub_(torch.clamp(x, min=t.neg(), max=t))
        return
    axis = kind[2]
    # group shrinkage max(1 - thr / n, 0) on small (group-sized) tensors, then one
    # in-place scaling; a zero group gives (0 - thr) / 0 = -inf, so the factor is relu(-inf) = 0
    q = torch.linalg.vector_norm(x, dim=axis, keepdim=True)
    if d is not None:
        # the heuristic group step: thr over a * sqrt(mean_group v) + eps, Adam's denominator
        # at the group's mean second moment
        v, a, eps = d
        q = q.mul_(v.mean(dim=axis, keepdim=True).sqrt_().add_(eps / a))
        thr = thr / a
    x.mul_(q.sub(thr).div_(q).relu_())  # (n - thr) / n: three small operations


def attach_prox(optimizer, rules, *, model=None, metric="auto"):
    """Apply functionals' proxes to chosen parameters after every optimizer step.

    After each ``optimizer.step()`` every parameter ``p`` a rule selects is
    replaced, in place and under ``torch.no_grad()``, by
    ``prox_{tau f}(p)`` with ``tau = lr * lam`` (the parameter group's current
    learning rate): a proximal gradient step on ``loss + lam * f``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer; it is not wrapped (the hook is
        ``optimizer.register_step_post_hook``), so schedulers and
        ``state_dict`` work as before. Every selected parameter must be in
        one of its parameter groups.
    rules : ProxRule or list of ProxRule
        Applied in order (a parameter selected twice gets both proxes).
    model : torch.nn.Module, optional
        Required when a rule selects by name pattern or module type.
    metric : {"auto", "adam", "scalar"}
        ``"scalar"``: the step is ``lr * lam``. ``"adam"``: Adam's diagonal
        metric, the per-coordinate step ``lr * lam / (sqrt(v_hat) + eps)``
        with ``v_hat`` the bias-corrected second moment of the optimizer's
        state (``max_exp_avg_sq`` with ``amsgrad``), the proximal step in the
        metric Adam's update uses; needs an Adam-type optimizer (``betas``,
        ``eps`` and ``exp_avg_sq`` in its state). ``"auto"``: ``"adam"`` for
        ``torch.optim.Adam`` and ``AdamW``, ``"scalar"`` otherwise.

    Returns
    -------
    ProxHandle
        ``handle.remove()`` unregisters the hook; ``handle.steps`` counts the
        steps seen. Also a context manager.

    Raises
    ------
    TypeError
        ``optimizer`` not a torch optimizer, a rule not a :class:`ProxRule`,
        ``model`` not a module.
    ValueError
        A selection that is empty or holds parameters the optimizer does not
        own, a pattern without ``model``, ``metric`` unknown or ``"adam"``
        for a non-Adam optimizer.

    Notes
    -----
    The Adam metric is exact (the prox in the norm ``||.||_D``,
    ``D = diag(sqrt(v_hat) + eps) / lr``) only for separable functionals
    (L1, L0, Box, NonNegative, Zero and their multiples). For the others it
    is a heuristic: ``L21`` gets, for each group, the step ``lr * lam`` over
    Adam's denominator at the group's mean second moment,
    ``sqrt(mean_group v_hat) + eps`` (the group's RMS, as Adafactor's factored
    moments; one reduction of ``v`` per step, no pass of ``sqrt`` over it),
    and the rest (``NuclearNorm``, ``L2``, ...) the same with the mean over
    the whole parameter. The mean denominator ``mean_group(sqrt(v_hat))``
    (the isotropic metric closest to Adam's diagonal one) is never larger
    (Jensen), and up to ``sqrt(group size)`` times smaller when ``v_hat``
    varies within a group, so the RMS rule takes smaller group steps and
    gives weaker group sparsity: on the digits MLP (Adam, lr 1e-3, 15
    epochs, ``L21(axis=1)`` at ``lam = 0.01`` on every Linear) it zeroed 62
    and 108 rows of the two hidden layers against 80 and 111 with the mean.
    The RMS rule is kept as the one heuristic of every non-separable
    functional (Adam's denominator at the RMS of ``v_hat`` over the entries
    the prox couples: a group for ``L21``, the parameter otherwise), and it
    needs no pass of ``sqrt`` over ``v`` on the torch path (CUDA);
    projections (indicators) ignore the step, so for them both metrics
    coincide. A parameter Adam has not stepped yet (no gradient so far) is
    left alone under the Adam metric.

    ``c * L1`` and ``c * L21`` (groups along the last axis) with scalar
    weights on C-contiguous float32/float64 CPU parameters are computed by
    fused numba kernels in place (one pass per parameter, through a NumPy
    view of its memory); on other devices and layouts by in-place tensor
    operations; the other functionals by their ``prox``. The three give the
    same map (to rounding); the fused paths keep the hook's cost a small
    fraction of a training step (``tests/benchmarks/bench_weight_prox.py``).

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import ProxRule, attach_prox
    >>> from tikhon.operators.prox import L1
    >>> net = torch.nn.Linear(4, 3)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> h = attach_prox(opt, [ProxRule(L1(), lam=1e3, params="weight")], model=net)
    >>> net(torch.ones(2, 4)).sum().backward(); opt.step()
    >>> int(net.weight.count_nonzero())
    0
    >>> h.remove()
    """
    torch = require_torch()
    where = "attach_prox"
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{where}: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(rules, ProxRule):
        rules = [rules]
    try:
        rules = list(rules)
    except TypeError as exc:
        raise TypeError(f"{where}: rules must be a ProxRule or a list of them") from exc
    if not rules or not all(isinstance(r, ProxRule) for r in rules):
        raise TypeError(f"{where}: rules must be a non-empty list of ProxRule")
    check_choice(metric, ("auto", "adam", "scalar"), "metric", where)
    if metric == "auto":
        metric = "adam" if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) else "scalar"
    if metric == "adam" and not all("betas" in g and "eps" in g for g in optimizer.param_groups):
        raise ValueError(f"{where}: metric='adam' needs an Adam-type optimizer (betas, eps), got {type(optimizer).__name__}")
    groups = _group_index(optimizer, where)
    entries = []
    for k, rule in enumerate(rules):
        for name, p in _select(rule, model, f"{where}: rules[{k}]"):
            if id(p) not in groups:
                raise ValueError(f"{where}: rules[{k}] selects {name}, which the optimizer does not own")
            if rule.dim is not None and not -p.ndim <= rule.dim < p.ndim:
                raise ValueError(f"{where}: rules[{k}] dim={rule.dim} is out of range for {name} of shape {tuple(p.shape)}")
            entries.append(_Entry(rule, name, p, groups[id(p)]))

    adam = metric == "adam"

    def apply(steps):
        # read each step: load_state_dict replaces the optimizer's state and groups
        pgs, state = optimizer.param_groups, optimizer.state
        with torch.no_grad():
            for e in entries:
                rule = e.rule
                if rule.lam == 0.0 or steps <= rule.start_step:
                    continue
                group = pgs[e.group]
                t = _lr(group) * rule.lam
                if not t > 0:
                    continue
                p, dim, kind = e.p, rule.dim, e.kind
                d = None
                if adam:
                    v, a, eps = _adam_moment(state, group, p)
                    if v is None:
                        continue
                    d = (_grouped(v, dim), a, eps)
                # the grouped view is made each step, as the parameter's storage may be
                # replaced (module.to(), .double())
                x = _grouped(p, dim)
                if kind is not None:
                    # in place on the parameter itself (under no_grad, as optimizers do)
                    _fast_prox(torch, kind, x, t, d, e.views)
                    if x is not p and x.untyped_storage().data_ptr() != p.untyped_storage().data_ptr():
                        p.copy_(_ungrouped(x, p, dim))  # the grouping made a copy
                    continue
                tau = t if d is None else _adam_tau(e.base, t, d[0], d[1], d[2])
                # the private map: arguments were validated once, at attach time
                z = rule.functional._prox(x.detach(), tau)
                p.copy_(_ungrouped(z, p, dim))

    handle = ProxHandle(optimizer, apply)
    handle.metric = metric
    handle.rules = rules
    return handle


def sparsity_mask(source, *, pattern="*", atol=0.0):
    """The non-zero pattern of a model's (or a list of) parameters.

    Parameters
    ----------
    source : torch.nn.Module or iterable of Tensors
    pattern : str
        For a module, an ``fnmatch`` pattern over parameter names (default
        all; e.g. ``"*.weight"``).
    atol : float
        Entries with ``|p| <= atol`` count as zero (default 0: exact zeros).

    Returns
    -------
    dict of str to bool Tensor (for a module) or list of bool Tensors
        ``True`` where the entry is kept (non-zero).

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import sparsity_mask
    >>> sparsity_mask([torch.tensor([0.0, 2.0, -1e-9])], atol=1e-6)
    [tensor([False,  True, False])]
    """
    torch = require_torch()
    where = "sparsity_mask"
    atol = check_nonneg(atol, "atol", where)
    if not isinstance(pattern, str):
        raise TypeError(f"{where}: pattern must be a str, got {type(pattern).__name__}")
    if isinstance(source, torch.nn.Module):
        out = {n: p.detach().abs() > atol for n, p in source.named_parameters() if fnmatch.fnmatchcase(n, pattern)}
        if not out:
            raise ValueError(f"{where}: pattern {pattern!r} selects no parameter of source")
        return out
    items = _tensors(source, "source", "a torch.nn.Module or tensors", where)
    return [p.detach().abs() > atol for p in items]


def freeze_mask(optimizer, masks, *, model=None):
    """Keep a sparsity pattern fixed during fine-tuning (zeroes re-applied after each step).

    The masks are applied at once and then after every ``optimizer.step()``
    (a post-step hook, like :func:`attach_prox`): pruned entries stay zero
    while the kept ones are trained without the penalty, which removes the
    shrinkage bias of the l1 prox ("debiasing").

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    masks : dict of str to bool Tensor, or list of (Tensor, bool Tensor) pairs
        A dict as :func:`sparsity_mask` returns for a module (needs
        ``model``), or explicit ``(parameter, mask)`` pairs; each mask has its
        parameter's shape, ``True`` where the entry is kept.
    model : torch.nn.Module, optional
        The module whose parameter names the dict's keys are.

    Returns
    -------
    handle
        ``handle.remove()`` unregisters the hook.

    Raises
    ------
    TypeError, ValueError
        A mask not boolean or of the wrong shape, an unknown parameter name, a
        dict without ``model``, a parameter the optimizer does not own.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import freeze_mask
    >>> w = torch.nn.Parameter(torch.tensor([0.0, 1.0]))
    >>> opt = torch.optim.SGD([w], lr=1.0)
    >>> h = freeze_mask(opt, [(w, w.detach() != 0)])
    >>> (w * torch.tensor([1.0, 1.0])).sum().backward(); opt.step()
    >>> w.detach()  # the pruned entry stays 0, the kept one trains
    tensor([0., 0.])
    """
    torch = require_torch()
    where = "freeze_mask"
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{where}: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(masks, dict):
        if model is None:
            raise ValueError(f"{where}: model is required when masks is a dict of parameter names")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
        named = dict(model.named_parameters())
        missing = [n for n in masks if n not in named]
        if missing:
            raise ValueError(f"{where}: masks names parameters the model lacks: {missing}")
        pairs = [(n, named[n], m) for n, m in masks.items()]
    else:
        try:
            pairs = [(f"masks[{i}]", p, m) for i, (p, m) in enumerate(masks)]
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{where}: masks must be a dict of name -> mask or a list of (param, mask) pairs") from exc
    if not pairs:
        raise ValueError(f"{where}: masks is empty")
    owned = _group_index(optimizer, where)
    fixed = []
    for name, p, m in pairs:
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            raise TypeError(f"{where}: masks entry {name} must be a bool tensor")
        if tuple(m.shape) != tuple(p.shape):
            raise ValueError(f"{where}: masks entry {name} has shape {tuple(m.shape)}, its parameter {tuple(p.shape)}")
        if id(p) not in owned:
            raise ValueError(f"{where}: masks entry {name} is a parameter the optimizer does not own")
        fixed.append((p, ~m.to(device=p.device)))

    def apply(steps=0):
        with torch.no_grad():
            for p, off in fixed:
                p.data.masked_fill_(off, 0)

    apply()
    return _StepHook(optimizer, apply)
