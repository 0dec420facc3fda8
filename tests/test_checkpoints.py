"""Model files and checkpoints: round trips, refusals with clear errors, and crash safety."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from autoencoder_toolkit import checkpoints
from autoencoder_toolkit.testing import assert_same_tensors, check_checkpoint_round_trip
from autoencoder_toolkit.io import checkpoint as io_checkpoint
from autoencoder_toolkit.checkpoints import (CheckpointError, find_checkpoint, load_checkpoint, load_model,
                                             save_checkpoint, save_model, verify_checkpoint)
from autoencoder_toolkit.serialization import module_config
from autoencoder_toolkit.training import TrainingState, make_optimizers, mlp_model, optimizer_dict

PACKAGE = Path(checkpoints.__file__).parents[1]


def small_model(hidden=(8, 8), latent=2, kind="infomax", d=5):
    torch.manual_seed(0)
    return mlp_model(kind, (d,), latent, list(hidden))


def trained(model, steps=3):
    from autoencoder_toolkit import infomaxvaes

    opt = make_optimizers(model, 1e-2)
    x = torch.rand(16, 5)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        infomaxvaes.train_(model, x, opt, infomaxloss_kwargs={"α": 1.0}, rng=g)
    return opt


# ---------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------


def test_save_and_load_model_round_trip(tmp_path) -> None:
    model = small_model()
    trained(model)
    # the same class, architecture, tensors (bit for bit) and outputs; the NumPy loader reads it too
    check_checkpoint_round_trip(model, torch.rand(4, 5), directory=tmp_path)
    # only this package's safetensors files are read, and no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_load_model_accepts_a_checkpoint_or_run_directory(tmp_path) -> None:
    model = small_model(kind="vae")
    opt = make_optimizers(model, 1e-3)
    state, tensors = TrainingState.fresh(0).to_checkpoint()
    save_checkpoint(tmp_path, model, optimizer_dict(opt), state, tensors)
    for where in (tmp_path, tmp_path / "checkpoint"):
        assert_same_tensors(load_model(where).state_dict(), model.state_dict())


def test_pickle_files_are_refused(tmp_path) -> None:
    model = small_model()
    zipped = tmp_path / "model.safetensors"
    torch.save(model.state_dict(), zipped)  # torch.save's zip format
    with pytest.raises(CheckpointError, match="zip archive.*never loaded"):
        load_model(zipped)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    with pytest.raises(CheckpointError, match="Python pickle.*never loaded"):
        load_model(raw)


def test_truncated_and_corrupt_model_files(tmp_path) -> None:
    model = small_model()
    path = save_model(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    cases = {
        "short": data[:5],
        "header": data[:100],
        "body": data[:-10],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(blob)
        with pytest.raises(CheckpointError, match="truncated"):
            load_model(p)
    # one flipped bit in the tensor data: caught by the digest stored in the metadata
    flipped = bytearray(data)
    flipped[-3] ^= 0x01
    p = tmp_path / "flipped.safetensors"
    p.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt.*digest"):
        load_model(p)
    # a damaged header: invalid JSON, or a changed architecture that still parses
    broken = bytearray(data)
    broken[9] = ord("}")
    p = tmp_path / "header.safetensors"
    p.write_bytes(bytes(broken))
    with pytest.raises(CheckpointError, match="corrupt.*header"):
        load_model(p)
    assert data.count(b"relu") > 0
    p.write_bytes(data.replace(b"relu", b"tanh", 1))
    with pytest.raises(CheckpointError, match="corrupt.*digest"):
        load_model(p)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "absent.safetensors")


def test_wrong_architecture_is_refused(tmp_path) -> None:
    path = save_model(small_model(hidden=(8, 8)), tmp_path / "m.safetensors")
    other = module_config(small_model(hidden=(8, 6)))
    with pytest.raises(CheckpointError, match=r"shape \(8, 8\).*expects \(6, 8\)"):
        load_model(path, config=other)
    fewer = module_config(small_model(hidden=(8,)))
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_model(path, config=fewer)
    # a plain safetensors file without the architecture metadata
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="without this library's model metadata"):
        load_model(tmp_path / "plain.safetensors")


def test_no_unpickling_code_path() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"torch\.load\(|pickle\.loads?\(|import pickle", source), path
        assert "weights_only=False" not in source, path


# ---------------------------------------------------------------------------
# Optimizer state and checkpoints
# ---------------------------------------------------------------------------


def test_checkpoint_round_trip_is_exact(tmp_path) -> None:
    model = small_model()
    opt = trained(model)
    state = TrainingState.fresh(7)
    state.torch_rng.manual_seed(99)
    torch.randn(3, generator=state.torch_rng)
    state.batch_rng.permutation(10)
    state.epoch, state.step = 2, 6
    state.history.append({"epoch": 1, "loss": 1.5})
    js, tensors = state.to_checkpoint()
    folder = save_checkpoint(tmp_path, model, optimizer_dict(opt), js, tensors)
    assert folder == tmp_path / "checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]

    ck = load_checkpoint(tmp_path)
    assert_same_tensors(ck.model.state_dict(), model.state_dict())
    opt2 = make_optimizers(ck.model, 0.5)
    ck.restore_optimizers(optimizer_dict(opt2))
    for name, o in optimizer_dict(opt).items():
        a, b = o.state_dict(), optimizer_dict(opt2)[name].state_dict()
        assert a["param_groups"] == b["param_groups"]  # lr 1e-2 restored, betas a tuple again
        assert a["state"].keys() == b["state"].keys()
        for i in a["state"]:
            assert_same_tensors(a["state"][i], b["state"][i])
    st = TrainingState.from_checkpoint(ck.state, ck.tensors)
    assert (st.seed, st.epoch, st.step, st.history) == (7, 2, 6, [{"epoch": 1, "loss": 1.5}])
    assert torch.equal(torch.randn(5, generator=st.torch_rng), torch.randn(5, generator=state.torch_rng))
    np.testing.assert_array_equal(st.batch_rng.permutation(20), state.batch_rng.permutation(20))


def _save(tmp_path, model, opt, epoch):
    st = TrainingState.fresh(0)
    st.epoch = epoch
    js, tensors = st.to_checkpoint()
    save_checkpoint(tmp_path, model, optimizer_dict(opt), js, tensors)


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", ["model", "optimizer", "state", "rotated", "installed"])
def test_a_crash_at_any_stage_leaves_a_complete_checkpoint(tmp_path, monkeypatch, stage) -> None:
    model = small_model()
    opt = make_optimizers(model, 1e-3)
    _save(tmp_path, model, opt, epoch=1)
    old_weights = {k: v.clone() for k, v in model.state_dict().items()}
    trained(model)  # new weights for the second save

    def crash(at, path):
        if at == stage:
            raise Crash(at)

    monkeypatch.setattr(io_checkpoint, "_after_stage", crash)
    with pytest.raises(Crash):
        _save(tmp_path, model, opt, epoch=2)
    monkeypatch.undo()

    folder = find_checkpoint(tmp_path)
    ck = load_checkpoint(tmp_path)
    new_set = stage == "installed"
    assert ck.state["epoch"] == (2 if new_set else 1)
    expected = model.state_dict() if new_set else old_weights
    assert_same_tensors(ck.model.state_dict(), expected)
    assert folder.name == ("checkpoint.prev" if stage == "rotated" else "checkpoint")

    # the next save recovers: one complete checkpoint, nothing else left behind
    _save(tmp_path, model, opt, epoch=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert load_checkpoint(tmp_path).state["epoch"] == 3


def test_damaged_checkpoints_fall_back_or_fail_clearly(tmp_path) -> None:
    model = small_model()
    opt = make_optimizers(model, 1e-3)
    _save(tmp_path, model, opt, epoch=1)
    shutil.copytree(tmp_path / "checkpoint", tmp_path / "checkpoint.prev")
    # a truncated optimizer file in the newest set: the previous set is used
    opt_file = tmp_path / "checkpoint" / "optimizer.safetensors"
    opt_file.write_bytes(opt_file.read_bytes()[:50])
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint.prev"
    with pytest.raises(CheckpointError, match="bytes, .* were written"):
        verify_checkpoint(tmp_path / "checkpoint")
    # no usable set at all: the error lists why
    shutil.rmtree(tmp_path / "checkpoint.prev")
    with pytest.raises(CheckpointError, match="no complete checkpoint.*truncated or replaced"):
        load_checkpoint(tmp_path)


def test_corrupt_same_size_file_and_bad_state_json(tmp_path) -> None:
    model = small_model()
    opt = make_optimizers(model, 1e-3)
    _save(tmp_path, model, opt, epoch=1)
    mf = tmp_path / "checkpoint" / "model.safetensors"
    data = bytearray(mf.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mf.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 digest differs"):
        load_checkpoint(tmp_path)
    _save(tmp_path, model, opt, epoch=2)
    sj = tmp_path / "checkpoint" / "state.json"
    sj.write_text(sj.read_text()[:40])
    with pytest.raises(CheckpointError, match="state.json' is corrupt"):
        load_checkpoint(tmp_path)
    sj.unlink()
    with pytest.raises(CheckpointError, match="incomplete save"):
        load_checkpoint(tmp_path)


def test_checkpoint_of_another_architecture_is_refused(tmp_path) -> None:
    model = small_model(hidden=(8, 8))
    opt = make_optimizers(model, 1e-3)
    _save(tmp_path, model, opt, epoch=1)
    other = module_config(small_model(hidden=(4,)))
    with pytest.raises(CheckpointError, match="different architecture"):
        load_checkpoint(tmp_path, config=other)
    ck = load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="optimizes .* parameters"):
        ck.restore_optimizers(optimizer_dict(make_optimizers(small_model(hidden=(4,)), 1e-3)))


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path) -> None:
    target = tmp_path / "f.json"
    checkpoints.atomic_write_text(target, json.dumps({"a": 1}))

    def failing(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.atomic_write_bytes(target, failing)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ---------------------------------------------------------------------------
# Hostile model files: refused before anything is built, with a CheckpointError
# ---------------------------------------------------------------------------

def _crafted(tmp_path, config, tensors, name="crafted.safetensors"):
    """A model file whose digest is right but whose architecture says what the attacker wants."""
    from autoencoder_toolkit.io.model_file import write_model
    from autoencoder_toolkit.io.safetensors import numpy_entry

    return write_model(tmp_path / name, config, {k: numpy_entry(v) for k, v in tensors.items()})


def _dense(n_in, n_out, activation="relu"):
    return {"type": "Dense", "n_in": n_in, "n_out": n_out, "activation": activation, "bias": True}


@pytest.fixture
def nothing_is_built(monkeypatch):
    """Fail the test if a loader gets as far as building a model (torch or frozen)."""
    from autoencoder_toolkit.inference import layers as frozen_layers
    from autoencoder_toolkit.models import architecture as torch_side

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built from a file that should have been refused first")

    monkeypatch.setattr(torch_side, "_build", refuse)
    monkeypatch.setattr(frozen_layers.Builder, "node", refuse)


def _both_loaders_refuse(path, match):
    from autoencoder_toolkit import inference

    with pytest.raises(CheckpointError, match=match):
        load_model(path)
    with pytest.raises(CheckpointError, match=match):
        inference.load(path)


def test_a_tiny_file_declaring_a_huge_layer_allocates_nothing(tmp_path, nothing_is_built) -> None:
    path = _crafted(tmp_path, _dense(60000, 60000), {"weight": np.zeros((2, 2), np.float32),
                                                     "bias": np.zeros(2, np.float32)})
    assert path.stat().st_size < 1024
    _both_loaders_refuse(path, r"tensor 'weight' has shape \(2, 2\), the architecture expects \(60000, 60000\)")


def test_a_layer_declared_beyond_any_file_is_refused_by_the_architecture_check(tmp_path, nothing_is_built) -> None:
    path = _crafted(tmp_path, _dense(2**20, 2**20), {})
    _both_loaders_refuse(path, r"over \d+ elements")


@pytest.mark.parametrize("config,match", [
    ({**_dense(3, 2), "meta": {"forward": "x"}}, "Dense has no argument 'meta'"),
    ({"type": "VAE", "fields": {"encoder": _dense(3, 2), "decoder": _dense(2, 3)}, "meta": {"forward": "x"}},
     "VAE: takes no 'meta'"),
    ({"type": "VAE", "fields": {"encoder": _dense(3, 2), "decoder": _dense(2, 3)}, "meta": {"latent_dim": 2}},
     "VAE: takes no 'meta' .it derives its shapes from its fields."),
    ({"type": "MutualInfoChain", "fields": {"data": _dense(3, 2), "latent": _dense(2, 2), "mlp": _dense(2, 1)},
      "meta": {"forward": "x"}}, "meta may give input_shape, output_shape, latent_dim, not 'forward'"),
    ({"type": "X", "fields": {"d": _dense(2, 3)}, "structure": {"trunk": None, "heads": [["d"]],
                                                             "output": None, "single_as_batch": False}},
     "structure heads"),
    ({"type": "X", "fields": {"d": _dense(2, 3)}, "structure": {"trunk": {"a": 1}, "heads": ["d"],
                                                             "output": None, "single_as_batch": False}},
     "structure trunk"),
    ({"type": "BernoulliDecoder", "fields": {"decoder": _dense(2, 3)},
      "structure": {"trunk": None, "heads": ["decoder"], "output": "Categorical", "single_as_batch": False}},
     "the recorded structure .* is not that of the class"),
    ({"type": "torch.nn.Conv2d", "args": {"in_channels": 3, "out_channels": 4, "kernel_size": [3, 3],
                                          "stride": [2, 2], "padding": "same"}}, "padding 'same' needs stride 1"),
    (_dense(-3, 2), "n_in = -3 is not a valid value"),
    (_dense(3, 0), "n_out = 0 is not a valid value"),
    ({"type": "torch.nn.Conv2d", "args": {"in_channels": 3, "out_channels": 4, "kernel_size": [3, -1]}},
     "kernel_size"),
    ({"type": "os.system", "args": {}}, "unknown node type 'os.system'"),
    ({"type": "torch.nn.Bilinear", "args": {}}, "unknown torch layer 'torch.nn.Bilinear'"),
])
def test_malformed_architectures_are_refused(tmp_path, nothing_is_built, config, match) -> None:
    _both_loaders_refuse(_crafted(tmp_path, config, {}), match)


def test_a_deeply_nested_architecture_is_refused(tmp_path, nothing_is_built) -> None:
    deep = {"type": "Flatten"}
    for _ in range(3000):
        deep = {"type": "Chain", "layers": [deep]}
    path = _crafted(tmp_path, {"type": "Flatten"}, {})
    import json as _json
    import struct

    # the same file with the nested architecture in its metadata (the encoder's own recursion limit refuses
    # to write it, so the header is built by hand); the digest cannot even be computed by the reader
    text = "{" + '"type": "Chain", "layers": [' * 3000 + '{"type": "Flatten"}' + "]}" * 3000
    header = _json.dumps({"__metadata__": {"format": "autoencoder_toolkit.model", "format_version": "1",
                                           "config": text, "sha256": "0" * 64}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    _both_loaders_refuse(path, "architecture")


def test_an_unknown_activation_name_is_refused_by_both_loaders(tmp_path) -> None:
    path = _crafted(tmp_path, _dense(3, 2, "os.system"), {"weight": np.zeros((2, 3), np.float32),
                                                         "bias": np.zeros(2, np.float32)})
    _both_loaders_refuse(path, "os.system")


def test_a_weight_of_the_wrong_shape_is_refused_before_it_is_used(tmp_path, nothing_is_built) -> None:
    path = _crafted(tmp_path, _dense(2, 3), {"weight": np.zeros((3, 3), np.float32), "bias": np.zeros(3, np.float32)})
    _both_loaders_refuse(path, r"tensor 'weight' has shape \(3, 3\), the architecture expects \(3, 2\)")


@pytest.mark.parametrize("device", ["meta", "tpu", 3.5])
def test_an_unusable_device_is_refused_clearly(tmp_path, device) -> None:
    path = save_model(small_model(), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="device: expected"):
        load_model(path, device=device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: CUDA is not available"):
            load_model(path, device="cuda")


def _header_file(path, header):
    import struct

    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    return path


@pytest.mark.parametrize("entry, match", [
    ({"dtype": [], "shape": [2], "data_offsets": [0, 8]}, "unsupported dtype"),
    ({"dtype": {}, "shape": [2], "data_offsets": [0, 8]}, "unsupported dtype"),
])
def test_a_header_entry_of_the_wrong_type_is_refused(tmp_path, entry, match) -> None:
    path = _header_file(tmp_path / "h.safetensors", {"w": entry, "__metadata__": {"format": "x"}})
    _both_loaders_refuse(path, match)


def test_an_integer_too_long_to_read_is_refused(tmp_path) -> None:
    raw = b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}'
    import struct

    (tmp_path / "h.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    _both_loaders_refuse(tmp_path / "h.safetensors", "corrupt or not a safetensors file")


def test_tensors_of_the_wrong_dtype_are_refused_by_both_loaders(tmp_path) -> None:
    mixed = _crafted(tmp_path, _dense(3, 2), {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(2, np.float64)})
    _both_loaders_refuse(mixed, "mixes floating-point dtypes .F32, F64.")
    ints = _crafted(tmp_path, _dense(3, 2), {"weight": np.zeros((2, 3), np.int32), "bias": np.zeros(2, np.float32)},
                    "i.safetensors")
    _both_loaders_refuse(ints, "tensor 'weight' has dtype I32, the architecture expects a floating type")
    bn = {"type": "torch.nn.BatchNorm1d", "args": {"num_features": 2}}
    counter = _crafted(tmp_path, bn, {"weight": np.ones(2, np.float32), "bias": np.zeros(2, np.float32),
                                      "running_mean": np.zeros(2, np.float32), "running_var": np.ones(2, np.float32),
                                      "num_batches_tracked": np.zeros((), np.float32)}, "bn.safetensors")
    _both_loaders_refuse(counter, "tensor 'num_batches_tracked' has dtype F32, the architecture expects I64")


def test_a_float64_model_loads_back_in_float64(tmp_path) -> None:
    from autoencoder_toolkit import inference

    model = small_model().double()
    path = save_model(model, tmp_path / "m64.safetensors")
    loaded = load_model(path)
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.rand(5, 5, dtype=torch.float64)
    frozen = inference.load(path)
    out = frozen.vae.encoder(x.numpy()).μ
    assert out.dtype == np.float64  # the frozen model keeps the file's precision too
    np.testing.assert_allclose(out, loaded.vae.encoder(x).μ.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_a_file_of_the_earlier_frozen_layout_gets_a_clear_message(tmp_path) -> None:
    path = _header_file(tmp_path / "old.safetensors", {"__metadata__": {
        "autoencoder_toolkit.inference": json.dumps({"format": 1, "model": {"type": "Dense"}})}})
    _both_loaders_refuse(path, "written by FrozenModule.save of an earlier version .* save_model")


def test_a_malformed_extra_tensor_list_is_refused(tmp_path) -> None:
    from autoencoder_toolkit.io.checkpoint import STATE_FILE, state_digest

    model = small_model()
    opt = make_optimizers(model, 1e-3)
    folder = save_checkpoint(tmp_path, model, optimizer_dict(opt), {"epoch": 0})
    doc = json.loads((folder / STATE_FILE).read_text())
    doc["extra_tensors"] = [[1]]
    doc["digest"] = state_digest(doc)
    (folder / STATE_FILE).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="extra_tensors is not a list of names"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------------------
# Models holding a user's own layer classes
# ---------------------------------------------------------------------------

class _Swish(torch.nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class _Scale(torch.nn.Module):
    def __init__(self, n: int, init: float = 1.0) -> None:
        super().__init__()
        self.n, self.init = n, init
        self.weight = torch.nn.Parameter(torch.full((n,), init))

    def get_config(self):
        return {"n": self.n, "init": self.init}

    def forward(self, x):
        return x * self.weight


def _user_model():
    from autoencoder_toolkit import BernoulliDecoder, Dense, JointGaussianLogEncoder

    trunk = torch.nn.Sequential(torch.nn.Linear(5, 8), _Swish(), _Scale(8, 0.5))
    return JointGaussianLogEncoder(trunk, Dense(8, 2), Dense(8, 2)) * BernoulliDecoder(5, 2, [8], ["relu"], "sigmoid")


def test_a_model_with_registered_layers_saves_and_loads(tmp_path, monkeypatch) -> None:
    import autoencoder_toolkit as aet
    from autoencoder_toolkit import inference
    from autoencoder_toolkit.models import architecture

    monkeypatch.setattr(architecture, "_USER_LAYERS", {})
    torch.manual_seed(0)
    model = _user_model()
    with pytest.raises(TypeError, match=r"register_layer\(_Swish\)"):
        save_model(model, tmp_path / "m.safetensors")
    assert aet.register_layer(_Swish) is _Swish
    aet.register_layer(_Scale)
    with torch.no_grad():
        model.encoder.encoder[2].weight.mul_(3)
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = aet.load_model(path)
    assert not loaded.training  # ready to use
    assert type(loaded.encoder.encoder[1]) is _Swish and loaded.encoder.encoder[2].n == 8
    x = torch.rand(4, 5)
    np.testing.assert_array_equal(loaded.encode(x).numpy(), model.eval().encode(x).numpy())
    with pytest.raises(CheckpointError, match="runs in torch only|_Swish"):
        inference.load(path)
    # another process that has not registered the class: a clear message, nothing unpickled
    monkeypatch.setattr(architecture, "_USER_LAYERS", {})
    with pytest.raises(CheckpointError, match=r"layer class '_Swish' is not registered in this process; .*"
                                              r"register_layer\(_Swish\)"):
        load_model(path)


def test_register_layer_refuses_what_it_cannot_describe(monkeypatch) -> None:
    import autoencoder_toolkit as aet
    from autoencoder_toolkit.models import architecture

    monkeypatch.setattr(architecture, "_USER_LAYERS", {})

    class NeedsArgs(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="constructor takes n; give config="):
        aet.register_layer(NeedsArgs)
    aet.register_layer(NeedsArgs, config=lambda layer: {"n": 3})
    with pytest.raises(TypeError, match="expected a torch.nn.Module subclass"):
        aet.register_layer(int)
    other = type("NeedsArgs", (torch.nn.Module,), {"__module__": "elsewhere"})
    with pytest.raises(ValueError, match="is registered for .*NeedsArgs; pass another name="):
        aet.register_layer(other)
