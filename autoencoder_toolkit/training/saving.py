"""When a training run writes its checkpoint, and what it keeps in memory in between.

A crash-safe checkpoint costs a few ``fsync`` s; written after every epoch of a small model
it can take a tenth of the training time. :class:`CheckpointCadence` decides after which
epochs to write it: every ``N`` epochs, every ``T`` seconds, or (``"auto"``, the default)
as often as keeps its cost under 2% of the time (a save taking ``d`` seconds is followed by
at least ``49·d`` seconds of training), and always after the last epoch.

Between two checkpoints, :class:`EpochSnapshot` holds the last completed epoch in memory
(the model's and optimizers' states and the training state), so that a run stopped on
purpose (Ctrl-C, SIGTERM, a divergence) still writes that epoch before it exits; only a
crash loses the epochs since the last checkpoint.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.step import copy_tensors_
from .loop import TrainingState, optimizer_dict

__all__ = ["CheckpointCadence", "EpochSnapshot", "parse_cadence", "AUTO_SHARE"]

#: Largest share of the time that ``"auto"`` spends writing checkpoints.
AUTO_SHARE = 0.02


def parse_cadence(value: Any, name: str = "--checkpoint-every") -> str | int | float:
    """``"auto"``, a number of epochs (``"5"``) or of seconds (``"30s"``, ``"10m"``); ``ValueError`` naming ``name``."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    m = re.fullmatch(r"(\d+)|(\d+(?:\.\d+)?)\s*(s|m|min)", text)
    if m and m.group(1) and int(m.group(1)) >= 1:
        return int(m.group(1))
    if m and m.group(2) and float(m.group(2)) > 0:
        return float(m.group(2)) * (60.0 if m.group(3) in ("m", "min") else 1.0)
    raise ValueError(f"{name}: expected auto, a number of epochs (5) or a time (30s, 10m), got {value!r}")


class CheckpointCadence:
    """Which completed epochs to checkpoint (see the module documentation)."""

    def __init__(self, spec: str | int | float = "auto") -> None:
        self.spec = parse_cadence(spec) if isinstance(spec, str) else spec
        self._last_end = time.monotonic()
        self._last_cost = 0.0
        self._last_epoch = 0

    def due(self, epoch: int, final: bool) -> bool:
        """Whether to write the checkpoint of ``epoch`` (1-based) now."""
        if final:
            return True
        if isinstance(self.spec, int):
            return epoch - self._last_epoch >= self.spec
        waited = time.monotonic() - self._last_end
        if isinstance(self.spec, float):
            return waited >= self.spec
        return waited >= self._last_cost * (1.0 - AUTO_SHARE) / AUTO_SHARE

    def saved(self, epoch: int, seconds: float) -> None:
        """Record a save of ``epoch`` that took ``seconds``."""
        self._last_end = time.monotonic()
        self._last_cost = max(0.0, seconds)
        self._last_epoch = epoch


def _state_copy(state: TrainingState) -> TrainingState:
    gen = torch.Generator()
    gen.set_state(state.torch_rng.get_state())
    bit = np.random.PCG64()
    bit.state = copy.deepcopy(state.batch_rng.bit_generator.state)
    return TrainingState(seed=state.seed, epoch=state.epoch, step=state.step, torch_rng=gen,
                         batch_rng=np.random.Generator(bit), history=copy.deepcopy(state.history))


def _refresh(saved: Any, live: Any, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A copy of ``live`` (nested dicts and lists of tensors and values) that reuses the tensors of
    ``saved`` where the structure matches; those ``(saved, live)`` tensor pairs are appended to
    ``pairs`` for the caller to copy, the rest is copied here."""
    if isinstance(live, torch.Tensor):
        if (isinstance(saved, torch.Tensor) and saved.shape == live.shape and saved.dtype == live.dtype
                and saved.device == live.device):
            pairs.append((saved, live))
            return saved
        return live.detach().clone()
    if isinstance(live, dict):
        old = saved if isinstance(saved, dict) else {}
        return {k: _refresh(old.get(k), v, pairs) for k, v in live.items()}
    if isinstance(live, list):
        old = saved if isinstance(saved, list) and len(saved) == len(live) else [None] * len(live)
        return [_refresh(o, v, pairs) for o, v in zip(old, live)]
    return copy.deepcopy(live)


class EpochSnapshot:
    """The last completed epoch, in memory: ``take`` after each epoch, ``restore`` to save it later.

    The copies are kept from one ``take`` to the next and refreshed in place (one fused copy
    per device and dtype), so an epoch's snapshot allocates nothing once the first is taken.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self._model: dict[str, torch.Tensor] | None = None
        self._optimizers: dict[str, Any] | None = None
        self._state: TrainingState | None = None

    def take(self, model: nn.Module, opt: Any, state: TrainingState) -> None:
        """Copy the model's and optimizers' states and the training state."""
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._model = _refresh(self._model, dict(model.state_dict()), pairs)
        self._optimizers = _refresh(self._optimizers, {name: o.state_dict() for name, o in optimizer_dict(opt).items()},
                                    pairs)
        copy_tensors_([saved for saved, _ in pairs], [live for _, live in pairs])
        self._state = _state_copy(state)
        self.epoch = state.epoch

    def restore(self, model: nn.Module, opt: Any) -> TrainingState:
        """Put the snapshot back into ``model`` and ``opt`` (training has stopped) and return its state."""
        if self._model is None or self._optimizers is None or self._state is None:
            raise RuntimeError("EpochSnapshot.restore: nothing was taken")
        model.load_state_dict(self._model)
        for name, o in optimizer_dict(opt).items():
            o.load_state_dict(self._optimizers[name])
        return self._state

