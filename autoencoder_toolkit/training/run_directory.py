"""Run directories: the files one training run writes, all written atomically.

Layout::

    config.json          the run's settings and the model architecture (JSON)
    checkpoint/          model.safetensors, optimizer.safetensors, state.json
                         (see autoencoder_toolkit.io.checkpoint for the crash-safe scheme)
    metrics.csv          one row per epoch (METRICS_COLUMNS)
    evaluation.json      held-out metrics after training (autoencoder_toolkit.metrics)
    summary.txt          the summary printed at the end of training
    figures/loss.png, figures/mutual_info.png, figures/latent.png, and for image data
    figures/reconstructions.png, figures/samples.png
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..evaluation.plots import plot_latent, plot_losses, plot_mutual_info, plot_reconstructions, plot_samples
from ..io.checkpoint import CHECKPOINT_DIR, find_checkpoint, read_state
from ..io.files import CheckpointError, atomic_write_text
from .checkpoints import load_checkpoint, save_checkpoint
from .loop import TrainingState, optimizer_dict
from .records import RUN_FORMAT, RunDirectoryError, check_run_config, check_run_state

__all__ = ["RUN_FORMAT", "METRICS_COLUMNS", "RunDirectoryError", "RunDirectory", "default_run_dir",
           "prepare_run_dir"]

#: Columns of ``metrics.csv``, in order (blank where a value does not apply).
METRICS_COLUMNS = ("epoch", "step", "loss", "critic_loss", "mi", "mi_std", "test_loss", "test_reconstruction",
                   "test_kl", "test_mi", "lr", "seconds")


#: Largest ``config.json`` read.
MAX_CONFIG_BYTES = 16 * 2**20


class RunDirectory:
    """The files of one training run.

    Layout::

        config.json          the run's settings and the model architecture (JSON)
        checkpoint/          model.safetensors, optimizer.safetensors, state.json
                             (see autoencoder_toolkit.checkpoints for the crash-safe scheme)
        metrics.csv          one row per epoch (METRICS_COLUMNS)
        evaluation.json      held-out metrics after training (autoencoder_toolkit.metrics)
        summary.txt          the summary printed at the end of training
        figures/loss.png, figures/mutual_info.png, figures/latent.png

    Every file is written atomically.
    """

    CONFIG = "config.json"
    METRICS = "metrics.csv"
    EVALUATION = "evaluation.json"
    SUMMARY = "summary.txt"
    FIGURES = "figures"
    LOCK = ".lock"

    def __init__(self, path: Any) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- one writer at a time ----------------------------------------------------------
    def lock(self) -> "RunDirectory":
        """Hold the run directory for writing, until :meth:`unlock` or the process ends.

        An exclusive ``fcntl`` lock on ``RUN_DIR/.lock`` (which records the holder); a second
        writer, in this process or another, gets a :class:`RunDirectoryError` naming the holder.
        """
        if self._lock_fd is not None:
            return self
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirectoryError(f"RUN_DIR: '{self.path}' is in use by {holder}; wait until it finishes, or "
                                    "stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        """Release the lock taken by :meth:`lock`."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def check_layout(self) -> None:
        """Refuse a run directory whose checkpoint cannot be replaced safely (a symbolic link)."""
        link = self.path / CHECKPOINT_DIR
        if link.is_symlink():
            raise RunDirectoryError(f"RUN_DIR: '{link}' is a symbolic link; a run's checkpoint must be a folder of "
                                    "its own (replace the link by the folder it points to)")

    def saved_epoch(self) -> int | None:
        """The epoch of the newest complete checkpoint on disk, or ``None`` when there is none."""
        try:
            return int(read_state(find_checkpoint(self.path))["state"]["epoch"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            return None

    # -- creation and opening ------------------------------------------------------
    @classmethod
    def is_run(cls, path: Any) -> bool:
        """Whether ``path`` holds a ``config.json`` written for a run."""
        cfg = Path(path) / cls.CONFIG
        try:
            if cfg.stat().st_size > MAX_CONFIG_BYTES:
                return False
            return json.loads(cfg.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
        except (OSError, ValueError, AttributeError, RecursionError):
            return False

    @classmethod
    def open(cls, path: Any) -> "RunDirectory":
        """An existing run directory; :class:`RunDirectoryError` if ``path`` is not one."""
        run = cls(path)
        if not run.path.exists():
            raise RunDirectoryError(f"RUN_DIR: no such directory: '{run.path}'")
        if not run.path.is_dir():
            raise RunDirectoryError(f"RUN_DIR: '{run.path}' is a file, not a run directory")
        if not cls.is_run(run.path):
            raise RunDirectoryError(f"RUN_DIR: '{run.path}' is not a run directory (it has no {cls.CONFIG} "
                                    "written by `autoencoder-toolkit train`)")
        return run

    def read_config(self) -> dict[str, Any]:
        """The parsed and checked ``config.json`` (:func:`~autoencoder_toolkit.training.records.check_run_config`)."""
        path = self.path / self.CONFIG
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise RunDirectoryError(f"RUN_DIR: '{path}' is larger than {MAX_CONFIG_BYTES} bytes; not the "
                                        "configuration of a run")
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            if isinstance(err, RunDirectoryError):
                raise
            raise RunDirectoryError(f"RUN_DIR: cannot read '{path}' ({err})") from None
        return check_run_config(doc, path)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write ``config.json`` atomically."""
        atomic_write_text(self.path / self.CONFIG, json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    # -- checkpoints -------------------------------------------------------------
    def save_checkpoint(self, model: nn.Module, opt: Any, state: TrainingState) -> None:
        """Checkpoint the model, the optimizers and the training state."""
        json_state, tensors = state.to_checkpoint()
        save_checkpoint(self.path, model, optimizer_dict(opt), json_state, tensors)

    def load_checkpoint(self, device: Any = "cpu") -> Any:
        """The newest complete checkpoint, checked against the architecture in ``config.json`` and
        its training state against the schema of :func:`~autoencoder_toolkit.training.records.check_run_state`."""
        cfg = self.read_config()
        folder = find_checkpoint(self.path)
        optimizers = ("vae", "mi") if cfg["settings"]["model"] == "infomax" else ("vae",)
        check_run_state(read_state(folder), folder / "state.json", optimizers)
        return load_checkpoint(folder, device=device, config=cfg.get("architecture"))

    # -- reports -------------------------------------------------------------------
    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Write ``metrics.csv`` (one row per epoch) atomically."""
        lines = [",".join(METRICS_COLUMNS)]
        for h in history:
            cells = []
            for col in METRICS_COLUMNS:
                v = h.get(col)
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    cells.append("")
                elif isinstance(v, float):
                    cells.append(repr(v))
                else:
                    cells.append(str(v))
            lines.append(",".join(cells))
        atomic_write_text(self.path / self.METRICS, "\n".join(lines) + "\n")

    def write_json(self, name: str, obj: Any) -> Any:
        """Write ``name`` (a JSON document) atomically; returns its path."""
        return atomic_write_text(self.path / name, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def write_figures(self, history: Sequence[Mapping[str, Any]], codes: np.ndarray | None,
                      labels: np.ndarray | None, *, class_names: Sequence[str] | None = None,
                      title: str | None = None, images: Mapping[str, Any] | None = None) -> list[Any]:
        """Draw ``figures/loss.png``, ``figures/mutual_info.png`` (with a critic), ``figures/latent.png``
        and, for image data (``images``: ``shape``, ``inputs``, ``reconstructions``, ``samples``),
        ``figures/reconstructions.png`` and ``figures/samples.png``."""
        folder = self.path / self.FIGURES
        paths = [plot_losses(history, folder / "loss.png", title=title)]
        if any(h.get("mi") is not None for h in history):
            paths.append(plot_mutual_info(history, folder / "mutual_info.png"))
        if codes is not None:
            paths.append(plot_latent(codes, labels, folder / "latent.png", class_names=class_names,
                                     title=None if title is None else f"{title}: held-out latent means"))
        if images is not None:
            paths.append(plot_reconstructions(images["inputs"], images["reconstructions"], images["shape"],
                                              folder / "reconstructions.png"))
            paths.append(plot_samples(images["samples"], images["shape"], folder / "samples.png"))
        return paths


def default_run_dir(label: str, model: str) -> Path:
    """``runs/<label>-<model>-<timestamp>`` (with a suffix if that exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{label}-{model}-{stamp}"
    path, k = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{k}")
        k += 1
    return path


def prepare_run_dir(out: str | None, overwrite: bool, label: str, model: str) -> Path:
    """The folder of a new run: ``out`` (new or empty; a run it replaces with ``overwrite``) or a default one."""
    if out is None:
        path = default_run_dir(label, model)
    else:
        path = Path(out)
        if path.exists():
            if path.is_file():
                raise RunDirectoryError(f"--out: '{path}' is a file; give a directory for the run")
            empty = not any(path.iterdir())
            if not empty:
                if not overwrite:
                    raise RunDirectoryError(f"--out: '{path}' already exists; choose another directory, or pass "
                                            "--overwrite to replace that run")
                if not RunDirectory.is_run(path):
                    raise RunDirectoryError(f"--overwrite: '{path}' is not a run directory, so it is not replaced; "
                                            "choose another --out")
                held = RunDirectory(path).lock()  # refuses a run that another process is writing
                shutil.rmtree(path)
                held.unlock()
    path.mkdir(parents=True, exist_ok=True)
    return path
