"""The ``autoencoder-toolkit`` command: ``train``, ``evaluate``, ``encode`` and ``reproduce``.

``autoencoder-toolkit train`` trains an InfoMax-VAE (``--model vae``: a VAE, a β-VAE
with ``--beta``) on a built-in data set or on the user's array file and writes a run
directory (see :class:`~autoencoder_toolkit.training.RunDirectory`); ``evaluate``
computes the model metrics of :mod:`autoencoder_toolkit.metrics` on held-out data;
``encode`` writes the latent means (and spreads) of new data; ``reproduce`` runs the
paper reproduction. This module parses the arguments and prints; the work is done by
:mod:`autoencoder_toolkit.training.job` and :mod:`autoencoder_toolkit.experiments.reproduction`.

Exit statuses: 0 success; 1 an unexpected error; 2 a user error (a missing file, an
unknown data set, a bad flag or configuration key, a folder that is not a run
directory), reported on one line of stderr; 3 training diverged (a NaN or infinite
loss), with the last good checkpoint kept; 4 the system stopped the command (a full
disk, read-only storage, a training process that died or lost its connection), with
the last checkpoint kept and no file half-written; 130 interrupted (Ctrl-C) and 143
terminated (SIGTERM), with the last checkpoint kept. ``--debug`` adds the traceback to
any error.

The processes of ``train --nproc N`` stop when the command that launched them dies
(``PR_SET_PDEATHSIG`` on Linux), so no training continues unsupervised.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
import traceback
import uuid
import warnings
from typing import Any, Callable, Sequence

import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch
from tqdm import tqdm

from ..io.files import system_reason
from ..experiments.reproduction import DATASET_NAMES, prepare_output, reproduce
from ..training import job
from ..training.job import PROG, RESUMABLE, TRAIN_DEFAULTS
from .arguments import CONFIG_KEYS, UsageError, build_parser, read_config_file

__all__ = ["main", "UsageError", "TRAIN_DEFAULTS", "RESUMABLE", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_SYSTEM"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_SYSTEM = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143

#: Set by ``train --nproc`` for its processes: the launcher's process id.
LAUNCHER_ENV = "AUTOENCODER_TOOLKIT_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


def _speaks() -> bool:
    """Whether this process reports user errors (rank 0 of a multi-process run, or a single process)."""
    return os.environ.get("RANK", "0") == "0"


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(str(text).split())
    return text or type(err).__name__


# ----------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------

def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given on the command line (argparse leaves the others at None)."""
    return {key: getattr(args, key) for key in CONFIG_KEYS if getattr(args, key, None) is not None}


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


def _stop_with_launcher() -> None:
    """In a process of ``train --nproc``: receive SIGTERM when the launcher dies (Linux), and stop at
    once if it is already gone."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if not launcher or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this C library
        return
    if str(os.getppid()) != launcher:
        raise job.Terminated()


def _launch_processes(argv: Sequence[str], nproc: int) -> int:
    """Run ``train`` in ``nproc`` processes on this machine through torch's elastic launcher (torchrun)."""
    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ[LAUNCHER_ENV] = str(os.getpid())  # the processes stop when this one dies
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "autoencoder_toolkit", *_without_nproc(argv))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        code = failure.exitcode
        explained = [f.exitcode for _, f in sorted(err.failures.items())
                     if f.exitcode in (EXIT_USAGE, EXIT_DIVERGED, EXIT_SYSTEM, EXIT_INTERRUPTED, EXIT_TERMINATED)]
        if code < 0:  # the first process to fail was killed by a signal
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            print(f"{PROG}: error: training process {rank} of {nproc} failed (killed by {name}); the other "
                  "processes were stopped", file=sys.stderr)
            return EXIT_SYSTEM
        if explained:
            # a process already explained itself on one line; another one failing while the
            # group came apart is a consequence, not a second error
            return explained[0]
        print(f"{PROG}: error: training process {rank} of {nproc} failed (exit status {code}); the other "
              "processes were stopped", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_train(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from_file = read_config_file(args.config) if args.config else {}
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
    talk = (lambda text: None) if quiet else say
    try:
        result = job.train_run(given, resume=args.resume, nproc=args.nproc, dist_timeout=args.dist_timeout,
                               progress=not quiet, say=talk, tensorboard=args.tensorboard,
                               checkpoint_every=args.checkpoint_every)
    except job.RunDiverged as err:
        if _speaks():
            kept = (f"Kept the last good checkpoint (epoch {err.saved_epoch}) in {err.run / 'checkpoint'}"
                    if err.saved_epoch is not None else "No checkpoint was complete yet")
            print(f"{PROG}: error: {err}. {kept}; {err.hint}", file=sys.stderr)
        return EXIT_DIVERGED
    except job.RunStopped as err:
        if _speaks():
            print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_SYSTEM
    except job.RunInterrupted as err:
        if _speaks():
            what = "terminated (SIGTERM)" if err.terminated else "interrupted"
            kept = (f"the last checkpoint (epoch {err.epoch}) is kept in {err.run / 'checkpoint'}"
                    if err.epoch is not None else "no checkpoint was complete yet")
            print(f"{PROG}: {what}; {kept}; continue with: {PROG} train --resume {err.run}", file=sys.stderr)
        return EXIT_TERMINATED if err.terminated else EXIT_INTERRUPTED
    if result.summary is not None:
        print(result.run if quiet else "\n".join(result.summary))
    return EXIT_OK


# ----------------------------------------------------------------------------------
# evaluate, encode, reproduce
# ----------------------------------------------------------------------------------

def _cmd_evaluate(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    result = job.evaluate_run(args.run_dir, data=args.data, labels=args.labels, n_shuffles=args.n_shuffles,
                              batch_size=args.batch_size, device=args.device, json_path=args.json)
    for note in result.notes:
        say(note)
    if args.quiet:
        if result.written or not args.data:
            print(result.written or result.run / job.RunDirectory.EVALUATION)
    else:
        print(f"{result.title} of run {result.run}")
        print("\n".join(result.lines))
        if result.written:
            print(f"metrics written to {result.written}")
    return EXIT_OK


def _cmd_encode(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    result = job.encode_run(args.run_dir, args.data, args.out, with_sigma=args.with_sigma,
                            batch_size=args.batch_size, device=args.device, labels=args.labels)
    if args.quiet:
        print(args.out)
    else:
        say(f"encoded {result.n} samples of '{args.data}' with run {result.run}")
        for path, what in result.files:
            form = "float32" if path.suffix == ".npy" else "CSV"
            print(f"{what}: {path} ({result.n}, {result.latent_dim}) {form}")
    return EXIT_OK


def _cmd_reproduce(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    spec = args.datasets if args.datasets is not None else ",".join(DATASET_NAMES)
    names = [n.strip().lower().replace("_", "-") for n in spec.split(",") if n.strip()]
    if not names or any(n not in DATASET_NAMES for n in names):
        raise UsageError(f"--datasets: expected a comma-separated list of {', '.join(DATASET_NAMES)}, got {spec!r}")
    if args.epochs and args.fraction != 1:
        raise UsageError("--fraction: give either --epochs or --fraction, not both")
    device = str(job.check_device(args.device))
    out = prepare_output(args.out, args.overwrite)
    overrides = {name: {"epochs": args.epochs} for name in names} if args.epochs else None
    result = reproduce(out, datasets=names, seeds=args.seeds or (1 if args.quick else 3), quick=args.quick,
                       device=device, threads=args.threads or 1, jobs=args.jobs, overrides=overrides,
                       skip_missing=args.datasets is None, log=say, verbose=not args.quiet,
                       protocol=args.protocol, fraction=args.fraction)
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


def _terminate(signum: int, frame: Any) -> None:
    raise job.Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module documentation)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    parser = build_parser()
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
                if args.compile:
                    raise UsageError(f"{PROG}: error: --compile: the compiled step runs on one process; leave out "
                                     "--nproc or --compile")
                return _launch_processes(argv, args.nproc)
            if "WORLD_SIZE" in os.environ:
                _stop_with_launcher()
                if not _speaks():
                    warnings.simplefilter("ignore")  # the main process speaks for all
            handler = {"train": _cmd_train, "evaluate": _cmd_evaluate, "encode": _cmd_encode,
                       "reproduce": _cmd_reproduce}[args.command]
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
        except KeyboardInterrupt as err:
            terminated = isinstance(err, job.Terminated)
            if _speaks():
                print(f"{PROG}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; files are written "
                      "whole or not at all, so none was left half-written", file=sys.stderr)
            return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
        except OSError as err:
            if debug:
                traceback.print_exc()
            reason = system_reason(err)
            where = f" writing '{err.filename}'" if err.filename else ""
            if _speaks():
                print(f"{PROG}: error{where}: {reason}; files are written whole or not at all, so none was left "
                      "half-written", file=sys.stderr)
            return EXIT_SYSTEM
        except Exception as err:  # noqa: BLE001 - the last resort: one line, or the traceback with --debug
            if debug:
                traceback.print_exc()
            else:
                print(f"{PROG}: internal error: {type(err).__name__}: {_one_line(err)} (rerun with --debug for "
                      "the traceback)", file=sys.stderr)
            return EXIT_ERROR


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    # tqdm.write keeps an active progress bar intact
    tqdm.write(f"{PROG}: warning: {_one_line(Exception(str(message)))}", file=sys.stderr)
