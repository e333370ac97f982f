"""TV-regularized few-view CT: tikhon's ``tv_reconstruction`` vs ODL and PyProximal.

The problem (issue 6): Shepp-Logan, 60 views over 180 degrees, 1% Gaussian
noise, min_x 0.5 ||A x - y||^2 + lam TV(x) subject to x >= 0. Each library
projects the same phantom with its own ray transform (all three are Joseph /
ASTRA 'linear'-type projectors on pixel-unit grids) and receives the same noise
array, so each solves the same physical problem; PSNR is always against the
phantom. Two comparisons:

* equal iterations (200): time and PSNR reached;
* equal PSNR: the time each needs to reach the PSNR that ODL reaches in 200
  iterations with its best steps (tau = 0.1/L, sigma = 10/L, from PEERS.md).
  tikhon is stopped by a callback that evaluates PSNR every 5 iterations; that
  cost is included in its time.
"""

from __future__ import annotations

import time

import numpy as np

from _timing import median_time

N_ANGLES = 60
NOISE = 0.01
LAM = 4.0  # near the best lam of a grid at 256^2 (tikhon sweep: 4.44); same model in all three
N_ITER = 200


def _problem(n):
    from tikhon.data import shepp_logan

    phantom = shepp_logan(n)
    angles = np.linspace(0, np.pi, N_ANGLES, endpoint=False)
    return phantom, angles


def _noise(shape, scale, seed=0):
    return NOISE * scale * np.random.default_rng(seed).standard_normal(shape)


def _psnr(x, ref):
    from tikhon.metrics import psnr

    return psnr(np.asarray(x, dtype=np.float64), ref)


# -- tikhon -------------------------------------------------------------------

def _tikhon_setup(phantom, angles):
    from tikhon.operators import Radon

    A = Radon(phantom.shape, angles)
    clean = A(phantom)
    y = clean + _noise(clean.shape, np.abs(clean).max())
    return A, y


def _tikhon_run(A, y, phantom, max_iter, target=None):
    import warnings

    from tikhon.solvers import tv_reconstruction

    callback = None
    if target is not None:
        counter = {"k": 0}

        def callback(state):
            counter["k"] += 1
            return counter["k"] % 5 == 0 and _psnr(state.x, phantom) >= target

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # tol=0: run exactly max_iter iterations, or until the PSNR callback stops it
        res = tv_reconstruction(A, y, LAM, tol=0.0, max_iter=max_iter, callback=callback)
    return res


# -- ODL ------------------------------------------------------------------------

def _odl_setup(phantom, angles):
    import odl
    import odl.functionals as fn
    from odl.applications import tomo

    n = phantom.shape[0]
    space = odl.uniform_discr([-n / 2, -n / 2], [n / 2, n / 2], phantom.shape, dtype="float32")
    n_det = int(np.ceil(np.hypot(*phantom.shape))) | 1
    apart = odl.nonuniform_partition(angles)
    dpart = odl.uniform_partition(-n_det / 2, n_det / 2, n_det)
    geometry = tomo.Parallel2dGeometry(apart, dpart)
    ray = tomo.RayTransform(space, geometry, impl="astra_cpu")
    x_true = space.element(phantom)
    clean = ray(x_true)
    data = clean + ray.range.element(_noise(clean.shape, np.abs(clean.asarray()).max()))
    grad = odl.Gradient(space)
    K = odl.BroadcastOperator(ray, grad)
    f = fn.SeparableSum(
        0.5 * fn.L2NormSquared(ray.range).translated(data),
        LAM * fn.GroupL1Norm(grad.range),
    )
    g = fn.IndicatorNonnegativity(space)
    L = odl.power_method_opnorm(K, maxiter=50)
    return space, K, f, g, L


def _odl_run(setup, n_iter, tau_scale=0.1, callback=None):
    import odl

    space, K, f, g, L = setup
    x = space.zero()
    cb = None if callback is None else (lambda v: callback(v.asarray()))
    odl.solvers.pdhg(x, g, f, K, niter=n_iter, tau=tau_scale / L, sigma=1.0 / (tau_scale * L),
                     callback=cb)
    return x.asarray()


# -- PyProximal ----------------------------------------------------------------------

def _pyproximal_setup(phantom, angles):
    import pylops
    import pyproximal

    n = phantom.shape[0]
    n_det = int(np.ceil(np.hypot(*phantom.shape))) | 1
    # PyLops documents thetas in degrees but forwards them to ASTRA, which reads radians
    ct = pylops.medical.CT2D(phantom.shape, 1.0, n_det, angles, engine="cpu", projector_type="linear",
                             dtype="float64")
    clean = (ct @ phantom.ravel()).reshape(N_ANGLES, n_det)
    y = clean + _noise(clean.shape, np.abs(clean).max())
    grad = pylops.Gradient(dims=phantom.shape, edge=True, kind="forward")
    K = pylops.VStack([ct, grad])
    l2 = pyproximal.L2(b=y.ravel())
    l21 = pyproximal.L21(ndim=2, sigma=LAM)
    g = pyproximal.VStack([l2, l21], nn=[y.size, grad.shape[0]])
    f = pyproximal.Box(lower=0.0)
    from scipy.sparse.linalg import svds

    L = float(svds(K, k=1, return_singular_vectors=False, random_state=0)[0])
    return n, K, f, g, L


def _pyproximal_run(setup, n_iter, tau_scale=0.1, callback=None):
    from pyproximal.optimization.primaldual import PrimalDual

    n, K, f, g, L = setup
    x0 = np.zeros(n * n)
    cb = None if callback is None else (lambda v: callback(v.reshape(n, n)))
    x = PrimalDual(f, g, K, x0, tau=tau_scale / L, mu=1.0 / (tau_scale * L), theta=1.0, niter=n_iter,
                   callback=cb)
    return x.reshape(n, n)


def _iterations_to_reach(runner, phantom, target, limit=400):
    """First iteration whose iterate reaches ``target`` PSNR, from one monitored run.

    The peers run a fixed number of iterations; the timed run afterwards uses
    exactly that many, without the monitoring callback.
    """
    reached = []

    def monitor(x):
        if not reached and _psnr(x, phantom) >= target:
            reached.append(monitor.k)
        monitor.k += 1

    monitor.k = 1
    runner(limit, callback=monitor)
    return reached[0] if reached else None


def run(quick=False):
    n = 128 if quick else 256
    repeats = 1 if quick else 3
    phantom, angles = _problem(n)
    problem = f"TV-CT {n}^2, {N_ANGLES} views, 1% noise, lam={LAM:g}"
    rows = []

    A, y = _tikhon_setup(phantom, angles)
    t_tik, s_tik, res = median_time(lambda: _tikhon_run(A, y, phantom, N_ITER), repeats=repeats)
    psnr_tik = _psnr(res.x, phantom)

    peers = {}
    try:
        odl_setup = _odl_setup(phantom, angles)
        peers["ODL pdhg (ASTRA CPU)"] = (lambda k, callback=None: _odl_run(odl_setup, k, callback=callback))
    except Exception as exc:  # missing or broken peer: report, do not crash
        rows.append({"problem": problem, "peer": "ODL pdhg", "note": f"unavailable: {exc!r}"})
    try:
        pp_setup = _pyproximal_setup(phantom, angles)
        peers["PyProximal PrimalDual (pylops CT2D)"] = (
            lambda k, callback=None: _pyproximal_run(pp_setup, k, callback=callback))
    except Exception as exc:
        rows.append({"problem": problem, "peer": "PyProximal", "note": f"unavailable: {exc!r}"})

    target = None
    for name, runner in peers.items():
        t_peer, s_peer, x_peer = median_time(lambda: runner(N_ITER), repeats=repeats)
        psnr_peer = _psnr(x_peer, phantom)
        if target is None:
            target = psnr_peer
        rows.append({
            "problem": f"{problem}, {N_ITER} iterations", "peer": name,
            "tikhon_s": t_tik, "tikhon_spread": s_tik, "peer_s": t_peer, "peer_spread": s_peer,
            "tikhon_accuracy": f"PSNR {psnr_tik:.2f} dB", "peer_accuracy": f"PSNR {psnr_peer:.2f} dB",
            "note": "peers with tau=0.1/L, sigma=10/L; tikhon with its default balanced steps",
        })

    if target is not None:
        t_tik_eq, s_tik_eq, res_eq = median_time(
            lambda: _tikhon_run(A, y, phantom, 5000, target=target), repeats=repeats)
        for name, runner in peers.items():
            k = _iterations_to_reach(runner, phantom, target)
            if k is None:
                rows.append({"problem": f"{problem}, to PSNR {target:.2f} dB", "peer": name,
                             "note": "peer did not reach the target in 400 iterations"})
                continue
            t_peer, s_peer, x_peer = median_time(lambda: runner(k), repeats=repeats)
            rows.append({
                "problem": f"{problem}, to PSNR {target:.2f} dB", "peer": name,
                "tikhon_s": t_tik_eq, "tikhon_spread": s_tik_eq, "peer_s": t_peer, "peer_spread": s_peer,
                "tikhon_accuracy": f"{res_eq.n_iter} it, {_psnr(res_eq.x, phantom):.2f} dB",
                "peer_accuracy": f"{k} it, {_psnr(x_peer, phantom):.2f} dB",
                "note": "target = ODL's PSNR at 200 iterations",
            })
    return rows


if __name__ == "__main__":
    t0 = time.perf_counter()
    for row in run(quick=True):
        print(row)
    print(f"{time.perf_counter() - t0:.1f} s")
