"""The :class:`Backend` interface and the registry of array backends.

A backend is one array library seen through four concerns:

* its array-API namespace (``backend.xp``, from array-api-compat) and the raw library
  (``backend.module``: ``numpy``, ``torch`` or ``cupy``);
* devices: :meth:`Backend.device`, :meth:`Backend.default_device`,
  :meth:`Backend.to_device`;
* conversion: :meth:`Backend.asarray` takes an array of *any* backend (or a nested
  list) and returns one of this backend, through DLPack where the memory can be shared
  (torch on the CPU and NumPy; torch and CuPy on the same GPU), copying only across
  devices; :meth:`Backend.to_numpy` and :meth:`Backend.from_numpy`;
* random draws: :meth:`Backend.default_rng` makes a seeded generator of the library;
  :meth:`Backend.standard_normal` and :meth:`Backend.permutation` accept that generator
  or any other generator this package accepts as ``rng`` (a ``numpy.random.Generator``,
  a ``torch.Generator``, a Julia-compatible stream from
  :mod:`autoencoder_toolkit.random.juliarng`), and draw the same numbers for the same
  generator whatever the backend (:mod:`autoencoder_toolkit.random.draws` draws them),
  so that a NumPy model and a torch model fed the same ``rng`` see the same noise.
  :func:`normal_like`, :func:`permutation_like` and :func:`shuffle_rows` draw for a
  given array: its kind, dtype and device.

:func:`get_backend` returns a backend by name (``"numpy"``, ``"torch"``, ``"cupy"``), by
array (the backend the array belongs to) or passes a :class:`Backend` through.
Libraries are imported on first use: ``get_backend("numpy")`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

import numpy as np

from ..random import draws
from ._namespace import array_kind

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "get_backend",
    "register_backend",
    "same_shape",
    "backend_names",
    "available_backends",
    "as_numpy",
    "float_dtype_name",
    "normal_like",
    "permutation_like",
    "shuffle_rows",
]

#: dtype names understood by the backends (``bfloat16`` by torch only).
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")


def float_dtype_name(T: Any, argument: str = "T") -> str:
    """``"float16"``, ``"float32"`` or ``"float64"`` for a floating type given as Julia names it or as a dtype.

    Accepted: Julia's names (``"Float32"``, ``"Float64"``, ``"Float16"``), dtype names,
    NumPy and torch dtypes (``np.float64``, ``torch.float32``) and Python's ``float``
    (``float64``, as Julia's ``Float64``).
    """
    if T is float:
        return "float64"
    try:
        name = T.lower() if isinstance(T, str) else _dtype_name(T)
    except ValueError:
        name = ""
    if name not in ("float16", "float32", "float64"):
        raise TypeError(f"{argument}: expected a floating type (Float16, Float32, Float64, or a NumPy or torch "
                        f"float dtype), got {T!r}")
    return name


class BackendUnavailableError(ImportError):
    """A backend's library is not installed or has no usable device."""


def _dtype_name(dtype: Any) -> str:
    if dtype is None:
        return "float32"
    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__ == "torch":  # a torch dtype: "torch.float32"
        name = str(dtype).rpartition(".")[2]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype)
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    return name


class Backend:
    """One array library: namespace, devices, conversions and random draws.

    Subclasses set :attr:`name` and implement the methods marked below; the random
    draws from foreign generators are shared here.
    """

    #: The registry name: ``"numpy"``, ``"torch"`` or ``"cupy"``.
    name: str = ""

    # -- namespace ------------------------------------------------------------------
    @property
    def module(self) -> Any:
        """The library itself (``numpy``, ``torch`` or ``cupy``)."""
        raise NotImplementedError

    @property
    def xp(self) -> Any:
        """The library's array-API namespace (through array-api-compat)."""
        raise NotImplementedError

    def is_array(self, a: Any) -> bool:
        """Whether ``a`` is an array of this backend."""
        return array_kind(a) == self.name

    def dtype(self, dtype: Any) -> Any:
        """This library's dtype for a name (``"float32"``), a NumPy dtype or a torch dtype."""
        return getattr(self.module, _dtype_name(dtype))

    # -- devices --------------------------------------------------------------------
    def default_device(self) -> Any:
        """The device new arrays go to."""
        raise NotImplementedError

    def device(self, a: Any) -> Any:
        """The device holding ``a``."""
        raise NotImplementedError

    def to_device(self, a: Any, device: Any) -> Any:
        """``a`` on ``device`` (``a`` itself when it is already there)."""
        raise NotImplementedError

    # -- conversion -----------------------------------------------------------------
    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        """``a`` (an array of any backend, a scalar or a nested list) as an array of this backend.

        Memory is shared where the libraries allow it (DLPack); a copy is made only
        across devices or for a change of ``dtype``.
        """
        raise NotImplementedError

    def to_numpy(self, a: Any) -> np.ndarray:
        """A NumPy array with the values of ``a`` (shared memory for CPU arrays)."""
        raise NotImplementedError

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        """An array of this backend holding ``a``'s values."""
        return self.asarray(np.asarray(a), device=device)

    def from_dlpack(self, a: Any) -> Any:
        """Import any DLPack-capable array without a copy."""
        raise NotImplementedError

    # -- random draws ---------------------------------------------------------------
    def default_rng(self, seed: int | None = None, *, device: Any = None) -> Any:
        """A new generator of this library, seeded with ``seed`` (fresh entropy if ``None``)."""
        raise NotImplementedError

    def _native_normal(self, rng: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        """Draws from ``rng`` when it is this library's own generator (or ``None``), else ``NotImplemented``."""
        raise NotImplementedError

    def _native_permutation(self, rng: Any, n: int, device: Any) -> Any:
        raise NotImplementedError

    def standard_normal(self, shape: Sequence[int], *, rng: Any = None, dtype: Any = "float32",
                        device: Any = None) -> Any:
        """Standard normal draws of ``shape``.

        ``rng`` is ``None`` (the library's global generator), this library's generator,
        a ``numpy.random.Generator``, a ``torch.Generator`` or a juliarng stream. The
        same generator gives the same numbers on every backend (drawn in float32 from
        the generator's own library, then converted), matching what the torch models
        draw from it.
        """
        shape = tuple(int(s) for s in shape)
        dtype_name = _dtype_name(dtype)
        out = self._native_normal(rng, shape, dtype_name, device)
        if out is not NotImplemented:
            return out
        return self.asarray(draws.normal(rng, shape), dtype=dtype_name, device=device)

    def permutation(self, n: int, *, rng: Any = None, seed: int | None = None, device: Any = None) -> Any:
        """A random permutation of ``0..n-1`` (int64).

        ``seed=k`` gives Julia's ``shuffle(MersenneTwister(k), 1:n)`` made 0-based, as
        ``shuffle_latent(z, seed=k)`` does; otherwise ``rng`` as in :meth:`standard_normal`.
        """
        n = int(n)
        if seed is not None:
            return self.asarray(draws.seeded_permutation(seed, n), dtype="int64", device=device)
        out = self._native_permutation(rng, n, device)
        if out is not NotImplemented:
            return out
        return self.asarray(draws.permutation(rng, n), dtype="int64", device=device)

    def __repr__(self) -> str:
        return f"<{self.name} backend>"


def as_numpy(a: Any) -> np.ndarray:
    """Any backend's array (or a nested list) as a NumPy array, sharing memory for CPU arrays."""
    kind = array_kind(a)
    if kind == "torch":
        t = a.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        return np.from_dlpack(t.resolve_conj().resolve_neg())
    if kind == "cupy":
        return a.get()
    return np.asarray(a)


def normal_like(like: Any, rng: Any = None) -> Any:
    """Standard normal draws with the shape, kind, dtype and device of the array ``like``."""
    backend = get_backend(like)
    return backend.standard_normal(tuple(like.shape), rng=rng, dtype=like.dtype, device=backend.device(like))


def permutation_like(n: int, like: Any, rng: Any = None, seed: int | None = None) -> Any:
    """A random permutation of ``0..n-1`` as an index array of ``like``'s kind and device.

    With ``seed`` set it is Julia's ``shuffle(MersenneTwister(seed), 1:n)`` (0-based),
    whatever ``rng`` is.
    """
    backend = get_backend(like)
    return backend.permutation(n, rng=rng, seed=seed, device=backend.device(like))


def shuffle_rows(z: Any, rng: Any = None, seed: int | None = None) -> Any:
    """``z`` with its rows (samples) permuted: ``z[perm]``.

    A stream that shuffles codes itself (one with a ``shuffle_rows(z)`` method, such as
    the distributed stream that permutes across processes) does so unless ``seed`` is set.
    """
    if seed is None and rng is not None and hasattr(rng, "shuffle_rows"):
        return rng.shuffle_rows(z)
    return z[permutation_like(z.shape[0], z, rng=rng, seed=seed)]


# ----------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------

_FACTORIES: dict[str, str | Callable[[], Backend]] = {
    "numpy": "autoencoder_toolkit.backends.numpy_backend:NumpyBackend",
    "torch": "autoencoder_toolkit.backends.torch_backend:TorchBackend",
    "cupy": "autoencoder_toolkit.backends.cupy_backend:CupyBackend",
}
_INSTANCES: dict[str, Backend] = {}


def register_backend(name: str, factory: str | Callable[[], Backend]) -> None:
    """Register a backend under ``name``: a zero-argument factory or ``"module:Class"``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """Every registered backend name (available or not)."""
    return tuple(_FACTORIES)


def _make(name: str) -> Backend:
    factory = _FACTORIES[name]
    if isinstance(factory, str):
        mod_name, _, cls_name = factory.partition(":")
        factory = getattr(importlib.import_module(mod_name), cls_name)
    backend = factory()
    if not isinstance(backend, Backend):
        raise TypeError(f"backend factory for {name!r} returned {type(backend).__name__}, not a Backend")
    return backend


def get_backend(spec: Any) -> Backend:
    """A backend by name (``"numpy"``, ``"torch"``, ``"cupy"``), by array, or a :class:`Backend` itself.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the registered ones).
    TypeError
        For an object that is neither a name, a backend nor an array of a known backend.
    BackendUnavailableError
        When the backend's library is missing or (CuPy) no CUDA device is usable.
    """
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name not in _FACTORIES:
            raise ValueError(f"backend: unknown backend {spec!r}; expected one of {', '.join(_FACTORIES)}")
    else:
        name = array_kind(spec)
        if name not in _FACTORIES:
            raise TypeError(
                f"backend: expected a backend name ({', '.join(_FACTORIES)}), a Backend or an array "
                f"of one of them, got {type(spec).__name__}"
            )
    backend = _INSTANCES.get(name)
    if backend is None:
        backend = _INSTANCES[name] = _make(name)
    return backend


def available_backends() -> tuple[str, ...]:
    """Names of the registered backends whose library imports and has a usable device."""
    names = []
    for name in _FACTORIES:
        try:
            get_backend(name)
        except (ImportError, RuntimeError):
            continue
        names.append(name)
    return tuple(names)


def same_shape(*named: tuple[str, Any]) -> None:
    """Raise ``ValueError`` naming the first argument whose shape differs from the first one's
    (``(name, array)`` pairs; a ``None`` array is skipped)."""
    items = [(name, a) for name, a in named if a is not None]
    first_name, first = items[0]
    for name, a in items[1:]:
        if tuple(a.shape) != tuple(first.shape):
            raise ValueError(f"{name}: expected the shape of {first_name} {tuple(first.shape)}, got {tuple(a.shape)}")
