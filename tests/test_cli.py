"""The autoencoder-toolkit command: train, evaluate, encode, resume, and its errors."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from autoencoder_toolkit import cli
from autoencoder_toolkit.checkpoints import load_model

from .conftest import needs_compiler

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The settings of the shared run: small and fast (digits, 2 epochs of 22 batches).
SMALL = ["--hidden", "16", "--latent-dim", "3", "--epochs", "2", "--seed", "5"]


def run_cli(args, capsys):
    """``main(args)`` in this process: (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def tensors(run: Path) -> dict:
    ck = run / "checkpoint"
    return {**{f"model/{k}": v for k, v in load_file(ck / "model.safetensors").items()},
            **{f"opt/{k}": v for k, v in load_file(ck / "optimizer.safetensors").items()}}


def assert_same_checkpoint(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    sa = json.loads((a / "checkpoint" / "state.json").read_text())
    sb = json.loads((b / "checkpoint" / "state.json").read_text())
    assert sa["optimizers"] == sb["optimizers"]
    for key in ("epoch", "step", "seed", "batch_rng"):
        assert sa["state"][key] == sb["state"][key]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished 2-epoch run on digits (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    rc = cli.main(["train", *SMALL, "--out", str(run), "--quiet"])
    assert rc == 0
    return run


# ---------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------


def test_a_run_directory_opens_with_the_torch_free_loader(digits_run) -> None:
    from autoencoder_toolkit import inference
    from autoencoder_toolkit.datasets import load_dataset

    served = inference.load(digits_run, backend="numpy")  # the run's newest checkpoint, no torch needed
    model = load_model(digits_run)
    x = load_dataset("digits", split="test").x[:50]
    np.testing.assert_allclose(served.encode(x), model.encode(x), rtol=1e-5, atol=1e-6)
    assert isinstance(served, inference.FrozenInfoMaxVAE)
    same = inference.load(digits_run / "checkpoint" / "model.safetensors", backend="numpy")
    np.testing.assert_array_equal(same.encode(x), served.encode(x))


def test_train_writes_a_complete_run_directory(digits_run) -> None:
    run = digits_run
    for name in ("config.json", "metrics.csv", "evaluation.json", "summary.txt", "checkpoint/model.safetensors",
                 "checkpoint/optimizer.safetensors", "checkpoint/state.json"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.tmp").exists() and not (run / "checkpoint.prev").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["hidden"] == [16] and config["settings"]["decoder"] == "bernoulli"
    assert config["data"] == {"source": "digits", "path": None, "labels": None, "n_samples": 1797,
                              "n_train": 1438, "n_test": 359, "sample_shape": [64],
                              "scaling": {"kind": "none", "shift": 0.0, "factor": 1.0}}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,loss,critic_loss,mi")
    assert rows[2].split(",")[:2] == ["2", "44"]  # 1438 // 64 = 22 steps per epoch
    model = load_model(run)
    assert model.latent_dim == 3
    summary = (run / "summary.txt").read_text()
    for text in ("InfoMax-VAE on digits", "MI estimate", "active units", "classification accuracy", "figures"):
        assert text in summary
    for name in ("loss.png", "mutual_info.png", "latent.png", "reconstructions.png", "samples.png"):
        path = run / "figures" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert float(image[..., :3].std()) > 0.01  # not blank


def test_image_grids_are_drawn_for_image_data_only(tmp_path, capsys) -> None:
    from autoencoder_toolkit.evaluation.plots import image_grid

    grid = image_grid(np.arange(2 * 4 * 3, dtype=float).reshape(2, 12) / 23, (4, 3), columns=2)
    assert grid.shape == (4, 3 * 2 + 1)  # two tiles and a one-pixel gap
    np.testing.assert_allclose(grid[:, :3], np.arange(12).reshape(4, 3) / 23)
    np.testing.assert_allclose(grid[:, 4:], np.arange(12, 24).reshape(4, 3) / 23)
    np.savetxt(tmp_path / "t.csv", np.random.default_rng(0).random((120, 16)), delimiter=",")
    rc, _, err = run_cli(["train", "--data", tmp_path / "t.csv", "--epochs", "1", "--hidden", "8", "--out",
                          tmp_path / "r", "--quiet"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "r" / "figures").iterdir()) == ["latent.png", "loss.png",
                                                                            "mutual_info.png"]


def test_train_logs_to_tensorboard(tmp_path, capsys) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rc, _, err = run_cli(["train", *SMALL, "--epochs", "1", "--out", tmp_path / "r", "--tensorboard",
                          tmp_path / "tb", "--quiet"], capsys)
    assert rc == 0, err
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"epoch/loss", "epoch/test_loss", "epoch/mi", "train/step_loss"} <= set(events.Tags()["scalars"])


def test_evaluate_reproduces_the_training_report(digits_run, capsys) -> None:
    before = json.loads((digits_run / "evaluation.json").read_text())
    rc, out, err = run_cli(["evaluate", digits_run], capsys)
    assert rc == 0, err
    after = json.loads((digits_run / "evaluation.json").read_text())
    assert after == before  # same model, same seeds
    assert after["n"] == 359 and len(after["mutual_info"]["values"]) == 10
    assert 0.0 <= after["accuracy"] <= 1.0 and after["kl"] > 0
    assert after["elbo"] == pytest.approx(after["reconstruction_loglikelihood"] - after["kl"])
    assert "MI estimate (critic, 10 shuffles)" in out and "active units" in out


@pytest.mark.parametrize("missing", ["scale", "compile"])
def test_a_run_recorded_before_a_setting_existed_still_opens_and_resumes(missing, digits_run, tmp_path,
                                                                         capsys) -> None:
    run = _copy_run(digits_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    del config["settings"][missing]
    (run / "config.json").write_text(json.dumps(config))
    rc, _, err = run_cli(["evaluate", run, "--quiet"], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["train", "--resume", run, "--epochs", "3", "--quiet"], capsys)
    assert rc == 0, err


def test_encode_writes_means_and_spreads(digits_run, tmp_path, capsys) -> None:
    out_file = tmp_path / "codes.npy"
    rc, out, err = run_cli(["encode", digits_run, "digits", "--out", out_file, "--with-sigma",
                            "--batch-size", "500"], capsys)
    assert rc == 0, err
    mu = np.load(out_file)
    sigma = np.load(tmp_path / "codes_sigma.npy")
    assert mu.shape == sigma.shape == (1797, 3) and mu.dtype == np.float32
    from autoencoder_toolkit.datasets import load_dataset

    x = load_dataset("digits", split="all").x
    model = load_model(digits_run)
    with torch.no_grad():
        enc = model.vae.encoder(torch.from_numpy(x))
    np.testing.assert_allclose(mu, enc.μ.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma, torch.exp(enc.logσ).numpy(), rtol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npy", "codes_sigma.npy"]
    # the same data from a memory-mapped .npy file of images (reshaped to the model's input)
    np.save(tmp_path / "imgs.npy", x.reshape(-1, 1, 8, 8))
    rc, out, err = run_cli(["encode", digits_run, tmp_path / "imgs.npy", "--out", tmp_path / "c2.npy", "--quiet"],
                           capsys)
    assert rc == 0 and out.strip() == str(tmp_path / "c2.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "c2.npy"), mu)


def test_encode_writes_csv_with_the_labels_alongside(digits_run, tmp_path, capsys) -> None:
    rc, _, err = run_cli(["encode", digits_run, "digits", "--out", tmp_path / "c.npy", "--with-sigma"], capsys)
    assert rc == 0, err
    rc, out, err = run_cli(["encode", digits_run, "digits", "--out", tmp_path / "c.csv", "--with-sigma"], capsys)
    assert rc == 0, err
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "mu_1,mu_2,mu_3,sigma_1,sigma_2,sigma_3,label"
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    from autoencoder_toolkit.datasets import load_dataset

    assert table.shape == (1797, 7)
    np.testing.assert_array_equal(table[:, :3], np.load(tmp_path / "c.npy"))  # the same float32 values
    np.testing.assert_array_equal(table[:, 3:6], np.load(tmp_path / "c_sigma.npy"))
    np.testing.assert_array_equal(table[:, 6], load_dataset("digits", split="all").labels)
    # a user's file with its labels
    np.save(tmp_path / "x.npy", load_dataset("digits", split="all").x[:10])
    np.savetxt(tmp_path / "y.csv", np.arange(10), fmt="%d")
    rc, _, err = run_cli(["encode", digits_run, tmp_path / "x.npy", "--labels", tmp_path / "y.csv",
                          "--out", tmp_path / "d.csv"], capsys)
    assert rc == 0, err
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0] == "mu_1,mu_2,mu_3,label" and [line.split(",")[-1] for line in lines[1:]] == list(map(str, range(10)))


def test_user_csv_end_to_end(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    x = rng.normal(size=(200, 6)) + 3.0 * y[:, None]
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c,d,e,f", comments="")
    np.savetxt(tmp_path / "y.csv", y, fmt="%d")
    run = tmp_path / "csv_run"
    # the data flag replaces the file's data set; the file's other settings stay
    (tmp_path / "c.toml").write_text('dataset = "mnist5k"\nepochs = 3\n')
    rc, out, err = run_cli(["train", "--data", tmp_path / "x.csv", "--labels", tmp_path / "y.csv", "--hidden", "8",
                            "--latent-dim", "2", "--config", tmp_path / "c.toml", "--out", run], capsys)
    assert rc == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["decoder"] == "gaussian"  # the data are not in [0, 1]
    assert config["data"]["n_train"] == 160 and config["data"]["n_test"] == 40
    assert config["settings"]["epochs"] == 3 and config["settings"]["dataset"] is None
    assert "InfoMax-VAE on x: 160 training / 40 held-out samples" in out
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["n"] == 40 and evaluation["accuracy"] is not None
    rc, out, err = run_cli(["evaluate", run, "--data", tmp_path / "x.csv", "--labels", tmp_path / "y.csv",
                            "--json", tmp_path / "all.json"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "all.json").read_text())["n"] == 200
    rc, out, err = run_cli(["encode", run, tmp_path / "x.csv", "--out", tmp_path / "z.npy"], capsys)
    assert rc == 0, err
    assert np.load(tmp_path / "z.npy").shape == (200, 2)


def test_config_file_and_flags(tmp_path, capsys) -> None:
    (tmp_path / "c.toml").write_text('[train]\nepochs = 1\nhidden = "8,4"\nlatent-dim = 2\nmodel = "vae"\n'
                                     'beta = 4.0\nout = "from_config"\n')
    monkey_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc, out, err = run_cli(["train", "--config", "c.toml", "--latent-dim", "3", "--quiet"], capsys)
    finally:
        os.chdir(monkey_cwd)
    assert rc == 0, err
    assert out.strip() == "from_config" and err == ""
    settings = json.loads((tmp_path / "from_config" / "config.json").read_text())["settings"]
    assert (settings["epochs"], settings["hidden"], settings["latent_dim"], settings["model"], settings["beta"]) \
        == (1, [8, 4], 3, "vae", 4.0)
    assert not (tmp_path / "from_config" / "figures" / "mutual_info.png").exists()  # a VAE has no critic
    evaluation = json.loads((tmp_path / "from_config" / "evaluation.json").read_text())
    assert evaluation["mutual_info"] is None


# ---------------------------------------------------------------------------
# Resume, divergence, kill
# ---------------------------------------------------------------------------


def test_resume_gives_the_uninterrupted_run(digits_run, tmp_path, capsys) -> None:
    run = tmp_path / "r"
    rc, _, err = run_cli(["train", *SMALL[:-4], "--epochs", "1", "--seed", "5", "--out", run, "--quiet"], capsys)
    assert rc == 0, err
    rc, out, err = run_cli(["train", "--resume", run, "--epochs", "2", "--quiet"], capsys)
    assert rc == 0, err
    assert_same_checkpoint(run, digits_run)
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    # a fixed setting cannot change on resume; --lr may
    rc, _, err = run_cli(["train", "--resume", run, "--hidden", "32"], capsys)
    assert rc == 2 and "--hidden 32: cannot change when resuming" in err


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys) -> None:
    run = tmp_path / "d"
    rc, _, err = run_cli(["train", "--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--out", run, "--quiet"],
                         capsys)
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()}
    rc, out, err = run_cli(["train", "--resume", run, "--epochs", "3", "--lr", "1e6"], capsys)
    assert rc == cli.EXIT_DIVERGED == 3
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1
    assert "training diverged at epoch 2" in lines[0] and "(epoch 1)" in lines[0]
    assert f"train --resume {run} --lr 100000" in lines[0]
    after = {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()}
    assert after == before
    # the diverged resume trained no epoch, so the run's record keeps the settings it trained with
    config = json.loads((run / "config.json").read_text())
    assert "resumes" not in config
    assert config["settings"]["lr"] == 1e-3 and config["settings"]["epochs"] == 1
    # resuming to fewer epochs than done trains nothing and records nothing either
    rc, _, err = run_cli(["train", "--resume", run, "--epochs", "1", "--lr", "0.01", "--quiet"], capsys)
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["settings"] == config["settings"]
    # resuming with a sane learning rate continues, and records the change once an epoch trained
    rc, _, err = run_cli(["train", "--resume", run, "--epochs", "3", "--lr", "2e-3", "--quiet"], capsys)
    assert rc == 0, err
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["state"]["epoch"] == 3 and state["optimizers"]["vae"]["param_groups"][0]["lr"] == 2e-3
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["lr"] == 2e-3 and config["settings"]["epochs"] == 3
    assert [r["changed"] for r in config["resumes"]] == [{"epochs": 3, "lr": 2e-3}]
    assert config["resumes"][0]["at_epoch"] == 1


def test_killed_while_saving_then_resumed(digits_run, tmp_path, capsys) -> None:
    run = tmp_path / "k"
    env = {**os.environ, "AUTOENCODER_TOOLKIT_TEST_PAUSE_SAVE": "0.6"}
    proc = subprocess.Popen([sys.executable, "-m", "autoencoder_toolkit", "train", *SMALL, "--out", str(run),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    rotated = 0
    try:
        for line in proc.stderr:
            # saves: epoch 0, then epoch 1; kill the second between moving checkpoint/ aside and
            # installing the new one, when no checkpoint/ folder exists
            if line.startswith("checkpoint-save: rotated"):
                rotated += 1
                if rotated == 2:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "checkpoint").exists()
    assert (run / "checkpoint.prev").is_dir() and (run / "checkpoint.tmp").is_dir()
    rc, out, err = run_cli(["train", "--resume", run], capsys)
    assert rc == 0, err
    assert "resuming from the previous one" in err
    assert_same_checkpoint(run, digits_run)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint"]


# ---------------------------------------------------------------------------
# Damaged checkpoints and user errors: exit 2, one line on stderr
# ---------------------------------------------------------------------------


def _copy_run(digits_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "copy"
    shutil.copytree(digits_run, run)
    return run


def _assert_one_line_error(rc, err, *fragments) -> None:
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("autoencoder-toolkit"), err
    assert "Traceback" not in err and ": error: " in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("damage, message", [
    ("pickle", "zip archive (the format of torch.save)"),
    ("truncate", "truncated or replaced"),
    ("corrupt", "SHA-256 digest differs"),
])
def test_damaged_checkpoint_is_refused(digits_run, tmp_path, capsys, damage, message) -> None:
    run = _copy_run(digits_run, tmp_path)
    target = run / "checkpoint" / "model.safetensors"
    if damage == "pickle":
        torch.save(load_model(run).state_dict(), target)
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        data = bytearray(target.read_bytes())
        data[-50] ^= 0xFF
        target.write_bytes(bytes(data))
    for args in (["evaluate", run], ["train", "--resume", run, "--epochs", "3"],
                 ["encode", run, "digits", "--out", tmp_path / "c.npy"]):
        rc, _, err = run_cli(args, capsys)
        _assert_one_line_error(rc, err, message)


def _user_error_cases(tmp: Path, run: Path) -> list:
    (tmp / "plain").mkdir()
    (tmp / "bad.toml").write_text("epochs = \n")
    (tmp / "unknown.toml").write_text("epochz = 3\n")
    (tmp / "wrongtype.toml").write_text('epochs = "many"\n')
    np.savetxt(tmp / "nan.csv", np.array([[1.0, np.nan], [2.0, 3.0], [1, 1], [2, 2]]), delimiter=",")
    np.save(tmp / "wide.npy", np.zeros((5, 7), np.float32))
    np.savetxt(tmp / "iris.csv", np.random.default_rng(0).random((150, 64)), delimiter=",")
    np.save(tmp / "iris.npy", np.zeros((10, 64), np.float32))
    (tmp / "tables.toml").write_text("[train]\nepochs = 1\n\n[evaluate]\nn-shuffles = 3\n")
    (tmp / "twice.toml").write_text("batch_size = 32\nbatch-size = 64\n")
    return [
        (["train", "--dataset", "cifar"], "unknown data set 'cifar'"),
        (["train", "--data", tmp / "missing.npy"], "no such file"),
        (["train", "--data", tmp / "nan.csv"], "non-finite"),
        (["train", "--data", tmp / "wide.npy", "--dataset", "digits"], "give one data source"),
        (["train", "--labels", tmp / "wide.npy"], "--labels: applies to --data only"),
        (["train", "--epochs", "0"], "--epochs: expected an integer >= 1"),
        (["train", "--hidden", "a,b"], "--hidden: expected comma-separated"),
        (["train", "--lr", "-1"], "--lr: expected a number > 0"),
        (["train", "--decoder", "poisson"], "--decoder: expected one of bernoulli, gaussian"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--config", tmp / "missing.toml"], "--config: no such file"),
        (["train", "--config", tmp / "bad.toml"], "cannot parse"),
        (["train", "--config", tmp / "unknown.toml"], "unknown key 'epochz'"),
        (["train", "--config", tmp / "wrongtype.toml"], "key 'epochs': expected an integer"),
        (["train", "--out", run], "already exists"),
        (["train", "--batch-size", "5000"], "larger than the 1438 training samples"),
        (["evaluate", tmp / "plain"], "is not a run directory"),
        (["evaluate", tmp / "nowhere"], "no such directory"),
        (["encode", run, tmp / "missing.npy", "--out", tmp / "c.npy"], "no such file"),
        (["encode", run, tmp / "wide.npy", "--out", tmp / "c.npy"], "the model takes samples of shape (64,)"),
        (["encode", run, "digits", "--out", tmp / "c.txt"], "expected a .npy or .csv file name"),
        (["encode", run, "digits"], "the following arguments are required: --out"),
        ([], "choose a command"),
        # found by attack: each of these used to fail deep inside, or start a run directory first
        (["train", "--seed", str(2**64)], "--seed: expected an integer in [0, 9223372036854775807]"),
        (["train", "--data", tmp / "iris.csv", "--test-fraction", "0.999"], "smaller --test-fraction"),
        (["train", "--config", tmp / "tables.toml"], "has a [train] table and table [evaluate]"),
        (["train", "--config", tmp / "twice.toml"], "gives 'batch_size' and 'batch-size'"),
        (["train", "--scale", "log"], "--scale: expected one of auto, none, minmax, standard"),
        (["encode", run, tmp / "iris.npy", "--out", tmp / "iris.npy"], "is an input file"),
        (["evaluate", run, "--data", tmp / "iris.csv", "--json", tmp / "iris.csv"], "is an input file"),
        (["evaluate", run, "--json", run / "config.json"], "inside the run directory"),
    ]


def test_user_errors_exit_2_with_one_line(digits_run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = _user_error_cases(tmp_path, digits_run)
    inputs = {p: p.read_bytes() for p in (tmp_path / "iris.npy", tmp_path / "iris.csv", digits_run / "config.json")}
    for args, fragment in cases:
        rc, out, err = run_cli(args, capsys)
        _assert_one_line_error(rc, err, fragment)
        assert not (tmp_path / "runs").exists(), args  # no run directory was started
    assert {p: p.read_bytes() for p in inputs} == inputs  # no input was overwritten


def test_missing_datasets_and_devices(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AUTOENCODER_TOOLKIT_FASHION_MNIST_DIR", str(tmp_path / "none"))
    rc, _, err = run_cli(["train", "--dataset", "fashion-mnist"], capsys)
    _assert_one_line_error(rc, err, "dataset-fashion-mnist", "apt-get install")
    if not torch.cuda.is_available():
        rc, _, err = run_cli(["train", "--device", "cuda"], capsys)
        _assert_one_line_error(rc, err, "CUDA is not available")
    rc, _, err = run_cli(["train", "--model", "vae", "--fused", "--epochs", "1"], capsys)
    assert rc == 2 and "InfoMax-VAE only" in err


@pytest.mark.parametrize("args", [["--compile", "--faithful"], ["--compile", "--model", "vae"],
                                  ["--compile", "--nproc", "2"]])
def test_compile_where_it_does_not_apply_is_one_line(args, tmp_path, capsys) -> None:
    rc, _, err = run_cli(["train", *args, "--epochs", "1", "--out", tmp_path / "run"], capsys)
    _assert_one_line_error(rc, err, "--compile")
    assert not (tmp_path / "run").exists()


@needs_compiler
def test_train_compile_runs_the_compiled_fused_step(tmp_path, capsys) -> None:
    rc, out, err = run_cli(["train", *SMALL, "--epochs", "1", "--compile", "--quiet", "--out", tmp_path / "run"],
                           capsys)
    assert rc == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["settings"]["compile"] is True and config["settings"]["fused"] is True
    assert json.loads((tmp_path / "run" / "evaluation.json").read_text())["elbo"] < 0


def test_debug_shows_the_traceback(capsys) -> None:
    rc, _, err = run_cli(["train", "--dataset", "cifar", "--debug"], capsys)
    assert rc == 2 and "Traceback" in err and "unknown data set" in err


def test_overwrite_replaces_only_runs(digits_run, tmp_path, capsys) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    rc, _, err = run_cli(["train", "--out", tmp_path / "other", "--overwrite", "--epochs", "1"], capsys)
    _assert_one_line_error(rc, err, "is not a run directory, so it is not replaced")
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def test_module_entry_point_and_help() -> None:
    result = subprocess.run([sys.executable, "-m", "autoencoder_toolkit", "train", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--latent-dim", "--hidden", "--lr", "--alpha", "--beta", "--seed",
                 "--device", "--out", "--resume", "--config", "--decoder", "--fused", "--quiet", "--overwrite",
                 "--scale", "--tensorboard", "--compile", "--faithful", "--checkpoint-every"):
        assert flag in result.stdout
    # one default per flag, stated once (argparse's own "(default: None)" would contradict it)
    assert "(default: None)" not in result.stdout
    entries = re.split(r"\n  (?=-)", result.stdout)
    for entry in entries:
        assert entry.count("default") <= 1, entry


# ---------------------------------------------------------------------------
# Faults found by trying to break the command: what it does instead
# ---------------------------------------------------------------------------


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unscaled_data_blame_the_scale_and_eight_bit_data_are_scaled(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "wide.npy", (rng.random((600, 784)) * 30).astype(np.float32))
    rc, _, err = run_cli(["train", "--data", tmp_path / "wide.npy", "--epochs", "1", "--out", tmp_path / "a"], capsys)
    assert "warning: the data range from" in err and "--scale standard" in err  # said before training
    assert rc == 3
    line = _one_error_line(err)
    assert "diverged at epoch 1, batch 1" in line and "the likely cause is the scale of the data" in line
    assert "--scale standard" in line and "--lr" not in line.split("Kept")[-1]  # no learning-rate loop
    rc, _, err = run_cli(["train", "--data", tmp_path / "wide.npy", "--epochs", "1", "--scale", "standard",
                          "--out", tmp_path / "b", "--quiet"], capsys)
    assert rc == 0, err
    scaling = json.loads((tmp_path / "b" / "config.json").read_text())["data"]["scaling"]
    assert scaling["kind"] == "standard" and scaling["shift"] == pytest.approx(15.0, abs=0.1)
    # 8-bit data: divided by 255 (as the library asks of uint8 tensors), and said so
    x8 = rng.integers(0, 256, size=(300, 64), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", x8)
    rc, _, err = run_cli(["train", "--data", tmp_path / "u8.npy", "--epochs", "1", "--hidden", "16",
                          "--out", tmp_path / "c"], capsys)
    assert rc == 0, err
    assert "holds 8-bit integers; they are divided by 255" in err
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["data"]["scaling"] == {"kind": "8-bit", "shift": 0.0, "factor": 255.0}
    assert config["settings"]["decoder"] == "bernoulli"  # the scaled data lie in [0, 1]
    # encode applies the run's scaling to new data
    rc, _, err = run_cli(["encode", tmp_path / "c", tmp_path / "u8.npy", "--out", tmp_path / "z.npy"], capsys)
    assert rc == 0, err
    with torch.no_grad():
        expected = load_model(tmp_path / "c").encode(torch.from_numpy(x8.astype(np.float32) / 255))
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_small_data_warn_about_dropped_samples_and_small_batches(tmp_path, capsys, monkeypatch) -> None:
    from autoencoder_toolkit.models import checks

    monkeypatch.setattr(checks, "_warned_small_batch", False)  # shown once per process
    np.savetxt(tmp_path / "iris.csv", np.random.default_rng(1).random((150, 4)), delimiter=",")
    rc, _, err = run_cli(["train", "--data", tmp_path / "iris.csv", "--epochs", "1", "--hidden", "8",
                          "--out", tmp_path / "r"], capsys)
    assert rc == 0, err
    assert "--batch-size 64: 56 of the 120 training samples (47%) are left out of every epoch" in err
    assert "--batch-size 60 uses them all" in err
    rc, _, err = run_cli(["train", "--data", tmp_path / "iris.csv", "--epochs", "1", "--hidden", "8",
                          "--batch-size", "60", "--out", tmp_path / "s"], capsys)
    assert rc == 0, err
    assert "left out" not in err
    assert "warning: --batch-size: batch of 60 samples; the mutual-information estimate is poor below 64" in err


def test_a_second_writer_is_refused_while_a_run_is_held(digits_run, tmp_path, capsys) -> None:
    run = _copy_run(digits_run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom autoencoder_toolkit.training.run_directory import "
         "RunDirectory\nRunDirectory(sys.argv[1]).lock()\nprint('held', flush=True)\ntime.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()}
        for args in (["train", "--resume", run, "--epochs", "3"], ["train", "--out", run, "--overwrite"],
                     ["evaluate", run]):
            rc, _, err = run_cli(args, capsys)
            _assert_one_line_error(rc, err, f"is in use by process {holder.pid}")
        assert {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()} == before
        # reading is not writing: evaluate with --json elsewhere works, and says what it left alone
        rc, _, err = run_cli(["evaluate", run, "--json", tmp_path / "m.json"], capsys)
        assert rc == 0, err
        assert "in use by" in err and "evaluation.json was left as it was" in err
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = run_cli(["train", "--resume", run, "--epochs", "3", "--quiet"], capsys)
    assert rc == 0, err


def _save_pauses(run: Path, *extra: str, env_pause: str = "0.8") -> subprocess.Popen:
    env = {**os.environ, "AUTOENCODER_TOOLKIT_TEST_PAUSE_SAVE": env_pause, "MPLBACKEND": "Agg"}
    return subprocess.Popen([sys.executable, "-m", "autoencoder_toolkit", "train", *SMALL, "--out", str(run),
                             "--quiet", "--checkpoint-every", "1", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("sig, status, said", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_stop_during_a_save_names_the_checkpoint_on_disk(tmp_path, sig, status, said) -> None:
    run = tmp_path / "s"
    proc = _save_pauses(run)
    models = 0
    try:
        for line in proc.stderr:
            # the second save (epoch 1) has written its model into checkpoint.tmp/ only
            if line.startswith("checkpoint-save: model"):
                models += 1
                if models == 2:
                    proc.send_signal(sig)
                    break
        rest = proc.stderr.read()
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == status
    lines = [line for line in rest.splitlines() if said in line]
    assert len(lines) == 1 and "Traceback" not in rest, rest
    assert "the last checkpoint (epoch 0) is kept" in lines[0]  # epoch 1 never reached checkpoint/
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["state"]["epoch"] == 0


def test_a_data_file_truncated_during_training_stops_with_a_message(tmp_path) -> None:
    x = np.random.default_rng(2).random((400, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = tmp_path / "t"
    proc = _save_pauses(run, "--data", str(tmp_path / "x.npy"))
    try:
        for line in proc.stderr:
            if line.startswith("checkpoint-save: installed"):  # the epoch-0 checkpoint is complete
                with open(tmp_path / "x.npy", "r+b") as fh:
                    fh.truncate(4096)
                break
        rest = proc.stderr.read()
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == 4, rest  # not a SIGBUS
    line = _one_error_line(rest)
    assert "the data file was truncated while in use" in line and "(epoch 0) is kept" in line
    assert "--resume" in line


@pytest.mark.parametrize("code, said", [(errno.ENOSPC, "the disk is full"),
                                        (errno.EROFS, "the storage is read-only"),
                                        (errno.EDQUOT, "the disk quota is exceeded")])
def test_storage_failures_stop_training_with_one_line(tmp_path, capsys, monkeypatch, code, said) -> None:
    from autoencoder_toolkit.io import checkpoint as io_checkpoint

    real = io_checkpoint.atomic_write_bytes
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) > 2:  # the epoch-0 checkpoint is written, then the storage fails
            raise OSError(code, os.strerror(code))
        return real(path, data)

    monkeypatch.setattr(io_checkpoint, "atomic_write_bytes", failing)
    run = tmp_path / "f"
    rc, _, err = run_cli(["train", *SMALL, "--out", run], capsys)
    assert rc == 4
    line = _one_error_line(err)
    assert said in line and "the last checkpoint (epoch 0) is kept" in line and "--resume" in line
    monkeypatch.setattr(io_checkpoint, "atomic_write_bytes", real)
    rc, _, err = run_cli(["train", "--resume", run, "--quiet"], capsys)
    assert rc == 0, err


def _read_only(monkeypatch, root: Path) -> None:
    """Make every write under ``root`` fail as on read-only storage."""
    real = os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def guarded(path, flags, *args, **kwargs):
        if flags & writes and Path(path).resolve().is_relative_to(root.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def test_evaluate_a_read_only_run_with_json_elsewhere(digits_run, tmp_path, capsys, monkeypatch) -> None:
    run = _copy_run(digits_run, tmp_path)
    before = (run / "evaluation.json").read_bytes()
    _read_only(monkeypatch, run)
    rc, _, err = run_cli(["evaluate", run, "--json", tmp_path / "m.json"], capsys)
    assert rc == 0, err
    assert "cannot be written (the storage is read-only)" in err
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(before)
    rc, _, err = run_cli(["evaluate", run], capsys)
    _assert_one_line_error(rc, err, "the storage is read-only", "pass --json PATH")
    assert (run / "evaluation.json").read_bytes() == before


def test_encode_on_a_full_disk_leaves_nothing_behind(digits_run, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "codes.npy").write_bytes(b"earlier result")

    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    rc, _, err = run_cli(["encode", digits_run, "digits", "--out", out / "codes.npy", "--with-sigma"], capsys)
    assert rc == 4
    line = _one_error_line(err)
    assert "the disk is full" in line and "none was left half-written" in line
    assert sorted(p.name for p in out.iterdir()) == ["codes.npy"]  # no .part file
    assert (out / "codes.npy").read_bytes() == b"earlier result"


def test_a_symlinked_checkpoint_is_refused_before_anything_changes(digits_run, tmp_path, capsys) -> None:
    run = _copy_run(digits_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (run / "checkpoint").rename(elsewhere)
    (run / "checkpoint").symlink_to(elsewhere)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    rc, _, err = run_cli(["train", "--resume", run, "--epochs", "3"], capsys)
    _assert_one_line_error(rc, err, "is a symbolic link")
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before


def _edit_state(run: Path, edit) -> None:
    from autoencoder_toolkit.io.checkpoint import state_digest

    path = run / "checkpoint" / "state.json"
    doc = json.loads(path.read_text())
    edit(doc)
    doc["digest"] = state_digest(doc)  # a consistent file: the schema, not the digest, must refuse it
    path.write_text(json.dumps(doc))


def _edit_config(run: Path, edit) -> None:
    path = run / "config.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("where, edit, message", [
    ("state", lambda d: d["optimizers"]["vae"]["param_groups"][0].update(lr=-0.01), "lr: expected a finite number > 0"),
    ("state", lambda d: d["state"].update(epoch=-3), "epoch: expected an integer >= 0"),
    ("state", lambda d: d["optimizers"]["mi"]["param_groups"][0].update(betas=[5, 5]), "betas: expected two numbers"),
    ("state", lambda d: d["state"].update(seed="abc"), "seed: expected an integer"),
    ("state", lambda d: d["state"].update(history=[]), "history: expected one record per completed epoch"),
    ("config", lambda d: d["settings"].update(model="evil"), "--model: expected one of infomax, vae, got 'evil'"),
    ("config", lambda d: d.pop("settings"), "expected a table of settings"),
    ("config", lambda d: d["settings"].update(seed="abc"), "--seed: expected an integer"),
    ("config", lambda d: d["settings"].update(lr=-0.01), "--lr: expected a number > 0"),
    ("config", lambda d: d["data"].update(sample_shape=[0]), "expected sample_shape"),
])
def test_tampered_run_records_are_refused(digits_run, tmp_path, capsys, where, edit, message) -> None:
    run = _copy_run(digits_run, tmp_path)
    (_edit_state if where == "state" else _edit_config)(run, edit)
    for args in (["train", "--resume", run, "--epochs", "3"], ["evaluate", run]):
        rc, _, err = run_cli(args, capsys)
        _assert_one_line_error(rc, err, message)


def test_an_edited_state_file_fails_its_digest(digits_run, tmp_path, capsys) -> None:
    run = _copy_run(digits_run, tmp_path)
    path = run / "checkpoint" / "state.json"
    path.write_text(path.read_text().replace('"epoch": 2', '"epoch": 1', 1))
    rc, _, err = run_cli(["train", "--resume", run, "--epochs", "3"], capsys)
    _assert_one_line_error(rc, err, "is corrupt or was edited")


def test_checkpoints_follow_the_cadence_and_a_stop_writes_the_last_epoch(tmp_path, capsys, monkeypatch) -> None:
    from autoencoder_toolkit.training import checkpoints as training_checkpoints
    from autoencoder_toolkit.training import loop

    saved_epochs = []
    real = training_checkpoints.write_checkpoint

    def recording(run_dir, files, document, name="checkpoint"):
        saved_epochs.append(document["state"]["epoch"])
        return real(run_dir, files, document, name)

    monkeypatch.setattr(training_checkpoints, "write_checkpoint", recording)
    rc, _, err = run_cli(["train", *SMALL[:-4], "--epochs", "7", "--checkpoint-every", "3", "--out", tmp_path / "a",
                          "--quiet"], capsys)
    assert rc == 0, err
    assert saved_epochs == [0, 3, 6, 7]  # every 3 epochs, and after the last
    # Ctrl-C in epoch 4, with the checkpoint of epoch 0 on disk: epoch 3, kept in memory, is written
    saved_epochs.clear()
    real_held_out = loop.held_out_losses

    def interrupted(model, data, loss_kwargs, *, seed, epoch, batch_size=1024):
        if epoch == 4:
            raise KeyboardInterrupt
        return real_held_out(model, data, loss_kwargs, seed=seed, epoch=epoch, batch_size=batch_size)

    monkeypatch.setattr(loop, "held_out_losses", interrupted)
    rc, _, err = run_cli(["train", *SMALL[:-4], "--epochs", "7", "--checkpoint-every", "100", "--out",
                          tmp_path / "b"], capsys)
    assert rc == 130
    assert "the last checkpoint (epoch 3) is kept" in err and saved_epochs == [0, 3]
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["state"]["epoch"] == 3 and len(state["state"]["history"]) == 3
    # and it resumes to the same weights as one uninterrupted run
    monkeypatch.setattr(loop, "held_out_losses", real_held_out)
    rc, _, err = run_cli(["train", "--resume", tmp_path / "b", "--quiet"], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["train", *SMALL[:-4], "--epochs", "7", "--out", tmp_path / "c", "--quiet"], capsys)
    assert rc == 0, err
    assert_same_checkpoint(tmp_path / "b", tmp_path / "c")


def test_the_checkpoint_cadence_of_auto_keeps_saving_under_two_percent() -> None:
    from autoencoder_toolkit.training.saving import CheckpointCadence, parse_cadence

    assert parse_cadence("5") == 5 and parse_cadence("30s") == 30.0 and parse_cadence("10m") == 600.0
    assert parse_cadence(" AUTO ") == "auto"
    for bad in ("0", "-3", "5x", "", "0s"):
        with pytest.raises(ValueError, match="--checkpoint-every: expected auto, a number of epochs"):
            parse_cadence(bad)
    c = CheckpointCadence("auto")
    c.saved(0, 10.0)  # a 10-second save: the next one after at least 490 s of training
    assert not c.due(1, final=False) and c.due(1, final=True)
    c.saved(0, 0.0)
    assert c.due(1, final=False)
