"""Unfolded ISTA / IHT / Chambolle-Pock: exactness untrained, gradients, training, storage, input checks.

References: the plain solvers run on NumPy one signal at a time (an untrained
network must equal them), finite differences (gradcheck), and the objective
of the plain iterations (training must beat it).
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tikhon.learned import (
    Unfolded,
    UnfoldedChambollePock,
    UnfoldedIHT,
    UnfoldedISTA,
    load_unfolded,
    save_unfolded,
    train_unfolded,
)
from tikhon.learned.unfolded_training import unfolded_loss
from tikhon.operators import Convolution, MatrixOperator, Radon
from tikhon.operators.prox import L0, L1, SquaredL2
from tikhon.solvers.first_order import IHT, ProximalGradient
from tikhon.solvers.tomography import tv_problem
from torch.func import functional_call

torch.set_num_threads(1)


def _problem(m=12, n=24, B=5, seed=0, density=0.2, noise=0.02):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    M /= np.linalg.norm(M, axis=0)
    X = rng.standard_normal((B, n)) * (rng.random((B, n)) < density)
    Y = X @ M.T + noise * rng.standard_normal((B, m))
    return MatrixOperator(M), M, X, Y


def _plain(solver_of, Y, n, T, **step_kw):
    """T plain solver steps on NumPy, one signal at a time."""
    out = []
    for y in Y:
        solver = solver_of(y)
        state = solver.init(np.zeros(n))
        for _ in range(T):
            state = solver.step(state, **step_kw)
        out.append(state.x)
    return np.stack(out)


# -- untrained = plain iterations -----------------------------------------------------
@pytest.mark.parametrize("accelerate", [False, True])
@pytest.mark.parametrize("lista", [False, "tied", "untied"])
def test_untrained_ista_equals_plain_iterations(accelerate, lista):
    A, M, _X, Y = _problem()
    lam, T = 0.05, 10
    net = UnfoldedISTA(A, lam, T, lista=lista, accelerate=accelerate)
    out = net(torch.from_numpy(Y)).detach().numpy()
    L = A.norm() ** 2
    ref = _plain(lambda y: ProximalGradient(SquaredL2(b=y, op=A), lam * L1(), step=1.0 / L,
                                            accelerate=accelerate, restart=None), Y, M.shape[1], T)
    assert np.abs(out - ref).max() <= 1e-12
    assert (ref == 0).any() and (ref != 0).any()


def test_untrained_ista_on_a_non_matrix_operator():
    """Any operator: its matrix is held once; a single (unbatched) signal works too."""
    rng = np.random.default_rng(3)
    A = Convolution((20,), rng.standard_normal(5))
    y = A(rng.standard_normal(20) * (rng.random(20) < 0.3)) + 0.01 * rng.standard_normal(A.out_shape)
    net = UnfoldedISTA(A, 0.05, 7)
    out = net(torch.from_numpy(y)).detach().numpy()
    L = A.norm() ** 2
    ref = _plain(lambda b: ProximalGradient(SquaredL2(b=b, op=A), 0.05 * L1(), step=1.0 / L), y[None], 20, 7)[0]
    assert out.shape == (20,)
    assert np.abs(out - ref).max() <= 1e-12


def test_untrained_iht_equals_plain_iterations():
    A, M, _X, Y = _problem(seed=1)
    T, L = 10, A.norm() ** 2
    lam = 0.02
    out = UnfoldedIHT(A, lam, T)(torch.from_numpy(Y)).detach().numpy()
    ref = _plain(lambda y: ProximalGradient(SquaredL2(b=y, op=A), lam * L0(), step=1.0 / L), Y, M.shape[1], T)
    assert np.abs(out - ref).max() <= 1e-12
    # the straight-through threshold changes gradients only, never values
    out_ste = UnfoldedIHT(A, lam, T, learn=("step", "threshold"))(torch.from_numpy(Y)).detach().numpy()
    assert np.abs(out_ste - ref).max() <= 1e-12
    k = 4
    out_k = UnfoldedIHT(A, k, T)(torch.from_numpy(Y)).detach().numpy()
    ref_k = _plain(lambda y: IHT(SquaredL2(b=y, op=A), k, step=1.0 / L), Y, M.shape[1], T)
    assert np.abs(out_k - ref_k).max() <= 1e-12
    assert ((out_k != 0).sum(axis=1) == k).all()


def test_untrained_chambolle_pock_equals_plain_iterations():
    n = 10
    A = Radon((n, n), np.linspace(0, np.pi, 6, endpoint=False))
    rng = np.random.default_rng(2)
    truth = np.zeros((n, n))
    truth[3:7, 2:6] = 1.0
    Y = np.stack([A(truth * s) + 0.02 * rng.standard_normal(A.out_shape) for s in (1.0, 0.5)])
    lam, T = 0.1, 8
    net = UnfoldedChambollePock(A, lam, T, learn=("tau", "sigma", "lam"))
    out = net(torch.from_numpy(Y)).detach().numpy()
    for y, o in zip(Y, out):
        solver, st = tv_problem(A, y, lam)
        state = solver.init(np.zeros((n, n)), tau=st["tau"], sigma=list(st["sigma"]))
        for _ in range(T):
            state = solver.step(state)
        assert np.abs(o - state.x).max() <= 1e-12
    _, its = net(torch.from_numpy(Y[0]), return_all=True)
    assert len(its) == T and its[-1].shape == (n, n)


def test_generic_unfolded_runs_the_given_step():
    b = torch.tensor([3.0, -0.2, 1.0, 0.05], dtype=torch.float64)
    solver = ProximalGradient(SquaredL2(b=b), L1(), step=0.5)
    net = Unfolded(solver.init, solver.step, 4, params={"step": 0.5, "lam": 0.3})
    x, its = net(torch.zeros(4, dtype=torch.float64), return_all=True)
    s2 = ProximalGradient(SquaredL2(b=b.numpy()), 0.3 * L1(), step=0.5)
    state = s2.init(np.zeros(4))
    for k in range(4):
        state = s2.step(state)
        assert np.abs(its[k].detach().numpy() - state.x).max() <= 1e-15
    assert torch.equal(x, its[-1])
    assert net.params["step"].shape == (4,)
    seen = []
    net(torch.zeros(4, dtype=torch.float64), callback=lambda t, xt: seen.append((t, xt)))
    assert [t for t, _ in seen] == [0, 1, 2, 3]
    assert all(torch.equal(a, b) for (_, a), b in zip(seen, its))


# -- gradients: autograd against finite differences -----------------------------------
def _gradcheck_params(net, names, y, x_true, loss):
    base = dict(net.named_parameters())  # "params.step", ..., "W"
    keys = [k for k in base if k.split(".")[-1] in names]

    def f(*values):
        params = dict(base)
        params.update(zip(keys, values))
        out = functional_call(net, params, (y,))
        return unfolded_loss(net, out, y, x_true, loss)

    inputs = tuple(base[k].detach().clone().requires_grad_(True) for k in keys)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("loss", ["supervised", "unsupervised"])
def test_gradcheck_ista_parameters(loss):
    A, _M, X, Y = _problem(m=6, n=10, B=3, seed=4, density=0.3)
    net = UnfoldedISTA(A, 0.05, 4, lista="untied")
    with torch.no_grad():  # away from the untrained point: per-layer values differ
        net.params["step"].add_(torch.tensor([0.0, 0.1, -0.1, 0.2], dtype=torch.float64))
    _gradcheck_params(net, ("step", "threshold", "W"), torch.from_numpy(Y), torch.from_numpy(X), loss)


@pytest.mark.parametrize("k_or_lam", [3, 0.02])
def test_gradcheck_iht_steps(k_or_lam):
    """The hard threshold's a.e. derivative (the kept mask) is exact: finite differences agree."""
    A, _M, X, Y = _problem(m=6, n=10, B=3, seed=5, density=0.3)
    net = UnfoldedIHT(A, k_or_lam, 4)
    for loss in ("supervised", "unsupervised"):
        _gradcheck_params(net, ("step",), torch.from_numpy(Y), torch.from_numpy(X), loss)


def test_iht_threshold_straight_through_gradient():
    """d loss / d theta is the smoothed mask's (finite differences would give 0)."""
    A, M, _X, Y = _problem(m=6, n=10, B=3, seed=6, density=0.3)
    net = UnfoldedIHT(A, 0.02, 1, learn=("threshold",), threshold_width=0.1)
    y = torch.from_numpy(Y)
    out = net(y)
    (g,) = torch.autograd.grad(out.sum(), net.params["threshold"])
    # one layer from 0: v = step A^T y, x = v 1[v^2 > 2 theta]; the surrogate
    # gives d/dtheta sum v sigmoid((v^2 - 2 theta)/(2 w theta)) = sum -v s (1 - s) / (w theta)
    theta = float(net.layer(0)["threshold"].detach())
    assert theta == net.lam * net.step0
    v = net.step0 * Y @ M
    s = 1.0 / (1.0 + np.exp(-(v * v - 2 * theta) / (2 * 0.1 * theta)))
    # the parameter is the log-factor s_t: d/ds_t = theta d/dtheta
    expected = theta * np.sum(-v * s * (1 - s) / (0.1 * theta))
    assert float(g[0]) == pytest.approx(expected, rel=1e-10)
    assert np.abs(out.detach().numpy() - v * (v * v > 2 * theta)).max() <= 1e-15


def test_gradcheck_chambolle_pock_parameters():
    n = 6
    A = Radon((n, n), np.linspace(0, np.pi, 4, endpoint=False))
    rng = np.random.default_rng(7)
    truth = np.zeros((n, n))
    truth[1:4, 2:5] = 1.0
    y = torch.from_numpy(A(truth) + 0.05 * rng.standard_normal(A.out_shape))[None]
    net = UnfoldedChambollePock(A, 0.2, 3, learn=("tau", "sigma", "lam"))
    for loss in ("supervised", "unsupervised"):
        _gradcheck_params(net, ("tau", "sigma_data", "sigma_tv", "lam"), y,
                          torch.from_numpy(truth)[None], loss)


# -- training ------------------------------------------------------------------------
def _cs_data(n_samples, seed, m=30, n=60, density=0.1, snr_db=30.0, M=None):
    rng = np.random.default_rng(seed)
    if M is None:
        M = rng.standard_normal((m, n))
        M /= np.linalg.norm(M, axis=0)
    X = rng.standard_normal((n_samples, M.shape[1])) * (rng.random((n_samples, M.shape[1])) < density)
    clean = X @ M.T
    sigma = np.sqrt(np.mean(clean**2) / 10 ** (snr_db / 10))
    Y = clean + sigma * rng.standard_normal(clean.shape)
    return M, torch.from_numpy(X), torch.from_numpy(Y)


def test_unsupervised_ista_beats_plain_ista_on_the_objective():
    M, _X, Y = _cs_data(400, seed=0)
    _, _Xt, Yt = _cs_data(200, seed=1, M=M)
    A = MatrixOperator(M)
    net = UnfoldedISTA(A, 0.1, 10)
    with torch.no_grad():
        plain = float(net.objective(net(Yt), Yt).mean())
    hist = train_unfolded(net, Y, "unsupervised", epochs=3, lr=1e-2, batch_size=100, rng=0,
                          progress=False)
    with torch.no_grad():
        trained = float(net.objective(net(Yt), Yt).mean())
    assert hist["stopped"] == "completed" and len(hist["stage_loss"]) == 10
    assert trained < 0.97 * plain, (trained, plain)


def test_training_is_deterministic_and_honours_the_time_limit():
    M, X, Y = _cs_data(100, seed=2, m=10, n=20)
    A = MatrixOperator(M)
    runs = []
    for progress in (False, True):
        net = UnfoldedISTA(A, 0.1, 3)
        train_unfolded(net, (Y, X), "supervised", epochs=2, batch_size=25, rng=5, progress=progress)
        runs.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    assert torch.equal(runs[0], runs[1])
    net = UnfoldedISTA(A, 0.1, 3)
    before = net.params["step"].detach().clone()
    hist = train_unfolded(net, (Y, X), incremental=False, epochs=1000, batch_size=25,
                          rng=0, progress=False, time_limit=0.05)
    assert hist["stopped"] == "time_limit" and hist["stages"] == [3]
    assert not torch.equal(before, net.params["step"].detach())


# -- storage ------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    M, X, Y = _cs_data(60, seed=3, m=10, n=20)
    A = MatrixOperator(M)
    net = UnfoldedIHT(A, 0.05, 4, learn=("step", "threshold"))
    train_unfolded(net, (Y, X), epochs=1, batch_size=20, rng=11, progress=False)
    path = tmp_path / "iht.safetensors"
    save_unfolded(net, path, meta={"note": "test"})
    fresh = UnfoldedIHT(A, 0.05, 4, learn=("step", "threshold"))
    assert not torch.equal(fresh(Y), net(Y))
    load_unfolded(path, fresh)
    assert torch.equal(fresh(Y), net(Y))
    tensors, meta = load_unfolded(path)
    assert meta["architecture"] == "UnfoldedIHT" and meta["n_layers"] == 4 and meta["seed"] == 11
    assert meta["config"]["lam"] == 0.05 and meta["meta"] == {"note": "test"}
    assert set(tensors) == {"params.step", "params.threshold"}
    # plain safetensors: an 8-byte header length, then JSON, then raw tensor bytes
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "tikhon-unfolded/2"
    with pytest.raises(ValueError, match="n_layers|layers"):
        load_unfolded(path, UnfoldedIHT(A, 0.05, 3, learn=("step", "threshold")))
    with pytest.raises(ValueError, match="UnfoldedISTA"):
        load_unfolded(path, UnfoldedISTA(A, 0.05, 4))
    with pytest.raises(ValueError, match="parameters"):
        load_unfolded(path, UnfoldedIHT(A, 0.05, 4))
    with pytest.raises(FileNotFoundError):
        load_unfolded(tmp_path / "missing.safetensors")


# -- bad input -----------------------------------------------------------------------
def test_bad_inputs():
    A, M, X, Y = _problem()
    y = torch.from_numpy(Y)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="n_layers"):
            UnfoldedISTA(A, 0.1, bad)
    for bad in (2.5, True, "3"):
        with pytest.raises(TypeError, match="n_layers"):
            UnfoldedISTA(A, 0.1, bad)
    with pytest.raises(ValueError, match="lam"):
        UnfoldedISTA(A, 0.0, 3)
    with pytest.raises(ValueError, match="learn"):
        UnfoldedISTA(A, 0.1, 3, learn=("step", "momentum"))
    with pytest.raises(ValueError, match="lista"):
        UnfoldedISTA(A, 0.1, 3, lista="shared")
    with pytest.raises(TypeError, match="A must be"):
        UnfoldedISTA(M, 0.1, 3)
    with pytest.raises(ValueError, match="threshold"):
        UnfoldedIHT(A, 3, 3, learn=("threshold",))
    with pytest.raises(ValueError, match="k_or_lam"):
        UnfoldedIHT(A, 0, 3)
    with pytest.raises(TypeError, match="k_or_lam"):
        UnfoldedIHT(A, "3", 3)
    net = UnfoldedISTA(A, 0.1, 3)
    with pytest.raises(ValueError, match="shape"):
        net(y[:, :-1])
    with pytest.raises(TypeError, match="tensor"):
        net(Y)
    nan = y.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        net(nan)
    with pytest.raises(ValueError, match="exceeds"):
        net(y, n_layers=4)
    with pytest.raises(ValueError, match="loss"):
        train_unfolded(net, (y, torch.from_numpy(X)), loss="mse", progress=False)
    with pytest.raises(ValueError, match="x_true"):
        train_unfolded(net, y, loss="supervised", progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_unfolded(net, y, loss="unsupervised", epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_unfolded(net, y, loss="unsupervised", lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="samples"):
        train_unfolded(net, (y, torch.from_numpy(X[:2])), progress=False)
    with pytest.raises(TypeError, match="Unfolded"):
        train_unfolded(torch.nn.Linear(2, 2), y, progress=False)
    with pytest.raises(ValueError, match="objective"):
        Unfolded(lambda x: x, lambda s: s, 2).objective(y)
    with pytest.raises(TypeError, match="step"):
        Unfolded(lambda x: x, None, 2)
    with pytest.raises(ValueError, match="finite"):
        Unfolded(lambda x: x, lambda s: s, 2, params={"step": float("inf")})


def test_single_nonfinite_y_is_refused_by_the_network():
    # one unbatched signal takes the same finiteness check as a batch (not SquaredL2's)
    A, _M, _X, Y = _problem()
    R = Radon((6, 6), np.linspace(0, np.pi, 4, endpoint=False))
    cases = [(UnfoldedISTA(A, 0.1, 2), torch.from_numpy(Y[0])),
             (UnfoldedIHT(A, 3, 2), torch.from_numpy(Y[0])),
             (UnfoldedChambollePock(R, 0.1, 2), torch.zeros(R.out_shape, dtype=torch.float64))]
    for net, y in cases:
        for bad in (float("nan"), float("inf")):
            yb = y.clone()
            yb.view(-1)[0] = bad
            with pytest.raises(ValueError, match=f"{type(net).__name__}: y must be finite"):
                net(yb)
            with pytest.raises(ValueError, match=f"{type(net).__name__}: y must be finite"):
                net(yb.unsqueeze(0))


def test_time_limited_epoch_loss_averages_the_samples_seen():
    M, X, Y = _cs_data(100, seed=2, m=10, n=20)
    net = UnfoldedISTA(MatrixOperator(M), 0.1, 3)
    # the limit is spent after the first batch: the partial epoch holds 10 of 100 samples
    hist = train_unfolded(net, (Y, X), incremental=False, epochs=1, batch_size=10, rng=0,
                          progress=False, time_limit=1e-9)
    assert hist["stopped"] == "time_limit" and len(hist["loss"]) == 1
    assert hist["stage_loss"][0] == pytest.approx(hist["loss"][0], rel=1e-12)


def test_load_refuses_another_config_or_operator_scale(tmp_path):
    M, _X, Y = _cs_data(20, seed=4, m=10, n=20)
    A = MatrixOperator(M)
    net = UnfoldedISTA(A, 0.05, 3, learn=("step",))
    with torch.no_grad():
        net.params["step"].add_(0.1)
    path = tmp_path / "ista.safetensors"
    save_unfolded(net, path)
    _, meta = load_unfolded(path)
    assert meta["log_base"] == {"step": pytest.approx(1.0 / float(A.norm()) ** 2, rel=1e-15)}
    for other, key in [(UnfoldedISTA(A, 0.5, 3, learn=("step",)), "lam"),
                       (UnfoldedISTA(A, 0.05, 3, learn=("step",), accelerate=True), "accelerate")]:
        with pytest.raises(ValueError, match=rf"differing config keys \['{key}'\]"):
            load_unfolded(path, other)
    # same config, rescaled A: ||A|| (so the steps' base 1/||A||^2) changes
    with pytest.raises(ValueError, match="bases.*step"):
        load_unfolded(path, UnfoldedISTA(MatrixOperator(2.0 * M), 0.05, 3, learn=("step",)))
    # the power iteration is seeded: a rebuilt equal operator gives the same base
    fresh = UnfoldedISTA(MatrixOperator(M.copy()), 0.05, 3, learn=("step",))
    load_unfolded(path, fresh)
    assert torch.equal(fresh(Y), net(Y))
    iht = tmp_path / "iht.safetensors"
    save_unfolded(UnfoldedIHT(A, 3, 3), iht)
    with pytest.raises(ValueError, match=r"differing config keys \['sparsity'\]"):
        load_unfolded(iht, UnfoldedIHT(A, 5, 3))
    R = Radon((6, 6), np.linspace(0, np.pi, 4, endpoint=False))
    cp = tmp_path / "cp.safetensors"
    save_unfolded(UnfoldedChambollePock(R, 0.1, 2), cp)
    with pytest.raises(ValueError, match="bases.*tau"):
        load_unfolded(cp, UnfoldedChambollePock(R * 3.0, 0.1, 2))


def test_docstrings_keep_role_targets_on_one_line():
    # a cross-reference target split over two lines breaks the Sphinx -W build
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "learned"
    split = re.compile(r":(?:meth|func|class|attr|mod|obj|data|exc):`[^`]*\n")
    hits = [f"{p.name}:{p.read_text()[:m.start()].count(chr(10)) + 1}"
            for p in sorted(root.glob("*.py")) for m in split.finditer(p.read_text())]
    assert hits == []
