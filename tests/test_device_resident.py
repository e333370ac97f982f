"""Every operator, prox and solver keeps torch data on its device (no host round trips).

CPU tensors stand in for CUDA ones through the ``no_host_transfers`` fixture
(tests/conftest.py): moving a tensor's data to host memory raises inside it.
Results must also agree with the NumPy path, so that the device path is not
merely silent but right. tomography, class OT and inverse OT have their own
device tests next to their other tests.
"""

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from tikhon.operators import (  # noqa: E402
    Convolution,
    Diagonal,
    Gradient,
    Identity,
    Mask,
    MatrixOperator,
    Radon,
    SobolevWeight,
    TubalProduct,
)
from tikhon.operators import prox as P  # noqa: E402
from tikhon.operators.base import LinearOperator  # noqa: E402
from tikhon.solvers import admm, chambolle_pock, fista, iht, ista  # noqa: E402
from tikhon.solvers.transport import sinkhorn, sinkhorn_divergence, sinkhorn_unbalanced  # noqa: E402

_rng = np.random.default_rng(11)


def _operators():
    return {
        "Identity": Identity((4, 5)),
        "Diagonal": Diagonal(_rng.random((4, 5))),
        "MatrixOperator": MatrixOperator(_rng.random((6, 20))),
        "MatrixOperator-sparse": MatrixOperator(sp.random(6, 20, density=0.3, random_state=0)),
        "Mask": Mask(_rng.random((4, 5)) > 0.5),
        "Gradient": Gradient((4, 5)),
        "Gradient-3d": Gradient((3, 4, 5)),
        "Convolution": Convolution((8, 9), _rng.random((3, 3))),
        "Convolution-periodic": Convolution((8, 9), _rng.random((3, 3)), boundary="periodic"),
        "SobolevWeight": SobolevWeight((8, 9), 1.0),
        "TubalProduct": TubalProduct(_rng.random((3, 4, 5)), 2),
        "Radon": Radon((16, 16), np.linspace(0, np.pi, 8, endpoint=False)),
        "composite": Gradient((6, 6)) @ Diagonal(_rng.random((6, 6))) + 0.0 * Gradient((6, 6)),
    }


OPS = _operators()


@pytest.mark.parametrize("name", sorted(OPS))
def test_operator_maps_stay_on_device(name, no_host_transfers):
    A = OPS[name]
    x = torch.from_numpy(_rng.standard_normal(A.in_shape))
    y = torch.from_numpy(_rng.standard_normal(A.out_shape))
    with no_host_transfers():
        Ax, ATy = A(x), A.T(y)
        try:
            absx = A.abs()(x)
        except NotImplementedError:
            absx = None
    assert isinstance(Ax, torch.Tensor) and isinstance(ATy, torch.Tensor)
    # and the device path computes the same maps as NumPy
    np.testing.assert_allclose(Ax.numpy(), A(x.numpy()), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ATy.numpy(), A.T(y.numpy()), rtol=1e-10, atol=1e-10)
    if absx is not None:
        np.testing.assert_allclose(absx.numpy(), A.abs()(x.numpy()), rtol=1e-10, atol=1e-10)


def test_fbp_stays_on_device(no_host_transfers):
    A = OPS["Radon"]
    sino = A(torch.from_numpy(_rng.random(A.in_shape)))
    with no_host_transfers():
        rec = A.fbp(sino)
    np.testing.assert_allclose(rec.numpy(), A.fbp(sino.numpy()), rtol=1e-8, atol=1e-10)


_SHAPE = (2, 3, 4)
_FUNCTIONALS = {
    "L0": (P.L0(), False),
    "L1": (P.L1(), True),
    "L2": (P.L2(), True),
    "L21": (P.L21(), True),
    "Box": (P.Box(0.0, 1.0), True),
    "Huber": (P.Huber(0.5), True),
    "KullbackLeibler": (P.KullbackLeibler(_rng.poisson(2.0, _SHAPE).astype(float)), True),
    "L1Ball": (P.L1Ball(1.0), True),
    "L2Ball": (P.L2Ball(1.0), True),
    "NonNegative": (P.NonNegative(), True),
    "NuclearNorm": (P.NuclearNorm(), True),
    "Simplex": (P.Simplex(), True),
    "SquaredL2": (P.SquaredL2(b=_rng.random(_SHAPE)), True),
    "SumOfNorms": (P.SumOfNorms(_rng.integers(-1, 3, _SHAPE)), True),
    "Zero": (P.Zero(), True),
    "scaled-shifted": ((0.3 * P.L21()).shift(_rng.random(_SHAPE)), True),
}


@pytest.mark.parametrize("name", sorted(_FUNCTIONALS))
def test_prox_stays_on_device(name, no_host_transfers):
    f, convex = _FUNCTIONALS[name]
    x = torch.from_numpy(_rng.standard_normal(_SHAPE))
    with no_host_transfers():
        px = f.prox(x, 0.7)
        fx = f(x)
        pc = f.conj.prox(x, 0.7) if convex else None
    assert isinstance(px, torch.Tensor)
    np.testing.assert_allclose(px.numpy(), f.prox(x.numpy(), 0.7), rtol=1e-10, atol=1e-12)
    assert fx == pytest.approx(f(x.numpy()), rel=1e-10)
    if convex:
        np.testing.assert_allclose(pc.numpy(), f.conj.prox(x.numpy(), 0.7), rtol=1e-10, atol=1e-12)


def _lasso():
    M = _rng.standard_normal((20, 30))
    b = _rng.standard_normal(20)
    return M, b


_M, _b = _lasso()
_IMG = _rng.random((16, 16))


def _solvers():
    G = Gradient((16, 16))

    def lasso(backend):
        b = torch.from_numpy(_b) if backend == "torch" else _b
        return P.SquaredL2(b=b, op=MatrixOperator(_M)), 0.1 * P.L1()

    def zeros(shape, backend):
        return torch.zeros(shape, dtype=torch.float64) if backend == "torch" else np.zeros(shape)

    def img(backend):
        return torch.from_numpy(_IMG) if backend == "torch" else _IMG

    return {
        "ista": lambda be: ista(*lasso(be), zeros(30, be), max_iter=60, tol=0.0),
        "ista-backtracking": lambda be: ista(*lasso(be), zeros(30, be), backtracking=True, max_iter=60, tol=0.0),
        "fista": lambda be: fista(*lasso(be), zeros(30, be), max_iter=60, tol=0.0),
        "iht": lambda be: iht(lasso(be)[0], zeros(30, be), 5, max_iter=60, tol=0.0),
        "iht-normalized": lambda be: iht(lasso(be)[0], zeros(30, be), 5, step_rule="normalized",
                                         max_iter=60, tol=0.0),
        "chambolle_pock": lambda be: chambolle_pock(G, 0.1 * P.L21(), P.SquaredL2(b=img(be)),
                                                    x0=zeros((16, 16), be), max_iter=60, tol=0.0),
        "chambolle_pock-precondition": lambda be: chambolle_pock(
            G, 0.1 * P.L21(), P.SquaredL2(b=img(be)), x0=zeros((16, 16), be), precondition=True,
            max_iter=60, tol=0.0),
        "admm": lambda be: admm(P.SquaredL2(b=img(be)), 0.1 * P.L21(), G, x0=zeros((16, 16), be),
                                max_iter=60, tol=0.0),
    }


SOLVERS = _solvers()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_solver_stays_on_device(name, no_host_transfers):
    run = SOLVERS[name]
    ref = run("numpy")
    with no_host_transfers():
        res = run("torch")
    assert isinstance(res.x, torch.Tensor)
    assert res.n_iter == ref.n_iter
    np.testing.assert_allclose(res.x.numpy(), ref.x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["balanced", "unbalanced", "divergence"])
def test_sinkhorn_stays_on_device(kind, no_host_transfers):
    X, Y = _rng.standard_normal((10, 2)), _rng.standard_normal((12, 2))
    a, b = np.full(10, 0.1), np.full(12, 1 / 12)
    C = ((X[:, None] - Y[None]) ** 2).sum(-1)

    def run(conv):
        if kind == "balanced":
            return sinkhorn(conv(a), conv(b), conv(C), 0.1).x
        if kind == "unbalanced":
            return sinkhorn_unbalanced(conv(a), conv(b), conv(C), 0.1, 1.0).x
        return sinkhorn_divergence(conv(X), conv(Y), 1.0)

    ref = run(np.asarray)
    with no_host_transfers():
        out = run(torch.from_numpy)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-7, atol=1e-12)


class _TorchOnly(LinearOperator):
    """A matrix operator defined only for tensors, like a wrapped GPU library."""

    def __init__(self, M):
        super().__init__((M.shape[1],), (M.shape[0],))
        self.M = torch.from_numpy(M)

    def _forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError("tensors only")
        return self.M.to(x) @ x

    def _adjoint(self, y):
        if not isinstance(y, torch.Tensor):
            raise TypeError("tensors only")
        return self.M.to(y).T @ y


def test_operator_norm_runs_on_the_data_device(no_host_transfers):
    M = _rng.standard_normal((15, 10))
    A = _TorchOnly(M)
    x = torch.zeros(10, dtype=torch.float64)
    with no_host_transfers():
        L = A.norm(like=x)
    assert L == pytest.approx(np.linalg.norm(M, 2), rel=1e-6)
    # the solvers pass their data, so a tensor-only operator works end to end
    b = torch.from_numpy(_rng.standard_normal(15))
    A2 = _TorchOnly(M)
    with no_host_transfers():
        res = fista(P.SquaredL2(b=b, op=A2), 0.1 * P.L1(), x, max_iter=2000, tol=1e-10)
        res_cp = chambolle_pock(_TorchOnly(M), P.SquaredL2(b=b), 0.1 * P.L1(), x0=x, max_iter=5000, tol=1e-10)
        res_admm = admm(0.1 * P.L1(), P.SquaredL2(b=b), _TorchOnly(M), x0=x, max_iter=5000, tol=1e-10)
    ref = fista(P.SquaredL2(b=b.numpy(), op=MatrixOperator(M)), 0.1 * P.L1(), np.zeros(10),
                max_iter=2000, tol=1e-10)
    for r in (res, res_cp, res_admm):
        np.testing.assert_allclose(r.x.numpy(), ref.x, atol=1e-6)


def _sync_runs():
    from tikhon.solvers import tv_reconstruction
    from tikhon.solvers.transport import class_ot

    rng = np.random.default_rng(5)
    b = torch.from_numpy(_b)
    img = torch.from_numpy(_IMG)
    G = Gradient((16, 16))
    A = OPS["Radon"]
    y = A(img)
    X, Y = torch.from_numpy(rng.standard_normal((12, 2))), torch.from_numpy(rng.standard_normal((10, 2)))
    C = torch.cdist(X, Y) ** 2
    a, bb = torch.full((12,), 1 / 12, dtype=torch.float64), torch.full((10,), 0.1, dtype=torch.float64)

    def lasso():
        return P.SquaredL2(b=b, op=MatrixOperator(_M)), 0.1 * P.L1()

    def z(shape):
        return torch.zeros(shape, dtype=torch.float64)

    return {
        "ista": lambda k: ista(*lasso(), z(30), max_iter=k, tol=0.0, check_every=k),
        "fista": lambda k: fista(*lasso(), z(30), max_iter=k, tol=0.0, check_every=k),
        "iht": lambda k: iht(lasso()[0], z(30), 5, max_iter=k, tol=0.0, check_every=k),
        "chambolle_pock": lambda k: chambolle_pock(G, 0.1 * P.L21(), P.SquaredL2(b=img), x0=z((16, 16)),
                                                   max_iter=k, tol=0.0, check_every=k),
        "admm": lambda k: admm(P.SquaredL2(b=img), 0.1 * P.L21(), G, x0=z((16, 16)), max_iter=k, tol=0.0,
                               check_every=k),
        "tv_reconstruction": lambda k: tv_reconstruction(A, y, 0.1, max_iter=k, tol=0.0, check_every=k),
        "sinkhorn": lambda k: sinkhorn(a, bb, C, 1e-2, max_iter=k, tol=0.0, check_every=k),
        "class_ot": lambda k: class_ot(a, bb, C, np.arange(12) % 3, 0.1, max_iter=k, tol=0.0, check_every=k),
    }


SYNC_RUNS = _sync_runs()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(SYNC_RUNS))
def test_no_host_sync_between_checks(name, count_syncs):
    # one check in either run: the extra 40 iterations must not read the device
    run = SYNC_RUNS[name]
    run(10)  # caches (operator tables, norms) built outside the counted runs
    with count_syncs() as short:
        run(40)
    with count_syncs() as long:
        run(80)
    assert long["n"] - short["n"] <= 2, (short["n"], long["n"])
