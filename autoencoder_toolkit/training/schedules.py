r"""Learning-rate and β schedules by epoch: ``step_scheduler`` and ``cycle_anneal``.

These are the schedules of the Julia package's ``utils`` module (reachable here as
``autoencoder_toolkit.utils``). Epochs count from 1, as in Julia. A Julia loop

.. code-block:: julia

    Flux.Optimisers.adjust!(opt, utils.step_scheduler(epoch, epoch_change, rates))
    β = utils.cycle_anneal(epoch, n_epoch, n_cycles)

is, line for line,

.. code-block:: python

    aet.adjust_(opt, utils.step_scheduler(epoch, epoch_change, rates))
    β = utils.cycle_anneal(epoch, n_epoch, n_cycles)

* :func:`step_scheduler`: piecewise-constant rates. ``epoch_change`` lists the last
  epoch of each rate (sorted together with ``learning_rates``): the rate of ``epoch`` is
  the one of the first ``epoch_change[j] >= epoch``, and the last rate after the last
  change.
* :func:`cycle_anneal`: the cyclical β schedule of Fu et al. (NAACL 2019,
  `arXiv:1903.10145 <https://arxiv.org/abs/1903.10145>`_). With the cycle length
  :math:`P = n_{epoch}/n_{cycles}` and the position in the cycle
  :math:`τ = ((e-1) \bmod \lceil P\rceil)/P`, β rises linearly from ``βmin`` to ``βmax``
  over the fraction ``frac`` of the cycle, then stays at ``βmax``:
  :math:`β = (β_{max}-β_{min})\,τ/\mathrm{frac} + β_{min}` for :math:`τ \le \mathrm{frac}`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from ..backends import float_dtype_name

__all__ = ["step_scheduler", "cycle_anneal"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite real number, got {value!r}")
    return float(value)


def step_scheduler(epoch: int, epoch_change: Sequence[int], learning_rates: Sequence[float]) -> float:
    """The learning rate of ``epoch``: ``learning_rates[j]`` for the first ``epoch_change[j] >= epoch``.

    ``epoch_change`` and ``learning_rates`` have equal lengths; they are sorted together by
    epoch (the caller's lists are left as they are). After the last change the last rate
    holds. For ``epoch_change = [1, 3, 5, 7]`` and ``learning_rates = [0.1, 0.2, 0.3, 0.4]``,
    epoch 1 has 0.1, epochs 2-3 have 0.2, 4-5 have 0.3 and every later epoch 0.4.

    Raises ``ValueError`` when the lengths differ (Julia: ``ErrorException``).
    """
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise TypeError(f"epoch: expected an integer, got {type(epoch).__name__}")
    changes = [int(c) for c in epoch_change]
    rates = [_real(r, "learning_rates") for r in learning_rates]
    if len(changes) != len(rates):
        raise ValueError(f"learning_rates: expected one rate per entry of epoch_change ({len(changes)}), "
                         f"got {len(rates)}")
    if not changes:
        raise ValueError("epoch_change: expected at least one epoch, got none")
    order = sorted(range(len(changes)), key=changes.__getitem__)
    for j in order:
        if epoch <= changes[j]:
            return rates[j]
    return rates[order[-1]]


def cycle_anneal(epoch: int, n_epoch: int, n_cycles: int, *, frac: float = 0.5, βmax: float = 1.0,
                 βmin: float = 0.0, T: Any = "Float32") -> float:
    """The cyclically annealed β of ``epoch`` (from 1) over ``n_epoch`` epochs in ``n_cycles`` cycles.

    ``frac`` (in [0, 1]) is the fraction of each cycle over which β rises from ``βmin`` to
    ``βmax``. ``T`` is the floating type the value is rounded to (Julia's keyword: Float32
    by default, so the numbers are Julia's); the result is a Python float.

    For ``n_epoch = 10, n_cycles = 2, frac = 0.5``: epochs 1-5 give 0, 0.4, 0.8, 1, 1 and
    the next cycle repeats them.

    Raises ``ValueError`` for ``frac`` outside [0, 1] (Julia: ``ArgumentError``). With
    ``frac = 0`` β is ``βmax`` throughout (Julia's formula gives ``0/0 = NaN`` at the
    first epoch of every cycle).
    """
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise TypeError(f"epoch: expected an integer, got {type(epoch).__name__}")
    n_epoch = _positive_int(n_epoch, "n_epoch")
    n_cycles = _positive_int(n_cycles, "n_cycles")
    frac = _real(frac, "frac")
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac: expected a fraction in [0, 1], got {frac!r}")
    β_max, β_min = _real(βmax, "βmax"), _real(βmin, "βmin")
    dtype = np.dtype(float_dtype_name(T))
    period = n_epoch / n_cycles
    τ = math.fmod(float(epoch - 1), math.ceil(period))
    τ = (τ + math.ceil(period) if τ < 0 else τ) / period
    β = (β_max - β_min) * τ / frac + β_min if (frac > 0 and τ <= frac) else β_max
    return float(dtype.type(β))
