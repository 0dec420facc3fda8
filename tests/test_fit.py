"""training.fit as a PyTorch user calls it: any data kind, defaults, validation data, callbacks, TensorBoard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import autoencoder_toolkit as aet
from autoencoder_toolkit.training import DataSplit, EarlyStopping, History, TensorBoardLogger, TrainingState, fit

D, L = 16, 2
X = np.random.default_rng(0).random((256, D)).astype(np.float32)
X_TEST = np.random.default_rng(1).random((64, D)).astype(np.float32)


def _model(kind: str = "infomax"):
    torch.manual_seed(0)
    vae = aet.JointGaussianLogEncoder(D, L, [16], ["relu"], "identity") * aet.BernoulliDecoder(D, L, [16], ["relu"],
                                                                                               "sigmoid")
    if kind == "vae":
        return vae
    return aet.InfoMaxVAE(vae, aet.MutualInfoChain(D, L, [16], ["relu"], "identity"))


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_fit_with_nothing_but_data_uses_sensible_defaults():
    model = _model()
    history = aet.fit(model, X, epochs=3, progress=False)
    assert isinstance(history, History) and [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["step"] == 3 * (256 // 64) and history[-1]["lr"] == 1e-3
    assert np.isfinite(history.column("loss")).all() and "critic_loss" in history[-1]
    assert history.state.epoch == 3 and not history.stopped_early
    # deterministic for the default seed
    again = aet.fit(_model(), X, epochs=3, progress=False)
    assert history.column("loss") == again.column("loss")


@pytest.mark.parametrize("kind", ["array", "memmap", "tensor", "split", "dataset"])
def test_every_data_kind_gives_the_same_training(kind, tmp_path):
    reference = _model()
    expected = fit(reference, X, epochs=2, batch_size=32, seed=3, progress=False)
    if kind == "array":
        data = X.copy()
    elif kind == "memmap":
        np.save(tmp_path / "x.npy", X)
        data = np.load(tmp_path / "x.npy", mmap_mode="r")
    elif kind == "tensor":
        data = torch.from_numpy(X.copy())
    elif kind == "split":
        data = DataSplit(X)
    else:
        data = TensorDataset(torch.from_numpy(X), torch.zeros(len(X)))  # (x, label) items
    model = _model()
    history = fit(model, data, epochs=2, batch_size=32, seed=3, progress=False)
    assert history.column("loss") == expected.column("loss")
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_a_data_loader_brings_its_own_batches():
    loader = DataLoader(TensorDataset(torch.from_numpy(X)), batch_size=50, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model = _model("vae")
    history = fit(model, loader, epochs=2, progress=False)
    assert history[-1]["step"] == 2 * len(loader)  # 6 batches per epoch, the last one of 6 samples
    assert "critic_loss" not in history[-1]


def test_validation_data_and_continuing_from_the_history_state():
    model = _model()
    history = fit(model, X, epochs=2, validation_data=torch.from_numpy(X_TEST), progress=False)
    assert {"test_loss", "test_reconstruction", "test_kl", "test_mi"} <= set(history[-1])
    more = fit(model, X, history.optimizer, epochs=4, state=history.state, validation_data=X_TEST, progress=False)
    assert [r["epoch"] for r in more] == [1, 2, 3, 4]
    # one run of 4 epochs is the same
    whole = fit(_model(), X, epochs=4, validation_data=X_TEST, progress=False)
    assert whole.column("loss") == more.column("loss")


def test_callbacks_see_every_epoch_and_can_stop():
    seen = []
    history = fit(_model(), X, epochs=10, progress=False,
                  callbacks=[lambda st: seen.append(st.epoch) or st.epoch == 3])
    assert seen == [1, 2, 3] and len(history) == 3 and history.stopped_early

    class Counting(aet.training.Callback):
        def __init__(self):
            self.steps, self.begun, self.ended = 0, False, False

        def on_train_begin(self, state, model):
            self.begun = True

        def on_step_end(self, state, losses):
            self.steps += 1
            assert len(losses) == 2

        def on_train_end(self, state, model):
            self.ended = True

    c = Counting()
    fit(_model(), X, epochs=2, progress=False, callbacks=c)
    assert c.begun and c.ended and c.steps == 2 * (256 // 64)


def test_early_stopping_stops_and_restores_the_best_weights():
    model = _model()
    stop = EarlyStopping("test_loss", patience=1, min_delta=1e9)  # nothing counts as an improvement
    history = fit(model, X, epochs=10, validation_data=X_TEST, callbacks=[stop], lr=1e-2, progress=False)
    assert stop.best_epoch == 1 and stop.stopped_epoch == 3 and len(history) == 3 and history.stopped_early
    after_one = _model()
    fit(after_one, X, epochs=1, validation_data=X_TEST, lr=1e-2, progress=False)
    for a, b in zip(model.parameters(), after_one.parameters()):  # the weights of epoch 1 are back
        assert torch.equal(a, b)
    with pytest.raises(KeyError, match="'test_loss' is not in the epoch record.*validation_data"):
        fit(_model(), X, epochs=1, callbacks=[EarlyStopping()], progress=False)


def test_tensorboard_event_files_are_written_and_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path / "tb", every_steps=2)
    history = fit(_model(), X, epochs=2, validation_data=X_TEST, logger=logger, progress=False)
    logger.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/step_loss", "train/step_critic_loss", "epoch/loss", "epoch/test_loss", "epoch/mi"} <= tags
    epoch_loss = [e.value for e in events.Scalars("epoch/loss")]
    np.testing.assert_allclose(epoch_loss, history.column("loss"), rtol=1e-6)
    assert [e.step for e in events.Scalars("train/step_loss")] == [2, 4, 6, 8]
    # a folder name is enough
    fit(_model(), X, epochs=1, logger=str(tmp_path / "tb2"), progress=False)
    assert any((tmp_path / "tb2").iterdir())


@pytest.mark.parametrize("data, error, match", [
    ([[0.0] * D] * 10, TypeError, "data: expected an array, a tensor, a Dataset or a DataLoader, got a list"),
    ((X * 255).astype(np.uint8), TypeError, "data: expected floating-point data, got dtype uint8; .* x / 255"),
    (X[:10], ValueError, "batch_size: 64 per process .* larger than the 10 training samples; use a batch size of "
                         "at most 10"),
    (X[0], ValueError, r"data: expected samples in rows, an array of shape \(N, D\) or \(N, \*shape\), got shape "
                       r"\(16,\)"),
])
def test_bad_data_is_refused_clearly(data, error, match):
    with pytest.raises(error, match=match):
        fit(_model(), data, epochs=1, progress=False)


def test_other_bad_arguments_are_refused_clearly():
    with pytest.raises(TypeError, match="model: expected an InfoMaxVAE, a VAE or an MMDVAE"):
        fit(torch.nn.Linear(2, 2), X)
    with pytest.raises(ValueError, match="epochs: expected an integer >= 0"):
        fit(_model(), X, epochs=-1)
    with pytest.raises(TypeError, match="validation_data and held_out are the same argument"):
        fit(_model(), X, validation_data=X_TEST, held_out=X_TEST)
    with pytest.raises(TypeError, match="state: expected a TrainingState"):
        fit(_model(), X, state={"epoch": 0})
    with pytest.raises(TypeError, match=r"callbacks\[0\]: expected a function"):
        fit(_model(), X, callbacks=[3])


def test_the_model_is_left_in_the_mode_it_came_in():
    model = _model().eval()
    fit(model, X, epochs=1, progress=False)
    assert not model.training
    state = TrainingState.fresh(0)
    fit(model.train(), X, epochs=1, state=state, progress=False)
    assert model.training


def test_the_progress_bar_is_sparse_when_not_on_a_terminal():
    import io

    out = io.StringIO()  # not a terminal, as a log file or CI is
    fit(_model(), X, epochs=3, batch_size=8, progress=True, progress_file=out)
    updates = out.getvalue().count("\r")
    assert 0 < updates <= 4, out.getvalue()  # not one line per batch (96 batches here)


def test_fit_compile_needs_the_fused_infomax_step():
    with pytest.raises(ValueError, match="compile: compile=True compiles the fused InfoMax-VAE step"):
        fit(_model("vae"), X, epochs=1, compile=True, progress=False)
    with pytest.raises(ValueError, match="fused=True"):
        fit(_model(), X, epochs=1, compile=True, progress=False)
    with pytest.raises(TypeError, match="compile: expected True or False"):
        fit(_model(), X, epochs=1, fused=True, compile=1, progress=False)
