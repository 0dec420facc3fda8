"""Numerical constants of the reference's formulas, shared by the formulas and their kernels."""

from __future__ import annotations

import numpy as np

__all__ = ["LOG2PI", "EPS_FLOAT32"]

#: ``log(2π)`` computed in float32, as the reference's ``log(2.0f0π)``.
LOG2PI: float = float(np.log(np.float32(2 * np.pi)))

#: Machine epsilon of float32, added inside the Bernoulli and categorical logs.
EPS_FLOAT32: float = float(np.finfo(np.float32).eps)
