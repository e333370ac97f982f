"""The Lasso by coordinate descent: working sets, gap-safe screening, Anderson extrapolation.

Problem (scikit-learn's ``Lasso`` convention, with its sample weights)::

    min_{w, b}  1/(2 sum_i sw_i) sum_i sw_i (y_i - x_i^T w - b)^2 + lam sum_j pw_j |w_j|

``sw`` the sample weights (all ones by default: the data term is then
``||y - X w - b||^2 / (2 n)``), ``pw`` per-feature multipliers of ``lam``
(``pw_j = 0``: feature ``j`` is not penalized) and ``b`` an unpenalized
intercept (``fit_intercept``). Rescaling ``sw`` does not change the problem,
as in scikit-learn, which rescales them to sum to ``n``.

Method (one outer iteration is one ``step`` of the solver protocol, driven by
:func:`tikhon._core.loop.run`):

1. the *certificate*: the residual ``R`` is recomputed from scratch, the
   correlations ``c_j^T S R`` of every feature left by screening are formed,
   the residual is projected on the constraints of the unpenalized features
   and rescaled into the dual feasible set, and the duality gap of that dual
   point is the stopping criterion;
2. *gap-safe screening* [NFGS17]: the dual optimum lies in a ball of radius
   ``sqrt(2 gap)`` around the dual point, so features whose constraint cannot
   be active anywhere in that ball are zero at the optimum and are dropped;
3. a *working set* [MSG18] [BKM22]: the support, the unpenalized features
   and, by priority, the features whose dual constraints are closest to being
   violated (smallest ``(lam pw_j - |c_j^T theta|) / ||c_j||``), as many of
   them as the support has features (at least 30 features in all); beyond
   ``n / 2`` features only features whose optimality condition fails are
   added (celer and skglm take twice the support whatever the violations;
   subproblems with more columns than about ``n / 2`` made CD slow, and the
   restriction halved the epochs on the 500 x 5000 benchmark);
4. *coordinate descent* on the working set (cyclic, incremental residual
   updates, all in one numba kernel) to an optimality violation of 0.1 times
   the outer one or a subproblem gap of 0.3 times the outer gap (when the
   working set holds every violated constraint: of 0.01 times the outer gap,
   or half the final target), with *Anderson extrapolation* of the primal
   iterates every 6 epochs, kept only when it lowers the objective [BKM22].

Celer's dual extrapolation [MSG18] is not implemented: the dual point is
the rescaled (projected) residual, as in scikit-learn; the extrapolation is
of the primal iterates (skglm's).

The intercept is profiled out exactly (``b = ybar - m^T w`` at the end, ``m``
the weighted column means). Dense designs are centered explicitly: one
Fortran-ordered copy of ``X - m`` per call, as scikit-learn makes; the implicit
form ``R = (y_c - X w) + m^T w`` cancels for columns whose mean is large
against their spread (an error of about ``eps (m_j / ||c_j||)^2``). Sparse
designs keep the implicit form, so they stay sparse; a warning says when
``eps (m_j / ||c_j||_S)^2`` is above the tolerance, and a negative duality gap
beyond rounding is reported as lost accuracy (status ``"nonfinite"``), never
as convergence. Unpenalized features (``lam = 0`` included) are handled by a
pivoted QR of their ``n x |U|`` centered, weighted block (a dense block of
those columns only).

The references ([NFGS17], [MSG18], [BKM22], [FHT10]) are in :func:`lasso`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tikhon._core.arrays import is_torch
from tikhon._core.checks import (
    check_bool,
    check_callable,
    check_finite_array,
    check_nonneg,
    check_positive,
    check_positive_int,
    check_real,
    check_real_floating,
    check_tolerance,
)
from tikhon._core.loop import Solver, State, run, warn_unconverged

from . import _lasso_kernels as _k

__all__ = ["LassoPath", "alpha_max", "lasso", "lasso_path"]

_WHERE = "lasso"
# Anderson memory (iterates combined; an extrapolation every K + 1 epochs, skglm's K)
_ANDERSON_K = 5
# a working-set solve stops at this fraction of the outer optimality violation
# (skglm uses 0.3; 0.1 took fewer epochs on the 500 x 5000 benchmark of peers_lasso.py)
_INNER_RATIO = 0.1
# ... or at this fraction of the outer duality gap (celer's 0.3)
_GAP_RATIO = 0.3
# when the working set holds every violated constraint, its solve aims at
# max(_FINAL_RATIO * final target, _COMPLETE_RATIO * outer gap) on its own gap
_FINAL_RATIO = 0.5
_COMPLETE_RATIO = 0.01
# epochs between two checks of the subproblem's gap (celer checks every 10)
_GAP_EVERY = 10
# smallest working set (skglm starts at 10, celer at 100; 30 was the best compromise
# between the dense and the sparse benchmarks of peers_lasso.py)
_WS_MIN = 30
# a working set holds the support and up to _WS_GROW times as many violators
_WS_GROW = 1
# ... except that it is twice the support while that is below n / _N_FRAC features
_N_FRAC = 2
_EPS = float(np.finfo(np.float64).eps)


def _refuse_torch(v, name, where):
    # the Lasso is NumPy/scipy only: say so rather than fail deep inside numba
    if is_torch(v):
        raise TypeError(f"{where}: {name} is a torch tensor; lasso works on NumPy arrays and "
                        f"scipy.sparse matrices only (pass {name}.detach().cpu().numpy())")


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


class _Design:
    """The design in the kernels' layout: dense Fortran ``Xd`` or the CSC triplet."""

    def __init__(self, X, where):
        import scipy.sparse as sp

        _refuse_torch(X, "X", where)
        if sp.issparse(X):
            if X.ndim != 2:
                raise ValueError(f"{where}: X must be 2-D, got {X.ndim}-D")
            if X.dtype not in (np.float32, np.float64):
                raise TypeError(f"{where}: X must be float32 or float64, got dtype {X.dtype}"
                                " (convert with .astype(np.float64))")
            if X.format != "csc":
                X = X.tocsc()  # a copy: column access needs CSC
            elif not X.has_canonical_format:
                X = X.copy()
            if not X.has_canonical_format:
                X.sum_duplicates()
            if not np.isfinite(X.data).all():
                raise ValueError(f"{where}: X contains NaN or inf")
            self.sparse = True
            self.dtype = X.dtype
            idx = np.result_type(X.indices.dtype, X.indptr.dtype)
            self.kernel = (X.data, X.indices.astype(idx, copy=False), X.indptr.astype(idx, copy=False))
            self.X = X
        else:
            X = check_real_floating(X, "X", where)
            if X.ndim != 2:
                raise ValueError(f"{where}: X must be 2-D, got shape {X.shape}")
            if not np.isfinite(X).all():
                raise ValueError(f"{where}: X contains NaN or inf")
            self.sparse = False
            self.dtype = X.dtype
            # a copy when X is not Fortran-ordered: coordinate descent reads columns
            self.X = self.kernel = np.asfortranarray(X)
        self.shape = X.shape

    def with_array(self, Xc):
        """A dense design holding the Fortran array ``Xc`` (the centered copy) instead."""
        new = object.__new__(_Design)
        new.sparse, new.dtype, new.shape = False, self.dtype, self.shape
        new.X = new.kernel = Xc
        return new

    def columns(self, idx):
        """The dense ``(n, len(idx))`` block of the columns ``idx``."""
        if self.sparse:
            return np.asarray(self.X[:, idx].toarray(), dtype=np.float64)
        return np.asarray(self.X[:, idx], dtype=np.float64)

    def rmatmat(self, V):
        """``X^T V`` for a dense ``(n, k)`` ``V`` (float64)."""
        return np.asarray(self.X.T @ V, dtype=np.float64)


class _Problem:
    """Everything about a Lasso problem that does not depend on ``lam``."""

    def __init__(self, X, y, sample_weight, penalty_weights, fit_intercept, where):
        self.design = d = X if isinstance(X, _Design) else _Design(X, where)
        n, p = d.shape
        if n == 0 or p == 0:
            raise ValueError(f"{where}: X must have at least one sample and one feature, got shape {d.shape}")
        _refuse_torch(y, "y", where)
        _refuse_torch(sample_weight, "sample_weight", where)
        y = check_finite_array(y, "y", where)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{where}: y must have shape ({n},) to match X {d.shape}, got {y.shape}")
        self.fit_intercept = check_bool(fit_intercept, "fit_intercept", where)
        if sample_weight is None:
            unit = True
            s = np.full(n, 1.0 / n)
        else:
            sw = np.asarray(sample_weight)
            if sw.dtype.kind not in "fiu" or sw.dtype == bool:
                raise TypeError(f"{where}: sample_weight must be a real array, got dtype {sw.dtype}")
            sw = check_finite_array(sw.astype(np.float64), "sample_weight", where, shape=(n,), nonneg=True)
            total = float(sw.sum())
            if not total > 0:
                raise ValueError(f"{where}: sample_weight must have a positive sum")
            s = sw / total
            # equal weights are no weights: use the kernels' unit-weight path
            unit = bool(np.all(sw == sw[0]))
        self.s = s
        # the kernels' weights: the float 1/n selects their unit-weight loops
        self.ks = 1.0 / n if unit else s
        if penalty_weights is None:
            self.pw = np.ones(p)
        else:
            _refuse_torch(penalty_weights, "penalty_weights", where)
            pw = np.asarray(penalty_weights)
            if pw.dtype.kind not in "fiu" or pw.dtype == bool:
                raise TypeError(f"{where}: penalty_weights must be a real array, got dtype {pw.dtype}")
            self.pw = check_finite_array(pw.astype(np.float64), "penalty_weights", where, shape=(p,),
                                         nonneg=True)
        y64 = y.astype(np.float64)
        yw = y64[s > 0]
        if self.fit_intercept and yw.size and float(np.ptp(yw)) == 0.0:
            # a constant target: its centered version is exactly zero (the weighted
            # mean of equal values computed in floating point need not equal them)
            self.ybar = float(yw[0])
            self.y_c = np.zeros(n)
        else:
            self.ybar = float(s @ y64) if self.fit_intercept else 0.0
            self.y_c = y64 - self.ybar
        self.y_norm2 = float(s @ (self.y_c * self.y_c))
        # the stopping target's absolute floor: the rounding of the residual
        # (~eps |y| per sample) makes smaller gaps meaningless
        self.gap_floor = 64.0 * _EPS * _EPS * float(s @ (y64 * y64))
        self.kappa = 0.0
        if self.fit_intercept and not d.sparse:
            # explicit centering (one Fortran copy of X - m, as scikit-learn makes): the
            # implicit form R = (y_c - X w) + m.w cancels for columns with large means
            Xc = np.empty(d.shape, dtype=d.dtype, order="F")
            m, L, Q = _k.center_dense(d.kernel, self.ks, Xc)
            self.design = d = d.with_array(Xc)
            self.mean = m  # the true weighted column means (for the intercept)
            self.m = np.zeros(p)  # the kernels see centered columns
        else:
            m, L, Q = _k.column_stats(d.kernel, self.ks, self.fit_intercept)
            self.mean = self.m = m
        # a column is constant when its centered norm is at the rounding level of its
        # own uncentered norm (a threshold relative to the largest column would drop
        # features of small scale)
        L[L <= (max(16, n) * _EPS) ** 2 * Q] = 0.0
        if d.sparse and self.fit_intercept and (L > 0).any():
            # sparse: the implicit centering loses ~eps (m_j / ||c_j||_S)^2
            live = L > 0
            self.kappa = float(np.max(np.abs(m[live]) / np.sqrt(L[live])))
        self.L = L
        self.live = np.flatnonzero(self.L > 0)
        self.norm = np.sqrt(self.L)
        self._unpen_cache = {}

    def kargs(self):
        return (self.design.kernel, self.ks)

    def unpenalized(self, thr):
        """The unpenalized live features (``thr_j == 0``) as a lazy projector, cached (None if none)."""
        U = self.live[thr[self.live] == 0]
        key = U.tobytes()
        if key not in self._unpen_cache:
            self._unpen_cache = {key: None if U.size == 0 else _Unpenalized(self, U)}
        return self._unpen_cache[key]

    def project(self, R, g, up, feats):
        """``(theta, corr)``: ``R`` projected S-orthogonally off the unpenalized columns.

        ``up`` is :meth:`unpenalized`'s answer; ``g[feats]`` holds
        ``c_j^T S R`` (returned as ``corr`` when every feature is penalized);
        otherwise ``corr[feats]`` receives ``c_j^T S theta`` for the penalized
        ``feats`` (one pass over their columns; 0 on the unpenalized ones).
        Dividing ``theta`` by ``max(1, max_j |corr_j| / thr_j)`` over the
        penalized ``feats`` makes it dual feasible.
        """
        if up is None:
            return R, g
        corr = np.zeros_like(g)
        if not R.any():
            return R, corr
        theta = up.project(R)
        pen = feats[up.thr[feats] > 0]
        if pen.size:
            # the weighted mean of theta is zero up to rounding; subtracting it keeps
            # X_j^T S theta equal to c_j^T S theta
            mu = float(self.s @ theta)
            _k.correlations(*self.kargs(), self.m, theta, -mu, pen, corr)
        return theta, corr

    def dual(self, theta):
        d = self.y_c - theta
        return 0.5 * self.y_norm2 - 0.5 * float(self.s @ (d * d))


class _Unpenalized:
    """The S-orthogonal projection off the centered unpenalized columns ``C_U``.

    Built lazily (a pivoted QR of the ``n x |U|`` block ``S^(1/2) C_U``,
    truncated at its numerical rank): neither a ``p x |U|`` matrix nor a
    ``|U| x |U|`` inverse is formed, so ``lam = 0`` or many unpenalized
    features cost ``O(n |U| min(n, |U|))`` once per problem.
    """

    def __init__(self, prob, U):
        self.prob, self.U = prob, U
        self.thr = None
        self._f = None

    def _factor(self):
        import scipy.linalg as sla

        prob = self.prob
        CU = prob.design.columns(self.U)
        if prob.m.any():
            CU -= prob.m[self.U]
        sq = np.sqrt(prob.s)
        Q, Rr, piv = sla.qr(sq[:, None] * CU, mode="economic", pivoting=True)
        d = np.abs(np.diag(Rr))
        rank = int(np.count_nonzero(d > 1e-12 * d[0])) if d.size and d[0] > 0 else 0
        self._f = (sq, np.ascontiguousarray(Q[:, :rank]), Rr[:rank, :rank],
                   np.asfortranarray(CU[:, piv[:rank]]))

    def project(self, R):
        import scipy.linalg as sla

        if self._f is None:
            self._factor()
        sq, Q, Rk, CP = self._f
        theta = R
        if Q.shape[1] == 0:
            return theta
        for _ in range(2):  # one refinement: the projection is then orthogonal to rounding
            a = sla.solve_triangular(Rk, Q.T @ (sq * theta))
            theta = theta - CP @ a
        return theta


def _check_lam(lam, where):
    return check_nonneg(lam, "lam", where)


def alpha_max(X, y, *, sample_weight=None, penalty_weights=None, fit_intercept=True):
    """The smallest ``lam`` for which the Lasso's penalized coefficients are all zero.

    ``max_j |c_j^T S theta_0| / pw_j`` over the penalized features, where
    ``theta_0`` is the centered target with the unpenalized features fitted
    out (without them, scikit-learn's ``max_j |X_j^T (y - ybar)| / n``).

    Parameters
    ----------
    X, y, sample_weight, penalty_weights, fit_intercept
        As in :func:`lasso`.

    Returns
    -------
    float
        At ``lam >= alpha_max`` every penalized coefficient is zero (the
        unpenalized ones are then the weighted least-squares fit).

    Raises
    ------
    ValueError
        As :func:`lasso`, and when no feature is penalized (every penalty
        weight zero, or every penalized column constant).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.eye(3); y = np.array([3.0, 0.0, 0.0])
    >>> float(alpha_max(X, y, fit_intercept=False))
    1.0
    """
    prob = _Problem(X, y, sample_weight, penalty_weights, fit_intercept, "alpha_max")
    return _alpha_max(prob)


def _alpha_max(prob, where="alpha_max"):
    thr = prob.pw.copy()
    feats = prob.live
    pen = feats[thr[feats] > 0]
    if pen.size == 0:
        raise ValueError(f"{where}: no feature is penalized (every penalty weight is zero or every "
                         "penalized column is constant): alpha_max is undefined; pass lams explicitly")
    g = np.zeros(prob.design.shape[1])
    _k.correlations(*prob.kargs(), prob.m, prob.y_c, 0.0, feats, g)
    up = prob.unpenalized(thr)
    if up is not None:
        up.thr = thr
    _, corr = prob.project(prob.y_c, g, up, feats)
    return float(np.max(np.abs(corr[pen]) / thr[pen]))


# ---------------------------------------------------------------------------
# the solver (protocol of tikhon._core.loop)
# ---------------------------------------------------------------------------


@dataclass
class LassoState(State):
    """State of the working-set coordinate descent."""

    w: np.ndarray = None          # float64 coefficients
    r: np.ndarray = None          # y_c - X w (the residual is r + o)
    o: float = 0.0                # m . w
    active: np.ndarray = None     # indices of features not screened out (and not constant)
    g: np.ndarray = None          # c_j^T S R for the active features
    corr: np.ndarray = None       # c_j^T S theta for the active features (theta dual feasible)
    viol: np.ndarray = None       # optimality violation of each active feature
    gap: float = math.inf
    primal: float = math.inf
    dual: float = -math.inf
    ws_size: int = 0
    n_epochs: int = 0
    n_screened: int = 0
    full_check: bool = False      # last gap was computed over all features
    viol_max: float = math.inf
    n_forced: int = 0             # support and unpenalized features among the active ones
    n_viol: int = 0               # other active features violating their optimality condition
    g_ready: bool = False         # g already holds the correlations at w (skip the next pass)
    g_all: bool = False           # g holds the correlations at w for every feature
    inv_scale: float = 1.0        # theta = (projected R) * inv_scale is dual feasible


class LassoCD(Solver):
    """Working-set coordinate descent for the Lasso (see the module docstring).

    The criterion is the duality gap ``gap``; :meth:`done` compares it with
    ``tol * ||y_c||_S^2`` (``scale``), scikit-learn's and celer's scaling.
    """

    name = "lasso"
    criterion = "gap"

    def __init__(self, prob, lam, *, working_set=True, screening=True, anderson=True,
                 max_epochs=10_000):
        self.prob = prob
        self.lam = lam
        self.thr = lam * prob.pw
        self.scale = prob.y_norm2
        self.working_set = working_set
        self.screening = screening
        self.anderson_k = _ANDERSON_K if anderson else 0
        self.max_epochs = max_epochs
        self._target = 0.0
        self._r_tmp = np.empty(prob.design.shape[0])
        self._score = np.empty(prob.design.shape[1])
        # the unpenalized features' constraint data (None when every feature is penalized)
        self._up = prob.unpenalized(self.thr)
        if self._up is not None:
            self._up.thr = self.thr
        self.lost = False             # a negative gap beyond rounding was seen

    # -- protocol -----------------------------------------------------------
    def init(self, w0=None, g0=None):
        """The state at ``w0``; ``g0``, when given, must hold ``c_j^T S R(w0)`` for every feature.

        (:func:`lasso_path` passes the correlations of the previous solution,
        which spares the first pass over the design.)
        """
        p = self.prob.design.shape[1]
        w = np.zeros(p) if w0 is None else np.array(w0, dtype=np.float64)
        w[self.prob.L == 0] = 0.0
        g = np.zeros(p) if g0 is None else np.array(g0, dtype=np.float64)
        st = LassoState(w=w, r=np.empty(self.prob.design.shape[0]), active=self.prob.live.copy(),
                        g=g, corr=np.zeros(p), viol=np.zeros(p), g_ready=g0 is not None)
        return st

    def start(self, state, *, tol, max_iter, check_every):
        self._target = max(tol * self.scale, self.prob.gap_floor)
        self._evaluate(state)
        return state

    def step(self, state, **hyper):
        prob = self.prob
        ws, complete = self._working_set(state)
        tol_in = _INNER_RATIO * state.viol_max
        gap_tol_in = -1.0
        if ws.size and bool(np.all(self.thr[ws] > 0)):
            if complete:
                # every violated constraint is in the working set: solving it to the
                # final accuracy is likely to finish the whole problem
                gap_tol_in, tol_in = max(_FINAL_RATIO * self._target, _COMPLETE_RATIO * state.gap), 0.0
            else:
                gap_tol_in = _GAP_RATIO * state.gap
        if ws.size:
            o, ep, _, _ = _k.cd_working_set(*prob.kargs(), prob.m, prob.L, self.thr, ws, state.w,
                                            state.r, state.o, self.max_epochs, tol_in,
                                            self.anderson_k, self._r_tmp, gap_tol_in, _GAP_EVERY,
                                            prob.y_c, prob.y_norm2)
            state.o = o
            state.n_epochs += ep
        state.ws_size = int(ws.size)
        state.k += 1
        self._evaluate(state)
        return state

    def monitor(self, state):
        return {"gap": state.gap, "primal": state.primal, "dual": state.dual,
                "ws_size": state.ws_size, "n_screened": state.n_screened,
                "n_epochs": state.n_epochs}

    def done(self, state, record, tol):
        gap = record["gap"]
        if gap < -self._slack(state):
            # a gap below zero beyond rounding: the arithmetic has lost the accuracy
            # the certificate needs; more iterations cannot fix that (_solve reports it)
            self.lost = True
            return True
        return state.full_check and gap <= self._target

    def _slack(self, state):
        return self._target + 1e3 * _EPS * (abs(state.primal) + abs(state.dual))

    def describe(self, record, tol):
        return f"duality gap = {record['gap']:.3g} <= tol * ||y_c||^2 = {self._target:.3g}"

    # -- pieces ---------------------------------------------------------------
    def _working_set(self, state):
        act = state.active
        if not self.working_set or act.size <= _WS_MIN:
            return act, True
        n_forced, n_viol = state.n_forced, state.n_viol
        # the support and up to as many violators (celer and skglm take twice the
        # support whatever the violations; adding only features whose optimality
        # condition fails keeps the subproblems small) ...
        size = min(act.size, max(_WS_MIN, n_forced + min(n_viol, max(_WS_GROW * n_forced, _WS_MIN))))
        # ... but twice the support (skglm's size) while that stays below n / _N_FRAC
        # columns: small subproblems are well conditioned, and a larger working set
        # saves outer iterations, each a full pass over the design
        size = max(size, min(act.size, 2 * n_forced, self.prob.design.shape[0] // _N_FRAC))
        complete = n_forced + n_viol <= size
        if size >= act.size:
            return act, True
        # scores from the last evaluation, in the order of state.active
        sel = np.argpartition(self._score[:act.size], size - 1)[:size]
        return np.sort(act[sel]), complete

    def _evaluate(self, state):
        """Residual from scratch, correlations, dual point, gap, screening, scores."""
        prob = self.prob
        thr = self.thr
        state.o = _k.residual(prob.design.kernel, prob.y_c, prob.m, state.w, state.r)
        R = state.r + state.o
        act = state.active
        if self._up is None and not state.g_ready:
            # every feature penalized: the dual point is the rescaled residual
            scale, pen, state.viol_max = _k.correlations_certify(
                *prob.kargs(), prob.m, state.r, state.o, act, state.g, thr, state.w, state.viol)
            theta, corr = R, state.g
        else:
            if state.g_ready:
                state.g_ready = False
            else:
                _k.correlations(*prob.kargs(), prob.m, state.r, state.o, act, state.g)
            theta, corr = prob.project(R, state.g, self._up, act)
            scale, pen, state.viol_max = _k.certify(act, state.g, corr, thr, state.w, state.viol)
        state.g_all = act.size == prob.live.size
        primal = 0.5 * float(prob.s @ (R * R)) + pen
        dual = prob.dual(theta / scale)
        gap = gap_r = primal - dual
        state.corr, state.inv_scale = corr, 1.0 / scale
        full = act.size == prob.live.size
        if not full and gap <= self._target:
            # the certificate so far is the gap of the screened problem (a bound on
            # the suboptimality); confirm on the full problem before stopping
            feats = prob.live
            _k.correlations(*prob.kargs(), prob.m, state.r, state.o, feats, state.g)
            state.g_all = True
            theta_f, corr_f = prob.project(R, state.g, self._up, feats)
            scale_f, _, _ = _k.certify(feats, state.g, corr_f, thr, state.w, np.zeros_like(state.viol))
            dual = prob.dual(theta_f / scale_f)
            gap = primal - dual
            full = True
        state.primal, state.dual, state.gap, state.full_check = primal, dual, gap, full
        if not gap > self._target:
            return
        # gap-safe screening: the dual optimum lies in the ball of radius
        # sqrt(2 gap) around the (restricted) dual point; then the working-set scores
        radius = math.sqrt(2.0 * max(gap_r, 0.0)) if self.screening and math.isfinite(gap_r) else -1.0
        keep, nonzero, state.n_forced, state.n_viol = _k.screen_and_score(
            act, corr, state.inv_scale, prob.norm, thr, radius, state.w, state.viol, self._score)
        if keep.size < act.size:
            state.n_screened += int(act.size - keep.size)
            state.active = keep
            if nonzero:
                state.g_all = False
                state.o = _k.residual(prob.design.kernel, prob.y_c, prob.m, state.w, state.r)


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------


def _solve(prob, lam, *, x0, tol, max_iter, max_epochs, working_set, screening, anderson,
           callback, progress, warn=True, g0=None):
    solver = LassoCD(prob, lam, working_set=working_set, screening=screening, anderson=anderson,
                     max_epochs=max_epochs)
    state = solver.init(x0, g0)
    if prob.kappa > 0 and 8.0 * _EPS * prob.kappa ** 2 > tol:
        warn_unconverged(
            f"{_WHERE}: a sparse column has a mean {prob.kappa:.3g} times its centered norm; the "
            f"implicitly centered residual then loses ~eps*(mean/norm)^2 = {_EPS * prob.kappa ** 2:.2g} "
            f"of relative accuracy, more than tol={tol:g} allows: the duality gap may not be "
            "certifiable (center the columns, or pass a dense design, which is centered exactly)")
    state, outcome = run(solver, state, tol=tol, max_iter=max_iter, callback=callback,
                         progress=progress, warn=warn)
    if solver.lost:
        outcome.status = "nonfinite"
        outcome.message = (
            f"{_WHERE}: stopped at iteration {outcome.n_iter}: lost accuracy, the duality gap "
            f"{state.gap:.3g} is negative beyond rounding (-{solver._slack(state):.3g}); the "
            "certificate is unreliable (ill-conditioned or badly scaled design, e.g. sparse "
            "columns with large means)")
        if warn:
            warn_unconverged(outcome.message)
    w = state.w
    intercept = prob.ybar - float(prob.mean @ w) if prob.fit_intercept else 0.0
    info = {"intercept": intercept, "gap": state.gap, "gap_tol": tol * solver.scale,
            "primal": state.primal, "dual": state.dual, "n_epochs": state.n_epochs,
            "n_screened": state.n_screened, "ws_size": state.ws_size, "lam": lam}
    return outcome.result(w.astype(prob.design.dtype), info=info), state


def _check_common(tol, max_iter, max_epochs, working_set, screening, anderson, callback, progress,
                  where):
    tol = check_tolerance(tol, "tol", where)
    max_iter = check_positive_int(max_iter, "max_iter", where)
    max_epochs = check_positive_int(max_epochs, "max_epochs", where)
    for name, v in (("working_set", working_set), ("screening", screening), ("anderson", anderson),
                    ("progress", progress)):
        check_bool(v, name, where)
    check_callable(callback, "callback", where)
    return tol, max_iter, max_epochs


def lasso(X, y, lam, *, sample_weight=None, penalty_weights=None, fit_intercept=True, x0=None,
          intercept0=None, tol=1e-6, max_iter=200, max_epochs=10_000, working_set=True,
          screening=True, anderson=True, callback=None, progress=False):
    r"""The Lasso by working-set coordinate descent, stopped on a certified duality gap.

    Solves scikit-learn's ``Lasso`` problem (same objective, same ``alpha``,
    same sample weights)

    .. math::

        \min_{w, b}\ \frac{1}{2 \sum_i sw_i} \sum_i sw_i (y_i - x_i^\top w - b)^2
        + \mathrm{lam} \sum_j pw_j |w_j|,

    i.e. ``||y - X w - b||^2 / (2 n) + lam ||w||_1`` without weights.

    Parameters
    ----------
    X : ndarray of shape (n, p) or scipy.sparse matrix
        Design, float32 or float64 (NumPy or scipy.sparse; torch tensors are
        refused). Dense arrays: with ``fit_intercept`` the columns are centered
        in one Fortran-ordered copy of ``X - m`` (``m`` the weighted column
        means; scikit-learn makes the same copy), exact for columns with large
        means; without intercept they are used as they are when
        Fortran-ordered and copied to Fortran order otherwise (pass
        ``np.asfortranarray(X)`` once when calling repeatedly). Sparse matrices
        are used in CSC format (any other format, CSR included, is converted
        with a copy) and centered implicitly, so they stay sparse; a warning
        says when a column's mean is so large against its spread that float64
        cannot certify the gap at ``tol``.
    y : ndarray of shape (n,)
        Target.
    lam : float
        Regularization strength (scikit-learn's ``alpha``), ``>= 0``.
    sample_weight : ndarray of shape (n,), optional
        Nonnegative weights with a positive sum; only their ratios matter.
    penalty_weights : ndarray of shape (p,), optional
        Nonnegative per-feature multipliers of ``lam``; 0 leaves a feature
        unpenalized.
    fit_intercept : bool
        Fit an unpenalized intercept ``b``.
    x0 : ndarray of shape (p,), optional
        Starting coefficients (warm start).
    intercept0 : float, optional
        Checked and ignored (accepted because callers warm-starting an
        intercept pass it, e.g. :func:`~tikhon.solvers.l1_logistic`): the
        intercept is eliminated exactly (it is the weighted mean of
        ``y - X w`` for every ``w``), so a warm start needs only ``x0``.
    tol : float
        Stop when the duality gap is at most ``tol * ||y_c||_S^2`` (floored at
        ``64 eps^2 sum_i s_i y_i^2``, the rounding level), where
        ``||y_c||_S^2 = sum_i s_i (y_i - ybar)^2`` with ``s = sw / sum(sw)``
        (``ybar`` the weighted mean, 0 without intercept): without weights,
        ``tol * ||y - ybar||^2 / n``, scikit-learn's and celer's criterion (it
        is twice the objective at ``w = 0``).
    max_iter : int
        Outer iterations (working-set solves, each followed by a gap check).
    max_epochs : int
        Largest number of coordinate-descent epochs in one working-set solve.
    working_set, screening, anderson : bool
        Use working sets (otherwise every outer iteration sweeps all the
        features left), gap-safe screening, Anderson extrapolation.
    callback : callable, optional
        ``callback(state) -> bool`` after every outer iteration; True stops.
    progress : bool
        A tqdm bar over the outer iterations.

    Returns
    -------
    Result
        ``x`` the coefficients (shape (p,), the dtype of ``X``; computed in
        float64 and rounded), ``status``, ``n_iter`` (outer iterations) and
        ``info``: ``intercept`` (float), ``gap`` (the duality gap of the
        float64 iterate, in the objective's units: an upper bound on its
        suboptimality), ``gap_tol`` (the threshold it was compared with),
        ``primal``, ``dual``, ``n_epochs`` (coordinate-descent epochs in all),
        ``n_screened``, ``ws_size``, ``lam``. ``history`` has the gap, primal
        and dual values at every outer iteration. ``status`` is
        ``"nonfinite"`` (with a ConvergenceWarning) when the iterates overflow
        or when the duality gap goes negative beyond rounding (lost
        accuracy: the certificate cannot be trusted).

    Raises
    ------
    ValueError
        For shapes that do not match, NaN or inf in the inputs, negative
        ``lam``, sample weights or penalty weights, a zero sum of weights.
    TypeError
        For non-floating designs or wrongly typed options.

    Notes
    -----
    Unpenalized features (``lam = 0`` included) are projected out with a
    pivoted QR of their ``n x |U|`` centered, weighted columns (dense, once per
    problem); nothing of size ``p x |U|`` or ``|U| x |U|`` is formed. A
    constant target (over the samples of positive weight) gives ``w = 0``.

    The duality gap uses the residual, projected off the unpenalized features'
    columns and rescaled into the dual feasible set (see the module
    docstring); with ``lam = 0`` this is the least-squares gap. When screening
    has removed features, the stopping decision is confirmed with a gap over
    all features. Working sets follow [MSG18]_ and [BKM22]_ (with the latter's
    primal Anderson extrapolation), screening [NFGS17]_, coordinate descent
    [FHT10]_.

    References
    ----------
    .. [NFGS17] E. Ndiaye, O. Fercoq, A. Gramfort and J. Salmon, "Gap safe screening
       rules for sparsity enforcing penalties", JMLR 18(128), 2017.
    .. [MSG18] M. Massias, J. Salmon and A. Gramfort, "Celer: a fast solver for the
       Lasso with dual extrapolation", ICML 2018.
    .. [BKM22] Q. Bertrand, Q. Klopfenstein, P.-A. Bannier, G. Gidel and M. Massias,
       "Beyond L1: faster and better sparse models with skglm", NeurIPS 2022.
    .. [FHT10] J. Friedman, T. Hastie and R. Tibshirani, "Regularization paths for
       generalized linear models via coordinate descent", J. Stat. Softw. 33(1), 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import lasso
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 200)); w = np.zeros(200); w[:3] = [2.0, -1.0, 1.5]
    >>> y = X @ w + 0.01 * rng.standard_normal(50)
    >>> res = lasso(X, y, 0.05)
    >>> res.status, np.flatnonzero(np.abs(res.x) > 0.5).tolist()
    ('converged', [0, 1, 2])
    >>> res.info["gap"] <= res.info["gap_tol"]
    True
    """
    where = _WHERE
    lam = _check_lam(lam, where)
    tol, max_iter, max_epochs = _check_common(tol, max_iter, max_epochs, working_set, screening,
                                              anderson, callback, progress, where)
    prob = _Problem(X, y, sample_weight, penalty_weights, fit_intercept, where)
    p = prob.design.shape[1]
    if x0 is not None:
        x0 = check_finite_array(x0, "x0", where, shape=(p,))
    if intercept0 is not None:
        check_real(intercept0, "intercept0", where)
    res, _ = _solve(prob, lam, x0=x0, tol=tol, max_iter=max_iter, max_epochs=max_epochs,
                    working_set=working_set, screening=screening, anderson=anderson,
                    callback=callback, progress=progress)
    return res


@dataclass(frozen=True)
class LassoPath:
    """The solutions of :func:`lasso_path`, one row per ``lam`` (in the order of ``lams``).

    A dataclass rather than scikit-learn's tuple: the fields are named, and it
    carries each solve's certificate and status next to the coefficients.

    Attributes
    ----------
    lams : ndarray of shape (n_lams,)
    coefs : ndarray of shape (n_lams, p)
        Coefficients (the design's dtype). Note: scikit-learn's
        ``lasso_path`` returns the transpose, shape (p, n_alphas).
    intercepts : ndarray of shape (n_lams,)
    gaps : ndarray of shape (n_lams,)
        Duality gaps (objective units).
    gap_tols : ndarray of shape (n_lams,)
        The thresholds the gaps were compared with.
    n_iter : ndarray of shape (n_lams,)
        Outer iterations of each solve.
    n_epochs : ndarray of shape (n_lams,)
        Coordinate-descent epochs of each solve.
    status : tuple of str
        Each solve's :attr:`Result.status`.
    alpha_max : float
        The smallest ``lam`` at which every penalized coefficient is zero
        (NaN when no feature is penalized). A constant target gives 0, and
        the default grid is then all zeros (every solution is ``w = 0``).
    """

    lams: np.ndarray
    coefs: np.ndarray
    intercepts: np.ndarray
    gaps: np.ndarray
    gap_tols: np.ndarray
    n_iter: np.ndarray
    n_epochs: np.ndarray
    status: tuple = field(default_factory=tuple)
    alpha_max: float = math.nan

    @property
    def converged(self):
        """True where each solve converged."""
        return np.array([s == "converged" for s in self.status])


def lasso_path(X, y, lams=None, *, n_lams=100, eps=1e-3, sample_weight=None, penalty_weights=None,
               fit_intercept=True, tol=1e-6, max_iter=200, max_epochs=10_000, working_set=True,
               screening=True, anderson=True, progress=False):
    """The Lasso along a sequence of ``lam``, each solve warm-started from the previous one.

    Parameters
    ----------
    X, y, sample_weight, penalty_weights, fit_intercept, tol, max_iter, max_epochs, working_set, screening, anderson
        As in :func:`lasso` (``tol`` and ``max_iter`` apply to each solve).
    lams : array-like of shape (n_lams,), optional
        Values of ``lam`` (``>= 0``). They are solved from the largest to the
        smallest (warm starts work along decreasing ``lam``) and returned in
        the given order. Default: ``n_lams`` values spaced geometrically from
        :func:`alpha_max` down to ``eps * alpha_max``, as scikit-learn's
        ``lasso_path``.
    n_lams : int
        Grid size when ``lams`` is None.
    eps : float
        Ratio of the smallest to the largest ``lam`` of the default grid, in (0, 1].
    progress : bool
        A tqdm bar over the ``lam`` values.

    Returns
    -------
    LassoPath
        A frozen dataclass: ``lams``, ``coefs`` (n_lams, p), ``intercepts``,
        ``gaps``, ``gap_tols``, ``n_iter``, ``n_epochs``, ``status``,
        ``alpha_max``. An unconverged solve warns (ConvergenceWarning) and is
        marked in ``status``.

    Raises
    ------
    ValueError
        As :func:`lasso`, for an empty or non-finite ``lams`` or ``eps``
        outside (0, 1], and when ``lams`` is None while no feature is
        penalized (pass ``lams``).

    Examples
    --------
    >>> import numpy as np
    >>> from tikhon.solvers import lasso_path
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 100)); y = X[:, 0] - X[:, 1] + 0.1 * rng.standard_normal(40)
    >>> path = lasso_path(X, y, n_lams=5)
    >>> path.coefs.shape, bool(np.all(path.coefs[0] == 0)), bool(path.converged.all())
    ((5, 100), True, True)
    """
    where = "lasso_path"
    tol, max_iter, max_epochs = _check_common(tol, max_iter, max_epochs, working_set, screening,
                                              anderson, None, progress, where)
    prob = _Problem(X, y, sample_weight, penalty_weights, fit_intercept, where)
    if lams is None:
        amax = _alpha_max(prob, where)
        n_lams = check_positive_int(n_lams, "n_lams", where)
        eps = check_positive(eps, "eps", where)
        if eps > 1:
            raise ValueError(f"{where}: eps must be in (0, 1], got {eps!r}")
        lams = amax * np.geomspace(1.0, eps, n_lams) if n_lams > 1 else np.array([amax])
    else:
        lams = np.asarray(lams)
        if lams.dtype.kind not in "fiu" or lams.dtype == bool:
            raise TypeError(f"{where}: lams must be a real array, got dtype {lams.dtype}")
        lams = lams.astype(np.float64)
        if lams.ndim != 1 or lams.size == 0:
            raise ValueError(f"{where}: lams must be a non-empty 1-D array, got shape {lams.shape}")
        if not np.isfinite(lams).all() or (lams < 0).any():
            raise ValueError(f"{where}: lams must be finite and >= 0")
        pen = prob.live[prob.pw[prob.live] > 0]
        amax = _alpha_max(prob, where) if pen.size else math.nan
    p = prob.design.shape[1]
    k = lams.size
    coefs = np.zeros((k, p), dtype=prob.design.dtype)
    intercepts, gaps, gap_tols = np.zeros(k), np.zeros(k), np.zeros(k)
    n_iter, n_epochs = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    status = [None] * k
    order = np.argsort(-lams, kind="stable")
    w = g = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=k, desc=where, leave=False)
    try:
        for i in order:
            res, state = _solve(prob, float(lams[i]), x0=w, tol=tol, max_iter=max_iter,
                                max_epochs=max_epochs, working_set=working_set, screening=screening,
                                anderson=anderson, callback=None, progress=False, g0=g)
            # the next solve starts from this solution, whose correlations are known
            w = state.w
            g = state.g if state.g_all else None
            coefs[i] = res.x
            intercepts[i], gaps[i], gap_tols[i] = res.info["intercept"], res.info["gap"], res.info["gap_tol"]
            n_iter[i], n_epochs[i], status[i] = res.n_iter, res.info["n_epochs"], res.status
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return LassoPath(lams=lams, coefs=coefs, intercepts=intercepts, gaps=gaps, gap_tols=gap_tols,
                     n_iter=n_iter, n_epochs=n_epochs, status=tuple(status), alpha_max=amax)
