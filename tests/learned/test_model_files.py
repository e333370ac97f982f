"""Model files: safetensors with a JSON metadata block; legacy .pt only with weights_only=True."""

import json
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tikhon.learned import (
    TVWeightNet,
    UnfoldedISTA,
    load_unfolded,
    load_weights,
    save_unfolded,
    save_weights,
    train_tv_weight_net,
)
from tikhon.learned._model_files import (
    is_torch_checkpoint,
    load_torch_checkpoint,
    read_model_file,
    write_model_file,
)
from tikhon.learned.tv_weights import DEFAULT_WEIGHTS
from tikhon.operators import MatrixOperator

from tikhon import __version__

torch.set_num_threads(1)


class _RunsCode:
    """Unpickling this calls ``os.system``: a model file that carries code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _header(path):
    raw = path.read_bytes()
    return json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])


def test_round_trip_keeps_tensors_dtypes_and_metadata(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(3, 4, generator=g, dtype=torch.float64),
               "b": torch.randn(4, generator=g).to(torch.float32),
               "steps": torch.arange(5),
               "view": torch.randn(4, 6, generator=g)[:, ::2]}  # non-contiguous
    path = write_model_file(tmp_path / "sub" / "m.safetensors", tensors, format="test/1",
                            architecture="Thing", script="train.py", seed=7,
                            config={"width": 3, "act": "relu"}, extra={"loss": [0.5, 0.25]})
    back, meta = read_model_file(path, format="test/1")
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    assert meta["format"] == "test/1" and meta["architecture"] == "Thing"
    assert meta["version"] == __version__ and meta["script"] == "train.py" and meta["seed"] == 7
    assert meta["config"] == {"width": 3, "act": "relu"} and meta["extra"] == {"loss": [0.5, 0.25]}
    # every metadata value is a JSON string in the plain safetensors header
    header = _header(path)["__metadata__"]
    assert json.loads(header["config"]) == {"act": "relu", "width": 3}
    assert not is_torch_checkpoint(path)


def test_reader_refuses_other_formats_and_non_safetensors(tmp_path):
    path = write_model_file(tmp_path / "a.safetensors", {"x": torch.zeros(2)}, format="one/1",
                            architecture="A")
    with pytest.raises(ValueError, match=r"read_model_file: .* holds format 'one/1', expected 'two/1'"):
        read_model_file(path, format="two/1")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello")
    with pytest.raises(ValueError, match="not a safetensors model file"):
        read_model_file(junk)
    with pytest.raises(FileNotFoundError, match="read_model_file: no file"):
        read_model_file(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="config must be JSON-serialisable"):
        write_model_file(tmp_path / "b.safetensors", {"x": torch.zeros(1)}, format="f", architecture="A",
                         config={"f": object()})
    with pytest.raises(TypeError, match="seed must be an int"):
        write_model_file(tmp_path / "b.safetensors", {"x": torch.zeros(1)}, format="f", architecture="A",
                         seed=1.5)
    with pytest.raises(TypeError, match="tensors must be a dict"):
        write_model_file(tmp_path / "b.safetensors", {"x": np.zeros(1)}, format="f", architecture="A")


def test_tv_weight_net_file_records_architecture_version_script_and_seed(tmp_path):
    fbp = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)).numpy()
    net, _ = train_tv_weight_net(fbp, fbp, width=2, epochs=1, batch_size=2, seed=5)
    path = tmp_path / "net.safetensors"
    save_weights(net, path, meta={"note": "tiny"})
    _, meta = read_model_file(path)
    assert meta["architecture"] == "TVWeightNet" and meta["version"] == __version__
    assert meta["script"] == "tikhon.learned.train_tv_weight_net" and meta["seed"] == 5
    assert meta["config"] == {"width": 2} and meta["extra"]["note"] == "tiny"
    loaded = load_weights(path)
    assert loaded.meta["seed"] == 5 and loaded.meta["beta"] == 1.0
    x = torch.from_numpy(fbp)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_committed_weights_are_safetensors_with_metadata():
    for path in (DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_name("tv_weight_net_image_only.safetensors")):
        assert path.suffix == ".safetensors" and not is_torch_checkpoint(path)
        tensors, meta = read_model_file(path, format="tikhon-tv-weight-net/1")
        assert meta["architecture"] == "TVWeightNet" and meta["config"] == {"width": 16}
        assert meta["script"] == "examples/train_tv_weight_net.py" and meta["seed"] == 0
        assert meta["version"] and meta["extra"]["data_seed"] == 2024
        assert all(t.dtype == torch.float32 for t in tensors.values())
    assert TVWeightNet.pretrained().meta["beta"] == 1.0


def test_legacy_pt_loads_with_weights_only(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = TVWeightNet(width=2)
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": net.state_dict(), "meta": {"width": "2", "beta": "0.0"}}, path)
    assert is_torch_checkpoint(path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_weights(path)
    assert calls == [True]
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))
    assert loaded.meta["beta"] == "0.0"


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_pickle_that_carries_code_is_refused_before_it_runs(tmp_path, how):
    marker = tmp_path / "code_ran"
    payload = {"state_dict": TVWeightNet(width=2).state_dict(), "meta": {"width": "2"},
               "hook": _RunsCode(marker)}
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    # the file really does run code when unpickled without weights_only
    if how == "pickle.dump":
        with open(path, "rb") as fh:
            pickle.load(fh)
        assert marker.exists()
        marker.unlink()
    with pytest.raises(ValueError, match=r"load_weights: refused to load .*evil\.pt.*could run code"):
        load_weights(path)
    with pytest.raises(ValueError, match="load_torch_checkpoint: refused"):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_unfolded_file_uses_the_shared_block(tmp_path):
    M = np.random.default_rng(0).standard_normal((6, 10))
    net = UnfoldedISTA(MatrixOperator(M), 0.1, 2, learn=("step",))
    path = tmp_path / "u.safetensors"
    save_unfolded(net, path, seed=4, meta={"k": 1})
    _, raw = read_model_file(path, format="tikhon-unfolded/2")
    assert raw["architecture"] == "UnfoldedISTA" and raw["seed"] == 4 and raw["version"] == __version__
    assert raw["extra"]["n_layers"] == 2 and raw["extra"]["meta"] == {"k": 1}
    _, meta = load_unfolded(path)
    assert meta["n_layers"] == 2 and meta["seed"] == 4 and meta["meta"] == {"k": 1}
    # a weights file is not an unfolded network file
    with pytest.raises(ValueError, match="load_unfolded: .*not an unfolded network file"):
        load_unfolded(DEFAULT_WEIGHTS)
