"""Benchmarks of the InfoMax-VAE training step.

Run everything with ``python -m benchmarks.train_step`` (see ``--help``). Modules:

* :mod:`benchmarks.flops` -- analytic FLOP counts of each variant's training step;
* :mod:`benchmarks.authors_baseline` -- a plain-PyTorch baseline trained the way the
  InfoMax-VAE paper's reference code trains (one shared forward, two optimizers);
* :mod:`benchmarks.matmul` -- measured fp32 matrix-multiply throughput (the roofline);
* :mod:`benchmarks.train_step` -- the harness that times, measures memory and reports.
"""
