"""Low-tubal-rank recovery by gradient descent on an overparametrized t-product factorization.

:func:`tubal_factorization` runs plain gradient descent on
``1/2 ||M(U * U^T) - y||^2`` (or ``U * V^T``) for a linear measurement
operator ``M`` on third-order tensors, with ``*`` Kilmer and Martin's
t-product ([KM11]); from a small random start it is biased towards low tubal
rank without any rank penalty ([KVIK25]). :func:`tubal_svd` and
:func:`tubal_rank` are the t-SVD helpers (one FFT along the tubes, one batched
SVD of the Fourier-domain faces). The method follows the solver protocol
(:class:`TubalFactorization`) and is driven by the shared
:func:`~tikhon._core.loop.run`.

References
----------
.. [KM11] M. E. Kilmer and C. D. Martin, "Factorization strategies for
   third-order tensors", Linear Algebra Appl. 435 (2011) 641-658.
.. [KVIK25] S. Karnik, A. Veselovska, M. Iwen and F. Krahmer, "Implicit
   regularization for tubal tensor factorizations via gradient descent",
   ICML 2025 (arXiv:2410.16247).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
from tikhon.operators.base import LinearOperator

from tikhon._core.arrays import norm
from tikhon._core.checks import (
    check_bool,
    check_callable,
    check_finite_array,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_step,
    check_tolerance,
)
from tikhon._core.loop import Solver, State, run

__all__ = [
    "TubalFactorization",
    "TubalState",
    "t_product",
    "t_transpose",
    "tubal_factorization",
    "tubal_rank",
    "tubal_singular_values",
    "tubal_svd",
]


# ---------------------------------------------------------------------------
# t-product algebra
# ---------------------------------------------------------------------------
def _check_tensor(X, name, where):
    X = check_finite_array(X, name, where)
    if X.ndim != 3:
        raise ValueError(f"{where}: {name} must be a 3-D tensor (n1, n2, n3), got shape {X.shape}")
    if min(X.shape) == 0:
        raise ValueError(f"{where}: {name} must have positive dimensions, got shape {X.shape}")
    return np.asarray(X)


def _faces(X):
    """The Fourier-domain faces ``(nf, n1, n2)`` of a real tensor (rfft along the tubes)."""
    return np.ascontiguousarray(scipy.fft.rfft(X, axis=2).transpose(2, 0, 1))


def _unfaces(F, n3):
    return np.ascontiguousarray(scipy.fft.irfft(F.transpose(1, 2, 0), n=n3, axis=2))


def t_product(A, B):
    """The t-product ``A * B`` of third-order tensors (Kilmer and Martin).

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
    B : array of shape (n2, n4, n3)
        Finite real tensors whose tubes (last axis) have the same length.

    Returns
    -------
    ndarray of shape (n1, n4, n3)
        ``bcirc(A) unfold(B)`` folded back: the face-wise matrix product of the
        FFTs along the tubes.

    Raises
    ------
    ValueError
        If a tensor is not third-order or the shapes do not chain.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import t_product
    >>> A = np.random.default_rng(0).standard_normal((2, 3, 4))
    >>> identity = np.zeros((3, 3, 4)); identity[:, :, 0] = np.eye(3)
    >>> bool(np.allclose(t_product(A, identity), A))
    True
    """
    A = _check_tensor(A, "A", "t_product")
    B = _check_tensor(B, "B", "t_product")
    if A.shape[1] != B.shape[0] or A.shape[2] != B.shape[2]:
        raise ValueError(f"t_product: A of shape {A.shape} and B of shape {B.shape} do not chain "
                         "(need A.shape[1] == B.shape[0] and A.shape[2] == B.shape[2])")
    return _t_product(A, B)


def _t_product(A, B):
    # unchecked: the iterations call it on tensors they built
    return _unfaces(np.matmul(_faces(A), _faces(B)), A.shape[2])


def t_transpose(A):
    """The t-transpose: each frontal slice transposed, slices 2..n3 in reverse order.

    Parameters
    ----------
    A : array of shape (n1, n2, n3)

    Returns
    -------
    ndarray of shape (n2, n1, n3)
        The tensor whose block-circulant matrix is ``bcirc(A)^T``.
    """
    return _t_transpose(_check_tensor(A, "A", "t_transpose"))


def _t_transpose(A):
    At = np.transpose(A, (1, 0, 2))
    return np.ascontiguousarray(np.concatenate([At[:, :, :1], At[:, :, :0:-1]], axis=2))


def _face_svd(X):
    """Per-face SVD of the Fourier faces, with real SVDs for the real faces (0, and n3/2).

    A complex SVD of a real face returns factors with arbitrary phases, whose
    inverse FFT would not be real; the real faces are therefore decomposed
    with a real SVD so that ``irfft`` of the factors gives real tensors.
    """
    n3 = X.shape[2]
    F = _faces(X)
    U, S, Vh = np.linalg.svd(F, full_matrices=False)
    real = [0] + ([n3 // 2] if n3 % 2 == 0 and n3 > 1 else [])
    for k in real:
        u, sv, vh = np.linalg.svd(F[k].real, full_matrices=False)
        U[k], S[k], Vh[k] = u, sv, vh
    return U, S, Vh


def tubal_svd(X):
    """The t-SVD ``X = U * S * V^T`` (Kilmer and Martin), by FFT along the tubes.

    Parameters
    ----------
    X : array of shape (n1, n2, n3)
        Finite real tensor.

    Returns
    -------
    U : ndarray of shape (n1, r, n3)
        Orthogonal under the t-product: ``U^T * U`` is the identity tensor.
    S : ndarray of shape (r, r, n3)
        f-diagonal: ``S[i, i, :]`` is the ``i``-th singular tube (``r = min(n1, n2)``).
    V : ndarray of shape (n2, r, n3)
        Orthogonal like ``U``.

    Raises
    ------
    ValueError
        If ``X`` is not a finite 3-D tensor.

    Notes
    -----
    In the Fourier domain along the third axis each face ``X_k`` has an SVD
    ``U_k S_k V_k^H``; the faces ``k`` and ``n3 - k`` are complex conjugates,
    so only ``n3 // 2 + 1`` SVDs are computed (the real faces with a real
    SVD) and the inverse real FFT returns real factors. The singular values of
    the block-circulant matrix ``bcirc(X)`` are those of all ``n3`` faces.

    References
    ----------
    [KM11] (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import tubal_svd
    >>> from tikhon.solvers import t_product, t_transpose
    >>> X = np.random.default_rng(0).standard_normal((4, 3, 5))
    >>> U, S, V = tubal_svd(X)
    >>> bool(np.allclose(t_product(t_product(U, S), t_transpose(V)), X))
    True
    """
    X = _check_tensor(X, "X", "tubal_svd").astype(np.float64, copy=False)
    n3 = X.shape[2]
    Uf, Sf, Vhf = _face_svd(X)
    r = Sf.shape[1]
    Sfull = np.zeros((Sf.shape[0], r, r), dtype=np.complex128)
    idx = np.arange(r)
    Sfull[:, idx, idx] = Sf
    Vf = np.conj(np.transpose(Vhf, (0, 2, 1)))
    return _unfaces(Uf, n3), _unfaces(Sfull, n3), _unfaces(Vf, n3)


def tubal_singular_values(X):
    """The Fourier-domain singular values ``(n3 // 2 + 1, min(n1, n2))`` and the tube norms.

    Returns
    -------
    sigma : ndarray of shape (n3 // 2 + 1, r)
        Singular values of the faces ``k = 0 .. n3 // 2`` (decreasing per face).
    tube_norms : ndarray of shape (r,)
        ``||S[i, i, :]||_2``, the norms of the singular tubes: by Parseval
        ``sqrt(sum_k sigma_k,i^2 / n3)`` over all ``n3`` faces.
    """
    X = _check_tensor(X, "X", "tubal_singular_values").astype(np.float64, copy=False)
    n3 = X.shape[2]
    sigma = np.linalg.svd(_faces(X), compute_uv=False)
    mult = np.full(sigma.shape[0], 2.0)
    mult[0] = 1.0
    if n3 % 2 == 0 and n3 > 1:
        mult[-1] = 1.0
    tube_norms = np.sqrt((mult[:, None] * sigma ** 2).sum(axis=0) / n3)
    return sigma, tube_norms


def tubal_rank(X, tol=None):
    """Tubal rank: the number of nonzero singular tubes (the largest rank of a Fourier face).

    Parameters
    ----------
    X : array of shape (n1, n2, n3)
        Finite real tensor.
    tol : float, optional
        Relative threshold: singular values of the faces at most
        ``tol * sigma_max`` count as zero. Default ``max(n1, n2) * n3 * eps``
        (as :func:`numpy.linalg.matrix_rank` for ``bcirc(X)``).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``X`` is not a finite 3-D tensor or ``tol`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import tubal_rank
    >>> from tikhon.solvers import t_product, t_transpose
    >>> U = np.random.default_rng(0).standard_normal((6, 2, 4))
    >>> tubal_rank(t_product(U, t_transpose(U)))
    2
    """
    X = _check_tensor(X, "X", "tubal_rank")
    n1, n2, n3 = X.shape
    tol = max(n1, n2) * n3 * np.finfo(np.float64).eps if tol is None else check_nonneg(tol, "tol", "tubal_rank")
    sigma, _ = tubal_singular_values(X)
    smax = float(sigma.max())
    if smax == 0.0:
        return 0
    return int((sigma > tol * smax).sum(axis=1).max())


# ---------------------------------------------------------------------------
# gradient descent on the factorization
# ---------------------------------------------------------------------------
@dataclass
class TubalState(State):
    """State of :class:`TubalFactorization`.

    Attributes
    ----------
    U, V : ndarray
        The factors (``V`` is ``U`` itself in the symmetric case).
    X : ndarray
        ``U * V^T``.
    residual : ndarray
        ``M(X) - y``.
    """

    U: Any = None
    V: Any = None
    X: Any = None
    residual: Any = None


class TubalFactorization(Solver):
    """Gradient descent on ``1/2 ||M(U * V^T) - y||^2`` (``V = U`` when symmetric).

    The solver object behind :func:`tubal_factorization` (see there).
    Gradients: with ``G = M^T(M(X) - y)``, ``grad_U = (G + G^T) * U``
    (symmetric) or ``grad_U = G * V``, ``grad_V = G^T * U``.
    """

    name = "tubal_factorization"
    criterion = "residual"

    def __init__(self, measure, y, rank, *, step, symmetric=True, reference=None,
                 rank_tol=1e-3, n_record=None):
        where = self.name
        if not isinstance(measure, LinearOperator):
            raise TypeError(f"{where}: measure must be a tikhon LinearOperator, "
                            f"got {type(measure).__name__}")
        if len(measure.in_shape) != 3:
            raise ValueError(f"{where}: measure must act on 3-D tensors, got in_shape {measure.in_shape}")
        self.M = measure
        self.y = check_finite_array(y, "y", where, shape=measure.out_shape)
        self.y = np.asarray(self.y, dtype=np.float64)
        self.symmetric = check_bool(symmetric, "symmetric", where)
        n1, n2, n3 = measure.in_shape
        if self.symmetric and n1 != n2:
            raise ValueError(f"{where}: symmetric=True needs square faces (n1 == n2), "
                             f"got in_shape {measure.in_shape}")
        self.rank = check_positive_int(rank, "rank", where)
        self.step_size = check_step(step, where, "step")
        self.reference = None
        if reference is not None:
            self.reference = _check_tensor(reference, "reference", where)
            if self.reference.shape != measure.in_shape:
                raise ValueError(f"{where}: reference has shape {self.reference.shape}, "
                                 f"expected {measure.in_shape}")
            self._ref_norm = max(float(np.linalg.norm(self.reference)), 1e-300)
        self.rank_tol = check_nonneg(rank_tol, "rank_tol", where)
        r_max = min(n1, n2)
        self.n_record = r_max if n_record is None else min(check_positive_int(n_record, "n_record", where), r_max)
        self._y_norm = max(float(np.linalg.norm(self.y)), 1e-300)
        self.n3 = n3

    def _state(self, U, V, k=0):
        X = _t_product(U, _t_transpose(V))
        return TubalState(k=k, U=U, V=V, X=X, residual=self.M.forward(X) - self.y)

    def init(self, U0, V0=None):
        """The state at the factors ``U0`` (and ``V0``; ignored when symmetric)."""
        where = self.name
        n1, n2, n3 = self.M.in_shape
        U0 = _check_tensor(U0, "U0", where).astype(np.float64)
        if U0.shape != (n1, self.rank, n3):
            raise ValueError(f"{where}: U0 has shape {U0.shape}, expected {(n1, self.rank, n3)}")
        if self.symmetric:
            return self._state(U0, U0)
        V0 = _check_tensor(V0, "V0", where).astype(np.float64)
        if V0.shape != (n2, self.rank, n3):
            raise ValueError(f"{where}: V0 has shape {V0.shape}, expected {(n2, self.rank, n3)}")
        return self._state(U0, V0)

    def gradients(self, state):
        """``(grad_U, grad_V)`` at the state (``grad_V`` is None when symmetric)."""
        G = self.M.adjoint(state.residual)
        if self.symmetric:
            return _t_product(G + _t_transpose(G), state.U), None
        return _t_product(G, state.V), _t_product(_t_transpose(G), state.U)

    def step(self, state, *, step=None):
        """One gradient step (``step`` overrides the configured step size)."""
        t = self.step_size if step is None else step
        # a too-long step overflows to inf: monitor then reports it and run stops ("nonfinite")
        with np.errstate(over="ignore", invalid="ignore"):
            gU, gV = self.gradients(state)
            U = state.U - t * gU
            V = U if self.symmetric else state.V - t * gV
            return self._state(U, V, state.k + 1)

    def monitor(self, state):
        with np.errstate(over="ignore", invalid="ignore"):
            return self._monitor(state)

    def _monitor(self, state):
        res = float(np.linalg.norm(state.residual))
        out = {"residual": res / self._y_norm, "objective": 0.5 * res * res}
        if self.reference is not None:
            out["error"] = float(norm(state.X - self.reference)) / self._ref_norm
        if res < math.inf and np.isfinite(state.X).all():
            sigma, tubes = tubal_singular_values(state.X)
            smax = float(sigma.max())
            out["tubal_rank"] = float((sigma > self.rank_tol * smax).sum(axis=1).max()) if smax > 0 else 0.0
            for i in range(self.n_record):
                out[f"tube_{i + 1}"] = float(tubes[i])
        else:
            # every key at every check (aligned history); NaN tells run to stop
            out["tubal_rank"] = math.nan
            for i in range(self.n_record):
                out[f"tube_{i + 1}"] = math.nan
        return out


def _init_factor(rng, shape, scale):
    """Gaussian factor with entries ``N(0, scale^2 / (n1 * n3))``: faces of spectral norm ~ scale."""
    n1, _, n3 = shape
    return scale * rng.standard_normal(shape) / math.sqrt(n1 * n3)


def tubal_factorization(measure, y, rank, *, init_scale=1e-3, step=None, max_iter=2000, rng=None,
                        symmetric=True, U0=None, V0=None, tol=1e-10, reference=None,
                        rank_tol=1e-3, n_record=None, callback=None, progress=False,
                        check_every=10):
    r"""Recover a low-tubal-rank tensor by gradient descent on ``U * U^T`` (implicit regularization).

    Minimises ``L(U) = 1/2 ||M(U * U^T) - y||^2`` (``symmetric=True``) or
    ``1/2 ||M(U * V^T) - y||^2`` by plain gradient descent with a constant
    step from a random start of size ``init_scale``; ``*`` is the t-product
    and ``^T`` the t-transpose ([KM11]). With ``rank`` as large as the full
    size (overparametrized) nothing but the small start biases the iterates
    towards low tubal rank ([KVIK25]).

    Parameters
    ----------
    measure : LinearOperator
        Linear measurement map ``M`` from tensors of shape ``(n1, n2, n3)``
        (``n1 == n2`` when symmetric): e.g.
        :class:`~tikhon.operators.GaussianSensing` or
        :class:`~tikhon.operators.Mask` (entrywise sampling).
    y : array
        Measurements of shape ``measure.out_shape`` (NumPy; the iteration runs
        in float64 on the host, as the t-SVD of the monitor does).
    rank : int
        Number of lateral slices of the factors, ``U`` of shape ``(n1, rank, n3)``.
    init_scale : float
        Size of the random start relative to the data: ``U0 = init_scale
        sqrt(sigma) Z`` with ``Z`` i.i.d. ``N(0, 1 / (n1 n3))`` (its Fourier
        faces have spectral norm about 1) and ``sigma`` the largest
        Fourier-domain singular value of ``M^T y`` (for an isotropic ``M``,
        ``E M^T M = I``, about that of the target), so ``init_scale = 1`` starts
        at the target's scale. Ignored when ``U0`` is given.
    step : float, optional
        Constant step size. Default ``0.25 / max(sigma, sigma_0)`` with the
        ``sigma`` above and ``sigma_0`` that of the start ``U0 * V0^T``: the
        linearised scalar iteration ``u <- u - 4 t (u^2 - a) u`` near
        ``u^2 = a <= sigma`` is stable for ``t < 1 / (2 sigma)``.
    max_iter : int
        Iteration budget (a ConvergenceWarning when reached).
    rng : int or numpy.random.Generator, optional
        Seed of the random start (required unless ``U0`` is given, so that
        runs are reproducible).
    symmetric : bool
        Factor ``X = U * U^T`` (default) or ``X = U * V^T``.
    U0, V0 : array, optional
        Explicit starting factors (``V0`` for the asymmetric case).
    tol : float
        Stop when the relative residual ``||M(X) - y|| / ||y|| <= tol``.
    reference : array, optional
        Ground truth: the history records ``error = ||X - reference|| / ||reference||``.
    rank_tol : float
        Relative threshold of the ``tubal_rank`` recorded in the history
        (Fourier-domain singular values ``<= rank_tol * sigma_max`` count as zero).
    n_record : int, optional
        How many singular tube norms to record (default all, ``min(n1, n2)``).
    callback, progress, check_every :
        As in :func:`~tikhon.solvers.fista` (``state.X`` is the iterate).

    Returns
    -------
    Result
        ``x`` the tensor ``U * V^T``; ``history`` with ``residual``
        (relative), ``objective``, ``error`` (with ``reference``),
        ``tubal_rank`` and ``tube_1``, ``tube_2``, ... (norms of the singular
        tubes of the iterate, decreasing); ``steps["step"]``; ``info`` with
        the factors ``U`` and ``V`` and ``init_scale``.

    Raises
    ------
    TypeError
        If ``measure`` is not a LinearOperator or an argument has the wrong type.
    ValueError
        On shape mismatches, NaN/inf data, nonpositive ``init_scale``,
        ``step`` or ``rank``, a missing ``rng`` without ``U0``, or non-square
        faces with ``symmetric=True``.

    References
    ----------
    [KM11], [KVIK25] (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.operators import GaussianSensing
    >>> from tikhon.solvers import tubal_factorization
    >>> from tikhon.solvers import t_product, t_transpose
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((4, 1, 3)) / 2
    >>> X = t_product(W, t_transpose(W))
    >>> M = GaussianSensing(X.shape, 30, rng=1)
    >>> res = tubal_factorization(M, M(X), rank=4, init_scale=1e-4, rng=2, max_iter=3000,
    ...                           tol=1e-5)
    >>> bool(np.linalg.norm(res.x - X) < 1e-3 * np.linalg.norm(X))
    True
    """
    where = "tubal_factorization"
    check_callable(callback, "callback", where)
    check_tolerance(tol, "tol", where)
    if not isinstance(measure, LinearOperator):
        raise TypeError(f"{where}: measure must be a tikhon LinearOperator, got {type(measure).__name__}")
    y = check_finite_array(y, "y", where, shape=measure.out_shape)
    y64 = np.asarray(y, dtype=np.float64)
    G = measure.adjoint(y64)
    if len(measure.in_shape) == 3:
        sigma_y = float(tubal_singular_values(G)[0].max())
    else:
        sigma_y = 1.0  # the solver object rejects the operator with a clear message
    # the configuration is checked (with a provisional step) before the start is drawn
    solver = TubalFactorization(measure, y, rank, step=1.0 if step is None else step,
                                symmetric=symmetric, reference=reference, rank_tol=rank_tol,
                                n_record=n_record)
    n1, n2, n3 = measure.in_shape
    if U0 is None:
        if rng is None:
            raise ValueError(f"{where}: pass rng=... (a seed or numpy Generator) or U0=...")
        init_scale = check_positive(init_scale, "init_scale", where)
        if isinstance(rng, bool) or not isinstance(rng, (numbers.Integral, np.random.Generator)):
            raise TypeError(f"{where}: rng must be an int seed or a numpy.random.Generator, got {rng!r}")
        gen = np.random.default_rng(rng)
        amp = init_scale * math.sqrt(max(sigma_y, 1e-300))
        U0 = _init_factor(gen, (n1, solver.rank, n3), amp)
        if not solver.symmetric and V0 is None:
            V0 = _init_factor(gen, (n2, solver.rank, n3), amp)
    elif not solver.symmetric and V0 is None:
        raise ValueError(f"{where}: symmetric=False with U0 needs V0 as well")
    state = solver.init(U0, V0)
    if step is None:
        scale = max(sigma_y, float(tubal_singular_values(state.X)[0].max()))
        if scale == 0.0:
            raise ValueError(f"{where}: M^T y and the start are zero, pass step=...")
        solver.step_size = 0.25 / scale
    state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                         progress=progress, check_every=check_every)
    info = {"U": state.U, "V": state.V, "init_scale": init_scale}
    return outcome.result(state.X, steps={"step": float(solver.step_size)}, info=info)
