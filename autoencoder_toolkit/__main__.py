"""``python -m autoencoder_toolkit``: the ``autoencoder-toolkit`` command line."""

from .cli import main

raise SystemExit(main())
