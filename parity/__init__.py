"""Parity suite: numerical agreement with AutoEncoderToolkit.jl v0.1.2 on fixed seeds.

* :mod:`parity.oracle` -- an independent float64 NumPy re-implementation of the
  reference's formulas (it does not import ``autoencoder_toolkit``);
* :mod:`parity.cases_io` -- the case file format (``parity/case_format.md``);
* :mod:`parity.make_cases` -- the generator of the fixtures in ``parity/cases/``;
* :mod:`parity.runner` -- ``python -m parity``: runs every case through
  ``autoencoder_toolkit`` and compares with the expected values;
* ``parity/julia/make_cases.jl`` -- recomputes the cases with the reference itself.
"""
