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
