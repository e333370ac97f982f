"""class_ot on torch tensors: the Douglas-Rachford path written in torch ops."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from tikhon.solvers import ConvergenceWarning
from tikhon.solvers.transport import class_ot
from tikhon.solvers.transport import class_regularizer
from tikhon.solvers.transport._class_ot_layout import round_to_polytope


def _problem(n, m=None, k=3, seed=0):
    rng = np.random.default_rng(seed)
    m = m or n
    y = rng.integers(0, k, n)
    centers = rng.normal(scale=3, size=(k, 2))
    xs = centers[y] + rng.normal(size=(n, 2))
    xt = centers[rng.integers(0, k, m)] + rng.normal(size=(m, 2)) + 1.0
    C = ((xs[:, None] - xt[None]) ** 2).sum(-1)
    C /= C.max()
    a = rng.uniform(0.5, 1.5, n)
    a /= a.sum()
    b = np.full(m, 1.0 / m)
    return a, b, C, y


def _tensors(a, b, C, dtype=torch.float64, device="cpu"):
    return tuple(torch.tensor(x, dtype=dtype, device=device) for x in (a, b, C))


def _cvxpy_value(a, b, C, y, lam):
    cp = pytest.importorskip("cvxpy")
    P = cp.Variable(C.shape, nonneg=True)
    reg = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        reg = reg + cp.sum(cp.norm(P[idx, :], 2, axis=0))
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, P)) + lam * reg),
        [cp.sum(P, axis=1) == a, cp.sum(P, axis=0) == b],
    )
    prob.solve(solver="CLARABEL")
    return prob.value


@pytest.mark.parametrize("lam", [0.003, 0.3])
def test_float64_matches_numpy_douglas_rachford(lam):
    a, b, C, y = _problem(40, 30, seed=5)
    ref = class_ot(a, b, C, y, lam, method="douglas_rachford", tol=1e-6)
    res = class_ot(*_tensors(a, b, C), torch.as_tensor(y), lam, tol=1e-6)
    assert ref.converged and res.converged
    assert res.info["method"] == "douglas_rachford"
    # the same iteration in another summation order: same stopping point, same plan
    assert res.n_iter == ref.n_iter
    assert res.steps["step"] == pytest.approx(ref.steps["step"], rel=1e-14)
    np.testing.assert_allclose(res.x.numpy(), ref.x, rtol=0, atol=1e-11)
    np.testing.assert_allclose(res.dual[0].numpy(), ref.dual[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.dual[1].numpy(), ref.dual[1], rtol=0, atol=1e-8)
    for key in ("objective", "dual_objective", "transport_cost", "regularizer"):
        assert res.info[key] == pytest.approx(ref.info[key], rel=1e-11)
    np.testing.assert_allclose(res.history["rel_gap"], ref.history["rel_gap"], rtol=1e-6, atol=1e-13)


def test_float64_brackets_cvxpy_optimum():
    lam = 0.03
    a, b, C, y = _problem(30, 25, seed=8)
    res = class_ot(*_tensors(a, b, C), y, lam, tol=1e-6)
    ref = _cvxpy_value(a, b, C, y, lam)
    assert res.converged and res.info["rel_gap"] <= 1e-6
    P = res.x.numpy()
    obj = float(np.sum(C * P)) + lam * class_regularizer(P, y)
    assert obj == pytest.approx(res.info["objective"], rel=1e-10)
    # the certified pair brackets the optimum (up to the reference's accuracy)
    assert res.info["dual_objective"] <= ref * (1 + 1e-7)
    assert ref <= res.info["objective"] * (1 + 1e-7)
    assert abs(res.info["objective"] - ref) <= res.info["gap"] + 1e-7 * ref
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-12)


def test_float32_works_with_looser_tolerance():
    lam = 0.03
    a, b, C, y = _problem(30, 25, seed=8)
    res = class_ot(*_tensors(a, b, C, torch.float32), y, lam, tol=1e-4)
    ref = class_ot(a, b, C, y, lam, tol=1e-8)
    assert res.converged
    assert res.x.dtype == torch.float32 and res.dual[0].dtype == torch.float32
    assert res.info["dual_objective"] <= ref.info["objective"] * (1 + 1e-7)
    assert res.info["objective"] == pytest.approx(ref.info["objective"], rel=2e-4)
    P = res.x.double().numpy()
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(1), a, atol=1e-6)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-6)


def test_result_types_and_label_forms():
    a, b, C, y = _problem(20, 15, seed=3)
    ta, tb, tC = _tensors(a, b, C)
    names = np.array(["cat", "dog", "eel"])[y]
    r1 = class_ot(ta, tb, tC, names, 0.05, tol=1e-6)
    r2 = class_ot(ta, tb, tC, torch.as_tensor(y + 7, dtype=torch.int32), 0.05, tol=1e-6)
    r3 = class_ot(None, None, tC, y, 0.05, tol=1e-6, x0=r1.x)
    for r in (r1, r2, r3):
        assert isinstance(r.x, torch.Tensor) and r.x.shape == (20, 15)
        assert r.x.dtype == torch.float64 and r.x.device == tC.device
        f, g = r.dual
        assert isinstance(f, torch.Tensor) and f.shape == (20,) and f.dtype == torch.float64
        assert isinstance(g, torch.Tensor) and g.shape == (15,)
        for key in ("objective", "dual_objective", "gap", "rel_gap", "transport_cost", "regularizer"):
            assert type(r.info[key]) is float
        assert type(r.steps["step"]) is float
    assert r1.info["objective"] == pytest.approx(r2.info["objective"], rel=1e-12)
    # None marginals are uniform, and a warm start converges to the same value
    r4 = class_ot(None, None, C, y, 0.05, method="douglas_rachford", tol=1e-6)
    assert r3.info["objective"] == pytest.approx(r4.info["objective"], rel=1e-5)


def test_kernels_match_numba_and_numpy():
    from tikhon.solvers.transport import _class_ot_kernels as K
    from tikhon.solvers.transport import _class_ot_torch as KT

    rng = np.random.default_rng(4)
    n, m = 37, 23
    y = np.sort(rng.integers(0, 4, n))
    starts = np.concatenate([[0], np.cumsum(np.bincount(y))]).astype(np.int64)
    cls = torch.as_tensor(y)
    Ct = rng.random((m, n))
    f, g = rng.normal(scale=0.3, size=n), rng.normal(scale=0.3, size=m)
    for lam in (0.0, 1e-3, 0.05, 0.5, 10.0):
        g_ref = np.empty(m)
        K.feasible_g(Ct, starts, f, g, lam, g_ref)
        g_t = KT.feasible_g(torch.as_tensor(Ct), cls, torch.as_tensor(f), torch.as_tensor(g), lam)
        np.testing.assert_allclose(g_t.numpy(), g_ref, rtol=0, atol=1e-13)
    X = rng.random((m, n)) * (rng.random((m, n)) < 0.3)
    a_s, b = rng.random(n), rng.random(m)
    b *= a_s.sum() / b.sum()
    P_ref = round_to_polytope(X, a_s, b)
    P_t = KT.round_to_polytope(torch.as_tensor(X.T), torch.as_tensor(a_s), torch.as_tensor(b))
    np.testing.assert_allclose(P_t.numpy().T, P_ref, rtol=0, atol=1e-15)
    cost, reg = KT.plan_objective(P_t, torch.as_tensor(Ct.T), cls, 4)
    assert (float(cost), float(reg)) == pytest.approx(K.plan_objective(P_ref, Ct, starts), rel=1e-13)


def test_ssnal_with_torch_raises():
    a, b, C, y = _problem(10, 8)
    with pytest.raises(ValueError, match="NumPy"):
        class_ot(*_tensors(a, b, C), y, 0.1, method="ssnal")


def test_max_iter_warns_and_is_honest():
    a, b, C, y = _problem(30, seed=4)
    with pytest.warns(ConvergenceWarning) as record:
        res = class_ot(*_tensors(a, b, C), y, 0.01, tol=1e-12, max_iter=3, check_every=3)
    assert record[0].filename == __file__
    assert not res.converged and res.n_iter == 3
    assert res.info["rel_gap"] > 1e-12
    np.testing.assert_allclose(res.x.sum(1).numpy(), a, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"a": np.full(10, 0.1)}, TypeError, "mixed"),
        ({"C": np.ones((10, 8)), "b": torch.full((8,), 0.125, dtype=torch.float64)}, TypeError, "mixed"),
        ({"x0": np.ones((10, 8)) / 80}, TypeError, "x0"),
        ({"lam": -1.0}, ValueError, "lam"),
        ({"lam": float("nan")}, ValueError, "lam"),
        ({"source_classes": torch.zeros(5)}, ValueError, "source_classes"),
        ({"source_classes": np.zeros(5)}, ValueError, "source_classes"),
        ({"a": -torch.ones(10, dtype=torch.float64) / 10}, ValueError, "a"),
        ({"a": torch.ones(10, dtype=torch.int64)}, TypeError, "a"),
        ({"b": torch.ones(8, dtype=torch.float64)}, ValueError, "mass"),
        ({"b": torch.ones(7, dtype=torch.float64) / 7}, ValueError, "b"),
        ({"C": torch.ones((10, 8), dtype=torch.int64)}, TypeError, "C"),
        ({"C": torch.full((10, 8), float("inf"), dtype=torch.float64)}, ValueError, "C"),
        ({"x0": torch.ones((8, 10), dtype=torch.float64)}, ValueError, "x0"),
        ({"eps": 0.1}, ValueError, "eps"),
        ({"step": 0.0}, ValueError, "step"),
        ({"method": "lbfgs"}, ValueError, "method"),
    ],
)
def test_validation(kwargs, exc, word):
    gen = torch.Generator().manual_seed(0)
    args = {"a": None, "b": None, "C": torch.rand((10, 8), generator=gen, dtype=torch.float64),
            "source_classes": torch.arange(10) % 2, "lam": 0.1}
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        class_ot(args.pop("a"), args.pop("b"), args.pop("C"), args.pop("source_classes"), args.pop("lam"),
                 max_iter=5, warn=False, **args)


def test_no_host_round_trip(monkeypatch):
    a, b, C, y = _problem(25, 20, seed=9)
    ta, tb, tC = _tensors(a, b, C)
    ty = torch.as_tensor(y)
    ref = class_ot(ta, tb, tC, ty, 0.05, tol=1e-6)

    def refuse(*args, **kwargs):
        raise AssertionError("host round trip inside class_ot")

    with monkeypatch.context() as mp:
        mp.setattr(torch.Tensor, "numpy", refuse)
        mp.setattr(torch.Tensor, "cpu", refuse)
        mp.setattr(torch, "from_numpy", refuse)
        res = class_ot(ta, tb, tC, ty, 0.05, tol=1e-6, x0=ref.x)
        assert res.converged
        with pytest.raises(AssertionError):
            tC.cpu()  # the trap is armed
    assert res.info["objective"] == pytest.approx(ref.info["objective"], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda(dtype):
    lam = 0.03
    a, b, C, y = _problem(40, 30, seed=5)
    ta, tb, tC = _tensors(a, b, C, dtype, "cuda")
    res = class_ot(ta, tb, tC, torch.as_tensor(y, device="cuda"), lam, tol=1e-5)
    ref = class_ot(a, b, C, y, lam, tol=1e-8)
    assert res.converged
    assert res.x.device.type == "cuda" and res.x.dtype == dtype
    assert res.dual[0].device.type == "cuda" and res.dual[1].device.type == "cuda"
    assert res.info["dual_objective"] <= ref.info["objective"] * (1 + 1e-7)
    assert res.info["objective"] == pytest.approx(ref.info["objective"], rel=2e-5)


def test_lam_zero_iterates_match_numpy():
    # lam = 0 takes the no-shrinkage branch of the torch step
    a, b, C, y = _problem(30, 20, seed=1)
    kw = {"method": "douglas_rachford", "tol": 0.0, "max_iter": 200, "check_every": 100, "warn": False}
    ref = class_ot(a, b, C, y, 0.0, **kw)
    kw.pop("method")
    res = class_ot(*_tensors(a, b, C), y, 0.0, **kw)
    np.testing.assert_allclose(res.x.numpy(), ref.x, rtol=0, atol=1e-12)
    assert res.info["dual_objective"] == pytest.approx(ref.info["dual_objective"], rel=1e-11)


def test_numpy_data_with_tensor_labels_runs_on_numpy():
    rng = np.random.default_rng(4)
    C = rng.random((12, 10))
    labels = np.arange(12) % 3
    ref = class_ot(None, None, C, labels, 0.1)
    res = class_ot(None, None, C, torch.from_numpy(labels), 0.1)
    assert isinstance(res.x, np.ndarray)
    np.testing.assert_array_equal(res.x, ref.x)
