"""Checks made once at the public boundary; the inner functions trust their inputs."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

__all__ = [
    "as_model_input",
    "check_finite",
    "check_sample_shape",
    "check_weight",
    "check_mi_batch",
    "n_samples_of",
    "module_device_dtype",
    "first_linear",
    "last_linear",
    "MI_MIN_BATCH",
    "MI_RECOMMENDED_BATCH",
]

#: The MI bound needs at least two samples to form a shuffled pair.
MI_MIN_BATCH = 2
#: Below this batch size the MI estimate is poor; a warning is issued once per process.
MI_RECOMMENDED_BATCH = 64
_warned_small_batch = False


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the first parameter (CPU float32 if none)."""
    for p in module.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def as_model_input(x: Any, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Convert ``x`` to a floating tensor on ``device`` with ``dtype``.

    NumPy arrays (including memory maps) and tensors are accepted. Integer and boolean
    data are refused with a hint, since pixel counts fed as-is train a different model.
    """
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy"):
        arr = x
        if isinstance(arr, np.ndarray) and arr.dtype == object:
            raise TypeError(f"{name}: expected a numeric array, got an array of Python objects")
        if isinstance(arr, np.ndarray) and not arr.flags.writeable:
            arr = np.array(arr)  # memory maps and read-only views: copy the batch
        t = torch.as_tensor(arr)
    elif isinstance(x, (list, tuple)):
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected a numeric array or tensor, got a {type(x).__name__} "
                            f"that does not convert ({err})") from None
    else:
        raise TypeError(f"{name}: expected a torch.Tensor or a NumPy array, got {type(x).__name__}")
    if not t.is_floating_point():
        hint = ""
        if t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
            hint = "; scale integer data to floats first (for 8-bit images: x / 255)"
        raise TypeError(f"{name}: expected floating-point data, got dtype {str(t.dtype).replace('torch.', '')}{hint}")
    if t.ndim == 0:
        raise ValueError(f"{name}: expected an array with a feature axis, got a 0-d scalar")
    if t.device != device or t.dtype != dtype:
        t = t.to(device=device, dtype=dtype)
    return t


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        n_bad = int(bad.shape[0])
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name}: expected finite values, got {n_bad} NaN/Inf value(s), the first at index {first}"
        )


def check_sample_shape(x: torch.Tensor, name: str, sample_shape: tuple[int, ...] | None,
                       *, allow_single: bool = True) -> bool:
    """Check ``x`` against the per-sample shape a module expects; return whether batched.

    ``x`` is a batch ``(B, *sample_shape)`` or, if ``allow_single``, one sample
    ``sample_shape``. With ``sample_shape`` unknown (``None``) any shape passes and a
    tensor with two or more axes counts as a batch.
    """
    if sample_shape is None:
        return x.ndim >= 2
    k = len(sample_shape)
    shape = tuple(x.shape)
    if x.ndim == k + 1 and shape[1:] == tuple(sample_shape):
        if shape[0] == 0:
            raise ValueError(f"{name}: expected at least one sample, got an empty batch {shape}")
        return True
    if allow_single and shape == tuple(sample_shape):
        return False
    expected = f"(B, {', '.join(str(s) for s in sample_shape)})"
    if allow_single:
        expected += f" or one sample {tuple(sample_shape)}"
    raise ValueError(f"{name}: expected shape {expected}, got {shape}")


def check_weight(value: Any, name: str) -> float:
    """A finite, non-negative real number (a loss weight such as ``β`` or ``α``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        elif isinstance(value, np.ndarray) and value.size == 1:
            value = float(value)
        else:
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return v


def n_samples_of(x: torch.Tensor, sample_shape: tuple[int, ...] | None) -> int:
    """Number of samples in ``x`` (1 for a single unbatched sample)."""
    if sample_shape is None:
        return int(x.shape[0]) if x.ndim >= 2 else 1
    return int(x.shape[0]) if x.ndim == len(sample_shape) + 1 else 1


def check_mi_batch(batch_size: int, name: str = "x") -> None:
    """The MI bound shuffles codes across the batch: refuse < 2 samples, warn below 64."""
    global _warned_small_batch
    if batch_size < MI_MIN_BATCH:
        raise ValueError(
            f"{name}: the mutual-information bound needs a batch of at least {MI_MIN_BATCH} samples "
            f"(it pairs each input with another sample's code), got {batch_size}"
        )
    if batch_size < MI_RECOMMENDED_BATCH and not _warned_small_batch:
        _warned_small_batch = True
        warnings.warn(
            f"{name}: batch of {batch_size} samples; the mutual-information estimate is poor below "
            f"{MI_RECOMMENDED_BATCH} samples per batch (this warning is shown once)",
            UserWarning,
            stacklevel=3,
        )


def _linears(module: nn.Module) -> Iterable[nn.Linear]:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            yield m


def first_linear(module: nn.Module) -> nn.Linear | None:
    """The first ``nn.Linear`` met in ``module``'s registration order, if any."""
    return next(iter(_linears(module)), None)


def last_linear(module: nn.Module) -> nn.Linear | None:
    """The last ``nn.Linear`` in ``module``'s registration order, if any."""
    last = None
    for m in _linears(module):
        last = m
    return last
