"""Array backends: NumPy, torch and CuPy.

The pure functions of this package (log-likelihoods, KL terms, priors, posteriors, the
mutual-information bound, latent shuffles) are written once against the array API
standard through ``array-api-compat``; :func:`array_namespace` picks the namespace from
the inputs and refuses to mix kinds.
"""

from ._namespace import array_namespace, array_kind

__all__ = ["array_namespace", "array_kind"]
