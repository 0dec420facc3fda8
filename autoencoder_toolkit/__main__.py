"""``python -m autoencoder_toolkit``: the ``autoencoder-toolkit`` command line."""

from .cli.main import main

raise SystemExit(main())
