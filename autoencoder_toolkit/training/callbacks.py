"""What :func:`~autoencoder_toolkit.training.fit` calls while it trains, and what it returns.

A callback is either a function ``f(state)`` called after every epoch, or an object with
any of these methods (the :class:`Callback` base class has them all, doing nothing):

``on_train_begin(state, model)``
    before the first epoch;
``on_step_end(state, losses)``
    after every optimisation step, with the step's ``(loss, critic loss)`` (NaN without a
    critic);
``on_epoch_end(state, model)``
    after every epoch, once its record is ``state.history[-1]``; returning ``True`` stops
    training after that epoch;
``on_train_end(state, model)``
    after the last epoch (also when a callback stopped training).

:class:`EarlyStopping` stops when a monitored value stops improving and can put back the
best weights; :class:`TensorBoardLogger` writes every record (and the step losses) as
TensorBoard scalars. :class:`History` is what ``fit`` returns.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Iterable, Sequence

from torch import nn

__all__ = ["Callback", "EarlyStopping", "TensorBoardLogger", "History", "as_callbacks"]


class Callback:
    """Base class of :func:`fit`'s callbacks: every hook does nothing unless overridden."""

    def on_train_begin(self, state: Any, model: nn.Module) -> None:
        """Before the first epoch."""

    def on_step_end(self, state: Any, losses: Sequence[float]) -> None:
        """After every optimisation step: ``losses`` is ``(loss, critic loss)``."""

    def on_epoch_end(self, state: Any, model: nn.Module) -> bool | None:
        """After every epoch (its record is ``state.history[-1]``); ``True`` stops training."""
        return None

    def on_train_end(self, state: Any, model: nn.Module) -> None:
        """After the last epoch."""


class _Function(Callback):
    """A plain function ``f(state)`` called after every epoch."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_epoch_end(self, state: Any, model: nn.Module) -> bool | None:
        return bool(self.fn(state)) or None


def as_callbacks(callbacks: Iterable[Any] | Any, name: str = "callbacks") -> list[Callback]:
    """``callbacks`` (one, or several) as :class:`Callback` objects; functions are wrapped."""
    if callbacks is None:
        return []
    items = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
    out: list[Callback] = []
    for i, cb in enumerate(items):
        if isinstance(cb, Callback):
            out.append(cb)
        elif any(hasattr(cb, m) for m in ("on_train_begin", "on_step_end", "on_epoch_end", "on_train_end")):
            out.append(cb)  # duck-typed; missing hooks are skipped
        elif callable(cb):
            out.append(_Function(cb))
        else:
            raise TypeError(f"{name}[{i}]: expected a function f(state) or an object with on_epoch_end(state, model), "
                            f"got {type(cb).__name__}")
    return out


def call(callbacks: Sequence[Any], hook: str, *args: Any) -> bool:
    """Call ``hook`` on every callback that has it; whether any asked to stop."""
    stop = False
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            stop = bool(method(*args)) or stop
    return stop


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor:
        A key of the epoch records: ``"test_loss"`` (default; needs validation data),
        ``"loss"``, ``"test_mi"``, ...
    mode:
        ``"min"`` (default) or ``"max"``: whether smaller or larger is better.
    patience:
        Epochs without improvement before stopping (default 5).
    min_delta:
        The least change that counts as an improvement (default 0).
    restore_best:
        Put back the weights of the best epoch when stopping or at the end (default ``True``).

    Attributes ``best``, ``best_epoch`` and ``stopped_epoch`` (``None`` when it did not stop)
    say what happened.
    """

    def __init__(self, monitor: str = "test_loss", *, mode: str = "min", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience: expected an integer >= 0, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta: expected a finite number >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = float(min_delta), bool(restore_best)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._weights: dict[str, Any] | None = None
        self._wait = 0

    def on_train_begin(self, state: Any, model: nn.Module) -> None:
        self.best, self.best_epoch, self.stopped_epoch, self._weights, self._wait = None, None, None, None, 0

    def on_epoch_end(self, state: Any, model: nn.Module) -> bool | None:
        record = state.history[-1]
        if self.monitor not in record or record[self.monitor] is None:
            raise KeyError(f"EarlyStopping: monitor {self.monitor!r} is not in the epoch record (it has "
                           f"{', '.join(k for k, v in record.items() if v is not None)}); 'test_*' values need "
                           "validation_data")
        value = float(record[self.monitor])
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better and math.isfinite(value):
            self.best, self.best_epoch, self._wait = value, int(record["epoch"]), 0
            if self.restore_best:
                self._weights = copy.deepcopy(model.state_dict())
            return None
        self._wait += 1
        if self._wait > self.patience:
            self.stopped_epoch = int(record["epoch"])
            return True
        return None

    def on_train_end(self, state: Any, model: nn.Module) -> None:
        if self.restore_best and self._weights is not None:
            model.load_state_dict(self._weights)


class TensorBoardLogger(Callback):
    """Write training to TensorBoard (``torch.utils.tensorboard``; needs the ``tensorboard`` package).

    Every ``every_steps`` steps the step losses (``train/step_loss``, ``train/step_critic_loss``),
    and after every epoch every number of its record (``epoch/loss``, ``epoch/test_loss``,
    ``epoch/mi``, ...) against the step count. ``log_dir`` is created if needed; view it with
    ``tensorboard --logdir LOG_DIR``.
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, every_steps: int = 10) -> None:
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"every_steps: expected a positive integer, got {every_steps!r}")
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency, loaded when used
        except ImportError:
            raise ModuleNotFoundError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                                      "(or pip install -e '.[tensorboard]' in the package's folder)") from None
        self.log_dir = os.fspath(log_dir)
        self.every_steps = every_steps
        self.writer = SummaryWriter(log_dir=self.log_dir)

    def on_step_end(self, state: Any, losses: Sequence[float]) -> None:
        if state.step % self.every_steps == 0:
            self.writer.add_scalar("train/step_loss", float(losses[0]), state.step)
            if not math.isnan(float(losses[1])):
                self.writer.add_scalar("train/step_critic_loss", float(losses[1]), state.step)

    def on_epoch_end(self, state: Any, model: nn.Module) -> bool | None:
        record = state.history[-1]
        for key, value in record.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", float(value), state.step)
        self.writer.flush()
        return None

    def on_train_end(self, state: Any, model: nn.Module) -> None:
        self.writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self.writer.close()


class History(list):
    """The epoch records :func:`fit` produced (``history[-1]["loss"]``, ...), one dict per epoch.

    ``state`` and ``optimizer`` are what training continues from, exactly as if it had not
    stopped: ``fit(model, data, history.optimizer, epochs=20, state=history.state)``;
    ``stopped_early`` says whether a callback ended training before ``epochs``.
    """

    def __init__(self, records: Iterable[dict[str, Any]], state: Any, stopped_early: bool,
                 optimizer: Any = None) -> None:
        super().__init__(records)
        self.state = state
        self.stopped_early = stopped_early
        self.optimizer = optimizer

    def column(self, key: str) -> list[Any]:
        """One value per epoch: ``history.column("test_loss")``."""
        return [r.get(key) for r in self]
