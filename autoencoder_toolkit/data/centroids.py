r"""A few representative samples of a data set: k-means centres and k-medoids.

Samples are in the first axis (``x`` is ``(N, D)`` or ``(N, C, H, W)``; a sample is
flattened to ``D`` values for the clustering) and cluster labels are 0-based. These are
the ``centroids_kmeans`` and ``centroids_kmedoids`` of the Julia package's ``utils``
module (reachable here as ``autoencoder_toolkit.utils``), used there to pick the
reference points of a Riemannian-Hamiltonian VAE's metric.

* k-means minimises :math:`\sum_i \lVert x_i - c_{a(i)}\rVert^2` over the centres
  :math:`c_1..c_k` (not necessarily samples) and the assignments :math:`a`; Lloyd's
  iterations from a k-means++ start (scikit-learn's ``KMeans``, one start, as Julia's
  ``Clustering.kmeans``).
* k-medoids minimises :math:`\sum_i d(x_i, m_{a(i)})` over medoids :math:`m_j` that are
  samples: from a k-means++ start on the distances, each sample joins its nearest
  medoid, then each cluster's medoid becomes the member with the smallest summed
  distance to the others, until the medoids stop changing (the alternating algorithm of
  Julia's ``Clustering.kmedoids``).

The random starts come from ``rng``: ``None`` (fresh entropy), an integer seed or a
``numpy.random.Generator``. They are not Clustering.jl's draws, so the same seed need not
give Julia's clusters; well-separated clusters come out the same.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np

from ..backends import array_kind, as_numpy, get_backend

__all__ = ["centroids_kmeans", "centroids_kmedoids"]

_MAX_ITER = 200


def _flat(x: Any, n_centroids: Any) -> tuple[np.ndarray, int]:
    kind = array_kind(x)
    if kind not in ("numpy", "torch", "cupy"):
        raise TypeError(f"x: expected a NumPy array, a torch tensor or a CuPy array, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x: expected samples in the first axis, (N, D) or (N, ...), got shape {tuple(x.shape)}")
    n = int(x.shape[0])
    if isinstance(n_centroids, bool) or not isinstance(n_centroids, numbers.Integral) or not 1 <= n_centroids <= n:
        raise ValueError(f"n_centroids: expected an integer from 1 to the {n} samples of x, got {n_centroids!r}")
    flat = as_numpy(x).reshape(n, -1).astype(np.float64)
    if not np.all(np.isfinite(flat)):
        raise ValueError("x: expected finite values, got NaN or infinite entries")
    return flat, int(n_centroids)


def _generator(rng: Any) -> np.random.Generator:
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng() if rng is None else rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected None, an integer seed or a numpy.random.Generator, got {type(rng).__name__}")


def _like(values: np.ndarray, x: Any) -> Any:
    backend = get_backend(x)
    return backend.asarray(values, dtype=x.dtype, device=backend.device(x))


def centroids_kmeans(x: Any, n_centroids: int, *, reshape_centroids: bool = True, assign: bool = False,
                     rng: Any = None) -> Any:
    """The ``n_centroids`` k-means centres of the samples of ``x``, ``(k, D)`` (or ``(k, *sample_shape)``).

    With ``reshape_centroids`` (the default) the centres of image-like samples get the
    samples' shape back; otherwise they stay flat ``(k, D)``. With ``assign=True`` the
    result is ``(centres, labels)``, ``labels[i]`` being the 0-based cluster of sample
    ``i``. The centres have ``x``'s array kind and dtype; the labels are an int64 NumPy
    array.
    """
    from sklearn.cluster import KMeans  # scikit-learn loads in about a second: only when clustering

    flat, k = _flat(x, n_centroids)
    seed = int(_generator(rng).integers(2 ** 31 - 1))
    fit = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=_MAX_ITER, random_state=seed).fit(flat)
    centres = fit.cluster_centers_
    if reshape_centroids:
        centres = centres.reshape(k, *x.shape[1:])
    centres = _like(centres, x)
    return (centres, fit.labels_.astype(np.int64)) if assign else centres


def _kmedoids(dist: np.ndarray, k: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Medoid indices ``(k,)`` and labels ``(n,)`` for the distance matrix ``dist`` ``(n, n)``."""
    n = dist.shape[0]
    medoids = [int(gen.integers(n))]
    for _ in range(1, k):  # k-means++ on the distances: the next medoid far from the chosen ones
        weight = np.min(dist[:, medoids], axis=1) ** 2
        total = weight.sum()
        medoids.append(int(gen.choice(n, p=weight / total)) if total > 0 else
                       int(gen.choice(np.setdiff1d(np.arange(n), medoids))))
    med = np.array(medoids, dtype=np.int64)
    for _ in range(_MAX_ITER):
        labels = np.argmin(dist[:, med], axis=1)
        new = med.copy()
        for j in range(k):
            members = np.flatnonzero(labels == j)
            if members.size:
                new[j] = members[np.argmin(dist[np.ix_(members, members)].sum(axis=1))]
        if np.array_equal(new, med):
            break
        med = new
    return med, np.argmin(dist[:, med], axis=1).astype(np.int64)


def centroids_kmedoids(x: Any, n_centroids: int, dist: str | Callable[..., float] = "euclidean", *,
                       assign: bool = False, rng: Any = None) -> Any:
    """The ``n_centroids`` k-medoids of the samples of ``x``: ``x[medoids]``, samples of ``x`` itself.

    ``dist`` is the distance between two flattened samples: a metric name of
    ``scipy.spatial.distance.cdist`` (``"euclidean"``, the default as in Julia,
    ``"cityblock"``, ``"cosine"``, ...) or a function ``f(u, v) -> float`` (Julia's
    ``Distances.PreMetric``). With ``assign=True`` the result is ``(medoids, labels)``
    with 0-based labels (an int64 NumPy array).
    """
    from scipy.spatial.distance import cdist

    flat, k = _flat(x, n_centroids)
    if not (isinstance(dist, str) or callable(dist)):
        raise TypeError(f"dist: expected a metric name or a function f(u, v), got {type(dist).__name__}")
    pairwise = cdist(flat, flat, metric=dist)
    medoids, labels = _kmedoids(pairwise, k, _generator(rng))
    backend = get_backend(x)
    chosen = x[backend.asarray(medoids, dtype="int64", device=backend.device(x))]
    return (chosen, labels) if assign else chosen
