"""InfoMax variational autoencoders on PyTorch.

A Python port of the ``InfoMaxVAEs`` part of AutoEncoderToolkit.jl. Samples live in
the first axis (``x`` is ``(B, D)`` or ``(B, C, H, W)``), which is the same memory as
Julia's ``(D, B)`` or ``(W, H, C, B)``.

The package is layered (docs/architecture.md): :mod:`~autoencoder_toolkit.random`,
:mod:`~autoencoder_toolkit.backends`, :mod:`~autoencoder_toolkit.densities`,
:mod:`~autoencoder_toolkit.distributions`, :mod:`~autoencoder_toolkit.io`,
:mod:`~autoencoder_toolkit.data`, :mod:`~autoencoder_toolkit.inference`,
:mod:`~autoencoder_toolkit.models`, :mod:`~autoencoder_toolkit.evaluation`,
:mod:`~autoencoder_toolkit.training`, :mod:`~autoencoder_toolkit.experiments`,
:mod:`~autoencoder_toolkit.cli` and, on top, the testing kit :mod:`~autoencoder_toolkit.testing`. The flat
module names of earlier releases (``autoencoder_toolkit.vaes``, ``.infomaxvaes``, ``.juliarng``, ...) and the
Julia package's module names (``autoencoder_toolkit.InfoMaxVAEs``, ``.VAEs``, ``.MMDVAEs``, ``.AEs``,
``.utils``) name the same module objects (see :data:`MODULE_ALIASES`).
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

__version__ = "0.1.0"

#: Old (flat) module names and the modules they name now. ``import
#: autoencoder_toolkit.vaes`` gives the very module object ``autoencoder_toolkit.models.vaes``.
MODULE_ALIASES = {
    "activations": "models.activations",
    "layers": "models.layers",
    "encoders": "models.encoders",
    "decoders": "models.decoders",
    "vaes": "models.vaes",
    "infomaxvaes": "models.infomaxvaes",
    "mmdvaes": "models.mmdvaes",
    "fused": "models.fused",
    "optim": "models.optim",
    "serialization": "models.architecture",
    "juliarng": "random.juliarng",
    "datasets": "data.datasets",
    "metrics": "evaluation.metrics",
    "plots": "evaluation.plots",
    "checkpoints": "training.checkpoints",
    "distributed": "training.distributed",
    "reproduction": "experiments.reproduction",
    "aes": "models.aes",
    # Julia's module names (AutoEncoderToolkit.InfoMaxVAEs, .VAEs, ...): the same modules
    "InfoMaxVAEs": "models.infomaxvaes",
    "VAEs": "models.vaes",
    "MMDVAEs": "models.mmdvaes",
    "AEs": "models.aes",
    "utils": "training.utils",
}


class _AliasLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``autoencoder_toolkit.<old name>`` and hands back the module it names now."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, short = fullname.rpartition(".")
        if package != __name__ or short not in MODULE_ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(f"{__name__}.{MODULE_ALIASES[spec.name.rpartition('.')[2]]}")
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        # the import system stamped the alias's spec on the real module: give it back its own
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _AliasLoader) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasLoader())

# The torch-based names load on first use (PEP 562), so that a process that only serves a
# model exported to NumPy (``import autoencoder_toolkit.inference``) never imports torch.
# Every name below works as an attribute and in ``from ... import``.
_LAZY_NAMES = {
    "BernoulliDecoder": "models.decoders", "CategoricalDecoder": "models.decoders", "Decoder": "models.decoders",
    "JointGaussianDecoder": "models.decoders", "JointGaussianLogDecoder": "models.decoders",
    "SimpleGaussianDecoder": "models.decoders", "SplitGaussianDecoder": "models.decoders",
    "SplitGaussianLogDecoder": "models.decoders", "decoder_loglikelihood": "models.decoders",
    "Encoder": "models.encoders", "JointGaussianEncoder": "models.encoders",
    "JointGaussianLogEncoder": "models.encoders", "encoder_kl": "models.encoders",
    "encoder_logposterior": "models.encoders", "spherical_logprior": "models.encoders",
    "InfoMaxVAE": "models.infomaxvaes", "MutualInfoChain": "models.infomaxvaes",
    "shuffle_latent": "models.infomaxvaes", "variational_mutual_info": "models.infomaxvaes",
    "ActivationOverDims": "models.layers", "Chain": "models.layers", "Dense": "models.layers",
    "Flatten": "models.layers", "Reshape": "models.layers",
    "setup": "models.optim",
    "to_backend": "models.architecture", "load_model": "models.architecture", "save_model": "models.architecture",
    "register_layer": "models.architecture",
    "fit": "training.loop",
    "VAE": "models.vaes", "reparameterize": "models.vaes",
    "AE": "models.aes",
    "adjust_": "outputs",
    "from_julia_layout": "backends.layout", "to_julia_layout": "backends.layout",
}
_SUBPACKAGES = ("random", "backends", "densities", "distributions", "outputs", "io", "data", "inference", "models",
                "evaluation", "training", "experiments", "sklearn", "cli", "testing")


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    elif name in MODULE_ALIASES or name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "activations", "decoders", "encoders", "infomaxvaes", "layers", "mmdvaes", "vaes", "setup",
    "Dense", "Chain", "Flatten", "Reshape", "ActivationOverDims",
    "Encoder", "JointGaussianLogEncoder", "JointGaussianEncoder",
    "spherical_logprior", "encoder_logposterior", "encoder_kl",
    "Decoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder", "JointGaussianDecoder",
    "SplitGaussianLogDecoder", "SplitGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder",
    "decoder_loglikelihood", "VAE", "reparameterize",
    "MutualInfoChain", "InfoMaxVAE", "shuffle_latent", "variational_mutual_info", "to_backend",
    "load_model", "save_model", "register_layer", "fit",
    "aes", "AE", "adjust_", "from_julia_layout", "to_julia_layout",
    "InfoMaxVAEs", "VAEs", "MMDVAEs", "AEs", "utils",
]
