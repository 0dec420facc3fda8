"""The command line's arguments: flags, their checks, the parser and ``--config`` files.

Every flag is checked by a converter that reports ``--flag: expected X, got Y``; a
``--config`` TOML file takes the same keys (``batch_size`` or ``batch-size``, flat or in
a ``[train]`` table) and goes through the same converters; flags win over it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..training import settings
from ..training.job import PROG
from ..training.saving import parse_cadence
from ..training.settings import CHECKERS, RESUMABLE, TRAIN_DEFAULTS, SettingsError, flag

__all__ = ["UsageError", "CONFIG_KEYS", "CONVERTERS", "positive_int", "device", "read_config_file",
           "build_parser"]


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

# Keys a --config file may set (flags win over them); "out" and "quiet" too.
CONFIG_KEYS = tuple(TRAIN_DEFAULTS) + ("out", "quiet", "overwrite")


def _argument(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A setting's checker as an argparse type (its message becomes argparse's)."""
    def convert(value: Any) -> Any:
        try:
            return check(value)
        except (SettingsError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return convert


def positive_int(name: str, minimum: int = 1) -> Callable[[Any], int]:
    return _argument(settings.positive_int(name, minimum))


def _float(name: str, positive: bool = False) -> Callable[[Any], float]:
    return _argument(settings.number(name, positive=positive))


device = _argument(settings.device_name)


def _fraction(value: Any) -> float:
    """A number in (0, 1] (argparse type of ``reproduce --fraction``)."""
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}") from None
    if not 0 < f <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}")
    return f

#: The argparse type of each setting: its checker of :mod:`autoencoder_toolkit.training.settings`.
CONVERTERS: dict[str, Callable[[Any], Any]] = {key: _argument(check) for key, check in CHECKERS.items()}


def read_config_file(path: str) -> dict[str, Any]:
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
    if isinstance(doc.get("train"), dict):
        others = sorted(k for k in doc if k != "train")
        if others:
            tables = [k for k in others if isinstance(doc[k], dict)]
            what = (f"table{'s' if len(tables) > 1 else ''} {', '.join(f'[{t}]' for t in tables)}" if tables else
                    f"key{'s' if len(others) > 1 else ''} {', '.join(map(repr, others))} outside it")
            raise UsageError(f"--config: '{p}' has a [train] table and {what}; train reads the [train] table "
                             "alone (or flat keys without any table): move those settings into [train]")
        doc = doc["train"]
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for raw_key, value in doc.items():
        key = raw_key.replace("-", "_")
        if key not in CONFIG_KEYS:
            raise UsageError(f"--config: unknown key {raw_key!r} in '{p}'; accepted keys: "
                             f"{', '.join(k.replace('_', '-') for k in CONFIG_KEYS)}")
        if key in spelled:
            raise UsageError(f"--config: '{p}' gives {spelled[key]!r} and {raw_key!r}, one setting spelled twice; "
                             "keep one")
        spelled[key] = raw_key
        try:
            out[key] = CONVERTERS[key](value)
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"--config: '{p}', key {raw_key!r}: {str(err).split(': ', 1)[-1]}") from None
    return out


# ----------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Train, evaluate and use InfoMax variational autoencoders.",
        epilog="Exit status: 0 success, 2 user error, 3 training diverged (checkpoint kept), "
               "4 stopped by the system (disk full, read-only storage, a lost process; checkpoint kept), "
               "130 interrupted, 143 terminated (SIGTERM), 1 unexpected error. Add --debug for tracebacks.",
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
    common.add_argument("--threads", type=positive_int("--threads"), default=None, metavar="N",
                        help="CPU threads for torch (default 1: the small models here run fastest on one "
                             "thread, and do not slow down when other processes share the CPU)")

    t = sub.add_parser("train", parents=[common], help="train a model and write a run directory",
                       description="Train an InfoMax-VAE (or a VAE) and write a run directory. With no "
                                   "arguments: the digits data set, about a minute on 2 CPU cores. Settings "
                                   "come from the defaults, then --config, then the flags.")
    src = t.add_argument_group("data")
    src.add_argument("--dataset", type=CONVERTERS["dataset"], default=None,
                     help="built-in data set: digits, mnist5k or fashion-mnist (default: digits)")
    src.add_argument("--data", type=CONVERTERS["data"], default=None, metavar="PATH",
                     help="your data: .npy (memory-mapped), .npz (file.npz:KEY) or .csv, one sample per row")
    src.add_argument("--labels", type=CONVERTERS["labels"], default=None, metavar="PATH",
                     help="class labels for --data (.npy, .npz or one-column .csv)")
    src.add_argument("--test-fraction", type=CONVERTERS["test_fraction"], default=None, metavar="F",
                     help="held-out fraction of --data (default 0.2; built-in sets use their own split)")
    src.add_argument("--scale", type=CONVERTERS["scale"], default=None, metavar="{auto,none,minmax,standard}",
                     help="scale the data, one map for all features fitted on the training split: minmax to "
                          "[0, 1], standard to mean 0 and spread 1, none; auto (default) divides 8-bit integer "
                          "data by 255 and leaves other data as they are")
    mdl = t.add_argument_group("model")
    mdl.add_argument("--model", type=CONVERTERS["model"], default=None,
                     help="infomax (InfoMax-VAE, default) or vae (VAE / beta-VAE)")
    mdl.add_argument("--latent-dim", type=CONVERTERS["latent_dim"], default=None, metavar="L",
                     help=f"latent dimensions (default {TRAIN_DEFAULTS['latent_dim']})")
    mdl.add_argument("--hidden", type=CONVERTERS["hidden"], default=None, metavar="H1,H2",
                     help="hidden layer sizes of the encoder (the decoder mirrors them) "
                          f"(default {','.join(map(str, TRAIN_DEFAULTS['hidden']))})")
    mdl.add_argument("--critic-hidden", type=CONVERTERS["critic_hidden"], default=None, metavar="H1,H2",
                     help="hidden layer sizes of the critic (default: --hidden)")
    mdl.add_argument("--decoder", type=CONVERTERS["decoder"], default=None,
                     help="bernoulli or gaussian (default: bernoulli for data in [0, 1], else gaussian)")
    opt = t.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=CONVERTERS["epochs"], default=None, metavar="N",
                     help=f"number of epochs; with --resume, the total to reach (default {TRAIN_DEFAULTS['epochs']})")
    opt.add_argument("--batch-size", type=CONVERTERS["batch_size"], default=None, metavar="B",
                     help=f"samples per step (default {TRAIN_DEFAULTS['batch_size']})")
    opt.add_argument("--lr", type=CONVERTERS["lr"], default=None, help="Adam learning rate (default 1e-3)")
    opt.add_argument("--alpha", type=CONVERTERS["alpha"], default=None,
                     help=f"α, weight of the mutual-information term (default {TRAIN_DEFAULTS['alpha']})")
    opt.add_argument("--beta", type=CONVERTERS["beta"], default=None,
                     help=f"β, weight of the KL term (default {TRAIN_DEFAULTS['beta']}; > 1 gives a β-VAE)")
    opt.add_argument("--seed", type=CONVERTERS["seed"], default=None, help="random seed, 0 to 2**63-1 (default 0)")
    opt.add_argument("--device", type=CONVERTERS["device"], default=None, help="cpu or cuda (default cpu)")
    opt.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None,
                     help="the fused InfoMax-VAE step (default on): one forward and one backward pass, the "
                          "critic updated on the same codes as the VAE, as the paper's authors train it")
    opt.add_argument("--faithful", dest="fused", action="store_false",
                     help="the reference's order instead (AutoEncoderToolkit.jl: the VAE updated first, then "
                          "the critic on a fresh forward pass); the same as --no-fused")
    opt.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                     help="compile the fused step with torch.compile (default off): the same draws and numbers, "
                          "faster steps on large networks, tens of seconds to compile first; one process only")
    par = t.add_argument_group("several processes (data-parallel, torch.distributed)")
    par.add_argument("--nproc", type=positive_int("--nproc"), default=None, metavar="N",
                     help="train with N processes on this machine (launches torchrun; --batch-size is per "
                          "process). Under torchrun itself, the process group comes from its environment")
    par.add_argument("--global-shuffle", action=argparse.BooleanOptionalAction, default=None,
                     help="with several processes, shuffle the codes for the MI bound across all processes "
                          "(default: within each process)")
    par.add_argument("--dist-timeout", type=_float("--dist-timeout", positive=True), default=600.0, metavar="S",
                     help="seconds a process waits for the others before failing (default 600)")
    run = t.add_argument_group("run directory")
    run.add_argument("--out", type=CONVERTERS["out"], default=None, metavar="RUN_DIR",
                     help="run directory (default runs/<data>-<model>-<timestamp>)")
    run.add_argument("--overwrite", action="store_true", default=None,
                     help="replace an existing run directory given by --out")
    run.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help=f"continue a run from its last checkpoint; may change {', '.join(flag(k) for k in RESUMABLE)}")
    run.add_argument("--config", default=None, metavar="TOML", help="settings file (flags win over it)")
    run.add_argument("--checkpoint-every", type=_argument(parse_cadence), default="auto", metavar="N|Ts|auto",
                     help="write the checkpoint every N epochs, every T seconds (30s, 10m), or as often as keeps "
                          "its cost under 2%% of the training time (auto, the default); always after the last "
                          "epoch, and on Ctrl-C, SIGTERM or a divergence")
    run.add_argument("--tensorboard", type=CONVERTERS["out"], default=None, metavar="DIR",
                     help="also log the training to TensorBoard event files in DIR (needs the tensorboard "
                          "package; view with: tensorboard --logdir DIR)")

    e = sub.add_parser("evaluate", parents=[common], help="model metrics of a run on held-out data",
                       description="Compute the model metrics (ELBO terms, MI estimate, active units, latent "
                                   "classification accuracy) of a run on its held-out data, or on --data.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--data", default=None, metavar="PATH", help="evaluate on this file (or built-in data set name) instead")
    e.add_argument("--labels", default=None, metavar="PATH", help="labels of --data")
    e.add_argument("--n-shuffles", type=positive_int("--n-shuffles"), default=10, metavar="K",
                   help="shuffles averaged in the MI estimate (default 10)")
    e.add_argument("--batch-size", type=positive_int("--batch-size"), default=1024, metavar="B",
                   help="samples per evaluation batch (default 1024)")
    e.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
    e.add_argument("--json", default=None, metavar="PATH",
                   help="also write the metrics there (the run's own held-out metrics go to RUN_DIR/evaluation.json)")

    c = sub.add_parser("encode", parents=[common], help="latent means (and spreads) of new data",
                       description="Encode DATA with a run's model: write the latent means (N, L) to --out "
                                   "(.npy, or .csv with the labels alongside when known); with --with-sigma "
                                   "also the spreads σ.")
    c.add_argument("run_dir", metavar="RUN_DIR")
    c.add_argument("data", metavar="DATA", help="a .npy/.npz/.csv file, or a built-in data set name (all of it)")
    c.add_argument("--out", required=True, metavar="CODES.npy|CODES.csv",
                   help="output file: .npy (the means, (N, L) float32) or .csv (one row per sample: mu_1.., "
                        "sigma_1.. with --with-sigma, and label when the labels are known)")
    c.add_argument("--with-sigma", action="store_true",
                   help="also write the spreads: to <out stem>_sigma.npy, or as columns of the .csv")
    c.add_argument("--labels", default=None, metavar="PATH", help="labels of DATA, written alongside in a .csv")
    c.add_argument("--batch-size", type=positive_int("--batch-size"), default=1024, metavar="B",
                   help="samples per batch (default 1024)")
    c.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")

    r = sub.add_parser("reproduce", parents=[common], help="reproduce the InfoMax-VAE paper's comparison offline",
                       description="Train a VAE, a beta-VAE (beta = 4), an MMD-VAE and an InfoMax-VAE on "
                                   "MNIST-5k (MLPs, latent 2) and Fashion-MNIST (convolutional networks), several "
                                   "seeds each, under the library's protocol or the paper authors' (their "
                                   "per-model settings, training step and evaluation), and write a Markdown table "
                                   "and figures of their held-out metrics (see docs/reproduction.md).")
    r.add_argument("--quick", action="store_true", help="smoke run: small subsets, one seed, few steps (under a minute)")
    r.add_argument("--protocol", choices=("library", "authors"), default="library",
                   help="library (default): every model with the InfoMax-VAE's networks, latent size and learning "
                        "rate, and this package's evaluation; authors: each model, its training step and the "
                        "evaluation as in the paper authors' scripts (see docs/reproduction.md)")
    r.add_argument("--seeds", type=positive_int("--seeds"), default=None, metavar="N",
                   help="seeds per model (default 3; 1 with --quick)")
    r.add_argument("--datasets", default=None, metavar="NAMES",
                   help="comma-separated: mnist5k,fashion-mnist (default both; one that is not installed is "
                        "then skipped with a note)")
    r.add_argument("--out", default="runs/reproduction", metavar="DIR",
                   help="output folder (default runs/reproduction); it must be new or empty, or hold an "
                        "earlier reproduction and --overwrite be given")
    r.add_argument("--overwrite", action="store_true",
                   help="replace the earlier reproduction in --out (its table, figures, records and models)")
    r.add_argument("--epochs", type=positive_int("--epochs"), default=None, metavar="N",
                   help="training epochs of every model (default: the authors' number of updates, 75 epochs on "
                        "MNIST-5k (their MMD-VAE: 150 under --protocol authors) and 10 on Fashion-MNIST; with "
                        "--quick 2 and 1)")
    r.add_argument("--fraction", type=_fraction, default=1.0, metavar="F",
                   help="train every model for the fraction F in (0, 1] of its epochs (rounded, at least one) to "
                        "fit a time budget; the evaluation is unchanged (default 1)")
    r.add_argument("--jobs", type=positive_int("--jobs"), default=1, metavar="N",
                   help="runs trained in parallel processes, each with --threads threads (default 1)")
    r.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
    return parser


