"""asv suites for the learned layer (torch on CPU, one thread).

``TVWeightNetSuite``: the pretrained :class:`~tikhon.learned.TVWeightNet`'s
``predict`` (normalise, U-Net forward, scale back) on 128^2 and 256^2 images,
in float32 (the shipped weights) and float64 (the same weights cast).
``LearnedWeightsSuite``: learned space-variant TV weights end to end, from a
60-view sinogram: FBP, the network, then
:func:`~tikhon.solvers.space_variant_weights`, from a NumPy sinogram (numba
FBP) or a torch CPU tensor (all torch).
``TrainingStepSuite``: one Adam step of the elastic loss (forward, backward,
optimizer step) on a batch of 4 patches.
``RadonTorchSuite``: the Radon transform on torch CPU tensors (through the
numba kernels, and through :mod:`tikhon.operators._radon_torch`, the path CUDA
tensors take): forward, matched adjoint and one autograd forward + backward,
180 angles.

Run with ``asv run --python=same --quick --bench bench_learned``; set
``ASV_SKIP_SLOW=1`` to skip the float64 256^2 cases and the 256^2 torch-ops
Radon (the slowest: float64 convolutions and the torch Radon on CPU). Torch is imported in ``setup``
(without torch the suites are skipped), torch uses one thread, and the
first calls (oneDNN kernel selection, numba compilation or cache load, the
Radon tables for the tensor's device and dtype) happen in ``setup``.
"""

import os

import numpy as np

_ANGLES_FEW = np.linspace(0.0, np.pi, 60, endpoint=False)
_ANGLES_FULL = np.linspace(0.0, np.pi, 180, endpoint=False)


def _torch():
    """torch with one intra-op thread; a missing torch skips the benchmark."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is an optional extra
        raise NotImplementedError(f"torch not installed: {exc}") from exc
    torch.set_num_threads(1)
    return torch


def _pin_threads(torch):
    """One torch thread again, at the end of ``setup``.

    numba's OpenMP threading layer shares the OpenMP runtime with torch: when
    the first parallel numba call (the Radon kernels, FBP, the gradient) comes
    after torch has started its own pool, launching numba's pool sets the
    runtime's thread count to numba's, which torch then uses as its own.
    """
    torch.set_num_threads(1)


def _skip_slow(is_slow):
    if is_slow and os.environ.get("ASV_SKIP_SLOW"):
        raise NotImplementedError("slow benchmark skipped (ASV_SKIP_SLOW)")


def _pretrained(torch, dtype):
    from tikhon.learned import TVWeightNet

    net = TVWeightNet.pretrained()
    return net.to(getattr(torch, dtype))


def _fbp_image(n, angles, dtype, seed=0):
    """FBP of a noisy few-view sinogram of a random-ellipse phantom, and its operator."""
    from tikhon.operators import Radon

    from tikhon.data import random_ellipses

    rng = np.random.default_rng(seed)
    A = Radon((n, n), angles)
    x = random_ellipses(n, rng).astype(dtype)
    y = A(x)
    y = (y + 0.01 * np.abs(y).max() * rng.standard_normal(y.shape)).astype(dtype)
    return A, y, A.fbp(y)


class TVWeightNetSuite:
    """``TVWeightNet.predict`` on one FBP image (pretrained weights, eval mode, no grad)."""

    params = ([128, 256], ["float32", "float64"])
    param_names = ["n", "dtype"]
    timeout = 120

    def setup(self, n, dtype):
        _skip_slow(n >= 256 and dtype == "float64")
        torch = _torch()
        self.net = _pretrained(torch, dtype)
        _, _, self.fbp = _fbp_image(n, _ANGLES_FEW, dtype)
        self.net.predict(self.fbp)  # oneDNN picks its convolution kernels on the first call
        _pin_threads(torch)

    def time_predict(self, n, dtype):
        self.net.predict(self.fbp)

    def peakmem_predict(self, n, dtype):
        self.net.predict(self.fbp)


class LearnedWeightsSuite:
    """Learned TV weights from a 60-view sinogram: FBP -> TVWeightNet -> space-variant weights.

    ``backend="numpy"``: the sinogram is a NumPy array (numba FBP, the network on
    a tensor copy, NumPy weights); ``backend="torch"``: a CPU tensor, and every
    step stays in torch (the path a CUDA tensor takes).
    """

    params = ([128, 256], ["float32", "float64"], ["numpy", "torch"])
    param_names = ["n", "dtype", "backend"]
    timeout = 120

    def setup(self, n, dtype, backend):
        _skip_slow(n >= 256 and dtype == "float64")
        torch = _torch()
        from tikhon.learned import weights_from_network

        self.weights_from_network = weights_from_network
        self.net = _pretrained(torch, dtype)
        self.A, self.y, _ = _fbp_image(n, _ANGLES_FEW, dtype)
        if backend == "torch":
            self.y = torch.from_numpy(self.y)
        self._run()  # numba or torch FFT plans, oneDNN kernels, the Radon tables
        _pin_threads(torch)

    def _run(self):
        return self.weights_from_network(self.net, self.A.fbp(self.y), source="gradient")

    def time_learned_weights(self, n, dtype, backend):
        self._run()

    def peakmem_learned_weights(self, n, dtype, backend):
        self._run()


class TrainingStepSuite:
    """One training step of TVWeightNet: elastic loss, backward, Adam step; batch of 4 patches."""

    params = ([64, 128], ["float32", "float64"])
    param_names = ["patch", "dtype"]
    timeout = 120

    def setup(self, patch, dtype):
        _skip_slow(patch >= 128 and dtype == "float64")
        torch = _torch()
        from tikhon.learned import TVWeightNet, elastic_loss

        from tikhon.data import random_ellipses

        torch.manual_seed(0)
        tdtype = getattr(torch, dtype)
        self.net = TVWeightNet(width=16).to(tdtype).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = elastic_loss
        # random-ellipse images and noisy copies: the cost hardly depends on the
        # values, but realistic inputs keep the LeakyReLU branches mixed
        gen = np.random.default_rng(0)
        truth = np.stack([random_ellipses(patch, gen) for _ in range(4)])[:, None]
        noisy = truth + 0.05 * gen.standard_normal(truth.shape)
        self.xb = torch.from_numpy(noisy).to(tdtype)
        self.yb = torch.from_numpy(truth).to(tdtype)
        self._step()  # allocates Adam's moments and warms oneDNN (forward and backward)
        _pin_threads(torch)

    def _step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.net(self.xb), self.yb, beta=1.0)
        loss.backward()
        self.opt.step()
        return loss

    def time_train_step(self, patch, dtype):
        self._step()

    def peakmem_train_step(self, patch, dtype):
        self._step()


class RadonTorchSuite:
    """Radon transform on torch CPU tensors, 180 angles, default detector.

    ``route``: "numba" is what torch CPU tensors get (the numba kernels on
    zero-copy views); "torch-ops" is the device-agnostic path CUDA tensors take.
    """

    params = ([128, 256], ["float32", "float64"], ["numba", "torch-ops"])
    param_names = ["n", "dtype", "route"]
    timeout = 120

    def setup(self, n, dtype, route):
        _skip_slow(n >= 256 and (dtype == "float64" or route == "torch-ops"))
        torch = _torch()
        from tikhon.operators import Radon

        self.torch = torch
        self.A = Radon((n, n), _ANGLES_FULL)
        self.A._numba_on_torch_cpu = route == "numba"
        gen = torch.Generator().manual_seed(0)
        tdtype = getattr(torch, dtype)
        self.x = torch.rand((n, n), generator=gen, dtype=tdtype)
        self.y = self.A(self.x)  # builds and caches the (device, dtype) tables
        self.A.T(self.y)
        self.xg = self.x.clone().requires_grad_(True)
        self._autograd()
        _pin_threads(torch)

    def _autograd(self):
        # the loss a learned reconstruction would backpropagate: 0.5 ||A x - y||^2
        r = self.A(self.xg) - self.y
        (0.5 * (r * r).sum()).backward()
        self.xg.grad = None

    def time_forward(self, n, dtype, route):
        self.A(self.x)

    def time_adjoint(self, n, dtype, route):
        self.A.T(self.y)

    def time_autograd_forward_backward(self, n, dtype, route):
        self._autograd()

    def peakmem_forward(self, n, dtype, route):
        self.A(self.x)

    def peakmem_adjoint(self, n, dtype, route):
        self.A.T(self.y)


if __name__ == "__main__":  # quick look without asv (medians, noisy shared machine)
    import itertools
    import time

    def _median_ms(fn, *args, repeats=5):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e3

    for cls in (TVWeightNetSuite, LearnedWeightsSuite, TrainingStepSuite, RadonTorchSuite):
        for args in itertools.product(*cls.params):
            s = cls()
            label = " ".join(map(str, args))
            try:
                s.setup(*args)
            except NotImplementedError as exc:
                print(f"{cls.__name__} {label}: {exc}")
                continue
            for name in sorted(a for a in dir(cls) if a.startswith("time_")):
                ms = _median_ms(getattr(s, name), *args)
                print(f"{cls.__name__} {label} {name[5:]}: {ms:.2f} ms")
