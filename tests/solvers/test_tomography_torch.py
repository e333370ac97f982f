"""tv_reconstruction and space_variant_weights on torch tensors: the device-resident path.

The NumPy path is checked against cvxpy in test_tomography.py; here the torch
path must follow the same iterates (same steps, same stopping) while never
moving data to host memory, so that a CUDA tensor stays on its GPU.
"""

import contextlib
import warnings

import numpy as np
import pytest

from tikhon.data import shepp_logan
from tikhon.operators import Radon
from tikhon.solvers import ConvergenceWarning, space_variant_weights, tv_reconstruction

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def problem():
    n, n_angles = 48, 24
    A = Radon((n, n), np.linspace(0.0, np.pi, n_angles, endpoint=False))
    x_true = shepp_logan(n)
    rng = np.random.default_rng(3)
    y0 = A(x_true)
    y = y0 + 0.01 * np.abs(y0).max() * rng.standard_normal(y0.shape)
    w = space_variant_weights(x_true)
    return A, x_true, y, w


@contextlib.contextmanager
def _no_warning_check():
    """Silence ConvergenceWarning: a short run may stop at max_iter on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


CASES = {
    "tv": {},
    "weighted": {"weights": "w"},
    "kl": {"data": "kl"},
    "precondition": {"precondition": True},
    "adaptive": {"step_ratio": "adaptive"},
    "x0": {"x0": "truth"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_follows_numpy_iterates_without_host_transfers(problem, case, no_host_transfers):
    A, x_true, y, w = problem
    opts = dict(CASES[case])
    if opts.get("weights") == "w":
        opts["weights"] = w
    if opts.get("x0") == "truth":
        opts["x0"] = x_true
    y_np = np.maximum(y, 0) if opts.get("data") == "kl" else y
    kwargs = dict(lam=0.05, tol=1e-4, max_iter=300, check_every=10)
    with _no_warning_check():
        ref = tv_reconstruction(A, y_np, **kwargs, **opts)
    t_opts = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    y_t = torch.from_numpy(y_np)
    with no_host_transfers(), _no_warning_check():
        res = tv_reconstruction(A, y_t, **kwargs, **t_opts)
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float64
    assert all(isinstance(d, torch.Tensor) for d in res.dual)
    assert res.n_iter == ref.n_iter and res.converged == ref.converged
    # the torch Radon path sums in another order: the iterates agree to rounding
    np.testing.assert_allclose(res.x.numpy(), ref.x, atol=1e-8 * np.abs(ref.x).max())
    np.testing.assert_allclose(res.history["residual"], ref.history["residual"], rtol=1e-6)
    assert res.info["objective"] == pytest.approx(ref.info["objective"], rel=1e-9)
    assert res.steps == pytest.approx(ref.steps, rel=1e-12)


def test_float32_tensor_stays_float32_and_matches_numpy(problem, no_host_transfers):
    A, x_true, y, w = problem
    y32 = y.astype(np.float32)
    ref = tv_reconstruction(A, y32, 0.05, weights=w, tol=1e-4, max_iter=2000)
    y_t = torch.from_numpy(y32)
    w_t = torch.from_numpy(w)  # float64 weights are cast to the data's dtype
    with no_host_transfers():
        res = tv_reconstruction(A, y_t, 0.05, weights=w_t, tol=1e-4, max_iter=2000)
    assert res.x.dtype == torch.float32 and res.dual[1].dtype == torch.float32
    assert ref.converged and res.converged
    # float32 rounding differs between the two Radon paths; the solutions agree
    err = np.linalg.norm(res.x.numpy() - ref.x) / np.linalg.norm(ref.x)
    assert err < 1e-3


def test_inputs_are_not_modified_and_graph_is_detached(problem):
    A, x_true, y, w = problem
    y_t = torch.from_numpy(y.copy()).requires_grad_(True)
    x0 = torch.from_numpy(-x_true).requires_grad_(True)  # clamped to >= 0 inside, on a copy
    w_t = torch.from_numpy(w).requires_grad_(True)
    before = x0.detach().clone()
    with _no_warning_check():
        res = tv_reconstruction(A, y_t, 0.05, x0=x0, weights=w_t, max_iter=20, tol=0.0)
    assert torch.equal(x0.detach(), before)
    # no graph grows through the iterations from any input
    assert not res.x.requires_grad and res.x.grad_fn is None
    assert not any(d.requires_grad for d in res.dual)


def test_space_variant_weights_torch_matches_numpy(problem, no_host_transfers):
    _, x_true, _, w = problem
    est = torch.from_numpy(x_true)
    with no_host_transfers():
        w_t = space_variant_weights(est)
        ones = space_variant_weights(est, p=1.0)
        g_t = space_variant_weights(est.abs(), kind="gradient", eta=0.1)
    assert isinstance(w_t, torch.Tensor) and w_t.dtype == torch.float64
    np.testing.assert_allclose(w_t.numpy(), w, rtol=1e-12)
    assert torch.equal(ones, torch.ones_like(est))
    np.testing.assert_allclose(
        g_t.numpy(), space_variant_weights(np.abs(x_true), kind="gradient", eta=0.1), rtol=1e-12
    )
    with pytest.raises(ValueError, match="estimate"):
        space_variant_weights(torch.full((4, 4), float("nan")))


def test_validation_on_tensors(problem):
    A, _, y, _ = problem
    y_t = torch.from_numpy(y)
    with pytest.raises(TypeError, match="y"):
        tv_reconstruction(A, y_t.to(torch.int64), 0.1)
    bad = y_t.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        tv_reconstruction(A, bad, 0.1)
    with pytest.raises(ValueError, match="weights must be nonnegative"):
        tv_reconstruction(A, y_t, 0.1, weights=-torch.ones(A.in_shape, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0 has shape"):
        tv_reconstruction(A, y_t, 0.1, x0=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="nonnegative y"):
        tv_reconstruction(A, -y_t.abs(), 0.1, data="kl")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(problem):
    A, x_true, y, w = problem
    y_c = torch.from_numpy(y).to("cuda", torch.float32)
    res = tv_reconstruction(A, y_c, 0.05, weights=w, tol=1e-4, max_iter=2000)
    assert res.x.device.type == "cuda" and res.dual[0].device.type == "cuda"
    ref = tv_reconstruction(A, y.astype(np.float32), 0.05, weights=w, tol=1e-4, max_iter=2000)
    err = np.linalg.norm(res.x.cpu().numpy() - ref.x) / np.linalg.norm(ref.x)
    assert err < 1e-3
