"""Deep unfolding: a solver's own ``step`` unrolled into a trainable network.

:class:`Unfolded` runs ``n_layers`` calls of a tikhon solver's ``step`` (the
very method that :func:`~tikhon.solvers.ista`, :func:`~tikhon.solvers.iht` and
:func:`~tikhon.solvers.chambolle_pock` drive through the shared loop) with
per-layer hyperparameters held as ``nn.Parameter`` tensors: ``step(state,
step=gamma_t, lam=...)`` for proximal gradient, ``step(state, step=gamma_t)``
for IHT, ``step(state, tau=tau_t, sigma=[...])`` for Chambolle-Pock. The solver
steps keep the autograd graph through tensor hyperparameters, so the network
is trained by backpropagation through the iterations; nothing here
re-implements an iteration. The parameters start at the solver's own defaults
(step ``1 / L``, threshold ``lam / L``, the block-balanced TV-CT steps), so an
untrained network is exactly ``n_layers`` plain iterations. The networks
below store each positive hyperparameter as a per-layer log-factor ``s_t`` of
its default (``gamma_t = gamma_0 exp(s_t)``, ``s_t = 0`` untrained): it stays
positive, and Adam's learning rate is a relative change whatever the units;
:meth:`Unfolded.values` gives the hyperparameters themselves.

:class:`UnfoldedISTA` and :class:`UnfoldedIHT` are the sparse-recovery
networks of [NHI25] (per-layer step and threshold; supervised or
objective-based training by :func:`~tikhon.learned.train_unfolded`), with an
optional LISTA-style learned matrix ([CLWY18]); :class:`UnfoldedChambollePock`
unrolls the TV-CT solver of :func:`~tikhon.solvers.tomography.tv_problem`.

Batches. tikhon's operators act on one array of ``in_shape``; the sparse
networks take a batch ``(B, *A.in_shape)``. They hold the matrix of ``A`` (a
:class:`~tikhon.operators.MatrixOperator`'s own, or ``A`` applied once to the
unit vectors for any other operator, up to ``_MAX_ENTRIES`` entries) and give
the solver a private operator of in-shape ``(B, *A.in_shape)`` whose products
are one matrix multiplication for the whole batch. The TV-CT network runs its
images one after another (a CT projector has no batched kernel).

References
----------
.. [NHI25] K. Nagahisa, R. Hayakawa and Y. Iiguni, "Comparison between
   supervised and unsupervised learning in deep unfolded sparse signal
   recovery", arXiv:2509.01331, 2025.
.. [GL10] K. Gregor and Y. LeCun, "Learning fast approximations of sparse
   coding", ICML 2010.
.. [CLWY18] X. Chen, J. Liu, Z. Wang and W. Yin, "Theoretical linear
   convergence of unfolded ISTA and its practical weights and thresholds",
   NeurIPS 2018.
.. [IT19] D. Ito, S. Takabe and T. Wadayama, "Trainable ISTA for sparse signal
   recovery", IEEE Trans. Signal Process. 67(12), 2019.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from tikhon.operators.base import LinearOperator
from tikhon.operators.prox import L0
from torch import nn

from tikhon._core.checks import (
    check_callable,
    check_choice,
    check_int,
    check_positive,
)

__all__ = [
    "Unfolded",
    "UnfoldedChambollePock",
    "UnfoldedIHT",
    "UnfoldedISTA",
]

# a non-matrix operator is materialised (A applied to the unit vectors) up to this size
_MAX_ENTRIES = 2**26


def _check_n_layers(n_layers, where):
    if isinstance(n_layers, bool) or not isinstance(n_layers, numbers.Integral):
        raise TypeError(f"{where}: n_layers must be an int, got {n_layers!r}")
    if n_layers < 1:
        raise ValueError(f"{where}: n_layers must be at least 1, got {n_layers}")
    return int(n_layers)


def _check_learn(learn, allowed, where):
    if isinstance(learn, str):
        learn = (learn,)
    learn = tuple(learn)
    for name in learn:
        check_choice(name, allowed, "learn", where)
    if len(set(learn)) != len(learn):
        raise ValueError(f"{where}: learn has repeated entries: {learn}")
    return learn


class Unfolded(nn.Module):
    """``n_layers`` calls of a solver's ``step`` with per-layer learnable hyperparameters.

    Parameters
    ----------
    init : callable
        ``init(*inputs) -> state``: the solver state the first layer starts
        from (e.g. ``lambda x0: solver.init(x0)``).
    step : callable
        ``step(state, **hyper) -> state``: one iteration, e.g. a solver's
        bound ``step`` method.
    n_layers : int
        Number of layers (iterations), ``>= 1``.
    params : dict, optional
        ``{name: initial value}``; each becomes a parameter of shape
        ``(n_layers, *shape)`` (the value repeated per layer; a float gives
        one scalar per layer) and layer ``t`` passes ``name=params[name][t]``
        to ``step``.
    hyper : callable, optional
        ``hyper(layer) -> dict`` maps a layer's parameters (a dict of
        tensors) to the keywords of ``step`` (default: passed as they are).
    output : callable, optional
        ``output(state) -> tensor`` (default ``state.x``).
    objective : callable, optional
        ``objective(x, *inputs) -> tensor`` of per-sample values of the
        original problem's objective (what ``loss="unsupervised"`` minimises).
    log_scale : bool
        Store each parameter as a per-layer log-factor of its initial value
        (see :meth:`add_layer_param`); the given values must then be positive.
    dtype : torch.dtype
        Dtype of the parameters (default float64).

    Raises
    ------
    TypeError, ValueError
        For a non-integer or non-positive ``n_layers``, non-callable ``init``
        or ``step``, or a non-finite parameter value.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from tikhon.operators.prox import L1, SquaredL2
    >>> from tikhon.solvers.first_order import ProximalGradient
    >>> from tikhon.learned import Unfolded
    >>> b = torch.tensor([3.0, -0.2, 1.0], dtype=torch.float64)
    >>> solver = ProximalGradient(SquaredL2(b=b), L1(), step=0.5)
    >>> net = Unfolded(solver.init, solver.step, 3, params={"step": 0.5})
    >>> net(torch.zeros(3, dtype=torch.float64)).detach().numpy().round(4)
    array([ 1.75, -0.  ,  0.  ])
    """

    def __init__(self, init, step, n_layers, params=None, *, hyper=None, output=None,
                 objective=None, log_scale=False, dtype=torch.float64):
        super().__init__()
        self.log_scale = bool(log_scale)
        self._log_base = {}
        where = type(self).__name__
        self.n_layers = _check_n_layers(n_layers, where)
        self._init = check_callable(init, "init", where, allow_none=False)
        self._step = check_callable(step, "step", where, allow_none=False)
        self._hyper = check_callable(hyper, "hyper", where)
        self._output = check_callable(output, "output", where)
        self._objective = check_callable(objective, "objective", where)
        self.params = nn.ParameterDict()
        for name, value in dict(params or {}).items():
            self.add_layer_param(name, value, dtype=dtype)

    def add_layer_param(self, name, value, dtype=torch.float64, log_scale=None):
        """Add a per-layer parameter ``name`` of shape ``(n_layers, *value.shape)``.

        With ``log_scale`` (default: the network's) the stored parameter is
        ``s_t`` (0 initially) and layer ``t`` uses ``value * exp(s_t)``: a
        positive hyperparameter stays positive, and Adam's learning rate is a
        relative change whatever the units (``exp(0) = 1`` exactly, so the
        untrained layers use ``value`` itself).
        """
        log_scale = self.log_scale if log_scale is None else bool(log_scale)
        v = torch.as_tensor(value, dtype=dtype).detach().clone()
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{type(self).__name__}: parameter {name!r} must be finite, got {value!r}")
        if log_scale:
            if not bool((v > 0).all()):
                raise ValueError(f"{type(self).__name__}: log-scaled parameter {name!r} must be "
                                 f"positive, got {value!r}")
            self._log_base[name] = v
            v = torch.zeros_like(v)
        rep = v.unsqueeze(0).repeat((self.n_layers,) + (1,) * v.ndim)
        self.params[name] = nn.Parameter(rep)

    def values(self):
        """Every layer's hyperparameters: ``{name: tensor of shape (n_layers, ...)}``."""
        out = {}
        for name, p in self.params.items():
            base = self._log_base.get(name)
            out[name] = p if base is None else base.to(p) * torch.exp(p)
        return out

    def layer(self, t):
        """The hyperparameters of layer ``t`` (0-based) as a dict of tensors."""
        return {name: v[t] for name, v in self.values().items()}

    def _start(self, *inputs):
        """``(state, step)`` where ``step(t, state, hyper)`` runs layer ``t``."""
        return self._init(*inputs), lambda t, state, hyper: self._step(state, **hyper)

    def _finish(self, x, inputs):
        return x

    def forward(self, *inputs, n_layers=None, return_all=False, callback=None):
        """Run the first ``n_layers`` layers (default all) from ``init(*inputs)``.

        Parameters
        ----------
        *inputs
            Passed to ``init``.
        n_layers : int, optional
            Run only the first layers (incremental training); ``1 <= n_layers
            <= self.n_layers``.
        return_all : bool
            Also return the list of every layer's output.
        callback : callable, optional
            ``callback(t, x)`` after layer ``t`` (0-based) with its output
            (to monitor long unrolls without keeping every iterate).

        Returns
        -------
        x : torch.Tensor
            The last layer's output; with ``return_all``, ``(x, [x_1, ..., x_T])``.
        """
        T = self.n_layers if n_layers is None else _check_n_layers(n_layers, type(self).__name__)
        if T > self.n_layers:
            raise ValueError(f"{type(self).__name__}: n_layers={T} exceeds the network's {self.n_layers} layers")
        state, step = self._start(*inputs)
        out = (lambda s: s.x) if self._output is None else self._output
        hyper = (lambda layer: layer) if self._hyper is None else self._hyper
        values = self.values()
        iterates = []
        for t in range(T):
            state = step(t, state, hyper({name: v[t] for name, v in values.items()}))
            if return_all or callback is not None:
                xt = self._finish(out(state), inputs)
                if return_all:
                    iterates.append(xt)
                if callback is not None:
                    callback(t, xt)
        x = self._finish(out(state), inputs)
        return (x, iterates) if return_all else x

    def objective(self, x, *inputs):
        """Per-sample objective of the original problem at ``x`` (the unsupervised loss)."""
        if self._objective is None:
            raise ValueError(f"{type(self).__name__}: no objective was given; "
                             "pass objective=... to train with loss='unsupervised'")
        return self._objective(x, *inputs)

    def config(self):
        """JSON-serialisable description of the architecture (saved with the parameters)."""
        return {"n_layers": self.n_layers, "params": sorted(self.params)}


# ---------------------------------------------------------------------------
# batched products with a fixed matrix
# ---------------------------------------------------------------------------
def _operator_matrix(A, where):
    """The dense matrix of ``A`` (m x n, float64 NumPy) acting on flattened arrays."""
    from tikhon.operators import MatrixOperator

    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: A must be a tikhon LinearOperator, got {type(A).__name__}")
    m, n = math.prod(A.out_shape), math.prod(A.in_shape)
    if isinstance(A, MatrixOperator):
        return np.asarray(A.todense(), dtype=np.float64)
    if m * n > _MAX_ENTRIES:
        raise ValueError(f"{where}: A ({m} x {n}) is too large to hold as a matrix for batched "
                         "products; pass a MatrixOperator or a smaller operator")
    # one application per unit vector, once: afterwards every product of the
    # network is one matrix multiplication for the whole batch
    M = np.empty((m, n))
    e = np.zeros(n)
    for j in range(n):
        e[j] = 1.0
        M[:, j] = np.asarray(A.forward(e.reshape(A.in_shape)), dtype=np.float64).reshape(-1)
        e[j] = 0.0
    return M


class _BatchedMatrix(LinearOperator):
    """``x -> x @ M.T`` on a batch ``(B, *in_shape)``: one matmul per product (torch only)."""

    def __init__(self, M, batch, in_shape, out_shape):
        super().__init__((batch, *in_shape), (batch, *out_shape))
        self.M, self.batch = M, batch

    def _matrix(self, v):
        M = self.M
        return M if (M.dtype == v.dtype and M.device == v.device) else M.to(v)

    def _forward(self, x):
        M = self._matrix(x)
        return (x.reshape(self.batch, -1) @ M.T).reshape(self.out_shape)

    def _adjoint(self, y):
        M = self._matrix(y)
        return (y.reshape(self.batch, -1) @ M).reshape(self.in_shape)


class _SparseUnfolded(Unfolded):
    """Shared machinery of the ISTA/IHT networks: the matrix, batching, data term."""

    def __init__(self, A, n_layers, where, dtype):
        M = _operator_matrix(A, where)
        super().__init__(self._no_init, self._no_step, n_layers, log_scale=True, dtype=dtype)
        self.A = A
        self.in_shape, self.out_shape = tuple(A.in_shape), tuple(A.out_shape)
        self.register_buffer("matrix", torch.from_numpy(M).to(dtype))
        # ||A||^2 as the plain solvers take it (SquaredL2(op=A).lipschitz)
        self.L = float(A.norm()) ** 2
        if not self.L > 0:
            raise ValueError(f"{where}: A is the zero operator")

    @staticmethod
    def _no_init(*inputs):  # replaced by _start
        raise NotImplementedError

    _no_step = _no_init

    def _add_step_params(self, dtype):
        # the plain solver's defaults: step 1/L and threshold lam/L, so an untrained
        # network is exactly the plain iterations
        self.step0 = 1.0 / self.L
        self._hyper = self._hyper_of
        if "step" in self.learn:
            self.add_layer_param("step", self.step0, dtype)
        if "threshold" in self.learn:
            self.add_layer_param("threshold", self.lam * self.step0, dtype)

    def _batch(self, y):
        where = type(self).__name__
        if not torch.is_tensor(y):
            raise TypeError(f"{where}: y must be a torch tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(f"{where}: y must be a floating tensor, got {y.dtype}")
        shape = tuple(y.shape)
        single = shape == self.out_shape
        if not single and shape[1:] != self.out_shape:
            raise ValueError(f"{where}: y has shape {shape}, expected {self.out_shape} or "
                             f"(batch, *{self.out_shape})")
        # checked for one signal as for a batch (else SquaredL2 refuses it, naming b)
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"{where}: y must be finite (it contains NaN or inf)")
        return (y.unsqueeze(0), True) if single else (y, False)

    def operator(self, batch):
        """The private batched operator (in-shape ``(batch, *A.in_shape)``) the solvers use."""
        return _BatchedMatrix(self.matrix, int(batch), self.in_shape, self.out_shape)

    def data_term(self, y):
        """``SquaredL2(b=y, op=...)`` on the batch ``y`` (shape ``(B, *A.out_shape)``)."""
        from tikhon.operators.prox import SquaredL2

        return SquaredL2(b=y, op=self.operator(y.shape[0]))

    def residual_sq(self, x, y):
        """Per-sample ``0.5 ||A x - y||^2`` of a batch."""
        r = self.operator(x.shape[0]).forward(x) - y
        return 0.5 * (r * r).reshape(r.shape[0], -1).sum(dim=1)

    def forward(self, y, n_layers=None, return_all=False, callback=None):
        """Recover the signals from measurements ``y``: ``(B, *A.out_shape)`` or one of ``A.out_shape``.

        Returns the estimates (same leading shape), and with ``return_all``
        also every layer's estimate. See :meth:`Unfolded.forward`.
        """
        yb, single = self._batch(y)
        self._single = single
        return super().forward(yb, n_layers=n_layers, return_all=return_all, callback=callback)

    def _finish(self, x, inputs):
        return x[0] if self._single else x

    def objective(self, x, y):
        """Per-sample objective ``0.5 ||A x - y||^2 + lam R(x)`` of a batch (or one signal)."""
        yb, single = self._batch(y)
        xb = x.unsqueeze(0) if single else x
        value = self.residual_sq(xb, yb) + self._penalty(xb)
        return value[0] if single else value


class UnfoldedISTA(_SparseUnfolded):
    """ISTA for the lasso ``min_x 0.5 ||A x - y||^2 + lam ||x||_1`` unrolled with learned steps.

    Layer ``t`` is :meth:`~tikhon.solvers.first_order.ProximalGradient.step`
    with ``step = gamma_t`` and a soft threshold
    ``theta_t``: ``x_{t+1} = soft(x_t - gamma_t A^T (A x_t - y), theta_t)``
    ([IT19], [NHI25]). Untrained, ``gamma_t = 1 / ||A||^2`` and ``theta_t =
    lam gamma_t``: exactly ``n_layers`` ISTA iterations from 0.

    Parameters
    ----------
    A : LinearOperator
        The measurement operator (a :class:`~tikhon.operators.MatrixOperator`,
        or any operator small enough to hold as a matrix; see the module
        docstring on batches).
    lam : float
        Weight of the l1 term (``> 0``); the unsupervised loss is this
        objective.
    n_layers : int
        Number of layers ``T``.
    learn : tuple of {"step", "threshold"}
        The per-layer parameters that are trained. Without ``"threshold"``
        the threshold follows the step (``theta_t = lam gamma_t``).
    lista : {False, True, "untied", "tied"}
        LISTA-style learned matrices in the coupled form of [CLWY18]:
        ``x_{t+1} = soft(x_t - gamma_t W_t^T (A x_t - y), theta_t)`` with
        ``W_t`` (``"untied"``/True: one per layer; ``"tied"``: one shared)
        initialised at ``A``. The layer is still the solver's step: the data
        term's gradient is ``W_t^T (A x - y)``.
    accelerate : bool
        Unroll FISTA instead (momentum without restart, which would couple
        the signals of a batch).
    dtype : torch.dtype
        Dtype of the parameters and of the matrix (default float64).

    Raises
    ------
    TypeError, ValueError
        For a non-operator ``A``, nonpositive ``lam``, bad ``n_layers`` or
        ``learn`` entries, or measurements of the wrong shape.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from tikhon.operators import MatrixOperator
    >>> from tikhon.learned import UnfoldedISTA
    >>> A = MatrixOperator(np.random.default_rng(0).standard_normal((5, 8)))
    >>> net = UnfoldedISTA(A, lam=0.1, n_layers=4)
    >>> net(torch.ones(3, 5, dtype=torch.float64)).shape
    torch.Size([3, 8])
    """

    def __init__(self, A, lam, n_layers, learn=("step", "threshold"), lista=False,
                 accelerate=False, dtype=torch.float64):
        where = "UnfoldedISTA"
        super().__init__(A, n_layers, where, dtype)
        self.lam = check_positive(lam, "lam", where)
        self.learn = _check_learn(learn, ("step", "threshold"), where)
        if lista is True:
            lista = "untied"
        if lista is not False:
            check_choice(lista, ("untied", "tied"), "lista", where)
        self.lista = lista
        self.accelerate = bool(accelerate)
        self._add_step_params(dtype)
        if lista:
            W = self.matrix.detach().clone()
            self.W = nn.Parameter(W.unsqueeze(0).repeat(n_layers if lista == "untied" else 1, 1, 1))

    def _penalty(self, x):
        return self.lam * x.abs().reshape(x.shape[0], -1).sum(dim=1)

    def _hyper_of(self, layer):
        step = layer.get("step", self.step0)
        if "threshold" in layer:
            # prox_{step * lam g}: lam = theta / step gives the threshold theta
            return {"step": step, "lam": layer["threshold"] / step}
        return {"step": step, "lam": self.lam}

    def solver(self, y, f=None):
        """The :class:`~tikhon.solvers.first_order.ProximalGradient` the layers step (plain defaults)."""
        from tikhon.operators.prox import L1
        from tikhon.solvers.first_order import ProximalGradient

        f = self.data_term(y) if f is None else f
        return ProximalGradient(f, L1(), step=self.step0, accelerate=self.accelerate,
                                backtracking=False, restart=None, record_objective=False)

    def _lista_terms(self, y):
        """One smooth data term per distinct W: gradient ``W^T (A x - y)`` (coupled LISTA)."""
        from tikhon.operators.prox import smooth_functional

        op = self.operator(y.shape[0])
        B = y.shape[0]
        terms = []
        for W in self.W:
            def vg(x, W=W):
                r = op.forward(x) - y
                g = (r.reshape(B, -1) @ W.to(r)).reshape(x.shape)
                return 0.5 * (r * r).sum(), g
            terms.append(smooth_functional(vg, lipschitz=self.L))
        return terms

    def _start(self, y):
        x0 = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device)
        if not self.lista:
            solver = self.solver(y)
            return solver.init(x0), lambda t, state, hyper: solver.step(state, **hyper)
        solvers = [self.solver(y, f) for f in self._lista_terms(y)]
        tied = len(solvers) == 1
        return solvers[0].init(x0), lambda t, state, hyper: solvers[0 if tied else t].step(state, **hyper)

    def config(self):
        return {"n_layers": self.n_layers, "lam": self.lam, "learn": list(self.learn),
                "lista": self.lista, "accelerate": self.accelerate,
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape)}


class _HardThresholdSTE(L0):
    """Prox of ``L0`` (the hard threshold) with a straight-through gradient for the threshold.

    Forward: exactly :class:`~tikhon.operators.prox.L0`'s prox, keep ``v``
    where ``v^2 > 2 tau``. Backward: with respect to ``v``, the kept mask (the
    exact derivative almost everywhere); with respect to ``tau``, the
    derivative of the smoothed mask ``v sigmoid((v^2 - 2 tau) / (2 width
    tau))``, since the exact one is zero almost everywhere and would never
    move a learned threshold.
    """

    def __init__(self, width):
        self.width = width

    def _prox(self, v, tau):
        hard = super()._prox(v, tau)
        if not (torch.is_tensor(tau) and tau.requires_grad):
            return hard
        vd = v.detach()
        s = torch.sigmoid((vd * vd - 2.0 * tau) / (2.0 * self.width * tau.detach()))
        # zero in value, the surrogate's d/dtau in gradient
        return hard + vd * (s - s.detach())


class UnfoldedIHT(_SparseUnfolded):
    """Iterative hard thresholding unrolled with learned per-layer steps.

    Two forms, by the type of ``k_or_lam``:

    * an int ``k``: the sparsity-constrained IHT of [BD09]; layer ``t`` is
      :meth:`IHT.step <tikhon.solvers.first_order.IHT.step>` with ``step =
      gamma_t`` (each signal of the batch keeps its ``k`` largest entries);
      the objective is ``0.5 ||A x - y||^2``.
    * a float ``lam``: the l0-regularised problem ``min 0.5 ||A x - y||^2 +
      lam ||x||_0`` of [NHI25]; layer ``t`` is
      :meth:`~tikhon.solvers.first_order.ProximalGradient.step` with ``g = L0``:
      ``x_{t+1} = H(x_t - gamma_t A^T (A x_t - y))`` keeping the entries whose
      square exceeds ``2 theta_t`` (untrained ``theta_t = lam gamma_t``).

    Untrained, ``gamma_t = 1 / ||A||^2``: exactly ``n_layers`` plain
    iterations from 0.

    Surrogate gradient. The hard threshold is applied exactly in the forward
    pass, training and test alike (the network that is trained is the one
    that is used, and its outputs are exactly sparse). Its derivative with
    respect to its input is the kept mask, which is the exact derivative
    almost everywhere (the support is locally constant), so gradients with
    respect to the steps are exact wherever they exist (finite differences
    agree). With respect to a learned threshold the exact derivative is zero
    almost everywhere; ``learn`` containing ``"threshold"`` (``lam`` form
    only) uses a straight-through estimator: the gradient of the smoothed
    mask ``sigmoid((v^2 - 2 theta) / (2 width theta))`` (see
    ``threshold_width``). A smooth forward surrogate was not chosen: it
    changes the network (dense outputs, a different objective) between
    training and test.

    Parameters
    ----------
    A : LinearOperator
        Measurement operator (see :class:`UnfoldedISTA`).
    k_or_lam : int or float
        Sparsity ``k >= 1`` or l0 weight ``lam > 0``.
    n_layers : int
    learn : tuple of {"step", "threshold"}
        Default ``("step",)``, as in [NHI25].
    threshold_width : float
        Relative width of the smoothed mask of the straight-through
        threshold gradient (default 0.1).
    dtype : torch.dtype

    Raises
    ------
    TypeError, ValueError
        As :class:`UnfoldedISTA`; ``"threshold"`` with an int ``k``.
    """

    def __init__(self, A, k_or_lam, n_layers, learn=("step",), threshold_width=0.1,
                 dtype=torch.float64):
        where = "UnfoldedIHT"
        super().__init__(A, n_layers, where, dtype)
        if isinstance(k_or_lam, bool) or not isinstance(k_or_lam, numbers.Real):
            raise TypeError(f"{where}: k_or_lam must be an int (sparsity) or a float (l0 weight), "
                            f"got {k_or_lam!r}")
        self.sparsity = None
        self.lam = None
        if isinstance(k_or_lam, numbers.Integral):
            self.sparsity = check_int(k_or_lam, "k_or_lam", where, minimum=1)
        else:
            self.lam = check_positive(k_or_lam, "k_or_lam", where)
        self.learn = _check_learn(learn, ("step", "threshold"), where)
        if "threshold" in self.learn and self.sparsity is not None:
            raise ValueError(f"{where}: learn='threshold' needs the l0-weight form (a float "
                             "k_or_lam); with a sparsity k the threshold is the k-th magnitude")
        self.threshold_width = check_positive(threshold_width, "threshold_width", where)
        self._add_step_params(dtype)

    def _penalty(self, x):
        if self.lam is None:
            return x.new_zeros(x.shape[0])
        # ||x||_0 has no useful gradient: the value is exact, the gradient comes from the data term
        return self.lam * (x != 0).reshape(x.shape[0], -1).sum(dim=1).to(x.dtype)

    def _hyper_of(self, layer):
        step = layer.get("step", self.step0)
        if self.sparsity is not None:
            return {"step": step}
        if "threshold" in layer:
            return {"step": step, "lam": layer["threshold"] / step}
        return {"step": step, "lam": self.lam}

    def solver(self, y):
        """The solver the layers step: ``IHT`` (sparsity form) or ``ProximalGradient`` with ``L0``."""
        from tikhon.solvers.first_order import IHT, ProximalGradient

        f = self.data_term(y)
        if self.sparsity is not None:
            return IHT(f, self.sparsity, step=self.step0, batch_dims=1, record_objective=False)
        g = _HardThresholdSTE(self.threshold_width) if "threshold" in self.learn else L0()
        return ProximalGradient(f, g, step=self.step0, backtracking=False, record_objective=False)

    def _start(self, y):
        solver = self.solver(y)
        x0 = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device)
        return solver.init(x0), lambda t, state, hyper: solver.step(state, **hyper)

    def config(self):
        return {"n_layers": self.n_layers, "sparsity": self.sparsity, "lam": self.lam,
                "learn": list(self.learn), "threshold_width": self.threshold_width,
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape)}


class UnfoldedChambollePock(Unfolded):
    """Chambolle-Pock for TV-regularised reconstruction unrolled with learned per-layer steps.

    Layer ``t`` is :meth:`~tikhon.solvers.primal_dual.ChambollePock.step` of
    the solver that :func:`~tikhon.solvers.tomography.tv_problem` builds for ``min_x 0.5 ||A x - y||^2 + lam TV(x)`` (``x >=
    0``), with ``tau = tau_t`` and ``sigma = [sigma_data_t, sigma_tv_t]``
    (one dual step per block), and, with ``"lam"`` in ``learn``, a per-layer
    TV weight ``lam_t`` (the layer steps the solver of ``tv_problem(A, y,
    lam_t)``, which shares the state's layout). Untrained, every layer uses
    ``tv_problem``'s block-balanced steps and ``lam``: exactly ``n_layers``
    iterations of :func:`~tikhon.solvers.tv_reconstruction`'s solver from 0.

    Parameters
    ----------
    A : LinearOperator
        Forward operator (e.g. :class:`~tikhon.operators.Radon`).
    lam : float
        TV weight (``> 0``); the unsupervised loss is this objective.
    n_layers : int
    learn : tuple of {"tau", "sigma", "lam"}
        Default ``("tau", "sigma")``.
    nonneg : bool
        Constrain ``x >= 0``.
    dtype : torch.dtype

    Notes
    -----
    A batch of sinograms ``(B, *A.out_shape)`` is reconstructed image by
    image (a projector applies to one image).
    """

    def __init__(self, A, lam, n_layers, learn=("tau", "sigma"), nonneg=True, dtype=torch.float64):
        from tikhon.solvers.tomography import tv_problem

        where = "UnfoldedChambollePock"
        super().__init__(self._no_init, self._no_init, n_layers, log_scale=True, dtype=dtype)
        if not isinstance(A, LinearOperator):
            raise TypeError(f"{where}: A must be a tikhon LinearOperator, got {type(A).__name__}")
        self.A = A
        self.lam = check_positive(lam, "lam", where)
        self.learn = _check_learn(learn, ("tau", "sigma", "lam"), where)
        self.nonneg = bool(nonneg)
        _, steps = tv_problem(A, np.zeros(A.out_shape), self.lam, nonneg=self.nonneg, name=where)
        self.tau0 = float(steps["tau"])
        self.sigma0 = tuple(float(s) for s in steps["sigma"])
        if "tau" in self.learn:
            self.add_layer_param("tau", self.tau0, dtype)
        if "sigma" in self.learn:
            self.add_layer_param("sigma_data", self.sigma0[0], dtype)
            self.add_layer_param("sigma_tv", self.sigma0[1], dtype)
        if "lam" in self.learn:
            self.add_layer_param("lam", self.lam, dtype)

    @staticmethod
    def _no_init(*args, **kwargs):
        raise NotImplementedError

    def _problem(self, y, lam):
        from tikhon.solvers.tomography import tv_problem

        return tv_problem(self.A, y, lam, nonneg=self.nonneg, name="UnfoldedChambollePock")[0]

    def _one(self, y, T, return_all):
        base = self._problem(y, self.lam)
        x0 = torch.zeros(self.A.in_shape, dtype=y.dtype, device=y.device)
        state = base.init(x0, tau=self.tau0, sigma=list(self.sigma0))
        values = self.values()
        iterates = []
        for t in range(T):
            layer = {name: v[t] for name, v in values.items()}
            solver = self._problem(y, layer["lam"]) if "lam" in layer else base
            sigma = None
            if "sigma_data" in layer:
                sigma = [layer["sigma_data"], layer["sigma_tv"]]
            state = solver.step(state, tau=layer.get("tau"), sigma=sigma)
            if return_all:
                iterates.append(state.x)
        return state.x, iterates

    def _check_y(self, y):
        where = "UnfoldedChambollePock"
        if not torch.is_tensor(y) or not y.is_floating_point():
            raise TypeError(f"{where}: y must be a floating torch tensor, got {type(y).__name__}")
        shape, out = tuple(y.shape), tuple(self.A.out_shape)
        single = shape == out
        if not single and shape[1:] != out:
            raise ValueError(f"{where}: y has shape {shape}, expected {out} or (batch, *{out})")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"{where}: y must be finite (it contains NaN or inf)")
        return (y.unsqueeze(0), True) if single else (y, False)

    def forward(self, y, n_layers=None, return_all=False):
        """Reconstruct from sinograms ``y`` (``A.out_shape`` or ``(B, *A.out_shape)``)."""
        T = self.n_layers if n_layers is None else _check_n_layers(n_layers, "UnfoldedChambollePock")
        if T > self.n_layers:
            raise ValueError(f"UnfoldedChambollePock: n_layers={T} exceeds the network's {self.n_layers} layers")
        yb, single = self._check_y(y)
        outs = [self._one(yi, T, return_all) for yi in yb]
        x = torch.stack([o[0] for o in outs])
        its = [torch.stack([o[1][t] for o in outs]) for t in range(T)] if return_all else []
        if single:
            x, its = x[0], [v[0] for v in its]
        return (x, its) if return_all else x

    def objective(self, x, y):
        """Per-image ``0.5 ||A x - y||^2 + lam TV(x)`` (isotropic TV, the solver's gradient)."""
        from tikhon.operators import Gradient

        yb, single = self._check_y(y)
        xb = x.unsqueeze(0) if single else x
        G = Gradient(tuple(self.A.in_shape))
        vals = []
        for xi, yi in zip(xb, yb):
            r = self.A.forward(xi) - yi
            g = G.forward(xi)
            tv = torch.linalg.vector_norm(g, dim=0).sum()
            vals.append(0.5 * (r * r).sum() + self.lam * tv)
        v = torch.stack(vals)
        return v[0] if single else v

    def config(self):
        return {"n_layers": self.n_layers, "lam": self.lam, "learn": list(self.learn),
                "nonneg": self.nonneg, "in_shape": list(self.A.in_shape),
                "out_shape": list(self.A.out_shape)}
