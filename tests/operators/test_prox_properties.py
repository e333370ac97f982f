"""Properties every proximal operator must have (hypothesis), backends and dtypes.

Moreau identity, firm non-expansiveness, Fenchel-Young equality at a subgradient,
the variational inequality of projections, torch == NumPy, float32, and the
generic scaling / translation of base.py applied to every member.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import Dense
from tikhon.operators.prox import (
    L0,
    L1,
    L2,
    L21,
    Box,
    Huber,
    KullbackLeibler,
    L1Ball,
    L2Ball,
    NonNegative,
    NuclearNorm,
    Simplex,
    SquaredL2,
    SumOfNorms,
    Zero,
)

torch = pytest.importorskip("torch")

SHAPE = (2, 3, 4)
_r = np.random.default_rng(7)
_W = _r.uniform(0, 2, (3, 4))
_B = _r.uniform(-1, 1, SHAPE)
_COUNTS = _r.poisson(2.0, SHAPE).astype(float)
_GROUPS = _r.integers(-1, 5, SHAPE)


MEMBERS = {
    "L1": lambda: L1(),
    "L1w": lambda: L1(weights=_W),
    "L2": lambda: L2(),
    "L21": lambda: L21(axis=0, weights=_W),
    "L21last": lambda: L21(axis=-1, weights=0.5),
    "L21mid": lambda: L21(axis=1),
    "SumOfNorms": lambda: SumOfNorms(_GROUPS, weights=np.array([0.5, 1.0, 2.0, 0.0, 1.5])),
    "NuclearNorm": lambda: NuclearNorm(),
    "SquaredL2": lambda: SquaredL2(),
    "SquaredL2b": lambda: SquaredL2(b=_B),
    "SquaredL2op": lambda: SquaredL2(b=_r.standard_normal(5), op=Dense(np.random.default_rng(3).standard_normal((5, 24)), SHAPE)),
    "Huber": lambda: Huber(0.7),
    "KL": lambda: KullbackLeibler(_COUNTS, background=0.3),
    "NonNegative": lambda: NonNegative(),
    "Box": lambda: Box(-0.5, _W),
    "Simplex": lambda: Simplex(2.0),
    "SimplexAxis": lambda: Simplex(1.0, axis=1),
    "L1Ball": lambda: L1Ball(1.5),
    "L2Ball": lambda: L2Ball(0.8, center=_B),
    "Zero": lambda: Zero(),
    "scaled": lambda: 2.5 * L21(weights=_W),
    "shifted": lambda: L1(weights=_W).shift(_B),
}
CONVEX = [k for k in MEMBERS]
INDICATORS = ["NonNegative", "Box", "Simplex", "SimplexAxis", "L1Ball", "L2Ball"]
# members whose conjugate has a closed-form value
WITH_CONJ_VALUE = [k for k in CONVEX if k != "SquaredL2op"]

xs = hnp.arrays(np.float64, SHAPE, elements=st.floats(-10, 10, allow_nan=False, width=64))
taus = st.floats(0.05, 20.0)


@pytest.mark.parametrize("name", CONVEX)
@settings(max_examples=30, deadline=None)
@given(x=xs, tau=taus)
def test_moreau_identity(name, x, tau):
    f = MEMBERS[name]()
    assert f.is_convex
    p = f.prox(x, tau)
    q = f.conj.prox(x / tau, 1.0 / tau)
    np.testing.assert_allclose(p + tau * q, x, atol=1e-9 * (1 + np.abs(x).max()))


@pytest.mark.parametrize("name", CONVEX)
@settings(max_examples=30, deadline=None)
@given(x=xs, y=xs, tau=taus)
def test_firmly_nonexpansive(name, x, y, tau):
    f = MEMBERS[name]()
    d = f.prox(x, tau) - f.prox(y, tau)
    lhs = float(np.sum(d * d))
    rhs = float(np.sum(d * (x - y)))
    assert lhs <= rhs + 1e-9 * (1 + np.sum((x - y) ** 2))


@pytest.mark.parametrize("name", WITH_CONJ_VALUE)
@settings(max_examples=30, deadline=None)
@given(x=xs, tau=taus)
def test_fenchel_young_equality(name, x, tau):
    # p = prox(x, tau) gives y = (x - p) / tau in the subdifferential of f at p,
    # where f(p) + f*(y) = <p, y> holds with equality
    f = MEMBERS[name]()
    p = f.prox(x, tau)
    y = (x - p) / tau
    fp, fy = f(p), f.conj(y)
    assert math.isfinite(fp) and math.isfinite(fy)
    inner = float(np.sum(p * y))
    scale = 1 + abs(fp) + abs(fy) + abs(inner)
    assert fp + fy == pytest.approx(inner, abs=1e-8 * scale)
    # Fenchel-Young inequality at an arbitrary other point (value check of f and f*)
    y2 = y + 0.1 * np.sin(np.arange(y.size)).reshape(y.shape)
    assert f(p) + f.conj(y2) >= float(np.sum(p * y2)) - 1e-8 * scale


@pytest.mark.parametrize("name", INDICATORS)
@settings(max_examples=30, deadline=None)
@given(x=xs, z0=xs)
def test_projection_variational_inequality(name, x, z0):
    f = MEMBERS[name]()
    p = f.prox(x, 1.0)
    z = f.prox(z0, 3.0)  # any point of the set
    assert f(p) == 0.0 and f(z) == 0.0
    assert float(np.sum((x - p) * (z - p))) <= 1e-9 * (1 + np.sum(x * x) + np.sum(z * z))
    np.testing.assert_allclose(f.prox(p, 0.5), p, atol=1e-12)  # idempotent
    if not np.allclose(p, x):
        assert f(x) == math.inf


@pytest.mark.parametrize("name", [k for k in MEMBERS if k != "shifted"] + ["L0"])
def test_torch_matches_numpy_and_float32(name):
    f = L0() if name == "L0" else MEMBERS[name]()
    x = np.random.default_rng(11).standard_normal(SHAPE) * 2
    tau = 0.7
    ref = f.prox(x, tau)
    xt = torch.tensor(x)
    got = f.prox(xt, tau)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    assert f(xt) == pytest.approx(f(x), rel=1e-12, abs=1e-12)
    x32 = x.astype(np.float32)
    p32 = f.prox(x32, tau)
    assert isinstance(p32, np.ndarray) and p32.dtype == np.float32
    if name != "L0":  # the hard threshold is discontinuous
        np.testing.assert_allclose(p32, ref, atol=2e-5)
    pt32 = f.prox(torch.tensor(x32), tau)
    assert pt32.dtype == torch.float32
    np.testing.assert_allclose(pt32.numpy(), p32, atol=2e-5)
    if f.is_smooth:
        np.testing.assert_allclose(f.grad(xt).numpy(), f.grad(x), atol=1e-12)
        assert f.grad(x32).dtype == np.float32


@pytest.mark.parametrize("name", CONVEX)
def test_array_step_equals_scalar(name):
    f = MEMBERS[name]()
    x = np.random.default_rng(5).standard_normal(SHAPE)
    np.testing.assert_allclose(f.prox(x, np.full(SHAPE, 0.9)), f.prox(x, 0.9), atol=1e-12)


@pytest.mark.parametrize("name", ["L1w", "L21", "SumOfNorms", "NuclearNorm", "Huber", "KL", "SquaredL2b", "Box"])
def test_scaling_and_shift(name):
    f = MEMBERS[name]()
    rng = np.random.default_rng(9)
    x, b = rng.standard_normal(SHAPE) * 2, rng.standard_normal(SHAPE)
    lam, tau = 3.0, 0.4
    np.testing.assert_allclose((lam * f).prox(x, tau), f.prox(x, lam * tau), atol=1e-12)
    np.testing.assert_allclose(f.shift(b).prox(x, tau), b + f.prox(x - b, tau), atol=1e-12)
    p = f.prox(x, tau)
    assert (lam * f)(p) == pytest.approx(lam * f(p))
    assert f.shift(b)(p + b) == pytest.approx(f(p))


def test_flags():
    assert not L0().is_convex
    for name in ["SquaredL2", "Huber", "Zero"]:
        assert MEMBERS[name]().is_smooth
    for name in ["L1", "L2", "L21", "SumOfNorms", "NuclearNorm", "KL"] + INDICATORS:
        f = MEMBERS[name]()
        assert f.is_convex and not f.is_smooth and f.lipschitz is None
    assert SquaredL2().strong_convexity == 1.0 and SquaredL2().lipschitz == 1.0
    assert MEMBERS["SquaredL2op"]().strong_convexity == 0.0
    assert Huber(0.25).lipschitz == 4.0
    # the conjugate of a 1-strongly convex functional is smooth with L = 1
    c = SquaredL2(b=_B).conj
    assert c.is_smooth and c.lipschitz == 1.0
    np.testing.assert_allclose(c.grad(_B), 2 * _B)
    assert L1(weights=_W).conj.conj(_B) == pytest.approx(L1(weights=_W)(_B))


def test_l21_torch_autograd_to_weights():
    # learned TV weights: gradients flow from the projection into the weights
    w = torch.full((3, 4), 0.5, dtype=torch.float64, requires_grad=True)
    f = L21(axis=0, weights=w)
    y = torch.tensor(np.random.default_rng(0).standard_normal(SHAPE))
    out = f.conj.prox(y, 1.0)
    out.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    np.testing.assert_allclose(out.detach().numpy(), L21(weights=0.5).conj.prox(y.numpy(), 1.0), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 40, 30), (3, 6, 7, 5)])
def test_l21_kernel_matches_numpy_reference(dtype, shape):
    rng = np.random.default_rng(2)
    y = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0, 1.5, shape[1:])
    n = np.linalg.norm(y.astype(np.float64), axis=0)
    proj = y * np.minimum(1, w / np.maximum(n, 1e-300))
    got = L21(weights=w).conj.prox(y, 1.0)
    assert got.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, proj, atol=tol)
    shr = y * np.maximum(0, 1 - 0.3 * w / np.maximum(n, 1e-300))
    np.testing.assert_allclose(L21(weights=w).prox(y, 0.3), shr, atol=tol)
