"""The Julia package's ``utils`` module under its own name: schedules, batch sampling and centroids.

``autoencoder_toolkit.utils`` (and ``aet.utils``) is this module. Each function lives in
the module of its concern and is the same object here:

=====================  ==============================================  =================================
Julia ``utils``        here                                            lives in
=====================  ==============================================  =================================
``step_scheduler``     :func:`step_scheduler` (learning rate by epoch)  :mod:`.schedules`
``cycle_anneal``       :func:`cycle_anneal` (cyclical β)                :mod:`.schedules`
``shuffle_data``       :func:`shuffle_data` (samples in random order)   :mod:`autoencoder_toolkit.data.sampling`
``locality_sampler``   :func:`locality_sampler` (a local mini-batch)    :mod:`autoencoder_toolkit.data.sampling`
``centroids_kmeans``   :func:`centroids_kmeans`                         :mod:`autoencoder_toolkit.data.centroids`
``centroids_kmedoids`` :func:`centroids_kmedoids`                       :mod:`autoencoder_toolkit.data.centroids`
=====================  ==============================================  =================================

The schedules are used with :func:`adjust_` (Julia's ``Flux.Optimisers.adjust!``), also
here. Batch-first throughout: samples are in the first axis and indices are 0-based.
"""

from ..data.centroids import centroids_kmeans, centroids_kmedoids
from ..data.sampling import locality_sampler, shuffle_data
from ..outputs import adjust_
from .schedules import cycle_anneal, step_scheduler

__all__ = ["step_scheduler", "cycle_anneal", "shuffle_data", "locality_sampler", "centroids_kmeans",
           "centroids_kmedoids", "adjust_"]
