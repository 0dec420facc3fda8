"""Model architectures as JSON configurations, rebuilt without pickling.

:func:`module_config` describes a model built from this package's layers and models and
from a fixed set of common torch layers (convolutions, pooling, normalisation,
activations, dropout, unflatten). :func:`module_from_config` rebuilds an identical
architecture (fresh weights); the weights themselves travel separately as safetensors
(see :mod:`autoencoder_toolkit.checkpoints`). A module outside this set is refused with
an error that names it, rather than silently pickled.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["module_config", "module_from_config", "CONFIG_VERSION"]

#: Version of the configuration format, stored with every saved model.
CONFIG_VERSION = 1

# torch layers: constructor arguments read back from the instance.
_TORCH_LAYERS: dict[str, tuple[type, Callable[[nn.Module], dict[str, Any]]]] = {}


def _register_torch(cls: type, extract: Callable[[nn.Module], dict[str, Any]]) -> None:
    _TORCH_LAYERS[f"torch.nn.{cls.__name__}"] = (cls, extract)


def _conv_args(m: nn.Module) -> dict[str, Any]:
    args = {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
        "stride": list(m.stride), "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        args["output_padding"] = list(m.output_padding)
        if args["padding_mode"] == "zeros":
            args.pop("padding_mode")
    return args


for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    _register_torch(_cls, _conv_args)
_register_torch(nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                      "bias": m.bias is not None})
for _cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    _register_torch(_cls, lambda m: {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                                     "affine": m.affine, "track_running_stats": m.track_running_stats})
_register_torch(nn.LayerNorm, lambda m: {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
                                         "elementwise_affine": m.elementwise_affine})
_register_torch(nn.GroupNorm, lambda m: {"num_groups": m.num_groups, "num_channels": m.num_channels,
                                         "eps": m.eps, "affine": m.affine})
def _simple(cls: type, *names: str) -> None:
    def extract(m: nn.Module) -> dict[str, Any]:
        out = {}
        for n in names:
            v = getattr(m, n)
            out[n] = list(v) if isinstance(v, tuple) else v
        return out
    _register_torch(cls, extract)


_simple(nn.ReLU)
_simple(nn.Tanh)
_simple(nn.Sigmoid)
_simple(nn.Identity)
_simple(nn.SiLU)
_simple(nn.Softplus, "beta", "threshold")
_simple(nn.GELU, "approximate")
_simple(nn.ELU, "alpha")
_simple(nn.LeakyReLU, "negative_slope")
_simple(nn.Softmax, "dim")
_simple(nn.Flatten, "start_dim", "end_dim")
_simple(nn.Unflatten, "dim", "unflattened_size")
_simple(nn.Dropout, "p")
_simple(nn.MaxPool2d, "kernel_size", "stride", "padding", "dilation", "ceil_mode")
_simple(nn.AvgPool2d, "kernel_size", "stride", "padding", "ceil_mode")
_simple(nn.Upsample, "size", "scale_factor", "mode")


def module_config(module: nn.Module) -> dict[str, Any]:
    """A JSON-serialisable description of ``module``'s architecture.

    Raises
    ------
    TypeError
        If ``module`` (or a submodule) is neither one of this package's layers and models
        nor a supported torch layer; the message names the offending type.
    """
    if hasattr(module, "config") and callable(module.config):
        return module.config()
    key = f"torch.nn.{type(module).__name__}"
    entry = _TORCH_LAYERS.get(key)
    if entry is not None and type(module) is entry[0]:
        return {"type": key, "args": entry[1](module)}
    if type(module) is nn.Sequential:
        return {"type": "Chain", "layers": [module_config(m) for m in module]}
    raise TypeError(
        f"cannot describe a {type(module).__module__}.{type(module).__qualname__} layer in a configuration; "
        f"supported: this package's layers and models and {', '.join(sorted(_TORCH_LAYERS))}. "
        "Save the weights with torch.save(model.state_dict()) and rebuild the architecture in code instead"
    )


def _tuple_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}


def module_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a module (freshly initialised) from :func:`module_config`'s description.

    Raises
    ------
    ValueError
        For an unknown layer type or a malformed configuration, naming the entry.
    """
    from . import decoders, encoders, infomaxvaes, layers, vaes

    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"config: expected a mapping with a 'type' entry, got {config!r:.200}")
    kind = config["type"]
    try:
        if kind in _TORCH_LAYERS:
            cls, _ = _TORCH_LAYERS[kind]
            return cls(**_tuple_args(config.get("args", {})))
        if kind == "Dense":
            return layers.Dense(config["n_in"], config["n_out"], config["activation"], bias=config.get("bias", True))
        if kind == "Chain":
            return layers.Chain(*(module_from_config(c) for c in config["layers"]))
        if kind == "Flatten":
            return layers.Flatten()
        if kind == "Reshape":
            return layers.Reshape(*config["shape"])
        if kind == "ActivationOverDims":
            return layers.ActivationOverDims(config["activation"], config["dim"])
        registry = {
            **{n: getattr(encoders, n) for n in ("Encoder", "JointGaussianLogEncoder", "JointGaussianEncoder")},
            **{n: getattr(decoders, n) for n in ("Decoder", "SimpleGaussianDecoder", "JointGaussianLogDecoder",
                                                 "JointGaussianDecoder", "SplitGaussianLogDecoder",
                                                 "SplitGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder")},
            "VAE": vaes.VAE,
            "MutualInfoChain": infomaxvaes.MutualInfoChain,
            "InfoMaxVAE": infomaxvaes.InfoMaxVAE,
        }
        try:
            from . import mmdvaes

            registry["MMDVAE"] = mmdvaes.MMDVAE
        except ImportError:  # pragma: no cover - optional module
            pass
        if kind in registry:
            fields = {name: module_from_config(c) for name, c in config["fields"].items()}
            module = registry[kind](**fields)
            for attr, value in config.get("meta", {}).items():
                setattr(module, attr, tuple(value) if isinstance(value, list) else value)
            return module
    except (KeyError, TypeError) as err:
        raise ValueError(f"config: malformed entry of type {kind!r} ({err})") from None
    raise ValueError(f"config: unknown layer type {kind!r}")


def model_config(module: nn.Module, fields: tuple[str, ...], meta: tuple[str, ...] = ()) -> dict[str, Any]:
    """Configuration of a model made of named submodule fields (used by the model classes)."""
    cfg: dict[str, Any] = {"type": type(module).__name__,
                           "fields": {f: module_config(getattr(module, f)) for f in fields}}
    m = {}
    for attr in meta:
        value = getattr(module, attr, None)
        if value is not None:
            m[attr] = list(value) if isinstance(value, tuple) else value
    if m:
        cfg["meta"] = m
    return cfg
