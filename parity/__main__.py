"""``python -m parity``: run the parity cases (see :mod:`parity.runner`)."""
import sys

from .runner import main

sys.exit(main())
