r"""Data-parallel training on ``torch.distributed`` with ``DistributedDataParallel``.

Launch one process per device with ``torchrun`` (or ``autoencoder-toolkit train --nproc
N``); each process then calls::

    ctx = distributed.init_process_group()            # gloo on CPU, NCCL on CUDA
    model = distributed.wrap(model, ctx)              # DDP wrappers for both updates
    opt = setup(torch.optim.Adam, model, lr=1e-3)
    rng = distributed.DistributedRNG(seed, ctx)       # rank-aware noise and shuffles
    for epoch in ...:
        for idx in distributed.shard_batches(n, batch_size, ctx, epoch=epoch, seed=seed):
            infomaxvaes.train_(model, x[idx], opt, rng=rng)

How the step is distributed. Each process computes its losses on its own shard of the
batch; the losses pass through ``DistributedDataParallel`` modules, so their gradients
are averaged across processes during the backward pass, and every process's optimizers
take the same step. For the faithful step two DDP modules are used (the VAE update on
``infomaxloss`` manages the VAE's parameters, the critic update on ``miloss`` the
critic's), for the fused step one (the whole model). With equal shard sizes, the average
of the per-process means is the mean over the global batch, so the update equals that of
one process on the concatenated batch with the same draws. Non-finite losses are
detected on every process together, so all of them raise ``FloatingPointError`` at the
same step instead of leaving the others waiting.

Shuffled codes. The MI bound pairs each input with another sample's code.

* ``global_shuffle=False`` (default): each process permutes the codes of its own shard.
  No communication; each process's bound sees ``B/N`` negatives per step. Right when the
  per-process batch is already large (64 or more samples), and always cheaper.
* ``global_shuffle=True``: the codes of all processes are gathered and permuted across
  the global batch, and each process keeps the rows for its own inputs, so the bound sees
  as many negatives as one process with the global batch (one ``all_gather`` of the
  ``(B, L)`` codes per shuffle). Right when the per-process batch is small, or to match a
  single-process run exactly.

Random draws. :class:`DistributedRNG` gives every process the same seeded generator;
each draws the noise of the *global* batch and keeps its own rows, and draws the
permutations of every process (or one global permutation) and keeps its own. A run on N
processes therefore draws exactly what one process would draw for the concatenated batch
(with ``global_shuffle=True``; with per-process shuffles the single-process equivalent
is the block-diagonal permutation of the N local ones).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..models.infomaxvaes import InfoMaxVAE
from ..models.step import ParallelModel
from ..models.vaes import VAE

__all__ = [
    "DistributedContext",
    "init_process_group",
    "destroy_process_group",
    "current_context",
    "DistributedRNG",
    "DistributedInfoMaxVAE",
    "wrap",
    "shard_positions",
    "shard_batches",
    "all_reduce_sum",
    "any_process",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group with more than one process is active."""
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


_CONTEXT: DistributedContext | None = None


def current_context() -> DistributedContext:
    """The context set by :func:`init_process_group`, or a single-process one."""
    return _CONTEXT or DistributedContext()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {value!r}") from None


def init_process_group(backend: str | None = None, *, device: str | torch.device | None = None,
                       timeout_s: float = 600.0) -> DistributedContext:
    """Join the process group described by ``torchrun``'s environment.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``,
    which ``torchrun`` sets). Without them (a plain ``python`` run) it returns a
    single-process context and starts nothing.

    Parameters
    ----------
    backend:
        ``"gloo"`` or ``"nccl"``; default NCCL for CUDA devices, gloo otherwise.
    device:
        ``"cpu"``, ``"cuda"`` (this process uses ``cuda:LOCAL_RANK``) or a device.
    timeout_s:
        How long a collective waits for the other processes before failing, so that a
        process that died does not leave the others hanging forever.
    """
    global _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' requested but no CUDA device is available")
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world <= 1:
        _CONTEXT = DistributedContext(0, 1, 0, dev, None)
        return _CONTEXT
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend: expected 'gloo' or 'nccl', got {backend!r}")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=_dt.timedelta(seconds=float(timeout_s)))
    _CONTEXT = DistributedContext(rank, world, local_rank, dev, backend)
    return _CONTEXT


def destroy_process_group() -> None:
    """Leave the process group (if any) and forget the context.

    Release the DDP modules first (:meth:`DistributedInfoMaxVAE.close`); every process
    waits at a barrier so that none tears its connections down while another still
    communicates.
    """
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    _CONTEXT = None


# ----------------------------------------------------------------------------------
# Random draws
# ----------------------------------------------------------------------------------

class DistributedRNG:
    """Rank-aware draws from one seeded generator shared (by seed) by every process.

    ``noise(shape)`` draws the noise of the global batch ``(N·B, ...)`` and returns this
    process's rows; ``permutation(n)`` draws one permutation per process and returns this
    process's; ``shuffle_rows(z)`` permutes codes within the process, or, with
    ``global_shuffle``, across all processes' codes (one ``all_gather``).
    """

    def __init__(self, seed: int, context: DistributedContext | None = None, *, global_shuffle: bool = False) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
        self.context = context or current_context()
        self.global_shuffle = bool(global_shuffle)
        self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def from_generator(cls, generator: torch.Generator, context: DistributedContext | None = None, *,
                       global_shuffle: bool = False) -> "DistributedRNG":
        """A rank-aware stream drawing from an existing (identically seeded) generator."""
        rng = cls(0, context, global_shuffle=global_shuffle)
        rng.generator = generator
        return rng

    def get_state(self) -> torch.Tensor:
        """The generator state (restore with :meth:`set_state`)."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore a state from :meth:`get_state`."""
        self.generator.set_state(state)

    def noise(self, shape: tuple[int, ...]) -> torch.Tensor:  # noqa: D102
        ctx = self.context
        b = shape[0] if shape else 1
        full = torch.randn((b * ctx.world_size, *shape[1:]) if shape else (ctx.world_size,), generator=self.generator)
        return full[ctx.rank * b:(ctx.rank + 1) * b].reshape(shape)

    def permutation(self, n: int) -> torch.Tensor:  # noqa: D102
        perms = [torch.randperm(n, generator=self.generator) for _ in range(self.context.world_size)]
        return perms[self.context.rank]

    @property
    def detaches_shuffled_codes(self) -> bool:
        """Whether :meth:`shuffle_rows` returns codes gathered from every process (they carry no gradient)."""
        return self.global_shuffle and self.context.world_size > 1

    def shuffle_rows(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx = self.context
        if not self.global_shuffle or ctx.world_size == 1:
            return z[self.permutation(z.shape[0]).to(z.device)]
        b = z.shape[0]
        gathered = torch.empty((ctx.world_size * b, *z.shape[1:]), dtype=z.dtype, device=z.device)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # newer name first
        gather(gathered, z.detach().contiguous())
        perm = torch.randperm(ctx.world_size * b, generator=self.generator).to(z.device)
        return gathered[perm[ctx.rank * b:(ctx.rank + 1) * b]]


# ----------------------------------------------------------------------------------
# Model wrappers
# ----------------------------------------------------------------------------------

class _LossModule(nn.Module):
    """Registers ``trainable`` (so DDP manages its parameters) and computes a loss."""

    def __init__(self, trainable: nn.Module) -> None:
        super().__init__()
        self.trainable = trainable

    def forward(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:  # noqa: D102
        return fn(*args, **kwargs)


class DistributedInfoMaxVAE(ParallelModel):
    """A model prepared for data-parallel training (see :func:`wrap`).

    ``module`` is the wrapped :class:`~autoencoder_toolkit.infomaxvaes.InfoMaxVAE` or
    :class:`~autoencoder_toolkit.vaes.VAE` (identical on every process); pass this object
    to ``train_`` (:func:`autoencoder_toolkit.infomaxvaes.train_` or
    :func:`autoencoder_toolkit.vaes.train_`) and to :func:`autoencoder_toolkit.setup`.
    Use ``module`` for everything else (evaluation, saving).
    """

    def __init__(self, module: nn.Module, context: DistributedContext, **ddp_kwargs: Any) -> None:
        self.module = module
        self.context = context
        self._ddp_kwargs = ddp_kwargs
        self._wrappers: dict[str, DistributedDataParallel] = {}

    def _wrapper(self, name: str) -> DistributedDataParallel:
        if name not in self._wrappers:
            if isinstance(self.module, VAE):
                target = {"vae": self.module}[name]
            else:
                target = {"vae": self.module.vae, "mi": self.module.mi, "fused": self.module}[name]
            kwargs = dict(self._ddp_kwargs)
            if self.context.device.type == "cuda":
                kwargs.setdefault("device_ids", [self.context.device.index])
            self._wrappers[name] = DistributedDataParallel(_LossModule(target), **kwargs)
        return self._wrappers[name]

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Evaluate ``fn(*args, **kwargs)`` inside the DDP module ``name`` (vae, mi or fused)."""
        if not self.context.enabled:
            return fn(*args, **kwargs)
        return self._wrapper(name)(fn, args, kwargs)

    def all_finite(self, *values: torch.Tensor) -> bool:
        """Whether every value is finite on every process (a collective call)."""
        ok = torch.tensor([float(all(bool(torch.isfinite(v).all()) for v in values))], device=self.context.device)
        if self.context.enabled:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The wrapped model's parameters."""
        return self.module.parameters()

    def close(self) -> None:
        """Release the DDP modules (call before :func:`destroy_process_group`)."""
        self._wrappers.clear()


def wrap(model: nn.Module, context: DistributedContext | None = None, **ddp_kwargs: Any) -> DistributedInfoMaxVAE:
    """Prepare an InfoMaxVAE (or a VAE) for data-parallel training.

    The model is moved to the context's device and its DDP modules are built (each
    broadcasts rank 0's parameters, so every process starts from the same weights).
    Extra keywords go to ``DistributedDataParallel``.
    """
    if not isinstance(model, (InfoMaxVAE, VAE)):
        raise TypeError(f"model: expected an InfoMaxVAE or a VAE, got {type(model).__name__}")
    context = context or current_context()
    model.to(context.device)
    wrapped = DistributedInfoMaxVAE(model, context, **ddp_kwargs)
    if context.enabled:
        # Start every process from rank 0's weights, whichever step is used first.
        for name in (("vae",) if isinstance(model, VAE) else ("vae", "mi", "fused")):
            wrapped._wrapper(name)
    return wrapped


# ----------------------------------------------------------------------------------
# Data sharding and reductions
# ----------------------------------------------------------------------------------

def shard_batches(n: int, batch_size: int, context: DistributedContext | None = None, *, epoch: int = 0,
                  seed: int = 0, shuffle: bool = True) -> Iterator[np.ndarray]:
    """Index batches of this process's shard of ``range(n)`` for one epoch.

    Uses ``torch.utils.data.DistributedSampler`` (reshuffled per epoch with
    ``set_epoch``, ``drop_last=True`` so every process gets the same number of samples)
    and cuts the shard into batches of ``batch_size``, dropping a last short batch so
    that all processes take the same number of equal-sized steps. Indices are sorted
    within a batch, so memory-mapped data are read forwards.
    """
    context = context or current_context()
    sampler = DistributedSampler(range(n), num_replicas=context.world_size, rank=context.rank,
                                 shuffle=shuffle, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = np.fromiter(iter(sampler), dtype=np.int64)
    for start in range(0, len(idx) - batch_size + 1, batch_size):
        yield np.sort(idx[start:start + batch_size])


def shard_positions(positions: np.ndarray, context: DistributedContext | None = None) -> np.ndarray:
    """This process's equal share of a global batch of ``positions`` (sorted).

    A global batch of ``N·B`` positions gives each of the ``N`` processes a contiguous
    block of ``B``; concatenated in rank order the blocks are the global batch.
    """
    context = context or current_context()
    positions = np.asarray(positions)
    b = len(positions) // context.world_size
    return np.sort(positions[context.rank * b:(context.rank + 1) * b])


def all_reduce_sum(values: np.ndarray | list[float], context: DistributedContext | None = None) -> np.ndarray:
    """Element-wise sum of ``values`` over all processes (a copy on a single process)."""
    context = context or current_context()
    t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if context.enabled:
        t = t.to(context.device if context.backend == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def any_process(flag: bool, context: DistributedContext | None = None) -> bool:
    """Whether ``flag`` is true on at least one process (a collective call)."""
    context = context or current_context()
    if not context.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=context.device if context.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
