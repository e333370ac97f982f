"""The weight-constraint sets of operators/prox/weight_sets.py, and NumPy/torch parity of every prox.

Each projection is checked against an independent reference (SVD clipping,
scipy's polar decomposition, a sort, brute force over sign patterns), with
the property-test conventions of test_prox_properties.py: firm
nonexpansiveness and the variational inequality for the convex set,
optimality against random feasible points for the non-convex ones,
idempotence, and membership of the projected point.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tikhon.operators.prox import (
    L0,
    Oblique,
    ScaledBinary,
    ScaledTernary,
    SpectralBall,
    Stiefel,
    TopK,
)

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SHAPE = (2, 3, 4)

SETS = {
    "Oblique": lambda: Oblique(),
    "Oblique0": lambda: Oblique(axis=0),
    "SpectralBall": lambda: SpectralBall(1.5),
    "Stiefel": lambda: Stiefel(),
    "TopK": lambda: TopK(5),
    "TopKrow": lambda: TopK(2, axis=-1),
    "ScaledBinary": lambda: ScaledBinary(),
    "ScaledBinaryRow": lambda: ScaledBinary(axis=-1),
    "ScaledTernary": lambda: ScaledTernary(),
    "ScaledTernaryMid": lambda: ScaledTernary(axis=1),
}
NONCONVEX = [k for k in SETS if k != "SpectralBall"]

xs = hnp.arrays(np.float64, SHAPE, elements=st.floats(-10, 10, allow_nan=False, width=64))


# -- NumPy / torch parity of every prox of tikhon.operators.prox -------------------------

def _all_members():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_prox_properties import MEMBERS

    return {**MEMBERS, "L0": L0, **SETS}


ALL = _all_members()


@pytest.mark.parametrize("name", list(ALL))
def test_numpy_torch_parity_float32(name):
    # float32 NumPy and float32 torch agree to 1e-6 relative to the output's scale
    # (the SVD-based members differ by LAPACK rounding: up to ~3e-6 absolute on
    # outputs of size ~5, i.e. < 1e-6 relative; every other member agrees exactly or
    # to 2.4e-7)
    f = ALL[name]()
    x = (np.random.default_rng(11).standard_normal(SHAPE) * 2).astype(np.float32)
    ref = f.prox(x, 0.7)
    got = f.prox(torch.tensor(x), 0.7)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float32
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == x.shape
    scale = 1 + float(np.abs(ref).max())
    assert float(np.abs(got.numpy() - ref).max()) <= 1e-6 * scale
    if name in SETS:
        x64 = x.astype(np.float64)
        np.testing.assert_allclose(f.prox(torch.tensor(x64), 0.7).numpy(), f.prox(x64, 0.7), atol=1e-12)
        assert f(torch.tensor(x64)) == f(x64)


# -- references -------------------------------------------------------------------------

def test_oblique_normalises_slices():
    x = np.random.default_rng(0).standard_normal(SHAPE)
    for axis in (0, 1, -1):
        p = Oblique(axis).prox(x)
        np.testing.assert_allclose(p, x / np.linalg.norm(x, axis=axis, keepdims=True), atol=1e-14)
        assert Oblique(axis)(p) == 0.0 and Oblique(axis)(x) == math.inf
    z = np.zeros((2, 3))
    z[1] = [0.0, 3.0, 4.0]
    for p in (Oblique().prox(z), Oblique().prox(torch.tensor(z)).numpy()):
        np.testing.assert_array_equal(p, [[1.0, 0, 0], [0, 0.6, 0.8]])


def test_spectral_ball_is_svd_clipping():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4)) * 2
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    ref = np.einsum("bik,bk,bkj->bij", u, np.minimum(s, 1.2), vh)
    f = SpectralBall(1.2)
    p = f.prox(x)
    np.testing.assert_allclose(p, ref, atol=1e-12)
    assert np.linalg.svd(p, compute_uv=False).max() <= 1.2 + 1e-12
    assert f(p) == 0.0 and f(x) == math.inf
    small = x / (2 * np.linalg.svd(x, compute_uv=False).max())
    np.testing.assert_allclose(f.prox(small), small, atol=1e-12)  # inside: unchanged
    # conjugate: radius * nuclear norm, so the Moreau identity holds
    tau = 0.6
    q = f.conj.prox(x / tau, 1 / tau)
    np.testing.assert_allclose(f.prox(x, tau) + tau * q, x, atol=1e-9)
    assert f.conj(x) == pytest.approx(1.2 * np.linalg.svd(x, compute_uv=False).sum())


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_stiefel_is_polar_factor(shape):
    x = np.random.default_rng(2).standard_normal(shape)
    ref, _ = scipy.linalg.polar(x)
    p = Stiefel().prox(x)
    np.testing.assert_allclose(p, ref, atol=1e-12)
    pt = Stiefel().prox(torch.tensor(x)).numpy()
    np.testing.assert_allclose(pt, ref, atol=1e-12)
    m, n = shape
    g = p.T @ p if m >= n else p @ p.T
    np.testing.assert_allclose(g, np.eye(min(shape)), atol=1e-12)
    assert Stiefel()(p) == 0.0 and Stiefel()(x) == math.inf
    # batched: each matrix's own polar factor
    xb = np.stack([x, 2 * x + 0.1])
    pb = Stiefel().prox(xb)
    for i in range(2):
        np.testing.assert_allclose(pb[i], scipy.linalg.polar(xb[i])[0], atol=1e-12)


def test_topk_is_sort():
    x = np.random.default_rng(3).standard_normal(SHAPE)
    p = TopK(5).prox(x)
    thr = np.sort(np.abs(x).ravel())[-5]
    np.testing.assert_array_equal(p, np.where(np.abs(x) >= thr, x, 0))
    pr = TopK(2, axis=-1).prox(x)
    thr_r = np.sort(np.abs(x), axis=-1)[..., -2:-1]
    np.testing.assert_array_equal(pr, np.where(np.abs(x) >= thr_r, x, 0))
    assert np.count_nonzero(pr, axis=-1).max() == 2 and TopK(2, axis=-1)(pr) == 0.0
    assert TopK(2, axis=-1)(x) == math.inf
    np.testing.assert_array_equal(TopK(100).prox(x), x)


def test_scaled_binary_closed_form():
    x = np.random.default_rng(4).standard_normal(SHAPE)
    np.testing.assert_allclose(ScaledBinary().prox(x), np.abs(x).mean() * np.sign(x), atol=1e-15)
    ref = np.abs(x).mean(axis=-1, keepdims=True) * np.sign(x)
    np.testing.assert_allclose(ScaledBinary(axis=-1).prox(x), ref, atol=1e-15)
    # brute force over the 2^n sign patterns of one vector (best scale for each)
    v = x[0, 0]
    assert np.sum((v - ScaledBinary().prox(v)) ** 2) <= _brute(v, (-1, 1)) + 1e-12
    assert ScaledBinary().prox(np.array([0.0, 2.0])).tolist() == [1.0, 1.0]  # sign(0) = +1


def _brute(v, alphabet):
    best = math.inf
    for s in itertools.product(alphabet, repeat=v.size):
        s = np.array(s, dtype=float)
        nn = float(s @ s)
        a = max(float(s @ v) / nn, 0.0) if nn else 0.0
        best = min(best, float(np.sum((v - a * s) ** 2)))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_scaled_ternary_exact_against_brute_force(seed):
    v = np.random.default_rng(seed).standard_normal(7) * np.array([3, 1, 1, 0.1, 2, 0.5, 1])
    p = ScaledTernary().prox(v)
    assert np.sum((v - p) ** 2) == pytest.approx(_brute(v, (-1, 0, 1)), abs=1e-12)
    nz = np.abs(p[p != 0])
    np.testing.assert_allclose(nz, nz[0])
    assert ScaledTernary()(p) == 0.0
    # batched along an axis = each slice on its own
    x = np.random.default_rng(seed).standard_normal(SHAPE)
    pb = ScaledTernary(axis=1).prox(x)
    for i, k in itertools.product(range(2), range(4)):
        np.testing.assert_allclose(pb[i, :, k], ScaledTernary().prox(x[i, :, k]), atol=1e-15)


# -- property tests (conventions of test_prox_properties.py) ------------------------------

@settings(max_examples=30, deadline=None)
@given(x=xs, y=xs)
def test_spectral_ball_firmly_nonexpansive(x, y):
    f = SETS["SpectralBall"]()
    d = f.prox(x, 1.0) - f.prox(y, 2.0)
    assert float(np.sum(d * d)) <= float(np.sum(d * (x - y))) + 1e-9 * (1 + np.sum((x - y) ** 2))


@settings(max_examples=30, deadline=None)
@given(x=xs, z0=xs)
def test_spectral_ball_variational_inequality(x, z0):
    f = SETS["SpectralBall"]()
    p, z = f.prox(x), f.prox(z0, 3.0)
    assert f(p) == 0.0 and f(z) == 0.0
    assert float(np.sum((x - p) * (z - p))) <= 1e-9 * (1 + np.sum(x * x) + np.sum(z * z))
    np.testing.assert_allclose(f.prox(p), p, atol=1e-12)


@pytest.mark.parametrize("name", NONCONVEX)
@settings(max_examples=25, deadline=None)
@given(x=xs, z0=st.lists(xs, min_size=3, max_size=3))
def test_nonconvex_projection_optimal(name, x, z0):
    # the projection is at least as close to x as any (random) feasible point
    f = SETS[name]()
    assert not f.is_convex
    p = f.prox(x, 1.0)
    assert f(p) == 0.0
    dp = float(np.sum((x - p) ** 2))
    for z in z0:
        z = f.prox(z, 2.0)
        for c in (z, 0.5 * z, 1.7 * z) if "Scaled" in name or "TopK" in name else (z,):
            assert f(c) == 0.0
            assert dp <= float(np.sum((x - c) ** 2)) + 1e-9 * (1 + np.sum(x * x))
    np.testing.assert_allclose(f.prox(p), p, atol=1e-12)  # idempotent


def test_flags_and_repr():
    assert SpectralBall().is_convex
    for name in NONCONVEX:
        assert not SETS[name]().is_convex
    assert "radius=1.5" in repr(SETS["SpectralBall"]()) and "k=5" in repr(SETS["TopK"]())


def test_torch_autograd_through_projections():
    x = torch.tensor(np.random.default_rng(5).standard_normal((4, 3)), requires_grad=True)
    for f in (Oblique(), SpectralBall(0.5), Stiefel(), ScaledBinary(axis=-1)):
        out = f.prox(x)
        (g,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(g).all()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="radius"):
        SpectralBall(-1.0)
    with pytest.raises(TypeError, match="k"):
        TopK(2.5)
    with pytest.raises(ValueError, match="k"):
        TopK(0)
    with pytest.raises(TypeError, match="axis"):
        Oblique(axis=1.0)
    with pytest.raises(ValueError, match="axis"):
        ScaledBinary(axis=3).prox(np.ones((2, 2)))
    with pytest.raises(ValueError, match="x must have at least 2"):
        Stiefel().prox(np.ones(3))
    with pytest.raises(ValueError, match="x must have at least 2"):
        SpectralBall().prox(np.ones(3))
    with pytest.raises(TypeError, match="x"):
        TopK(1).prox(np.ones(3, dtype=int))
    with pytest.raises(ValueError, match="tau"):
        Oblique().prox(np.ones(3), -1.0)
