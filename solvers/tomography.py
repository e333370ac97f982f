"""Tomographic reconstruction with (space-variant) isotropic total variation.

:func:`tv_reconstruction` solves

.. math::

    \\min_x \\; D(Ax; y) + \\lambda \\sum_i w_i \\|(\\nabla x)_i\\|_2
    \\; (+\\, \\iota_{x \\ge 0}(x))

with ``D`` the least-squares term ``0.5 ||Ax - y||^2`` or the Kullback-Leibler
divergence ``KL(y; Ax)`` (Poisson data). It is
:class:`~tikhon.solvers.primal_dual.ChambollePock` on ``K = stack([A, Gradient])`` with ``f = separable_sum([D, L21(w
lam)])`` and ``g = NonNegative()``, the two dual blocks balanced by their own
steps; the numba kernels of ``Radon``, ``Gradient`` and ``L21``'s projection do
the work, and one iteration costs one application of ``A``, ``A^T``, ``grad`` and
``grad^T``.

:func:`space_variant_weights` turns an estimate of the image (or of its gradient
magnitude) into the per-pixel weights of space-variant TV (Morotti, Evangelista,
Piccolomini et al., "Space-Variant Total Variation boosted by learning techniques
in few-view tomographic imaging").

The few-view CT recipes that ``tikhon demo`` runs are public here:
:func:`fbp_reconstruction` (the direct baseline), :func:`pilot_wtv_reconstruction`
(space-variant TV whose weights come from a plain-TV pilot) and
:func:`default_tv_lam` (the regularisation weight from the sinogram's noise
level); the recipe with learned weights is
:func:`tikhon.learned.learned_wtv_reconstruction`.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from tikhon._core.arrays import as_like, full, is_torch, to_host, torch_module, xp_sqrt
from tikhon._core.checks import (
    check_bool,
    check_callable,
    check_choice,
    check_finite_array,
    check_interval,
    check_nonneg,
    check_positive,
)
from tikhon._core.loop import Outcome, run
from tikhon.data import estimate_noise_sigma
from tikhon.operators.base import LinearOperator

__all__ = [
    "tv_reconstruction",
    "space_variant_weights",
    "tv_problem",
    "default_tv_lam",
    "fbp_reconstruction",
    "pilot_wtv_reconstruction",
]

# Default sigma/tau balance of the fixed-ratio mode; found by a sweep on
# Shepp-Logan and random-ellipse phantoms (64^2 to 256^2, 30-90 angles,
# 0.5-2 % noise, images scaled to [0, 1]); see tv_reconstruction's Notes.
_DEFAULT_RATIO = 3.0
# power iteration approaches ||A|| from below: keep tau * sigma * ||K||^2 < 1
_NORM_MARGIN = 1.02
#: The one iteration budget of the TV-CT solves: tv_reconstruction, the CT
#: recipes and the ``tikhon`` command line (``--max-iter``) all default to it.
DEFAULT_MAX_ITER = 5000


def _gradient_operator(shape):
    from tikhon.operators import Gradient

    return Gradient(shape)


def _group_norm(g):
    """Pixel-wise Euclidean norm over the first axis (the gradient components)."""
    if is_torch(g):
        return torch_module().linalg.vector_norm(g, dim=0)
    return np.sqrt(np.einsum("i...,i...->...", g, g))


def _image_input(arr, shape, name, where, like, nonneg=False):
    """``arr`` validated and cast to ``like``'s backend, dtype and device (once, before the loop)."""
    arr = check_finite_array(arr, name, where, shape=shape, nonneg=nonneg)
    out = as_like(arr, like)
    # as_like may return the caller's own array: the loop must never write into
    # it; and no autograd graph may grow through thousands of iterations
    return out.detach().clone() if is_torch(out) else out.copy()


def tv_problem(A, y, lam, weights=None, nonneg=True, data="l2", step_ratio=None,
               precondition=False, *, name="tv_problem"):
    """The Chambolle-Pock solver and steps of a (weighted) TV reconstruction.

    Builds ``K = stack([A, Gradient])``, ``f = separable_sum([D(. ; y),
    L21(axis=0, weights=lam * w)])`` and ``g = NonNegative()`` (or ``Zero()``),
    with the block-balanced steps of :func:`tv_reconstruction`. This is what
    :func:`tv_reconstruction` runs; unrolled (learned) reconstructions call
    the same solver's ``step``, and a tensor ``weights`` or ``lam`` that
    requires grad keeps the graph through those steps.

    Parameters
    ----------
    A, y, lam, weights, nonneg, data, step_ratio, precondition
        As in :func:`tv_reconstruction` (``y``, ``lam`` and ``weights`` are
        used as given: a tensor keeps its graph).
    name : str
        The name in the solver's messages.

    Returns
    -------
    solver : ChambollePock
    steps : dict
        ``tau`` and ``sigma`` (per block) for ``solver.init``, and ``nu``,
        ``ratio``, ``norm_K``.
    """
    from tikhon.operators import stack
    from tikhon.operators.prox import L21, KullbackLeibler, NonNegative, SquaredL2, Zero, separable_sum
    from tikhon.solvers.primal_dual import ChambollePock, parse_step_ratio

    where = name
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: A must be a LinearOperator, got {type(A).__name__}")
    shape = tuple(A.in_shape)
    y = check_finite_array(y, "y", where, shape=A.out_shape)
    lam_value = check_nonneg(lam, "lam", where)
    lam = lam if is_torch(lam) else lam_value
    check_choice(data, ("l2", "kl"), "data", where)
    if data == "kl" and bool((y < 0).any()):
        raise ValueError(f"{where}: data='kl' needs nonnegative y (counts)")
    nonneg = check_bool(nonneg, "nonneg", where)
    if weights is not None:
        check_finite_array(weights, "weights", where, shape=shape, nonneg=True)
    ratio, adaptive = parse_step_ratio(step_ratio, where)
    ratio = _DEFAULT_RATIO if ratio is None else ratio
    G = _gradient_operator(shape)
    norm_A = A.norm(like=y) * _NORM_MARGIN
    if norm_A == 0:
        raise ValueError(f"{where}: A is the zero operator")
    norm_G = 2.0 * math.sqrt(len(shape))
    # blocks balanced as in K = [A; nu grad] with nu = ||A|| / ||grad||: the
    # gradient block's dual step is nu^2 times the data block's (a rescaling of
    # its dual variable), so the TV functional needs no scaled operator
    nu = norm_A / norm_G
    fit = SquaredL2(b=y) if data == "l2" else KullbackLeibler(b=y)
    tv = L21(axis=0, weights=lam if weights is None else lam * weights)
    K = stack([A, G])
    solver = ChambollePock(K, separable_sum([fit, tv], K), NonNegative() if nonneg else Zero(),
                           adaptive=adaptive, name=name)
    if precondition:
        try:
            absA = A.abs()
        except NotImplementedError as exc:
            raise ValueError(
                f"{where}: precondition=True needs A.abs() (|A| for the diagonal steps); "
                f"{A._label()} does not provide it"
            ) from exc
        # [PC11] with alpha = 1 on [A; nu grad]; the gradient block's rows each
        # hold two entries +-nu, its dual step 1 / (2 nu) becomes nu / 2 here
        rows = absA.forward(full(shape, 1.0, y))
        cols = absA.adjoint(full(A.out_shape, 1.0, y)) + nu * G.abs().adjoint(full(G.out_shape, 1.0, y))
        tau = 1.0 / _positive_or_one(cols) / ratio
        sigma = (1.0 / _positive_or_one(rows) * ratio, 0.5 * nu * ratio)
        L = 1.0
    else:
        L = math.sqrt(norm_A**2 + (nu * norm_G) ** 2)
        tau = 1.0 / (ratio * L)
        sigma = (ratio / L, nu * nu * ratio / L)
    return solver, {"tau": tau, "sigma": sigma, "nu": nu, "ratio": ratio, "norm_K": L}


def _positive_or_one(v):
    """``v`` with its zero entries replaced by 1 (rows of A that see no pixel keep a unit step)."""
    if is_torch(v):
        return torch_module().where(v > 0, v, torch_module().ones_like(v))
    return np.where(v > 0, v, 1.0)


def tv_reconstruction(
    A,
    y,
    lam="auto",
    weights=None,
    nonneg=True,
    data="l2",
    x0=None,
    tol=1e-4,
    max_iter=DEFAULT_MAX_ITER,
    step_ratio=None,
    precondition=False,
    callback=None,
    progress=False,
    check_every=10,
):
    """Reconstruct an image with (space-variant) isotropic TV by Chambolle-Pock.

    Solves ``min_x D(Ax; y) + lam * sum_i w_i ||(grad x)_i||_2`` (subject to
    ``x >= 0`` when ``nonneg``), where ``D`` is ``0.5 ||Ax - y||^2``
    (``data="l2"``) or ``KL(y; Ax) = sum(Ax - y + y log(y / Ax))``
    (``data="kl"``, Poisson counts), ``grad`` the forward-difference gradient
    with Neumann boundary and ``w`` the per-pixel weights (all ones: plain TV).

    Parameters
    ----------
    A : LinearOperator
        Forward operator (e.g. :class:`tikhon.operators.Radon`); its
        ``in_shape`` is the image shape.
    y : array
        Data of shape ``A.out_shape``, finite (nonnegative for ``data="kl"``).
        A torch tensor runs the whole iteration with torch operations on its
        device and dtype (``A`` must accept tensors, as tikhon's operators
        do); ``weights`` and ``x0`` are moved there once, and ``x`` and the
        duals come back as tensors.
    lam : float or "auto"
        Regularisation weight, ``>= 0``, in the units of ``y`` per unit of
        image gradient: it scales with the noise level of the sinogram (and
        with the image's scale). ``"auto"`` (default) is
        :func:`default_tv_lam` ``(y, weighted=weights is not None)``: 6 times
        (12 times with weights) the noise std estimated from ``y``, tuned for
        images in ``[0, 1]``; ``Result.info`` records the value used and the
        noise estimate. ``"auto"`` estimates the noise of a 2-D sinogram
        ``(n_angles, n_det)`` (``n_det >= 3``): for an operator with another
        output (e.g. a :class:`~tikhon.operators.MatrixOperator` with 1-D
        measurements) pass a number.
    weights : array, optional
        Per-pixel weights ``w_i >= 0`` of the image shape (see
        :func:`space_variant_weights`); ``None`` gives plain TV.
    nonneg : bool
        Constrain ``x >= 0``.
    data : {"l2", "kl"}
        Data term.
    x0 : array, optional
        Starting image (default zeros).
    tol : float
        Stop when the relative primal-dual residual (see Notes) is ``<= tol``.
    max_iter : int
        Maximum number of iterations (a ConvergenceWarning is emitted when it
        is reached).
    step_ratio : float or "adaptive", optional
        Step balance ``r``: ``tau = 1 / (r L)``, ``sigma = r / L`` with ``L``
        the (balanced) norm of ``K``, so ``tau sigma L^2 = 1`` and
        ``sigma / tau = r^2``. ``None`` (default) uses the tuned ``r = 3``;
        ``"adaptive"`` starts there and balances the relative primal and dual
        residuals (Goldstein et al.) with a geometrically decaying adaptation
        (measured slower than the fixed default on CT problems; while it
        adapts, the residuals are read every iteration, a device sync on a GPU).
    precondition : bool
        Use Pock-Chambolle diagonal preconditioning (needs ``A.abs()``); the
        step ratio then multiplies the diagonal steps.
    callback : callable, optional
        ``callback(state) -> bool`` after each iteration; True stops. The state
        is a :class:`~tikhon.solvers.primal_dual.PDHGState`: ``x``, ``y =
        [p, q]`` (data and TV duals), ``tau``, ``k``.
    progress : bool
        Show a tqdm progress bar.
    check_every : int
        Record the history and test convergence every this many iterations.

    Returns
    -------
    Result
        ``x`` (the image), ``dual = (p, q)`` (``q`` the dual of the gradient,
        ``||q_i|| <= lam w_i``), ``history`` with ``objective``, ``residual``
        (the stopping criterion), ``primal_residual``, ``dual_residual`` and
        ``step_ratio``; ``steps`` holds the final ``tau``, ``sigma`` (of the
        data block) and ``nu``; ``info["residual"]`` is the criterion at the
        returned iterate, ``info["lam"]`` the weight used and, for ``lam="auto"``,
        ``info["noise_sigma"]`` (the noise estimate) and ``info["lam_rule"]``.

    Raises
    ------
    TypeError
        If ``A`` is not a :class:`~tikhon.operators.LinearOperator`.
    ValueError
        If ``y``, ``weights`` or ``x0`` has the wrong shape or non-finite
        entries, ``lam`` is negative (or a string other than ``"auto"``),
        ``lam="auto"`` with ``y`` not a 2-D sinogram ``(n_angles, n_det >= 3)``,
        or ``data`` is unknown.

    Notes
    -----
    The blocks of ``K = [A; nu grad]`` are balanced with
    ``nu = ||A|| / ||grad||`` (``||grad||^2 <= 4 d`` in ``d`` dimensions),
    carried out as a dual step ``nu^2 sigma`` for the gradient block of
    ``[A; grad]``. The iteration is :func:`~tikhon.solvers.chambolle_pock`'s
    (dual step first, ``theta = 1``) and so is its criterion: the larger of
    the relative primal residual and the per-block relative dual residuals
    ([GEB15]). ``tol = 1e-4`` gives reconstructions whose PSNR no longer
    changes visibly; tighter tolerances (1e-6) reach objective values within
    ~1e-5 of an interior-point solver.

    Step balance, measured (iterations to ``tol = 1e-4``, Shepp-Logan, 1 %
    noise, with the primal-first iteration and block-summed residuals of
    tikhon 0.1): 128 x 128 / 30 views: r = 0.3: 1460, 1: 560, 3: 540, 10:
    1850, adaptive: 810; 256 x 256 / 60 views: r = 1: 870, 3: 830, adaptive:
    1190; 64 x 64 weighted TV to ``tol = 1e-6``: r = 1: 5730, 3: 4060,
    adaptive: 16370; KL 24 x 24: r = 1: 5130, 3: 2180. Without the block
    balancing (``nu = 1``) the TV block's steps are far too small for CT.

    References
    ----------
    .. [CP11] A. Chambolle and T. Pock, "A first-order primal-dual algorithm for
       convex problems with applications to imaging", J. Math. Imaging Vis. 40
       (2011) 120-145.
    .. [GEB15] T. Goldstein, E. Esser and R. Baraniuk, "Adaptive primal-dual
       splitting methods for statistical learning and image processing",
       NeurIPS 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import shepp_logan, simulate_sinogram
    >>> from tikhon.operators import Radon
    >>> from tikhon.solvers import tv_reconstruction
    >>> x_true = shepp_logan(32)
    >>> angles = np.linspace(0, np.pi, 20, endpoint=False)
    >>> y = simulate_sinogram(x_true, angles, level=0.01, rng=0)
    >>> res = tv_reconstruction(Radon(x_true.shape, angles), y)  # lam="auto"
    >>> res.converged, res.x.shape
    (True, (32, 32))
    >>> bool(np.isclose(res.info["lam"], 6 * res.info["noise_sigma"]))
    True
    """
    where = "tv_reconstruction"
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: A must be a LinearOperator, got {type(A).__name__}")
    y = check_finite_array(y, "y", where, shape=A.out_shape)
    if is_torch(y):
        # the loop works on the data tensor's device: detach it from any graph once
        y = y.detach()
    info = {}
    if isinstance(lam, str):
        if lam != "auto":
            raise ValueError(f"{where}: lam must be a number >= 0 or 'auto', got {lam!r}")
        if len(y.shape) != 2 or y.shape[1] < 3:
            # the estimator reads rows as views and differences along the detector
            raise ValueError(f"{where}: lam='auto' estimates the noise of a 2-D sinogram "
                             f"(n_angles, n_det), but y has shape {tuple(y.shape)}; pass lam= "
                             "for this operator")
        lam, sigma = _auto_lam(y, weights is not None)
        info = {"noise_sigma": sigma, "lam_rule": f"auto: {_LAM_PER_SIGMA[weights is not None]:g} "
                "x noise std" + (" (weighted TV)" if weights is not None else "")}
    lam = check_nonneg(lam, "lam", where)
    shape = tuple(A.in_shape)
    w = None if weights is None else _image_input(weights, shape, "weights", where, y, nonneg=True)
    solver, steps = tv_problem(A, y, lam, w, nonneg, data, step_ratio, precondition, name=where)
    if x0 is None:
        x = full(shape, 0.0, y)
    else:
        x = _image_input(x0, shape, "x0", where, y)
    if nonneg:
        x = x.clamp(min=0) if is_torch(x) else np.maximum(x, 0)
    check_callable(callback, "callback", where)

    # an operator holding trainable tensors must not record a graph either
    with torch_module().no_grad() if is_torch(y) else contextlib.nullcontext():
        state = solver.init(x, tau=steps["tau"], sigma=list(steps["sigma"]))
        state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                             progress=progress, check_every=check_every)
        objective = solver.objective(state)
        residual = max(solver.residuals(state))
    history = outcome.history
    balance = history.pop("step_balance", np.ones_like(history["time"]))
    history["step_ratio"] = steps["ratio"] / balance
    tau, sigma = state.tau_used, state.sigma_used[0]
    return outcome.result(
        state.x,
        steps={"tau": tau if isinstance(tau, float) else float(tau.max()),
               "sigma": sigma if isinstance(sigma, float) else float(sigma.max()),
               "nu": float(steps["nu"]), "step_ratio": float(steps["ratio"] / state.balance),
               "norm_K": float(steps["norm_K"])},
        dual=tuple(state.y),
        info={"objective": objective, "residual": residual, "lam": lam, "data": data, **info},
    )


def space_variant_weights(estimate, eta=None, p=0.5, kind="image", eta_fraction=0.05):
    """Per-pixel weights of space-variant TV from an estimate of the image.

    ``w_i = (eta / sqrt(eta^2 + g_i^2))^(1 - p)`` where ``g_i`` is the
    gradient magnitude of the estimate at pixel ``i`` (forward differences,
    Neumann boundary). Weights lie in ``(0, 1]``: close to 1 in flat regions,
    small on edges, so that edges are penalised less (Morotti, Evangelista,
    Piccolomini et al., space-variant TV for few-view CT).

    Parameters
    ----------
    estimate : array
        An image estimate ``x_hat`` (``kind="image"``), e.g. a TV pilot
        reconstruction or a network's output, or directly a nonnegative
        gradient-magnitude map ``|grad x_hat|`` (``kind="gradient"``).
    eta : float, optional
        Edge threshold ``> 0`` in gradient units; gradients much larger than
        ``eta`` get weight ``~ (eta / g)^(1 - p)``. Default:
        ``eta_fraction * max_i g_i`` (``1`` when the estimate is constant).
    p : float
        Exponent in ``(0, 1]``; ``p = 1`` gives all ones (plain TV), smaller
        ``p`` gives stronger edge preservation.
    kind : {"image", "gradient"}
        What ``estimate`` holds.
    eta_fraction : float
        Fraction of the largest gradient magnitude used when ``eta`` is None.
        The default 0.05 (with ``p = 0.5``) was the best of
        ``{0.02, 0.05, 0.2} x p in {0.2, 0.5}`` for weights from a TV pilot
        on Shepp-Logan 256 x 256, 60 views, 1 % noise (PSNR within 0.1 dB of
        0.02; 0.2 is 0.3-0.8 dB worse).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Weights of the image shape, in ``(0, 1]``: float64 NumPy for NumPy
        input, a tensor of the input's device and dtype for a tensor.

    Examples
    --------
    >>> from tikhon.data import shepp_logan
    >>> from tikhon.solvers import space_variant_weights
    >>> w = space_variant_weights(shepp_logan(64))
    >>> w.shape, bool(0 < w.min() < w.max() <= 1)
    ((64, 64), True)
    """
    where = "space_variant_weights"
    if kind not in ("image", "gradient"):
        raise ValueError(f"{where}: kind must be 'image' or 'gradient', got {kind!r}")
    est = check_finite_array(estimate, "estimate", where)
    if est.ndim < 1 or 0 in tuple(est.shape):
        raise ValueError(f"{where}: estimate must be a non-empty image, got shape {tuple(est.shape)}")
    if is_torch(est):
        est = est.detach()
    else:
        est = np.asarray(est, dtype=np.float64)
    p = check_interval(p, "p", where, 0.0, 1.0, open_lo=True)
    if kind == "image":
        g = _group_norm(_gradient_operator(tuple(est.shape))._forward(est))
    else:
        if bool((est < 0).any()):
            raise ValueError(f"{where}: a gradient-magnitude estimate must be nonnegative")
        g = est
    if eta is None:
        frac = check_positive(eta_fraction, "eta_fraction", where)
        gmax = float(g.max()) if math.prod(g.shape) else 0.0
        eta = frac * gmax if gmax > 0 else 1.0
    else:
        eta = check_positive(eta, "eta", where)
    if p == 1:
        return full(g.shape, 1.0, g)
    return (eta / xp_sqrt(eta**2 + g**2)) ** (1.0 - p)


# lam = factor * (estimated noise std of the sinogram); tuned on Shepp-Logan and
# random ellipses, 256 x 256, 30-90 angles, 0.5-2 % noise (examples/plot_few_view_ct.py).
# Weights in (0, 1] lower the penalty where they are small, hence the larger factor.
_LAM_PER_SIGMA = {False: 6.0, True: 12.0}


def default_tv_lam(y, weighted=False):
    """The TV weight ``lam`` of the CT recipes: a factor times the sinogram's noise level.

    ``lam = 6 sigma`` for plain TV and ``12 sigma`` for space-variant TV with
    weights from :func:`space_variant_weights` (which lie in ``(0, 1]``),
    where ``sigma`` is :func:`tikhon.data.estimate_noise_sigma` of ``y``. The
    factors were tuned on Shepp-Logan and random-ellipse phantoms (256 x 256,
    30-90 views over 180 degrees, 0.5-2 % Gaussian noise, images in
    ``[0, 1]``; ``examples/plot_few_view_ct.py`` sweeps ``lam`` around them).
    Noiseless data (``sigma = 0``) get ``sigma = 1e-3 max|y|``, a weight that
    still removes the few-view streaks.

    Parameters
    ----------
    y : numpy.ndarray or torch.Tensor
        Sinogram of shape ``(n_angles, n_det)``, ``n_det >= 3`` (a tensor is
        read back to the host once).
    weighted : bool
        The weight for space-variant (weighted) TV rather than plain TV.

    Returns
    -------
    float
        The weight; ``tv_reconstruction(A, y, lam="auto")`` uses it and
        records it with the noise estimate in ``Result.info``.

    Raises
    ------
    ValueError
        If ``y`` is not a finite 2-D sinogram with at least 3 detector bins.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import estimate_noise_sigma, shepp_logan, simulate_sinogram
    >>> from tikhon.solvers import default_tv_lam
    >>> y = simulate_sinogram(shepp_logan(64), np.linspace(0, np.pi, 30, endpoint=False),
    ...                       level=0.01, rng=0)
    >>> bool(np.isclose(default_tv_lam(y), 6 * estimate_noise_sigma(y)))
    True
    """
    weighted = check_bool(weighted, "weighted", "default_tv_lam")
    return _auto_lam(y, weighted)[0]


def _auto_lam(y, weighted):
    """``(lam, sigma)`` of :func:`default_tv_lam`: the weight and the noise estimate it is built on."""
    y = check_finite_array(y, "y", "default_tv_lam")
    if y.ndim != 2 or y.shape[1] < 3:
        raise ValueError(f"default_tv_lam: y must be a sinogram (n_angles, n_det >= 3), got shape {tuple(y.shape)}")
    sigma = estimate_noise_sigma(y)
    if sigma == 0:
        sigma = 1e-3 * float(np.abs(to_host(y)).max())
    return _LAM_PER_SIGMA[bool(weighted)] * sigma, sigma


def fbp_reconstruction(A, y):
    """Filtered backprojection, returned as a :class:`~tikhon.solvers.Result` like the iterative recipes.

    Parameters
    ----------
    A : Radon
        The projector (any operator with an ``fbp(sinogram)`` method).
    y : numpy.ndarray or torch.Tensor
        Sinogram of shape ``A.out_shape``; a tensor is reconstructed on its
        device.

    Returns
    -------
    Result
        ``x`` the image (of ``y``'s type), ``n_iter = 0``, ``status =
        "converged"`` (a direct method), ``elapsed`` its time.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import shepp_logan, simulate_sinogram
    >>> from tikhon.metrics import psnr
    >>> from tikhon.solvers import fbp_reconstruction
    >>> x = shepp_logan(64)
    >>> y, A = simulate_sinogram(x, np.linspace(0, np.pi, 90, endpoint=False), noise=None,
    ...                          return_operator=True)
    >>> res = fbp_reconstruction(A, y)
    >>> res.n_iter, bool(psnr(res.x, x) > 20)
    (0, True)
    """
    if not callable(getattr(A, "fbp", None)):
        raise TypeError(f"fbp_reconstruction: A must have an fbp method (a Radon), got {type(A).__name__}")
    y = check_finite_array(y, "y", "fbp_reconstruction", shape=A.out_shape)
    t0 = time.perf_counter()
    x = A.fbp(y)
    return Outcome("converged", 0, "fbp_reconstruction: filtered backprojection (direct, no iterations)",
                   elapsed=time.perf_counter() - t0).result(x)


def pilot_wtv_reconstruction(A, y, lam=None, pilot_lam=None, p=0.5, eta_fraction=0.05,
                             tol=1e-4, max_iter=DEFAULT_MAX_ITER, progress=False):
    """Space-variant TV with weights from a plain-TV pilot reconstruction.

    Two solves of :func:`tv_reconstruction` (least squares, ``x >= 0``): the
    pilot with plain TV at ``pilot_lam``, then weighted TV at ``lam`` with the
    weights :func:`space_variant_weights` of the pilot (``p``,
    ``eta_fraction``), started from the pilot.

    Parameters
    ----------
    A : LinearOperator
        The projector (e.g. :class:`tikhon.operators.Radon`).
    y : numpy.ndarray or torch.Tensor
        Sinogram of shape ``A.out_shape``; a tensor runs both solves on its
        device.
    lam : float, optional
        Weight of the weighted solve; default ``default_tv_lam(y, weighted=True)``.
    pilot_lam : float, optional
        Weight of the pilot; default ``default_tv_lam(y)``.
    p, eta_fraction : float
        As in :func:`space_variant_weights` (the defaults were the best of a
        sweep for weights from a TV pilot).
    tol, max_iter, progress
        As in :func:`tv_reconstruction`, for each solve.

    Returns
    -------
    Result
        The weighted solve's result, except that ``n_iter`` and ``elapsed``
        count both solves, ``status`` is the pilot's when the pilot did not
        converge (``converged`` only when both did), and ``info["pilot"]`` is
        the pilot's :class:`~tikhon.solvers.Result`. A pilot stopped by NaN is
        returned as it is, without the weighted solve.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.data import shepp_logan, simulate_sinogram
    >>> from tikhon.solvers import pilot_wtv_reconstruction
    >>> x = shepp_logan(32)
    >>> y, A = simulate_sinogram(x, np.linspace(0, np.pi, 20, endpoint=False), level=0.01,
    ...                          rng=0, return_operator=True)
    >>> res = pilot_wtv_reconstruction(A, y)
    >>> res.converged, bool(np.isclose(res.info["lam"], 2 * res.info["pilot_lam"]))  # 12 vs 6 sigma
    (True, True)
    """
    where = "pilot_wtv_reconstruction"
    # "auto": default_tv_lam, recorded with the noise estimate in each Result.info
    pilot_lam = "auto" if pilot_lam is None else check_nonneg(pilot_lam, "pilot_lam", where)
    lam = "auto" if lam is None else check_nonneg(lam, "lam", where)
    pilot = tv_reconstruction(A, y, pilot_lam, tol=tol, max_iter=max_iter, progress=progress)
    if pilot.status in ("nonfinite", "diverged"):
        return pilot
    w = space_variant_weights(pilot.x, p=p, eta_fraction=eta_fraction)
    res = tv_reconstruction(A, y, lam, weights=w, x0=pilot.x, tol=tol, max_iter=max_iter, progress=progress)
    status, message = res.status, res.message
    if pilot.status != "converged":
        status, message = pilot.status, f"pilot: {pilot.message}; weighted: {res.message}"
    outcome = Outcome(status, pilot.n_iter + res.n_iter, message, res.history,
                      pilot.elapsed + res.elapsed)
    return outcome.result(res.x, steps=res.steps, dual=res.dual, info={**res.info, "pilot": pilot, "pilot_lam": pilot.info["lam"]})
