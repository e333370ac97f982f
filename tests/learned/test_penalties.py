"""Penalty modules: values against direct NumPy formulas, gradcheck, zero sets, envelopes, bad input."""

import math

import numpy as np
import pytest

from tikhon.learned import (
    CauchySchwarz,
    GroupOrthogonality,
    HyperSparse,
    MoreauEnvelope,
    NormLoss,
    Penalty,
    ProxRule,
    SquaredDistance,
)
from tikhon.operators.prox import L0, L1, L21, Box, NuclearNorm, Oblique, ScaledBinary, ScaledTernary, Stiefel

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()


# -- Cauchy-Schwarz ---------------------------------------------------------------


def _cs_numpy(kind, r):
    """Per-row gaps written as ||u||^2 ||v||^2 - <u, v>^2 for the kind's vector pair."""
    if kind == "binary":
        u, v = r**2, np.ones_like(r)
    elif kind == "one_sided":
        u, v = r**2, r
    else:
        u, v = r**3, r
    uu, vv, uv = np.einsum("ij,ij->i", u, u), np.einsum("ij,ij->i", v, v), np.einsum("ij,ij->i", u, v)
    return float(np.sum(uu * vv - uv**2))


@pytest.mark.parametrize("kind", ["binary", "one_sided", "ternary"])
def test_cauchy_schwarz_vector_kinds_match_the_inequality_gap(kind):
    w = _rand(5, 7)
    got = CauchySchwarz(kind, lam=0.3, dim=0)(_t(w))
    assert float(got) == pytest.approx(0.3 * _cs_numpy(kind, w), rel=1e-12)
    # dim=None: the whole tensor is one vector; dim=1 groups the columns
    assert float(CauchySchwarz(kind)(_t(w))) == pytest.approx(_cs_numpy(kind, w.reshape(1, -1)), rel=1e-12)
    assert float(CauchySchwarz(kind, dim=1)(_t(w))) == pytest.approx(_cs_numpy(kind, w.T), rel=1e-12)


def test_cauchy_schwarz_binary_is_the_papers_norm_form():
    # N ||x||_4^4 - ||x||_2^4 for one vector
    x = _rand(9, seed=3)
    want = 9 * np.linalg.norm(x, 4) ** 4 - np.linalg.norm(x) ** 4
    assert float(CauchySchwarz("binary")(_t(x))) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("shape", [(4, 9), (9, 4), (5, 5)])
def test_cauchy_schwarz_orthogonal_gap(shape):
    x = _rand(*shape, seed=2)
    k = min(shape)
    # the singular values: ||X^T X||_F^2 = sum s^4, ||X||_F^2 = sum s^2
    s = np.linalg.svd(x, compute_uv=False)
    want = k * np.sum(s**4) - np.sum(s**2) ** 2
    assert float(CauchySchwarz("orthogonal")(_t(x))) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kind", ["binary", "one_sided", "ternary", "orthogonal"])
def test_cauchy_schwarz_gradcheck(kind):
    x = _t(_rand(3, 4, seed=5), grad=True)
    cs = CauchySchwarz(kind, lam=0.7, dim=0)
    assert torch.autograd.gradcheck(cs, (x,))


def test_cauchy_schwarz_zero_sets():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 10))
    binary = ScaledBinary(axis=-1).prox(x)
    ternary = ScaledTernary(axis=-1).prox(x)
    one_sided = np.where(x > 0, 1.7, 0.0)
    scale = float(np.sum(x**2)) ** 2  # the gaps are degree-4 homogeneous (and more)
    tol = 1e-12
    assert abs(float(CauchySchwarz("binary", dim=0)(_t(binary)))) <= tol * scale
    assert abs(float(CauchySchwarz("ternary", dim=0)(_t(ternary)))) <= tol * scale**2
    assert abs(float(CauchySchwarz("one_sided", dim=0)(_t(one_sided)))) <= tol * scale**2
    q = Stiefel().prox(x) * 3.0  # orthogonal rows of one common norm
    assert abs(float(CauchySchwarz("orthogonal")(_t(q)))) <= 1e-10 * float(np.sum(q**2)) ** 2
    # and positive off the sets: a ternary vector is not binary, a binary one is not one-sided
    assert float(CauchySchwarz("binary", dim=0)(_t(ternary))) > 1e-6
    assert float(CauchySchwarz("one_sided", dim=0)(_t(binary))) > 1e-6
    assert float(CauchySchwarz("ternary", dim=0)(_t(x))) > 1e-6
    assert float(CauchySchwarz("orthogonal")(_t(x))) > 1e-6


def test_cauchy_schwarz_training_binarizes_rows():
    # descent on the penalty alone (Adam: the gap is quartic, plain steps stall at small
    # scales) sends every row to one magnitude, each row its own
    w = torch.nn.Parameter(_t(_rand(4, 6, seed=6)) * 0.5)
    opt = torch.optim.Adam([w], lr=0.01)
    cs = CauchySchwarz("binary", dim=0)
    for _ in range(600):
        opt.zero_grad()
        cs(w).backward()
        opt.step()
    a = w.detach().abs()
    assert float((a.amax(1) - a.amin(1)).max()) < 1e-8 * float(a.min())
    assert float(a.mean(1).amax() / a.mean(1).amin()) > 1.5  # the scale is free, not fixed at 1


# -- Penalty, envelopes ------------------------------------------------------------


def test_penalty_is_lam_times_the_functional_value():
    w = _rand(4, 5)
    assert float(Penalty(L1(), 0.5)(_t(w))) == pytest.approx(0.5 * np.abs(w).sum(), rel=1e-12)
    rows = np.sqrt(np.einsum("ij,ij->i", w, w)).sum()
    assert float(Penalty(L21(axis=1), 2.0)(_t(w))) == pytest.approx(2.0 * rows, rel=1e-12)
    # dim=0 on a 3-D tensor: the functional sees the (groups, entries) matrix
    c = _rand(3, 2, 2, seed=1)
    want = np.sqrt((c.reshape(3, -1) ** 2).sum(1)).sum()
    assert float(Penalty(L21(axis=1), dim=0)(_t(c))) == pytest.approx(want, rel=1e-12)
    s = np.linalg.svd(w, compute_uv=False).sum()
    assert float(Penalty(NuclearNorm(), 1.0)(_t(w))) == pytest.approx(s, rel=1e-12)
    assert Penalty(L21(axis=1))(_t(w).float()).dtype == torch.float32


def test_penalty_gradcheck():
    x = _t(_rand(3, 4, seed=2), grad=True)
    assert torch.autograd.gradcheck(Penalty(L21(axis=1), 0.3), (x,))
    assert torch.autograd.gradcheck(Penalty(NuclearNorm(), 0.3), (x,))


def _huber(x, t):
    a = np.abs(x)
    return float(np.sum(np.where(a <= t, x**2 / (2 * t), a - t / 2)))


def test_moreau_envelope_of_l1_is_huber():
    x = np.linspace(-3, 3, 13) + 0.05
    for t in (0.5, 2.0):
        got = MoreauEnvelope(L1(), t=t, lam=1.5)(_t(x))
        assert float(got) == pytest.approx(1.5 * _huber(x, t), rel=1e-12)
    xt = _t(x, grad=True)
    MoreauEnvelope(L1(), t=0.5)(xt).backward()
    np.testing.assert_allclose(xt.grad.numpy(), np.clip(x / 0.5, -1, 1), rtol=1e-12)


def test_moreau_envelope_of_an_indicator_is_the_squared_distance():
    x = _rand(5, seed=3) * 2
    t = 0.25
    d2 = np.sum((x - np.clip(x, -0.5, 1.0)) ** 2)
    assert float(MoreauEnvelope(Box(-0.5, 1.0), t=t)(_t(x))) == pytest.approx(d2 / (2 * t), rel=1e-12)
    assert float(SquaredDistance(Box(-0.5, 1.0), lam=3.0)(_t(x))) == pytest.approx(1.5 * d2, rel=1e-12)


@pytest.mark.parametrize("f", [L1(), L21(axis=1), NuclearNorm()], ids=["L1", "L21", "nuclear"])
def test_moreau_envelope_gradcheck(f):
    x = _t(_rand(3, 4, seed=7), grad=True)
    assert torch.autograd.gradcheck(MoreauEnvelope(f, t=0.3, lam=0.8), (x,))


def test_moreau_envelope_second_derivative_is_a_clear_error():
    x = _t(_rand(3, 4, seed=7), grad=True)
    env = MoreauEnvelope(L1(), t=0.3)
    (g,) = torch.autograd.grad(env(x), x, create_graph=True)  # the first derivative still works
    (g0,) = torch.autograd.grad(MoreauEnvelope(L1(), t=0.3)(x), x)
    torch.testing.assert_close(g, g0, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="MoreauEnvelope: the envelope is once differentiable"):
        g.sum().backward()


def test_moreau_envelope_is_below_f_and_tends_to_it():
    x = _t(_rand(4, 4, seed=8))
    f = float(NuclearNorm()._call(x))
    vals = [float(MoreauEnvelope(NuclearNorm(), t=t)(x)) for t in (1.0, 0.1, 1e-3)]
    assert vals[0] < vals[1] < vals[2] <= f
    assert vals[2] == pytest.approx(f, rel=1e-2)


@pytest.mark.parametrize(
    "proj",
    [Oblique(), Stiefel(), ScaledBinary(axis=-1)],
    ids=["oblique", "stiefel", "binary"],
)
def test_squared_distance_to_weight_sets(proj):
    x = _rand(3, 5, seed=9)
    p = proj.prox(x)
    assert float(SquaredDistance(proj)(_t(x))) == pytest.approx(0.5 * np.sum((x - p) ** 2), rel=1e-12)
    assert float(SquaredDistance(proj)(_t(p))) == pytest.approx(0.0, abs=1e-20)
    assert torch.autograd.gradcheck(SquaredDistance(proj, lam=0.5), (_t(x, grad=True),))


def test_norm_loss_is_the_papers_formula_and_twice_the_oblique_distance():
    w = _rand(6, 4, seed=10)
    want = np.sum((np.linalg.norm(w, axis=1) - 1) ** 2)
    assert float(NormLoss(lam=0.1)(_t(w))) == pytest.approx(0.1 * want, rel=1e-12)
    assert float(NormLoss()(_t(w))) == pytest.approx(2 * float(SquaredDistance(Oblique())(_t(w))), rel=1e-12)
    conv = _rand(3, 2, 2, 2, seed=11)
    want = np.sum((np.linalg.norm(conv.reshape(3, -1), axis=1) - 1) ** 2)
    assert float(NormLoss()(_t(conv))) == pytest.approx(want, rel=1e-12)
    assert float(NormLoss(dim=None)(_t(w))) == pytest.approx((np.linalg.norm(w) - 1) ** 2, rel=1e-12)
    assert float(NormLoss()(_t(Oblique().prox(w)))) == pytest.approx(0.0, abs=1e-24)
    assert torch.autograd.gradcheck(NormLoss(0.3), (_t(w, grad=True),))


# -- group orthogonality ---------------------------------------------------------


def _gor_numpy(w, groups):
    """Consecutive groups of rows, one at a time (the reference code's inter_reg_loss)."""
    n, d = w.shape
    m = n // groups
    idx = np.arange(n).reshape(groups, m)
    total = 0.0
    for rows in idx:  # a loop over the groups (a handful), not over entries
        g = w[rows]
        gram = g @ g.T if m <= d else g.T @ g
        total += np.sum((gram - np.eye(gram.shape[0])) ** 2)
    return total


@pytest.mark.parametrize("groups,d", [(1, 9), (2, 9), (4, 9), (2, 2)])
def test_group_orthogonality_matches_per_group_formula(groups, d):
    w = _rand(8, d, seed=12)
    got = GroupOrthogonality(groups, lam=0.4)(_t(w))
    assert float(got) == pytest.approx(0.4 * _gor_numpy(w, groups), rel=1e-12)
    assert torch.autograd.gradcheck(GroupOrthogonality(groups), (_t(w[:, :d], grad=True),))


def _authors_calc_dist(w):
    # github.com/YoavKurtz/GOR, weight_regularization.py: calc_dist on (sets, rows, cols)
    n_rows, n_cols = w.shape[1:]
    if n_rows >= n_cols:
        return torch.dist(w.permute(0, 2, 1) @ w, torch.eye(n_cols, dtype=w.dtype)) ** 2
    return torch.dist(w @ w.permute(0, 2, 1), torch.eye(n_rows, dtype=w.dtype)) ** 2


def _authors_intra(w, num_groups):
    # intra_reg_loss: the filters in num_groups blocks of group_size; set j = the j-th filter of each block
    group_size = w.shape[0] // num_groups
    sets = w.reshape(num_groups, group_size, -1).permute(1, 0, 2).reshape(group_size, num_groups, -1)
    return _authors_calc_dist(sets)


@pytest.mark.parametrize("num_groups,d", [(2, 9), (3, 9), (4, 9), (6, 2), (4, 2)])
def test_group_orthogonality_strided_is_the_authors_intra_mode(num_groups, d):
    # the authors' intra mode with num_groups = N is strided=True with groups = c_out / N
    w = _t(_rand(12, d, seed=15))
    got = GroupOrthogonality(12 // num_groups, strided=True)(w)
    assert float(got) == pytest.approx(float(_authors_intra(w, num_groups)), rel=1e-12)
    assert torch.autograd.gradcheck(GroupOrthogonality(12 // num_groups, strided=True), (w.clone().requires_grad_(),))
    # and the consecutive layout is the authors' inter mode, num_groups = groups
    inter = _authors_calc_dist(w.reshape(num_groups, 12 // num_groups, -1))
    assert float(GroupOrthogonality(num_groups)(w)) == pytest.approx(float(inter), rel=1e-12)


def test_group_orthogonality_zero_on_orthonormal_groups_and_conv_grouping():
    q = np.linalg.qr(_rand(6, 6, seed=13))[0]
    w = np.concatenate([q[:3], q[3:]])  # two groups of 3 orthonormal rows
    assert float(GroupOrthogonality(2)(_t(w))) == pytest.approx(0.0, abs=1e-24)
    conv = _rand(4, 2, 3, 3, seed=14)
    assert float(GroupOrthogonality(2)(_t(conv))) == pytest.approx(_gor_numpy(conv.reshape(4, -1), 2), rel=1e-12)


# -- HyperSparse -----------------------------------------------------------------


def _hs_grad_numpy(w, rate):
    a = np.abs(w).ravel()
    wk = np.sort(a)[math.floor(rate * a.size)]
    s = math.atanh(1 / math.sqrt(3)) / wk
    t = np.tanh(s * a).sum()
    return (s * a.sum() / t * (1 - np.tanh(s * a) ** 2) * np.sign(w.ravel())).reshape(w.shape)


def _hs_authors(w, rate):
    # the expression of the authors' code (github.com/GreenAutoML4FAS/HyperSparse)
    w_abs = w.abs()
    w_sort, _ = torch.sort(w_abs.detach().reshape(-1))
    s = math.atanh(1 / math.sqrt(3)) / w_sort[math.floor(rate * w_sort.shape[0])]
    w_tanh = torch.tanh(s * w_abs)
    return (w_abs * w_tanh.sum() / w_tanh.sum().detach() - w_abs).sum()


def test_hypersparse_value_and_gradient():
    w = _rand(5, 6, seed=15)
    for rate in (0.0, 0.5, 0.9):
        x = _t(w, grad=True)
        v = HyperSparse(rate, lam=0.2)(x)
        v.backward()
        assert float(v.detach()) == pytest.approx(0.2 * np.abs(w).sum(), rel=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), 0.2 * _hs_grad_numpy(w, rate), rtol=1e-10, atol=1e-14)
        y = _t(w, grad=True)
        _hs_authors(y, rate).backward()
        np.testing.assert_allclose(x.grad.numpy(), 0.2 * y.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_hypersparse_spares_the_largest_weights():
    w = np.concatenate([_rand(180, seed=16), 12.0 * np.sign(_rand(20, seed=17))])
    x = _t(w, grad=True)
    HyperSparse(0.5)(x).backward()
    g, a = x.grad.abs().numpy(), np.abs(w)
    order = np.argsort(a)
    assert np.all(np.diff(g[order]) <= 1e-12)  # the shrinkage decreases with the magnitude
    wk = np.sort(a)[100]
    # at the threshold the slope is sech^2(atanh(1/sqrt 3)) = 2/3 of the slope at 0
    at = np.argmin(np.abs(a - wk))
    assert g[at] / np.max(g) == pytest.approx(2 / 3, rel=2e-2)
    assert g[a > 10].max() < 1e-3 * g.max()


def test_hypersparse_sum_over_uses_one_global_threshold():
    net = _mlp()
    hs = HyperSparse(0.8)
    joint = torch.cat([net[0].weight.reshape(-1), net[2].weight.reshape(-1)])
    assert float(hs.sum_over(torch.nn.Linear, model=net).detach()) == pytest.approx(float(hs(joint).detach()), rel=1e-12)
    hs.sum_over(torch.nn.Linear, model=net).backward()
    x = joint.detach().clone().requires_grad_()
    hs(x).backward()
    torch.testing.assert_close(net[2].weight.grad.reshape(-1), x.grad[net[0].weight.numel():])


def test_hypersparse_all_zero_weights_are_finite():
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    v = HyperSparse(0.5)(x)
    v.backward()
    assert float(v.detach()) == 0.0 and torch.isfinite(x.grad).all()


# -- applying to a model ------------------------------------------------------------


def test_sum_over_selects_like_a_prox_rule():
    from tikhon.learned.weight_prox import _select

    net = _mlp()
    cs = CauchySchwarz("binary", dim=0)
    for sel in ["*.weight", torch.nn.Linear, net[2], [net[0].weight]]:
        chosen = _select(ProxRule(L1(), 1.0, sel), net, "test")
        want = sum(float(cs(p).detach()) for _, p in chosen)
        assert float(cs.sum_over(sel, model=net).detach()) == pytest.approx(want, rel=1e-12)
    total = NormLoss(0.1).sum_over("*.weight", model=net) + CauchySchwarz(lam=0.1, dim=0).sum_over(net.parameters())
    total.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_penalties_are_modules():
    net = torch.nn.ModuleDict({"cs": CauchySchwarz("ternary", dim=0), "norm": NormLoss()})
    assert "kind='ternary'" in repr(net)
    state = net.state_dict()
    assert state == {}  # no parameters or buffers: nothing to checkpoint


# -- bad input ------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(ValueError, match="CauchySchwarz: kind"):
        CauchySchwarz("quaternary")
    with pytest.raises(ValueError, match="CauchySchwarz: lam"):
        CauchySchwarz(lam=-1.0)
    with pytest.raises(TypeError, match="CauchySchwarz.forward: x must be a torch.Tensor"):
        CauchySchwarz()(np.ones(3))
    with pytest.raises(TypeError, match="CauchySchwarz.forward: x must be a float32 or float64"):
        CauchySchwarz()(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="CauchySchwarz.forward: dim=2 is out of range"):
        CauchySchwarz(dim=2)(torch.ones(3, 4))
    with pytest.raises(ValueError, match="kind='orthogonal' needs a 2-D x"):
        CauchySchwarz("orthogonal")(torch.ones(2, 3, 4))
    with pytest.raises(TypeError, match="Penalty: f must be a tikhon Functional"):
        Penalty(lambda x: x, 1.0)
    with pytest.raises(TypeError, match="Penalty.forward: f=.* has no differentiable torch value"):
        Penalty(L0())(torch.ones(3))
    with pytest.raises(ValueError, match="MoreauEnvelope: t must be positive"):
        MoreauEnvelope(L1(), t=0.0)
    with pytest.raises(ValueError, match="SquaredDistance: projection=L1.* is not an indicator"):
        SquaredDistance(L1())(torch.ones(3))
    with pytest.raises(ValueError, match="SquaredDistance: projection=L1.* is not an indicator"):
        SquaredDistance(L1())(torch.zeros(3))  # L1 is 0 at 0 and at its prox there, not at 0 + 1
    with pytest.raises(ValueError, match="GroupOrthogonality.forward: groups=3 does not divide"):
        GroupOrthogonality(3)(torch.ones(4, 2))
    with pytest.raises(ValueError, match="GroupOrthogonality: groups"):
        GroupOrthogonality(0)
    with pytest.raises(ValueError, match="HyperSparse: rate must be in"):
        HyperSparse(1.0)
    with pytest.raises(ValueError, match="model is required"):
        NormLoss().sum_over("*.weight")
    with pytest.raises(ValueError, match="selects no parameter"):
        NormLoss().sum_over("nothing*", model=_mlp())
