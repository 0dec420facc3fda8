"""Frozen inference models: a trained model's forward pass on NumPy or CuPy, without torch."""

from .frozen import (ACTIVATIONS, FORMAT_VERSION, SUPPORTED_TORCH_LAYERS, FrozenInfoMaxVAE, FrozenModule,
                     FrozenMutualInfoChain, FrozenVAE, get_backend, load, to_backend)

__all__ = ["FORMAT_VERSION", "FrozenModule", "FrozenVAE", "FrozenInfoMaxVAE", "FrozenMutualInfoChain",
           "to_backend", "load", "SUPPORTED_TORCH_LAYERS"]
