"""The fused CuPy kernels inside torch's autograd, for training on CUDA with ``kernels="cupy"``.

Each formula of :mod:`.cupy_kernels` is wrapped in a ``torch.autograd.Function``: the
forward pass hands the CUDA tensors to CuPy (a view of the same device memory, no copy),
runs the fused kernel on torch's current stream and hands the result back through DLPack;
the backward pass runs the formula's analytic backward kernel the same way. Both work in
float32 and float64 (the tests check the gradients with ``torch.autograd.gradcheck`` in
float64).

Importing this module registers these functions with :mod:`.dispatch` for CUDA tensors;
the formulas of :mod:`autoencoder_toolkit.densities` then use them inside
:func:`fused_kernels_for` (what a loss or ``train_`` called with ``kernels="cupy"`` opens),
whatever distribution or model calls the formula. Everywhere else, and for CPU tensors,
the generic torch code runs.
"""

from __future__ import annotations

import contextlib
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from . import cupy_kernels, dispatch
from .base import same_shape
from .cupy_backend import cuda_unavailable_reason

__all__ = [
    "KERNEL_CHOICES",
    "check_kernels",
    "fused_kernels_for",
    "supports",
    "bernoulli_loglikelihood",
    "gaussian_loglikelihood",
    "gaussian_kl",
    "reparameterize",
    "mutual_info_bound",
]

#: Accepted values of the ``kernels`` keyword of the losses and training steps.
KERNEL_CHOICES = (None, "cupy")


def supports(*tensors: Any) -> bool:
    """CUDA tensors of one float dtype (float32/float64), all on one device, non-empty."""
    first = tensors[0]
    if not isinstance(first, torch.Tensor) or not first.is_cuda or first.dtype not in (torch.float32, torch.float64):
        return False
    if first.numel() == 0:
        return False
    for t in tensors[1:]:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or t.dtype != first.dtype or t.device != first.device:
            return False
    return True


def _require(*tensors: Any) -> None:
    if not supports(*tensors):
        kinds = ", ".join(
            f"{t.dtype} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
            for t in tensors if t is not None
        )
        raise ValueError(
            "the CuPy kernels need non-empty CUDA tensors of one dtype (float32 or float64) on one "
            f"device; got {kinds}"
        )


_STREAMS: dict[tuple[int, int], Any] = {}


def _cupy_stream(device: torch.device, index: int) -> Any:
    """The CuPy view of torch's current stream on ``device`` (cached per stream)."""
    import cupy

    stream = torch.cuda.current_stream(device)
    key = (index, stream.cuda_stream)
    found = _STREAMS.get(key)
    if found is None:
        from_external = getattr(cupy.cuda.Stream, "from_external", None)
        try:  # CuPy >= 14 takes any object with __cuda_stream__ (torch's streams have it)
            found = from_external(stream) if from_external is not None else None
        except (TypeError, AttributeError, ValueError):
            found = None
        if found is None:  # older CuPy
            found = cupy.cuda.ExternalStream(stream.cuda_stream, index)
        _STREAMS[key] = found
    return found


@contextmanager
def _on_torch_stream(t: torch.Tensor) -> Iterator[None]:
    """Run CuPy on ``t``'s device and on torch's current stream there."""
    import cupy

    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index), _cupy_stream(t.device, index):
        yield


_CUPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _cp(t: torch.Tensor | None) -> Any:
    """A CuPy array over ``t``'s device memory (no copy; ``t`` is kept alive by the array).

    Built from the pointer directly: inside :func:`_on_torch_stream` both libraries use
    the same stream, so the stream hand-over that DLPack performs is not needed.
    """
    if t is None:
        return None
    import cupy

    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    mem = cupy.cuda.UnownedMemory(t.data_ptr(), t.numel() * t.element_size(), t, index)
    return cupy.ndarray(tuple(t.shape), dtype=_CUPY_DTYPES[t.dtype], memptr=cupy.cuda.MemoryPointer(mem, 0))


def _th(a: Any) -> torch.Tensor | None:
    return None if a is None else torch.from_dlpack(a)


# ----------------------------------------------------------------------------------
# autograd Functions
# ----------------------------------------------------------------------------------

class _BernoulliLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: torch.Tensor, batched: bool) -> torch.Tensor:  # noqa: D102
        with _on_torch_stream(p):
            out = _th(cupy_kernels.bernoulli_loglikelihood(_cp(x), _cp(p), batched))
        ctx.save_for_backward(x, p)
        ctx.batched = batched
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # noqa: D102
        x, p = ctx.saved_tensors
        want_x, want_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with _on_torch_stream(p):
            gx, gp = cupy_kernels.bernoulli_backward(_cp(x), _cp(p), _cp(g), ctx.batched, want_x=want_x, want_p=want_p)
            return _th(gx), _th(gp), None


class _GaussianLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mu: torch.Tensor, scale: torch.Tensor | None, kind: str,
                sigma: float, batched: bool) -> torch.Tensor:  # noqa: D102
        with _on_torch_stream(mu):
            out = _th(cupy_kernels.gaussian_loglikelihood(_cp(x), _cp(mu), _cp(scale), kind=kind, σ=sigma,
                                                        batched=batched))
        ctx.save_for_backward(x, mu, scale)
        ctx.kind, ctx.sigma, ctx.batched = kind, sigma, batched
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # noqa: D102
        x, mu, scale = ctx.saved_tensors
        need = ctx.needs_input_grad
        with _on_torch_stream(mu):
            gx, gm, gs = cupy_kernels.gaussian_backward(
                _cp(x), _cp(mu), _cp(scale), _cp(g), kind=ctx.kind, σ=ctx.sigma, batched=ctx.batched,
                want_x=need[0], want_mu=need[1], want_scale=need[2] and scale is not None)
            return _th(gx), _th(gm), _th(gs), None, None, None


class _GaussianKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, mu: torch.Tensor, scale: torch.Tensor, log: bool, batched: bool) -> torch.Tensor:  # noqa: D102
        with _on_torch_stream(mu):
            out = _th(cupy_kernels.gaussian_kl(_cp(mu), _cp(scale), log=log, batched=batched))
        ctx.save_for_backward(mu, scale)
        ctx.log, ctx.batched = log, batched
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # noqa: D102
        mu, scale = ctx.saved_tensors
        need = ctx.needs_input_grad
        with _on_torch_stream(mu):
            gm, gs = cupy_kernels.gaussian_kl_backward(_cp(mu), _cp(scale), _cp(g), log=ctx.log, batched=ctx.batched,
                                                     want_mu=need[0], want_scale=need[1])
            return _th(gm), _th(gs), None, None


class _Reparameterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, mu: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor, log: bool) -> torch.Tensor:  # noqa: D102
        with _on_torch_stream(mu):
            out = _th(cupy_kernels.reparameterize(_cp(mu), _cp(scale), _cp(noise), log=log))
        ctx.save_for_backward(scale, noise)
        ctx.log = log
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # noqa: D102
        scale, noise = ctx.saved_tensors
        g_scale = None
        if ctx.needs_input_grad[1]:
            with _on_torch_stream(scale):
                _, gs = cupy_kernels.reparameterize_backward(_cp(scale), _cp(noise), _cp(g), log=ctx.log)
                g_scale = _th(gs)
        return (g if ctx.needs_input_grad[0] else None), g_scale, None, None


class _MutualInfoBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, g_joint: torch.Tensor, g_shuffled: torch.Tensor) -> torch.Tensor:  # noqa: D102
        with _on_torch_stream(g_joint):
            out = _th(cupy_kernels.mutual_info_bound(_cp(g_joint), _cp(g_shuffled)))
        ctx.save_for_backward(g_joint, g_shuffled)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:  # noqa: D102
        g_joint, g_shuffled = ctx.saved_tensors
        need = ctx.needs_input_grad
        with _on_torch_stream(g_joint):
            da, db = cupy_kernels.mutual_info_bound_backward(_cp(g_joint), _cp(g_shuffled), _cp(g),
                                                           want_joint=need[0], want_shuffled=need[1])
            return _th(da), _th(db)


# ----------------------------------------------------------------------------------
# Tensor-level functions
# ----------------------------------------------------------------------------------

def bernoulli_loglikelihood(x: torch.Tensor, p: torch.Tensor, batched: bool = True) -> torch.Tensor:
    """Fused ``Σ x log(p+ε) + (1−x) log(1−p+ε)`` per sample, differentiable in ``x`` and ``p``."""
    _require(x, p)
    same_shape(("p", p), ("x", x))
    return _BernoulliLL.apply(x, p, batched)


def gaussian_loglikelihood(x: torch.Tensor, μ: torch.Tensor, scale: torch.Tensor | None = None, *,
                           kind: str = "log", σ: float = 1.0, batched: bool = True) -> torch.Tensor:
    """Fused Gaussian log-likelihood per sample (``kind`` as :func:`autoencoder_toolkit.densities.gaussian_loglikelihood`)."""
    if kind not in ("log", "linear", "fixed"):
        raise ValueError(f"kind: expected 'log', 'linear' or 'fixed', got {kind!r}")
    scale = None if kind == "fixed" else scale
    _require(x, μ, scale)
    same_shape(("μ", μ), ("x", x), ("scale", scale))
    return _GaussianLL.apply(x, μ, scale, kind, float(σ), batched)


def gaussian_kl(μ: torch.Tensor, scale: torch.Tensor, *, log: bool = True, batched: bool | None = None) -> torch.Tensor:
    """Fused KL of ``N(μ, σ²)`` to ``N(0, I)`` per sample (``scale`` is ``logσ`` when ``log``)."""
    _require(μ, scale)
    same_shape(("μ", μ), ("scale", scale))
    return _GaussianKL.apply(μ, scale, bool(log), μ.ndim >= 2 if batched is None else bool(batched))


def reparameterize(μ: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor, *, log: bool = True) -> torch.Tensor:
    """Fused ``μ + noise·exp(scale)`` (or ``μ + noise·scale``); ``noise`` is a constant."""
    _require(μ, scale, noise)
    same_shape(("μ", μ), ("scale", scale), ("noise", noise))
    return _Reparameterize.apply(μ, scale, noise.detach(), bool(log))


def mutual_info_bound(g_joint: torch.Tensor, g_shuffled: torch.Tensor) -> torch.Tensor:
    """Fused ``mean(g_joint) − mean(exp(g_shuffled − 1))`` (a 0-d tensor)."""
    _require(g_joint, g_shuffled)
    same_shape(("g_joint", g_joint), ("g_shuffled", g_shuffled))
    return _MutualInfoBound.apply(g_joint, g_shuffled)


# ----------------------------------------------------------------------------------
# The choice made by the losses and training steps
# ----------------------------------------------------------------------------------

def check_kernels(kernels: Any, *tensors: torch.Tensor) -> None:
    """Validate ``kernels`` (``None`` or ``"cupy"``) against the tensors a loss will see.

    Raises
    ------
    ValueError
        For another value, or for ``"cupy"`` with tensors that are not on a CUDA device.
    ImportError
        For ``"cupy"`` when CuPy is missing or sees no CUDA device.
    """
    if kernels is None:
        return
    if kernels != "cupy":
        raise ValueError(f"kernels: expected None or 'cupy', got {kernels!r}")
    for t in tensors:
        if isinstance(t, torch.Tensor) and not t.is_cuda:
            raise ValueError(
                f"kernels='cupy' runs CUDA kernels, but the data are on {t.device}; move the model and the "
                "data to a CUDA device (model.to('cuda')) or leave kernels=None"
            )
    why = cuda_unavailable_reason()
    if why is not None:
        raise ImportError(f"kernels='cupy' needs CuPy and a CUDA device: {why}. "
                          "Install it with: pip install cupy-cuda12x (or pip install -e '.[cuda]' in the package's folder)")


def fused_kernels_for(kernels: Any, *tensors: torch.Tensor) -> contextlib.AbstractContextManager:
    """The context in which a loss or step runs for ``kernels``, after :func:`check_kernels`.

    ``None``: a null context (torch's own operations). ``"cupy"``: inside it, the formulas
    take CUDA tensors to the fused kernels through autograd.
    """
    check_kernels(kernels, *tensors)
    if kernels is None:
        return contextlib.nullcontext()
    return dispatch.use_fused_kernels("torch", True)


dispatch.register_kernels("torch", sys.modules[__name__])
