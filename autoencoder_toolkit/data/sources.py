"""A run's data, from a built-in data set or the user's files: the training and held-out splits.

The command line and the training job read their data here. Errors are one-line
``ValueError`` s that name the flag or argument the data came from.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .datasets import DATASETS, check_finite, load_array, load_dataset, load_labels, train_test_split
from .splits import DataSplit, Scaling

__all__ = ["DataSourceError", "RunData", "value_range", "load_user_array", "load_user_labels", "load_run_data",
           "load_other_data"]


class DataSourceError(ValueError):
    """Data that cannot be used as given; the message names where they came from."""


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def value_range(x: np.ndarray) -> tuple[float, float]:
    """Minimum and maximum of ``x``, read in chunks (memory maps stay on disk)."""
    lo, hi = math.inf, -math.inf
    row_bytes = max(1, x.itemsize * int(np.prod(x.shape[1:], dtype=np.int64)))
    rows = max(1, (32 << 20) // row_bytes)
    for start in range(0, x.shape[0], rows):
        chunk = np.asarray(x[start:start + rows])
        if chunk.size:
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return lo, hi


class RunData:
    """The training and held-out splits of a run, and what a summary says about them.

    ``raw_range`` is the data's ``(min, max)`` as stored, ``scaling`` the map applied to
    every batch, ``in_unit_interval`` whether the scaled data lie in ``[0, 1]``.
    """

    def __init__(self, train: DataSplit, test: DataSplit, label: str, class_names: Sequence[str] | None,
                 raw_range: tuple[float, float], n_total: int, builtin: bool = False) -> None:
        self.train = train
        self.test = test
        self.label = label
        self.class_names = class_names
        self.raw_range = raw_range
        self.n_total = n_total
        self.builtin = builtin

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """The ``(H, W)`` or ``(C, H, W)`` of a sample when the data are images (the built-in data
        sets, whose flat samples are square images, or samples of 2 or 3 axes); else ``None``."""
        shape = self.train.sample_shape
        if len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3)):
            return shape
        side = math.isqrt(shape[0]) if len(shape) == 1 else 0
        return (side, side) if self.builtin and side * side == shape[0] else None
    @property
    def scaling(self) -> Scaling:
        return self.train.scaling

    @property
    def scaled_range(self) -> tuple[float, float]:
        """``(min, max)`` of the data as training sees them."""
        s = self.scaling
        return (self.raw_range[0] - s.shift) / s.factor, (self.raw_range[1] - s.shift) / s.factor

    @property
    def in_unit_interval(self) -> bool:
        lo, hi = self.scaled_range
        return lo >= -1e-6 and hi <= 1.0 + 1e-6

    def with_scaling(self, scaling: Scaling) -> "RunData":
        """The same splits, read through ``scaling``."""
        return RunData(DataSplit(self.train.x, self.train.index, self.train.labels, scaling),
                       DataSplit(self.test.x, self.test.index, self.test.labels, scaling),
                       self.label, self.class_names, self.raw_range, self.n_total, self.builtin)


def load_user_array(path: str, what: str) -> np.ndarray:
    """A user's data file (``.npy`` memory-mapped, ``.npz``, ``.csv``): samples in rows, finite values."""
    try:
        x = load_array(path)
    except (FileNotFoundError, IsADirectoryError, ValueError, KeyError) as err:
        raise DataSourceError(f"{what}: {_one_line(err).removeprefix('path: ').removeprefix('key: ')}") from None
    if x.ndim < 2:
        raise DataSourceError(f"{what}: expected samples in rows, an array of shape (N, D) or (N, *shape), got "
                              f"shape {x.shape} from '{path}'")
    if x.shape[0] < 1 or int(np.prod(x.shape[1:])) < 1:
        raise DataSourceError(f"{what}: '{path}' holds no samples (shape {x.shape})")
    check_finite(x, f"{what} '{path}'")
    return x


def load_user_labels(path: str) -> np.ndarray:
    """Class labels from a user's file (``--labels``)."""
    try:
        return load_labels(path)
    except (FileNotFoundError, IsADirectoryError, ValueError, KeyError) as err:
        raise DataSourceError(f"--labels: {_one_line(err).removeprefix('path: ')}") from None


def load_run_data(settings: Mapping[str, Any], scaling: Scaling | None = None) -> RunData:
    """The splits a run trains and evaluates on: ``settings["data"]`` (split by ``test_fraction`` and
    ``seed``, stratified by the labels when given) or the built-in ``settings["dataset"]`` (its own split).

    The splits are read through ``scaling`` (a run's recorded one) or, without it, through
    the scaling ``settings["scale"]`` fitted to the training split (:meth:`Scaling.choose`).
    """
    data = _load_run_data(settings)
    if scaling is None:
        scaling = Scaling.choose(settings.get("scale", "auto"), data.train)
    return data.with_scaling(scaling)


def _load_run_data(settings: Mapping[str, Any]) -> RunData:
    if settings.get("data"):
        path = settings["data"]
        x = load_user_array(path, "--data")
        labels = None
        if settings.get("labels"):
            labels = load_user_labels(settings["labels"])
            if labels.shape[0] != x.shape[0]:
                raise DataSourceError(f"--labels: expected {x.shape[0]} labels (one per row of '{path}'), got "
                                      f"{labels.shape[0]} in '{settings['labels']}'")
        n = int(x.shape[0])
        if n < 4:
            raise DataSourceError(f"--data: expected at least 4 samples to split into training and held-out "
                                  f"parts, got {n} in '{path}'")
        frac = settings["test_fraction"]
        stratify = labels if labels is not None and np.unique(labels).size < n else None
        try:
            train_idx, test_idx = train_test_split(n, frac, settings["seed"], stratify=stratify)
        except ValueError:
            train_idx, test_idx = train_test_split(n, frac, settings["seed"])
        lo, hi = value_range(x)
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(path).split(".npz:")[0]).name.split(".")[0]) or "data"
        return RunData(
            DataSplit(x, train_idx, None if labels is None else labels[train_idx]),
            DataSplit(x, test_idx, None if labels is None else labels[test_idx]),
            label, None, (lo, hi), n)
    name = settings["dataset"]
    try:
        train = load_dataset(name, split="train")
        test = load_dataset(name, split="test")
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise DataSourceError(f"--dataset {name}: {err}") from None
    return RunData(DataSplit(train.x, None, train.labels), DataSplit(test.x, None, test.labels), name,
                   train.class_names, (0.0, 1.0), len(train) + len(test), builtin=True)


def load_other_data(spec: str, labels_path: str | None, input_shape: Sequence[int] | None,
                    what: str, scaling: Scaling | None = None) -> tuple[Any, np.ndarray | None]:
    """Data to evaluate or encode: a file, or a built-in data set name (all of it), shaped for the model
    and read through ``scaling`` (the run's), batch by batch."""
    key = spec.strip().lower().replace("_", "-")
    labels = None
    if not Path(spec.split(".npz:")[0]).exists() and key in DATASETS:
        ds = load_dataset(key, split="all")
        x: Any = ds.x
        labels = ds.labels
    else:
        x = load_user_array(spec, what)
    if labels_path:
        labels = load_user_labels(labels_path)
        if labels.shape[0] != x.shape[0]:
            raise DataSourceError(f"--labels: expected {x.shape[0]} labels (one per sample of '{spec}'), got "
                                  f"{labels.shape[0]}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        if int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
            raise DataSourceError(f"{what}: the model takes samples of shape {tuple(input_shape)}, got samples of "
                                  f"shape {tuple(x.shape[1:])} in '{spec}'")
        x = x.reshape((x.shape[0], *input_shape))
    if scaling is not None and not scaling.identity:
        x = DataSplit(x, None, None, scaling).view()
    return x, labels
