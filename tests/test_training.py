"""The training loop: exact resumption, divergence, and data read one batch at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autoencoder_toolkit import testing as kit
from autoencoder_toolkit.checkpoints import load_checkpoint, save_checkpoint
from autoencoder_toolkit.datasets import load_dataset
from autoencoder_toolkit.metrics import evaluate_model
from autoencoder_toolkit.training import (METRICS_COLUMNS, DataSplit, RunDirectory, TrainingDiverged, TrainingState,
                                          fit, loss_kwargs_for, make_optimizers, mlp_model, optimizer_dict)

KW = {"β": 1.0, "α": 1.0}


@pytest.fixture(scope="module")
def digits():
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    return DataSplit(train.x[:320], None, train.labels[:320]), DataSplit(test.x[:100], None, test.labels[:100])


def new_run(kind="infomax", seed=3, lr=1e-3):
    torch.manual_seed(seed)
    model = mlp_model(kind, (64,), 2, [16])
    return model, make_optimizers(model, lr), TrainingState.fresh(seed)


@pytest.mark.parametrize("kind", ["infomax", "vae"])
def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, digits, kind) -> None:
    train, test = digits
    m1, o1, s1 = new_run(kind)
    fit(m1, train, o1, epochs=3, batch_size=64, loss_kwargs=loss_kwargs_for(m1, 1.0, 1.0), state=s1,
        held_out=test, progress=False)

    m2, o2, s2 = new_run(kind)
    fit(m2, train, o2, epochs=1, batch_size=64, loss_kwargs=loss_kwargs_for(m2, 1.0, 1.0), state=s2,
        held_out=test, progress=False)
    js, tensors = s2.to_checkpoint()
    save_checkpoint(tmp_path, m2, optimizer_dict(o2), js, tensors)
    del m2, o2, s2
    ck = load_checkpoint(tmp_path)
    m3 = ck.model
    o3 = make_optimizers(m3, 1.0)
    ck.restore_optimizers(optimizer_dict(o3))
    s3 = TrainingState.from_checkpoint(ck.state, ck.tensors)
    fit(m3, train, o3, epochs=3, batch_size=64, loss_kwargs=loss_kwargs_for(m3, 1.0, 1.0), state=s3,
        held_out=test, progress=False)

    kit.assert_unchanged(m3, o3, kit.snapshot(m1, o1), "resuming from the checkpoint (against the run without it)")
    assert (s3.epoch, s3.step) == (s1.epoch, s1.step) == (3, 15)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in s1.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in s3.history] == strip
    if kind == "vae":
        assert "critic_loss" not in s1.history[0] and "test_mi" not in s1.history[0]
    else:
        h = s1.history[-1]
        assert h["mi"] == pytest.approx(-h["critic_loss"]) and math.isfinite(h["test_mi"])


def test_history_entries_and_callback(digits) -> None:
    train, test = digits
    model, opt, state = new_run()
    seen = []
    fit(model, train, opt, epochs=2, batch_size=100, loss_kwargs=KW, state=state, held_out=test,
        on_epoch_end=lambda st: seen.append((st.epoch, st.step, len(st.history))), progress=False)
    assert seen == [(1, 3, 1), (2, 6, 2)]  # 320 // 100 = 3 full batches per epoch
    h = state.history[1]
    assert set(h) == {"epoch", "step", "loss", "critic_loss", "mi", "mi_std", "lr", "test_reconstruction",
                      "test_kl", "test_mi", "test_loss", "seconds"}
    assert h["test_loss"] == pytest.approx(-h["test_reconstruction"] + h["test_kl"] - h["test_mi"])
    assert h["lr"] == 1e-3 and h["test_kl"] > 0 and h["test_reconstruction"] < 0


def test_divergence_stops_with_finite_parameters(digits) -> None:
    train, _ = digits
    model, opt, state = new_run(lr=1e6)
    calls = []
    with pytest.raises(TrainingDiverged) as info:
        fit(model, train, opt, epochs=5, batch_size=64, loss_kwargs=KW, state=state,
            on_epoch_end=lambda st: calls.append(st.epoch), progress=False)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.batch >= 1 and err.epoch >= 1 and err.last_epoch == err.epoch - 1
    assert f"epoch {err.epoch}, batch {err.batch}" in str(err) and "not finite" in str(err)
    assert calls == list(range(1, err.epoch))  # nothing was reported for the diverging epoch
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


class GuardedArray:
    """An array that records how many rows each read takes and refuses to be loaded whole."""

    def __init__(self, arr: np.ndarray) -> None:
        self._a = arr
        self.shape, self.ndim, self.dtype = arr.shape, arr.ndim, arr.dtype
        self.max_rows = 0
        self.reads = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        out = self._a[index]
        self.max_rows = max(self.max_rows, out.shape[0])
        self.reads += 1
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was loaded")


@pytest.mark.filterwarnings("ignore:x. batch of 32 samples:UserWarning")
def test_training_and_evaluation_read_one_batch_at_a_time(tmp_path, digits) -> None:
    train, _ = digits
    x = np.asarray(train.x)
    np.save(tmp_path / "x.npy", x)
    guard = GuardedArray(np.load(tmp_path / "x.npy", mmap_mode="r"))
    idx = np.arange(0, 320, 2)
    split = DataSplit(guard, idx)
    held = DataSplit(guard, np.arange(1, 320, 2))
    model, opt, state = new_run()
    fit(model, split, opt, epochs=2, batch_size=32, loss_kwargs=KW, state=state, held_out=held,
        eval_batch_size=40, progress=False)
    assert guard.max_rows <= 40 and guard.reads > 10
    report = evaluate_model(model, held.view(), batch_size=25)
    assert report.n == 160 and guard.max_rows <= 40
    # the split maps positions to rows
    np.testing.assert_array_equal(split.read(np.array([0, 3])), x[[0, 6]])


def test_fit_checks_the_batch_size(digits) -> None:
    train, _ = digits
    model, opt, state = new_run()
    with pytest.raises(ValueError, match="larger than the 320 training samples"):
        fit(model, train, opt, epochs=1, batch_size=321, loss_kwargs=KW, state=state, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, train, opt, epochs=1, batch_size=1, loss_kwargs=KW, state=state, progress=False)


def test_fused_step_trains(digits) -> None:
    pytest.importorskip("autoencoder_toolkit.fused")
    train, _ = digits
    model, opt, state = new_run()
    fit(model, train, opt, epochs=2, batch_size=64, loss_kwargs=KW, state=state, fused=True, progress=False)
    assert state.step == 10 and state.history[1]["loss"] < state.history[0]["loss"]


def test_metrics_csv(tmp_path) -> None:
    run = RunDirectory(tmp_path)
    run.write_metrics([{"epoch": 1, "step": 5, "loss": 1.25, "lr": 0.001, "seconds": 0.5},
                       {"epoch": 2, "step": 10, "loss": 1.0, "critic_loss": -0.5, "mi": 0.5}])
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == list(METRICS_COLUMNS)
    row = dict(zip(METRICS_COLUMNS, lines[1].split(",")))
    assert row["epoch"] == "1" and float(row["loss"]) == 1.25 and row["critic_loss"] == ""
    assert float(dict(zip(METRICS_COLUMNS, lines[2].split(",")))["mi"]) == 0.5


def test_the_epoch_snapshot_refreshed_in_place_restores_the_last_take(digits) -> None:
    """A snapshot taken before the optimizers hold any state, then after each epoch: later takes
    reuse the first copies, and a restore puts back exactly the last take."""
    from autoencoder_toolkit.training.saving import EpochSnapshot

    train, _ = digits
    model, opt, state = new_run()
    snap = EpochSnapshot()
    snap.take(model, opt, state)  # no optimizer state yet
    fit(model, train, opt, epochs=1, batch_size=64, state=state, loss_kwargs=KW, progress=False)
    snap.take(model, opt, state)
    first = dict(snap._model)
    fit(model, train, opt, epochs=2, batch_size=64, state=state, loss_kwargs=KW, progress=False)
    snap.take(model, opt, state)
    assert all(snap._model[k] is first[k] for k in first)  # refreshed in place
    want = kit.snapshot(model, opt)
    fit(model, train, opt, epochs=3, batch_size=64, state=state, loss_kwargs=KW, progress=False)
    assert state.epoch == 3
    restored = snap.restore(model, opt)
    assert restored.epoch == 2 and restored.step == 2 * (len(train) // 64)
    kit.assert_unchanged(model, opt, want, "after EpochSnapshot.restore")
