"""The ``autoencoder-toolkit`` command line: argument parsing and printing.

The command's own process lets OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``,
unless the environment sets it): spinning threads on a machine shared with other work can
make a step several times slower. It is set here, before torch (and its OpenMP runtime)
is first imported by the command.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .main import EXIT_DIVERGED, EXIT_USAGE, RESUMABLE, TRAIN_DEFAULTS, UsageError, main  # noqa: E402

__all__ = ["main", "UsageError", "TRAIN_DEFAULTS", "RESUMABLE", "EXIT_USAGE", "EXIT_DIVERGED"]
