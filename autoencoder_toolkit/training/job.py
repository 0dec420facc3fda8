"""The main job: train a model on a data set and write a run directory; evaluate and encode with a run.

:func:`train_run` is what ``autoencoder-toolkit train`` does (the command line only
parses its flags and prints): it resolves the settings (defaults, or a run's own when
resuming), loads the data, builds or restores the model, the optimizers and the training
state, trains with :func:`~autoencoder_toolkit.training.fit` on one or several processes,
checkpoints after every epoch, and evaluates the held-out data into ``evaluation.json``,
``summary.txt`` and the figures. :func:`evaluate_run` and :func:`encode_run` use a run's
model. User errors are :class:`SettingsError` (or the data's own errors), one line each,
naming the setting by its command-line flag.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sklearn
import torch

from .. import __version__
from ..data.sources import RunData, load_other_data, load_run_data
from ..evaluation.metrics import encode_batches, encode_data, evaluate_model
from ..evaluation.report import format_number, report_lines
from ..io.files import atomic_write_text, fsync_dir
from ..models.architecture import module_config
from . import distributed
from .loop import (TrainingDiverged, TrainingState, fit, loss_kwargs_for, make_optimizers, mlp_model, optimizer_dict,
                   set_learning_rate)
from .run_directory import RUN_FORMAT, RunDirectory, prepare_run_dir

__all__ = ["PROG", "TRAIN_DEFAULTS", "RESUMABLE", "FIXED_ON_RESUME", "SettingsError", "RunDiverged",
           "RunInterrupted", "TrainResult", "flag", "check_device", "model_title", "train_run", "open_run",
           "evaluate_run", "encode_run"]

PROG = "autoencoder-toolkit"

#: Defaults of ``train`` (the run on scikit-learn's digits that takes about a minute on 2 cores).
TRAIN_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data": None,
    "labels": None,
    "model": "infomax",
    "epochs": 150,
    "batch_size": 64,
    "latent_dim": 8,
    "hidden": [256, 256],
    "critic_hidden": None,
    "lr": 1e-3,
    "alpha": 1.0,
    "beta": 1.0,
    "seed": 0,
    "decoder": None,
    "test_fraction": 0.2,
    "device": "cpu",
    "fused": False,
    "global_shuffle": False,
}

#: Settings that ``train --resume`` may change; every other one is fixed by the run.
RESUMABLE = ("epochs", "lr", "alpha", "beta", "device", "fused", "global_shuffle")

#: Settings a run fixes once and for all.
FIXED_ON_RESUME = ("dataset", "data", "labels", "model", "batch_size", "latent_dim", "hidden", "critic_hidden",
                   "seed", "decoder", "test_fraction")


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the flag, what was expected and what came."""


class RunDiverged(TrainingDiverged):
    """Training diverged; the run's last good checkpoint is kept. ``run`` and ``lr`` say how to resume."""

    def __init__(self, err: TrainingDiverged, run: Path, lr: float) -> None:
        super().__init__(str(err), epoch=err.epoch, batch=err.batch, step=err.step, last_epoch=err.last_epoch)
        self.run = run
        self.lr = lr


class RunInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); ``run`` holds the last checkpoint, of epoch ``epoch``."""

    def __init__(self, run: Path, epoch: int) -> None:
        super().__init__()
        self.run = run
        self.epoch = epoch


@dataclass
class TrainResult:
    """What :func:`train_run` did: the run directory, and (on the main process) the summary lines."""

    run: Path
    summary: list[str] | None


def flag(key: str) -> str:
    """The command-line flag of a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


def _show(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, or a :class:`SettingsError` when it is not usable here."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SettingsError(f"--device {device}: CUDA is not available here (torch.cuda.is_available() is "
                                "False); use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise SettingsError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(device)


def versions() -> dict[str, str]:
    """The versions a run records with its settings."""
    return {"autoencoder_toolkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": sys.version.split()[0]}


def describe_model(settings: Mapping[str, Any], sample_shape: Sequence[int]) -> str:
    """The layer sizes of the run's model, as a summary says them."""
    d = int(np.prod(sample_shape))
    h = "-".join(map(str, settings["hidden"]))
    hr = "-".join(map(str, settings["hidden"][::-1]))
    text = (f"encoder {d}-{h}-{settings['latent_dim']}, {settings['decoder']} decoder "
            f"{settings['latent_dim']}-{hr}-{d}")
    if settings["model"] == "infomax":
        ch = "-".join(map(str, settings["critic_hidden"] or settings["hidden"]))
        text += f", critic {d}+{settings['latent_dim']}-{ch}-1"
    return text


def model_title(settings: Mapping[str, Any]) -> str:
    """``InfoMax-VAE``, ``VAE`` or ``β-VAE (β=...)``."""
    if settings["model"] == "infomax":
        return "InfoMax-VAE"
    return "VAE" if settings["beta"] == 1.0 else f"β-VAE (β={settings['beta']:g})"


def resume_hint(run_dir: Path, lr: float) -> str:
    """The command that resumes a diverged run with a lower learning rate."""
    return f"{PROG} train --resume {run_dir} --lr {lr / 10:g}"


def _settings(given: Mapping[str, Any], run: RunDirectory | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's settings and, when resuming, those the call changes."""
    if run is not None:
        config = run.read_config()
        settings = dict(config["settings"])
        for key, value in given.items():
            if key in ("data", "labels") and settings.get(key) and \
                    Path(value).resolve() == Path(settings[key]).resolve():
                continue
            if key in FIXED_ON_RESUME and value != settings.get(key):
                raise SettingsError(
                    f"{flag(key)} {_show(value)}: cannot change when resuming (the run has {flag(key)} "
                    f"{_show(settings.get(key))}); only {', '.join(flag(k) for k in RESUMABLE)} may change")
        changed = {k: v for k, v in given.items() if k in RESUMABLE and v != settings.get(k)}
        settings.update(changed)
        return settings, changed
    if "data" in given and "dataset" in given:
        raise SettingsError("--data and --dataset: give one data source, not both")
    settings = {**TRAIN_DEFAULTS, **given}
    if settings.get("labels") and not settings.get("data"):
        raise SettingsError("--labels: applies to --data only (built-in data sets bring their labels)")
    if "data" in given:
        settings["dataset"] = None
    return settings, {}


def train_run(given: Mapping[str, Any], *, resume: str | None = None, nproc: int | None = None,
              dist_timeout: float = 600.0, progress: bool = True,
              say: Callable[[str], None] = lambda text: None) -> TrainResult:
    """Train (or resume) a run as ``autoencoder-toolkit train`` does; see the module documentation.

    ``given`` holds the settings the user gave (keys of :data:`TRAIN_DEFAULTS`, and
    ``out`` and ``overwrite`` for a new run). Several processes run it together under
    ``torchrun`` (``WORLD_SIZE`` set); only the main one writes files and talks.

    Raises
    ------
    SettingsError
        For settings that cannot be used (or the data's own errors, ``ValueError`` too).
    RunDiverged
        When a loss became NaN or infinite; the last good checkpoint is kept.
    RunInterrupted
        On Ctrl-C; the last checkpoint is kept.
    """
    given = dict(given)
    run: RunDirectory | None = None
    if resume:
        if "out" in given or "overwrite" in given:
            raise SettingsError("--resume: the run directory is RUN_DIR itself; --out and --overwrite do not apply")
        run = RunDirectory.open(resume)
    settings, changed = _settings(given, run)
    settings.pop("out", None)
    settings.pop("overwrite", None)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if nproc is not None and world > 1 and nproc != world:
        raise SettingsError(f"--nproc {nproc}: this process was launched with {world} processes")
    device = check_device(settings["device"])
    ctx = distributed.DistributedContext()
    if world > 1:
        ctx = distributed.init_process_group(device=device.type, timeout_s=dist_timeout)
        device = ctx.device
    talk = say if ctx.is_main else (lambda text: None)
    if settings["fused"] and settings["model"] != "infomax":
        raise SettingsError("--fused: the fused step exists for the InfoMax-VAE only (--model infomax)")

    data = load_run_data(settings)
    if settings["decoder"] is None:
        settings["decoder"] = "bernoulli" if data.in_unit_interval else "gaussian"
    elif settings["decoder"] == "bernoulli" and not data.in_unit_interval:
        raise SettingsError("--decoder bernoulli: the data are not in [0, 1]; scale them, or use --decoder gaussian")
    if settings["batch_size"] > len(data.train):
        raise SettingsError(f"--batch-size {settings['batch_size']}: larger than the {len(data.train)} training "
                            f"samples; use --batch-size {min(len(data.train), 64)} or less")

    if run is not None:
        config = run.read_config()
        if tuple(config["data"]["sample_shape"]) != tuple(data.train.sample_shape) or \
                config["data"]["n_samples"] != data.n_total:
            raise SettingsError(f"--resume: the data changed since the run started (it had "
                                f"{config['data']['n_samples']} samples of shape "
                                f"{tuple(config['data']['sample_shape'])})")
        ckpt = run.load_checkpoint(device="cpu")
        model = ckpt.model.to(device)
        opt = make_optimizers(model, settings["lr"])
        ckpt.restore_optimizers(optimizer_dict(opt))
        if "lr" in changed:
            set_learning_rate(opt, settings["lr"])
        state = TrainingState.from_checkpoint(ckpt.state, ckpt.tensors)
        if changed:
            config.setdefault("resumes", []).append({"at_epoch": state.epoch, "changed": changed,
                                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        config["settings"] = settings
        if ctx.is_main:
            run.write_metrics(state.history)  # drop rows of epochs after the checkpoint, if any
            run.write_config(config)
        if ckpt.path.name != "checkpoint":
            talk(f"note: the newest checkpoint was incomplete; resuming from the previous one ({ckpt.path})")
    else:
        path = None
        if ctx.is_main:
            path = prepare_run_dir(given.get("out"), bool(given.get("overwrite")), data.label, settings["model"])
        if ctx.enabled:  # every process uses the directory rank 0 made
            box = [str(path) if path is not None else None]
            torch.distributed.broadcast_object_list(box, src=0)
            path = Path(box[0])
        run = RunDirectory(path)
        torch.manual_seed(settings["seed"])
        model = mlp_model(settings["model"], data.train.sample_shape, settings["latent_dim"], settings["hidden"],
                          settings["decoder"], settings["critic_hidden"]).to(device)
        opt = make_optimizers(model, settings["lr"])
        state = TrainingState.fresh(settings["seed"])
        config = {
            "format": RUN_FORMAT,
            "format_version": 1,
            "name": run.path.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings,
            "data": {"source": data.label,
                     "path": None if not settings["data"] else str(Path(settings["data"]).resolve()),
                     "labels": None if not settings["labels"] else str(Path(settings["labels"]).resolve()),
                     "n_samples": data.n_total, "n_train": len(data.train), "n_test": len(data.test),
                     "sample_shape": list(data.train.sample_shape)},
            "architecture": module_config(model),
            "versions": versions(),
        }
        if settings["data"]:
            # later commands find the files from anywhere
            config["settings"]["data"] = config["data"]["path"]
            config["settings"]["labels"] = config["data"]["labels"]
        if ctx.is_main:
            run.write_config(config)
            run.save_checkpoint(model, opt, state)  # epoch 0: a run can always be resumed

    title = model_title(settings)
    kwargs = loss_kwargs_for(model, settings["alpha"], settings["beta"])
    target = settings["epochs"]
    talk(f"{title} on {data.label}: {len(data.train)} training / {len(data.test)} held-out samples of shape "
         f"{tuple(data.train.sample_shape)}; run directory {run.path}"
         + (f"; {ctx.world_size} processes ({ctx.backend}), batch {settings['batch_size']} per process"
            if ctx.enabled else ""))
    if state.epoch >= target:
        talk(f"the run has completed {state.epoch} of {target} epochs; pass --epochs N with N > {state.epoch} "
             "to train further (evaluating it again)")

    def on_epoch_end(st: TrainingState) -> None:
        run.save_checkpoint(model, opt, st)
        run.write_metrics(st.history)

    t0 = time.perf_counter()
    start_epoch = state.epoch
    try:
        fit(model, data.train, opt, epochs=target, batch_size=settings["batch_size"], loss_kwargs=kwargs,
            state=state, held_out=data.test, fused=settings["fused"], on_epoch_end=on_epoch_end,
            progress=progress, context=ctx, global_shuffle=bool(settings.get("global_shuffle")))
    except TrainingDiverged as err:
        if ctx.enabled:
            # every process stops at the same step (the check is collective): leave the group
            # together, so that no process exits while its connections are still open
            distributed.destroy_process_group()
        raise RunDiverged(err, run.path, settings["lr"]) from err
    except KeyboardInterrupt:
        raise RunInterrupted(run.path, state.epoch) from None
    seconds = time.perf_counter() - t0

    summary = None
    if ctx.is_main:
        summary = _finish_run(run, model, data, settings, state, title, seconds, start_epoch)
    if ctx.enabled:
        distributed.destroy_process_group()
    return TrainResult(run.path, summary)


def _finish_run(run: RunDirectory, model: Any, data: RunData, settings: Mapping[str, Any], state: TrainingState,
                title: str, seconds: float, start_epoch: int) -> list[str]:
    """Evaluate on the held-out data, draw the figures, write evaluation.json and summary.txt."""
    test_view, train_view = data.test.view(), data.train.view()
    codes = encode_data(model, test_view)
    report = evaluate_model(model, test_view, data.test.labels, x_train=train_view, labels_train=data.train.labels,
                            seed=settings["seed"], codes=codes)
    run.write_json(run.EVALUATION, {"data": "held-out split", **report.to_dict()})
    figures = run.write_figures(state.history, codes.mu, data.test.labels, class_names=data.class_names,
                                title=f"{title} on {data.label}")
    last = state.history[-1] if state.history else {}
    lines = [f"{title} on {data.label}: {len(data.train)} training / {len(data.test)} held-out samples, "
             f"{int(np.prod(data.train.sample_shape))} features",
             f"  model       {describe_model(settings, data.train.sample_shape)}",
             f"  training    epochs {start_epoch + 1}-{state.epoch} of {settings['epochs']} in {seconds:.1f} s on "
             f"{settings['device']}; batch {settings['batch_size']}, Adam lr {settings['lr']:g}, "
             f"α = {settings['alpha']:g}, β = {settings['beta']:g}, seed {settings['seed']}"
             if state.epoch > start_epoch else
             f"  training    {state.epoch} epochs (already complete), batch {settings['batch_size']}"]
    if last:
        text = f"  last epoch  loss {format_number(last['loss'])} (training)"
        if last.get("test_loss") is not None:
            text += f", {format_number(last['test_loss'])} (held-out)"
        if last.get("critic_loss") is not None:
            text += f"; critic loss {format_number(last['critic_loss'])}"
        lines.append(text)
    lines.extend(report_lines(report, "the held-out split"))
    lines.append(f"Run directory {run.path}")
    lines.append("  model       checkpoint/model.safetensors (architecture also in config.json)")
    lines.append("  metrics     metrics.csv (per epoch), evaluation.json, summary.txt")
    lines.append("  figures     " + ", ".join(str(Path(p).relative_to(run.path)) for p in figures))
    lines.append(f"Next: {PROG} evaluate {run.path}  |  {PROG} encode {run.path} DATA --out codes.npy")
    atomic_write_text(run.path / run.SUMMARY, "\n".join(lines) + "\n")
    return lines


# ----------------------------------------------------------------------------------
# evaluate and encode
# ----------------------------------------------------------------------------------

def open_run(run_dir: str, device: str) -> tuple[Any, dict[str, Any], RunDirectory]:
    """``(model on device, config.json, the run)`` of a run directory's newest checkpoint."""
    run = RunDirectory.open(run_dir)
    config = run.read_config()
    dev = check_device(device)
    ckpt = run.load_checkpoint(device="cpu")
    return ckpt.model.to(dev), config, run


@dataclass
class Evaluation:
    """What :func:`evaluate_run` measured and wrote."""

    title: str
    run: Path
    lines: list[str]
    document: dict[str, Any]
    written: Path | None


def evaluate_run(run_dir: str, *, data: str | None = None, labels: str | None = None, n_shuffles: int = 10,
                 batch_size: int = 1024, device: str = "cpu", json_path: str | None = None) -> Evaluation:
    """The model metrics of a run on its held-out split (written to its ``evaluation.json``) or on ``data``."""
    model, config, run = open_run(run_dir, device)
    settings = config["settings"]
    if labels and not data:
        raise SettingsError("--labels: applies to --data only")
    if data:
        x, y = load_other_data(data, labels, model.vae.input_shape if hasattr(model, "vae") else model.input_shape,
                               "DATA")
        where = f"'{data}'"
        report = evaluate_model(model, x, y, n_shuffles=n_shuffles, batch_size=batch_size, seed=settings["seed"])
        doc = {"data": str(data), **report.to_dict()}
    else:
        splits = load_run_data(settings)
        where = "the held-out split"
        report = evaluate_model(model, splits.test.view(), splits.test.labels, x_train=splits.train.view(),
                                labels_train=splits.train.labels, n_shuffles=n_shuffles, batch_size=batch_size,
                                seed=settings["seed"])
        doc = {"data": "held-out split", **report.to_dict()}
        run.write_json(run.EVALUATION, doc)
    written = atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n") if json_path else None
    return Evaluation(model_title(settings), run.path, report_lines(report, where), doc, written)


@dataclass
class Encoding:
    """What :func:`encode_run` wrote: ``(path, field)`` per file, and the array shape."""

    run: Path
    files: list[tuple[Path, str]]
    n: int
    latent_dim: int


def encode_run(run_dir: str, data: str, out: str, *, with_sigma: bool = False, batch_size: int = 1024,
               device: str = "cpu") -> Encoding:
    """Encode ``data`` with a run's model: the latent means to ``out`` (``.npy``), the spreads to
    ``<out stem>_sigma.npy`` with ``with_sigma``. Written batch by batch through temporary files
    that replace the targets only when complete."""
    out_path = Path(out)
    if out_path.suffix.lower() != ".npy":
        raise SettingsError(f"--out: expected a .npy file name, got '{out_path}'")
    if out_path.is_dir():
        raise SettingsError(f"--out: '{out_path}' is a directory")
    if not out_path.parent.exists():
        raise SettingsError(f"--out: the folder '{out_path.parent}' does not exist")
    model, config, run = open_run(run_dir, device)
    vae = model.vae if hasattr(model, "vae") else model
    x, _ = load_other_data(data, None, vae.input_shape, "DATA")
    n = int(x.shape[0])
    latent = int(vae.latent_dim)
    targets = [(out_path, "μ")]
    if with_sigma:
        targets.append((out_path.with_name(out_path.stem + "_sigma.npy"), "σ"))
    temps = []
    try:
        arrays = []
        for path, _ in targets:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
            temps.append(tmp)
            arrays.append(np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, latent)))
        for start, mu, sigma in encode_batches(vae, x, batch_size=batch_size):
            arrays[0][start:start + len(mu)] = mu
            if with_sigma:
                arrays[1][start:start + len(mu)] = sigma
        for arr in arrays:
            arr.flush()
            del arr
        arrays.clear()
        for tmp, (path, _) in zip(temps, targets):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        fsync_dir(out_path.parent)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()
    return Encoding(run.path, targets, n, latent)
