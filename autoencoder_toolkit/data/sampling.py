r"""Which samples go into a batch: a shuffle of the samples and the locality sampler.

Samples are in the first axis of ``data`` (``(N, D)``, ``(N, C, H, W)``); indices are
0-based. Every ``rng=`` is one of the package's generators (``None``, a
``numpy.random.Generator``, a ``torch.Generator``, a ``juliarng`` stream; see
:mod:`autoencoder_toolkit.random.draws`). NumPy, torch and CuPy data are accepted and
returned as they came.

These are the ``shuffle_data`` and ``locality_sampler`` of the Julia package's ``utils``
module (reachable here as ``autoencoder_toolkit.utils``).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..backends import array_kind, as_numpy, get_backend, permutation_like
from ..random.draws import check_rng

__all__ = ["shuffle_data", "locality_sampler"]


def _check_data(data: Any, name: str = "data") -> int:
    kind = array_kind(data)
    if kind not in ("numpy", "torch", "cupy"):
        raise TypeError(f"{name}: expected a NumPy array, a torch tensor or a CuPy array, got {type(data).__name__}")
    if data.ndim == 0 or data.shape[0] == 0:
        raise ValueError(f"{name}: expected samples in the first axis, got shape {tuple(data.shape)}")
    return int(data.shape[0])


def _count(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def shuffle_data(data: Any, *, rng: Any = None, seed: int | None = None) -> Any:
    """``data`` with its samples (first axis) in a uniformly random order: ``data[perm]``, a new array.

    With a ``juliarng`` stream the permutation is Julia's ``shuffle(rng, 1:N)``; with
    ``seed=k`` it is ``shuffle(MersenneTwister(k), 1:N)``, whatever ``rng`` is.

    The Julia package exports ``utils.shuffle_data`` without defining it in v0.1.2
    (calling it raises ``UndefVarError``); its development versions shuffled the columns
    (samples) of a matrix with the global generator, which is what this does for every
    array rank.
    """
    n = _check_data(data)
    check_rng(rng)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
    return data[permutation_like(n, data, rng=rng, seed=seed)]


def _neighbours(points: np.ndarray, flat: np.ndarray, dist_tree: Any, k: int) -> np.ndarray:
    """Indices ``(m, k)`` of the ``k`` nearest samples of ``flat`` to each of ``points``, nearest first."""
    if dist_tree is None:
        sq = (np.sum(points ** 2, axis=1)[:, None] + np.sum(flat ** 2, axis=1)[None, :]
              - 2.0 * points @ flat.T)
        return np.argsort(sq, axis=1, kind="stable")[:, :k]
    query = getattr(dist_tree, "query", None)
    if not callable(query):
        raise TypeError(f"dist_tree: expected None or a nearest-neighbour index with query(points, k) "
                        f"(scipy.spatial.KDTree, sklearn.neighbors.KDTree), got {type(dist_tree).__name__}")
    _, idx = query(points, k)
    return np.asarray(idx, dtype=np.int64).reshape(len(points), k)


def locality_sampler(data: Any, dist_tree: Any, n_primary: int, n_secondary: int, k_neighbors: int, *,
                     index: bool = False, rng: Any = None) -> Any:
    """A mini-batch of samples near each other (Skafte, Jørgensen & Hauberg, NeurIPS 2019).

    1. ``n_primary`` primary samples are drawn uniformly without replacement from the
       ``N`` samples of ``data`` (``(N, ...)``);
    2. for each primary sample, ``n_secondary`` samples are drawn uniformly without
       replacement from its ``k_neighbors`` nearest samples (Euclidean, the sample itself
       included, as a nearest-neighbour query on the data gives it).

    ``dist_tree`` is a nearest-neighbour index built on the samples flattened to
    ``(N, D)``, with ``query(points, k) -> (distances, indices)`` (``scipy.spatial.KDTree``
    or ``sklearn.neighbors.KDTree``: Julia's ``NearestNeighbors.KDTree``), or ``None`` for
    an exact search over all pairs.

    Returns the ``n_primary * (1 + n_secondary)`` indices, primaries first then each
    primary's secondaries in turn (``index=True``, an int64 NumPy array), or
    ``data[indices]``. The draws differ from Julia's ``StatsBase.sample``, so a
    ``juliarng`` stream does not give Julia's batch.
    """
    n = _check_data(data)
    n_primary = _count(n_primary, "n_primary")
    n_secondary = _count(n_secondary, "n_secondary", 0)
    k_neighbors = _count(k_neighbors, "k_neighbors")
    if n_secondary > k_neighbors:
        raise ValueError(f"n_secondary: expected at most k_neighbors = {k_neighbors}, got {n_secondary}")
    if n_primary > n:
        raise ValueError(f"n_primary: expected at most the {n} samples of data, got {n_primary}")
    if k_neighbors > n:
        raise ValueError(f"k_neighbors: expected at most the {n} samples of data, got {k_neighbors}")
    check_rng(rng)
    numpy = get_backend("numpy")
    flat = as_numpy(data).reshape(n, -1).astype(np.float64, copy=False)
    primary = numpy.permutation(n, rng=rng)[:n_primary]
    near = _neighbours(flat[primary], flat, dist_tree, k_neighbors)
    secondary = [near[i][numpy.permutation(k_neighbors, rng=rng)[:n_secondary]] for i in range(n_primary)]
    idx = np.concatenate([primary, *secondary]).astype(np.int64)
    if index:
        return idx
    backend = get_backend(data)
    return data[backend.asarray(idx, dtype="int64", device=backend.device(data))]
