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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sklearn
import torch

from .. import __version__
from ..data.datasets import DataFileChanged
from ..data.sources import RunData, load_other_data, load_run_data
from ..data.splits import Scaling
from ..evaluation.metrics import encode_batches, encode_data, evaluate_model
from ..evaluation.report import format_number, report_lines
from ..io.files import AtomicFile, NpyWriter, atomic_write_text, system_reason
from ..models import checks
from ..models.architecture import module_config
from . import distributed
from .callbacks import TensorBoardLogger
from .loop import (TrainingDiverged, TrainingState, fit, loss_kwargs_for, make_optimizers, mlp_model, optimizer_dict,
                   set_learning_rate)
from .run_directory import RUN_FORMAT, RunDirectory, RunDirectoryError, prepare_run_dir
from .saving import CheckpointCadence, EpochSnapshot, parse_cadence
from .settings import CHECKERS, FIXED_ON_RESUME, RESUMABLE, TRAIN_DEFAULTS, SettingsError, flag

__all__ = ["PROG", "TRAIN_DEFAULTS", "RESUMABLE", "FIXED_ON_RESUME", "SettingsError", "RunDiverged",
           "RunInterrupted", "RunStopped", "Terminated", "TrainResult", "flag", "check_device", "model_title",
           "train_run", "open_run", "evaluate_run", "encode_run"]

PROG = "autoencoder-toolkit"

#: Data whose values reach beyond ``±WIDE_RANGE`` are likely to need scaling.
WIDE_RANGE = 10.0

#: Share of the training samples left out of every epoch (by ``drop_last``) above which
#: training warns.
DROPPED_WARNING = 0.10


class RunDiverged(TrainingDiverged):
    """Training diverged; the run's last good checkpoint is kept. ``run``, ``lr`` and ``hint`` say how to go on."""

    def __init__(self, err: TrainingDiverged, run: Path, lr: float, saved_epoch: int | None, hint: str) -> None:
        super().__init__(str(err), epoch=err.epoch, batch=err.batch, step=err.step, last_epoch=err.last_epoch)
        self.run = run
        self.lr = lr
        self.saved_epoch = saved_epoch
        self.hint = hint


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM, or the death of the launcher of a multi-process run)."""


class RunInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C or SIGTERM); ``run`` holds the last checkpoint, of epoch
    ``epoch`` (``None``: no checkpoint was complete yet); ``terminated`` tells SIGTERM from Ctrl-C."""

    def __init__(self, run: Path, epoch: int | None, terminated: bool = False) -> None:
        super().__init__()
        self.run = run
        self.epoch = epoch
        self.terminated = terminated


class RunStopped(RuntimeError):
    """The system stopped training (disk full, read-only storage, a lost connection between the
    processes); the message says what happened and what was kept."""

    def __init__(self, message: str, run: Path, epoch: int | None) -> None:
        super().__init__(message)
        self.run = run
        self.epoch = epoch


@dataclass
class TrainResult:
    """What :func:`train_run` did: the run directory, and (on the main process) the summary lines."""

    run: Path
    summary: list[str] | None


def _show(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, or a one-line error naming ``--device`` when it is not usable here."""
    return checks.check_device(device, f"--device {device}")


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


def _check_given(given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a caller gave, each checked (:data:`~autoencoder_toolkit.training.settings.CHECKERS`)."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in CHECKERS or key == "quiet":
            raise SettingsError(f"unknown setting {key!r}; expected one of {', '.join(TRAIN_DEFAULTS)}, out or "
                                "overwrite")
        out[key] = value if value is None and TRAIN_DEFAULTS.get(key, ...) is None else CHECKERS[key](value)
    return out


def _settings(given: Mapping[str, Any], config: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's settings and, when resuming (``config`` is the run's), those the call changes."""
    if config is not None:
        settings = dict(config["settings"])
        for key, value in given.items():
            if key in ("data", "labels") and settings.get(key) and value and \
                    Path(value).resolve() == Path(settings[key]).resolve():
                continue
            if key in FIXED_ON_RESUME and value != settings.get(key):
                raise SettingsError(
                    f"{flag(key)} {_show(value)}: cannot change when resuming (the run has {flag(key)} "
                    f"{_show(settings.get(key))}); only {', '.join(flag(k) for k in RESUMABLE)} may change")
        changed = {k: v for k, v in given.items() if k in RESUMABLE and v != settings.get(k)}
        settings.update(changed)
        return settings, changed
    if given.get("data") and given.get("dataset"):
        raise SettingsError("--data and --dataset: give one data source, not both")
    settings = {**TRAIN_DEFAULTS, **given}
    if settings.get("labels") and not settings.get("data"):
        raise SettingsError("--labels: applies to --data only (built-in data sets bring their labels)")
    if settings.get("data"):
        settings["dataset"] = None
    return settings, {}


def _largest_divisor(n: int, at_most: int) -> int | None:
    return next((d for d in range(min(n, at_most), 1, -1) if n % d == 0), None)


def _check_batches(settings: Mapping[str, Any], n: int, world: int) -> None:
    """Refuse a batch larger than the training split; warn when whole batches leave many samples out."""
    b = settings["batch_size"]
    if b * world > n:
        most = n // world
        if most >= 2:
            raise SettingsError(f"--batch-size {b}: larger than the {n} training samples"
                                + (f" shared by {world} processes" if world > 1 else "")
                                + f"; use --batch-size {min(most, 64)} or less")
        cause = f"--test-fraction {settings['test_fraction']:g}" if settings.get("data") else "the data set"
        raise SettingsError(f"{cause}: leaves {n} training sample(s), too few for batches of at least 2 samples"
                            + (f" on each of {world} processes" if world > 1 else "")
                            + ("; use a smaller --test-fraction" if settings.get("data") else ""))
    dropped = n % (b * world)
    if dropped >= DROPPED_WARNING * n:
        better = _largest_divisor(n // world if world > 1 else n, b)
        warnings.warn(f"--batch-size {b}: {dropped} of the {n} training samples ({100 * dropped / n:.0f}%) are left "
                      "out of every epoch (an epoch takes whole batches only; which samples are left out changes "
                      "each epoch)" + (f"; --batch-size {better} uses them all" if better and world == 1 else ""),
                      UserWarning, stacklevel=3)


def _kept(run: RunDirectory, epoch: int | None) -> str:
    if epoch is None:
        return "no checkpoint was complete yet"
    return f"the last checkpoint (epoch {epoch}) is kept in {run.path / 'checkpoint'}"


_CONNECTION_LOST = ("connection reset", "connection closed", "connection refused", "broken pipe", "timed out",
                    "timeout", "socket", "peer", "nccl communicator was aborted")


def _stopped_by_system(err: OSError, run: RunDirectory, epoch_in_progress: int) -> RunStopped:
    saved = run.saved_epoch()
    reason = system_reason(err)
    where = f" writing '{err.filename}'" if err.filename else f" writing into {run.path}"
    return RunStopped(f"training stopped in epoch {epoch_in_progress}{where}: {reason}; {_kept(run, saved)}; fix "
                      f"that and continue with: {PROG} train --resume {run.path}", run.path, saved)


def _connection_lost(err: BaseException, ctx: Any) -> bool:
    text = str(err).lower()
    return bool(ctx.enabled) and any(k in text for k in _CONNECTION_LOST)


def _divergence_hint(data: RunData, settings: Mapping[str, Any], run: RunDirectory) -> str:
    """What to do after a divergence: scale wide data (a new run), else resume with a lower rate."""
    lo, hi = data.scaled_range
    if max(abs(lo), abs(hi)) > WIDE_RANGE:
        return (f"the likely cause is the scale of the data (values from {lo:.4g} to {hi:.4g}, "
                f"{data.scaling.describe()}), not the learning rate: start a new run with --scale standard "
                "(or --scale minmax)")
    return f"resume with a lower learning rate: {resume_hint(run.path, settings['lr'])}"


def train_run(given: Mapping[str, Any], *, resume: str | None = None, nproc: int | None = None,
              dist_timeout: float = 600.0, progress: bool = True,
              say: Callable[[str], None] = lambda text: None, tensorboard: str | None = None,
              checkpoint_every: str | int | float = "auto", fused_adam: bool | None = None) -> TrainResult:
    """Train (or resume) a run as ``autoencoder-toolkit train`` does; see the module documentation.

    ``given`` holds the settings the user gave (keys of :data:`TRAIN_DEFAULTS`, and
    ``out`` and ``overwrite`` for a new run); each is checked as the command line checks
    its flag. Several processes run it together under ``torchrun`` (``WORLD_SIZE`` set);
    only the main one writes files and talks. The main process holds the run directory's
    lock (:meth:`RunDirectory.lock`) while it trains. A resumed run records changed
    settings in ``config.json`` only once an epoch has been trained with them.
    ``tensorboard`` (a folder) also logs the training there (the main process only);
    ``checkpoint_every`` sets the checkpoint cadence (:class:`~autoencoder_toolkit.training.saving.CheckpointCadence`:
    ``"auto"``, epochs or seconds); a stop on purpose also writes the last completed epoch.
    ``fused_adam`` chooses torch's fused Adam (default: wherever it runs) for a new run.

    Raises
    ------
    SettingsError
        For settings that cannot be used (or the data's own errors, ``ValueError`` too).
    RunDiverged
        When a loss became NaN or infinite; the last good checkpoint is kept.
    RunInterrupted
        On Ctrl-C or SIGTERM (:class:`Terminated`); the last checkpoint is kept.
    RunStopped
        When the system stops the run: a full disk, read-only storage, a lost connection
        between processes; the last checkpoint is kept.
    """
    given = _check_given(given)
    run: RunDirectory | None = None
    config: dict[str, Any] | None = None
    if resume:
        if "out" in given or "overwrite" in given:
            raise SettingsError("--resume: the run directory is RUN_DIR itself; --out and --overwrite do not apply")
        run = RunDirectory.open(resume)
        config = run.read_config()
    settings, changed = _settings(given, config)
    settings.pop("out", None)
    settings.pop("overwrite", None)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if nproc is not None and world > 1 and nproc != world:
        raise SettingsError(f"--nproc {nproc}: this process was launched with {world} processes")
    device = check_device(settings["device"])
    if settings["model"] != "infomax" and settings["fused"]:
        if given.get("fused"):
            raise SettingsError("--fused: the fused step exists for the InfoMax-VAE only (--model infomax)")
        settings["fused"] = False  # the default applies to the InfoMax-VAE
    if settings.get("compile"):
        if settings["model"] != "infomax" or not settings["fused"]:
            raise SettingsError("--compile: it compiles the fused InfoMax-VAE step (--model infomax, without "
                                "--faithful)")
        if max(nproc or 1, world) > 1:
            raise SettingsError("--compile: the compiled step runs on one process; leave out --nproc or --compile")
    held: list[RunDirectory] = []  # the run directory this process locked, if any
    try:
        return _train(run, config, settings, changed, given, world, device, held, dist_timeout, progress, say,
                      tensorboard, parse_cadence(checkpoint_every) if isinstance(checkpoint_every, str)
                      else checkpoint_every, fused_adam)
    finally:
        for r in held:
            r.unlock()


def _train(run: RunDirectory | None, config: dict[str, Any] | None, settings: dict[str, Any],
           changed: dict[str, Any], given: Mapping[str, Any], world: int, device: torch.device,
           held: list[RunDirectory], dist_timeout: float, progress: bool, say: Callable[[str], None],
           tensorboard: str | None, checkpoint_every: str | int | float, fused_adam: bool | None) -> TrainResult:
    main = int(os.environ.get("RANK", "0") or 0) == 0
    if run is not None:
        if main:
            held.append(run.lock())
        run.check_layout()
    recorded = Scaling.from_dict(config["data"].get("scaling"), "config.json") if config is not None else None
    data = load_run_data(settings, scaling=recorded)
    ctx = distributed.DistributedContext()
    if world > 1:
        ctx = distributed.init_process_group(device=device.type, timeout_s=dist_timeout)
        device = ctx.device
    talk = say if ctx.is_main else (lambda text: None)
    if settings["decoder"] is None:
        settings["decoder"] = "bernoulli" if data.in_unit_interval else "gaussian"
    elif settings["decoder"] == "bernoulli" and not data.in_unit_interval:
        raise SettingsError("--decoder bernoulli: the data are not in [0, 1]; scale them (--scale minmax), or use "
                            "--decoder gaussian")
    with warnings.catch_warnings():
        if not ctx.is_main:
            warnings.simplefilter("ignore")  # one process speaks for all
        _check_batches(settings, len(data.train), world)
        if settings["model"] == "infomax":
            checks.check_mi_batch(settings["batch_size"], "--batch-size")
        if config is None:
            if data.scaling.kind == "8-bit":
                talk(f"note: {flag('data')} holds 8-bit integers; they are divided by 255 to lie in [0, 1] "
                     "(--scale none keeps them as they are)")
            lo, hi = data.scaled_range
            if max(abs(lo), abs(hi)) > WIDE_RANGE:
                warnings.warn(f"the data range from {lo:.4g} to {hi:.4g} ({data.scaling.describe()}); values this "
                              "large often make training diverge: --scale standard (or --scale minmax) scales them",
                              UserWarning, stacklevel=2)

    pending: dict[str, Any] | None = None
    initial_save_seconds = 0.05  # a typical save, until one is measured
    if run is not None and config is not None:
        if tuple(config["data"]["sample_shape"]) != tuple(data.train.sample_shape) or \
                config["data"]["n_samples"] != data.n_total:
            raise SettingsError(f"--resume: the data changed since the run started (it had "
                                f"{config['data']['n_samples']} samples of shape "
                                f"{tuple(config['data']['sample_shape'])})")
        ckpt = run.load_checkpoint(device="cpu")
        model = ckpt.model.to(device)
        opt = make_optimizers(model, settings["lr"], fused=fused_adam)
        ckpt.restore_optimizers(optimizer_dict(opt))
        if "lr" in changed:
            set_learning_rate(opt, settings["lr"])
        state = TrainingState.from_checkpoint(ckpt.state, ckpt.tensors)
        if changed and state.epoch < settings["epochs"]:
            # recorded once an epoch has trained with them (see on_epoch_end)
            pending = {"at_epoch": state.epoch, "changed": changed, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if ctx.is_main:
            run.write_metrics(state.history)  # drop rows of epochs after the checkpoint, if any
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
        if ctx.is_main:
            held.append(run.lock())
        torch.manual_seed(settings["seed"])
        model = mlp_model(settings["model"], data.train.sample_shape, settings["latent_dim"], settings["hidden"],
                          settings["decoder"], settings["critic_hidden"]).to(device)
        opt = make_optimizers(model, settings["lr"], fused=fused_adam)
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
                     "sample_shape": list(data.train.sample_shape), "scaling": data.scaling.to_dict()},
            "architecture": module_config(model),
            "versions": versions(),
        }
        if settings["data"]:
            # later commands find the files from anywhere
            config["settings"]["data"] = config["data"]["path"]
            config["settings"]["labels"] = config["data"]["labels"]
        if ctx.is_main:
            try:
                t_save = time.perf_counter()
                run.write_config(config)
                run.save_checkpoint(model, opt, state)  # epoch 0: a run can always be resumed
                initial_save_seconds = time.perf_counter() - t_save
            except OSError as err:
                raise _stopped_by_system(err, run, 1) from err

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

    cadence = CheckpointCadence(checkpoint_every)
    cadence.saved(state.epoch, initial_save_seconds)
    snapshot = EpochSnapshot()

    def save(st: TrainingState) -> None:
        nonlocal pending
        t = time.perf_counter()
        run.save_checkpoint(model, opt, st)
        if pending is not None:  # the changed settings have now trained an epoch
            config["settings"] = settings
            config.setdefault("resumes", []).append(pending)
            run.write_config(config)
            pending = None
        run.write_metrics(st.history)
        cadence.saved(st.epoch, time.perf_counter() - t)

    def on_epoch_end(st: TrainingState) -> None:
        if cadence.due(st.epoch, final=st.epoch >= target):
            save(st)
        else:  # kept in memory, written if the run is stopped before the next checkpoint
            snapshot.take(model, opt, st)

    def save_last_epoch() -> None:
        """After a stop on purpose: write the last completed epoch if it is newer than the checkpoint."""
        if ctx.is_main and snapshot.epoch is not None and snapshot.epoch > (run.saved_epoch() or 0):
            save(snapshot.restore(model, opt))

    logger = TensorBoardLogger(tensorboard) if tensorboard and ctx.is_main else None
    t0 = time.perf_counter()
    start_epoch = state.epoch
    try:
        fit(model, data.train, opt, epochs=target, batch_size=settings["batch_size"], loss_kwargs=kwargs,
            state=state, held_out=data.test, fused=settings["fused"], compile=bool(settings.get("compile")),
            on_epoch_end=on_epoch_end,
            progress=progress, context=ctx, global_shuffle=bool(settings.get("global_shuffle")), logger=logger)
    except TrainingDiverged as err:
        if ctx.enabled:
            # every process stops at the same step (the check is collective): leave the group
            # together, so that no process exits while its connections are still open
            distributed.destroy_process_group()
        save_last_epoch()
        raise RunDiverged(err, run.path, settings["lr"], run.saved_epoch(),
                          _divergence_hint(data, settings, run)) from err
    except KeyboardInterrupt as err:
        try:
            save_last_epoch()
        except KeyboardInterrupt:  # a second Ctrl-C: leave the checkpoint as it was
            pass
        raise RunInterrupted(run.path, run.saved_epoch(), isinstance(err, Terminated)) from None
    except OSError as err:
        raise _stopped_by_system(err, run, state.epoch + 1) from err
    except DataFileChanged as err:
        saved = run.saved_epoch()
        raise RunStopped(f"training stopped in epoch {state.epoch + 1}: {err}; {_kept(run, saved)}; restore the "
                         f"file and continue with: {PROG} train --resume {run.path}", run.path, saved) from err
    except RuntimeError as err:
        if not _connection_lost(err, ctx):
            raise
        saved = run.saved_epoch()
        raise RunStopped(f"training stopped in epoch {state.epoch + 1}: process {ctx.rank} of {ctx.world_size} "
                         f"lost its connection to the other training processes (one of them stopped or stalled: "
                         f"{' '.join(str(err).split())[:160]}); {_kept(run, saved)}; continue with: {PROG} train "
                         f"--resume {run.path} --nproc {ctx.world_size}", run.path, saved) from err
    seconds = time.perf_counter() - t0

    summary = None
    if ctx.is_main:
        try:
            summary = _finish_run(run, model, data, settings, state, title, seconds, start_epoch)
        except OSError as err:
            saved = run.saved_epoch()
            raise RunStopped(f"training finished but its evaluation could not be written: "
                             f"{system_reason(err)}; {_kept(run, saved)}; "
                             f"evaluate it later with: {PROG} evaluate {run.path}", run.path, saved) from err
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
    images = None
    if data.image_shape is not None:
        inputs = test_view[:min(8, len(test_view))]
        model.eval()
        images = {"shape": data.image_shape, "inputs": inputs, "reconstructions": model.reconstruct(inputs),
                  "samples": model.sample(32, rng=torch.Generator().manual_seed(settings["seed"])).cpu().numpy()}
    figures = run.write_figures(state.history, codes.mu, data.test.labels, class_names=data.class_names,
                                title=f"{title} on {data.label}", images=images)
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


def run_scaling(config: Mapping[str, Any]) -> Scaling:
    """The scaling a run applies to its data (none for runs recorded without one)."""
    return Scaling.from_dict(config["data"].get("scaling"), "config.json")


@dataclass
class Evaluation:
    """What :func:`evaluate_run` measured and wrote, and notes for the user."""

    title: str
    run: Path
    lines: list[str]
    document: dict[str, Any]
    written: Path | None
    notes: list[str]


def _input_files(*specs: str | None) -> set[Path]:
    """The resolved paths of the files data arguments read (none for a built-in data set)."""
    out = set()
    for spec in specs:
        if spec:
            path = Path(spec.split(".npz:")[0])
            if path.exists():
                out.add(path.resolve())
    return out


def _refuse_inputs(out: Path, name: str, inputs: set[Path], run: RunDirectory, allowed: Sequence[str] = ()) -> None:
    """Refuse an output path that is an input file, or a file of the run other than ``allowed``."""
    target = out.resolve()
    if target in inputs:
        raise SettingsError(f"{name}: '{out}' is an input file of this command; choose another file (nothing was "
                            "written)")
    own = run.path.resolve()
    if own in target.parents and target.relative_to(own).as_posix() not in allowed:
        raise SettingsError(f"{name}: '{out}' is inside the run directory {run.path}, whose files the run owns; "
                            "choose a file elsewhere (nothing was written)")


def evaluate_run(run_dir: str, *, data: str | None = None, labels: str | None = None, n_shuffles: int = 10,
                 batch_size: int = 1024, device: str = "cpu", json_path: str | None = None) -> Evaluation:
    """The model metrics of a run on its held-out split (written to its ``evaluation.json``) or on ``data``.

    ``json_path`` (optional) receives the metrics too; with it, a run directory that cannot be
    written (read-only storage) is evaluated all the same, with a note that its
    ``evaluation.json`` was left as it was.
    """
    model, config, run = open_run(run_dir, device)
    settings = config["settings"]
    if labels and not data:
        raise SettingsError("--labels: applies to --data only")
    if json_path:
        _refuse_inputs(Path(json_path), "--json", _input_files(data, labels), run, allowed=(run.EVALUATION,))
    scaling = run_scaling(config)
    notes: list[str] = []
    if data:
        x, y = load_other_data(data, labels, model.vae.input_shape if hasattr(model, "vae") else model.input_shape,
                               "DATA", scaling=scaling)
        where = f"'{data}'"
        report = evaluate_model(model, x, y, n_shuffles=n_shuffles, batch_size=batch_size, seed=settings["seed"])
        doc = {"data": str(data), **report.to_dict()}
    else:
        splits = load_run_data(settings, scaling=scaling)
        where = "the held-out split"
        report = evaluate_model(model, splits.test.view(), splits.test.labels, x_train=splits.train.view(),
                                labels_train=splits.train.labels, n_shuffles=n_shuffles, batch_size=batch_size,
                                seed=settings["seed"])
        doc = {"data": "held-out split", **report.to_dict()}
    written = atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n") if json_path else None
    if not data:
        try:
            run.lock()
            try:
                run.write_json(run.EVALUATION, doc)
            finally:
                run.unlock()
        except RunDirectoryError as err:  # another process is writing the run
            if written is None:
                raise
            notes.append(f"note: {err}; its {run.EVALUATION} was left as it was")
        except OSError as err:
            reason = system_reason(err)
            if written is None:
                raise SettingsError(f"RUN_DIR: cannot write {run.path / run.EVALUATION} ({reason}); pass --json "
                                    "PATH to write the metrics elsewhere") from None
            notes.append(f"note: {run.path} cannot be written ({reason}); its {run.EVALUATION} was left as it was")
    return Evaluation(model_title(settings), run.path, report_lines(report, where), doc, written, notes)


@dataclass
class Encoding:
    """What :func:`encode_run` wrote: ``(path, field)`` per file, and the array shape."""

    run: Path
    files: list[tuple[Path, str]]
    n: int
    latent_dim: int


def encode_run(run_dir: str, data: str, out: str, *, with_sigma: bool = False, batch_size: int = 1024,
               device: str = "cpu", labels: str | None = None) -> Encoding:
    """Encode ``data`` with a run's model and write the codes.

    To ``out.npy``: the latent means ``(N, L)`` float32, and with ``with_sigma`` the spreads to
    ``<out stem>_sigma.npy``. To ``out.csv``: one row per sample, columns ``mu_1..mu_L`` (and
    ``sigma_1..sigma_L``), and a ``label`` column when the labels are known (a built-in data
    set, or ``labels``). Written batch by batch through temporary files (the ``.npy`` ones with
    their room reserved first) that replace the targets only when complete; an output that is
    an input, or a file of the run, is refused.
    """
    out_path = Path(out)
    kind = out_path.suffix.lower()
    if kind not in (".npy", ".csv"):
        raise SettingsError(f"--out: expected a .npy or .csv file name, got '{out_path}'")
    if out_path.is_dir():
        raise SettingsError(f"--out: '{out_path}' is a directory")
    if not out_path.parent.exists():
        raise SettingsError(f"--out: the folder '{out_path.parent}' does not exist")
    model, config, run = open_run(run_dir, device)
    targets = [(out_path, "μ" if kind == ".npy" else "μ, σ" if with_sigma else "μ")]
    if with_sigma and kind == ".npy":
        targets.append((out_path.with_name(out_path.stem + "_sigma.npy"), "σ"))
    inputs = _input_files(data, labels)
    for path, _ in targets:
        _refuse_inputs(path, "--out", inputs, run)
    vae = model.vae if hasattr(model, "vae") else model
    x, y = load_other_data(data, labels, vae.input_shape, "DATA", scaling=run_scaling(config))
    n = int(x.shape[0])
    latent = int(vae.latent_dim)
    if kind == ".csv":
        _write_codes_csv(out_path, vae, x, y, latent, with_sigma, batch_size)
        return Encoding(run.path, targets, n, latent)
    writers: list[NpyWriter] = []
    try:
        for path, _ in targets:
            writers.append(NpyWriter(path, (n, latent), np.float32))
        for _, mu, sigma in encode_batches(vae, x, batch_size=batch_size):
            writers[0].write(mu)
            if with_sigma:
                writers[1].write(sigma)
        for w in writers:
            w.commit()
    except BaseException:
        for w in writers:
            w.discard()
        raise
    return Encoding(run.path, targets, n, latent)


def _write_codes_csv(path: Path, vae: Any, x: Any, labels: np.ndarray | None, latent: int, with_sigma: bool,
                     batch_size: int) -> None:
    """The codes as CSV (see :func:`encode_run`), through an :class:`AtomicFile`."""
    header = [f"mu_{i + 1}" for i in range(latent)] + ([f"sigma_{i + 1}" for i in range(latent)] if with_sigma else [])
    if labels is not None:
        header.append("label")
    with AtomicFile(path, "w") as f:
        f.write(",".join(header) + "\n")
        for start, mu, sigma in encode_batches(vae, x, batch_size=batch_size):
            block = np.concatenate([mu, sigma], axis=1) if with_sigma else mu
            for i, row in enumerate(block):
                cells = [repr(float(v)) for v in row]
                if labels is not None:
                    cells.append(str(labels[start + i]))
                f.write(",".join(cells) + "\n")
