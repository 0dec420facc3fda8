"""The records of a run, ``config.json`` and a checkpoint's ``state.json``: their schemas, checked on load.

Both files are read from disk and so are hostile until checked: a value out of range
(``lr -0.01``, ``epoch -3``, ``betas [5, 5]``), an unknown model, a missing block or a
value of the wrong type is refused here, once, with a message naming the file and the
entry, before anything is built from it. The settings inside ``config.json`` go through
the same checkers as the command line's flags (:mod:`autoencoder_toolkit.training.settings`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ..data.splits import Scaling
from ..io.architecture import ArchitectureError, check_config
from ..io.files import CheckpointError
from .settings import MAX_SEED, RESUMABLE, CHECKERS, SettingsError, check_settings

__all__ = ["RUN_FORMAT", "RUN_FORMAT_VERSION", "RunDirectoryError", "check_run_config", "check_run_state"]

RUN_FORMAT = "autoencoder_toolkit.run"
RUN_FORMAT_VERSION = 1


class RunDirectoryError(ValueError):
    """A folder that is not a usable run directory, or whose records are malformed; the message says why."""


def _is_int(v: Any, lo: int = 0, hi: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shape(v: Any) -> bool:
    return isinstance(v, list) and 1 <= len(v) <= 8 and all(_is_int(s, 1) for s in v)


def check_run_config(doc: Any, path: Path) -> dict[str, Any]:
    """Check a parsed ``config.json``; return it with its settings in canonical form.

    Raises :class:`RunDirectoryError` naming ``path`` and the entry that is wrong.
    """
    where = f"RUN_DIR: '{path}'"
    if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
        raise RunDirectoryError(f"{where} is not the configuration of a run (no format {RUN_FORMAT!r})")
    if doc.get("format_version") != RUN_FORMAT_VERSION:
        raise RunDirectoryError(f"{where} has format version {doc.get('format_version')!r}; this version of the "
                                f"library reads version {RUN_FORMAT_VERSION}")
    try:
        settings = check_settings(doc.get("settings"), f"{where}: settings")
    except SettingsError as err:
        raise RunDirectoryError(str(err)) from None
    data = doc.get("data")
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{where}: the 'data' block is missing")
    if not (_is_int(data.get("n_samples"), 1) and _is_int(data.get("n_train"), 1) and _is_int(data.get("n_test"))
            and data["n_train"] + data["n_test"] <= data["n_samples"]):
        raise RunDirectoryError(f"{where}: data: expected sample counts n_samples >= n_train + n_test with "
                                f"n_train >= 1, got {({k: data.get(k) for k in ('n_samples', 'n_train', 'n_test')})}")
    if not _shape(data.get("sample_shape")):
        raise RunDirectoryError(f"{where}: data: expected sample_shape as a list of 1 to 8 positive sizes, got "
                                f"{data.get('sample_shape')!r}")
    try:
        Scaling.from_dict(data.get("scaling"), f"{where}: data: scaling")
    except ValueError as err:
        raise RunDirectoryError(str(err)) from None
    try:
        check_config(doc.get("architecture"))
    except ArchitectureError as err:
        raise RunDirectoryError(f"{where}: {err}") from None
    resumes = doc.get("resumes", [])
    if not isinstance(resumes, list):
        raise RunDirectoryError(f"{where}: resumes: expected a list, got {type(resumes).__name__}")
    for entry in resumes:
        ok = isinstance(entry, dict) and _is_int(entry.get("at_epoch")) and isinstance(entry.get("changed"), dict)
        if ok:
            try:
                ok = all(k in RESUMABLE and CHECKERS[k](v) == v for k, v in entry["changed"].items())
            except SettingsError:
                ok = False
        if not ok:
            raise RunDirectoryError(f"{where}: resumes: malformed entry {entry!r}")
    return {**doc, "settings": settings}


def _check_adam_group(group: Any, where: str) -> None:
    if not isinstance(group, dict):
        raise CheckpointError(f"{where}: expected a parameter group, got {type(group).__name__}")
    lr = group.get("lr")
    if not (_is_number(lr) and lr > 0):
        raise CheckpointError(f"{where}: lr: expected a finite number > 0, got {lr!r}")
    betas = group.get("betas", [0.9, 0.999])
    if not (isinstance(betas, list) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        raise CheckpointError(f"{where}: betas: expected two numbers in [0, 1), got {betas!r}")
    eps = group.get("eps", 1e-8)
    if not (_is_number(eps) and eps > 0):
        raise CheckpointError(f"{where}: eps: expected a finite number > 0, got {eps!r}")
    decay = group.get("weight_decay", 0.0)
    if not (_is_number(decay) and decay >= 0):
        raise CheckpointError(f"{where}: weight_decay: expected a finite number >= 0, got {decay!r}")


def check_run_state(doc: Mapping[str, Any], path: Path, optimizers: tuple[str, ...]) -> None:
    """Check a run checkpoint's ``state.json`` (as :func:`~autoencoder_toolkit.io.checkpoint.read_state`
    parsed it): the training state and the settings of the Adam optimizers ``optimizers``.

    Raises :class:`CheckpointError` naming ``path`` and the entry that is wrong.
    """
    where = f"checkpoint: '{path}'"
    state = doc.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: the training state is missing")
    if not _is_int(state.get("seed"), 0, MAX_SEED):
        raise CheckpointError(f"{where}: seed: expected an integer in [0, 2**63), got {state.get('seed')!r}")
    for key in ("epoch", "step"):
        if not _is_int(state.get(key)):
            raise CheckpointError(f"{where}: {key}: expected an integer >= 0, got {state.get(key)!r}")
    history = state.get("history")
    if not (isinstance(history, list) and len(history) == state["epoch"] and all(isinstance(h, dict) for h in history)):
        raise CheckpointError(f"{where}: history: expected one record per completed epoch ({state['epoch']}), "
                              f"got {len(history) if isinstance(history, list) else type(history).__name__}")
    rng = state.get("batch_rng")
    inner = rng.get("state") if isinstance(rng, dict) else None
    if not (isinstance(rng, dict) and rng.get("bit_generator") == "PCG64" and isinstance(inner, dict)
            and _is_int(inner.get("state")) and _is_int(inner.get("inc"))):
        raise CheckpointError(f"{where}: batch_rng: expected the state of a PCG64 generator")
    opts = doc.get("optimizers")
    if not isinstance(opts, dict) or set(opts) != set(optimizers):
        raise CheckpointError(f"{where}: optimizers: expected states of {', '.join(optimizers)}, got "
                              f"{sorted(opts) if isinstance(opts, dict) else opts!r}")
    for name in optimizers:
        info = opts[name]
        groups = info.get("param_groups") if isinstance(info, dict) else None
        if not (isinstance(info, dict) and info.get("class") == "Adam" and isinstance(groups, list) and groups):
            raise CheckpointError(f"{where}: optimizer {name!r}: expected the state of an Adam optimizer")
        for i, group in enumerate(groups):
            _check_adam_group(group, f"{where}: optimizer {name!r}, group {i}")
