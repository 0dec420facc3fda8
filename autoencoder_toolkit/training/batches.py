"""What :func:`~autoencoder_toolkit.training.fit` reads its batches from.

``fit`` takes its data in any of the forms a PyTorch or NumPy user has at hand; each is
wrapped here into a :class:`BatchSource` that says how many samples there are and gives
the rows at given positions as a tensor on the training device:

* a :class:`~autoencoder_toolkit.data.splits.DataSplit`, a NumPy array or a memory map
  (read batch by batch, never loaded whole);
* a ``torch.Tensor`` (CPU or GPU; rows are gathered where the tensor is);
* a map-style ``torch.utils.data.Dataset`` (items gathered with ``default_collate``; an
  item that is a tuple, list or mapping contributes its first element: ``(x, label)``
  datasets work as they are);
* a ``torch.utils.data.DataLoader``: its batches are used as it yields them (its own batch
  size, order and workers), so :func:`fit` then takes neither ``batch_size`` nor its
  batch order from its own generator.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..data.splits import DataSplit

__all__ = ["BatchSource", "batch_source", "LoaderSource", "as_split"]


_NOT_FLOAT = ("{what}: expected floating-point data, got dtype {dtype}; scale integer data to floats first (for "
              "8-bit images: x / 255), or wrap the array in DataSplit(x, scaling=Scaling('8-bit', 0.0, 255.0))")


def _first(item: Any) -> Any:
    """The data of a dataset item or a loader batch: the item itself, or its first element."""
    if isinstance(item, (tuple, list)):
        return item[0]
    if isinstance(item, Mapping):
        return next(iter(item.values()))
    return item


class BatchSource:
    """Rows of a data set, read by position: ``len(source)`` samples of ``source.sample_shape``."""

    def __init__(self, n: int, sample_shape: tuple[int, ...], read: Any) -> None:
        self.n = n
        self.sample_shape = sample_shape
        self._read = read

    def __len__(self) -> int:
        return self.n

    def rows(self, positions: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The samples at ``positions`` as a ``(len(positions), *sample_shape)`` tensor."""
        t = self._read(positions)
        return t.to(device=device, dtype=dtype, non_blocking=True)


class LoaderSource:
    """A ``DataLoader``: batches as it yields them."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.n = len(loader.dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def batches(self, device: torch.device, dtype: torch.dtype) -> Iterator[torch.Tensor]:
        for batch in self.loader:
            x = _first(batch)
            if not isinstance(x, torch.Tensor):
                x = torch.as_tensor(np.asarray(x))
            yield x.to(device=device, dtype=dtype, non_blocking=True)


def _sample_shape(x: Any, what: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in x.shape)
    if len(shape) < 2:
        raise ValueError(f"{what}: expected samples in rows, an array of shape (N, D) or (N, *shape), got shape "
                         f"{shape}")
    return shape[1:]


def batch_source(data: Any, what: str = "data") -> BatchSource | LoaderSource:
    """Wrap ``data`` (see the module documentation); a clear error names ``what`` for anything else."""
    if isinstance(data, DataLoader):
        if len(data.dataset) < 1:  # type: ignore[arg-type]
            raise ValueError(f"{what}: the DataLoader's dataset is empty")
        return LoaderSource(data)
    if isinstance(data, DataSplit):
        return BatchSource(len(data), data.sample_shape, lambda pos: torch.from_numpy(data.read(pos)))
    if isinstance(data, np.ndarray):
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(_NOT_FLOAT.format(what=what, dtype=data.dtype))
        _sample_shape(data, what)
        split = DataSplit(data)
        return BatchSource(len(split), split.sample_shape, lambda pos: torch.from_numpy(split.read(pos)))
    if isinstance(data, torch.Tensor):
        t = data.detach()
        shape = _sample_shape(t, what)
        if not t.is_floating_point():
            raise TypeError(_NOT_FLOAT.format(what=what, dtype=t.dtype))
        return BatchSource(int(t.shape[0]), shape, lambda pos: t[torch.as_tensor(pos, device=t.device)])
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                     and not isinstance(data, (str, bytes, list, tuple))):
        n = len(data)  # type: ignore[arg-type]
        if n < 1:
            raise ValueError(f"{what}: the dataset is empty")
        first = torch.as_tensor(np.asarray(_first(data[0])))
        shape = tuple(int(s) for s in first.shape)
        return BatchSource(n, shape, lambda pos: torch.as_tensor(default_collate(
            [torch.as_tensor(np.asarray(_first(data[int(i)]))) for i in pos])))
    if isinstance(data, (list, tuple)):
        raise TypeError(f"{what}: expected an array, a tensor, a Dataset or a DataLoader, got a "
                        f"{type(data).__name__}; convert it with numpy.asarray first")
    raise TypeError(f"{what}: expected an array, a tensor, a Dataset or a DataLoader, got {type(data).__name__}")


def as_split(data: Any, what: str) -> DataSplit:
    """Held-out data as a :class:`DataSplit` (what the held-out evaluation reads): arrays as they are,
    tensors copied to the CPU, datasets and data loaders gathered into one array (keep them small)."""
    if isinstance(data, DataSplit):
        return data
    if isinstance(data, np.ndarray):
        return DataSplit(data)
    if isinstance(data, torch.Tensor):
        return DataSplit(data.detach().cpu().numpy())
    source = batch_source(data, what)
    if isinstance(source, LoaderSource):
        parts = [b.cpu().numpy() for b in source.batches(torch.device("cpu"), torch.float32)]
    else:
        parts = [source.rows(np.arange(len(source)), torch.device("cpu"), torch.float32).numpy()]
    return DataSplit(np.concatenate(parts))
