"""How the model classes take their constructor arguments: binding, sizes, activation lists.

Every encoder, decoder and critic has two constructor forms, as in Julia: the *field*
form (the submodules themselves) and the *default* form (sizes and activations, from
which the layers are built). These helpers bind either form and check it, with errors
that name the argument.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import nn

__all__ = ["bind_arguments", "leading_linear_in", "trailing_linear_out", "as_int_list", "as_activation_list",
           "as_sample_shape", "is_field_form", "check_module", "bind_trunk_and_heads"]


def bind_arguments(cls_name: str, args: tuple, kwargs: dict, names: Sequence[str],
                   required: int) -> dict[str, Any]:
    """Bind positional and keyword arguments to ``names`` (the first ``required`` needed)."""
    if len(args) > len(names):
        raise TypeError(f"{cls_name}: expected at most {len(names)} positional arguments "
                        f"({', '.join(names)}), got {len(args)}")
    bound = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in names:
            raise TypeError(f"{cls_name}: unexpected keyword argument {k!r}; accepted: {', '.join(names)}")
        if k in bound:
            raise TypeError(f"{cls_name}: argument {k!r} given twice")
        bound[k] = v
    missing = [n for n in names[:required] if n not in bound]
    if missing:
        raise TypeError(f"{cls_name}: missing argument(s) {', '.join(missing)}")
    return bound


def _first_leaf(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if not list(m.children()):
            return m
    return module


def leading_linear_in(module: nn.Module) -> int | None:
    """Input features of ``module`` when its first leaf layer is a Linear/Dense layer."""
    leaf = _first_leaf(module)
    return leaf.in_features if isinstance(leaf, nn.Linear) else None


def trailing_linear_out(module: nn.Module) -> int | None:
    """Output features of ``module`` when its last leaf layer is a Linear/Dense layer."""
    last = None
    for m in module.modules():
        if not list(m.children()):
            last = m
    return last.out_features if isinstance(last, nn.Linear) else None


def as_int_list(value: Any, name: str, *, allow_empty: bool = False) -> list[int]:
    """A list of positive layer sizes."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        value = [value]
    try:
        out = list(value)
    except TypeError:
        raise TypeError(f"{name}: expected a list of positive integers, got {type(value).__name__}") from None
    if not out and not allow_empty:
        raise ValueError(f"{name}: expected at least one hidden layer size, got an empty list")
    out = [int(v) if isinstance(v, np.integer) else v for v in out]
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected positive integers, got {value!r}")
    return [int(v) for v in out]


def as_activation_list(value: Any, n: int, name: str, neurons_name: str) -> list[Any]:
    """A list of ``n`` activations (one per hidden layer)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name}: expected a list with one activation per hidden layer ({n}), got {value!r}"
        )
    if len(value) != n:
        raise ValueError(
            f"{name}: each layer needs exactly one activation: {neurons_name} has {n} layer(s), "
            f"{name} has {len(value)}"
        )
    return list(value)


def as_sample_shape(value: Any, name: str) -> tuple[int, ...]:
    """An input size given as an int or a shape, as a tuple of positive ints."""
    if isinstance(value, (bool, str, bytes, float)):
        raise TypeError(f"{name}: expected a positive integer or a shape tuple, got {value!r}")
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
        return (value,)
    try:
        shape = tuple(int(s) if isinstance(s, np.integer) else s for s in value)
    except TypeError:
        raise TypeError(f"{name}: expected a positive integer or a shape tuple, got {type(value).__name__}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"{name}: expected a shape of positive integers, got {value!r}")
    return tuple(int(s) for s in shape)


def is_field_form(args: tuple, kwargs: dict, fields: Sequence[str]) -> bool:
    """Whether a constructor call passes modules (its fields) rather than sizes."""
    return any(k in fields for k in kwargs) or (bool(args) and isinstance(args[0], nn.Module))


def check_module(value: Any, cls_name: str, field: str) -> nn.Module:
    """``value`` if it is a torch module; otherwise a ``TypeError`` naming the field."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{cls_name}: field {field!r} must be a torch.nn.Module, got {type(value).__name__}")
    return value


_HEAD_ALIASES = {"mu": "μ", "logsigma": "logσ", "sigma": "σ"}


def bind_trunk_and_heads(cls_name: str, args: tuple, kwargs: dict, trunk_field: str, scale_field: str,
                         network: str, unit: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The field form ``(trunk, μ, scale)`` of the joint Gaussian encoders and decoders.

    Accepts the ASCII keywords ``mu``, ``logsigma``, ``sigma``; checks that both heads
    take the trunk's output and give the same number of ``unit``.
    """
    kwargs = {_HEAD_ALIASES.get(k, k): v for k, v in kwargs.items()}
    fields = (trunk_field, "μ", scale_field)
    b = bind_arguments(cls_name, args, kwargs, fields, 3)
    trunk, mu, scale = (check_module(b[f], cls_name, f) for f in fields)
    h = trailing_linear_out(trunk)
    for name, head in (("μ", mu), (scale_field, scale)):
        n = leading_linear_in(head)
        if h is not None and n is not None and h != n:
            raise ValueError(f"{cls_name}: the {name} head expects {n} input features but the {network} "
                             f"network outputs {h}")
    m_out, s_out = trailing_linear_out(mu), trailing_linear_out(scale)
    if m_out is not None and s_out is not None and m_out != s_out:
        raise ValueError(f"{cls_name}: the μ head outputs {m_out} {unit} but the {scale_field} head "
                         f"outputs {s_out}")
    return trunk, mu, scale
