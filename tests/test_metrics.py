"""tikhon.metrics against scikit-image called directly."""

import numpy as np
import pytest
from skimage.metrics import (
    normalized_root_mse,
    peak_signal_noise_ratio,
    structural_similarity,
)

from tikhon.metrics import nmse, psnr, ssim


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 0.9, size=(32, 40))
    x = ref + 0.05 * rng.standard_normal(ref.shape)
    return x, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_psnr_matches_skimage(pair, dtype):
    x, ref = (a.astype(dtype) for a in pair)
    dr = float(ref.max() - ref.min())
    expected = peak_signal_noise_ratio(ref.astype(np.float64), x.astype(np.float64), data_range=dr)
    assert psnr(x, ref) == pytest.approx(expected, rel=1e-6)
    # closed form as an independent check
    mse = np.mean((x.astype(np.float64) - ref.astype(np.float64)) ** 2)
    assert psnr(x, ref, data_range=1.0) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-6)


def test_ssim_matches_skimage(pair):
    x, ref = pair
    dr = ref.max() - ref.min()
    assert ssim(x, ref) == pytest.approx(structural_similarity(ref, x, data_range=dr), rel=1e-12)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(x, ref, data_range=1.0, **kw) == pytest.approx(
        structural_similarity(ref, x, data_range=1.0, **kw), rel=1e-12)
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(x, ref) < 0.99


def test_nmse_matches_skimage_and_closed_form(pair):
    x, ref = pair
    expected = np.sum((x - ref) ** 2) / np.sum(ref ** 2)
    assert nmse(x, ref) == pytest.approx(expected, rel=1e-12)
    assert nmse(x, ref) == pytest.approx(normalized_root_mse(ref, x) ** 2, rel=1e-12)
    assert nmse(np.zeros_like(ref), ref) == pytest.approx(1.0)


def test_identical_images(pair):
    _, ref = pair
    assert psnr(ref, ref) == np.inf
    assert nmse(ref, ref) == 0.0


def test_torch_input(pair):
    torch = pytest.importorskip("torch")
    x, ref = pair
    xt, rt = torch.from_numpy(x).float(), torch.from_numpy(ref).float().requires_grad_(True)
    x32, r32 = x.astype(np.float32), ref.astype(np.float32)
    assert psnr(xt, rt) == pytest.approx(psnr(x32, r32), rel=1e-10)
    assert ssim(xt, rt) == pytest.approx(ssim(x32, r32), rel=1e-10)
    assert nmse(xt, ref) == pytest.approx(nmse(x32, ref), rel=1e-10)


@pytest.mark.parametrize("metric", [psnr, ssim, nmse])
def test_errors(metric, pair):
    x, ref = pair
    with pytest.raises(ValueError, match="same shape"):
        metric(x[:-1], ref)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        metric(bad, ref)
    bad = ref.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="ref contains NaN"):
        metric(x, bad)
    with pytest.raises(TypeError, match="x must be a real"):
        metric(x.astype(complex), ref)


def test_data_range_errors(pair):
    x, ref = pair
    for f in (psnr, ssim):
        with pytest.raises(ValueError, match="data_range"):
            f(x, ref, data_range=0)
        with pytest.raises(ValueError, match="data_range"):
            f(x, np.ones_like(ref))
    with pytest.raises(ValueError, match="window"):
        ssim(x[:5, :5], ref[:5, :5])
    with pytest.raises(ValueError, match="ref is identically zero"):
        nmse(x, np.zeros_like(ref))
