"""Learned proximal networks: a genuine prox, its regularizer, the fixed-step protocol, training, files."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tikhon.learned import (
    LearnedProximalNetwork,
    load_lpn,
    proximal_matching_loss,
    save_lpn,
    train_lpn,
)
from tikhon.operators import Identity
from tikhon.operators.prox import SquaredL2
from tikhon.solvers import admm, chambolle_pock, fista, ista
from helpers import randomise_icnn as _randomise

torch.set_num_threads(1)


def _dense(alpha=0.1, seed=0):
    return _randomise(LearnedProximalNetwork(3, hidden=6, layers=2, beta=3.0, alpha=alpha), seed)


def _conv(alpha=0.1, seed=1):
    return _randomise(LearnedProximalNetwork(1, hidden=4, layers=2, kind="conv", beta=3.0, alpha=alpha),
                      seed, scale=0.3)


def _laplace_sampler(n, gen):
    # float64 uniforms, |2u| kept below 1: a float32 torch.rand returns exactly 0 about once in
    # 2^24 draws, giving log1p(-1) = -inf (the NaN at step 1509 of seed 3 in review R3)
    u = torch.rand(n, 1, generator=gen, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-(2 * u.abs()).clamp(max=1 - 2.0**-52))).float()


# -- a genuine prox --------------------------------------------------------------
@pytest.mark.parametrize("make", [_dense, _conv], ids=["dense", "conv"])
def test_jacobian_of_the_prox_is_symmetric_psd(make):
    lpn = make(alpha=0.0)
    gen = torch.Generator().manual_seed(0)
    shape = (1, 3) if lpn.kind == "dense" else (1, 1, 4, 5)
    for _ in range(3):
        x = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lpn, x).reshape(x.numel(), x.numel())
        assert torch.allclose(J, J.T, atol=1e-12)
        assert float(torch.linalg.eigvalsh(0.5 * (J + J.T)).min()) >= -1e-10
        # and not trivially so: the map is not affine
        assert float(torch.linalg.matrix_norm(J)) > 1e-3


def test_psd_check_fails_for_a_non_convex_potential():
    """Negative control: the PSD assertion above would catch a network with negated hidden weights."""
    gen = torch.Generator().manual_seed(0)
    for make in (_dense, _conv):
        lpn = make(alpha=0.0)
        with torch.no_grad():
            for w in lpn.nonneg_parameters():
                w.neg_()
        shape = (1, 3) if lpn.kind == "dense" else (1, 1, 4, 5)
        low = []
        for _ in range(3):
            x = 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
            J = torch.autograd.functional.jacobian(lpn, x).reshape(x.numel(), x.numel())
            assert torch.allclose(J, J.T, atol=1e-12)  # a Hessian is symmetric, convex or not
            low.append(float(torch.linalg.eigvalsh(0.5 * (J + J.T)).min()))
        assert min(low) < -1e-2, (make.__name__, low)


def test_numpy_input_to_the_network_is_a_clear_type_error():
    lpn = _dense()
    with pytest.raises(TypeError, match=r"LearnedProximalNetwork: x must be a torch tensor, got ndarray "
                                        r"\(for NumPy arrays use as_prox\(\).prox\)"):
        lpn(np.ones((2, 3)))
    assert np.allclose(lpn.as_prox().prox(np.ones((2, 3)), 1.0),
                       lpn(torch.ones(2, 3, dtype=torch.float64)).numpy())


def test_forward_keeps_the_graph_only_when_needed():
    lpn = _dense()
    x = torch.randn(4, 3, dtype=torch.float64)
    assert not lpn(x).requires_grad  # eval mode, x without grad: a plain denoiser
    lpn.train()
    out = lpn(x)
    assert out.requires_grad  # training: differentiable in the parameters (double backward)
    out.sum().backward()
    assert lpn.first.weight.grad is not None
    lpn.eval()


# -- the regularizer -------------------------------------------------------------
@pytest.mark.parametrize("make", [_dense, _conv], ids=["dense", "conv"])
def test_prox_minimises_regularizer_plus_quadratic(make):
    """``f(y)`` beats random perturbations on ``R(x) + ||x - y||^2 / 2`` (R evaluated by inversion)."""
    lpn = make()
    rng = np.random.default_rng(0)
    shape = (4, 3) if lpn.kind == "dense" else (2, 1, 4, 4)
    y = rng.standard_normal(shape)
    with torch.no_grad():
        x_star = lpn(torch.from_numpy(y)).numpy()
    scales = [0.0] + [s for s in (1e-2, 1e-1, 1.0) for _ in range(3)]
    # one inversion for all the points: they are stacked along the sample axis
    X = np.concatenate([x_star + s * rng.standard_normal(shape) for s in scales])
    Y = np.concatenate([y] * len(scales))
    R, info = lpn.regularizer(X, tol=1e-9, max_iter=3000, full_output=True)
    assert info["status"] == "converged"
    J = (R + 0.5 * ((X - Y) ** 2).reshape(X.shape[0], -1).sum(1)).reshape(len(scales), shape[0])
    margins = J[1:] - J[0]
    assert margins.min() >= -1e-9
    assert margins.max() > 1e-3  # the perturbations are not all negligible


def test_regularizer_matches_a_brute_force_conjugate():
    """1-D: ``R(x) = max_y (x y - psi(y)) - x^2 / 2`` on a fine grid (independent of the inversion)."""
    lpn = _randomise(LearnedProximalNetwork(1, hidden=6, layers=2, beta=3.0, alpha=0.2), 3)
    grid = torch.linspace(-40, 40, 400001, dtype=torch.float64).reshape(-1, 1)
    with torch.no_grad():
        psi = lpn.potential(grid)
        x = lpn(torch.linspace(-3, 3, 7, dtype=torch.float64).reshape(-1, 1))
    ref = (x.reshape(-1, 1) * grid.reshape(1, -1) - psi.reshape(1, -1)).max(dim=1).values - 0.5 * x.reshape(-1) ** 2
    R, info = lpn.regularizer(x, tol=1e-10, max_iter=5000, full_output=True)
    assert info["status"] == "converged" and info["residual"] <= 1e-10
    assert torch.allclose(R, ref, atol=1e-6)
    # with alpha > 0 the inverse is unique: it is the grid's maximiser too
    assert torch.allclose(lpn(info["y"]), x, atol=1e-9)


def test_regularizer_reports_the_inversion_and_keeps_types():
    lpn = _dense()
    x32 = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    R, info = lpn.regularizer(x32, full_output=True)
    assert isinstance(R, np.ndarray) and R.shape == (5,) and R.dtype == np.float64
    assert set(info) == {"y", "residual", "residuals", "converged", "status", "iterations"}
    assert info["status"] == "converged" and info["residual"] <= 1e-5
    Rt = lpn.regularizer(torch.from_numpy(x32).double())
    assert torch.is_tensor(Rt) and np.allclose(Rt.numpy(), R, atol=1e-8)
    with pytest.warns(UserWarning, match="regularizer: the inversion stopped with status 'max_iter'"):
        R2, info = lpn.regularizer(x32, tol=1e-14, max_iter=2, full_output=True)
    assert info["status"] == "max_iter" and info["iterations"] == 2 and np.isposinf(R2).all()


def test_regularizer_bad_input():
    lpn = _dense()
    with pytest.raises(ValueError, match=r"LearnedProximalNetwork.regularizer: x must have shape \(batch, 3\)"):
        lpn.regularizer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="LearnedProximalNetwork.regularizer: x contains NaN"):
        lpn.regularizer(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="LearnedProximalNetwork.regularizer: tol"):
        lpn.regularizer(np.zeros((2, 3)), tol=-1.0)
    with pytest.raises(TypeError, match="LearnedProximalNetwork.regularizer: x must be a float32 or float64"):
        lpn.regularizer(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="LearnedProximalNetwork.as_prox: max_iter"):
        lpn.as_prox(max_iter=0)


# -- the prox as a Functional ----------------------------------------------------
def test_as_prox_is_a_fixed_step_functional_on_arrays_and_tensors():
    lpn = _conv()
    g = lpn.as_prox(tol=1e-9)
    assert g.fixed_step and not g.is_convex
    img = np.random.default_rng(0).standard_normal((6, 7))
    out = g.prox(img, 0.1)
    assert out.shape == img.shape and out.dtype == np.float64
    assert np.array_equal(out, g.prox(img, 10.0))  # tau is ignored
    with torch.no_grad():
        ref = lpn(torch.from_numpy(img).reshape(1, 1, 6, 7)).numpy().reshape(6, 7)
    assert np.allclose(out, ref, atol=1e-12)
    t = torch.from_numpy(img).float()
    out_t = g.prox(t)
    assert torch.is_tensor(out_t) and out_t.dtype == torch.float32 and out_t.shape == t.shape
    assert np.allclose(out_t.numpy(), ref, atol=1e-5)
    assert np.isclose(g(img), float(lpn.regularizer(img.reshape(1, 1, 6, 7), tol=1e-9).sum()))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        g.prox(np.zeros((2, 2, 3, 3)))


def test_as_prox_of_a_scalar_network_is_entrywise():
    lpn = _randomise(LearnedProximalNetwork(1, hidden=5, layers=1, beta=3.0), 2)
    g = lpn.as_prox()
    x = np.random.default_rng(0).standard_normal((3, 4))
    with torch.no_grad():
        ref = lpn(torch.from_numpy(x).reshape(-1, 1)).numpy().reshape(3, 4)
    assert np.allclose(g.prox(x), ref, atol=1e-12)


def test_as_prox_keeps_the_graph_of_a_tensor_input():
    lpn = _dense()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    out = lpn.as_prox().prox(x)
    assert out.requires_grad
    (g,) = torch.autograd.grad(out.sum(), x)
    J = torch.autograd.functional.jacobian(lpn, x.detach()[:1]).reshape(3, 3)
    assert torch.allclose(g[0], J.sum(0), atol=1e-10)


def test_solvers_that_vary_the_step_refuse_it():
    g = _dense().as_prox()
    f = SquaredL2(b=np.ones(3))
    for solver in (fista, ista):
        with pytest.raises(ValueError, match="has a fixed step"):
            solver(f, g, np.zeros(3))
    with pytest.raises(ValueError, match="has a fixed step"):
        chambolle_pock(Identity((3,)), f, g, np.zeros(3))
    with pytest.raises(ValueError, match="has a fixed step"):
        chambolle_pock(Identity((3,)), g, f, np.zeros(3))
    with pytest.raises(ValueError, match="fixed step"):
        2.0 * g


def test_admm_accepts_it_and_finds_the_prox_fixed_point():
    """With rho = 1 the PnP-ADMM fixed point of ``1/2 ||x - b||^2 + R(x)`` is ``x = f(b)``."""
    lpn = _dense()
    b = np.random.default_rng(2).standard_normal((4, 3))
    res = admm(SquaredL2(b=b), lpn.as_prox(), x0=np.zeros_like(b), rho=1.0, tol=1e-9, max_iter=2000,
               record_objective=False)
    assert res.converged
    with torch.no_grad():
        ref = lpn(torch.from_numpy(b)).numpy()
    assert np.abs(res.x - ref).max() <= 1e-7


def test_regularizer_outside_the_range_warns_and_is_inf():
    """alpha = 0: f has a bounded range; an x outside it has no inverse, R = +inf with a warning."""
    from tikhon.solvers import ConvergenceWarning

    lpn = LearnedProximalNetwork(2, hidden=8, layers=2, seed=0).double().eval()
    inside = lpn(torch.zeros(1, 2, dtype=torch.float64)).numpy()
    R, info = lpn.regularizer(inside, full_output=True)  # a point of the range: no warning
    assert np.isfinite(R).all() and info["converged"].all() and info["residuals"].shape == (1,)
    far = np.array([[1e3, 1e3]])
    with pytest.warns(ConvergenceWarning, match=r"regularizer: the inversion stopped .* samples \[0\] "
                                                r"\(1 of 1\).* their R is \+inf"):
        R, info = lpn.regularizer(far, max_iter=200, full_output=True)
    assert R.shape == (1,) and np.isposinf(R).all() and not info["converged"].any()
    assert info["residuals"][0] > 1e-5 and info["status"] == "max_iter"
    with pytest.warns(ConvergenceWarning):
        assert lpn.as_prox(max_iter=200)(far) == np.inf


def test_regularizer_on_a_tensor_stays_on_its_device_and_keeps_per_sample_residuals():
    lpn = _dense()
    x = torch.randn(3, 3, dtype=torch.float64)
    R, info = lpn.regularizer(x, full_output=True)
    assert R.device == x.device and info["residuals"].shape == (3,) and bool(info["converged"].all())
    assert float(info["residuals"].max()) <= 1e-5


def test_admm_records_the_objective_of_the_problem_it_solves():
    """With rho != 1 a PnP-ADMM fixed point is stationary for F + rho R; that is what is recorded."""
    lpn = _dense()
    b = np.random.default_rng(2).standard_normal((4, 3))
    for rho in (1.0, 2.0):
        res = admm(SquaredL2(b=b), lpn.as_prox(tol=1e-10), x0=np.zeros_like(b), rho=rho, tol=1e-10,
                   max_iter=3000)
        assert res.converged
        R, info = lpn.regularizer(res.x, tol=1e-10, full_output=True)
        # the gradient of R at x is f^{-1}(x) - x (f is its prox): stationarity of F + rho R
        assert np.abs((res.x - b) + rho * (info["y"] - res.x)).max() <= 1e-6
        want = 0.5 * np.sum((res.x - b) ** 2) + rho * R.sum()
        assert res.history["objective"][-1] == pytest.approx(want, rel=1e-6, abs=1e-8)


# -- proximal matching and training ---------------------------------------------
def test_proximal_matching_loss_formula():
    gen = torch.Generator().manual_seed(0)
    out, tgt = torch.randn(5, 2, 3, generator=gen), torch.randn(5, 2, 3, generator=gen)
    d2 = ((out - tgt) ** 2).reshape(5, -1).sum(1)
    for gamma in (0.3, 2.0):
        ref = (1 - torch.exp(-d2 / gamma**2)).mean()
        assert torch.allclose(proximal_matching_loss(out, tgt, gamma), ref)
    assert float(proximal_matching_loss(tgt, tgt, 0.1)) == 0.0
    with pytest.raises(ValueError, match="proximal_matching_loss: gamma"):
        proximal_matching_loss(out, tgt, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        proximal_matching_loss(out, tgt[:, :1], 1.0)
    with pytest.raises(TypeError, match="output must be a torch tensor"):
        proximal_matching_loss(out.numpy(), tgt, 1.0)


def test_train_lpn_is_seeded_and_keeps_weights_nonnegative(tmp_path):
    def run(seed):
        lpn = LearnedProximalNetwork(1, hidden=8, layers=2, seed=0)
        hist = train_lpn(lpn, _laplace_sampler, sigma=1.0, n_steps=20, pretrain_steps=10,
                         gamma_schedule=[0.5, 0.2], batch_size=32, lr=1e-3, seed=seed, progress=False,
                         checkpoint=tmp_path / f"ckpt{seed}.safetensors", checkpoint_every=7)
        return lpn, hist

    a, ha = run(0)
    b, _ = run(0)
    c, _ = run(1)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(a.first.weight, c.first.weight)
    for w in a.nonneg_parameters():
        assert bool((w >= 0).all())
    assert ha["steps"] == 30 and ha["status"] == "completed" and len(ha["loss"]) == 30
    assert [(s["loss"], s["steps"], s["gamma"]) for s in ha["stages"]] == [
        ("l1", 10, None), ("proximal_matching", 10, 0.5), ("proximal_matching", 10, 0.2)]
    loaded = load_lpn(tmp_path / "ckpt0.safetensors")
    assert loaded.file_metadata["seed"] == 0 and loaded.file_metadata["extra"]["meta"]["step"] == 30
    for p, q in zip(a.parameters(), loaded.parameters()):
        assert torch.equal(p, q)
    assert not (tmp_path / "ckpt0.safetensors.partial").exists()


def test_train_lpn_on_a_data_tensor_with_mse_reduces_the_loss():
    gen = torch.Generator().manual_seed(0)
    data = _laplace_sampler(512, gen)
    lpn = LearnedProximalNetwork(1, hidden=8, layers=2)
    hist = train_lpn(lpn, data, sigma=(0.5, 1.0), loss="mse", n_steps=60, batch_size=64, lr=[1e-2, 1e-3],
                     progress=True)
    assert [s["lr"] for s in hist["stages"]] == [1e-2, 1e-3]
    assert np.mean(hist["loss"][-10:]) < np.mean(hist["loss"][:10])


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"loss": "huber"}, ValueError, "loss"),
        ({"loss": "mse", "pretrain_steps": 5}, ValueError, "pretrain_steps"),
        ({"loss": "mse", "gamma_schedule": [0.1]}, ValueError, "gamma_schedule"),
        ({"gamma_schedule": [0.5, 0.1], "lr": [1e-3, 1e-4, 1e-5]}, ValueError, "lr has 3 values"),
        ({"gamma_schedule": [0.5, -0.1]}, ValueError, r"gamma_schedule\[1\]"),
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"sigma": (1.0, 0.5)}, ValueError, r"sigma = \(lo, hi\) needs lo <= hi"),
        ({"n_steps": 0}, ValueError, "n_steps"),
        ({"batch_size": 1.5}, TypeError, "batch_size"),
    ],
)
def test_train_lpn_bad_options(kwargs, err, match):
    lpn = LearnedProximalNetwork(1, hidden=4, layers=1)
    options = {"sigma": 1.0, "n_steps": 4, "progress": False, **kwargs}
    with pytest.raises(err, match=f"train_lpn: {match}"):
        train_lpn(lpn, _laplace_sampler, **options)


def test_train_lpn_stops_before_stepping_on_a_nonfinite_loss(tmp_path, monkeypatch):
    """A non-finite loss: no optimizer step, the model keeps its last finite weights and the last
    good checkpoint is not overwritten (review R3, F3)."""
    import tikhon.learned.proximal_networks as lpn_module

    real, calls = lpn_module._loss_value, []

    def loss_nan_at_step_11(kind, out, target, gamma):
        calls.append(1)
        value = real(kind, out, target, gamma)
        return value * float("nan") if len(calls) == 11 else value

    monkeypatch.setattr(lpn_module, "_loss_value", loss_nan_at_step_11)
    lpn = LearnedProximalNetwork(1, hidden=8, layers=2, seed=0)
    path = tmp_path / "ckpt.safetensors"
    with pytest.warns(RuntimeWarning, match="train_lpn: the loss became nan at step 11; training stopped "
                                            "before that step"):
        hist = train_lpn(lpn, _laplace_sampler, sigma=1.0, n_steps=20, pretrain_steps=20, batch_size=16, lr=1e-3,
                         seed=0, progress=False, checkpoint=path, checkpoint_every=5)
    assert hist["status"] == "nonfinite" and hist["steps"] == 11 and not math.isfinite(hist["loss"][-1])
    assert all(bool(torch.isfinite(p).all()) for p in lpn.parameters())
    back = load_lpn(path)
    assert back.file_metadata["extra"]["meta"]["step"] == 10
    # the in-memory model is the one after step 10: the step-11 update was not taken
    for (k, v), w in zip(back.state_dict().items(), lpn.state_dict().values()):
        assert torch.equal(v, w), k


def test_train_lpn_refuses_a_sampler_that_returns_nonfinite_samples():
    def sampler(n, gen):
        return torch.full((n, 1), -math.inf)

    with pytest.raises(ValueError, match="train_lpn: the sampler returned non-finite samples"):
        train_lpn(LearnedProximalNetwork(1, hidden=4, layers=1), sampler, sigma=1.0, n_steps=2,
                  progress=False)


def test_train_lpn_bad_model_and_data():
    with pytest.raises(TypeError, match="train_lpn: lpn must be a LearnedProximalNetwork"):
        train_lpn(torch.nn.Linear(1, 1), _laplace_sampler, sigma=1.0)
    lpn = LearnedProximalNetwork(2, hidden=4, layers=1)
    with pytest.raises(ValueError, match=r"train_lpn: x must have shape \(batch, 2\)"):
        train_lpn(lpn, _laplace_sampler, sigma=1.0, n_steps=2, progress=False)
    with pytest.raises(ValueError, match="train_lpn: sampler_or_data contains NaN"):
        train_lpn(lpn, torch.full((4, 2), float("nan")), sigma=1.0, n_steps=2, progress=False)


# -- files -----------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    lpn = _conv()
    path = tmp_path / "lpn.safetensors"
    save_lpn(lpn, path, seed=5, meta={"data": "unit test"})
    back = load_lpn(path)
    assert back.config() == lpn.config() and back.first.weight.dtype == torch.float64
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    assert torch.equal(back(x), lpn(x))
    assert back.file_metadata["seed"] == 5 and back.file_metadata["extra"]["meta"] == {"data": "unit test"}
    assert back.file_metadata["format"] == "tikhon-lpn/1"


def test_load_refuses_bad_configs_and_dtypes_with_its_prefix(tmp_path):
    import json

    from safetensors.torch import save_file

    lpn = _dense()
    path = tmp_path / "lpn.safetensors"
    save_lpn(lpn, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    tensors = dict(lpn.state_dict())
    bad = json.loads(meta["config"])
    bad["beta"] = -1.0
    save_file(tensors, str(tmp_path / "beta.safetensors"), metadata={**meta, "config": json.dumps(bad)})
    with pytest.raises(ValueError, match="load_lpn: .* has an unusable config .*beta"):
        load_lpn(tmp_path / "beta.safetensors")
    ints = {k: v.to(torch.int64) for k, v in tensors.items()}
    save_file(ints, str(tmp_path / "int.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="load_lpn: .* one floating dtype"):
        load_lpn(tmp_path / "int.safetensors")


def test_saved_files_respect_the_umask(tmp_path):
    """Model files get the usual mode (0644 under umask 022), not safetensors' private 0600."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        save_lpn(_dense(), tmp_path / "a.safetensors")
        lpn = LearnedProximalNetwork(1, hidden=4, layers=1)
        train_lpn(lpn, _laplace_sampler, sigma=1.0, n_steps=2, pretrain_steps=0, progress=False,
                  checkpoint=tmp_path / "ckpt.safetensors", checkpoint_every=1)
    finally:
        os.umask(old)
    for name in ("a.safetensors", "ckpt.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


def test_load_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "tikhon-unfolded/1"})
    with pytest.raises(ValueError, match="load_lpn: .* holds format 'tikhon-unfolded/1'"):
        load_lpn(other)
    with pytest.raises(FileNotFoundError, match="load_lpn"):
        load_lpn(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="save_lpn: lpn must be a LearnedProximalNetwork"):
        save_lpn(torch.nn.Linear(1, 1), tmp_path / "x.safetensors")


# -- the Laplacian experiment (Fang, Buchanan and Sulam, Sec. 5.1) ---------------
# the test's budget (the paper: 20000 l1 + 30000 proximal-matching steps of 2000 samples);
# the learning rate decays with gamma: at a constant 1e-3 the small-gamma stages drift
# (measured: max error 0.56 to soft thresholding, the tails shrunk towards 0)
LAPLACE_PRETRAIN, LAPLACE_STEPS, LAPLACE_BATCH = 800, 1600, 500
LAPLACE_LR = [1e-3, 3e-4, 1e-4, 3e-5]
def _laplacian_references(y):
    """Soft thresholding (the MAP prox), the MMSE denoiser and the proximal-matching optimum at 0.1."""
    t = np.linspace(-15.0, 15.0, 6001)
    logw = -np.abs(t)[None, :] - (y[:, None] - t[None, :]) ** 2 / 2
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mmse = w @ t
    cand = np.linspace(-4.0, 4.0, 2001)
    pm = cand[np.argmax(w @ np.exp(-(cand[None, :] - t[:, None]) ** 2 / 0.1**2), axis=1)]
    return np.sign(y) * np.maximum(np.abs(y) - 1.0, 0.0), mmse, pm


@pytest.fixture(scope="module")
def laplacian_errors():
    """Max abs errors over [-3, 3] of the paper's 1-D LPN after the test's short training budget."""
    lpn = LearnedProximalNetwork(1, hidden=50, layers=4, beta=10.0, seed=0)
    train_lpn(lpn, _laplace_sampler, sigma=1.0, pretrain_steps=LAPLACE_PRETRAIN, n_steps=LAPLACE_STEPS,
              gamma_schedule=[0.5, 0.3, 0.2, 0.1], lr=LAPLACE_LR, pretrain_lr=1e-3, batch_size=LAPLACE_BATCH,
              seed=0, progress=False)
    y = np.linspace(-3.0, 3.0, 601)
    with torch.no_grad():
        f = lpn(torch.from_numpy(y).float().reshape(-1, 1)).double().numpy().ravel()
    # f'(y) = psi''(y) by autograd (samples are independent: the gradient of the sum)
    yt = torch.linspace(-6.0, 6.0, 1201).reshape(-1, 1).requires_grad_(True)
    (slope,) = torch.autograd.grad(lpn.gradient(yt, create_graph=True).sum(), yt)
    soft, mmse, pm = _laplacian_references(y)
    return {"soft": np.abs(f - soft).max(), "mmse": np.abs(f - mmse).max(), "pm": np.abs(f - pm).max(),
            "mmse_to_soft": np.abs(mmse - soft).max(), "pm_to_soft": np.abs(pm - soft).max(),
            "min_slope": float(slope.min())}


def test_trained_laplacian_prox_is_non_decreasing(laplacian_errors):
    """The trained 1-D network is a prox: f' = psi'' >= 0 on a grid over [-6, 6] (measured min 0.068)."""
    assert laplacian_errors["min_slope"] >= 0.0


def test_laplacian_lpn_approaches_soft_thresholding(laplacian_errors):
    """Proximal matching moves the network from the l1 and MSE targets towards the MAP prox.

    Measured with this exact configuration over 10 (init, train) seed pairs (0,0) (1,0) (2,2)
    (0,1) (3,3) (4,4) (5,5) (6,6) (7,7) (8,8): max abs error over [-3, 3] to soft thresholding
    0.249 0.266 0.222 0.254 0.349 0.240 0.219 0.316 0.195 0.255 (mean 0.257, worst 0.349 for
    seed 3, at the tail y = -3; at y = +-1, the threshold, otherwise), always below the
    distance to the MMSE denoiser (0.34-0.42). The test runs seed (0, 0): 0.249 to soft
    thresholding, 0.372 to the MMSE denoiser, 0.140 to the exact proximal-matching optimum at
    the final gamma = 0.1. The MMSE denoiser is 0.503 from soft thresholding and that optimum
    0.11 (so no network trained to gamma = 0.1 gets within 0.05). The bar, 0.36, is the worst
    seed's 0.349 rounded up: any seed measured passes, not only the one run here.
    """
    e = laplacian_errors
    # guards the quadrature helper (its numbers checked by a finer independent quadrature in R3)
    assert abs(e["mmse_to_soft"] - 0.503) < 0.005 and abs(e["pm_to_soft"] - 0.110) < 0.01
    assert e["soft"] <= 0.36
    assert e["soft"] < e["mmse"]  # nearer the MAP prox than the MMSE denoiser


# strict: if training ever reaches 0.05 this XPASSes and fails the suite, on purpose (update it)
@pytest.mark.xfail(strict=True, reason=(
    "issue #15's bar (0.05 of soft thresholding over [-3, 3]) is out of reach: the network "
    "measured 0.195-0.349 over 10 seeds (0.249 for the test's seed) after the test's budget, and "
    "the exact minimiser of the proximal-matching risk at the paper's final gamma = 0.1 is itself "
    "0.110 from soft thresholding at |y| = 1 (0.065 at gamma = 0.05), computed by quadrature"))
def test_laplacian_lpn_within_005_of_soft_thresholding(laplacian_errors):
    assert laplacian_errors["soft"] <= 0.05
