"""Splits of a data set: the rows of an array (possibly a memory map) that form a training or held-out part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .datasets import read_batch

__all__ = ["DataSplit"]


@dataclass(frozen=True, eq=False)
class DataSplit:
    """Rows of an array that form a training or held-out split.

    Attributes
    ----------
    x:
        ``(N, *sample_shape)`` array; a memory map stays on disk.
    index:
        Sorted ``int64`` rows of ``x`` in the split, or ``None`` for every row.
    labels:
        ``(n,)`` labels of the split's rows (in split order), or ``None``.
    """

    x: np.ndarray
    index: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if getattr(self.x, "ndim", 0) < 2:
            raise ValueError(f"x: expected an array of shape (N, *sample_shape), got "
                             f"{getattr(self.x, 'shape', type(self.x).__name__)}")
        if self.labels is not None and len(self.labels) != len(self):
            raise ValueError(f"labels: expected {len(self)} labels (one per row of the split), got {len(self.labels)}")

    def __len__(self) -> int:
        return int(self.x.shape[0]) if self.index is None else int(self.index.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(int(s) for s in self.x.shape[1:])

    def read(self, positions: slice | np.ndarray) -> np.ndarray:
        """The samples at ``positions`` of the split as a writable ``float32`` array."""
        rows = positions if self.index is None else self.index[positions]
        arr = read_batch(self.x, rows, dtype=np.float32)
        return arr if arr.flags.writeable else arr.copy()

    def materialize(self) -> np.ndarray:
        """The whole split in memory (for small data only)."""
        return self.read(slice(0, len(self)))

    def view(self) -> "_SplitView":
        """An array-like over the split that reads batches on demand (for the metrics)."""
        return _SplitView(self)


class _SplitView:
    """``shape`` and slicing over a :class:`DataSplit`, so that batch readers see one array."""

    def __init__(self, split: DataSplit) -> None:
        self._split = split
        self.shape = (len(split), *split.sample_shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item: Any) -> np.ndarray:
        if isinstance(item, slice):
            return self._split.read(slice(*item.indices(self.shape[0])))
        idx = np.asarray(item)
        return self._split.read(idx)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self._split.materialize()
        return arr if dtype is None else arr.astype(dtype)


