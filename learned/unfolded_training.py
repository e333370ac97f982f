"""Training of unfolded networks (supervised or unsupervised, layer-wise) and their storage.

:func:`train_unfolded` trains any :class:`~tikhon.learned.Unfolded` network by
Adam, either on the mean squared error to the true signals (``"supervised"``)
or on the original problem's objective at the output (``"unsupervised"``,
which needs no ground truth), with the incremental (layer-wise) schedule of
[IT19]: layer 1 alone, then layers 1-2, and so on. :func:`save_unfolded` and
:func:`load_unfolded` store the trained per-layer parameters in a safetensors
file with JSON metadata (architecture, number of layers, version, seed):
loading reads tensors and text only, it executes no code.

References
----------
.. [IT19] D. Ito, S. Takabe and T. Wadayama, "Trainable ISTA for sparse signal
   recovery", IEEE Trans. Signal Process. 67(12), 2019.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from tikhon._core.checks import (
    check_bool,
    check_choice,
    check_positive,
    check_positive_int,
)

__all__ = ["load_unfolded", "save_unfolded", "train_unfolded", "unfolded_loss"]

_FORMAT = "tikhon-unfolded/2"
# /1 kept n_layers, log_base and meta as header keys of their own; /2 writes the
# shared model-file block (learned/_model_files.py) with them in ``extra``
_FORMAT_V1 = "tikhon-unfolded/1"


def unfolded_loss(model, output, y, x_true=None, loss="supervised"):
    """The training loss of a batch: MSE to ``x_true`` or the mean objective at ``output``.

    Parameters
    ----------
    model : Unfolded
    output : torch.Tensor
        The network's output on the batch ``y``.
    y : torch.Tensor
        The batch of measurements.
    x_true : torch.Tensor, optional
        The true signals (``"supervised"`` only).
    loss : {"supervised", "unsupervised"}

    Returns
    -------
    torch.Tensor
        0-d: ``mean_i ||x_i - x_true_i||^2`` or ``mean_i F(x_i; y_i)``.
    """
    check_choice(loss, ("supervised", "unsupervised"), "loss", "train_unfolded")
    if loss == "supervised":
        if x_true is None:
            raise ValueError("train_unfolded: loss='supervised' needs the true signals (data=(y, x))")
        d = output - x_true
        return (d * d).reshape(d.shape[0], -1).sum(dim=1).mean()
    return model.objective(output, y).mean()


def _as_data(data, loss):
    where = "train_unfolded"
    if torch.is_tensor(data):
        y, x = data, None
    elif isinstance(data, (tuple, list)) and len(data) in (1, 2):
        y = data[0]
        x = data[1] if len(data) == 2 else None
    else:
        raise TypeError(f"{where}: data must be a tensor y or a tuple (y, x_true) of tensors")
    if not torch.is_tensor(y) or (x is not None and not torch.is_tensor(x)):
        raise TypeError(f"{where}: data must hold torch tensors")
    if y.ndim < 2 or y.shape[0] < 1:
        raise ValueError(f"{where}: y must have a leading sample axis, got shape {tuple(y.shape)}")
    if x is not None and x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: y has {y.shape[0]} samples but x_true has {x.shape[0]}")
    if loss == "supervised" and x is None:
        raise ValueError(f"{where}: loss='supervised' needs data=(y, x_true)")
    for name, v in (("y", y), ("x_true", x)):
        if v is not None and not bool(torch.isfinite(v).all()):
            raise ValueError(f"{where}: {name} must be finite (it contains NaN or inf)")
    return y, x


def train_unfolded(model, data, loss="supervised", *, incremental=True, epochs=10, lr=1e-2,
                   batch_size=100, rng=0, progress=True, time_limit=None):
    """Train an unfolded network by Adam, layer by layer (incremental training).

    Parameters
    ----------
    model : Unfolded
        E.g. :class:`~tikhon.learned.UnfoldedISTA`; trained in place.
    data : tensor or tuple
        ``y`` (measurements, leading sample axis) or ``(y, x_true)``.
    loss : {"supervised", "unsupervised"}
        Mean squared error to ``x_true``, or the original objective at the
        network's output (:meth:`Unfolded.objective`).
    incremental : bool
        Train the first layer alone, then the first two, ..., up to all of
        them ([IT19]), with a fresh Adam for each stage; False: all layers at
        once (one stage).
    epochs : int
        Passes over the data per stage.
    lr : float
        Adam's learning rate. The tikhon networks learn log-factors of their
        default steps, so it is a relative change per step (1e-2 to 3e-2
        worked for the example's networks); LISTA matrices are learned as they are.
    batch_size : int
        Mini-batch size.
    rng : int or numpy.random.Generator
        Seed of the shuffling: the same seed gives the same parameters.
    progress : bool
        Show a tqdm bar over all mini-batch steps.
    time_limit : float, optional
        Stop (after the current step) once this many seconds have passed.

    Returns
    -------
    dict
        ``stage_loss`` (the mean training loss of each stage's last epoch),
        ``loss`` (every step's loss), ``stages`` (the number of layers
        trained per stage), ``steps``, ``time`` (s), ``stopped``
        (``"completed"`` or ``"time_limit"``), ``seed``.

    Raises
    ------
    TypeError, ValueError
        For a bad ``loss`` name, data without ``x_true`` for the supervised
        loss, or nonpositive ``epochs``, ``lr``, ``batch_size``.
    """
    where = "train_unfolded"
    from tikhon.learned.unfolded import Unfolded

    if not isinstance(model, Unfolded):
        raise TypeError(f"{where}: model must be an Unfolded network, got {type(model).__name__}")
    check_choice(loss, ("supervised", "unsupervised"), "loss", where)
    y, x = _as_data(data, loss)
    epochs = check_positive_int(epochs, "epochs", where)
    lr = check_positive(lr, "lr", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    incremental = check_bool(incremental, "incremental", where)
    progress = check_bool(progress, "progress", where)
    time_limit = check_positive(time_limit, "time_limit", where, allow_none=True)
    seed = rng if isinstance(rng, (int, np.integer)) else None
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{where}: the model has no trainable parameters")

    n = y.shape[0]
    per_epoch = -(-n // batch_size)
    stages = list(range(1, model.n_layers + 1)) if incremental else [model.n_layers]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(stages) * epochs * per_epoch, desc=f"{type(model).__name__} ({loss})")
    history = {"loss": [], "stage_loss": [], "stages": stages, "steps": 0, "seed": seed,
               "stopped": "completed"}
    t0 = time.perf_counter()
    model.train()
    try:
        for T in stages:
            opt = torch.optim.Adam(params, lr=lr)
            epoch_loss = float("nan")
            for _ in range(epochs):
                order = torch.from_numpy(gen.permutation(n))
                total, seen = 0.0, 0
                for b in range(per_epoch):
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    yb = y[idx]
                    xb = None if x is None else x[idx]
                    opt.zero_grad(set_to_none=True)
                    value = unfolded_loss(model, model(yb, n_layers=T), yb, xb, loss)
                    value.backward()
                    opt.step()
                    v = float(value.detach())
                    history["loss"].append(v)
                    history["steps"] += 1
                    total += v * len(idx)
                    seen += len(idx)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(layers=T, loss=f"{v:.4g}")
                    if time_limit is not None and time.perf_counter() - t0 > time_limit:
                        history["stopped"] = "time_limit"
                        break
                # a time limit can cut the epoch short: average over the samples seen
                epoch_loss = total / seen
                if history["stopped"] != "completed":
                    break
            history["stage_loss"].append(epoch_loss)
            if history["stopped"] != "completed":
                break
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    history["time"] = time.perf_counter() - t0
    model.training_history = history
    return history


def _log_bases(model):
    """``{name: nested list}`` of the model's log-scale bases (float64, JSON round-trips exactly)."""
    return {k: v.detach().cpu().double().tolist() for k, v in sorted(model._log_base.items())}


# ||A|| comes from a seeded power iteration (deterministic), but a rebuilt operator
# may differ in the last digits (another BLAS, float32 data): compare relatively
_BASE_RTOL = 1e-6


def _check_same_build(model, meta, path):
    """Refuse a file saved from a differently built model (config or log-scale bases)."""
    own = json.loads(json.dumps(model.config()))
    saved = meta["config"]
    keys = sorted(set(own) | set(saved))
    differ = [k for k in keys if own.get(k, "<missing>") != saved.get(k, "<missing>")]
    if differ:
        detail = ", ".join(f"{k}: file {saved.get(k, '<missing>')!r}, model {own.get(k, '<missing>')!r}"
                           for k in differ)
        raise ValueError(f"load_unfolded: {path} was saved from a differently configured "
                         f"{meta['architecture']} (differing config keys {differ}: {detail})")
    if meta["log_base"] is None:
        raise ValueError(f"load_unfolded: {path} does not record the bases of its log-scaled "
                         "parameters; save it again with save_unfolded")
    mine, theirs = _log_bases(model), meta["log_base"]
    if set(mine) != set(theirs):
        raise ValueError(f"load_unfolded: log-scaled parameters {sorted(theirs)} in the file, "
                         f"{sorted(mine)} in the model")
    bad = []
    for k in mine:
        a, b = np.asarray(theirs[k], dtype=float), np.asarray(mine[k], dtype=float)
        if a.shape != b.shape or not np.allclose(a, b, rtol=_BASE_RTOL, atol=0.0):
            bad.append(f"{k}: file {theirs[k]!r}, model {mine[k]!r}")
    if bad:
        raise ValueError(f"load_unfolded: the bases of the log-scaled parameters differ ({'; '.join(bad)}): "
                         "the model was built with another operator (e.g. a rescaled A, so another "
                         "||A||) and every learned step would change")


def save_unfolded(model, path, *, seed=None, meta=None):
    """Save an unfolded network's learned parameters as safetensors with JSON metadata.

    Parameters
    ----------
    model : Unfolded
    path : str or Path
    seed : int, optional
        The training seed (recorded; default: the one of the last
        :func:`train_unfolded` run, if any).
    meta : dict, optional
        Further JSON-serialisable facts about the run.

    Notes
    -----
    The metadata (the block of every tikhon model file) holds ``format``,
    ``architecture`` (the class name), ``version`` (tikhon's), ``script``
    (``"tikhon.learned.train_unfolded"`` after training), ``seed``,
    ``config`` (the model's
    :meth:`~Unfolded.config`), ``log_base`` (the bases of the log-scaled
    parameters, e.g. ``1 / ||A||^2`` for a step: a stored ``s_t`` means
    ``base * exp(s_t)``), ``n_layers`` and ``meta`` (the last three in
    ``extra``). The operator ``A`` is not stored:
    rebuild the model with it and load the parameters into it;
    :func:`load_unfolded` checks the configuration and the bases.
    """
    from tikhon.learned._model_files import write_model_file

    hist = getattr(model, "training_history", None)
    if seed is None and hist is not None:
        seed = hist.get("seed")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"save_unfolded: meta must be a dict, got {type(meta).__name__}")
    tensors = {k: v for k, v in model.state_dict().items() if k != "matrix"}
    write_model_file(path, tensors, format=_FORMAT, architecture=type(model).__name__,
                     script="tikhon.learned.train_unfolded" if hist is not None else None,
                     seed=seed, config=model.config(),
                     extra={"n_layers": model.n_layers, "log_base": _log_bases(model),
                            "meta": dict(meta or {})},
                     where="save_unfolded")


def load_unfolded(path, model=None):
    """Load parameters saved by :func:`save_unfolded` (tensors and JSON only: no code runs).

    Parameters
    ----------
    path : str or Path
    model : Unfolded, optional
        A network built like the saved one (same class, ``n_layers``,
        :meth:`~Unfolded.config`, parameter shapes and log-scale bases, i.e.
        the same operator norm); its parameters are overwritten in place.

    Returns
    -------
    model or (tensors, metadata)
        The model (in eval mode) when one is given; else the dict of tensors
        and the decoded metadata.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an unfolded network's, or does not match ``model``
        (another class, ``n_layers``, configuration -- the differing keys are
        named -- parameter names/shapes, or log-scale bases, e.g. after
        rescaling ``A``).
    """
    from tikhon.learned._model_files import read_model_file

    try:
        tensors, info = read_model_file(path, format=(_FORMAT, _FORMAT_V1), where="load_unfolded")
    except ValueError as exc:
        raise ValueError(f"{exc} (not an unfolded network file)") from None
    if info["format"] == _FORMAT_V1:
        extra = {"n_layers": int(info["n_layers"]), "meta": json.loads(info["meta"]),
                 "log_base": json.loads(info["log_base"]) if "log_base" in info else None}
    else:
        extra = info["extra"]
    meta = {"architecture": info["architecture"], "n_layers": int(extra["n_layers"]),
            "version": info["version"], "script": info["script"], "seed": info["seed"],
            "config": info["config"], "meta": extra.get("meta", {}),
            "log_base": extra.get("log_base")}
    if model is None:
        return tensors, meta
    if type(model).__name__ != meta["architecture"]:
        raise ValueError(f"load_unfolded: the file holds a {meta['architecture']}, the model is a "
                         f"{type(model).__name__}")
    if model.n_layers != meta["n_layers"]:
        raise ValueError(f"load_unfolded: the file has {meta['n_layers']} layers, the model {model.n_layers}")
    own = {k: v for k, v in model.state_dict().items() if k != "matrix"}
    if set(own) != set(tensors):
        raise ValueError(f"load_unfolded: parameters {sorted(tensors)} in the file, {sorted(own)} in the model")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"load_unfolded: {k} has shape {tuple(v.shape)} in the file, "
                             f"{tuple(own[k].shape)} in the model")
    _check_same_build(model, meta, path)
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v.to(own[k]))
    model.eval()
    return model
