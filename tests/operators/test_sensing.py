"""GaussianSensing: dot test, the matrix it is, its statistics, determinism, validation."""

import numpy as np
import pytest
from helpers import dense
from tikhon.operators import GaussianSensing, dot_test


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dot_test(dtype, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    G = GaussianSensing((3, 4, 5), 17, rng=0)
    dot_test(G, dtype=dtype, backend=backend)
    assert G.in_shape == (3, 4, 5) and G.out_shape == (17,)


def test_is_the_seeded_gaussian_matrix():
    G = GaussianSensing((4, 3), 6, rng=7)
    ref = np.random.default_rng(7).standard_normal((6, 12)) / np.sqrt(6)
    np.testing.assert_array_equal(dense(G), ref)
    x = np.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(G(x), ref @ x.ravel(), rtol=1e-14)
    np.testing.assert_array_equal(dense(GaussianSensing((4, 3), 6, rng=np.random.default_rng(7))), ref)
    assert not np.array_equal(dense(GaussianSensing((4, 3), 6, rng=8)), ref)


def test_isotropic_on_average():
    # E[G^T G] = I: the diagonal of G^T G averages chi2_m / m over n columns, of standard
    # deviation sqrt(2 / m) / sqrt(n) = 0.0063 here; 0.03 is about five of them
    G = GaussianSensing((10, 10), 500, rng=0)
    M = G.todense()
    assert np.mean(np.sum(M ** 2, axis=0)) == pytest.approx(1.0, abs=0.03)
    # power iteration approaches the norm from below (a 300-iteration cap)
    assert G.norm() == pytest.approx(np.linalg.norm(M, 2), rel=1e-4)
    assert G.norm() <= np.linalg.norm(M, 2) * (1 + 1e-12)


def test_validation():
    with pytest.raises(ValueError, match="m"):
        GaussianSensing((3, 3), 0, rng=0)
    with pytest.raises(TypeError, match="rng"):
        GaussianSensing((3, 3), 4, rng=None)
    with pytest.raises(TypeError, match="rng"):
        GaussianSensing((3, 3), 4, rng=True)
    with pytest.raises(ValueError, match="shape"):
        GaussianSensing((0, 3), 4, rng=0)
    assert "GaussianSensing[4 of (3, 3)]" in repr(GaussianSensing((3, 3), 4, rng=0))
