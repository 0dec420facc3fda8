r"""The training loop: epochs of mini-batches over data that may live on disk.

:func:`fit` trains an :class:`~autoencoder_toolkit.infomaxvaes.InfoMaxVAE` with
:func:`infomaxvaes.train_ <autoencoder_toolkit.infomaxvaes.train_>` (or a
:class:`~autoencoder_toolkit.vaes.VAE` with :func:`vaes.train_
<autoencoder_toolkit.vaes.train_>`), one mini-batch at a time:

* the data are a :class:`DataSplit`: an array ``(N, *sample_shape)`` (a NumPy array or
  a read-only memory map of a ``.npy`` file larger than RAM) and the rows that belong
  to the split. Each batch is read with :func:`~autoencoder_toolkit.datasets.read_batch`;
  the whole array is never loaded;
* the randomness is in a :class:`TrainingState`: a NumPy generator for the batch order
  (one permutation per epoch, :func:`~autoencoder_toolkit.datasets.iterate_minibatches`
  with ``drop_last=True`` so that every batch has ``batch_size`` samples) and a CPU
  ``torch.Generator`` for the reparameterisation noise and the critic's shuffles. Both
  are saved in checkpoints, so a run resumed from epoch ``k`` continues exactly as if
  it had not stopped;
* after each epoch the mean training losses, the held-out ELBO terms and MI estimate
  (from a generator seeded by the run's seed and the epoch, so that evaluating never
  perturbs the training stream) are appended to ``state.history``, and the
  ``on_epoch_end`` callback is called. That callback is the only place where anything
  is written (checkpoints, metrics files); a distributed wrapper calls it on one rank.

A non-finite loss stops training with :class:`TrainingDiverged`; the optimisation step
that produced it has changed nothing (``train_``'s guarantee), and nothing is written.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.datasets import iterate_minibatches
from ..data.splits import DataSplit
from ..evaluation.metrics import elbo_terms, mutual_info_estimate
from ..io.files import CheckpointError
from ..models import infomaxvaes, mmdvaes, vaes
from ..models.decoders import BernoulliDecoder, SimpleGaussianDecoder
from ..models.encoders import JointGaussianLogEncoder
from ..models.infomaxvaes import InfoMaxVAE, MutualInfoChain
from ..models.mmdvaes import MMDVAE
from ..models.checks import check_flag
from ..models.step import ParallelModel
from ..models.vaes import VAE
from ..models.optim import adjust_, setup
from . import distributed as dist_mod
from .batches import LoaderSource, as_split, batch_source
from .callbacks import Callback, History, TensorBoardLogger, as_callbacks, call

__all__ = [
    "DataSplit",
    "TrainingState",
    "TrainingDiverged",
    "mlp_model",
    "make_optimizers",
    "optimizer_dict",
    "loss_kwargs_for",
    "set_learning_rate",
    "held_out_losses",
    "fit",
]


# ----------------------------------------------------------------------------------
# Models and optimizers
# ----------------------------------------------------------------------------------

def mlp_model(kind: str, sample_shape: Sequence[int], latent_dim: int, hidden: Sequence[int],
              decoder: str = "bernoulli", critic_hidden: Sequence[int] | None = None) -> nn.Module:
    """The multilayer-perceptron InfoMax-VAE (``kind="infomax"``) or VAE (``kind="vae"``).

    * encoder: ``JointGaussianLogEncoder(sample_shape, latent_dim, hidden, relu, identity)``;
    * decoder: the hidden sizes reversed, ReLU, then a ``BernoulliDecoder`` (sigmoid
      output, for data in ``[0, 1]``) or a ``SimpleGaussianDecoder`` (identity output,
      unit variance: ``-log p(x|z) = ½‖x − μ(z)‖² + const``);
    * critic (InfoMax only): ``MutualInfoChain(sample_shape, latent_dim, critic_hidden,
      relu, identity)``, ``critic_hidden`` defaulting to ``hidden``.

    Images ``(C, H, W)`` are flattened by the encoder and critic and reshaped by the decoder.
    """
    shape = tuple(int(s) for s in sample_shape)
    n_input: Any = shape[0] if len(shape) == 1 else shape
    hidden = [int(h) for h in hidden]
    relu = ["relu"] * len(hidden)
    enc = JointGaussianLogEncoder(n_input, latent_dim, hidden, relu, "identity")
    if decoder == "bernoulli":
        dec = BernoulliDecoder(n_input, latent_dim, hidden[::-1], relu, "sigmoid")
    elif decoder == "gaussian":
        dec = SimpleGaussianDecoder(n_input, latent_dim, hidden[::-1], relu, "identity")
    else:
        raise ValueError(f"decoder: expected 'bernoulli' or 'gaussian', got {decoder!r}")
    vae = enc * dec
    if kind == "vae":
        return vae
    if kind != "infomax":
        raise ValueError(f"kind: expected 'infomax' or 'vae', got {kind!r}")
    ch = [int(h) for h in (critic_hidden or hidden)]
    mi = MutualInfoChain(n_input, latent_dim, ch, ["relu"] * len(ch), "identity")
    return InfoMaxVAE(vae, mi)


def fused_adam_supported(model: nn.Module) -> bool:
    """Whether torch's fused Adam runs every parameter of ``model`` (floating, on the CPU or CUDA)."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in model.parameters())


def make_optimizers(model: nn.Module, lr: float, *, fused: bool | None = None) -> Any:
    """Adam with learning rate ``lr``: an ``OptimizerPair`` for an InfoMaxVAE, else one optimizer.

    ``fused`` (default: wherever torch supports it) selects torch's fused Adam, one kernel for
    all parameters (3x faster than the per-tensor loop for a 2-million-parameter model on one
    CPU thread); it computes the same update up to float32 rounding.
    """
    use = fused_adam_supported(model) if fused is None else bool(fused)
    return setup(torch.optim.Adam, model, lr=float(lr), **({"fused": True} if use else {}))


def optimizer_dict(opt: Any) -> dict[str, torch.optim.Optimizer]:
    """Named optimizers for checkpoints: ``{"vae": ..., "mi": ...}`` or ``{"vae": ...}``."""
    if isinstance(opt, torch.optim.Optimizer):
        return {"vae": opt}
    return {"vae": opt.vae, "mi": opt.mi}


def set_learning_rate(opt: Any, lr: float) -> None:
    """Set the learning rate of every parameter group of ``opt`` (one optimizer or a pair); see :func:`adjust_`."""
    for o in optimizer_dict(opt).values():
        adjust_(o, float(lr))


def loss_kwargs_for(model: nn.Module, alpha: float, beta: float) -> dict[str, float]:
    """``{"β": beta, "α": alpha}`` for an InfoMaxVAE, ``{"β": beta}`` for a VAE."""
    if isinstance(model, InfoMaxVAE):
        return {"β": float(beta), "α": float(alpha)}
    return {"β": float(beta)}


# ----------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------

@dataclass
class TrainingState:
    """Where training stands: completed epochs, steps, generators and the metric history.

    Attributes
    ----------
    seed:
        The run's seed (held-out evaluation derives its generators from it).
    epoch:
        Number of completed epochs.
    step:
        Number of optimisation steps taken.
    torch_rng:
        CPU ``torch.Generator`` for the noise and the critic's shuffles.
    batch_rng:
        ``numpy.random.Generator`` for the batch order.
    history:
        One dictionary per completed epoch (see :func:`fit`).
    """

    seed: int
    epoch: int = 0
    step: int = 0
    torch_rng: torch.Generator = field(default_factory=torch.Generator)
    batch_rng: np.random.Generator = field(default_factory=np.random.default_rng)
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fresh(cls, seed: int) -> "TrainingState":
        """A state at epoch 0 with generators seeded from ``seed``."""
        return cls(seed=int(seed), torch_rng=torch.Generator().manual_seed(int(seed)),
                   batch_rng=np.random.default_rng([int(seed), 1]))

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON state and tensors (``rng/torch``) to store in a checkpoint."""
        json_state = {
            "seed": self.seed,
            "epoch": self.epoch,
            "step": self.step,
            "batch_rng": self.batch_rng.bit_generator.state,
            "history": self.history,
        }
        return json_state, {"rng/torch": self.torch_rng.get_state()}

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> "TrainingState":
        """The inverse of :meth:`to_checkpoint`."""
        try:
            gen = torch.Generator()
            gen.set_state(tensors["rng/torch"].to(torch.uint8))
            bit = np.random.PCG64()
            bit.state = state["batch_rng"]
            return cls(seed=int(state["seed"]), epoch=int(state["epoch"]), step=int(state["step"]),
                       torch_rng=gen, batch_rng=np.random.Generator(bit),
                       history=[dict(h) for h in state.get("history", [])])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"checkpoint: the training state is incomplete or corrupt ({err!r})") from None


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the step that produced it changed nothing.

    Attributes ``epoch`` (1-based, the epoch in progress), ``batch`` (1-based) and
    ``step`` (steps completed before it) locate it; ``last_epoch`` is the last
    completed epoch.
    """

    def __init__(self, message: str, *, epoch: int, batch: int, step: int, last_epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.step = step
        self.last_epoch = last_epoch


# ----------------------------------------------------------------------------------
# Held-out losses
# ----------------------------------------------------------------------------------

def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63)


def held_out_losses(model: nn.Module, data: DataSplit, loss_kwargs: Mapping[str, float], *, seed: int,
                    epoch: int, batch_size: int = 1024) -> dict[str, float]:
    """Held-out loss terms after ``epoch``: reconstruction, KL, MI (one shuffle) and the loss.

    ``loss = -reconstruction + β·kl - α·mi`` (without ``- α·mi`` for a VAE), the
    training objective on the held-out data. Randomness comes from a generator seeded
    by ``(seed, epoch)``.
    """
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    view = data.view()
    terms = elbo_terms(model, view, batch_size=batch_size, rng=gen)
    out = {"test_reconstruction": terms.reconstruction, "test_kl": terms.kl}
    loss = -terms.reconstruction + loss_kwargs.get("β", 1.0) * terms.kl
    if isinstance(model, InfoMaxVAE) and len(data) >= 2:
        mi = mutual_info_estimate(model, view, n_shuffles=1, batch_size=batch_size, rng=gen)
        out["test_mi"] = mi.mean
        loss -= loss_kwargs.get("α", 1.0) * mi.mean
    out["test_loss"] = loss
    return out


# ----------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------

def _train_step(model: Any, xb: torch.Tensor, opt: Any, loss_kwargs: Mapping[str, float],
                rng: Any, fused: bool, compile: bool = False) -> tuple[float, float]:
    """One step of the model's ``train_``: ``(loss, critic loss)`` (NaN for a model without a critic)."""
    module = model.module if isinstance(model, ParallelModel) else model
    if isinstance(module, InfoMaxVAE):
        return infomaxvaes.train_(model, xb, opt, infomaxloss_kwargs=loss_kwargs, loss_return=True, rng=rng,
                                  fused=fused, compile=compile)
    if isinstance(module, MMDVAE):
        return mmdvaes.train_(model, xb, opt, loss_kwargs=loss_kwargs, loss_return=True, rng=rng), math.nan
    return vaes.train_(model, xb, opt, loss_kwargs=loss_kwargs, loss_return=True, rng=rng), math.nan


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def fit(model: nn.Module, data: Any, opt: Any = None, *, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
        loss_kwargs: Mapping[str, float] | None = None, validation_data: Any = None, held_out: Any = None,
        state: TrainingState | None = None, seed: int = 0, fused: bool = False, callbacks: Any = (),
        logger: Any = None, on_epoch_end: Callable[[TrainingState], None] | None = None, progress: bool = True,
        progress_file: Any = None, eval_batch_size: int = 1024, context: Any = None,
        global_shuffle: bool = False, compile: bool = False) -> History:
    """Train ``model`` in place for ``epochs`` epochs; returns the :class:`History` of epoch records.

    ::

        history = fit(model, x_train, epochs=30, validation_data=x_test,
                      callbacks=[EarlyStopping("test_loss", patience=5)])

    Parameters
    ----------
    model:
        An ``InfoMaxVAE``, a ``VAE`` or an ``MMDVAE`` (on the device where training runs).
        It trains in training mode and is left in the mode it came in.
    data:
        The training data: a NumPy array or memory map ``(N, *sample_shape)``, a
        ``torch.Tensor``, a :class:`DataSplit`, a map-style ``Dataset`` (items ``x`` or
        ``(x, label)``) or a ``DataLoader`` (see :mod:`autoencoder_toolkit.training.batches`).
        Floating-point values; 8-bit data must be scaled first.
    opt:
        Its optimizers (default: Adam with learning rate ``lr``, :func:`make_optimizers`).
    epochs:
        Number of epochs to train; with ``state``, the total to reach (a resumed state
        continues from ``state.epoch``).
    batch_size:
        Samples per step, at least 2 (the last partial batch of an epoch is skipped; a
        ``DataLoader`` brings its own batches).
    loss_kwargs:
        The loss's weights, e.g. ``{"β": 1.0, "α": 1.0}`` (default: :func:`loss_kwargs_for`
        with α = β = 1; for an MMD-VAE its loss's defaults).
    validation_data (alias ``held_out``):
        Data for the per-epoch held-out losses (optional; arrays, tensors, splits, or a
        small ``Dataset``/``DataLoader`` gathered into memory).
    state:
        Generators and counters to continue from (default: fresh ones from ``seed``);
        updated in place.
    seed:
        Seeds the batch order, the noise and the critic's shuffles when ``state`` is not given.
    fused:
        Use the fused InfoMax-VAE step (``infomaxvaes.train_(..., fused=True)``).
    compile:
        With ``fused=True``, run the step compiled by ``torch.compile``
        (``infomaxvaes.train_(..., compile=True)``): the same draws and, within float32
        rounding, the same numbers; the first step takes tens of seconds to compile. One
        process only.
    callbacks:
        Functions ``f(state)`` or :class:`Callback` objects (:class:`EarlyStopping`, ...);
        one returning ``True`` from its epoch hook stops training.
    logger:
        A :class:`TensorBoardLogger`, or a folder (``str`` or path) to write one into.
    on_epoch_end:
        Called with ``state`` after each epoch, once its history entry is added (the
        training job checkpoints there).
    progress:
        Show a progress bar over the batches of all epochs, with the epoch's running means
        of the two losses (updated at most every 30 s when stderr is not a terminal).
    context:
        A :class:`~autoencoder_toolkit.distributed.DistributedContext` with several
        processes: data-parallel training. Every process then runs ``fit`` with the same
        arguments; ``batch_size`` is per process, each step takes a global batch of
        ``world_size·batch_size`` rows of one shared per-epoch permutation and gives each
        process its block, gradients are averaged across processes, the training losses
        in the history are averaged over processes, and only rank 0 evaluates the
        held-out data, shows progress and calls the callbacks.
    global_shuffle:
        With ``context``: shuffle codes across processes for the MI bound (see
        :mod:`autoencoder_toolkit.distributed`).

    Returns
    -------
    History
        One record per epoch, holding ``epoch``, ``step``, ``loss`` and ``critic_loss``
        (means of the training losses over the epoch's batches; ``critic_loss`` is ``−Î``,
        absent for a VAE), ``mi`` and ``mi_std`` (mean and standard deviation over batches
        of the training MI estimate ``−critic_loss``), ``lr``, ``seconds``, and with
        validation data ``test_loss``, ``test_reconstruction``, ``test_kl`` and ``test_mi``.

    Raises
    ------
    TrainingDiverged
        When a loss is NaN or infinite; the step that produced it changed nothing.
    """
    if not isinstance(model, (InfoMaxVAE, MMDVAE, VAE)):
        raise TypeError(f"model: expected an InfoMaxVAE, a VAE or an MMDVAE, got {type(model).__name__}")
    source = batch_source(data, "data")
    if held_out is not None and validation_data is not None:
        raise TypeError("validation_data and held_out are the same argument; pass only one of them")
    held = validation_data if validation_data is not None else held_out
    held_split = None if held is None else as_split(held, "validation_data")
    epochs = _check_int(epochs, "epochs", 0)
    cbs = as_callbacks(callbacks)
    if logger is not None:
        cbs.append(logger if isinstance(logger, Callback) else TensorBoardLogger(logger))
    if opt is None:
        opt = make_optimizers(model, lr)
    if loss_kwargs is None:
        loss_kwargs = {} if isinstance(model, MMDVAE) else loss_kwargs_for(model, 1.0, 1.0)
    if state is None:
        state = TrainingState.fresh(_check_int(seed, "seed", 0))
    elif not isinstance(state, TrainingState):
        raise TypeError(f"state: expected a TrainingState, got {type(state).__name__}")
    ctx = context or dist_mod.DistributedContext()
    world = ctx.world_size if ctx.enabled else 1
    n = len(source)
    loader = isinstance(source, LoaderSource)
    if loader and world > 1:
        raise ValueError("data: a DataLoader cannot be sharded across processes here; pass the array or Dataset")
    if not loader:
        batch_size = _check_int(batch_size, "batch_size", 2)
        if batch_size * world > n:
            most = n // world
            raise ValueError(f"batch_size: {batch_size} per process × {world} process(es) is larger than the {n} "
                             f"training samples" + (f"; use a batch size of at most {most}" if most >= 2 else ""))
    has_critic = isinstance(model, InfoMaxVAE)
    compile = check_flag(compile, "compile")
    if compile and not (has_critic and fused):
        raise ValueError("compile: compile=True compiles the fused InfoMax-VAE step; it needs an InfoMaxVAE and "
                         "fused=True" + ("" if has_critic else f" (got a {type(model).__name__})"))
    if compile and world > 1:
        raise ValueError("compile: the compiled step runs on one process; train without compile=True across "
                         f"{world} processes")
    first = next(iter(model.parameters()))
    device, dtype = first.device, first.dtype
    global_batch = batch_size * world
    per_epoch = len(source.loader) if loader else n // global_batch
    if world > 1:
        step_model: Any = dist_mod.wrap(model, ctx)
        step_rng: Any = dist_mod.DistributedRNG.from_generator(state.torch_rng, ctx, global_shuffle=global_shuffle)
    else:
        step_model, step_rng = model, state.torch_rng
    main = ctx.is_main
    progress = progress and main
    remaining = max(0, epochs - state.epoch)
    lr_now = float(optimizer_dict(opt)["vae"].param_groups[0]["lr"])
    out = progress_file if progress_file is not None else sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    bar = tqdm(total=remaining * per_epoch, disable=not progress or remaining == 0, unit="batch",
               dynamic_ncols=True, file=out, leave=False, mininterval=0.25 if tty else 30.0)
    was_training = model.training
    model.train()
    stopped = False
    if main:
        call(cbs, "on_train_begin", state, model)
    try:
        for epoch in range(state.epoch, epochs):
            t0 = time.perf_counter()
            bar.set_description(f"epoch {epoch + 1}/{epochs}", refresh=False)
            losses: list[tuple[float, float]] = []
            running = np.zeros(2)
            if loader:
                batches: Iterator[torch.Tensor] = source.batches(device, dtype)
            else:
                batches = (source.rows(dist_mod.shard_positions(p, ctx) if world > 1 else p, device, dtype)
                           for p in iterate_minibatches(n, global_batch, shuffle=True, rng=state.batch_rng,
                                                        drop_last=True))
            for b, xb in enumerate(batches):
                try:
                    step_losses = _train_step(step_model, xb, opt, loss_kwargs, step_rng, fused, compile)
                except FloatingPointError as err:
                    raise TrainingDiverged(
                        f"training diverged at epoch {epoch + 1}, batch {b + 1}: {err}",
                        epoch=epoch + 1, batch=b + 1, step=state.step, last_epoch=state.epoch) from err
                losses.append(step_losses)
                state.step += 1
                if main:
                    call(cbs, "on_step_end", state, step_losses)
                if progress:  # running means over the epoch so far
                    running += step_losses
                    text = f"loss={running[0] / (b + 1):.4g}"
                    if has_critic:
                        text += f" critic={running[1] / (b + 1):.4g}"
                    bar.set_postfix_str(text, refresh=False)
                    bar.update(1)
            arr = np.asarray(losses, dtype=np.float64).reshape(-1, 2)
            if world > 1:  # per-batch losses averaged over the processes
                arr = dist_mod.all_reduce_sum(arr, ctx) / world
            record: dict[str, Any] = {"epoch": epoch + 1, "step": state.step,
                                      "loss": float(arr[:, 0].mean()) if arr.size else math.nan}
            if has_critic:
                mi_values = -arr[:, 1]
                record.update(critic_loss=float(arr[:, 1].mean()), mi=float(mi_values.mean()),
                              mi_std=float(mi_values.std()))
            record["lr"] = lr_now
            if held_split is not None and len(held_split) >= 1 and main:
                model.eval()
                try:
                    record.update(held_out_losses(model, held_split, loss_kwargs, seed=state.seed, epoch=epoch + 1,
                                                  batch_size=eval_batch_size))
                finally:
                    model.train()
            record["seconds"] = time.perf_counter() - t0
            state.history.append(record)
            state.epoch = epoch + 1
            if main:
                if on_epoch_end is not None:
                    on_epoch_end(state)
                if call(cbs, "on_epoch_end", state, model):
                    stopped = epoch + 1 < epochs
                    break
        if main:
            call(cbs, "on_train_end", state, model)
    finally:
        bar.close()
        model.train(was_training)
        if world > 1:
            step_model.close()
    return History(state.history, state, stopped, opt)
