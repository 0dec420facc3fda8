r"""Frozen inference models: a trained model's forward pass on NumPy or CuPy, without torch.

``model.to_backend("numpy")`` (or :func:`autoencoder_toolkit.models.architecture.to_backend`)
copies a trained :class:`~autoencoder_toolkit.vaes.VAE`,
:class:`~autoencoder_toolkit.infomaxvaes.InfoMaxVAE`, MMD-VAE, encoder, decoder, critic or
layer stack into a frozen model whose weights are arrays of the chosen backend
(``"numpy"``, ``"cupy"``, or ``"torch"``), built from the model's architecture
configuration and weights exactly as a model file is loaded. It runs what a deployed
model runs (see :mod:`.models`) and always evaluates as torch's ``eval()`` mode does.

:func:`load` reads the one model file format (:mod:`autoencoder_toolkit.io.model_file`):
a file written by ``save_model``, by :meth:`FrozenModule.save`, a checkpoint folder, or
a run directory (its newest complete checkpoint), checked before anything is allocated.
This package, and what it imports, never import torch: a process that only serves
predictions needs NumPy (and CuPy for the GPU)::

    from autoencoder_toolkit import inference

    model = inference.load("runs/digits-infomax/", backend="numpy")
    codes = model.encode(x)            # the latent means

Supported layers: :data:`SUPPORTED_LAYERS`. Another layer, or a custom activation, is
refused with an error naming it and its place in the model.
"""

from __future__ import annotations

import os
from typing import Any

from ..backends import get_backend
from ..backends.base import Backend
from ..io.checkpoint import resolve_model_path
from ..io.architecture import TORCH_LAYERS
from ..io.files import CheckpointError
from ..io.model_file import FORMAT_VERSION, read_model
from ..io.safetensors import to_numpy
from .activations import ACTIVATIONS
from .layers import SUPPORTED_LAYERS, FrozenModule, NotExportable, from_config
from .models import FrozenInfoMaxVAE, FrozenMutualInfoChain, FrozenNetwork, FrozenVAE

__all__ = ["FrozenModule", "FrozenNetwork", "FrozenVAE", "FrozenInfoMaxVAE", "FrozenMutualInfoChain",
           "NotExportable", "from_config", "load", "ACTIVATIONS", "SUPPORTED_LAYERS", "get_backend", "FORMAT_VERSION", "SUPPORTED_TORCH_LAYERS"]


#: The ``torch.nn`` layers a frozen model runs (besides the package's own layers).
SUPPORTED_TORCH_LAYERS: tuple[str, ...] = tuple(sorted(TORCH_LAYERS))


def load(path: str | os.PathLike[str], backend: str | Backend = "numpy", *, device: Any = None) -> FrozenModule:
    """Read a model file (or a checkpoint folder's, or a run directory's newest) onto ``backend``.

    The file is checked before any tensor is read (:func:`autoencoder_toolkit.io.model_file.read_model`);
    a damaged, foreign or mismatched file, or one holding a layer the frozen models cannot run,
    raises :class:`~autoencoder_toolkit.io.files.CheckpointError` saying why.
    """
    target = get_backend(backend)
    p = resolve_model_path(path)
    config, raw = read_model(p)
    arrays = {name: to_numpy(r, f"model: '{p}': tensor {name!r}") for name, r in raw.items()}
    try:
        return from_config(config, arrays, target, device=device)
    except (NotExportable, ValueError) as err:
        raise CheckpointError(f"model: '{p}': {err}") from None
