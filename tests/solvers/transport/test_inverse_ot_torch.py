"""inverse_ot on torch tensors: same algorithm as the NumPy path, on the tensors' device."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("ot")

from tikhon.solvers.transport import inverse_ot, sinkhorn

torch.set_num_threads(1)

EPS = 0.5


def _toy(n=30, d=3, N=20000, eps=EPS, seed=0):
    rng = np.random.default_rng(seed)
    A = np.zeros((d, d))
    A[0, 0], A[1, 2], A[d - 1, 1] = 1.0, -0.8, 0.6
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n + 2, d))
    P = sinkhorn(None, None, -X @ A @ Y.T, eps, tol=1e-11).x
    idx = rng.choice(P.size, size=N, p=(P / P.sum()).ravel())
    P_hat = np.bincount(idx, minlength=P.size).reshape(P.shape) / N
    return X, Y, P_hat, A


def _t(x, dtype=torch.float64, device="cpu"):
    return None if x is None else torch.tensor(x, dtype=dtype, device=device)


def _np(x):
    return x.detach().cpu().double().numpy()


def _pot_kkt(X, Y, P_hat, A, lam):
    """KKT residual of A from an independent gradient: POT's log-domain Sinkhorn plan."""
    P_hat = P_hat / P_hat.sum()
    ia, ib = P_hat.sum(1) > 0, P_hat.sum(0) > 0
    X, Y, P_hat = X[ia], Y[ib], P_hat[np.ix_(ia, ib)]
    P = ot.sinkhorn(P_hat.sum(1), P_hat.sum(0), -X @ A @ Y.T, EPS, method="sinkhorn_log",
                    numItermax=100_000, stopThr=1e-13)
    grad = X.T @ (P - P_hat) @ Y
    r = np.where(A != 0, np.abs(grad + lam * np.sign(A)), np.maximum(np.abs(grad) - lam, 0.0))
    return r.max(), np.abs(X.T @ (np.outer(P_hat.sum(1), P_hat.sum(0)) - P_hat) @ Y).max()


def test_float64_matches_numpy_and_an_independent_kkt_check():
    X, Y, P_hat, A = _toy()
    lam = 0.03
    ref = inverse_ot(X, Y, P_hat, EPS, lam, tol=1e-7)
    res = inverse_ot(_t(X), _t(Y), _t(P_hat), EPS, lam, tol=1e-7)
    assert ref.converged and res.converged
    # the inner Sinkhorn solves differ (numba scaling kernels vs torch log-domain), both to
    # a marginal violation of 1e-10: the iterates agree far below the tolerance
    assert abs(res.n_iter - ref.n_iter) <= 1
    np.testing.assert_allclose(_np(res.x), ref.x, atol=1e-8)
    np.testing.assert_allclose(_np(res.info["plan"]), ref.info["plan"], atol=1e-10)
    # potentials are defined up to f + c, g - c
    (f, g), (f_ref, g_ref) = res.dual, ref.dual
    np.testing.assert_allclose(_np(f)[:, None] + _np(g), f_ref[:, None] + g_ref, atol=1e-7)
    assert res.info["lam_max"] == pytest.approx(ref.info["lam_max"], rel=1e-9)
    assert res.info["loss"] == pytest.approx(ref.info["loss"], rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(res.history["objective"], ref.history["objective"], rtol=1e-8)
    # optimality checked with POT's plan: dist(-grad, lam d|A|_1) / lam_max ~ tol
    kkt, lam_max = _pot_kkt(X, Y, P_hat, _np(res.x), lam)
    assert lam_max == pytest.approx(res.info["lam_max"], rel=1e-8)
    assert kkt / lam_max < 1e-6
    np.testing.assert_array_equal(np.abs(_np(res.x)) > 1e-8, A != 0)


def test_features_path_x0_and_dropped_points_match_numpy():
    # few samples leave unobserved points (zero marginals, dropped), general
    # features and a regularisation path with a warm start x0
    X, Y, P_hat, _ = _toy(n=20, N=60, seed=3)
    assert (P_hat.sum(1) == 0).any() or (P_hat.sum(0) == 0).any()
    rng = np.random.default_rng(4)
    F = np.stack([np.outer(X[:, 0], Y[:, 0]), np.outer(X[:, 1], Y[:, 2]),
                  rng.normal(size=P_hat.shape)])
    x0 = np.array([0.1, 0.0, -0.1])
    kw = {"lam_path": [0.5, 0.1], "tol": 1e-7}
    ref = inverse_ot(X, Y, P_hat, EPS, 0.03, features=F, x0=x0, **kw)
    res = inverse_ot(_t(X), _t(Y), _t(P_hat), EPS, 0.03, features=_t(F), x0=_t(x0), **kw)
    assert ref.converged and res.converged
    np.testing.assert_allclose(_np(res.info["path"]), ref.info["path"], atol=1e-7)
    np.testing.assert_allclose(_np(res.info["lams"]), ref.info["lams"])
    np.testing.assert_array_equal(res.info["path_converged"].cpu().numpy(), ref.info["path_converged"])
    assert res.info["path_converged"].dtype == torch.bool
    assert abs(res.n_iter - ref.n_iter) <= 2
    # zero-mass points get zero plan rows and columns, as in the NumPy path
    np.testing.assert_allclose(_np(res.info["plan"]), ref.info["plan"], atol=1e-9)


def test_explicit_marginals_match_numpy():
    X, Y, P_hat, _ = _toy(n=15, N=5000, seed=5)
    rng = np.random.default_rng(5)
    a, b = rng.random(15) + 0.1, rng.random(17) + 0.1
    ref = inverse_ot(X, Y, P_hat, EPS, 0.05, a=a, b=b, tol=1e-7)
    res = inverse_ot(_t(X), _t(Y), _t(P_hat), EPS, 0.05, a=_t(a), b=_t(b), tol=1e-7)
    np.testing.assert_allclose(_np(res.x), ref.x, atol=1e-8)
    np.testing.assert_allclose(_np(res.info["plan"]).sum(1), a / a.sum(), atol=1e-9)


def test_float32_close_to_float64_with_looser_tolerance():
    X, Y, P_hat, A = _toy()
    ref = inverse_ot(X, Y, P_hat, EPS, 0.03, tol=1e-8)
    f32 = torch.float32
    res = inverse_ot(_t(X, f32), _t(Y, f32), _t(P_hat, f32), EPS, 0.03, tol=1e-4)
    assert res.converged
    assert res.x.dtype == f32 and res.info["plan"].dtype == f32
    assert all(u.dtype == f32 for u in res.dual)
    scale = np.abs(ref.x).max()
    np.testing.assert_allclose(_np(res.x), ref.x, atol=1e-3 * scale)
    np.testing.assert_array_equal(np.abs(_np(res.x)) > 0, A != 0)
    # the float32 rounding floor stops no solve when asked for float64-level
    # inner accuracy (the default sinkhorn_tol=1e-10)
    assert res.info["n_sinkhorn"] < 200


def test_result_types_devices_and_dtypes():
    X, Y, P_hat, _ = _toy(n=12, N=3000, seed=6)
    # a float64 input promotes the float32 ones, as in torch arithmetic
    res = inverse_ot(_t(X, torch.float32), _t(Y), _t(P_hat, torch.float32), EPS,
                     [0.2, 0.05], tol=1e-6)
    for t in (res.x, *res.dual, res.info["plan"], res.info["path"], res.info["lams"]):
        assert isinstance(t, torch.Tensor)
        assert t.device.type == "cpu" and t.dtype == torch.float64
    assert not res.x.requires_grad
    assert tuple(res.x.shape) == (3, 3) and tuple(res.info["plan"].shape) == (12, 14)
    for key in ("lam_max", "loss"):
        assert isinstance(res.info[key], float)
    assert isinstance(res.info["n_sinkhorn"], int)
    assert isinstance(res.steps["step"], float)
    assert all(isinstance(v, np.ndarray) for v in res.history.values())
    assert isinstance(res.converged, bool) and res.converged


def test_inputs_requiring_grad_are_detached():
    X, Y, P_hat, _ = _toy(n=10, N=2000, seed=7)
    Xt = _t(X).requires_grad_(True)
    res = inverse_ot(Xt, _t(Y), _t(P_hat), EPS, 0.05, tol=1e-6)
    assert not res.x.requires_grad and not res.info["plan"].requires_grad
    np.testing.assert_allclose(_np(res.x), inverse_ot(X, Y, P_hat, EPS, 0.05, tol=1e-6).x, atol=1e-8)


@pytest.mark.parametrize("numpy_arg", ["X", "Y", "coupling", "features", "a", "b", "x0"])
def test_mixed_inputs_raise_naming_them(numpy_arg):
    rng = np.random.default_rng(0)
    args = {"X": rng.normal(size=(6, 2)), "Y": rng.normal(size=(5, 2)), "coupling": np.ones((6, 5)),
                "features": None, "a": None, "b": None, "x0": None}
    if numpy_arg == "features":
        args["features"] = rng.normal(size=(2, 6, 5))
    if numpy_arg in ("a", "b"):
        args[numpy_arg] = np.ones(6 if numpy_arg == "a" else 5)
    if numpy_arg == "x0":
        args["x0"] = np.zeros((2, 2))
    kw = {k: (v if k == numpy_arg or v is None else _t(v)) for k, v in args.items()}
    with pytest.raises(TypeError, match=f"mixed NumPy and torch.*{numpy_arg}"):
        inverse_ot(eps=EPS, lam=0.1, **kw)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": torch.tensor(-1.0)}, ValueError, "eps"),
        ({"lam": -0.1}, ValueError, "lam"),
        ({"lam": torch.tensor([0.1, float("nan")])}, ValueError, "lam"),
        ({"coupling": -torch.ones(6, 5, dtype=torch.float64)}, ValueError, "coupling"),
        ({"coupling": torch.ones(5, 5, dtype=torch.float64)}, ValueError, "coupling"),
        ({"coupling": torch.zeros(6, 5, dtype=torch.float64)}, ValueError, "coupling"),
        ({"X": torch.full((6, 2), float("nan"), dtype=torch.float64)}, ValueError, "X"),
        ({"X": torch.ones(6, dtype=torch.float64)}, ValueError, "X"),
        ({"Y": torch.ones(5, 2, dtype=torch.int64)}, TypeError, "Y"),
        ({"features": torch.ones(2, 6, 4, dtype=torch.float64)}, ValueError, "features"),
        ({"a": -torch.ones(6, dtype=torch.float64)}, ValueError, "a has negative entries"),
        ({"b": torch.ones(4, dtype=torch.float64)}, ValueError, r"b must have shape \(5,\)"),
        ({"b": torch.tensor([1.0, 1.0, float("inf"), 1.0, 1.0], dtype=torch.float64)},
         ValueError, "b contains"),
        ({"x0": torch.zeros(3, 2, dtype=torch.float64)}, ValueError, "x0"),
    ],
)
def test_validation_mirrors_numpy(kwargs, exc, word):
    rng = np.random.default_rng(0)
    args = {"X": _t(rng.normal(size=(6, 2))), "Y": _t(rng.normal(size=(5, 2))),
                "coupling": torch.ones(6, 5, dtype=torch.float64), "eps": EPS, "lam": 0.1}
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        inverse_ot(**args)


def test_no_host_round_trip(monkeypatch):
    X, Y, P_hat, _ = _toy(n=12, N=3000, seed=8)
    inputs = [_t(X), _t(Y), _t(P_hat)]
    ref = inverse_ot(X, Y, P_hat, EPS, [0.2, 0.05], tol=1e-6)

    def refuse(*args, **kwargs):
        raise AssertionError("host round trip inside inverse_ot")

    with monkeypatch.context() as m:
        for name in ("numpy", "cpu", "tolist", "__array__"):
            m.setattr(torch.Tensor, name, refuse)
        m.setattr(torch, "from_numpy", refuse)
        res = inverse_ot(*inputs, EPS, torch.tensor([0.2, 0.05]), tol=1e-6)
        with pytest.raises(AssertionError, match="round trip"):
            inputs[0].numpy()  # the patch is live
    assert res.converged
    np.testing.assert_allclose(_np(res.x), ref.x, atol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda(dtype):
    X, Y, P_hat, _A = _toy()
    dev = "cuda"
    res = inverse_ot(_t(X, dtype, dev), _t(Y, dtype, dev), _t(P_hat, dtype, dev), EPS, 0.03,
                     tol=1e-4 if dtype == torch.float32 else 1e-7)
    assert res.converged
    for t in (res.x, *res.dual, res.info["plan"]):
        assert t.device.type == "cuda" and t.dtype == dtype
    ref = inverse_ot(X, Y, P_hat, EPS, 0.03, tol=1e-8)
    atol = 1e-3 * np.abs(ref.x).max() if dtype == torch.float32 else 1e-7
    np.testing.assert_allclose(_np(res.x), ref.x, atol=atol)
    with pytest.raises(ValueError, match="one device"):
        inverse_ot(_t(X, dtype, dev), _t(Y, dtype), _t(P_hat, dtype, dev), EPS, 0.03)
