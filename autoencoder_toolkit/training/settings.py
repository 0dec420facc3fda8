"""A run's settings: their defaults, which may change on resume, and the one check of each.

Every setting of ``autoencoder-toolkit train`` has a checker here that returns the value
in its canonical form or raises :class:`SettingsError` with ``--flag: expected X, got Y``.
The command line's flags, its ``--config`` files and the ``settings`` block of a run's
``config.json`` all go through these checkers (:func:`check_settings`), so a value is
accepted or refused the same way wherever it comes from.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, Sequence

from ..data.datasets import DATASETS
from ..data.splits import SCALINGS

__all__ = ["SettingsError", "TRAIN_DEFAULTS", "RESUMABLE", "FIXED_ON_RESUME", "MAX_SEED", "CHECKERS", "flag",
           "positive_int", "number", "layer_sizes", "choice", "device_name", "dataset_name", "path_text",
           "boolean", "check_settings"]


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the flag, what was expected and what came."""


#: Defaults of ``train`` (the run on scikit-learn's digits that takes about a minute on 2 cores).
TRAIN_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data": None,
    "labels": None,
    "model": "infomax",
    "epochs": 150,
    "batch_size": 64,
    "latent_dim": 8,
    "hidden": [256, 256],
    "critic_hidden": None,
    "lr": 1e-3,
    "alpha": 1.0,
    "beta": 1.0,
    "seed": 0,
    "decoder": None,
    "test_fraction": 0.2,
    "scale": "auto",
    "device": "cpu",
    "fused": True,
    "compile": False,
    "global_shuffle": False,
}

#: Settings that ``train --resume`` may change; every other one is fixed by the run.
RESUMABLE = ("epochs", "lr", "alpha", "beta", "device", "fused", "compile", "global_shuffle")

#: Settings a run fixes once and for all.
FIXED_ON_RESUME = ("dataset", "data", "labels", "model", "batch_size", "latent_dim", "hidden", "critic_hidden",
                   "seed", "decoder", "test_fraction", "scale")

#: Largest seed: the generators are seeded with a signed 64-bit integer.
MAX_SEED = 2**63 - 1


def flag(key: str) -> str:
    """The command-line flag of a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


def positive_int(name: str, minimum: int = 1, maximum: int | None = None) -> Callable[[Any], int]:
    """A checker of an integer in ``[minimum, maximum]`` (a string of digits, an int, or an integral float)."""
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"

    def check(value: Any) -> int:
        v: int | None = None
        if not isinstance(value, bool):
            if isinstance(value, int):
                v = value
            elif isinstance(value, float) and value.is_integer():
                v = int(value)
            elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
                v = int(value)
        if v is None or v < minimum or (maximum is not None and v > maximum):
            raise SettingsError(f"{name}: expected an integer {bounds}, got {value!r}")
        return v
    return check


def number(name: str, minimum: float | None = None, positive: bool = False,
           below: float | None = None) -> Callable[[Any], float]:
    """A checker of a finite number, optionally ``> 0``, ``>= minimum`` or ``< below``."""
    def check(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            v = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(v):
            raise SettingsError(f"{name}: expected a finite number, got {value!r}")
        if positive and not v > 0:
            raise SettingsError(f"{name}: expected a number > 0, got {value!r}")
        if minimum is not None and v < minimum:
            raise SettingsError(f"{name}: expected a number >= {minimum}, got {value!r}")
        if below is not None and not v < below:
            raise SettingsError(f"{name}: expected a number < {below}, got {value!r}")
        return v
    return check


def layer_sizes(name: str) -> Callable[[Any], list[int]]:
    """A checker of layer sizes: ``"256,256"`` or a list of positive integers."""
    def check(value: Any) -> list[int]:
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
        try:
            out = [positive_int(name)(item.strip() if isinstance(item, str) else item) for item in items]
        except SettingsError:
            raise SettingsError(f"{name}: expected comma-separated positive layer sizes such as 256,256, "
                                f"got {value!r}") from None
        if not out:
            raise SettingsError(f"{name}: expected at least one layer size, got {value!r}")
        return out
    return check


def choice(name: str, choices: Sequence[str]) -> Callable[[Any], str]:
    """A checker of one of ``choices`` (case-insensitive)."""
    def check(value: Any) -> str:
        v = value.strip().lower() if isinstance(value, str) else None
        if v not in choices:
            raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return v
    return check


def device_name(value: Any, name: str = "--device") -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (whether it exists here is checked when it is used)."""
    v = value.strip().lower() if isinstance(value, str) else None
    if v is None or not re.fullmatch(r"cpu|cuda(:\d+)?", v):
        raise SettingsError(f"{name}: expected cpu or cuda (or cuda:N), got {value!r}")
    return v


def dataset_name(value: Any) -> str:
    """The name of a built-in data set (``fashion_mnist`` and ``Fashion-MNIST`` are ``fashion-mnist``)."""
    v = value.strip().lower().replace("_", "-") if isinstance(value, str) else None
    if v not in DATASETS:
        raise SettingsError(f"--dataset: unknown data set {value!r}; expected one of {', '.join(DATASETS)} (or "
                            "--data PATH for your own file)")
    return v


def path_text(name: str) -> Callable[[Any], str]:
    """A checker of a non-empty path string."""
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise SettingsError(f"{name}: expected a path, got {value!r}")
        return value
    return check


def boolean(name: str) -> Callable[[Any], bool]:
    """A checker of ``true`` or ``false`` (a real boolean, not a string or a number)."""
    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{name}: expected true or false, got {value!r}")
    return check


#: The checker of every setting (and of ``out``, ``quiet`` and ``overwrite``, which a
#: ``--config`` file may also give).
CHECKERS: dict[str, Callable[[Any], Any]] = {
    "dataset": dataset_name,
    "data": path_text("--data"),
    "labels": path_text("--labels"),
    "model": choice("--model", ("infomax", "vae")),
    "epochs": positive_int("--epochs"),
    "batch_size": positive_int("--batch-size", 2),
    "latent_dim": positive_int("--latent-dim"),
    "hidden": layer_sizes("--hidden"),
    "critic_hidden": layer_sizes("--critic-hidden"),
    "lr": number("--lr", positive=True),
    "alpha": number("--alpha", minimum=0.0),
    "beta": number("--beta", minimum=0.0),
    "seed": positive_int("--seed", 0, MAX_SEED),
    "decoder": choice("--decoder", ("bernoulli", "gaussian")),
    "test_fraction": number("--test-fraction", positive=True, below=1.0),
    "scale": choice("--scale", SCALINGS),
    "device": device_name,
    "fused": boolean("--fused"),
    "compile": boolean("--compile"),
    "global_shuffle": boolean("--global-shuffle"),
    "out": path_text("--out"),
    "quiet": boolean("--quiet"),
    "overwrite": boolean("--overwrite"),
}

#: Settings that may be ``None`` in a run's record (``None``: "not given, use the rule").
_OPTIONAL = {"dataset", "data", "labels", "critic_hidden", "decoder"}


def check_settings(settings: Any, where: str) -> dict[str, Any]:
    """Check a complete ``settings`` mapping (a run's record); return it with canonical values.

    Every key of :data:`TRAIN_DEFAULTS` must be present (a record written before a setting
    existed gets that setting's default) and no other key; ``where`` starts each message.
    """
    if not isinstance(settings, Mapping):
        raise SettingsError(f"{where}: expected a table of settings, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(TRAIN_DEFAULTS))
    if unknown:
        raise SettingsError(f"{where}: unknown setting {unknown[0]!r}")
    out: dict[str, Any] = {}
    for key, default in TRAIN_DEFAULTS.items():
        value = settings.get(key, default) if key in ADDED_LATER else settings.get(key, _MISSING)
        if value is _MISSING:
            raise SettingsError(f"{where}: setting {key!r} is missing")
        if value is None and key in _OPTIONAL:
            out[key] = None
            continue
        try:
            out[key] = CHECKERS[key](value)
        except SettingsError as err:
            raise SettingsError(f"{where}: {err}") from None
    if out["data"] is None and out["dataset"] is None:
        raise SettingsError(f"{where}: neither 'data' nor 'dataset' is set")
    return out


_MISSING = object()

#: Settings added after runs were first recorded: a record without one gets its default.
ADDED_LATER = ("scale", "compile")
