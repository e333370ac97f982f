"""Torch implementation of :class:`tikhon.operators.Radon` (any device).

The same discretisation as the numba kernels (Joseph's method, see
:mod:`tikhon.operators._kernels.radon_numba`), vectorised over chunks of
angles: every sample position, index and weight of a chunk is one tensor
expression, and the samples are gathered with ``take`` from the zero-padded,
flattened image (or sinogram). As in the kernels, both directions evaluate the
positions ``c[a, m] + gamma[a] * k`` with the same operations and the adjoint
derives its weights from ``floor`` of those positions, so the float32 maps are
transposes of each other up to summation rounding. Nothing leaves the input's
device; the tables are built once per (device, dtype) and cached on the
operator. Imported only when a tensor reaches the operator.
"""

from __future__ import annotations

import numpy as np

from tikhon._core.arrays import require_torch
from tikhon.operators._kernels.radon_numba import IMG_PAD, SINO_PAD

# elements of the largest temporary per chunk (a few of them live at once)
_CHUNK_ELEMENTS = 1 << 21


def _tables(op, device, dtype):
    torch = require_torch()
    key = (str(device), dtype)
    t = op._torch_tables.get(key)
    if t is None:
        def tensor(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

        t = {}
        for family, sel in (("rows", op._row_angles), ("cols", op._col_angles)):
            n_lines = op.image_shape[0] if family == "rows" else op.image_shape[1]
            c = op._alpha[sel, None] + op._beta[sel, None] * np.arange(n_lines)
            t[family] = {
                "sel": torch.as_tensor(sel, dtype=torch.long, device=device),
                "c": tensor(c),
                "gamma": tensor(op._gamma[sel]),
                "inv_gamma": tensor(op._inv_gamma[sel]),
                "w": tensor(op._weight[sel]),
                "size": int(sel.size),
            }
        m = max(op.image_shape + (op.n_det,))
        t["ar"] = torch.arange(m, dtype=dtype, device=device)
        op._torch_tables[key] = t
    return t


def _chunks(n, per_item):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_item))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _forward_family(work, tab, ar, n_det):
    """Sinogram rows (n_sel, n_det) of one family; ``work`` is (n_lines, length)."""
    torch = require_torch()
    n_lines, length = work.shape
    stride = length + 2 * IMG_PAD
    flat = torch.nn.functional.pad(work, (IMG_PAD, IMG_PAD)).reshape(-1)
    ks = ar[:n_det].view(1, 1, -1)
    line_start = (torch.arange(n_lines, device=work.device) * stride + IMG_PAD).view(1, -1, 1)
    out = []
    for a0, a1 in _chunks(tab["size"], n_lines * n_det):
        p = tab["c"][a0:a1].unsqueeze(2) + tab["gamma"][a0:a1].view(-1, 1, 1) * ks
        fl = torch.floor(p)
        f = p - fl
        idx = fl.clamp_(-IMG_PAD, length).long() + line_start
        left = flat.take(idx)
        samples = left + f * (flat.take(idx + 1) - left)
        out.append(samples.sum(dim=1) * tab["w"][a0:a1].view(-1, 1))
    return torch.cat(out, dim=0)


def _adjoint_family(sino_rows, tab, ar, n_lines, length, n_extra):
    """Working image (n_lines, length) of one family from its sinogram rows."""
    torch = require_torch()
    n_sel, n_det = sino_rows.shape
    pad = SINO_PAD + 2 * n_extra
    n_pad = n_det + 2 * pad
    flat = torch.nn.functional.pad(sino_rows, (pad, pad)).reshape(-1)
    qs = ar[:length].view(1, 1, -1)
    out = torch.zeros((n_lines, length), dtype=sino_rows.dtype, device=sino_rows.device)
    for a0, a1 in _chunks(n_sel, n_lines * length):
        g = tab["gamma"][a0:a1].view(-1, 1, 1)
        c = tab["c"][a0:a1].unsqueeze(2)
        kf = torch.floor((qs - c) * tab["inv_gamma"][a0:a1].view(-1, 1, 1))
        row_start = (torch.arange(a0, a1, device=flat.device) * n_pad + pad).view(-1, 1, 1)
        # clamping kf first keeps the long conversion safe; bins beyond the
        # padding read the padding's zeros
        kl = kf.clamp(-pad - n_det, 2 * n_det + pad).long()
        acc = None
        for e in range(-n_extra, n_extra + 2):
            # the forward pass's weights, recomputed as it does
            p = c + g * (kf + e)
            fl = torch.floor(p)
            f = p - fl
            we = torch.where(fl == qs, 1 - f, torch.where(fl == qs - 1, f, torch.zeros_like(f)))
            term = we * flat.take((kl + e).clamp_(-pad, n_det + pad - 1) + row_start)
            acc = term if acc is None else acc + term
        out += (acc * tab["w"][a0:a1].view(-1, 1, 1)).sum(dim=0)
    return out


def forward(op, x):
    """``op._forward`` on a tensor ``x`` of shape ``image_shape``."""
    torch = require_torch()
    t = _tables(op, x.device, x.dtype)
    sino = torch.empty(op.out_shape, dtype=x.dtype, device=x.device)
    for family, work in (("rows", x), ("cols", x.t())):
        tab = t[family]
        if tab["size"]:
            sino[tab["sel"]] = _forward_family(work.contiguous(), tab, t["ar"], op.n_det)
    return sino


def adjoint(op, y):
    """``op._adjoint`` on a tensor ``y`` of shape ``(n_angles, n_det)``."""
    t = _tables(op, y.device, y.dtype)
    n_rows, n_cols = op.image_shape
    out = None
    for family, (n_lines, length) in (("rows", (n_rows, n_cols)), ("cols", (n_cols, n_rows))):
        tab = t[family]
        if not tab["size"]:
            continue
        part = _adjoint_family(y[tab["sel"]], tab, t["ar"], n_lines, length, op._n_extra)
        if family == "cols":
            part = part.t()
        out = part if out is None else out + part
    return out.contiguous()


def filter_sinogram(op, y, filt, wang, n_pad, key):
    """Ramp-filter the rows of ``y`` and weight them by the angle weights (torch.fft)."""
    torch = require_torch()
    ckey = ("fbp", str(y.device), y.dtype) + tuple(key)
    cached = op._torch_tables.get(ckey)
    if cached is None:
        cached = (torch.as_tensor(filt, dtype=y.dtype, device=y.device),
                  torch.as_tensor(wang, dtype=y.dtype, device=y.device).view(-1, 1))
        op._torch_tables[ckey] = cached
    f, w = cached
    spec = torch.fft.rfft(y, n=n_pad, dim=1) * f
    return (torch.fft.irfft(spec, n=n_pad, dim=1)[:, :op.n_det] * w).contiguous()
