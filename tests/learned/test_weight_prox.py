"""attach_prox (proximal training hook), sparsity masks, freeze_mask and sparsemax."""

import io
import math

import numpy as np
import pytest
from tikhon.learned import ProxRule, attach_prox, freeze_mask, sparsemax, sparsity_mask
from tikhon.operators.prox import L1, L21, Box, NuclearNorm, Oblique, Simplex

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)


def _train_step(net, opt, seed=1):
    x, y = _batch(seed)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()


def _soft(w, t):
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_lam_zero_leaves_parameters_untouched(opt_name):
    a, b = _mlp(), _mlp()
    make = (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)) if opt_name == "sgd" else (lambda p: torch.optim.Adam(p, lr=1e-2))
    oa, ob = make(a.parameters()), make(b.parameters())
    attach_prox(ob, [ProxRule(L1(), 0.0, "*.weight"), ProxRule(NuclearNorm(), 0.0, torch.nn.Linear)], model=b)
    for s in range(3):
        _train_step(a, oa, s)
        _train_step(b, ob, s)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_sgd_cosine_schedule_prox_follows_scheduled_lr():
    net, ref = _mlp(), _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    ropt = torch.optim.SGD(ref.parameters(), lr=0.5)
    lam = 0.05
    h = attach_prox(opt, [ProxRule(L1(), lam, "*.weight")], model=net)
    assert h.metric == "scalar"
    lrs = []
    for s in range(4):
        lr = opt.param_groups[0]["lr"]
        lrs.append(lr)
        _train_step(net, opt, s)
        # the reference: the plain step, then the soft threshold at the current lr
        ropt.param_groups[0]["lr"] = lr
        _train_step(ref, ropt, s)
        with torch.no_grad():
            for m in (ref[0], ref[2]):
                m.weight.copy_(_soft(m.weight, lr * lam))
        sched.step()
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    assert len(set(lrs)) == 4 and h.steps == 4  # the lr really changed
    # biases were not selected: never thresholded (some stay small but non-zero)
    assert net[0].bias.count_nonzero() == 8


def test_adam_metric_against_direct_formula():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    opt = torch.optim.Adam([w], lr=0.05, betas=(0.8, 0.9), eps=1e-3)
    lam = 0.3
    h = attach_prox(opt, ProxRule(L1(), lam, [w]))
    assert h.metric == "adam"
    for t in range(1, 4):
        loss = ((w - torch.arange(20.0, dtype=torch.float64).reshape(5, 4) / 10) ** 2 * torch.linspace(0.1, 3, 4)).sum()
        opt.zero_grad()
        loss.backward()
        h.remove()  # the plain Adam step, then the prox by the formula
        before = w.detach().clone()
        opt.step()
        plain = w.detach().clone()
        st = opt.state[w]
        v_hat = st["exp_avg_sq"] / (1 - 0.9**t)
        thr = 0.05 * lam / (v_hat.sqrt() + 1e-3)
        expected = _soft(plain, thr)
        # redo the step with the hook attached from the same state
        with torch.no_grad():
            w.copy_(before)
        st["step"] -= 1
        st["exp_avg"].copy_((st["exp_avg"] - 0.2 * w.grad) / 0.8)
        st["exp_avg_sq"].copy_((st["exp_avg_sq"] - 0.1 * w.grad**2) / 0.9)
        h = attach_prox(opt, ProxRule(L1(), lam, [w]))
        opt.step()
        torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)
        assert not torch.equal(thr, thr.flatten()[0].expand_as(thr))  # truly per coordinate
    # metric="scalar" on Adam: the plain threshold lr * lam
    h.remove()
    a = torch.nn.Parameter(w.detach().clone())
    b = torch.nn.Parameter(w.detach().clone())
    oa, ob = torch.optim.Adam([a], lr=0.05), torch.optim.Adam([b], lr=0.05)
    attach_prox(ob, ProxRule(L1(), lam, [b]), metric="scalar")
    for o, q in ((oa, a), (ob, b)):
        (q**2 * torch.linspace(0.1, 3, 4)).sum().backward()
        o.step()
    torch.testing.assert_close(b.detach(), _soft(a.detach(), 0.05 * lam), rtol=0, atol=1e-15)


def test_adam_metric_waits_for_state_and_amsgrad():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    u = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = torch.optim.Adam([w, u], lr=0.1, amsgrad=True)
    attach_prox(opt, ProxRule(L1(), 0.5, [w, u]))
    (w * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    opt.step()
    assert torch.equal(u.detach(), torch.ones(3, dtype=torch.float64))  # no grad, no state: untouched
    st = opt.state[w]
    v_hat = st["max_exp_avg_sq"] / (1 - 0.999)
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    plain = 1 - 0.1 * g / (g.abs() + 1e-8)  # Adam's first step: lr * g / (|g| + eps)
    torch.testing.assert_close(w.detach(), _soft(plain, 0.05 / (v_hat.sqrt() + 1e-8)), rtol=0, atol=1e-12)


def test_l21_rows_and_dim_grouping():
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 4).double()
    conv = torch.nn.Conv2d(2, 3, 3).double()
    params = [lin.weight, conv.weight]
    opt = torch.optim.SGD(params, lr=1.0)
    w0, c0 = lin.weight.detach().clone(), conv.weight.detach().clone()
    lam = 0.5
    attach_prox(opt, [ProxRule(L21(axis=1), lam, [lin.weight]), ProxRule(L21(axis=1), lam, [conv.weight], dim=0)])
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradient: the parameters become their proxes
    n = w0.norm(dim=1, keepdim=True)
    torch.testing.assert_close(lin.weight.detach(), w0 * torch.clamp(1 - lam / n, min=0), rtol=0, atol=1e-14)
    nc = c0.flatten(1).norm(dim=1).reshape(3, 1, 1, 1)
    torch.testing.assert_close(conv.weight.detach(), c0 * torch.clamp(1 - lam / nc, min=0), rtol=0, atol=1e-14)
    # dim=1 on the conv: groups are input channels (slices conv.weight[:, j])
    conv2 = torch.nn.Conv2d(2, 3, 3).double()
    c2 = conv2.weight.detach().clone()
    opt2 = torch.optim.SGD([conv2.weight], lr=1.0)
    attach_prox(opt2, ProxRule(Oblique(axis=1), 1.0, [conv2.weight], dim=1))
    conv2.weight.grad = torch.zeros_like(conv2.weight)
    opt2.step()
    nj = c2.transpose(0, 1).flatten(1).norm(dim=1).reshape(1, 2, 1, 1)
    torch.testing.assert_close(conv2.weight.detach(), c2 / nj, rtol=0, atol=1e-14)


def test_start_step_and_handle_removal():
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    h = attach_prox(opt, ProxRule(Box(-0.01, 0.01), 1.0, "0.weight", start_step=2), model=net)
    _train_step(net, opt, 0)
    _train_step(net, opt, 1)
    assert net[0].weight.abs().max() > 0.01  # before start_step: dense training
    _train_step(net, opt, 2)
    assert net[0].weight.abs().max() <= 0.01
    h.remove()
    h.remove()  # idempotent
    _train_step(net, opt, 3)
    assert net[0].weight.abs().max() > 0.01  # no longer projected
    with attach_prox(opt, ProxRule(Box(-0.01, 0.01), 1.0, [net[0].weight])) as h2:
        _train_step(net, opt, 4)
        assert net[0].weight.abs().max() <= 0.01
    _train_step(net, opt, 5)
    assert net[0].weight.abs().max() > 0.01 and h2.steps == 1


def test_survives_state_dict_roundtrip_and_torch_save():
    torch.manual_seed(0)
    net = _mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    attach_prox(opt, [ProxRule(L1(), 0.5, torch.nn.Linear)], model=net)
    for s in range(3):
        _train_step(net, opt, s)
        sched.step()
    # checkpoint: the hook holds nothing in the model or in the optimizer state
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    torch.save(net, io.BytesIO())  # the whole module pickles too
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    # a fresh run resumed from the checkpoint, with the hook re-attached, matches
    net2 = _mlp(seed=5)
    net2.load_state_dict(ck["model"])
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    opt2.load_state_dict(ck["opt"])  # after the scheduler's construction, which resets lr
    sched2.load_state_dict(ck["sched"])
    attach_prox(opt2, [ProxRule(L1(), 0.5, torch.nn.Linear)], model=net2)
    # and the original optimizer, reloaded in place, keeps its hook (a second load:
    # load_state_dict keeps the loaded tensors, which two optimizers must not share)
    buf.seek(0)
    opt.load_state_dict(torch.load(buf, weights_only=True)["opt"])
    for s in range(3, 5):
        _train_step(net, opt, s)
        _train_step(net2, opt2, s)
        sched.step()
        sched2.step()
    for p, q in zip(net.parameters(), net2.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert (net[0].weight == 0).any()  # the prox did act


def test_sparsity_mask_and_freeze_mask_fine_tune():
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    h = attach_prox(opt, ProxRule(L1(), 0.3, "*.weight"), model=net)
    for s in range(5):
        _train_step(net, opt, s)
    h.remove()
    masks = sparsity_mask(net, pattern="*.weight")
    assert set(masks) == {"0.weight", "2.weight"}
    frac0 = 1 - float(masks["0.weight"].float().mean())
    assert 0 < frac0 < 1
    keep = {n: m.clone() for n, m in masks.items()}
    lst = sparsity_mask([net[0].weight])
    assert torch.equal(lst[0], masks["0.weight"])
    opt2 = torch.optim.Adam(net.parameters(), lr=1e-2)
    fm = freeze_mask(opt2, masks, model=net)
    before = net[0].weight.detach().clone()
    for s in range(5):
        _train_step(net, opt2, s)
    now = sparsity_mask(net, pattern="*.weight")
    for n, m in keep.items():  # pattern fixed: pruned stay 0 (Adam's momentum notwithstanding)
        assert not (now[n] & ~m).any()
    kept = keep["0.weight"]
    assert not torch.equal(net[0].weight.detach()[kept], before[kept])  # kept entries train
    fm.remove()
    # explicit pairs, and atol
    w = torch.nn.Parameter(torch.tensor([1e-9, 1.0, -2.0], dtype=torch.float64))
    m = sparsity_mask([w], atol=1e-6)[0]
    assert m.tolist() == [False, True, True]
    o = torch.optim.SGD([w], lr=1.0)
    freeze_mask(o, [(w, m)])
    assert w.detach()[0] == 0  # applied at once


def test_sparsemax_forward_is_simplex_projection():
    z = torch.tensor(np.random.default_rng(0).standard_normal((4, 6)) * 2)
    p = sparsemax(z)
    np.testing.assert_allclose(p.numpy(), Simplex(1.0, axis=-1).prox(z.numpy()), atol=1e-14)
    assert (p == 0).any() and torch.allclose(p.sum(-1), torch.ones(4, dtype=torch.float64))
    p0 = sparsemax(z, dim=0)
    np.testing.assert_allclose(p0.numpy(), Simplex(1.0, axis=0).prox(z.numpy()), atol=1e-14)
    # closed form for two classes: p_1 = clip((z_1 - z_2 + 1) / 2, 0, 1)
    two = torch.tensor([[0.3, -0.1], [2.0, -1.0]], dtype=torch.float64)
    np.testing.assert_allclose(sparsemax(two)[:, 0].numpy(), np.clip((two[:, 0] - two[:, 1] + 1).numpy() / 2, 0, 1))
    # invariant to a common shift, like softmax
    torch.testing.assert_close(sparsemax(z + 3.0), p)


def test_sparsemax_backward_gradcheck():
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(3, 5, generator=g, dtype=torch.float64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=-1), (z,))
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=0), (z,))
    # the Jacobian on the support is I - 1 1^T / |S| (Martins & Astudillo, eq. 12)
    zz = torch.tensor([0.5, 0.3, -1.0], dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(sparsemax, zz)
    ref = torch.tensor([[0.5, -0.5, 0], [-0.5, 0.5, 0], [0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(jac, ref)
    z32 = torch.randn(2, 4, generator=g).requires_grad_()
    sparsemax(z32).sum().backward()
    assert z32.grad.dtype == torch.float32 and z32.grad.abs().max() < 1e-6  # sum is constant


def test_bad_inputs_name_the_argument():
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lam"):
        ProxRule(L1(), -1.0, "*")
    with pytest.raises(ValueError, match="lam"):
        ProxRule(L1(), math.nan, "*")
    with pytest.raises(TypeError, match="functional"):
        ProxRule("l1", 1.0, "*")
    with pytest.raises(ValueError, match="start_step"):
        ProxRule(L1(), 1.0, "*", start_step=-1)
    with pytest.raises(ValueError, match="axis=1"):
        ProxRule(L21(axis=0), 1.0, "*", dim=0)
    with pytest.raises(ValueError, match="params"):
        ProxRule(L1(), 1.0, None)
    with pytest.raises(TypeError, match="optimizer"):
        attach_prox(net, [ProxRule(L1(), 1.0, "*")], model=net)
    with pytest.raises(TypeError, match="rules"):
        attach_prox(opt, [L1()])
    with pytest.raises(ValueError, match="model"):
        attach_prox(opt, ProxRule(L1(), 1.0, "*.weight"))
    with pytest.raises(ValueError, match="selects no parameter"):
        attach_prox(opt, ProxRule(L1(), 1.0, "nothing*"), model=net)
    with pytest.raises(ValueError, match="metric"):
        attach_prox(opt, ProxRule(L1(), 1.0, "*"), model=net, metric="newton")
    with pytest.raises(ValueError, match="metric='adam'"):
        attach_prox(opt, ProxRule(L1(), 1.0, "*"), model=net, metric="adam")
    stranger = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="does not own"):
        attach_prox(opt, ProxRule(L1(), 1.0, [stranger]))
    with pytest.raises(ValueError, match="dim"):
        attach_prox(opt, ProxRule(L1(), 1.0, "0.bias", dim=1), model=net)
    with pytest.raises(ValueError, match="atol"):
        sparsity_mask(net, atol=-1.0)
    with pytest.raises(TypeError, match="source"):
        sparsity_mask(3)
    with pytest.raises(ValueError, match="model"):
        freeze_mask(opt, {"0.weight": torch.ones(8, 6, dtype=torch.bool)})
    with pytest.raises(TypeError, match="bool"):
        freeze_mask(opt, [(net[0].weight, torch.ones(8, 6))])
    with pytest.raises(ValueError, match="shape"):
        freeze_mask(opt, [(net[0].weight, torch.ones(6, 8, dtype=torch.bool))])
    with pytest.raises(ValueError, match="lacks"):
        freeze_mask(opt, {"9.weight": torch.ones(8, 6, dtype=torch.bool)}, model=net)
    with pytest.raises(TypeError, match="z"):
        sparsemax(np.ones(3))
    with pytest.raises(TypeError, match="z"):
        sparsemax(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="dim"):
        sparsemax(torch.ones(3), dim=2)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("case", ["l1", "l21", "l21_conv_dim1", "scaled_l1"])
def test_fused_kernels_match_generic_prox(opt_name, case):
    # L1() / L21() with scalar weights take fused in-place kernels; weights given as an
    # array of ones take the functional's generic prox: the two must agree
    def build(fast):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 4, 3).double()
        lin = torch.nn.Linear(6, 5).double()
        if case == "l1":
            rule = ProxRule(L1() if fast else L1(weights=np.ones((5, 6))), 0.2, [lin.weight])
        elif case == "scaled_l1":
            rule = ProxRule(2.0 * L1() if fast else 2.0 * L1(weights=np.ones((5, 6))), 0.1, [lin.weight])
        elif case == "l21":
            rule = ProxRule(L21(axis=1) if fast else L21(axis=1, weights=np.ones(5)), 0.3, [lin.weight])
        else:
            rule = ProxRule(L21(axis=1) if fast else L21(axis=1, weights=np.ones(3)), 0.3, [conv.weight], dim=1)
        ps = [lin.weight, conv.weight]
        opt = torch.optim.SGD(ps, lr=0.3) if opt_name == "sgd" else torch.optim.Adam(ps, lr=0.05)
        attach_prox(opt, rule)
        g = torch.Generator().manual_seed(3)
        for _ in range(3):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            opt.step()
        return lin.weight.detach(), conv.weight.detach()

    for a, b in zip(build(True), build(False)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_adam_metric_l21_group_heuristic_formula():
    # L21 under the Adam metric: the group step is lr * lam / (sqrt(mean_group v_hat) + eps),
    # Adam's denominator at the group's mean second moment (RMS). Three steps; Adam's state
    # must not be touched by the hook.
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
    o = torch.optim.Adam([w], lr=0.1, eps=1e-2)
    attach_prox(o, ProxRule(L21(axis=1), 0.4, [w]))
    ref = torch.nn.Parameter(w.detach().clone())
    oref = torch.optim.Adam([ref], lr=0.1, eps=1e-2)
    for k in range(3):
        grad = torch.randn(4, 6, dtype=torch.float64) * torch.linspace(0.1, 2, 6)
        w.grad, ref.grad = grad.clone(), grad.clone()
        o.step()
        oref.step()
        torch.testing.assert_close(o.state[w]["exp_avg_sq"], oref.state[ref]["exp_avg_sq"], rtol=0, atol=0)
        v_hat = oref.state[ref]["exp_avg_sq"] / (1 - 0.999 ** (k + 1))
        tau = 0.1 * 0.4 / (v_hat.mean(dim=1, keepdim=True).sqrt() + 1e-2)
        with torch.no_grad():
            n = ref.norm(dim=1, keepdim=True)
            ref.mul_(torch.clamp(1 - tau / n, min=0))
        torch.testing.assert_close(w.detach(), ref.detach(), rtol=0, atol=1e-13)


def test_adam_metric_l21_rms_rule_shrinks_less_than_the_mean_denominator():
    # a group whose v_hat varies (1e-6 x3, 1): sqrt(mean v) = 0.50000 > mean(sqrt v) = 0.25075,
    # so the RMS rule's group step, and its shrinkage, is about half the mean denominator's
    # (the documented price of the RMS rule: weaker group sparsity)
    w = torch.nn.Parameter(torch.tensor([[3.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    o = torch.optim.Adam([w], lr=1.0, betas=(0.0, 0.0), eps=0.0)
    attach_prox(o, ProxRule(L21(axis=1), 0.1, [w]))
    w.grad = torch.tensor([[1.0, 1e-3, 1e-3, 1e-3]], dtype=torch.float64)
    o.step()  # beta1 = beta2 = 0: m = g, v = g^2, the Adam step is -sign(g)
    x = torch.tensor([[2.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    tau_rms, tau_mean = 0.1 / float(torch.tensor([1.0, 1e-6, 1e-6, 1e-6], dtype=torch.float64).mean().sqrt()), 0.1 / 0.25075
    torch.testing.assert_close(w.detach(), x * (1 - tau_rms / x.norm()), rtol=0, atol=1e-12)
    assert float(w.detach().norm()) > float((x * (1 - tau_mean / x.norm())).norm())


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_nuclear_norm_rule_is_singular_value_thresholding(opt_name):
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
    ref = torch.nn.Parameter(w.detach().clone())
    make = (lambda p: torch.optim.SGD(p, lr=0.2)) if opt_name == "sgd" else (lambda p: torch.optim.Adam(p, lr=0.2))
    o, oref = make([w]), make([ref])
    attach_prox(o, ProxRule(NuclearNorm(), 6.0, [w]))
    grad = torch.randn(5, 4, dtype=torch.float64)
    w.grad, ref.grad = grad.clone(), grad.clone()
    o.step()
    oref.step()
    if opt_name == "sgd":
        tau = 0.2 * 6.0
    else:  # the heuristic: the step at Adam's denominator of the parameter's mean second moment
        tau = 0.2 * 6.0 / (float((oref.state[ref]["exp_avg_sq"] / (1 - 0.999)).mean()) ** 0.5 + 1e-8)
    u, s, vh = torch.linalg.svd(ref.detach(), full_matrices=False)
    expected = (u * torch.clamp(s - tau, min=0)) @ vh
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)
    assert torch.linalg.matrix_rank(w.detach()) < 4  # the threshold did cut a singular value


def test_selection_forms_are_equivalent():
    # pattern, module type, module instance, explicit list and a generator select the same weights
    selections = [
        ("*.weight", True),
        (torch.nn.Linear, True),
        ((torch.nn.Linear, torch.nn.Conv2d), True),
        (None, False),  # explicit list, built below
        ("gen", False),
    ]
    results = []
    for sel, needs_model in selections:
        net = _mlp()
        if sel is None:
            sel = [net[0].weight, net[2].weight]
        elif sel == "gen":
            sel = (m.weight for m in net if isinstance(m, torch.nn.Linear))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        attach_prox(opt, ProxRule(L1(), 0.5, sel), model=net if needs_model else None)
        _train_step(net, opt)
        results.append([p.detach().clone() for p in net.parameters()])
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert torch.equal(a, b)
    # a module instance: all its parameters, biases included
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    attach_prox(opt, ProxRule(L1(), 100.0, net[0]))
    _train_step(net, opt)
    assert net[0].weight.count_nonzero() == 0 and net[0].bias.count_nonzero() == 0
    assert net[2].weight.count_nonzero() > 0
    with pytest.raises(TypeError, match="params"):
        ProxRule(L1(), 1.0, 3.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", [("l1", 1.5), ("l21", 1.5, 1), ("l21", 1.5, -1)])
@pytest.mark.parametrize("metric", ["scalar", "adam"])
def test_numba_kernels_match_the_torch_path(dtype, kind, metric):
    # CPU tensors in C order take the fused numba kernels, the others (CUDA, strided) the
    # tensor operations: the same map, to float32 rounding
    from tikhon.learned.weight_prox import (
        _fast_prox_numba,
        _fast_prox_torch,
        _NumpyView,
    )

    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 33, generator=g, dtype=dtype)
    x[2] = 0.0  # a zero group: factor 0, not 0 / 0
    x[4] *= 1e-3  # a group under the threshold
    d = None
    if metric == "adam":
        v = torch.rand(7, 33, generator=g, dtype=dtype) * torch.logspace(-6, 0, 33, dtype=dtype)
        d = (v, 1.3, 1e-3)
    thr = 0.05 if kind[0] == "l1" else 0.5
    a, b = x.clone(), x.clone()
    assert _fast_prox_numba(kind, a, thr, d, (_NumpyView(), _NumpyView()))
    _fast_prox_torch(torch, kind, b, thr, d)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert torch.equal(a == 0, b == 0)  # the same exact zeros (the sparsity pattern)
    assert 0 < int(a.count_nonzero()) < a.numel() - 33  # both shrunk to zero and kept
    assert (a[2] == 0).all() and (a[4] == 0).all()
    # a non-finite weight stays non-finite on both paths
    x[5, 3] = float("nan")
    a, b = x.clone(), x.clone()
    _fast_prox_numba(kind, a, thr, d, (_NumpyView(), _NumpyView()))
    _fast_prox_torch(torch, kind, b, thr, d)
    assert a[5, 3].isnan() and b[5, 3].isnan()


def test_numba_path_layouts_and_replaced_storage():
    from tikhon.learned.weight_prox import _fast_prox_numba, _NumpyView

    # strided or integer tensors go to the torch path; views are rebuilt when the memory changes
    view = _NumpyView()
    assert view.get(torch.ones(3, 4).t()) is None
    assert view.get(torch.ones(3, 4, dtype=torch.int64)) is None
    assert not _fast_prox_numba(("l1", 1.0), torch.ones(3, 4).t(), 0.1, None, (_NumpyView(), _NumpyView()))
    assert not _fast_prox_numba(("l21", 1.0, 0), torch.ones(3, 4), 0.1, None, (_NumpyView(), _NumpyView()))
    # a scalar parameter grouped along its "last axis" (L21(axis=-1)) is one group: the torch path
    s = torch.nn.Parameter(torch.tensor(2.0))
    opt = torch.optim.SGD([s], lr=1.0)
    attach_prox(opt, ProxRule(L21(axis=-1), 0.1, [s]))
    s.grad = torch.tensor(0.0)
    opt.step()
    assert float(s.detach()) == pytest.approx(1.9)
    # the hook itself: the write counts for autograd, and net.double() (new memory under the
    # same Parameter) is followed
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 4)
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    attach_prox(opt, ProxRule(L1(), 0.2, [lin.weight]))
    for dtype in (torch.float32, torch.float64):
        lin.to(dtype)
        lin.weight.grad = torch.ones(4, 5, dtype=dtype)
        before = lin.weight.detach().clone()
        version = lin.weight._version
        opt.step()
        assert lin.weight._version >= version + 2  # the SGD update and the prox
        torch.testing.assert_close(lin.weight.detach(), _soft(before - 0.5, 0.1), rtol=0, atol=1e-7)
