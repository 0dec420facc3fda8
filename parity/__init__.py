"""Parity suite: numerical agreement with AutoEncoderToolkit.jl v0.1.2 on fixed seeds.

* :mod:`parity.oracle` -- an independent float64 NumPy re-implementation of the
  reference's formulas, and of the port's fused training step (it does not import
  ``autoencoder_toolkit``);
* :mod:`parity.julia_streams` -- the oracle's own implementation of Julia's random
  streams (``Random.seed!``, ``randn``, ``shuffle``, ``MersenneTwister``), which the
  cases' draws come from and the package's ``juliarng`` is compared with;
* :mod:`parity.cases_io` -- the case file format (``parity/case_format.md``);
* :mod:`parity.make_cases` -- the generator of the fixtures in ``parity/cases/``;
* :mod:`parity.runner` -- ``python -m parity``: runs every case through
  ``autoencoder_toolkit`` and compares with the expected values;
* ``parity/julia/make_cases.jl`` -- recomputes the cases with the reference itself.
"""
