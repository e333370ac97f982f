"""TVWeightNet: shapes, determinism, committed weights, a tiny training run, weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tikhon.learned.tv_weights import (  # noqa: E402
    DEFAULT_WEIGHTS,
    TVWeightNet,
    elastic_loss,
    gradient_magnitude,
    learned_wtv_reconstruction,
    load_weights,
    make_training_set,
    save_weights,
    train_tv_weight_net,
    weights_from_network,
)
from tikhon.data import shepp_logan, simulate_sinogram  # noqa: E402
from tikhon.operators import Gradient  # noqa: E402
from tikhon.solvers import default_tv_lam, space_variant_weights, tv_reconstruction  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_forward_shapes_any_size():
    torch.manual_seed(0)
    net = TVWeightNet(width=4)
    for h, w in [(32, 32), (30, 27), (64, 48)]:
        out = net(torch.randn(2, 1, h, w))
        assert out.shape == (2, 2, h, w)
        assert (out[:, 1] >= 0).all()
    with pytest.raises(ValueError, match="input"):
        net(torch.randn(1, 3, 8, 8))
    n_params = sum(p.numel() for p in TVWeightNet(width=16).parameters())
    assert 1e5 <= n_params <= 3e5


def test_gradient_magnitude_matches_operator():
    x = np.random.default_rng(0).random((12, 9))
    expected = np.hypot(*Gradient(x.shape)(x))
    got = gradient_magnitude(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_deterministic_init_and_predict():
    torch.manual_seed(3)
    a = TVWeightNet(width=4)
    torch.manual_seed(3)
    b = TVWeightNet(width=4)
    img = np.random.default_rng(1).random((20, 20))
    ia, ga = a.predict(img)
    ib, gb = b.predict(img)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(ga, gb)
    # predict works in the input's units: scaling the input scales both outputs
    ic, gc = a.predict(10 * img)
    np.testing.assert_allclose(ic, 10 * ia, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gc, 10 * ga, rtol=1e-5, atol=1e-6)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = TVWeightNet(width=4)
    path = tmp_path / "net.safetensors"
    save_weights(net, path, meta={"beta": 1.0, "seed": 3})
    # safetensors: tensors and a JSON header, no pickle
    from safetensors.torch import load_file

    assert set(load_file(path)) == set(net.state_dict())
    loaded = load_weights(path)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))
    assert loaded.meta["beta"] == 1.0 and loaded.meta["seed"] == 3 and loaded.meta["width"] == 4
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.safetensors")


def test_committed_weights_load_and_help():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 5e6
    assert DEFAULT_WEIGHTS.suffix == ".safetensors"
    net = TVWeightNet.pretrained()
    # held-out phantoms from the training distribution (128 px, 20-60 views)
    fbp, truth = make_training_set(2, size=128, angles=(20, 60), rng=123)
    out = net(torch.from_numpy(fbp)).detach()
    # the trained network improves on its input (FBP) for held-out phantoms
    err_net = torch.mean((out[:, :1] - torch.from_numpy(truth)) ** 2)
    err_fbp = torch.mean((torch.from_numpy(fbp) - torch.from_numpy(truth)) ** 2)
    assert err_net < 0.7 * err_fbp
    w = weights_from_network(net, fbp[0, 0], p=0.5)
    assert w.shape == (128, 128) and np.all((w > 0) & (w <= 1))
    w_img = weights_from_network(net, fbp[0, 0], p=0.5, source="image")
    assert w_img.shape == (128, 128)
    with pytest.raises(ValueError, match="source"):
        weights_from_network(net, fbp[0, 0], source="edges")


def test_tiny_training_run_decreases_loss():
    fbp, truth = make_training_set(8, size=32, angles=(20, 30), rng=0)
    net, losses = train_tv_weight_net(fbp, truth, beta=1.0, width=4, epochs=6, batch_size=4, lr=3e-3, seed=0)
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0]
    # same seed, same result
    net2, losses2 = train_tv_weight_net(fbp, truth, beta=1.0, width=4, epochs=6, batch_size=4, lr=3e-3, seed=0)
    assert losses2 == losses
    with pytest.raises(ValueError, match="beta"):
        train_tv_weight_net(fbp, truth, beta=-1.0, epochs=1)


def test_elastic_loss_terms():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 4:, :] = 1.0
    out = torch.zeros(1, 2, 8, 8)
    image_only = elastic_loss(out, target, beta=0.0)
    assert float(image_only) == pytest.approx(0.5)
    with_grad = elastic_loss(out, target, beta=2.0)
    # |grad target| is 1 on one row of 8 pixels out of 64
    assert float(with_grad) == pytest.approx(0.5 + 2.0 * 8 / 64, rel=1e-5)


def test_tensor_input_stays_on_device_and_matches_numpy(no_host_transfers):
    net = TVWeightNet.pretrained()
    fbp, _ = make_training_set(1, size=64, angles=(30, 30), rng=5)
    img = fbp[0, 0].astype(np.float64)
    ref_image, ref_grad = net.predict(img)
    ref_w = weights_from_network(net, img, p=0.5)
    t = torch.from_numpy(img)
    with no_host_transfers():
        image, grad = net.predict(t)
        w = weights_from_network(net, t, p=0.5)
        w32 = weights_from_network(net, t.float(), p=0.5)
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float64
    assert w32.dtype == torch.float32
    # the network runs in float32 either way; the scale (a percentile) must agree exactly
    np.testing.assert_allclose(image.numpy(), ref_image, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-5)
    assert TVWeightNet._scale(t) == pytest.approx(TVWeightNet._scale(img), rel=1e-12)
    with pytest.raises(TypeError, match="fbp_image"):
        net.predict(t.to(torch.int32))
    with pytest.raises(ValueError, match="fbp_image contains NaN or inf"):
        net.predict(torch.full((8, 8), float("nan")))


@pytest.mark.filterwarnings("ignore::tikhon.solvers.ConvergenceWarning")  # a few iterations suffice
def test_learned_wtv_reconstruction_is_the_pipeline():
    angles = np.linspace(0.0, np.pi, 16, endpoint=False)
    y, A = simulate_sinogram(shepp_logan(32), angles, level=0.01, rng=0, return_operator=True)
    res = learned_wtv_reconstruction(A, y, max_iter=50)
    net = TVWeightNet.pretrained()
    image, grad = net.predict(A.fbp(y))
    w = space_variant_weights(grad, kind="gradient")
    ref = tv_reconstruction(A, y, default_tv_lam(y, weighted=True), weights=w, x0=np.maximum(image, 0),
                            max_iter=50)
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.n_iter == ref.n_iter and res.status == ref.status
    # a tensor sinogram runs on its device, the pretrained network included
    t = learned_wtv_reconstruction(A, torch.from_numpy(y), lam=0.5, max_iter=5)
    assert isinstance(t.x, torch.Tensor) and t.info["lam"] == 0.5
