"""tikhon.data: phantoms, analytic sinograms and noise models."""

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from tikhon.data import (
    ellipse_sinogram,
    estimate_noise_sigma,
    random_ellipses,
    rasterize_ellipses,
    shepp_logan,
    shepp_logan_ellipses,
    simulate_sinogram,
)
from tikhon.operators import Radon


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# -- Shepp-Logan ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shepp_logan(dtype):
    x = shepp_logan(64, dtype=dtype)
    assert x.shape == (64, 64) and x.dtype == dtype
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    ref = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)
    assert rel(x, ref) < 1e-5
    np.testing.assert_array_equal(shepp_logan(400), shepp_logan_phantom())


def test_shepp_logan_errors():
    with pytest.raises(ValueError, match="n must be"):
        shepp_logan(0)
    with pytest.raises(TypeError, match="n must be an int"):
        shepp_logan(64.0)
    with pytest.raises(TypeError, match="dtype"):
        shepp_logan(64, dtype=np.int32)


def test_shepp_logan_ellipses_match_skimage_phantom():
    # the table in the module's coordinates (y up, phi in radians) draws skimage's phantom
    ref = shepp_logan_phantom()
    img = rasterize_ellipses(shepp_logan_ellipses(), 400, supersample=1)
    assert img.min() >= -1e-12 and img.max() <= 1 + 1e-12
    err = np.abs(img - ref).mean()
    assert err < 0.01  # only boundary pixels differ
    assert np.abs(np.flipud(img) - ref).mean() > 3 * err
    assert np.abs(np.fliplr(img) - ref).mean() > 2 * err


# -- rasterisation ---------------------------------------------------------------
def test_rasterize_area_and_position():
    n, a, b = 96, 0.5, 0.25
    e = np.array([[2.0, a, b, 0.3, -0.2, 0.4]])
    img = rasterize_ellipses(e, n, supersample=8)
    # mass = intensity * area, with the area in pixels (n/2 pixels per unit)
    assert img.sum() == pytest.approx(2.0 * np.pi * a * b * (n / 2) ** 2, rel=5e-3)
    rows, cols = np.indices(img.shape)
    x = (cols - (n - 1) / 2) * 2 / n
    y = ((n - 1) / 2 - rows) * 2 / n
    assert (img * x).sum() / img.sum() == pytest.approx(0.3, abs=2e-3)
    assert (img * y).sum() / img.sum() == pytest.approx(-0.2, abs=2e-3)


def test_rasterize_errors():
    with pytest.raises(ValueError, match="shape \\(k, 6\\)"):
        rasterize_ellipses(np.ones((2, 5)), 16)
    with pytest.raises(ValueError, match="semi-axes"):
        rasterize_ellipses([[1, 0.0, 0.5, 0, 0, 0]], 16)
    with pytest.raises(ValueError, match="NaN"):
        rasterize_ellipses([[1, np.nan, 0.5, 0, 0, 0]], 16)


# -- random ellipses --------------------------------------------------------------
def test_random_ellipses_properties():
    img, params = random_ellipses(64, 3, return_params=True)
    assert img.shape == (64, 64) and img.dtype == np.float64
    assert img.min() >= 0 and img.max() <= 1
    assert params.ndim == 2 and params.shape[1] == 6
    assert 5 + 2 <= params.shape[0] <= 12 + 2
    # the parameters describe the image exactly (same supersampling)
    np.testing.assert_allclose(rasterize_ellipses(params, 64, supersample=2), img, atol=1e-12)
    # a bright rim: the brain ellipse is nested inside the skull with lower value
    skull, brain = params[0], params[1]
    assert brain[1] < skull[1] and brain[2] < skull[2] and brain[0] < 0
    assert img.max() > 0.5


def test_random_ellipses_seed():
    a = random_ellipses(48, 7)
    np.testing.assert_array_equal(a, random_ellipses(48, np.random.default_rng(7)))
    assert not np.array_equal(a, random_ellipses(48, 8))
    rng = np.random.default_rng(1)
    assert not np.array_equal(random_ellipses(48, rng), random_ellipses(48, rng))


def test_random_ellipses_distribution():
    # many draws: always in range, features of every kind, both contrasts
    feats = []
    for seed in range(40):
        img, p = random_ellipses(32, seed, n_ellipses=(3, 6), return_params=True,
                                 dtype=np.float32)
        assert img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
        assert 3 <= p.shape[0] - 2 <= 6
        feats.append(p[2:])
    f = np.concatenate(feats)
    assert (f[:, 0] > 0).any() and (f[:, 0] < 0).any()
    assert (np.maximum(f[:, 1], f[:, 2]) < 0.06).any()  # small
    assert (np.minimum(f[:, 1], f[:, 2]) / np.maximum(f[:, 1], f[:, 2]) < 0.2).any()  # thin
    img, p = random_ellipses(32, 0, n_ellipses=0, rim=False, return_params=True)
    assert p.shape == (1, 6)


def test_random_ellipses_errors():
    with pytest.raises(ValueError, match="n_ellipses"):
        random_ellipses(32, 0, n_ellipses=(4, 2))
    with pytest.raises(TypeError, match="rng"):
        random_ellipses(32, "seed")
    with pytest.raises(ValueError, match="n must be"):
        random_ellipses(0, 0)


# -- analytic sinograms -----------------------------------------------------------
def test_ellipse_sinogram_disk_closed_form():
    # a centred disk of radius r (normalised): chord 2 sqrt(r^2 - s^2) at every angle
    n, r = 64, 0.5
    angles = np.array([0.0, 0.7, 2.0])
    sino = ellipse_sinogram([[1.0, r, r, 0, 0, 0]], angles, image_shape=n,
                            center=((n - 1) / 2, (n - 1) / 2), n_det=91, det_center=45)
    s = (np.arange(91) - 45) * 2 / n
    expected = 2 * np.sqrt(np.maximum(r ** 2 - s ** 2, 0)) * n / 2
    for row in sino:
        np.testing.assert_allclose(row, expected, atol=1e-12)
    # mass: the integral over the detector is the area in pixels
    assert sino.sum(axis=1) == pytest.approx(np.full(3, np.pi * (r * n / 2) ** 2), rel=1e-2)


@pytest.mark.parametrize("n", [128, 127])
def test_ellipse_sinogram_matches_radon(n):
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    A = Radon((n, n), angles)
    for e in (shepp_logan_ellipses(), random_ellipses(n, 1, return_params=True)[1]):
        analytic = ellipse_sinogram(e, angles, image_shape=n)
        assert analytic.shape == A.out_shape
        discrete = A(rasterize_ellipses(e, n, supersample=8))
        assert rel(discrete, analytic) <= 0.03
        # averaging over the bin width is closer still
        assert rel(discrete, ellipse_sinogram(e, angles, image_shape=n, det_oversample=4)) < 0.02
    # wrong orientation or a half-bin shift of the detector is clearly worse
    e = shepp_logan_ellipses()
    discrete = A(rasterize_ellipses(e, n, supersample=8))
    assert rel(discrete, ellipse_sinogram(e, -angles, image_shape=n)) > 0.15
    shifted = ellipse_sinogram(e, angles, image_shape=n, det_center=A.det_center + 1)
    assert rel(discrete, shifted) > 2 * rel(discrete, ellipse_sinogram(e, angles, image_shape=n))


def test_ellipse_sinogram_custom_geometry():
    n = 64
    angles = np.linspace(0, np.pi, 12, endpoint=False)
    geo = dict(center=((n - 1) / 2, (n - 1) / 2), det_center=50.0, det_spacing=0.8)
    A = Radon((n, n), angles, n_det=101, **geo)
    e = shepp_logan_ellipses()
    assert rel(A(rasterize_ellipses(e, n, 8)),
               ellipse_sinogram(e, angles, n_det=101, image_shape=n, det_oversample=2, **geo)) < 0.04


def test_ellipse_sinogram_errors():
    with pytest.raises(ValueError, match="angles"):
        ellipse_sinogram(shepp_logan_ellipses(), [[0.0, 1.0]], image_shape=32)
    with pytest.raises(ValueError, match="square"):
        ellipse_sinogram(shepp_logan_ellipses(), [0.0], image_shape=(32, 48))
    with pytest.raises(ValueError, match="angles contains NaN"):
        ellipse_sinogram(shepp_logan_ellipses(), [np.nan], image_shape=32)


# -- noise --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup():
    x = shepp_logan(48)
    angles = np.linspace(0, np.pi, 40, endpoint=False)
    clean = Radon((48, 48), angles)(x)
    return x, angles, clean


def test_simulate_clean_and_operator(setup):
    x, angles, clean = setup
    y, A = simulate_sinogram(x, angles, noise=None, return_operator=True)
    np.testing.assert_allclose(y, clean, rtol=1e-12, atol=1e-12)
    assert isinstance(A, Radon) and A.out_shape == clean.shape
    y32 = simulate_sinogram(x.astype(np.float32), angles, noise=None)
    assert y32.dtype == np.float32


def test_simulate_gaussian_statistics(setup):
    x, angles, clean = setup
    level = 0.02
    y = simulate_sinogram(x, angles, level=level, rng=0)
    r = y - clean
    sigma = level * np.abs(clean).max()
    assert r.std() == pytest.approx(sigma, rel=0.05)
    assert abs(r.mean()) < 4 * sigma / np.sqrt(r.size)
    y2 = simulate_sinogram(x, angles, level=level, rng=0, relative_to="norm")
    assert np.linalg.norm(y2 - clean) == pytest.approx(level * np.linalg.norm(clean), rel=0.05)
    np.testing.assert_array_equal(y, simulate_sinogram(x, angles, level=level, rng=0))
    assert not np.array_equal(y, simulate_sinogram(x, angles, level=level, rng=1))


def test_simulate_poisson_statistics(setup):
    x, angles, clean = setup
    photons, mu = 1e4, 2 / 48
    ys = np.stack([simulate_sinogram(x, angles, noise="poisson", photons=photons, rng=s)
                   for s in range(20)])
    # delta method: var(-log(N/I0)/mu) = 1 / (mu^2 I0 exp(-mu p))
    var_expected = 1.0 / (mu ** 2 * photons * np.exp(-mu * clean))
    ratio = ys.var(axis=0, ddof=1).mean() / var_expected.mean()
    assert ratio == pytest.approx(1.0, rel=0.1)
    assert abs((ys.mean(axis=0) - clean).mean()) < 0.05 * np.sqrt(var_expected.mean())
    # fewer photons, more noise; zero counts stay finite
    low = simulate_sinogram(x, angles, noise="poisson", photons=2.0, rng=0)
    assert np.all(np.isfinite(low))


def test_simulate_errors(setup):
    x, angles, _ = setup
    with pytest.raises(ValueError, match="noise"):
        simulate_sinogram(x, angles, noise="salt")
    with pytest.raises(ValueError, match="level"):
        simulate_sinogram(x, angles, level=-1)
    with pytest.raises(ValueError, match="photons"):
        simulate_sinogram(x, angles, noise="poisson", photons=0)
    with pytest.raises(ValueError, match="image"):
        simulate_sinogram(x[:, :-1], angles)
    with pytest.raises(TypeError, match="image"):
        simulate_sinogram(x.astype(int), angles)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="image contains NaN"):
        simulate_sinogram(bad, angles)
    with pytest.raises(ValueError, match="non-negative"):
        simulate_sinogram(-x, angles, noise="poisson")


def test_estimate_noise_sigma():
    rng = np.random.default_rng(3)
    # second differences remove any part linear along the detector
    ramp = np.outer(rng.uniform(1, 5, 40), np.linspace(0, 30, 91))
    noisy = ramp + 0.05 * rng.standard_normal(ramp.shape)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.05, rel=0.05)
    assert estimate_noise_sigma(ramp) < 1e-12
    torch = pytest.importorskip("torch")
    assert estimate_noise_sigma(torch.from_numpy(noisy)) == estimate_noise_sigma(noisy)
    with pytest.raises(ValueError, match="n_det >= 3"):
        estimate_noise_sigma(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="n_det >= 3"):
        estimate_noise_sigma(np.zeros(10))
