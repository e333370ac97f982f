"""Peer comparison, tomography operators: tikhon's Radon vs ASTRA, scikit-image, PyLops.

Problem: 2-D parallel beam, 180 angles over 180 degrees, n x n image, float32,
detector of ceil(n * sqrt(2)) bins of one pixel. Rows time the forward
projection and the backprojection (adjoint) separately.

- ASTRA's CPU 'linear' projector is Joseph's method, the same discretisation
  as tikhon; compared in ASTRA's geometry (rotation about the geometric centre).
- scikit-image's ``radon`` (forward only) in its own geometry (centre pixel
  ``n // 2``, tikhon's default). Its ``iradon(filter_name=None)`` stands in for
  a backprojection: it is the adjoint only up to the factor pi / (2 n_angles)
  and interpolation error (not matched), and it is restricted to square output.
- PyLops' ``CT2D`` wraps ASTRA (same projector); its documentation says
  ``thetas`` in degrees, but it passes them to ASTRA unchanged (radians), so
  radians are passed here.

Accuracy: forward rows give the relative L2 error against the analytic
sinogram of a disk (2 sqrt(r^2 - t^2)); adjoint rows give the dot-test error
``|<Ax, y> - <x, B y>| / |<Ax, y>|`` of the pair (forward, backprojection).
"""

from __future__ import annotations

import numpy as np

from _timing import median_time

ANGLES = np.linspace(0.0, np.pi, 180, endpoint=False)


def _disk(n, radius, center, sub=4):
    off = (np.arange(sub) + 0.5) / sub - 0.5
    ii, jj = np.mgrid[:n, :n].astype(np.float64)
    img = np.zeros((n, n))
    for a in off:
        for b in off:
            img += (ii + a - center[0]) ** 2 + (jj + b - center[1]) ** 2 <= radius ** 2
    return (img / sub ** 2).astype(np.float32)


def _disk_error(sino, n_det, det_center, radius):
    t = np.arange(n_det) - det_center
    exact = 2 * np.sqrt(np.maximum(radius ** 2 - t ** 2, 0.0))
    exact = np.broadcast_to(exact, sino.shape)
    return float(np.linalg.norm(sino - exact) / np.linalg.norm(exact))


def _dot_error(fwd, back, x, y):
    lhs = float(np.vdot(fwd(x).astype(np.float64).ravel(), y.astype(np.float64).ravel()))
    rhs = float(np.vdot(x.astype(np.float64).ravel(), back(y).astype(np.float64).ravel()))
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs))


def _row(problem, peer, t, p=None, t_acc="", p_acc="", note=""):
    return {
        "problem": problem, "peer": peer,
        "tikhon_s": t[0], "tikhon_spread": t[1],
        "peer_s": None if p is None else p[0], "peer_spread": None if p is None else p[1],
        "tikhon_accuracy": t_acc, "peer_accuracy": p_acc, "note": note,
    }


def _astra_pair(n, n_det):
    import astra

    vg = astra.create_vol_geom(n, n)
    pg = astra.create_proj_geom("parallel", 1.0, n_det, ANGLES)
    pid = astra.create_projector("linear", pg, vg)

    def fwd(x):
        sid, s = astra.create_sino(x, pid)
        astra.data2d.delete(sid)
        return s

    def back(y):
        bid, b = astra.create_backprojection(y, pid)
        astra.data2d.delete(bid)
        return b

    return fwd, back, lambda: astra.projector.delete(pid)


def _rows_for_size(n, repeats):
    from tikhon.operators import Radon

    rng = np.random.default_rng(0)
    x = rng.random((n, n)).astype(np.float32)
    radius = 0.35 * n
    rows = []

    # scikit-image geometry (tikhon's default)
    A = Radon((n, n), ANGLES)
    y = A(x)
    dot = _dot_error(A.forward, A.adjoint, x, rng.standard_normal(A.out_shape).astype(np.float32))
    disk_sk = _disk(n, radius, A.center)
    t_fwd = median_time(lambda: A(x), repeats=repeats)
    t_adj = median_time(lambda: A.T(y), repeats=repeats)
    t_err = _disk_error(A(disk_sk), A.n_det, A.det_center, radius)

    # ASTRA geometry
    G = Radon((n, n), ANGLES, center=((n - 1) / 2, (n - 1) / 2), det_center=(A.n_det - 1) / 2)
    disk_g = _disk(n, radius, G.center)
    tg_fwd = median_time(lambda: G(x), repeats=repeats)
    tg_adj = median_time(lambda: G.T(y), repeats=repeats)
    tg_err = _disk_error(G(disk_g), G.n_det, G.det_center, radius)
    dot_g = _dot_error(G.forward, G.adjoint, x, rng.standard_normal(G.out_shape).astype(np.float32))

    fprob = f"Radon forward {n}^2 x 180 float32"
    bprob = f"Radon adjoint {n}^2 x 180 float32"
    try:
        fwd, back, close = _astra_pair(n, G.n_det)
        try:
            p_fwd = median_time(lambda: fwd(x), repeats=repeats)
            p_adj = median_time(lambda: back(y), repeats=repeats)
            p_err = _disk_error(fwd(disk_g), G.n_det, G.det_center, radius)
            p_dot = _dot_error(fwd, back, x, rng.standard_normal(G.out_shape).astype(np.float32))
            diff = float(np.linalg.norm(G(x) - fwd(x)) / np.linalg.norm(fwd(x)))
        finally:
            close()
        note = (f"ASTRA CPU 'linear' (single-threaded; tikhon uses numba's threads), same geometry; "
                f"outputs differ by {diff:.1e}")
        rows.append(_row(fprob, "astra linear", tg_fwd, p_fwd, f"disk rel. err {tg_err:.2e}",
                         f"disk rel. err {p_err:.2e}", note))
        rows.append(_row(bprob, "astra linear", tg_adj, p_adj, f"dot test {dot_g:.1e}",
                         f"dot test {p_dot:.1e}", note))
    except ImportError:
        rows.append(_row(fprob, "astra linear", tg_fwd, note="astra-toolbox not installed"))
        rows.append(_row(bprob, "astra linear", tg_adj, note="astra-toolbox not installed"))

    try:
        from skimage.transform import iradon, radon

        deg = np.degrees(ANGLES)
        p_fwd = median_time(lambda: radon(x, deg, circle=False), repeats=max(1, repeats // 2))
        p_err = _disk_error(radon(disk_sk, deg, circle=False).T, A.n_det, A.det_center, radius)
        rows.append(_row(fprob, "skimage radon", t_fwd, p_fwd, f"disk rel. err {t_err:.2e}",
                         f"disk rel. err {p_err:.2e}", "scikit-image geometry (tikhon default)"))
        scale = 2 * len(ANGLES) / np.pi

        def sk_back(s):
            return scale * iradon(s.T, deg, output_size=n, circle=False, filter_name=None)

        p_adj = median_time(lambda: sk_back(y), repeats=max(1, repeats // 2))
        p_dot = _dot_error(lambda v: radon(v, deg, circle=False).T, sk_back, x,
                           rng.standard_normal(A.out_shape).astype(np.float32))
        rows.append(_row(bprob, "skimage iradon(filter_name=None)", t_adj, p_adj, f"dot test {dot:.1e}",
                         f"dot test {p_dot:.1e}",
                         "not an adjoint: unfiltered backprojection, rescaled by 2 n_angles / pi"))
    except ImportError:
        rows.append(_row(fprob, "skimage radon", t_fwd, note="scikit-image not installed"))

    try:
        from pylops.medical import CT2D

        op = CT2D((n, n), 1.0, G.n_det, ANGLES, engine="cpu", projector_type="linear")
        op.matvec(x.ravel())
        p_fwd = median_time(lambda: op.matvec(x.ravel()), repeats=repeats)
        p_adj = median_time(lambda: op.rmatvec(y.ravel()), repeats=repeats)
        p_err = _disk_error(op.matvec(disk_g.ravel()).reshape(G.out_shape), G.n_det, G.det_center, radius)
        note = ("wraps ASTRA; thetas passed in radians (PyLops documents degrees but "
                "forwards them to ASTRA unchanged)")
        rows.append(_row(fprob, "pylops CT2D", tg_fwd, p_fwd, f"disk rel. err {tg_err:.2e}",
                         f"disk rel. err {p_err:.2e}", note))
        rows.append(_row(bprob, "pylops CT2D", tg_adj, p_adj, note=note))
    except Exception as exc:  # ImportError, or ASTRA missing behind PyLops
        rows.append(_row(fprob, "pylops CT2D", tg_fwd, note=f"pylops CT2D unavailable: {exc!r}"[:120]))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows for the peer-comparison table (see compare_peers.py)."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    sizes = (256,) if quick else (256, 512)
    rows = []
    for n in sizes:
        rows.extend(_rows_for_size(n, repeats=3 if quick else 7))
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_peers import format_table

    print(format_table(run(quick="--quick" in sys.argv)))
