r"""Checkpoint folders, and the crash-safe scheme that replaces them.

A checkpoint is a folder of three files:

``model.safetensors``
    The model, in the one model file format (:mod:`.model_file`): it loads on its own,
    with torch or with the NumPy inference models.
``optimizer.safetensors``
    Every tensor of the optimizers' states and the random generators' states.
``state.json``
    Written **last**. The SHA-256 digest and size of the two other files, and the
    training state (see :mod:`autoencoder_toolkit.training.checkpoints`); its own entry
    ``"digest"`` is the SHA-256 of the rest of the document (canonical JSON: sorted keys,
    no spaces), so that a damaged or edited state file is refused like a damaged tensor
    file. Version 1 files, written before that entry existed, are read without it.

Every file is written atomically. A run directory holds the current checkpoint in
``checkpoint/``; :func:`write_checkpoint` replaces it in five steps:

1. remove any ``checkpoint.tmp/`` (left by a save that was killed);
2. write the files into a fresh ``checkpoint.tmp/``, ``state.json`` last;
3. if ``checkpoint/`` exists, remove any old ``checkpoint.prev/`` and rename
   ``checkpoint/`` to ``checkpoint.prev/``;
4. rename ``checkpoint.tmp/`` to ``checkpoint/``;
5. remove ``checkpoint.prev/``.

After each step the run directory is ``fsync``-ed. A process killed at any point
therefore leaves a complete set in ``checkpoint/`` (before step 3 and after step 4) or
in ``checkpoint.prev/`` (between steps 3 and 4). :func:`find_checkpoint` verifies
``checkpoint/`` and then ``checkpoint.prev/`` (``state.json`` present and valid, both
digests matching) and uses the first complete one; a half-written ``checkpoint.tmp/``
is never read. A ``checkpoint`` entry that is a symbolic link is refused (it would be
written through).

Test hook: with the environment variable ``AUTOENCODER_TOOLKIT_TEST_PAUSE_SAVE`` set to
a number of seconds, :func:`write_checkpoint` prints ``checkpoint-save: <stage> <path>``
to stderr and sleeps that long after each stage (``model``, ``optimizer``, ``state``,
``rotated``, ``installed``), so that a test can kill the process mid-save.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .files import CheckpointError, atomic_write_bytes, atomic_write_text, fsync_dir, sha256_file
from .safetensors import describe_foreign

__all__ = ["MODEL_FILE", "OPTIMIZER_FILE", "STATE_FILE", "CHECKPOINT_DIR", "STATE_FORMAT", "FORMAT_VERSION",
           "PAUSE_ENV_VAR", "MAX_STATE_BYTES", "write_checkpoint", "state_digest", "read_state", "verify_checkpoint",
           "find_checkpoint", "resolve_model_path"]

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoint"
_TMP_SUFFIX = ".tmp"
_PREV_SUFFIX = ".prev"

STATE_FORMAT = "autoencoder_toolkit.checkpoint"
#: Version of the checkpoint layout written here (2: ``state.json`` carries its own digest).
FORMAT_VERSION = 2
#: Versions read.
READ_VERSIONS = (1, 2)
PAUSE_ENV_VAR = "AUTOENCODER_TOOLKIT_TEST_PAUSE_SAVE"
#: Largest ``state.json`` read (a training history of thousands of epochs is far smaller).
MAX_STATE_BYTES = 64 * 2**20


def _pause(stage: str, path: Path) -> None:
    value = os.environ.get(PAUSE_ENV_VAR, "").strip()
    if not value:
        return
    try:
        seconds = float(value)
    except ValueError:
        return
    print(f"checkpoint-save: {stage} {path}", file=sys.stderr, flush=True)
    time.sleep(seconds)


#: Called after each stage of :func:`write_checkpoint` (tests replace it to simulate crashes).
_after_stage: Callable[[str, Path], None] = _pause


def _remove(path: Path) -> None:
    """Remove a folder (or a stray file or link) that a save owns."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def write_checkpoint(run_dir: str | os.PathLike[str], files: Mapping[str, bytes], document: Mapping[str, Any],
                     name: str = CHECKPOINT_DIR) -> Path:
    """Write a checkpoint into ``run_dir/<name>/`` by the crash-safe scheme of the module docstring.

    ``files`` maps file names (``model.safetensors``, ``optimizer.safetensors``) to
    their bytes, written in that order; ``document`` is the JSON content of
    ``state.json``, to which the files' digests and sizes are added. Returns the folder.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    final, tmp, prev = run / name, run / (name + _TMP_SUFFIX), run / (name + _PREV_SUFFIX)
    if final.is_symlink():
        raise CheckpointError(f"checkpoint: '{final}' is a symbolic link; a run directory's checkpoint must be a "
                              "folder of its own (remove the link)")
    # 1. a leftover of a save that was interrupted is incomplete by construction
    _remove(tmp)
    tmp.mkdir()
    # 2. the files, state.json last
    digests = {}
    for fname, data in files.items():
        atomic_write_bytes(tmp / fname, data)
        digests[fname] = {"sha256": sha256_file(tmp / fname), "bytes": (tmp / fname).stat().st_size}
        _after_stage("model" if fname == MODEL_FILE else "optimizer", tmp)
    body = {**document, "format": STATE_FORMAT, "format_version": FORMAT_VERSION, "files": digests}
    body.pop("digest", None)
    atomic_write_text(tmp / STATE_FILE, json.dumps({**body, "digest": state_digest(body)}, indent=1, sort_keys=True))
    fsync_dir(tmp)
    _after_stage("state", tmp)
    # 3. the current set becomes the previous one
    if final.exists():
        _remove(prev)
        fsync_dir(run)
        os.rename(final, prev)
        fsync_dir(run)
    _after_stage("rotated", run)
    # 4. install the new set
    os.rename(tmp, final)
    fsync_dir(run)
    _after_stage("installed", run)
    # 5. drop the previous set
    _remove(prev)
    fsync_dir(run)
    return final


def state_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of a state document without its ``"digest"`` entry, as canonical JSON."""
    body = {k: v for k, v in document.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``state.json`` of a checkpoint folder, its format and own digest checked (not the
    digests of the tensor files: :func:`verify_checkpoint`)."""
    sp = Path(folder) / STATE_FILE
    if not sp.is_file():
        raise CheckpointError(f"checkpoint: '{folder}' has no {STATE_FILE} (an incomplete save)")
    if sp.stat().st_size > MAX_STATE_BYTES:
        raise CheckpointError(f"checkpoint: '{sp}' is larger than {MAX_STATE_BYTES} bytes; not a state file of "
                              "this library")
    try:
        doc = json.loads(sp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # ValueError: also an integer too long
        raise CheckpointError(f"checkpoint: '{sp}' is corrupt ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise CheckpointError(f"checkpoint: '{sp}' is not a checkpoint state file of this library")
    version = doc.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise CheckpointError(f"checkpoint: '{sp}' has format version {version!r}, this library reads versions "
                              f"{', '.join(map(str, READ_VERSIONS))}")
    if version >= 2 and doc.get("digest") != state_digest(doc):
        raise CheckpointError(f"checkpoint: '{sp}' is corrupt or was edited (its content differs from its "
                              "recorded SHA-256 digest)")
    return doc


def verify_checkpoint(folder: str | os.PathLike[str]) -> Path:
    """Check that ``folder`` holds a complete checkpoint (``state.json`` and both digests).

    Returns the folder; raises :class:`CheckpointError` saying what is wrong.
    """
    f = Path(folder)
    if not f.is_dir():
        raise CheckpointError(f"checkpoint: no such folder: '{f}'")
    doc = read_state(f)
    files = doc.get("files")
    if not isinstance(files, dict) or set(files) != {MODEL_FILE, OPTIMIZER_FILE}:
        raise CheckpointError(f"checkpoint: '{f / STATE_FILE}' is corrupt (no file digests)")
    for fname, info in files.items():
        fp = f / fname
        if not fp.is_file():
            raise CheckpointError(f"checkpoint: '{fp}' is missing")
        if not isinstance(info, dict):
            raise CheckpointError(f"checkpoint: '{f / STATE_FILE}' is corrupt (bad digest entry for {fname})")
        with open(fp, "rb") as fh:
            head = fh.read(9)
        foreign = None if head[8:9] == b"{" else describe_foreign(head)
        if foreign is not None:
            raise CheckpointError(f"checkpoint: '{fp}' is {foreign}, not a safetensors file; pickled files are "
                                  "never loaded (unpickling can run arbitrary code)")
        size = fp.stat().st_size
        if size != info.get("bytes"):
            raise CheckpointError(f"checkpoint: '{fp}' has {size} bytes, {info.get('bytes')} were written "
                                  "(truncated or replaced)")
        if sha256_file(fp) != info.get("sha256"):
            raise CheckpointError(f"checkpoint: '{fp}' is corrupt (its SHA-256 digest differs from the one "
                                  f"recorded in {STATE_FILE})")
    return f


def find_checkpoint(run_dir: str | os.PathLike[str], name: str = CHECKPOINT_DIR) -> Path:
    """The folder of the newest complete checkpoint of a run directory.

    ``run_dir/checkpoint/`` when it verifies, else ``run_dir/checkpoint.prev/`` (the
    previous set, present only after a crash in the middle of a save).

    Raises
    ------
    CheckpointError
        When neither verifies; the message gives the reason for each.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"checkpoint: no such run directory: '{run}'")
    reasons = []
    for folder in (run / name, run / (name + _PREV_SUFFIX)):
        if not folder.exists():
            continue
        try:
            return verify_checkpoint(folder)
        except CheckpointError as err:
            reasons.append(str(err))
    if not reasons:
        raise CheckpointError(f"checkpoint: '{run}' holds no checkpoint (no {name}/ folder)")
    raise CheckpointError("checkpoint: no complete checkpoint in " f"'{run}': " + "; ".join(reasons))


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """The model file that ``path`` names: the file itself, a checkpoint folder's, or a run directory's newest."""
    p = Path(path)
    if p.is_dir():
        if (p / MODEL_FILE).is_file() and (p / STATE_FILE).exists():
            return verify_checkpoint(p) / MODEL_FILE
        if (p / MODEL_FILE).is_file():
            return p / MODEL_FILE
        return find_checkpoint(p) / MODEL_FILE
    return p
