"""Hypothesis profiles of the test suite, chosen by ``HYPOTHESIS_PROFILE``.

* ``ci`` (the default): derandomized (the examples are a fixed function of each test),
  no example database, a fixed number of examples per test. Two runs of the suite try
  exactly the same inputs, so a green run stays green.
* ``deep``: random seeds, no database, and ``AET_FUZZ_SCALE`` (default 50) times as
  many examples per test: the search for new failures. Hypothesis prints the seed and
  the failing example to reproduce with ``@seed(...)``/``@reproduce_failure``.

Tests declare their example counts with :func:`fuzz` instead of ``settings`` so that the
deep profile scales them.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_COMMON = dict(deadline=None, database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("deep", derandomize=False, **_COMMON)
if PROFILE not in ("ci", "deep"):
    raise ValueError(f"HYPOTHESIS_PROFILE: expected 'ci' or 'deep', got {PROFILE!r}")
settings.load_profile(PROFILE)

#: How many times the ``ci`` example count each test runs with.
SCALE = int(os.environ.get("AET_FUZZ_SCALE", "50")) if PROFILE == "deep" else 1


def fuzz(max_examples: int, **kwargs: object) -> settings:
    """``settings`` with ``max_examples`` examples in CI, scaled by :data:`SCALE` in the deep profile."""
    return settings(max_examples=max_examples * SCALE, **kwargs)
