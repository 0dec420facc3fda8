"""The autoencoder-toolkit command: train, evaluate, encode, resume, and its errors."""

from __future__ import annotations

import json
import os
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
    np.testing.assert_allclose(served.encode(x).μ, model.encode(x), rtol=1e-5, atol=1e-6)
    assert isinstance(served, inference.FrozenInfoMaxVAE)
    same = inference.load(digits_run / "checkpoint" / "model.safetensors", backend="numpy")
    np.testing.assert_array_equal(same.encode(x).μ, served.encode(x).μ)


def test_train_writes_a_complete_run_directory(digits_run) -> None:
    run = digits_run
    for name in ("config.json", "metrics.csv", "evaluation.json", "summary.txt", "checkpoint/model.safetensors",
                 "checkpoint/optimizer.safetensors", "checkpoint/state.json"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.tmp").exists() and not (run / "checkpoint.prev").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["hidden"] == [16] and config["settings"]["decoder"] == "bernoulli"
    assert config["data"] == {"source": "digits", "path": None, "labels": None, "n_samples": 1797,
                              "n_train": 1438, "n_test": 359, "sample_shape": [64]}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,loss,critic_loss,mi")
    assert rows[2].split(",")[:2] == ["2", "44"]  # 1438 // 64 = 22 steps per epoch
    model = load_model(run)
    assert model.latent_dim == 3
    summary = (run / "summary.txt").read_text()
    for text in ("InfoMax-VAE on digits", "MI estimate", "active units", "classification accuracy", "figures"):
        assert text in summary
    for name in ("loss.png", "mutual_info.png", "latent.png"):
        path = run / "figures" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert float(image[..., :3].std()) > 0.01  # not blank


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
    config = json.loads((run / "config.json").read_text())
    assert config["resumes"][-1]["changed"] == {"epochs": 3, "lr": 1e6}
    # resuming with a sane learning rate continues
    rc, _, err = run_cli(["train", "--resume", run, "--lr", "1e-3", "--quiet"], capsys)
    assert rc == 0, err
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["state"]["epoch"] == 3 and state["optimizers"]["vae"]["param_groups"][0]["lr"] == 1e-3


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
        (["encode", run, "digits", "--out", tmp / "c.txt"], "expected a .npy file name"),
        (["encode", run, "digits"], "the following arguments are required: --out"),
        ([], "choose a command"),
    ]


def test_user_errors_exit_2_with_one_line(digits_run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args, fragment in _user_error_cases(tmp_path, digits_run):
        rc, out, err = run_cli(args, capsys)
        _assert_one_line_error(rc, err, fragment)
        assert not (tmp_path / "runs").exists(), args  # no run directory was started


def test_missing_datasets_and_devices(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AUTOENCODER_TOOLKIT_FASHION_MNIST_DIR", str(tmp_path / "none"))
    rc, _, err = run_cli(["train", "--dataset", "fashion-mnist"], capsys)
    _assert_one_line_error(rc, err, "dataset-fashion-mnist", "apt-get install")
    if not torch.cuda.is_available():
        rc, _, err = run_cli(["train", "--device", "cuda"], capsys)
        _assert_one_line_error(rc, err, "CUDA is not available")
    rc, _, err = run_cli(["train", "--model", "vae", "--fused", "--epochs", "1"], capsys)
    assert rc == 2 and "InfoMax-VAE only" in err


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
                 "--device", "--out", "--resume", "--config", "--decoder", "--fused", "--quiet", "--overwrite"):
        assert flag in result.stdout
