"""The shipped LPN image priors: safe loading, a recorded output, PnP-ADMM convergence.

The weights are ``learned/weights/lpn_{natural,ellipses}.safetensors``, trained
by ``examples/train_lpn_prior.py``. PnP-ADMM (:func:`tikhon.solvers.admm`,
``f = tau/2 ||A x - y||^2`` by conjugate gradients, ``g`` the network's
fixed-step prox) is run on a small deblurring and a small few-view CT problem,
each on an image the prior never saw.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tikhon.learned import LearnedProximalNetwork, load_lpn
from tikhon.operators import Convolution
from tikhon.operators.prox import SquaredL2
from tikhon.solvers import ADMM, admm

from tikhon.data import random_ellipses, simulate_sinogram
from tikhon.metrics import psnr

torch.set_num_threads(1)

WEIGHTS = Path(__file__).resolve().parents[2] / "learned" / "weights"
PRIORS = ("natural", "ellipses")
SIGMA = 0.1  # the training noise level of both priors

# lpn(probe) on the seeded probe below, recorded on the machine that trained
# the weights: (sum, sum of squares, entry [0, 0, 5, 7]) of the float32 output
RECORDED = {
    "natural": (492.9745256751776, 269.3249445498015, 0.6312276124954224),
    "ellipses": (509.92484395205975, 280.57944587389, 0.6273494362831116),
}


def _path(name):
    return WEIGHTS / f"lpn_{name}.safetensors"


def _probe():
    """A seeded 32 x 32 smooth image plus noise, in [0, 1] (no data files needed)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32)
    clean = 0.5 + 0.3 * np.sin(6 * t)[:, None] * np.cos(4 * t)[None, :]
    return (clean + SIGMA * rng.standard_normal((32, 32)))[None, None].astype(np.float32)


@pytest.fixture(scope="module")
def priors():
    return {name: load_lpn(_path(name)) for name in PRIORS}


def _header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


@pytest.mark.parametrize("name", PRIORS)
def test_shipped_weights_are_safetensors_with_provenance(name, priors):
    path = _path(name)
    header = _header(path)  # a plain JSON header: nothing to execute
    meta = header["__metadata__"]
    assert meta["format"].strip('"') == "tikhon-lpn/1"
    lpn = priors[name]
    assert isinstance(lpn, LearnedProximalNetwork) and not lpn.training
    assert lpn.kind == "conv" and 16 <= lpn.hidden <= 32
    facts = lpn.file_metadata["extra"]["meta"]
    assert facts["script"] == "examples/train_lpn_prior.py"
    assert facts["sigma"] == SIGMA
    assert lpn.file_metadata["seed"] == 0
    if name == "natural":
        # the example's test and validation images were held out
        assert not {"camera", "astronaut", "chelsea"} & set(facts["train_images"])
    assert sum(p.stat().st_size for p in WEIGHTS.glob("lpn_*.safetensors")) < 5 * 2**20


@pytest.mark.parametrize("name", PRIORS)
def test_shipped_output_matches_recording(name, priors):
    with torch.no_grad():
        out = priors[name].gradient(torch.from_numpy(_probe()), create_graph=False).double()
    got = (float(out.sum()), float((out ** 2).sum()), float(out[0, 0, 5, 7]))
    # float32 convolutions: other machines and thread counts round differently
    np.testing.assert_allclose(got, RECORDED[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", PRIORS)
def test_shipped_prior_denoises(name, priors):
    x = torch.from_numpy(_probe())
    t = np.linspace(0, 1, 32)
    clean = (0.5 + 0.3 * np.sin(6 * t)[:, None] * np.cos(4 * t)[None, :])
    with torch.no_grad():
        out = priors[name].gradient(x, create_graph=False)[0, 0].double().numpy()
    assert psnr(out, clean, data_range=1.0) > psnr(x[0, 0].double().numpy(), clean, data_range=1.0) + 3


def _gaussian_kernel(std=1.0, radius=3):
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / std) ** 2)
    k = np.outer(k, k)
    return k / k.sum()


def _pnp(A, y, prior, tau, tol, x0, max_iter=400):
    """PnP-ADMM; also records the fixed-point residual ||T(w) - w|| of every iteration."""
    f = tau * SquaredL2(b=y, op=A, cg_tol=1e-9)
    g = prior.as_prox()
    fixed_point = []

    def callback(state):
        # ||(x, z, u) - (x_prev, z_prev, u_prev)||, with u - u_prev = x - z
        fixed_point.append(float(np.sqrt(np.sum((state.x - state.x_prev) ** 2)
                                         + np.sum((state.z - state.z_prev) ** 2)
                                         + np.sum((state.x - state.z) ** 2))))
        return False

    res = admm(f, g, None, x0=x0, rho=1.0, tol=tol, max_iter=max_iter, callback=callback,
               record_objective=False)
    return res, np.array(fixed_point)


def _check_converged(res, fixed_point, tol, A, y, prior, tau):
    assert res.status == "converged", res.message
    assert res.history["criterion"][-1] <= tol
    # the fixed-point residual decreases: its last value is far below the first ones
    assert fixed_point[-1] < 1e-2 * fixed_point[:3].max()
    # and the iterate is an ADMM fixed point: one more iteration moves it little
    solver = ADMM(tau * SquaredL2(b=y, op=A, cg_tol=1e-9), prior.as_prox(), None)
    dx, dz, _du = solver.optimality(res.x, res.info["z"], res.dual, rho=1.0)
    scale = np.linalg.norm(res.x)
    assert np.linalg.norm(dx) <= 10 * tol * scale and np.linalg.norm(dz) <= 10 * tol * scale


def test_pnp_admm_converges_on_deblurring(priors):
    from skimage.data import camera
    from skimage.transform import rescale

    x_true = np.clip(rescale(camera() / 255.0, 0.25, anti_aliasing=True), 0, 1)[40:72, 48:80]
    A = Convolution(x_true.shape, _gaussian_kernel(), boundary="zero")
    y = A.forward(x_true) + 0.01 * np.random.default_rng(1).standard_normal(x_true.shape)
    tau, tol = (SIGMA / 0.01) ** 2, 1e-4
    res, fixed_point = _pnp(A, y, priors["natural"], tau, tol, x0=y)
    _check_converged(res, fixed_point, tol, A, y, priors["natural"], tau)
    assert psnr(res.x, x_true, data_range=1.0) > psnr(y, x_true, data_range=1.0)


def test_pnp_admm_converges_on_few_view_ct(priors):
    x_true = random_ellipses(32, rng=10000)
    angles = np.linspace(0, np.pi, 12, endpoint=False)
    y, A = simulate_sinogram(x_true, angles, noise="gaussian", level=0.01, rng=2, return_operator=True)
    sigma_noise = 0.01 * np.abs(A.forward(x_true)).max()
    tau, tol = (SIGMA / sigma_noise) ** 2, 1e-4
    res, fixed_point = _pnp(A, y, priors["ellipses"], tau, tol, x0=A.fbp(y))
    _check_converged(res, fixed_point, tol, A, y, priors["ellipses"], tau)
    assert psnr(res.x, x_true, data_range=1.0) > psnr(A.fbp(y), x_true, data_range=1.0)
