"""asv suites for the unfolded networks (torch on CPU, one thread).

``UnfoldedForwardSuite``: the forward pass of a 10-layer
:class:`~tikhon.learned.UnfoldedISTA` on a batch of 1000 signals (n = 300,
m = 150, float64), against ten plain ``ProximalGradient.step`` calls on the
same batch and the same batched operator; the target is a ratio of at most
1.2. Both with and without autograd (``no_grad``: inference; ``grad``: the
graph is recorded, as in training). ``UnfoldedTrainingSuite``: one Adam step
(forward, backward, update) of a 10-layer network on a batch of 200, and a
short layer-wise :func:`~tikhon.learned.train_unfolded` run.

Run with ``asv run --python=same --quick --bench bench_unfolded``. Run as a
script (``python tests/benchmarks/bench_unfolded.py``) it prints the
forward-pass ratio measured in one process, the calls alternated.
"""

import numpy as np

N, M, BATCH, T = 300, 150, 1000, 10


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is an optional extra
        raise NotImplementedError(f"torch not installed: {exc}") from exc
    torch.set_num_threads(1)
    return torch


def _problem(torch, batch=BATCH, seed=0):
    from tikhon.operators import MatrixOperator

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((M, N))
    A /= np.linalg.norm(A, axis=0)
    X = rng.standard_normal((batch, N)) * (rng.random((batch, N)) < 0.1)
    Y = X @ A.T + 0.01 * rng.standard_normal((batch, M))
    return MatrixOperator(A), torch.from_numpy(X), torch.from_numpy(Y)


def _plain_steps(net, Y, torch):
    """Ten plain solver steps on the batch (the same solver and operator the layers use)."""
    solver = net.solver(Y)
    state = solver.init(torch.zeros((Y.shape[0], N), dtype=Y.dtype))
    for _ in range(T):
        state = solver.step(state, step=net.step0, lam=net.lam)
    return state.x


class UnfoldedForwardSuite:
    params = ["no_grad", "grad"]
    param_names = ["autograd"]

    def setup(self, autograd):
        from tikhon.learned import UnfoldedISTA

        torch = self.torch = _torch()
        A, _, self.Y = _problem(torch)
        self.net = UnfoldedISTA(A, 0.05, T)
        self.grad = autograd == "grad"
        self.time_unfolded(autograd)
        self.time_plain_steps(autograd)

    def time_unfolded(self, autograd):
        with self.torch.set_grad_enabled(self.grad):
            self.net(self.Y)

    def time_plain_steps(self, autograd):
        with self.torch.set_grad_enabled(self.grad):
            _plain_steps(self.net, self.Y, self.torch)

    def peakmem_unfolded(self, autograd):
        with self.torch.set_grad_enabled(self.grad):
            self.net(self.Y)


class UnfoldedTrainingSuite:
    params = ["UnfoldedISTA", "UnfoldedIHT"]
    param_names = ["network"]

    def setup(self, network):
        import tikhon.learned as tl

        torch = self.torch = _torch()
        A, self.X, self.Y = _problem(torch, batch=200, seed=1)
        arg = 0.05 if network == "UnfoldedISTA" else 0.02
        self.make = lambda: getattr(tl, network)(A, arg, T)
        self.net = self.make()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.train = tl.train_unfolded
        self.time_adam_step(network)

    def time_adam_step(self, network):
        self.opt.zero_grad()
        d = self.net(self.Y) - self.X
        (d * d).sum(dim=1).mean().backward()
        self.opt.step()

    def time_train_unfolded_layerwise(self, network):
        # 10 stages x 1 epoch x 2 batches of 100
        self.train(self.make(), (self.Y, self.X), "supervised", epochs=1, batch_size=100, rng=0,
                   progress=False)


if __name__ == "__main__":
    import time

    torch = _torch()
    from tikhon.learned import UnfoldedISTA

    A, _, Y = _problem(torch)
    net = UnfoldedISTA(A, 0.05, T)
    for grad in (False, True):
        t_net, t_plain = [], []
        with torch.set_grad_enabled(grad):
            for _ in range(3):
                net(Y)
                _plain_steps(net, Y, torch)
            for i in range(20):
                # alternate which runs first: neither gets the warmer caches every time
                pair = [(net, t_net), (None, t_plain)]
                for which, times in (pair if i % 2 else pair[::-1]):
                    t0 = time.perf_counter()
                    if which is None:
                        _plain_steps(net, Y, torch)
                    else:
                        net(Y)
                    times.append(time.perf_counter() - t0)
        a, b = np.median(t_net), np.median(t_plain)
        print(f"autograd={grad}: unfolded {a * 1e3:.2f} ms, 10 plain steps {b * 1e3:.2f} ms, "
              f"ratio {a / b:.3f}")
