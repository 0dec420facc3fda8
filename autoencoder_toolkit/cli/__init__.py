"""The ``autoencoder-toolkit`` command line: argument parsing and printing."""

from .main import EXIT_DIVERGED, EXIT_USAGE, RESUMABLE, TRAIN_DEFAULTS, UsageError, main

__all__ = ["main", "UsageError", "TRAIN_DEFAULTS", "RESUMABLE", "EXIT_USAGE", "EXIT_DIVERGED"]
