"""Choose the array-API namespace of a call's inputs, refusing mixed array kinds."""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = ["array_namespace", "array_kind"]


def array_kind(a: Any) -> str:
    """``"torch"``, ``"numpy"``, ``"cupy"`` or the type name of ``a``."""
    if array_api_compat.is_torch_array(a):
        return "torch"
    if array_api_compat.is_cupy_array(a):
        return "cupy"
    if array_api_compat.is_numpy_array(a):
        return "numpy"
    return type(a).__name__


#: The namespace of each array type met so far (the lookup runs on every loss evaluation).
_BY_TYPE: dict[type, Any] = {}


def array_namespace(*arrays: Any, names: tuple[str, ...] | None = None) -> Any:
    """The array-API namespace shared by ``arrays`` (Python scalars and ``None`` ignored).

    Raises
    ------
    TypeError
        If the arrays come from different libraries (for example a NumPy array and a
        torch tensor), naming each argument and its kind, or if an argument is not an
        array at all.
    """
    present = [(i, a) for i, a in enumerate(arrays) if a is not None and not isinstance(a, (int, float))]
    if not present:
        raise TypeError("expected at least one array argument")
    kind = type(present[0][1])
    if kind in _BY_TYPE and all(type(a) is kind for _, a in present):
        return _BY_TYPE[kind]
    try:
        namespace = array_api_compat.array_namespace(*(a for _, a in present))
        if all(type(a) is kind for _, a in present):
            _BY_TYPE[kind] = namespace
        return namespace
    except TypeError:
        labels = names or tuple(f"argument {i}" for i in range(len(arrays)))
        desc = ", ".join(f"{labels[i]} is {array_kind(a)}" for i, a in present)
        raise TypeError(
            f"arrays of different kinds in one call ({desc}); convert them to one kind first, "
            "e.g. with autoencoder_toolkit.backends.get_backend('torch').asarray"
        ) from None
