"""The ``autoencoder-toolkit`` command: ``train``, ``evaluate`` and ``encode``.

``autoencoder-toolkit train`` trains an InfoMax-VAE (``--model vae``: a VAE, a β-VAE
with ``--beta``) on a built-in data set or on the user's array file and writes a run
directory (see :class:`~autoencoder_toolkit.training.RunDirectory`); ``evaluate``
computes the model metrics of :mod:`autoencoder_toolkit.metrics` on held-out data;
``encode`` writes the latent means (and spreads) of new data.

Exit statuses: 0 success; 1 an unexpected error; 2 a user error (a missing file, an
unknown data set, a bad flag or configuration key, a folder that is not a run
directory), reported on one line of stderr; 3 training diverged (a NaN or infinite
loss), with the last good checkpoint kept; 130 interrupted (Ctrl-C), with the last
checkpoint kept. ``--debug`` adds the traceback to any error.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["main", "UsageError", "TRAIN_DEFAULTS", "RESUMABLE", "EXIT_USAGE", "EXIT_DIVERGED"]

PROG = "autoencoder-toolkit"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    """A user error: reported as one line on stderr with exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one-line :class:`UsageError` s."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # "argument --epochs: --epochs: expected ..." -> "--epochs: expected ..."
        message = re.sub(r"argument (\S+?)(/\S+)?: \1: ", r"\1: ", message)
        raise UsageError(f"{self.prog}: {message}")


# ----------------------------------------------------------------------------------
# Settings of `train`
# ----------------------------------------------------------------------------------

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

_FIXED_ON_RESUME = ("dataset", "data", "labels", "model", "batch_size", "latent_dim", "hidden", "critic_hidden",
                    "seed", "decoder", "test_fraction")

# Keys a --config file may set (flags win over them); "out" and "quiet" too.
_CONFIG_KEYS = tuple(TRAIN_DEFAULTS) + ("out", "quiet", "overwrite")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _positive_int(name: str, minimum: int = 1) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
        try:
            v = int(value) if not isinstance(value, float) or value.is_integer() else None
        except (TypeError, ValueError):
            v = None
        if v is None or v < minimum or (isinstance(value, str) and not re.fullmatch(r"\s*\d+\s*", value)):
            raise argparse.ArgumentTypeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
        return v
    return convert


def _float(name: str, minimum: float | None = None, positive: bool = False,
           below: float | None = None) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            v = float(value)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{name}: expected a finite number, got {value!r}")
        if positive and not v > 0:
            raise argparse.ArgumentTypeError(f"{name}: expected a number > 0, got {value!r}")
        if minimum is not None and v < minimum:
            raise argparse.ArgumentTypeError(f"{name}: expected a number >= {minimum}, got {value!r}")
        if below is not None and not v < below:
            raise argparse.ArgumentTypeError(f"{name}: expected a number < {below}, got {value!r}")
        return v
    return convert


def _sizes(name: str) -> Callable[[Any], list[int]]:
    def convert(value: Any) -> list[int]:
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
        out = []
        for item in items:
            try:
                out.append(_positive_int(name)(item.strip() if isinstance(item, str) else item))
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(
                    f"{name}: expected comma-separated positive layer sizes such as 256,256, got {value!r}") from None
        if not out:
            raise argparse.ArgumentTypeError(f"{name}: expected at least one layer size, got {value!r}")
        return out
    return convert


def _choice(name: str, choices: Sequence[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        v = str(value).strip().lower()
        if v not in choices:
            raise argparse.ArgumentTypeError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return v
    return convert


def _device(value: Any) -> str:
    v = str(value).strip().lower()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", v):
        raise argparse.ArgumentTypeError(f"--device: expected cpu or cuda (or cuda:N), got {value!r}")
    return v


def _dataset_name(value: Any) -> str:
    from ..data.datasets import DATASETS

    v = str(value).strip().lower().replace("_", "-")
    if v not in DATASETS:
        raise argparse.ArgumentTypeError(f"--dataset: unknown data set {value!r}; expected one of "
                                         f"{', '.join(DATASETS)} (or --data PATH for your own file)")
    return v


def _text(name: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise argparse.ArgumentTypeError(f"{name}: expected a path, got {value!r}")
        return value
    return convert


def _boolean(name: str) -> Callable[[Any], bool]:
    def convert(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise argparse.ArgumentTypeError(f"{name}: expected true or false, got {value!r}")
    return convert


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "dataset": _dataset_name,
    "data": _text("--data"),
    "labels": _text("--labels"),
    "model": _choice("--model", ("infomax", "vae")),
    "epochs": _positive_int("--epochs"),
    "batch_size": _positive_int("--batch-size", 2),
    "latent_dim": _positive_int("--latent-dim"),
    "hidden": _sizes("--hidden"),
    "critic_hidden": _sizes("--critic-hidden"),
    "lr": _float("--lr", positive=True),
    "alpha": _float("--alpha", minimum=0.0),
    "beta": _float("--beta", minimum=0.0),
    "seed": _positive_int("--seed", 0),
    "decoder": _choice("--decoder", ("bernoulli", "gaussian")),
    "test_fraction": _float("--test-fraction", positive=True, below=1.0),
    "device": _device,
    "fused": _boolean("--fused"),
    "global_shuffle": _boolean("--global-shuffle"),
    "out": _text("--out"),
    "quiet": _boolean("--quiet"),
    "overwrite": _boolean("--overwrite"),
}


def _read_config_file(path: str) -> dict[str, Any]:
    """Settings from a TOML file: flat keys (``batch_size`` or ``batch-size``), or a ``[train]`` table."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: no such file: '{p}'")
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise UsageError("--config: reading TOML needs Python >= 3.11 or the tomli package "
                             "(pip install tomli)") from None
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--config: cannot parse '{p}' as TOML ({err})") from None
    if set(doc) == {"train"} and isinstance(doc["train"], dict):
        doc = doc["train"]
    out: dict[str, Any] = {}
    for raw_key, value in doc.items():
        key = raw_key.replace("-", "_")
        if key not in _CONFIG_KEYS:
            raise UsageError(f"--config: unknown key {raw_key!r} in '{p}'; accepted keys: "
                             f"{', '.join(k.replace('_', '-') for k in _CONFIG_KEYS)}")
        try:
            out[key] = _CONVERTERS[key](value)
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"--config: '{p}', key {raw_key!r}: {str(err).split(': ', 1)[-1]}") from None
    return out


# ----------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------

def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _ArgumentParser(
        prog=PROG,
        description="Train, evaluate and use InfoMax variational autoencoders.",
        epilog="Exit status: 0 success, 2 user error, 3 training diverged (checkpoint kept), "
               "1 unexpected error. Add --debug for tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,encode,reproduce}", parser_class=_ArgumentParser)

    common = _ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", default=None,
                        help="no progress bar; print only the path of the result")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of errors")
    common.add_argument("--threads", type=_positive_int("--threads"), default=None, metavar="N",
                        help="CPU threads for torch (default 1: the small models here run fastest on one "
                             "thread, and do not slow down when other processes share the CPU)")

    t = sub.add_parser("train", parents=[common], help="train a model and write a run directory",
                       description="Train an InfoMax-VAE (or a VAE) and write a run directory. With no "
                                   "arguments: the digits data set, about a minute on 2 CPU cores. Settings "
                                   "come from the defaults, then --config, then the flags.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = t.add_argument_group("data")
    src.add_argument("--dataset", type=_CONVERTERS["dataset"], default=None,
                     help="built-in data set: digits, mnist5k or fashion-mnist (default: digits)")
    src.add_argument("--data", type=_CONVERTERS["data"], default=None, metavar="PATH",
                     help="your data: .npy (memory-mapped), .npz (file.npz:KEY) or .csv, one sample per row")
    src.add_argument("--labels", type=_CONVERTERS["labels"], default=None, metavar="PATH",
                     help="class labels for --data (.npy, .npz or one-column .csv)")
    src.add_argument("--test-fraction", type=_CONVERTERS["test_fraction"], default=None, metavar="F",
                     help="held-out fraction of --data (default 0.2; built-in sets use their own split)")
    mdl = t.add_argument_group("model")
    mdl.add_argument("--model", type=_CONVERTERS["model"], default=None,
                     help="infomax (InfoMax-VAE, default) or vae (VAE / beta-VAE)")
    mdl.add_argument("--latent-dim", type=_CONVERTERS["latent_dim"], default=None, metavar="L",
                     help=f"latent dimensions (default {TRAIN_DEFAULTS['latent_dim']})")
    mdl.add_argument("--hidden", type=_CONVERTERS["hidden"], default=None, metavar="H1,H2",
                     help="hidden layer sizes of the encoder (the decoder mirrors them) "
                          f"(default {','.join(map(str, TRAIN_DEFAULTS['hidden']))})")
    mdl.add_argument("--critic-hidden", type=_CONVERTERS["critic_hidden"], default=None, metavar="H1,H2",
                     help="hidden layer sizes of the critic (default: --hidden)")
    mdl.add_argument("--decoder", type=_CONVERTERS["decoder"], default=None,
                     help="bernoulli or gaussian (default: bernoulli for data in [0, 1], else gaussian)")
    opt = t.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_CONVERTERS["epochs"], default=None, metavar="N",
                     help=f"number of epochs; with --resume, the total to reach (default {TRAIN_DEFAULTS['epochs']})")
    opt.add_argument("--batch-size", type=_CONVERTERS["batch_size"], default=None, metavar="B",
                     help=f"samples per step (default {TRAIN_DEFAULTS['batch_size']})")
    opt.add_argument("--lr", type=_CONVERTERS["lr"], default=None, help="Adam learning rate (default 1e-3)")
    opt.add_argument("--alpha", type=_CONVERTERS["alpha"], default=None,
                     help=f"α, weight of the mutual-information term (default {TRAIN_DEFAULTS['alpha']})")
    opt.add_argument("--beta", type=_CONVERTERS["beta"], default=None,
                     help=f"β, weight of the KL term (default {TRAIN_DEFAULTS['beta']}; > 1 gives a β-VAE)")
    opt.add_argument("--seed", type=_CONVERTERS["seed"], default=None, help="random seed (default 0)")
    opt.add_argument("--device", type=_CONVERTERS["device"], default=None, help="cpu or cuda (default cpu)")
    opt.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None,
                     help="use the fused InfoMax-VAE training step (one forward and one backward pass); "
                          "--no-fused turns it off when resuming a fused run")
    par = t.add_argument_group("several processes (data-parallel, torch.distributed)")
    par.add_argument("--nproc", type=_positive_int("--nproc"), default=None, metavar="N",
                     help="train with N processes on this machine (launches torchrun; --batch-size is per "
                          "process). Under torchrun itself, the process group comes from its environment")
    par.add_argument("--global-shuffle", action=argparse.BooleanOptionalAction, default=None,
                     help="with several processes, shuffle the codes for the MI bound across all processes "
                          "(default: within each process)")
    par.add_argument("--dist-timeout", type=_float("--dist-timeout", positive=True), default=600.0, metavar="S",
                     help="seconds a process waits for the others before failing (default 600)")
    run = t.add_argument_group("run directory")
    run.add_argument("--out", type=_CONVERTERS["out"], default=None, metavar="RUN_DIR",
                     help="run directory (default runs/<data>-<model>-<timestamp>)")
    run.add_argument("--overwrite", action="store_true", default=None,
                     help="replace an existing run directory given by --out")
    run.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help=f"continue a run from its last checkpoint; may change {', '.join(_flag(k) for k in RESUMABLE)}")
    run.add_argument("--config", default=None, metavar="TOML", help="settings file (flags win over it)")

    e = sub.add_parser("evaluate", parents=[common], help="model metrics of a run on held-out data",
                       description="Compute the model metrics (ELBO terms, MI estimate, active units, latent "
                                   "classification accuracy) of a run on its held-out data, or on --data.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--data", default=None, metavar="PATH", help="evaluate on this file (or built-in data set name) instead")
    e.add_argument("--labels", default=None, metavar="PATH", help="labels of --data")
    e.add_argument("--n-shuffles", type=_positive_int("--n-shuffles"), default=10, metavar="K",
                   help="shuffles averaged in the MI estimate (default 10)")
    e.add_argument("--batch-size", type=_positive_int("--batch-size"), default=1024, metavar="B",
                   help="samples per evaluation batch (default 1024)")
    e.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (default cpu)")
    e.add_argument("--json", default=None, metavar="PATH",
                   help="also write the metrics there (the run's own held-out metrics go to RUN_DIR/evaluation.json)")

    c = sub.add_parser("encode", parents=[common], help="latent means (and spreads) of new data",
                       description="Encode DATA with a run's model: write the latent means (N, L) to --out "
                                   "(.npy); with --with-sigma also the spreads σ to <out>_sigma.npy.")
    c.add_argument("run_dir", metavar="RUN_DIR")
    c.add_argument("data", metavar="DATA", help="a .npy/.npz/.csv file, or a built-in data set name (all of it)")
    c.add_argument("--out", required=True, metavar="CODES.npy", help="output file for the means")
    c.add_argument("--with-sigma", action="store_true", help="also write the spreads to <out stem>_sigma.npy")
    c.add_argument("--batch-size", type=_positive_int("--batch-size"), default=1024, metavar="B",
                   help="samples per batch (default 1024)")
    c.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (default cpu)")

    r = sub.add_parser("reproduce", parents=[common], help="reproduce the InfoMax-VAE paper's comparison offline",
                       description="Train a VAE, a beta-VAE (beta = 4), an MMD-VAE and an InfoMax-VAE under the "
                                   "paper authors' settings on MNIST-5k (MLP, latent 2) and Fashion-MNIST "
                                   "(convolutional, latent 10), several seeds each, and write a Markdown table "
                                   "and figures of their held-out metrics (see docs/reproduction.md).")
    r.add_argument("--quick", action="store_true", help="smoke run: small subsets, one seed, few steps (under a minute)")
    r.add_argument("--seeds", type=_positive_int("--seeds"), default=None, metavar="N",
                   help="seeds per model (default 3; 1 with --quick)")
    r.add_argument("--datasets", default=None, metavar="NAMES",
                   help="comma-separated: mnist5k,fashion-mnist (default both; one that is not installed is "
                        "then skipped with a note)")
    r.add_argument("--out", default="runs/reproduction", metavar="DIR",
                   help="output folder (default runs/reproduction); it must be new or empty, or hold an "
                        "earlier reproduction and --overwrite be given")
    r.add_argument("--overwrite", action="store_true",
                   help="replace the earlier reproduction in --out (its table, figures, records and models)")
    r.add_argument("--epochs", type=_positive_int("--epochs"), default=None, metavar="N",
                   help="training epochs of every model (default: the authors' 5 on MNIST-5k, 10 on "
                        "Fashion-MNIST; with --quick 2 and 1)")
    r.add_argument("--jobs", type=_positive_int("--jobs"), default=1, metavar="N",
                   help="runs trained in parallel processes, each with --threads threads (default 1)")
    r.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (default cpu)")
    return parser


# ----------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------

def _value_range(x: np.ndarray) -> tuple[float, float]:
    """Minimum and maximum of ``x``, read in chunks (memory maps stay on disk)."""
    lo, hi = math.inf, -math.inf
    row_bytes = max(1, x.itemsize * int(np.prod(x.shape[1:], dtype=np.int64)))
    rows = max(1, (32 << 20) // row_bytes)
    for start in range(0, x.shape[0], rows):
        chunk = np.asarray(x[start:start + rows])
        if chunk.size:
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return lo, hi


class _Data:
    """The training and held-out splits of a run, and what the summary says about them."""

    def __init__(self, train: Any, test: Any, label: str, class_names: Sequence[str] | None,
                 in_unit_interval: bool, n_total: int) -> None:
        self.train = train
        self.test = test
        self.label = label
        self.class_names = class_names
        self.in_unit_interval = in_unit_interval
        self.n_total = n_total


def _load_user_array(path: str, what: str) -> np.ndarray:
    from ..data.datasets import check_finite, load_array

    try:
        x = load_array(path)
    except (FileNotFoundError, IsADirectoryError, ValueError, KeyError) as err:
        raise UsageError(f"{what}: {_one_line(err).removeprefix('path: ').removeprefix('key: ')}") from None
    if x.ndim < 2:
        raise UsageError(f"{what}: expected samples in rows, an array of shape (N, D) or (N, *shape), got shape "
                         f"{x.shape} from '{path}'")
    if x.shape[0] < 1 or int(np.prod(x.shape[1:])) < 1:
        raise UsageError(f"{what}: '{path}' holds no samples (shape {x.shape})")
    check_finite(x, f"{what} '{path}'")
    return x


def _load_user_labels(path: str) -> np.ndarray:
    from ..data.datasets import load_labels

    try:
        return load_labels(path)
    except (FileNotFoundError, IsADirectoryError, ValueError, KeyError) as err:
        raise UsageError(f"--labels: {_one_line(err).removeprefix('path: ')}") from None


def _load_training_data(settings: Mapping[str, Any]) -> _Data:
    from ..data.datasets import load_dataset, train_test_split
    from ..training.loop import DataSplit

    if settings.get("data"):
        path = settings["data"]
        x = _load_user_array(path, "--data")
        labels = None
        if settings.get("labels"):
            labels = _load_user_labels(settings["labels"])
            if labels.shape[0] != x.shape[0]:
                raise UsageError(f"--labels: expected {x.shape[0]} labels (one per row of '{path}'), got "
                                 f"{labels.shape[0]} in '{settings['labels']}'")
        n = int(x.shape[0])
        if n < 4:
            raise UsageError(f"--data: expected at least 4 samples to split into training and held-out parts, "
                             f"got {n} in '{path}'")
        frac = settings["test_fraction"]
        stratify = labels if labels is not None and np.unique(labels).size < n else None
        try:
            train_idx, test_idx = train_test_split(n, frac, settings["seed"], stratify=stratify)
        except ValueError:
            train_idx, test_idx = train_test_split(n, frac, settings["seed"])
        lo, hi = _value_range(x)
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(path).split(".npz:")[0]).name.split(".")[0]) or "data"
        return _Data(
            DataSplit(x, train_idx, None if labels is None else labels[train_idx]),
            DataSplit(x, test_idx, None if labels is None else labels[test_idx]),
            label, None, lo >= 0.0 and hi <= 1.0, n)
    name = settings["dataset"]
    try:
        train = load_dataset(name, split="train")
        test = load_dataset(name, split="test")
    except ModuleNotFoundError as err:
        raise UsageError(f"--dataset {name}: {err}") from None
    except FileNotFoundError as err:
        raise UsageError(f"--dataset {name}: {err}") from None
    return _Data(DataSplit(train.x, None, train.labels), DataSplit(test.x, None, test.labels), name,
                 train.class_names, True, len(train) + len(test))


def _load_other_data(spec: str, labels_path: str | None, input_shape: Sequence[int] | None,
                     what: str) -> tuple[Any, np.ndarray | None]:
    """Data for ``evaluate --data`` / ``encode``: a file, or a built-in data set name (all of it)."""
    from ..data.datasets import DATASETS, load_dataset

    key = spec.strip().lower().replace("_", "-")
    labels = None
    if not Path(spec.split(".npz:")[0]).exists() and key in DATASETS:
        ds = load_dataset(key, split="all")
        x: Any = ds.x
        labels = ds.labels
    else:
        x = _load_user_array(spec, what)
    if labels_path:
        labels = _load_user_labels(labels_path)
        if labels.shape[0] != x.shape[0]:
            raise UsageError(f"--labels: expected {x.shape[0]} labels (one per sample of '{spec}'), got "
                             f"{labels.shape[0]}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        if int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
            raise UsageError(f"{what}: the model takes samples of shape {tuple(input_shape)}, got samples of shape "
                             f"{tuple(x.shape[1:])} in '{spec}'")
        x = x.reshape((x.shape[0], *input_shape))
    return x, labels


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------

def _check_device(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available here (torch.cuda.is_available() is False); "
                             "use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(device)


def _check_fused(model_kind: str) -> None:
    if model_kind != "infomax":
        raise UsageError("--fused: the fused step exists for the InfoMax-VAE only (--model infomax)")
    try:
        importlib.import_module("autoencoder_toolkit.fused")
        from ..models import infomaxvaes
    except ImportError as err:
        raise UsageError(f"--fused: the fused training path (autoencoder_toolkit.fused) is not available in this "
                         f"installation ({err}); train without --fused") from None
    if "fused" not in inspect.signature(infomaxvaes.train_).parameters:
        raise UsageError("--fused: this installation's infomaxvaes.train_ has no fused path; train without --fused")


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    from .. import __version__

    return {"autoencoder_toolkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": sys.version.split()[0]}


def _describe_model(settings: Mapping[str, Any], sample_shape: Sequence[int]) -> str:
    d = int(np.prod(sample_shape))
    h = "-".join(map(str, settings["hidden"]))
    hr = "-".join(map(str, settings["hidden"][::-1]))
    text = (f"encoder {d}-{h}-{settings['latent_dim']}, {settings['decoder']} decoder "
            f"{settings['latent_dim']}-{hr}-{d}")
    if settings["model"] == "infomax":
        ch = "-".join(map(str, settings["critic_hidden"] or settings["hidden"]))
        text += f", critic {d}+{settings['latent_dim']}-{ch}-1"
    return text


def _model_title(settings: Mapping[str, Any]) -> str:
    if settings["model"] == "infomax":
        return "InfoMax-VAE"
    return "VAE" if settings["beta"] == 1.0 else f"β-VAE (β={settings['beta']:g})"


def _default_run_dir(label: str, model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{label}-{model}-{stamp}"
    path, k = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{k}")
        k += 1
    return path


def _prepare_run_dir(out: str | None, overwrite: bool, label: str, model: str) -> Path:
    from ..training.loop import RunDirectory

    if out is None:
        path = _default_run_dir(label, model)
    else:
        path = Path(out)
        if path.exists():
            if path.is_file():
                raise UsageError(f"--out: '{path}' is a file; give a directory for the run")
            empty = not any(path.iterdir())
            if not empty:
                if not overwrite:
                    raise UsageError(f"--out: '{path}' already exists; choose another directory, or pass "
                                     "--overwrite to replace that run")
                if not RunDirectory.is_run(path):
                    raise UsageError(f"--overwrite: '{path}' is not a run directory, so it is not replaced; "
                                     "choose another --out")
                shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fmt(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 1e6 else f"{v:.4g}"


def _report_lines(report: Any, where: str) -> list[str]:
    def row(label: str, value: str, note: str = "") -> str:
        return f"  {label:<36}{value:>9}" + (f"  {note}" if note else "")

    e = report.elbo
    lines = [f"Held-out metrics ({report.n} samples of {where}; nats per sample)",
             row("reconstruction log-likelihood", f"{e.reconstruction:.3f}"),
             row("KL(q(z|x) || p(z))", f"{e.kl:.3f}"),
             row("ELBO", f"{e.elbo:.3f}")]
    if report.mutual_info is not None:
        mi = report.mutual_info
        lines.append(row(f"MI estimate (critic, {len(mi.values)} shuffles)", f"{mi.mean:.3f}", f"± {mi.std:.3f}"))
    else:
        lines.append(row("MI estimate", "n/a", "(a VAE has no critic)"))
    au, aus = report.active_units, report.active_units_sampled
    lines.append(row(f"active units (Var μ ≥ {au.threshold:g})", f"{au.count} / {report.latent_dim}"))
    lines.append(row(f"active units (20 draws, Var ≥ {aus.threshold:g})", f"{aus.count} / {report.latent_dim}",
                     "(variance of the mean of 20 sampled codes)"))
    if report.accuracy is not None:
        note = "(logistic regression on μ" + (", fit on the training split)" if "training" in
                                                (report.accuracy_protocol or "") else ", 70/30 split)")
        lines.append(row("latent classification accuracy", f"{report.accuracy:.3f}", note))
    else:
        lines.append(row("latent classification accuracy", "n/a", "(no labels)"))
    return lines


def _resume_hint(run_dir: Path, lr: float) -> str:
    return f"{PROG} train --resume {run_dir} --lr {lr / 10:g}"


# ----------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------

def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given on the command line (argparse leaves the others at None)."""
    out = {}
    for key in _CONFIG_KEYS:
        v = getattr(args, key, None)
        if v is not None:
            out[key] = v
    return out


def _without_nproc(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def _launch_processes(argv: Sequence[str], nproc: int) -> int:
    """Run ``train`` in ``nproc`` processes on this machine through torch's elastic launcher (torchrun)."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "autoencoder_toolkit", *_without_nproc(argv))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        code = failure.exitcode
        explained = [f.exitcode for _, f in sorted(err.failures.items())
                     if f.exitcode in (EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED)]
        if explained:
            # a process already explained itself on one line; another one failing while the
            # group came apart is a consequence, not a second error
            return explained[0]
        print(f"{PROG}: error: training process {rank} of {nproc} failed (exit status {code}); the other "
              "processes were stopped", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_train(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    import torch

    from ..training import distributed

    from ..training.loop import (RunDirectory, TrainingDiverged, TrainingState, fit, loss_kwargs_for, make_optimizers,
                                 mlp_model, optimizer_dict, set_learning_rate)

    from_file = _read_config_file(args.config) if args.config else {}
    flags = _given(args)
    if "data" in flags and "dataset" in flags:
        raise UsageError("--data and --dataset: give one data source, not both")
    if "data" in flags:  # a data source given as a flag replaces the file's
        from_file.pop("dataset", None)
    if "dataset" in flags:
        from_file.pop("data", None)
        from_file.pop("labels", None)
    given = {**from_file, **flags}
    quiet = bool(given.pop("quiet", False))
    if quiet:
        def say(text: str) -> None:  # noqa: ARG001 - quiet mode prints nothing but the result
            return None
    if args.resume:
        if "out" in given or "overwrite" in given:
            raise UsageError("--resume: the run directory is RUN_DIR itself; --out and --overwrite do not apply")
        run = RunDirectory.open(args.resume)
        config = run.read_config()
        settings = dict(config["settings"])
        for key, value in given.items():
            if key in ("data", "labels") and settings.get(key) and \
                    Path(value).resolve() == Path(settings[key]).resolve():
                continue
            if key in _FIXED_ON_RESUME and value != settings.get(key):
                def show(v: Any) -> str:
                    return ",".join(map(str, v)) if isinstance(v, list) else str(v)

                raise UsageError(
                    f"{_flag(key)} {show(value)}: cannot change when resuming (the run has {_flag(key)} "
                    f"{show(settings.get(key))}); only {', '.join(_flag(k) for k in RESUMABLE)} may change")
        changed = {k: v for k, v in given.items() if k in RESUMABLE and v != settings.get(k)}
        settings.update(changed)
    else:
        if "data" in given and "dataset" in given:
            raise UsageError("--data and --dataset: give one data source, not both")
        settings = {**TRAIN_DEFAULTS, **given}
        if settings.get("labels") and not settings.get("data"):
            raise UsageError("--labels: applies to --data only (built-in data sets bring their labels)")
        if "data" in given:
            settings["dataset"] = None
        changed = {}
    settings.pop("out", None)
    settings.pop("overwrite", None)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if args.nproc is not None and world > 1 and args.nproc != world:
        raise UsageError(f"--nproc {args.nproc}: this process was launched with {world} processes")
    device = _check_device(settings["device"])
    ctx = distributed.DistributedContext()
    if world > 1:
        ctx = distributed.init_process_group(device=device.type, timeout_s=args.dist_timeout)
        device = ctx.device
        if not ctx.is_main:
            def say(text: str) -> None:  # noqa: ARG001 - only rank 0 talks
                return None
    if settings["fused"]:
        _check_fused(settings["model"])

    data = _load_training_data(settings)
    if settings["decoder"] is None:
        settings["decoder"] = "bernoulli" if data.in_unit_interval else "gaussian"
    elif settings["decoder"] == "bernoulli" and not data.in_unit_interval:
        raise UsageError("--decoder bernoulli: the data are not in [0, 1]; scale them, or use --decoder gaussian")
    if settings["batch_size"] > len(data.train):
        raise UsageError(f"--batch-size {settings['batch_size']}: larger than the {len(data.train)} training "
                         f"samples; use --batch-size {min(len(data.train), 64)} or less")

    if args.resume:
        if tuple(config["data"]["sample_shape"]) != tuple(data.train.sample_shape) or \
                config["data"]["n_samples"] != data.n_total:
            raise UsageError(f"--resume: the data changed since the run started (it had {config['data']['n_samples']} "
                             f"samples of shape {tuple(config['data']['sample_shape'])})")
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
            say(f"note: the newest checkpoint was incomplete; resuming from the previous one ({ckpt.path})")
    else:
        path = None
        if ctx.is_main:
            path = _prepare_run_dir(given.get("out"), bool(given.get("overwrite")), data.label, settings["model"])
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
        from ..models.config import module_config

        config = {
            "format": "autoencoder_toolkit.run",
            "format_version": 1,
            "name": run.path.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings,
            "data": {"source": data.label, "path": None if not settings["data"] else str(Path(settings["data"]).resolve()),
                     "labels": None if not settings["labels"] else str(Path(settings["labels"]).resolve()),
                     "n_samples": data.n_total, "n_train": len(data.train), "n_test": len(data.test),
                     "sample_shape": list(data.train.sample_shape)},
            "architecture": module_config(model),
            "versions": _versions(),
        }
        if settings["data"]:
            # later commands find the files from anywhere
            config["settings"]["data"] = config["data"]["path"]
            config["settings"]["labels"] = config["data"]["labels"]
        if ctx.is_main:
            run.write_config(config)
            run.save_checkpoint(model, opt, state)  # epoch 0: a run can always be resumed

    title = _model_title(settings)
    kwargs = loss_kwargs_for(model, settings["alpha"], settings["beta"])
    target = settings["epochs"]
    say(f"{title} on {data.label}: {len(data.train)} training / {len(data.test)} held-out samples of shape "
        f"{tuple(data.train.sample_shape)}; run directory {run.path}"
        + (f"; {ctx.world_size} processes ({ctx.backend}), batch {settings['batch_size']} per process"
           if ctx.enabled else ""))
    if state.epoch >= target:
        say(f"the run has completed {state.epoch} of {target} epochs; pass --epochs N with N > {state.epoch} "
            "to train further (evaluating it again)")

    def on_epoch_end(st: TrainingState) -> None:
        run.save_checkpoint(model, opt, st)
        run.write_metrics(st.history)

    t0 = time.perf_counter()
    start_epoch = state.epoch
    try:
        fit(model, data.train, opt, epochs=target, batch_size=settings["batch_size"], loss_kwargs=kwargs,
            state=state, held_out=data.test, fused=settings["fused"], on_epoch_end=on_epoch_end,
            progress=not quiet, context=ctx, global_shuffle=bool(settings.get("global_shuffle")))
    except TrainingDiverged as err:
        last = err.last_epoch
        if ctx.is_main:
            print(f"{PROG}: error: {err}. Kept the last good checkpoint (epoch {last}) in "
                  f"{run.path / 'checkpoint'}; resume with a lower learning rate: "
                  f"{_resume_hint(run.path, settings['lr'])}", file=sys.stderr)
        if ctx.enabled:
            # every process stops at the same step (the check is collective): leave the group
            # together, so that no process exits while its connections are still open
            distributed.destroy_process_group()
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        if ctx.is_main:
            print(f"{PROG}: interrupted; the last checkpoint (epoch {state.epoch}) is kept in "
                  f"{run.path / 'checkpoint'}; continue with: {PROG} train --resume {run.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - t0

    if ctx.is_main:
        summary = _finish_run(run, model, data, settings, state, title, seconds, start_epoch)
        if quiet:
            print(run.path)
        else:
            print("\n".join(summary))
    if ctx.enabled:
        distributed.destroy_process_group()
    return EXIT_OK


def _finish_run(run: Any, model: Any, data: _Data, settings: Mapping[str, Any], state: Any, title: str,
                seconds: float, start_epoch: int) -> list[str]:
    """Evaluate on the held-out data, draw the figures, write evaluation.json and summary.txt."""
    from ..evaluation.metrics import encode_data, evaluate_model

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
             f"  model       {_describe_model(settings, data.train.sample_shape)}",
             f"  training    epochs {start_epoch + 1}-{state.epoch} of {settings['epochs']} in {seconds:.1f} s on "
             f"{settings['device']}; batch {settings['batch_size']}, Adam lr {settings['lr']:g}, "
             f"α = {settings['alpha']:g}, β = {settings['beta']:g}, seed {settings['seed']}"
             if state.epoch > start_epoch else
             f"  training    {state.epoch} epochs (already complete), batch {settings['batch_size']}"]
    if last:
        text = f"  last epoch  loss {_fmt(last['loss'])} (training)"
        if last.get("test_loss") is not None:
            text += f", {_fmt(last['test_loss'])} (held-out)"
        if last.get("critic_loss") is not None:
            text += f"; critic loss {_fmt(last['critic_loss'])}"
        lines.append(text)
    lines.extend(_report_lines(report, "the held-out split"))
    lines.append(f"Run directory {run.path}")
    lines.append("  model       checkpoint/model.safetensors (architecture also in config.json)")
    lines.append("  metrics     metrics.csv (per epoch), evaluation.json, summary.txt")
    lines.append("  figures     " + ", ".join(str(Path(p).relative_to(run.path)) for p in figures))
    lines.append(f"Next: {PROG} evaluate {run.path}  |  {PROG} encode {run.path} DATA --out codes.npy")
    from ..training.checkpoints import atomic_write_text

    atomic_write_text(run.path / run.SUMMARY, "\n".join(lines) + "\n")
    return lines


# ----------------------------------------------------------------------------------
# evaluate and encode
# ----------------------------------------------------------------------------------

def _open_model(run_dir: str, device: str) -> tuple[Any, dict[str, Any], Any]:
    from ..training.loop import RunDirectory

    run = RunDirectory.open(run_dir)
    config = run.read_config()
    dev = _check_device(device)
    ckpt = run.load_checkpoint(device="cpu")
    return ckpt.model.to(dev), config, run


def _cmd_evaluate(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from ..evaluation.metrics import evaluate_model

    model, config, run = _open_model(args.run_dir, args.device)
    settings = config["settings"]
    if args.labels and not args.data:
        raise UsageError("--labels: applies to --data only")
    if args.data:
        x, labels = _load_other_data(args.data, args.labels, model.vae.input_shape if hasattr(model, "vae")
                                     else model.input_shape, "DATA")
        where = f"'{args.data}'"
        report = evaluate_model(model, x, labels, n_shuffles=args.n_shuffles, batch_size=args.batch_size,
                                seed=settings["seed"])
        doc = {"data": str(args.data), **report.to_dict()}
    else:
        data = _load_training_data(settings)
        where = "the held-out split"
        report = evaluate_model(model, data.test.view(), data.test.labels, x_train=data.train.view(),
                                labels_train=data.train.labels, n_shuffles=args.n_shuffles,
                                batch_size=args.batch_size, seed=settings["seed"])
        doc = {"data": "held-out split", **report.to_dict()}
        run.write_json(run.EVALUATION, doc)
    written = None
    if args.json:
        from ..training.checkpoints import atomic_write_text

        written = atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    if args.quiet:
        if written or not args.data:
            print(written or run.path / run.EVALUATION)
    else:
        print(f"{_model_title(settings)} of run {run.path}")
        print("\n".join(_report_lines(report, where)))
        if written:
            print(f"metrics written to {written}")
    return EXIT_OK


def _cmd_encode(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    import torch

    from ..training.checkpoints import fsync_dir
    from ..evaluation.metrics import _data_batches, _sigma_of

    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        raise UsageError(f"--out: expected a .npy file name, got '{out}'")
    if out.is_dir():
        raise UsageError(f"--out: '{out}' is a directory")
    if not out.parent.exists():
        raise UsageError(f"--out: the folder '{out.parent}' does not exist")
    model, config, run = _open_model(args.run_dir, args.device)
    vae = model.vae if hasattr(model, "vae") else model
    x, _ = _load_other_data(args.data, None, vae.input_shape, "DATA")
    n = int(x.shape[0])
    latent = int(vae.latent_dim)
    targets = [(out, "μ")]
    if args.with_sigma:
        targets.append((out.with_name(out.stem + "_sigma.npy"), "σ"))
    temps = []
    try:
        arrays = []
        for path, _ in targets:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
            temps.append(tmp)
            arrays.append(np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, latent)))
        vae.eval()
        with torch.no_grad():
            for start, xb in _data_batches(x, args.batch_size, next(vae.parameters()).device):
                enc = vae.encoder(xb)
                stop = start + xb.shape[0]
                arrays[0][start:stop] = enc.μ.float().cpu().numpy()
                if args.with_sigma:
                    arrays[1][start:stop] = _sigma_of(enc).float().cpu().numpy()
        for arr in arrays:
            arr.flush()
            del arr
        arrays.clear()
        for tmp, (path, _) in zip(temps, targets):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        fsync_dir(out.parent)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()
    if args.quiet:
        print(out)
    else:
        say(f"encoded {n} samples of '{args.data}' with run {run.path}")
        for path, what in targets:
            print(f"{what}: {path} ({n}, {latent}) float32")
    return EXIT_OK


def _cmd_reproduce(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from ..experiments.reproduction import DATASET_NAMES, reproduce

    spec = args.datasets if args.datasets is not None else ",".join(DATASET_NAMES)
    names = [n.strip().lower().replace("_", "-") for n in spec.split(",") if n.strip()]
    if not names or any(n not in DATASET_NAMES for n in names):
        raise UsageError(f"--datasets: expected a comma-separated list of {', '.join(DATASET_NAMES)}, got {spec!r}")
    device = str(_check_device(args.device))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: expected a folder, got the file '{out}'")
    if out.is_dir() and any(out.iterdir()):
        earlier = (out / "results.json").is_file() or (out / "runs.jsonl").is_file()
        if not earlier:
            raise UsageError(f"--out: '{out}' is not empty and holds no earlier reproduction (results.json); "
                             "choose a new or empty folder")
        if not args.overwrite:
            raise UsageError(f"--out: '{out}' holds an earlier reproduction; give --overwrite to replace it, "
                             "or choose another folder")
        # what the earlier run wrote goes, so that no stale figure or model outlives it
        stale = [out / name for name in ("results.json", "table.md", "runs.jsonl", "latent_codes.npz")]
        stale += sorted((out / "figures").glob("*.png")) + sorted((out / "models").glob("*.safetensors"))
        for path in stale:
            path.unlink(missing_ok=True)
    overrides = {name: {"epochs": args.epochs} for name in names} if args.epochs else None
    result = reproduce(out, datasets=names, seeds=args.seeds or (1 if args.quick else 3), quick=args.quick,
                       device=device, threads=args.threads or 1, jobs=args.jobs, overrides=overrides,
                       skip_missing=args.datasets is None, log=say, verbose=not args.quiet)
    if args.quiet:
        print(out)
        return EXIT_OK
    print(result.table)
    say(f"wall time {result.wall_seconds:.0f} s; results in {out}: table.md, results.json, "
        + ", ".join(f"figures/{p.name}" for p in result.figures))
    return EXIT_OK


# ----------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------

_USER_ERRORS = (UsageError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                ValueError, KeyError, ModuleNotFoundError)


def _speaks() -> bool:
    """Whether this process reports user errors (rank 0 of a multi-process run, or a single process)."""
    return os.environ.get("RANK", "0") == "0"


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(str(text).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module documentation)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = _build_parser()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line per warning, no source excerpt
        try:
            args = parser.parse_args(argv)
            if args.command is None:
                raise UsageError(f"{PROG}: choose a command: train, evaluate, encode or reproduce (see {PROG} --help)")
            quiet = bool(getattr(args, "quiet", False))

            def say(text: str) -> None:
                if not quiet:
                    print(text, file=sys.stderr)

            if args.command == "train" and (args.nproc or 1) > 1 and "WORLD_SIZE" not in os.environ:
                return _launch_processes(argv, args.nproc)
            handler = {"train": _cmd_train, "evaluate": _cmd_evaluate, "encode": _cmd_encode,
                       "reproduce": _cmd_reproduce}[args.command]
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(args.threads or 1)
            try:
                return handler(args, say)
            finally:
                torch.set_num_threads(threads)
        except _USER_ERRORS as err:
            if debug:
                traceback.print_exc()
            message = _one_line(err)
            if message.startswith(PROG):  # "autoencoder-toolkit train: msg" from the parser
                where, _, message = message.partition(": ")
            else:
                where = PROG
            if _speaks():
                print(f"{where}: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            if _speaks():
                print(f"{PROG}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - the last resort: one line, or the traceback with --debug
            if debug:
                traceback.print_exc()
            else:
                print(f"{PROG}: internal error: {type(err).__name__}: {_one_line(err)} (rerun with --debug for "
                      "the traceback)", file=sys.stderr)
            return EXIT_ERROR


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    from tqdm import tqdm

    # tqdm.write keeps an active progress bar intact
    tqdm.write(f"{PROG}: warning: {_one_line(Exception(str(message)))}", file=sys.stderr)
