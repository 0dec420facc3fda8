r"""Julia's batch-last layout and this package's batch-first layout, for arrays read from Julia files.

Julia stores arrays column-major with the samples in the last axis: a data batch is
``(D, B)``, an image batch ``(W, H, C, B)``, and ``x[d, b]`` is element ``d`` of sample
``b``. This package puts the samples in the first axis, row-major: ``(B, D)``,
``(B, C, H, W)``. Reversing the order of the axes maps one onto the other without moving
any element in memory:

.. math::
    y[i_n, \dots, i_2, i_1] = x[i_1, i_2, \dots, i_n]

Whether an array needs it depends on how it reached Python. A file written by HDF5.jl
and read with ``h5py``, or a Julia array's raw bytes read into a C-order array of the
reversed shape, is already batch-first. A ``.npy`` written by NPZ.jl (Fortran order) and
read with ``numpy.load``, a ``.mat`` file, or an array handed over by juliacall keeps
Julia's indexing (``shape == (D, B)``): :func:`from_julia_layout` turns it into a batch
and :func:`to_julia_layout` turns a batch back.

A square batch (``D == B``) cannot be told apart from its transpose by its shape, so no
function in this package can check it for you: convert it explicitly.
"""

from __future__ import annotations

from typing import Any

from ._namespace import array_kind, array_namespace

__all__ = ["from_julia_layout", "to_julia_layout"]


def _reversed_axes(a: Any, name: str) -> Any:
    xp = array_namespace(a, names=(name,))
    ndim = getattr(a, "ndim", None)
    if not isinstance(ndim, int) or ndim == 0:
        raise ValueError(f"{name}: expected an array with at least one axis, got {type(a).__name__} "
                         f"with shape {tuple(getattr(a, 'shape', ()))}")
    return xp.permute_dims(a, tuple(range(ndim - 1, -1, -1)))


def from_julia_layout(a: Any) -> Any:
    """A Julia-indexed array (samples last, e.g. ``(D, B)`` or ``(W, H, C, B)``) as a batch ``(B, D)``, ``(B, C, H, W)``.

    The axes are reversed (``y[b, d] = a[d, b]``) and the result is made C-contiguous
    (no copy when ``a`` is Fortran-ordered, as a column-major Julia array read from a
    ``.npy`` file is). NumPy, torch and CuPy arrays are accepted; the kind is kept.
    """
    y = _reversed_axes(a, "a")
    kind = array_kind(y)
    if kind == "torch":
        return y.contiguous()
    if kind in ("numpy", "cupy") and not y.flags.c_contiguous:
        return y.copy(order="C")
    return y


def to_julia_layout(a: Any) -> Any:
    """A batch (samples first, ``(B, D)`` or ``(B, C, H, W)``) indexed as Julia indexes it: ``(D, B)``, ``(W, H, C, B)``.

    The inverse of :func:`from_julia_layout`: the axes are reversed without a copy (a
    C-contiguous batch becomes a Fortran-ordered view, which ``numpy.save`` writes as the
    column-major array NPZ.jl reads back).
    """
    return _reversed_axes(a, "a")
