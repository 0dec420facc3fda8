"""Splits of a data set: the rows of an array (possibly a memory map) that form a training or held-out part,
and the scaling applied to every batch read from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .datasets import read_batch

__all__ = ["SCALINGS", "Scaling", "DataSplit", "split_statistics"]

#: The ways a run may scale its data: ``auto`` (8-bit integers divided by 255, anything
#: else unchanged), ``none``, ``minmax`` (to ``[0, 1]``) and ``standard`` (mean 0, spread 1).
SCALINGS = ("auto", "none", "minmax", "standard")


@dataclass(frozen=True)
class Scaling:
    r"""One affine map for a whole data set: :math:`x \mapsto (x - \text{shift}) / \text{factor}`.

    The same two numbers apply to every feature (images keep their contrast; data with
    per-feature units are best standardised per feature before training). ``kind``
    records how they were chosen: ``"none"`` (shift 0, factor 1), ``"8-bit"`` (factor
    255), ``"minmax"`` (the training split's minimum and range) or ``"standard"`` (its
    mean and standard deviation).
    """

    kind: str = "none"
    shift: float = 0.0
    factor: float = 1.0

    @property
    def identity(self) -> bool:
        return self.shift == 0.0 and self.factor == 1.0

    def apply(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` scaled, as ``float32`` (in place when it is already a writable ``float32`` array)."""
        out = np.asarray(batch, dtype=np.float32)
        if self.identity:
            return out
        if not out.flags.writeable:
            out = out.copy()
        out -= np.float32(self.shift)
        out /= np.float32(self.factor)
        return out

    def describe(self) -> str:
        """How the data are scaled, in words (for notes and summaries)."""
        if self.kind == "none":
            return "unscaled"
        if self.kind == "8-bit":
            return "8-bit integers divided by 255"
        return f"{self.kind} scaling (x - {self.shift:.6g}) / {self.factor:.6g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shift": self.shift, "factor": self.factor}

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> "Scaling":
        """The scaling a run recorded; ``ValueError`` naming ``where`` when the record is malformed."""
        if doc is None:
            return cls()
        ok = (isinstance(doc, Mapping) and set(doc) == {"kind", "shift", "factor"}
              and doc["kind"] in ("none", "8-bit", "minmax", "standard")
              and all(isinstance(doc[k], (int, float)) and not isinstance(doc[k], bool) and math.isfinite(doc[k])
                      for k in ("shift", "factor")) and doc["factor"] > 0)
        if not ok:
            raise ValueError(f"{where}: expected a scaling record {{kind, shift, factor > 0}}, got {doc!r}")
        return cls(doc["kind"], float(doc["shift"]), float(doc["factor"]))

    @classmethod
    def choose(cls, kind: str, split: "DataSplit") -> "Scaling":
        """The scaling ``kind`` (one of :data:`SCALINGS`) fitted to ``split`` (a training split)."""
        if kind == "auto":
            return cls("8-bit", 0.0, 255.0) if split.x.dtype == np.uint8 else cls()
        if kind == "none":
            return cls()
        lo, hi, mean, std = split_statistics(split)
        if kind == "minmax":
            return cls("minmax", lo, hi - lo) if hi > lo else cls("minmax", lo, 1.0)
        if kind == "standard":
            return cls("standard", mean, std) if std > 0 else cls("standard", mean, 1.0)
        raise ValueError(f"scale: expected one of {', '.join(SCALINGS)}, got {kind!r}")


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
    scaling:
        Applied to every batch read (:class:`Scaling`; none by default).
    """

    x: np.ndarray
    index: np.ndarray | None = None
    labels: np.ndarray | None = None
    scaling: Scaling = Scaling()

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
        """The samples at ``positions`` of the split as a writable ``float32`` array, scaled."""
        rows = positions if self.index is None else self.index[positions]
        arr = read_batch(self.x, rows, dtype=np.float32)
        arr = arr if arr.flags.writeable else arr.copy()
        return self.scaling.apply(arr)

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




def split_statistics(split: DataSplit, rows_per_chunk: int | None = None) -> tuple[float, float, float, float]:
    """Minimum, maximum, mean and standard deviation of a split's raw values, read in chunks.

    Accumulated in ``float64`` (a memory map stays on disk; about 32 MiB are read at a time).
    """
    row_values = max(1, int(np.prod(split.sample_shape, dtype=np.int64)))
    rows = rows_per_chunk or max(1, (4 << 20) // row_values)
    raw = DataSplit(split.x, split.index)
    lo, hi, total, count = math.inf, -math.inf, 0.0, 0
    for start in range(0, len(raw), rows):
        chunk = raw.read(slice(start, start + rows)).astype(np.float64)
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
        total += float(chunk.sum())
        count += chunk.size
    mean = total / count
    sq = 0.0
    for start in range(0, len(raw), rows):
        chunk = raw.read(slice(start, start + rows)).astype(np.float64)
        sq += float(np.square(chunk - mean).sum())
    return lo, hi, mean, math.sqrt(sq / count)
