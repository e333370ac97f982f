"""Tests of tikhon.operators.Radon against closed forms, scikit-image and ASTRA."""

import math

import numpy as np
import pytest

from tikhon.operators import Radon, dot_test

skimage_transform = pytest.importorskip("skimage.transform")
from skimage.data import shepp_logan_phantom  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio  # noqa: E402


def _angles(n, stop=np.pi):
    return np.linspace(0.0, stop, n, endpoint=False)


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _disk(n, radius, center, sub=8):
    """Pixel-area fractions of a disk (supersampled), centre in (row, col) indices."""
    off = (np.arange(sub) + 0.5) / sub - 0.5
    ii, jj = np.mgrid[:n, :n].astype(float)
    img = np.zeros((n, n))
    for a in off:
        for b in off:
            img += (ii + a - center[0]) ** 2 + (jj + b - center[1]) ** 2 <= radius ** 2
    return img / sub ** 2


@pytest.fixture(scope="module")
def phantom256():
    return skimage_transform.resize(shepp_logan_phantom(), (256, 256))


# -- adjointness ---------------------------------------------------------------
@pytest.fixture(params=["numba", "torch-ops"])
def torch_route(request, monkeypatch):
    """Torch CPU tensors through the numba kernels, or through the torch ops CUDA uses."""
    monkeypatch.setattr(Radon, "_numba_on_torch_cpu", request.param == "numba")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numpy", "torch", "torch-ops"])
@pytest.mark.parametrize("det_spacing", [1.0, 0.6, 1.7])
def test_dot_test(dtype, backend, det_spacing, monkeypatch):
    if backend != "numpy":
        _torch()
        monkeypatch.setattr(Radon, "_numba_on_torch_cpu", backend == "torch")
        backend = "torch"
    # non-square, angles over the full circle and off the grid, odd spacing
    A = Radon((36, 29), _angles(23, 2 * np.pi) + 0.05, det_spacing=det_spacing)
    for seed in range(3):
        dot_test(A, dtype=dtype, backend=backend, rng=seed)


def test_dot_test_float32_large():
    A = Radon((256, 256), _angles(180))
    assert dot_test(A, dtype=np.float32, rng=1) <= 1e-4
    assert dot_test(A, dtype=np.float64, rng=1) <= 1e-10


def test_adjoint_property_matches_transpose():
    A = Radon((10, 12), _angles(7, 2 * np.pi) + 0.3, n_det=17)
    rng = np.random.default_rng(0)
    y = rng.standard_normal(A.out_shape)
    np.testing.assert_allclose(A.T(y), A.adjoint(y))
    # dense matrix check: forward columns equal adjoint rows
    M = np.stack([A(e.reshape(10, 12)).ravel() for e in np.eye(120)], axis=1)
    Mt = np.stack([A.T(e.reshape(A.out_shape)).ravel() for e in np.eye(M.shape[0])], axis=1)
    np.testing.assert_allclose(M.T, Mt, atol=1e-12)
    assert M.min() >= 0.0
    assert A.abs() is A


def _joseph_dense(A):
    """Dense float64 matrix of Joseph's method, straight from the geometry.

    An independent reference: per angle and bin, the ray ``x cos + y sin = t``
    (``x = col - center[1]``, ``y = center[0] - row``) is intersected with
    every row (rays closer to vertical) or column, and the two neighbouring
    pixels get the linear-interpolation weights times the path length per line.
    """
    n_rows, n_cols = A.image_shape
    ci, cj = A.center
    M = np.zeros((A.angles.size, A.n_det, n_rows, n_cols))
    t = (np.arange(A.n_det) - A.det_center) * A.det_spacing
    for a, th in enumerate(A.angles):
        cos, sin = np.cos(th), np.sin(th)
        rows = abs(cos) >= abs(sin)
        n_lines, length = (n_rows, n_cols) if rows else (n_cols, n_rows)
        m = np.arange(n_lines)[:, None]
        if rows:  # column position of the ray on row m
            pos = (t[None, :] - (ci - m) * sin) / cos + cj
        else:  # row position of the ray on column m
            pos = ci - (t[None, :] - (m - cj) * cos) / sin
        fl = np.floor(pos)
        f = pos - fl
        w = 1.0 / max(abs(cos), abs(sin))
        for j, wt in ((fl, 1.0 - f), (fl + 1, f)):
            ok = (j >= 0) & (j < length)
            mm, kk = np.nonzero(ok)
            jj = j[ok].astype(int)
            if rows:
                np.add.at(M, (a, kk, mm, jj), w * wt[ok])
            else:
                np.add.at(M, (a, kk, jj, mm), w * wt[ok])
    return M.reshape(A.angles.size * A.n_det, n_rows * n_cols)


# angle sets: rows family only, columns family only, both
_FAMILIES = {
    "rows": np.array([0.0, 0.3, -0.6, np.pi, 2.8]),
    "cols": np.array([np.pi / 2, 1.0, 2.1, -1.3]),
    "both": np.array([0.1, 0.9, 1.6, 2.4, 3.5, 5.0]),
}


@pytest.mark.parametrize("family", sorted(_FAMILIES))
@pytest.mark.parametrize("shape", [(7, 11), (12, 5)])
@pytest.mark.parametrize("det_spacing", [1.0, 0.45])
def test_dense_matches_geometry_and_transpose(family, shape, det_spacing):
    ang = _FAMILIES[family]
    A = Radon(shape, ang, det_spacing=det_spacing, center=(shape[0] / 2 - 0.3, shape[1] / 2 + 0.2))
    ref = _joseph_dense(A)
    n_pix = shape[0] * shape[1]
    for dtype, tol in ((np.float64, 1e-9), (np.float32, 1e-5)):
        eye = np.eye(n_pix, dtype=dtype)
        M = np.stack([A(e.reshape(shape)).ravel() for e in eye], axis=1)
        assert M.dtype == dtype
        np.testing.assert_allclose(M, ref, atol=tol)
        # the adjoint is the transpose, entry by entry
        Mt = np.stack([A.T(e.reshape(A.out_shape)).ravel() for e in np.eye(M.shape[0], dtype=dtype)])
        np.testing.assert_allclose(Mt, M, atol=tol * 1e-3 if dtype == np.float64 else 1e-6)


def test_float32_adjoint_exact_with_large_positions():
    # a small image far from the rotation centre: sample positions of several
    # hundred pixels, where an ulp of the position (3e-5) would show
    shape = (6, 5)
    ang = np.array([0.2, 1.1, 1.9, 2.7])
    A = Radon(shape, ang, n_det=1201, center=(-300.25, 410.5), det_center=600.0)
    eye = np.eye(shape[0] * shape[1], dtype=np.float32)
    M = np.stack([A(e.reshape(shape)).ravel() for e in eye], axis=1)
    np.testing.assert_allclose(M, _joseph_dense(A), atol=1e-3)
    hit = np.flatnonzero(np.abs(M).sum(axis=1))
    assert hit.size > 20
    rows = []
    for r in hit:
        y = np.zeros(A.out_shape[0] * A.out_shape[1], dtype=np.float32)
        y[r] = 1.0
        rows.append(A.T(y.reshape(A.out_shape)).ravel())
    np.testing.assert_allclose(np.stack(rows), M[hit], atol=1e-6)
    y = np.random.default_rng(0).standard_normal(A.out_shape).astype(np.float32)
    np.testing.assert_allclose(A.T(y).ravel(), M.T.astype(np.float64) @ y.ravel(), rtol=1e-5, atol=1e-5)


def test_dot_test_float32_many_seeds():
    A = Radon((96, 80), _angles(60, 2 * np.pi) + 0.01)
    B = Radon((64, 64), _angles(45) + 0.2, det_spacing=0.7)
    for seed in range(8):
        assert dot_test(A, dtype=np.float32, rng=seed) <= 1e-4
        assert dot_test(B, dtype=np.float32, rng=seed) <= 1e-4
        assert dot_test(A, dtype=np.float64, rng=seed) <= 1e-10


@pytest.mark.parametrize("det_spacing", [1.0, 0.6])
def test_float32_matches_float64(det_spacing):
    # the float32 path packs pixel (and bin) pairs; float64 does not
    A = Radon((70, 50), _angles(33, 2 * np.pi) + 0.05, det_spacing=det_spacing)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(A.in_shape), rng.standard_normal(A.out_shape)
    for f, v in ((A, x), (A.T, y)):
        r64, r32 = f(v), f(v.astype(np.float32))
        assert r32.dtype == np.float32
        np.testing.assert_allclose(r32, r64, atol=1e-5 * np.abs(r64).max())


# -- accuracy ------------------------------------------------------------------
def test_disk_matches_analytic():
    n, r = 256, 80.0
    A = Radon((n, n), _angles(60))
    sino = A(_disk(n, r, A.center))
    t = (np.arange(A.n_det) - A.det_center) * A.det_spacing
    exact = np.broadcast_to(2 * np.sqrt(np.maximum(r ** 2 - t ** 2, 0.0)), sino.shape)
    rel = np.linalg.norm(sino - exact) / np.linalg.norm(exact)
    assert rel <= 0.02, rel


def test_disk_off_centre_and_spacing():
    # geometry with a non-default centre and detector spacing
    n, r = 96, 20.0
    center, ds = (50.5, 40.0), 1.5
    A = Radon((n, n), _angles(40), det_spacing=ds, center=center)
    sino = A(_disk(n, r, center))
    t = (np.arange(A.n_det) - A.det_center) * ds
    exact = np.broadcast_to(2 * np.sqrt(np.maximum(r ** 2 - t ** 2, 0.0)), sino.shape)
    assert np.linalg.norm(sino - exact) / np.linalg.norm(exact) <= 0.02


def test_default_geometry():
    A = Radon((256, 256), _angles(10))
    assert A.out_shape == (10, 363)  # ceil(256 * sqrt(2))
    assert A.center == (128.0, 128.0) and A.det_center == 181.0
    B = Radon((128, 128), _angles(10))
    assert B.n_det == 182 and B.det_center == 91.0  # even counts are not bumped
    C = Radon((100, 60), _angles(10))
    assert C.n_det == math.ceil(math.sqrt(2) * 100)  # skimage pads to a square


def test_default_n_det_is_skimage_for_every_size():
    # friction point 3: a user's sinogram from skimage.transform.radon(circle=False)
    # must fit Radon's default for every image side (182 bins for n = 128, 142 for 100)
    sizes = list(range(16, 301)) + [(48, 64), (64, 48), (30, 100)]
    for n in sizes:
        shape = (n, n) if isinstance(n, int) else n
        ref_bins = skimage_transform.radon(np.zeros(shape), [0.0], circle=False).shape[0]
        assert Radon(shape, [0.0]).n_det == ref_bins, shape


@pytest.mark.parametrize("n", [100, 101, 128, 127])
@pytest.mark.parametrize("circle", [False, True])
def test_projections_match_skimage_even_and_odd_n_det(n, circle):
    # the centre must stay right for even counts: a shift of one bin is ~30 % off
    rng = np.random.default_rng(n)
    img = np.zeros((n, n))
    for _ in range(6):
        r0, c0 = rng.integers(n // 4, 3 * n // 4, 2)
        img[r0 - 3:r0 + 4, c0 - 2:c0 + 5] += rng.uniform(0.5, 1.0)
    ang = np.array([0.0, 0.4, 1.1, np.pi / 2, 2.0, 2.9])
    ref = skimage_transform.radon(img, np.degrees(ang), circle=circle).T
    # circle=True (skimage's default): as many bins as the image side
    A = Radon(img.shape, ang, n_det=n) if circle else Radon(img.shape, ang)
    assert A.out_shape == ref.shape
    sino = A(img)
    rel = np.linalg.norm(sino - ref) / np.linalg.norm(ref)
    assert rel <= 0.02, rel
    for shift in (-1, 1):
        off = np.linalg.norm(np.roll(sino, shift, axis=1) - ref) / np.linalg.norm(ref)
        assert off > 10 * rel


def test_shepp_logan_matches_skimage(phantom256):
    ang = _angles(90)
    A = Radon((256, 256), ang)
    ref = skimage_transform.radon(phantom256, np.degrees(ang), circle=False).T
    assert ref.shape == A.out_shape  # same detector grid, no interpolation needed
    rel = np.linalg.norm(A(phantom256) - ref) / np.linalg.norm(ref)
    assert rel <= 0.05, rel


def test_orientation_matches_skimage_nonsquare():
    # an asymmetric image on a non-square grid catches flips and centring errors
    rng = np.random.default_rng(3)
    img = np.zeros((48, 64))
    for _ in range(6):
        r0, c0 = rng.integers(8, 40), rng.integers(8, 56)
        img[r0 - 3:r0 + 4, c0 - 2:c0 + 5] += rng.uniform(0.5, 1.0)
    ang = np.array([0.0, 0.3, 1.0, np.pi / 2, 2.2, 3.0])
    ref = skimage_transform.radon(img, np.degrees(ang), circle=False).T
    # skimage pads to a square of side ceil(sqrt(2) * max(shape)), detector centre n//2
    A = Radon(img.shape, ang, n_det=ref.shape[1])
    rel = np.linalg.norm(A(img) - ref) / np.linalg.norm(ref)
    assert rel <= 0.05, rel
    flipped = np.linalg.norm(A(img)[:, ::-1] - ref) / np.linalg.norm(ref)
    assert flipped > 0.3


def test_matches_astra_linear_projector():
    astra = pytest.importorskip("astra")
    n = 64
    ang = _angles(30, 2 * np.pi) + 0.1
    A = Radon((n, n), ang, n_det=95, center=((n - 1) / 2, (n - 1) / 2), det_center=47.0)
    x = np.random.default_rng(0).random((n, n)).astype(np.float32)
    vg = astra.create_vol_geom(n, n)
    pg = astra.create_proj_geom("parallel", 1.0, 95, ang)
    pid = astra.create_projector("linear", pg, vg)
    try:
        sid, sino = astra.create_sino(x, pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    rel = np.linalg.norm(A(x) - sino) / np.linalg.norm(sino)
    assert rel <= 1e-4, rel


# -- filtered backprojection ---------------------------------------------------
def test_fbp_psnr(phantom256):
    ang = _angles(180)
    A = Radon((256, 256), ang)
    rec = A.fbp(A(phantom256))
    psnr = peak_signal_noise_ratio(phantom256, rec, data_range=phantom256.max() - phantom256.min())
    assert psnr >= 25.0, psnr
    # not the adjoint: the adjoint of the data is far from the image
    assert np.linalg.norm(A.T(A(phantom256)) - phantom256) > 10 * np.linalg.norm(rec - phantom256)


@pytest.mark.parametrize("filt", ["ramp", "shepp-logan", "cosine", "hamming", "hann"])
def test_fbp_matches_skimage_iradon(filt):
    n = 96
    img = skimage_transform.resize(shepp_logan_phantom(), (n, n))
    ang = _angles(120)
    A = Radon((n, n), ang)
    sino = A(img)
    ref = skimage_transform.iradon(sino.T, np.degrees(ang), output_size=n, circle=False,
                                   filter_name=filt)
    rec = A.fbp(sino, filter=filt)
    rel = np.linalg.norm(rec - ref) / np.linalg.norm(ref)
    assert rel <= 0.08, (filt, rel)


def test_fbp_full_circle_and_dtype():
    n = 64
    img = skimage_transform.resize(shepp_logan_phantom(), (n, n))
    half = Radon((n, n), _angles(60))
    full = Radon((n, n), _angles(120, 2 * np.pi))
    np.testing.assert_allclose(full.angle_weights(), np.pi / 120)
    np.testing.assert_allclose(half.angle_weights(), np.pi / 60)
    r_half = half.fbp(half(img))
    r_full = full.fbp(full(img))
    assert np.linalg.norm(r_full - r_half) / np.linalg.norm(r_half) <= 0.05
    r32 = half.fbp(half(img.astype(np.float32)))
    assert r32.dtype == np.float32
    np.testing.assert_allclose(r32, r_half, atol=1e-4 * np.abs(r_half).max())


# -- torch ---------------------------------------------------------------------
@pytest.mark.parametrize("det_spacing", [1.0, 0.7])
def test_torch_matches_numpy(det_spacing, torch_route):
    torch = _torch()
    A = Radon((33, 40), _angles(17, 2 * np.pi) + 0.2, det_spacing=det_spacing)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(A.in_shape), rng.standard_normal(A.out_shape)
    fx, ay = A(torch.from_numpy(x)), A.T(torch.from_numpy(y))
    assert isinstance(fx, torch.Tensor) and fx.dtype == torch.float64
    np.testing.assert_allclose(fx.numpy(), A(x), rtol=1e-6, atol=1e-9 * np.abs(A(x)).max())
    np.testing.assert_allclose(ay.numpy(), A.T(y), rtol=1e-6, atol=1e-9 * np.abs(A.T(y)).max())
    s = A(x)
    r = A.fbp(torch.from_numpy(s))
    np.testing.assert_allclose(r.numpy(), A.fbp(s), atol=1e-9 * np.abs(A.fbp(s)).max())
    x32 = torch.from_numpy(x.astype(np.float32))
    assert A(x32).dtype == torch.float32
    np.testing.assert_allclose(A(x32).numpy(), A(x), rtol=1e-3, atol=1e-4 * np.abs(A(x)).max())


def test_torch_gradcheck(torch_route):
    torch = _torch()
    A = Radon((6, 7), np.array([0.0, 0.4, 1.3, 2.0, 2.9]))
    x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda v: A(v), (x,))
    y = torch.randn(A.out_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: A.T(v), (y,))


# -- validation ----------------------------------------------------------------
def test_bad_inputs():
    A = Radon((16, 16), _angles(8))
    with pytest.raises(ValueError, match="shape"):
        A(np.zeros((16, 15)))
    with pytest.raises(ValueError, match="shape"):
        A.T(np.zeros((8, 5)))
    with pytest.raises(TypeError):
        A(np.zeros((16, 16), dtype=np.int64))
    with pytest.raises(TypeError):
        A(np.zeros((16, 16), dtype=np.complex128))
    with pytest.raises(ValueError, match="sinogram"):
        A.fbp(np.zeros((8, 3)))
    with pytest.raises(ValueError, match="filter"):
        A.fbp(np.zeros(A.out_shape), filter="butterworth")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"angles": [0.0, np.nan]}, ValueError, "angles"),
        ({"angles": [0.0, np.inf]}, ValueError, "angles"),
        ({"angles": []}, ValueError, "angles"),
        ({"angles": [[0.0, 1.0]]}, ValueError, "angles"),
        ({"angles": ["a"]}, TypeError, "angles"),
        ({"n_det": 0}, ValueError, "n_det"),
        ({"n_det": -3}, ValueError, "n_det"),
        ({"n_det": 2.5}, TypeError, "n_det"),
        ({"det_spacing": 0.0}, ValueError, "det_spacing"),
        ({"det_spacing": -1.0}, ValueError, "det_spacing"),
        ({"det_spacing": np.nan}, ValueError, "det_spacing"),
        ({"image_shape": (0, 4)}, ValueError, "image_shape"),
        ({"image_shape": (4, 4, 4)}, ValueError, "image_shape"),
        ({"center": (1.0, np.nan)}, ValueError, "center"),
        ({"dtype": np.int32}, TypeError, "dtype"),
    ],
)
def test_bad_construction(kwargs, exc, match):
    args = {"image_shape": (8, 8), "angles": _angles(4)}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Radon(**args)
