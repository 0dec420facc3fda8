"""Array backends: NumPy, torch and CuPy.

A :class:`Backend` gathers what the package needs from one array library: its array-API
namespace (through array-api-compat), devices, conversions to and from NumPy (DLPack
where memory can be shared) and random draws from seeded generators. Backends are found
by name or by array::

    from autoencoder_toolkit.backends import get_backend

    bk = get_backend("numpy")        # or "torch", "cupy"
    bk = get_backend(some_array)     # the backend the array belongs to
    x = bk.asarray(torch_tensor)     # a NumPy view of a CPU tensor (no copy)

The pure functions of the package (:mod:`autoencoder_toolkit.densities`: log-likelihoods,
KL terms, priors, posteriors, the reparameterisation, the mutual-information bound) are
written once against the array API; :func:`array_namespace` picks the namespace from the
inputs and refuses to mix kinds. On CuPy arrays they run the fused kernels of
:mod:`.cupy_kernels` (see :mod:`.dispatch`); :mod:`.torch_bridge` puts those kernels
into torch's autograd for ``kernels="cupy"`` training. :mod:`.layout` converts arrays
between Julia's batch-last indexing and this package's batch-first layout.

Importing this package imports neither torch nor CuPy; each backend imports its library
on first use.
"""

from ._namespace import array_kind, array_namespace
from .base import (Backend, BackendUnavailableError, as_numpy, available_backends, backend_names, float_dtype_name,
                   get_backend, normal_like, permutation_like, register_backend, shuffle_rows)
from .dispatch import cupy_kernels_enabled, set_cupy_kernels, use_cupy_kernels
from .layout import from_julia_layout, to_julia_layout

__all__ = [
    "array_namespace",
    "array_kind",
    "Backend",
    "BackendUnavailableError",
    "get_backend",
    "register_backend",
    "backend_names",
    "available_backends",
    "as_numpy",
    "float_dtype_name",
    "normal_like",
    "permutation_like",
    "shuffle_rows",
    "cupy_kernels_enabled",
    "set_cupy_kernels",
    "use_cupy_kernels",
    "from_julia_layout",
    "to_julia_layout",
]
