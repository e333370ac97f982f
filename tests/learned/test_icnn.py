"""ICNN: convexity of the potential, its gradient and Hessian, clamping, seeding, bad input."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tikhon.learned import ICNN
from helpers import randomise_icnn as _randomise

torch.set_num_threads(1)


def _smooth(net):
    # nn.Softplus switches to the identity at beta t > threshold = 20, a jump of
    # log1p(e^-20) / beta = 6.9e-10 at beta = 3, as large as the midpoint test's float64
    # tolerance; at threshold 500 the jump is e^-500 (nothing) and exp(beta t) cannot overflow
    net.act.threshold = 500.0
    return net


def _nets():
    return [
        _smooth(_randomise(ICNN(4, hidden=6, layers=3, beta=3.0, alpha=0.05), 0)),
        _smooth(_randomise(ICNN(2, hidden=4, layers=2, kind="conv", beta=3.0, alpha=0.05), 1, scale=0.3)),
    ]


def _points(net, n, gen):
    shape = (n, net.in_dim) if net.kind == "dense" else (n, net.in_dim, 5, 4)
    return 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("net", _nets(), ids=["dense", "conv"])
def test_midpoint_convexity_along_random_lines(net):
    gen = torch.Generator().manual_seed(2)
    a, b = _points(net, 200, gen), _points(net, 200, gen)
    with torch.no_grad():
        gap = 0.5 * (net(a) + net(b)) - net(0.5 * (a + b))
    assert gap.min() >= -1e-10 * (1 + net(a).abs().max())


def test_negative_hidden_weights_break_convexity():
    """The midpoint test detects a non-convex network (so the test above can fail)."""
    net = _randomise(ICNN(4, hidden=6, layers=3, beta=3.0), 0)
    with torch.no_grad():
        for w in net.nonneg_parameters():
            w.neg_()
    gen = torch.Generator().manual_seed(2)
    a, b = _points(net, 200, gen), _points(net, 200, gen)
    with torch.no_grad():
        gap = 0.5 * (net(a) + net(b)) - net(0.5 * (a + b))
    assert gap.min() < -1e-3


@pytest.mark.parametrize("net", _nets(), ids=["dense", "conv"])
def test_hessian_is_symmetric_psd(net):
    gen = torch.Generator().manual_seed(3)
    for x in _points(net, 3, gen):
        x = x.unsqueeze(0)
        H = torch.autograd.functional.jacobian(lambda v: net.gradient(v, create_graph=True), x)
        n = x.numel()
        H = H.reshape(n, n)
        assert torch.allclose(H, H.T, atol=1e-12)
        eig = torch.linalg.eigvalsh(0.5 * (H + H.T))
        # alpha ||x||^2 makes psi 2 alpha-strongly convex
        assert eig.min() >= 2 * net.alpha - 1e-10


@pytest.mark.parametrize("net", _nets(), ids=["dense", "conv"])
def test_gradient_matches_finite_differences(net):
    gen = torch.Generator().manual_seed(4)
    x = _points(net, 2, gen).requires_grad_(True)
    # gradcheck of the gradient checks its derivative (the double backward training uses) too
    assert torch.autograd.gradcheck(lambda v: net.gradient(v, create_graph=True), (x,))
    with torch.no_grad():
        g = net.gradient(x.detach())
        e = torch.zeros_like(x)
        flat = e.view(-1)
        k = 3
        flat[k] = 1e-6
        fd = (net(x.detach() + e) - net(x.detach() - e)).sum() / 2e-6
    assert abs(float(fd) - float(g.reshape(-1)[k])) <= 1e-6 * (1 + abs(float(fd)))


def test_alpha_adds_exactly_the_quadratic():
    a = ICNN(3, hidden=5, layers=2, alpha=0.0, seed=7).double()
    b = ICNN(3, hidden=5, layers=2, alpha=0.3, seed=7).double()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(b(x) - a(x), 0.3 * (x * x).sum(1), atol=1e-12)


def test_conv_applies_to_any_size_and_batches_independently():
    net = _randomise(ICNN(1, hidden=4, layers=2, kind="conv", beta=3.0), 5, scale=0.3)
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 1, 8, 8), (2, 1, 13, 6)]:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        g = net.gradient(x)
        assert g.shape == x.shape
        # each sample's gradient is its own: the batch is a sum of independent potentials
        assert torch.allclose(g[1:], net.gradient(x[1:]), atol=1e-12)
    # psi sums over pixels: a constant image twice as large has (away from the
    # border effects of zero padding) about twice the potential per unit area
    small, large = torch.full((1, 1, 16, 16), 0.3), torch.full((1, 1, 32, 16), 0.3)
    net = net.float()
    with torch.no_grad():
        ratio = float(net(large)) / float(net(small))
    assert 1.8 < ratio < 2.2


def test_clamp_weights_projects_only_the_hidden_path():
    net = ICNN(3, hidden=5, layers=2)
    for w in net.nonneg_parameters():
        assert bool((w >= 0).all())
    opt = torch.optim.SGD(net.parameters(), lr=10.0)
    # a loss whose gradient drives every weight down: many become negative
    loss = sum(p.sum() for p in net.parameters())
    loss.backward()
    opt.step()
    assert any(bool((w < 0).any()) for w in net.nonneg_parameters())
    others = {id(w) for w in net.nonneg_parameters()}
    free_before = [p.detach().clone() for p in net.parameters() if id(p) not in others]
    net.clamp_weights()
    for w in net.nonneg_parameters():
        assert bool((w >= 0).all())
    free_after = [p for p in net.parameters() if id(p) not in others]
    for a, b in zip(free_before, free_after):
        assert torch.equal(a, b)
    assert any(bool((p < 0).any()) for p in free_after)  # the skip path stays unconstrained


def test_seed_fixes_the_initialisation_and_leaves_the_global_generator():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b = ICNN(2, hidden=4, layers=1, seed=3), ICNN(2, hidden=4, layers=1, seed=3)
    after = torch.rand(3)
    assert torch.equal(before, after)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = ICNN(2, hidden=4, layers=1, seed=4)
    assert not torch.equal(a.first.weight, c.first.weight)


def test_small_init_for_conv():
    net = ICNN(1, hidden=4, layers=2, kind="conv")
    assert net.init == "small"
    w = torch.cat([w.detach().reshape(-1) for w in net.nonneg_parameters()])
    assert bool((w > 0).all()) and float(w.max()) < 1e-3
    assert ICNN(1, kind="conv", init="default").init == "default"


def test_config_rebuilds():
    net = ICNN(2, hidden=3, layers=1, kind="conv", beta=5.0, alpha=0.1, kernel_size=5, seed=2)
    twin = ICNN(**net.config())
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"in_dim": 0}, ValueError, "in_dim"),
        ({"in_dim": 2, "kind": "graph"}, ValueError, "kind"),
        ({"in_dim": 2, "beta": 0.0}, ValueError, "beta"),
        ({"in_dim": 2, "alpha": -1.0}, ValueError, "alpha"),
        ({"in_dim": 2, "layers": -1}, ValueError, "layers"),
        ({"in_dim": 2, "kind": "conv", "kernel_size": 4}, ValueError, "kernel_size"),
        ({"in_dim": 2, "init": "zeros"}, ValueError, "init"),
        ({"in_dim": 2.5}, TypeError, "in_dim"),
    ],
)
def test_bad_construction(kwargs, err, match):
    with pytest.raises(err, match=f"ICNN: {match}"):
        ICNN(**kwargs)


def test_bad_input():
    net = ICNN(3, hidden=4, layers=1)
    with pytest.raises(ValueError, match=r"ICNN.potential: x must have shape \(batch, 3\)"):
        net(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="ICNN.potential: x must be a torch tensor"):
        net(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="floating"):
        net(torch.zeros(2, 3, dtype=torch.int64))
    conv = ICNN(1, hidden=4, layers=1, kind="conv")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        conv(torch.zeros(4, 4))


def test_softplus_threshold_jump_is_why_the_midpoint_nets_are_smoothed():
    """The default Softplus is discontinuous by ~7e-10 at beta t = 20 (so _smooth raises its threshold)."""
    act = ICNN(1, hidden=2, layers=0, beta=3.0).act
    t = torch.tensor([20.0 / 3.0 - 1e-12, 20.0 / 3.0 + 1e-12], dtype=torch.float64)
    jump = float(act(t[:1]) - act(t[1:]))
    assert 6e-10 < jump < 8e-10  # log1p(exp(-20)) / 3 = 6.87e-10
    act.threshold = 500.0
    assert abs(float(act(t[:1]) - act(t[1:]))) < 1e-11
