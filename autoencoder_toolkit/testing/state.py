"""What a model and its optimizers hold, captured and compared exactly: the kit's one notion of "unchanged".

A check that runs a training step needs to know, bit for bit, whether the step changed
anything: the model's parameters and buffers, and every optimizer's state (Adam's
moments, its step counts) and settings (learning rates, betas). :func:`snapshot`
captures all of that; :func:`differences` lists, by name, what differs from a snapshot
now; :func:`assert_unchanged` turns a non-empty list into an ``AssertionError``.

Tensor comparisons shared by the checks live here too: :func:`assert_same_tensors`
(names, dtypes, shapes and values all equal) and :func:`assert_close` (equal within a
tolerance relative to the largest magnitude expected, the float32 rounding of a result
computed two ways).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..backends import as_numpy

__all__ = ["optimizers_of", "Snapshot", "snapshot", "differences", "assert_unchanged", "non_finite",
           "assert_same_tensors", "assert_close", "max_abs_error", "name_list"]


def optimizers_of(opt: Any) -> dict[str, torch.optim.Optimizer]:
    """The optimizers of ``opt`` by the names messages use.

    ``opt`` is one ``torch.optim.Optimizer`` (named ``"opt"``), a named tuple of them such
    as the ``OptimizerPair(vae, mi)`` of :func:`autoencoder_toolkit.setup` (named
    ``"opt.vae"``, ``"opt.mi"``), a mapping of them, or ``None`` (no optimizer).
    """
    if opt is None:
        return {}
    if isinstance(opt, torch.optim.Optimizer):
        return {"opt": opt}
    if isinstance(opt, Mapping):
        items = list(opt.items())
    elif hasattr(opt, "_fields"):
        items = [(f, getattr(opt, f)) for f in opt._fields]
    else:
        raise TypeError(f"opt: expected an optimizer, an optimizer pair or a mapping of optimizers, "
                        f"got {type(opt).__name__}")
    out = {}
    for name, o in items:
        if not isinstance(o, torch.optim.Optimizer):
            raise TypeError(f"opt.{name}: expected a torch.optim.Optimizer, got {type(o).__name__}")
        out[f"opt.{name}"] = o
    return out


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


@dataclass
class Snapshot:
    """A copy of a model's tensors and of its optimizers' states, taken by :func:`snapshot`."""

    tensors: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]


def _optimizer_record(optimizer: torch.optim.Optimizer, names: Mapping[int, str]) -> dict[str, Any]:
    """An optimizer's state keyed by parameter name, and its settings (everything but the parameters)."""
    state = {}
    for p, entries in optimizer.state.items():
        state[names.get(id(p), f"<parameter {tuple(p.shape)} outside the model>")] = {
            k: _clone(v) for k, v in entries.items()}
    groups = [{k: _clone(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return {"state": state, "groups": groups}


def _names(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def snapshot(model: nn.Module, opt: Any = None) -> Snapshot:
    """Copies of every parameter and buffer of ``model`` and of the state and settings of ``opt``."""
    tensors = {name: t.detach().clone() for name, t in model.state_dict(keep_vars=True).items()}
    names = _names(model)
    return Snapshot(tensors, {k: _optimizer_record(o, names) for k, o in optimizers_of(opt).items()})


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b) or (
            a.is_floating_point() and torch.equal(torch.isnan(a), torch.isnan(b))
            and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return a is b


def differences(model: nn.Module, opt: Any, before: Snapshot) -> list[str]:
    """What differs now from ``before``: tensor names, and ``"<optimizer> state of <param>"`` entries.

    Values are compared bit for bit (NaN equal to NaN at the same place).
    """
    now = snapshot(model, opt)
    found = [name for name, t in before.tensors.items() if name not in now.tensors or not _equal(t, now.tensors[name])]
    found += [name for name in now.tensors if name not in before.tensors]
    for oname, rec in before.optimizers.items():
        cur = now.optimizers.get(oname, {"state": {}, "groups": []})
        for pname in sorted(set(rec["state"]) | set(cur["state"])):
            a, b = rec["state"].get(pname), cur["state"].get(pname)
            if a is None or b is None or a.keys() != b.keys() or not all(_equal(a[k], b[k]) for k in a):
                found.append(f"the {oname} state of {pname}")
        if len(rec["groups"]) != len(cur["groups"]) or not all(
                g.keys() == h.keys() and all(_equal(g[k], h[k]) for k in g) for g, h in zip(rec["groups"],
                                                                                           cur["groups"])):
            found.append(f"the settings of {oname}")
    return found


def name_list(names: list[str], limit: int = 4) -> str:
    """``"a, b, c"`` or ``"a, b, c, d and 5 more"``."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


def assert_unchanged(model: nn.Module, opt: Any, before: Snapshot, context: str) -> None:
    """Raise ``AssertionError`` naming what changed since ``before``; ``context`` says what should not have."""
    found = differences(model, opt, before)
    if found:
        raise AssertionError(f"{context} changed {len(found)} thing(s): {name_list(found)}")


def non_finite(model: nn.Module, opt: Any = None) -> list[str]:
    """Names of the parameters, buffers and optimizer state entries that hold a NaN or an infinity."""
    found = [name for name, t in model.state_dict(keep_vars=True).items()
             if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())]
    names = _names(model)
    for oname, o in optimizers_of(opt).items():
        for p, entries in o.state.items():
            for key, v in entries.items():
                if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    found.append(f"{oname} {key} of {names.get(id(p), 'a parameter outside the model')}")
    return found


def assert_same_tensors(actual: Mapping[str, Any], expected: Mapping[str, Any], what: str = "tensors") -> None:
    """The same names, and for each the same dtype, shape and bytes (bit for bit: ``-0.0`` is not ``0.0``).

    Arrays of any kind are accepted (torch tensors, NumPy or CuPy arrays); values are
    compared on the CPU.
    """
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        raise AssertionError(f"{what}: {name_list(missing)} missing (expected {len(expected)} tensors)")
    if extra:
        raise AssertionError(f"{what}: unexpected {name_list(extra)}")
    for name in expected:
        a, e = actual[name], expected[name]
        a_np, e_np = as_numpy(a.detach() if isinstance(a, torch.Tensor) else a), \
            as_numpy(e.detach() if isinstance(e, torch.Tensor) else e)
        if a_np.dtype != e_np.dtype or a_np.shape != e_np.shape:
            raise AssertionError(f"{what}: {name} is {a_np.dtype} {a_np.shape}, expected {e_np.dtype} {e_np.shape}")
        if a_np.tobytes() != e_np.tobytes():
            err = max_abs_error(a_np, e_np) if a_np.dtype.kind in "fciub" else float("nan")
            raise AssertionError(f"{what}: {name} differs (max abs difference {err:.3g})")


def max_abs_error(actual: Any, expected: Any) -> float:
    """The largest ``|actual - expected|`` in float64 (NaN if either holds a NaN where the other does not)."""
    a = as_numpy(actual).astype(np.float64)
    e = as_numpy(expected).astype(np.float64)
    if a.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        d = np.abs(a - e)
    same_nan = np.isnan(a) & np.isnan(e)
    d = np.where(same_nan, 0.0, d)
    return float(np.nan) if np.isnan(d).any() else float(d.max())


def assert_close(actual: Any, expected: Any, rtol: float = 1e-5, what: str = "value", atol: float = 0.0) -> None:
    """``actual`` equals ``expected`` within ``rtol`` times the largest ``|expected|`` (plus ``atol``).

    The tolerance is relative to the array's scale, not element by element: float32
    results computed in two ways differ by a few units of rounding of their largest
    terms. Shapes must be equal. Arrays of any kind (torch, NumPy, CuPy) are accepted.
    """
    a = as_numpy(actual.detach() if isinstance(actual, torch.Tensor) else actual)
    e = as_numpy(expected.detach() if isinstance(expected, torch.Tensor) else expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape}, expected {e.shape}")
    scale = max(float(np.abs(e.astype(np.float64)).max(initial=0.0)), 1e-30)
    err = max_abs_error(a, e)
    if not err <= rtol * scale + atol:
        raise AssertionError(f"{what}: max abs error {err:.3g} > {rtol:g} x {scale:.3g}"
                             + (f" + {atol:g}" if atol else ""))
