"""Model files: safetensors tensors with a JSON metadata block, read without running code.

Every learned model of :mod:`tikhon.learned` is stored the same way: its tensors
in a safetensors file (a JSON header and raw bytes: reading it executes nothing)
and, in the header's string table, a small metadata block:

``format``
    What the file holds and its layout version (``"tikhon-unfolded/1"``,
    ``"tikhon-tv-weight-net/1"``, ...); a reader refuses another format.
``architecture``
    The model's class name.
``version``
    tikhon's version that wrote the file.
``script``
    The training script or function that produced the weights.
``seed``
    The training seed (``null`` when unknown).
``config``
    The constructor arguments needed to rebuild the model (JSON).
``extra``
    Any further JSON facts about the training run.

Each field is a JSON string in the safetensors header (the format allows only
strings there). Legacy torch checkpoints (``.pt``) are read by
:func:`load_torch_checkpoint` with ``torch.load(weights_only=True)``, which
refuses any pickle that would import or call something other than tensors and
plain containers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MODEL_FIELDS = ("format", "architecture", "version", "script", "seed", "config", "extra")


def _json(value, field, where):
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: {field} must be JSON-serialisable ({exc})") from None


def write_model_file(path, tensors, *, format, architecture, script=None, seed=None,
                     config=None, extra=None, where="write_model_file"):
    """Write ``tensors`` and the metadata block to a safetensors file.

    Parameters
    ----------
    path : str or Path
        The file (parent folders are created).
    tensors : dict of str to torch.Tensor
        Stored as contiguous CPU copies (their dtype kept).
    format : str
        The file kind and layout version, checked by :func:`read_model_file`.
    architecture : str
        The model's class name.
    script : str, optional
        The training script or function.
    seed : int, optional
        The training seed.
    config : dict, optional
        The constructor arguments (JSON-serialisable).
    extra : dict, optional
        Further JSON-serialisable facts.
    where : str
        The public function, for error messages.

    Returns
    -------
    Path
        The file written.
    """
    from safetensors.torch import save

    from tikhon import __version__

    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in tensors.items()):
        raise TypeError(f"{where}: tensors must be a dict of str to torch.Tensor")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"{where}: seed must be an int or None, got {type(seed).__name__}")
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "format": str(format),
        "architecture": str(architecture),
        "version": __version__,
        "script": _json(script, "script", where),
        "seed": _json(seed, "seed", where),
        "config": _json(dict(config or {}), "config", where),
        "extra": _json(dict(extra or {}), "extra", where),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # serialised in memory and written by open(): the file gets the usual umask-respecting
    # mode (0644 under umask 022); safetensors' save_file creates it 0600
    blob = save(data, metadata=metadata)
    with open(path, "wb") as fh:
        fh.write(blob)
    return path


def read_model_file(path, *, format=None, where="read_model_file", device="cpu"):
    """Read a file written by :func:`write_model_file` (tensors and JSON only: no code runs).

    Parameters
    ----------
    path : str or Path
    format : str or tuple of str, optional
        The accepted format(s); another one is refused.
    where : str
        The public function, for error messages.
    device : str or torch.device
        Where the tensors are loaded.

    Returns
    -------
    tensors : dict of str to torch.Tensor
    meta : dict
        ``format``, ``architecture``, ``version`` (strings) and ``script``,
        ``seed``, ``config``, ``extra`` (decoded JSON; ``None`` / ``{}`` when
        the file lacks them). Unknown header keys are kept as strings.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a safetensors file, or is of another format.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no file at {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            raw = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except SafetensorError as exc:
        raise ValueError(f"{where}: {path} is not a safetensors model file ({exc})") from None
    accepted = (format,) if isinstance(format, str) else tuple(format or ())
    if accepted and raw.get("format") not in accepted:
        want = accepted[0] if len(accepted) == 1 else list(accepted)
        raise ValueError(f"{where}: {path} holds format {raw.get('format')!r}, expected {want!r}")
    meta = dict(raw)
    for field, empty in (("script", None), ("seed", None), ("config", {}), ("extra", {})):
        if field in raw:
            try:
                meta[field] = json.loads(raw[field])
            except json.JSONDecodeError:
                raise ValueError(f"{where}: {path} has a malformed {field!r} metadata entry") from None
        else:
            meta[field] = empty
    for field in ("format", "architecture", "version"):
        meta.setdefault(field, None)
    return tensors, meta


def is_torch_checkpoint(path):
    """Whether ``path`` holds a torch checkpoint (a zip archive or a bare pickle), not safetensors.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
        True when the file starts like a zip archive (``torch.save``) or a
        pickle (protocol 2 or later); a safetensors file starts with the
        8-byte length of its JSON header.
    """
    with open(path, "rb") as fh:
        head = fh.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def load_torch_checkpoint(path, *, where="load_torch_checkpoint", map_location="cpu"):
    """Load a legacy ``.pt`` file with ``torch.load(weights_only=True)``.

    Only tensors and plain containers (dict, list, tuple, str, numbers) are
    unpickled; a pickle that would import or call anything else (code carried
    in the file) is refused before it runs.

    Parameters
    ----------
    path : str or Path
    where : str
        The public function, for error messages.
    map_location : str or torch.device

    Returns
    -------
    object
        The unpickled containers of tensors.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the pickle carries anything but tensors and plain containers.
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no file at {path}")
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        why = next((ln for ln in first if "Unsupported" in ln or "global" in ln.lower()), first[0] if first else "")
        raise ValueError(
            f"{where}: refused to load {path}: the pickle carries objects other than tensors "
            f"and plain containers (it could run code on load): {why.strip().rstrip('.')}. Only "
            "weights_only=True checkpoints and safetensors files are read."
        ) from None
