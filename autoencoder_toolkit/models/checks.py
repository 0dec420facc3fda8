"""Checks made once at the public boundary; the inner functions trust their inputs.

The public functions (the losses, ``train_``, the model methods that take user data,
``fit``) convert and check their arguments with these helpers, with errors of the form
``"arg: expected X, got Y"``. The models' ``forward`` methods and everything the public
functions call do not check again.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import warnings
from typing import Any, Callable, Iterable, Mapping, TypeVar

import numpy as np
import torch
from torch import nn

from ..distributions import julia_field_name

__all__ = [
    "check_device",
    "as_model_input",
    "check_keywords",
    "keywords_checked",
    "same_kind",
    "model_input",
    "target_input",
    "split_train_args",
    "merge_alias",
    "resolve_weight",
    "check_flag",
    "check_shuffled_gradient",
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


def check_device(device: Any, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists here: the CPU or a present CUDA device."""
    text = str(device) if isinstance(device, (str, torch.device)) else None
    if text is None or not re.fullmatch(r"cpu|cuda(:\d+)?", text.strip().lower()):
        raise ValueError(f"{name}: expected 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    dev = torch.device(text.strip().lower())
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: CUDA is not available here (torch.cuda.is_available() is False); use cpu")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{name}: there are {torch.cuda.device_count()} CUDA device(s), no {dev}")
    return dev


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


def model_input(model: nn.Module, x: Any, name: str, *, finite: bool = True) -> torch.Tensor:
    """``x`` converted to ``model``'s device and dtype and checked against its input shape."""
    device, dtype = module_device_dtype(model)
    t = as_model_input(x, name, device, dtype)
    check_sample_shape(t, name, getattr(model, "input_shape", None))
    if finite:
        check_finite(t, name)
    return t


def target_input(vae: nn.Module, x_out: Any, x_in: torch.Tensor, name: str = "x_out", *,
                 finite: bool = True) -> torch.Tensor:
    """A reconstruction target ``x_out`` for the batch ``x_in``: the decoder's sample shape, the same batch."""
    device, dtype = module_device_dtype(vae)
    t = as_model_input(x_out, name, device, dtype)
    out_shape = getattr(vae.decoder, "output_shape", None)
    input_shape = getattr(vae, "input_shape", None)
    batched_in = x_in.ndim >= 2 if input_shape is None else x_in.ndim == len(input_shape) + 1
    if out_shape is not None:
        check_sample_shape(t, name, out_shape)
    if batched_in and (t.ndim == 0 or t.shape[0] != x_in.shape[0]):
        raise ValueError(f"{name}: expected {x_in.shape[0]} samples like x_in, got shape {tuple(t.shape)}")
    if finite:
        check_finite(t, name)
    return t


def split_train_args(args: tuple, fname: str) -> tuple[Any, Any]:
    """``(x_out, opt)`` from the positional arguments after ``(model, x)`` of a ``train_`` call."""
    if len(args) == 1:
        return None, args[0]
    if len(args) == 2:
        return args[0], args[1]
    raise TypeError(f"{fname}: expected (model, x, opt) or (model, x_in, x_out, opt), got {len(args) + 1} "
                    "positional arguments")


def merge_alias(primary: Any, alias: Any, primary_name: str, alias_name: str) -> tuple[Any, str]:
    """Merge a Unicode keyword (``β``) with its ASCII alias (``beta``): ``(value, the name given)``.

    Giving both is refused, even with equal values: one of them would be ignored.
    """
    if alias is not None:
        if primary is not None:
            raise TypeError(f"{primary_name} and {alias_name} are the same keyword; pass only one of them")
        return alias, alias_name
    return primary, primary_name


def resolve_weight(primary: Any, alias: Any, primary_name: str, alias_name: str, default: float) -> float:
    """Merge a Unicode keyword (``β``) with its ASCII alias (``beta``) and validate it as a weight."""
    value, name = merge_alias(primary, alias, primary_name, alias_name)
    return check_weight(default if value is None else value, name)


def check_keywords(function: str, given: Mapping[str, Any], accepted: Iterable[str],
                   argument: str | None = None) -> None:
    """Raise ``TypeError`` naming ``function`` and its accepted keywords if ``given`` has another one.

    ``argument`` names the mapping the keywords came in (``"loss_kwargs"``), if any.
    """
    accepted = tuple(accepted)
    unknown = [k for k in given if k not in accepted]
    if unknown:
        where = f"{argument}: " if argument else ""
        raise TypeError(f"{where}{function}() has no keyword {unknown[0]!r}; accepted: {', '.join(accepted)}")


F = TypeVar("F", bound=Callable[..., Any])


def keywords_checked(fn: F) -> F:
    """Make a public function refuse an unknown keyword with the list of those it accepts (a decorator).

    Python's own error names the function but not its keywords. A keyword spelled with
    the micro sign ``µ`` is read as the Greek ``μ``. The signature is unchanged
    (``inspect.signature`` sees the wrapped function).
    """
    params = inspect.signature(fn).parameters
    known = {name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    # the message lists the keyword-only parameters (the positional ones are the data and the model)
    listed = tuple(name for name, p in params.items() if p.kind == p.KEYWORD_ONLY) or tuple(sorted(known))

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not known.issuperset(kwargs):
            kwargs = {julia_field_name(k): v for k, v in kwargs.items()}
            unknown = [k for k in kwargs if k not in known]
            if unknown:
                raise TypeError(f"{fn.__name__}() has no keyword {unknown[0]!r}; accepted: {', '.join(listed)}")
        return fn(*args, **kwargs)

    return checked  # type: ignore[return-value]


def same_kind(result: torch.Tensor, like: Any) -> Any:
    """``result`` (a tensor computed from ``like``) as an array of ``like``'s kind: NumPy, CuPy or a tensor."""
    if isinstance(like, torch.Tensor):
        return result
    if type(like).__module__.startswith("cupy"):
        import cupy

        return cupy.from_dlpack(result.contiguous())
    return result.cpu().numpy()


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


def check_flag(value: Any, name: str) -> bool:
    """``True`` or ``False`` (a Python or NumPy bool); anything else is refused, naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_shuffled_gradient(value: Any, rng: Any = None, seed: Any = None) -> bool:
    """The ``shuffled_gradient`` option of the InfoMax-VAE losses, checked against the stream that shuffles.

    A stream that gathers the codes of every process before permuting them (one whose
    ``detaches_shuffled_codes`` is true) hands back codes without their gradient, so it
    cannot serve ``shuffled_gradient=True`` (unless ``seed`` takes the permutation).
    """
    flag = check_flag(value, "shuffled_gradient")
    if flag and seed is None and getattr(rng, "detaches_shuffled_codes", False):
        raise ValueError("shuffled_gradient: the rng shuffles the codes across processes (global_shuffle=True), "
                         "which gathers them without their gradient; use global_shuffle=False for "
                         "shuffled_gradient=True")
    return flag


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
            stacklevel=4,  # the user's call: check_mi_batch <- the public function <- keywords_checked
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
