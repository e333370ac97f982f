"""Every transport solver on the solver protocol: its statuses, its callback states, mixed inputs."""

import dataclasses
import warnings

import numpy as np
import pytest

from tikhon.solvers import ConvergenceWarning
from tikhon.solvers.transport import class_ot, inverse_ot, sinkhorn, sinkhorn_divergence, sinkhorn_unbalanced


def _arrays(backend, *arrays):
    if backend == "numpy":
        return arrays
    torch = pytest.importorskip("torch")
    return tuple(torch.as_tensor(x) for x in arrays)


def _ot_problem(seed=0):
    rng = np.random.default_rng(seed)
    X, Y = rng.random((12, 2)), rng.random((10, 2))
    C = ((X[:, None] - Y[None]) ** 2).sum(-1)
    a, b = rng.random(12) + 0.5, rng.random(10) + 0.5
    return a / a.sum(), b / b.sum(), C / C.max()


def _sinkhorn(backend, method):
    a, b, C = _arrays(backend, *_ot_problem())

    def solve(eps=0.02, **kw):
        return sinkhorn(a, b, C, eps, method=method, **kw)

    return solve


def _unbalanced(backend):
    a, b, C = _arrays(backend, *_ot_problem(1))

    def solve(eps=0.05, **kw):
        return sinkhorn_unbalanced(a, 1.5 * b, C, eps, 0.5, **kw)

    return solve


def _class_ot(backend, method):
    rng = np.random.default_rng(2)
    C = rng.random((12, 9))
    labels = np.arange(12) % 3
    (C,) = _arrays(backend, C)

    def solve(lam=0.05, max_iter=None, **kw):
        return class_ot(None, None, C, labels, lam, method=method, max_iter=max_iter, **kw)

    return solve


def _inverse_ot(backend):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(8, 2)), rng.normal(size=(7, 2))
    coupling = rng.random((8, 7))
    X, Y, coupling = _arrays(backend, X, Y, coupling)

    def solve(**kw):
        return inverse_ot(X, Y, coupling, 0.5, 0.02, **kw)

    return solve


# (id, solver factory, keywords that make it non-finite or None, why unreachable)
CASES = [
    ("sinkhorn-scaling", lambda: _sinkhorn("numpy", "scaling"), {"eps": 1e-320, "eps_scaling": False}),
    ("sinkhorn-log", lambda: _sinkhorn("numpy", "log"), {"eps": 1e-320, "eps_scaling": False}),
    ("sinkhorn-torch", lambda: _sinkhorn("torch", "scaling"), {"eps": 1e-320, "eps_scaling": False}),
    ("unbalanced", lambda: _unbalanced("numpy"), {"eps": 1e-320}),
    ("unbalanced-torch", lambda: _unbalanced("torch"), {"eps": 1e-320}),
    ("class_ot-ssnal", lambda: _class_ot("numpy", "ssnal"), {"lam": 1e308}),
    ("class_ot-dr", lambda: _class_ot("numpy", "douglas_rachford"), {"lam": 1e308, "max_iter": 100}),
    ("class_ot-dr-torch", lambda: _class_ot("torch", None), {"lam": 1e308, "max_iter": 100}),
    # a failed inner Sinkhorn solve raises FloatingPointError before a
    # non-finite loss or gradient can reach the loop: "nonfinite" cannot occur
    ("inverse_ot", lambda: _inverse_ot("numpy"), None),
    ("inverse_ot-torch", lambda: _inverse_ot("torch"), None),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("name, factory, _", CASES, ids=IDS)
def test_converged(name, factory, _):
    res = factory()(tol=1e-6)
    assert res.status == "converged" and res.converged, res.message


@pytest.mark.parametrize("name, factory, _", CASES, ids=IDS)
def test_max_iter_warns(name, factory, _):
    with pytest.warns(ConvergenceWarning):
        res = factory()(tol=1e-14, max_iter=2)
    assert res.status == "max_iter" and not res.converged and res.n_iter == 2
    assert "max_iter" in res.message


@pytest.mark.parametrize("name, factory, bad", CASES, ids=IDS)
def test_nonfinite(name, factory, bad):
    if bad is None:
        pytest.skip("unreachable: a failed inner solve raises FloatingPointError")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a non-finite stop does not warn
        res = factory()(tol=1e-6, **bad)
    assert res.status == "nonfinite" and not res.converged
    assert "non-finite" in res.message


@pytest.mark.parametrize("name, factory, _", CASES, ids=IDS)
def test_callback_gets_dataclass_states_and_stops(name, factory, _):
    seen = []

    def callback(state):
        assert dataclasses.is_dataclass(state)
        seen.append(state.k)
        return state.k == 3

    res = factory()(tol=1e-14, callback=callback)
    assert res.status == "callback" and not res.converged and res.n_iter == 3
    assert seen == [1, 2, 3]
    assert "callback" in res.message


def test_sinkhorn_states_name_their_fields():
    a, b, C = _ot_problem()
    states = []
    sinkhorn(a, b, C, 0.02, tol=1e-6, callback=lambda s: states.append(dataclasses.replace(s)) and False)
    last = states[-1]
    assert {"k", "eps", "stage", "marginal_error", "measured", "f", "g", "n_roundoff"} <= {
        f.name for f in dataclasses.fields(last)}
    assert last.iteration == last.k  # the earlier name of the count
    assert [s.k for s in states] == list(range(1, len(states) + 1))
    assert states[0].eps > states[-1].eps == 0.02  # eps scaling ran its stages


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a, b, C, ta, tb, tC: sinkhorn(a, tb, tC, 0.1), r"mixed NumPy and torch inputs \(b, C torch; a NumPy\)"),
        (lambda a, b, C, ta, tb, tC: sinkhorn(ta, tb, C, 0.1, f0=np.zeros(12)),
         r"\(a, b torch; C, f0 NumPy\)"),
        (lambda a, b, C, ta, tb, tC: sinkhorn_unbalanced(ta, b, tC, 0.1, 1.0), r"\(a, C torch; b NumPy\)"),
        (lambda a, b, C, ta, tb, tC: class_ot(a, tb, tC, np.arange(12) % 2, 0.1), r"\(b, C torch; a NumPy\)"),
        (lambda a, b, C, ta, tb, tC: class_ot(None, None, C, np.arange(12) % 2, 0.1, x0=tC),
         r"\(x0 torch; C NumPy\)"),
        (lambda a, b, C, ta, tb, tC: sinkhorn_divergence(np.ones((3, 2)), tC[:3], 0.1), r"\(Y torch; X NumPy\)"),
    ],
)
def test_mixed_inputs_are_refused_naming_them(call, match):
    torch = pytest.importorskip("torch")
    a, b, C = _ot_problem()
    ta, tb, tC = (torch.as_tensor(x) for x in (a, b, C))
    with pytest.raises(TypeError, match=match):
        call(a, b, C, ta, tb, tC)


def test_tensors_on_two_devices_are_refused_naming_them():
    # the "meta" device stands in for a second device on a machine without a GPU
    torch = pytest.importorskip("torch")
    X = torch.zeros((6, 2), dtype=torch.float64)
    Y = torch.zeros((5, 2), dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"one device, got X on cpu, Y on meta"):
        inverse_ot(X, Y, torch.ones((6, 5), dtype=torch.float64), 0.5, 0.1)
    C = torch.ones((6, 5), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"one device, got a on meta, C on cpu"):
        sinkhorn(torch.full((6,), 1 / 6, device="meta", dtype=torch.float64), None, C, 0.1)
    with pytest.raises(ValueError, match=r"one device, got b on meta, C on cpu"):
        class_ot(None, torch.full((5,), 0.2, device="meta", dtype=torch.float64), C, np.arange(6) % 2, 0.1)
