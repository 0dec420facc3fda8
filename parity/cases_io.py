"""Reading, writing and evaluating parity case files.

A case is one JSON file (see ``parity/case_format.md``) that both Python
(``json`` + NumPy) and Julia (``JSON3``) can read.  Arrays are stored as
``{"shape": [...], "dtype": "float32" | "float64" | "int64", "data": [...]}``
with the batch-first (Python) shape and the data flattened in C order, which
is the same memory as the reference's column-major array of the reversed
shape.  Dense weights are the exception to "same memory": a ``*.weight``
array of shape ``(out, in)`` holds the reference's ``(out, in)`` matrix in
*index* order (as ``torch.nn.Linear.weight`` does); a Julia reader reshapes
to ``(in, out)`` and transposes.

This module also converts between oracle model trees and the case's model
specification, and evaluates a case with the float64 oracle
(:func:`evaluate_with_oracle`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import oracle as O

CASE_FORMAT = "aet-parity-case/1"
JULIA_OUTPUT_FORMAT = "aet-parity-julia-output/1"
REFERENCE = {"package": "AutoEncoderToolkit.jl", "version": "0.1.2", "flux": "0.14",
             "julia": "1.11"}
MAX_CASE_BYTES = 300_000

ARRAY_SECTIONS = ("params", "inputs", "draw_values", "expected")

# Field order of every model type: the reference's positional struct order.
MODEL_FIELDS = {
    "JointGaussianLogEncoder": ("encoder", "mu", "logsigma"),
    "JointGaussianEncoder": ("encoder", "mu", "sigma"),
    "SimpleGaussianDecoder": ("decoder",),
    "BernoulliDecoder": ("decoder",),
    "CategoricalDecoder": ("decoder",),
    "JointGaussianLogDecoder": ("decoder", "mu", "logsigma"),
    "JointGaussianDecoder": ("decoder", "mu", "sigma"),
    "SplitGaussianLogDecoder": ("mu", "logsigma"),
    "SplitGaussianDecoder": ("mu", "sigma"),
    "MutualInfoChain": ("data", "latent", "mlp"),
}

# op -> (model keys, required inputs, optional inputs, outputs description)
OPS = {
    "chain_forward": (("chain",), ("x",), (), "y"),
    "encoder_forward": (("encoder",), ("x",), (), "mu, logsigma | sigma"),
    "decoder_forward": (("decoder",), ("z",), (), "decoder fields (mu, logsigma, sigma, p)"),
    "spherical_logprior": ((), ("z",), (), "logprior"),
    "encoder_kl": ((), ("mu", "logsigma"), (), "kl"),
    "encoder_logposterior": ((), ("z", "mu", "logsigma"), (), "logposterior"),
    "decoder_loglikelihood": ((), ("x", "z"), ("p", "mu", "logsigma", "sigma"), "loglikelihood"),
    "reparameterize": ((), ("mu",), ("logsigma", "sigma"), "z"),
    "shuffle_latent": ((), ("z",), (), "z_shuffle"),
    "mi_forward": (("mi",), ("x", "z"), (), "g"),
    "variational_mutual_info": (("mi",), ("x", "z", "z_shuffle"), (), "mi"),
    "vae_forward": (("vae",), ("x",), (), "encoder.*, z, decoder.*"),
    "infomaxvae_forward": (("vae", "mi"), ("x",), (), "encoder.*, z, decoder.*, mi"),
    "variational_mutual_info_model": (("vae", "mi"), ("x",), (), "mi"),
    "infomaxloss": (("vae", "mi"), ("x",), ("x_out",), "loss"),
    "infomaxloss_gradient": (("vae", "mi"), ("x",), ("x_out",), "loss, grad.vae.*"),
    "miloss": (("vae", "mi"), ("x",), (), "loss"),
    "miloss_gradient": (("vae", "mi"), ("x",), (), "loss, grad.mi.*"),
    "vae_loss": (("vae",), ("x",), ("x_out",), "loss"),
    "vae_loss_gradient": (("vae",), ("x",), ("x_out",), "loss, grad.vae.*"),
    "infomax_train": (("vae", "mi"), ("x",), ("x_out",),
                      "loss_vae, loss_mi, params.{vae,mi}.*, adam.{vae,mi}.*.{m,v}"),
    "infomax_train_fused": (("vae", "mi"), ("x",), ("x_out",),
                            "loss_vae, loss_mi, grad.{vae,mi}.*, params.{vae,mi}.*, "
                            "adam.{vae,mi}.*.{m,v}"),
    "vae_train": (("vae",), ("x",), ("x_out",), "loss, params.vae.*, adam.vae.*.{m,v}"),
    "mutual_info_chain_constructor": ((), (), (), "(the reference raises, D2)"),
}


# ---------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------

def _fmt(v: float, dtype: str):
    if dtype == "int64":
        return int(v)
    if not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if dtype == "float32":
        # shortest decimal that reads back to the same float32 (at most 9 digits)
        return _Raw(str(np.float32(v)))
    return _Raw(repr(float(v)))


class _Raw(str):
    """A pre-formatted JSON number."""


def encode_array(a, dtype: str | None = None) -> dict:
    """``{"shape", "dtype", "data"}`` for an array in the batch-first layout."""
    arr = np.asarray(a)
    if dtype is None:
        if arr.dtype == np.float32:
            dtype = "float32"
        elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            dtype = "int64"
        else:
            dtype = "float64"
    if dtype == "float32":
        flat = arr.astype(np.float32).ravel(order="C")
        data = [_fmt(float(v), dtype) for v in flat]
    elif dtype == "float64":
        data = [_fmt(float(v), dtype) for v in arr.astype(np.float64).ravel(order="C")]
    elif dtype == "int64":
        data = [int(v) for v in arr.astype(np.int64).ravel(order="C")]
    else:
        raise ValueError(f"unsupported dtype {dtype!r}")
    return {"shape": [int(s) for s in arr.shape], "dtype": dtype, "data": data}


_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_array(d: Mapping) -> np.ndarray:
    """The NumPy array (float32, float64 or int64) of an encoded array."""
    dtype = d["dtype"]
    shape = tuple(int(s) for s in d["shape"])
    if dtype == "int64":
        arr = np.array(d["data"], dtype=np.int64)
    elif dtype in ("float32", "float64"):
        # float() also reads the strings "NaN", "Infinity" and "-Infinity"
        vals = [_SPECIAL[v] if v in _SPECIAL else float(v) for v in d["data"]]
        arr = np.array(vals, dtype=np.float64).astype(dtype)
    else:
        raise ValueError(f"unsupported dtype {dtype!r}")
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{arr.size} values for shape {shape}")
    return arr.reshape(shape)


def _is_encoded(v) -> bool:
    return isinstance(v, Mapping) and set(v) >= {"shape", "dtype", "data"}


def decode_section(case: Mapping, section: str) -> dict:
    """``{name: array}`` for one of the array sections of a case."""
    return {k: decode_array(v) for k, v in (case.get(section) or {}).items()}


# ---------------------------------------------------------------------------
# JSON text
# ---------------------------------------------------------------------------

def _dump(obj, indent: int, level: int) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, _Raw):
        return str(obj)
    if isinstance(obj, Mapping):
        if not obj:
            return "{}"
        if _is_encoded(obj):
            data = ",".join(_dump(v, indent, 0) for v in obj["data"])
            return (f'{{"shape": {json.dumps(obj["shape"])}, "dtype": {json.dumps(obj["dtype"])}, '
                    f'"data": [{data}]}}')
        if len(obj) <= 6 and all(not isinstance(v, (Mapping, list, tuple)) for v in obj.values()):
            return "{" + ", ".join(f"{json.dumps(str(k))}: {_dump(v, indent, 0)}"
                                   for k, v in obj.items()) + "}"
        items = [f"{pad}{json.dumps(str(k))}: {_dump(v, indent, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        if all(not isinstance(v, (Mapping, list, tuple)) for v in obj):
            return "[" + ", ".join(_dump(v, indent, 0) for v in obj) + "]"
        items = [pad + _dump(v, indent, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    if isinstance(obj, bool) or obj is None:
        return json.dumps(obj)
    if isinstance(obj, (int, np.integer)):
        return str(int(obj))
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if not math.isfinite(v):
            raise ValueError("non-finite numbers outside arrays are not allowed")
        return repr(v)
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    raise TypeError(f"cannot write {type(obj)}")


def dumps_case(case: Mapping) -> str:
    """JSON text of a case: indented structure, one line per array."""
    text = _dump(case, 1, 0) + "\n"
    json.loads(text)  # always valid JSON
    return text


def write_case(path, case: Mapping, *, max_bytes: int | None = MAX_CASE_BYTES) -> Path:
    """Write a case file; refuse files over ``max_bytes``."""
    validate_case(case)
    text = dumps_case(case)
    if max_bytes is not None and len(text.encode()) > max_bytes:
        raise ValueError(f"case {case['name']!r} is {len(text.encode())} bytes (> {max_bytes})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read_case(path) -> dict:
    """The raw case dictionary (arrays still encoded; see :func:`decode_section`)."""
    case = json.loads(Path(path).read_text(encoding="utf-8"))
    validate_case(case)
    return case


def read_julia_output(path) -> dict:
    """A file written by ``parity/julia/make_cases.jl``, arrays decoded."""
    out = json.loads(Path(path).read_text(encoding="utf-8"))
    if out.get("format") != JULIA_OUTPUT_FORMAT:
        raise ValueError(f"{path}: not a Julia output file")
    out["outputs"] = {k: decode_array(v) for k, v in (out.get("outputs") or {}).items()}
    out["draw_values"] = {k: decode_array(v) for k, v in (out.get("draw_values") or {}).items()}
    return out


def iter_cases(directory) -> list[Path]:
    """Case files of a directory, sorted by name."""
    return sorted(Path(directory).glob("*.json"))


def validate_case(case: Mapping) -> None:
    """Check the structure of a case; raise ``ValueError`` when it is malformed."""
    if case.get("format") != CASE_FORMAT:
        raise ValueError(f"format must be {CASE_FORMAT!r}")
    for key in ("name", "op", "julia_seed", "model", "kwargs", "draws"):
        if key not in case:
            raise ValueError(f"case lacks {key!r}")
    op = case["op"]
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    models, required, optional, _ = OPS[op]
    for m in models:
        if m not in case["model"]:
            raise ValueError(f"op {op} needs model {m!r}")
    inputs = case.get("inputs") or {}
    for name in required:
        if name not in inputs:
            raise ValueError(f"op {op} needs input {name!r}")
    for section in ARRAY_SECTIONS:
        for name, arr in (case.get(section) or {}).items():
            if not _is_encoded(arr):
                raise ValueError(f"{section}.{name} is not an encoded array")
            if len(arr["data"]) != int(np.prod(arr["shape"], dtype=np.int64)):
                raise ValueError(f"{section}.{name}: size does not match shape")
    names = set((case.get("draw_values") or {}))
    for d in case["draws"]:
        if d.get("kind") not in ("randn", "shuffle"):
            raise ValueError(f"unknown draw kind {d.get('kind')!r}")
        if names and d["name"] not in names:
            raise ValueError(f"draw {d['name']!r} has no stored value")


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

def _module_spec(module) -> dict:
    if isinstance(module, (list, tuple)):
        return {"kind": "chain", "layers": [_module_spec(layer) for layer in module]}
    if module["kind"] == "dense":
        w = np.asarray(module["weight"])
        return {"kind": "dense", "in": int(w.shape[1]), "out": int(w.shape[0]),
                "activation": module["activation"]}
    if module["kind"] == "flatten":
        return {"kind": "flatten"}
    raise ValueError(f"unknown layer kind {module['kind']!r}")


def _typed_spec(tree: Mapping, default_type: str | None = None) -> dict:
    kind = tree.get("type", default_type)
    if kind not in MODEL_FIELDS:
        raise ValueError(f"unknown model type {kind!r}")
    spec = {"type": kind}
    for field in MODEL_FIELDS[kind]:
        spec[field] = _module_spec(tree[field])
    return spec


def model_to_spec(models: Mapping) -> tuple[dict, dict]:
    """``(model spec, params)`` for ``{"vae": ..., "mi": ..., "encoder": ..., "decoder": ..., "chain": ...}``.

    Parameter names are ``<top key>.<dotted oracle path>``, for example
    ``vae.encoder.encoder.0.weight`` or ``mi.mlp.2.bias``; values are float32.
    """
    spec, params = {}, {}
    for key, tree in models.items():
        if key == "vae":
            spec[key] = {"encoder": _typed_spec(tree["encoder"]),
                         "decoder": _typed_spec(tree["decoder"])}
        elif key == "mi":
            spec[key] = _typed_spec(tree, "MutualInfoChain")
        elif key in ("encoder", "decoder"):
            spec[key] = _typed_spec(tree)
        elif key == "chain":
            spec[key] = _module_spec(tree)
        else:
            raise ValueError(f"unknown model key {key!r}")
        for path, arr in O.flat_params(tree, f"{key}.").items():
            params[path] = np.asarray(arr, dtype=np.float64).astype(np.float32)
    return spec, params


def _module_from_spec(spec: Mapping, params: Mapping, prefix: str):
    kind = spec["kind"]
    if kind == "chain":
        return [_layer_from_spec(layer, params, f"{prefix}.{i}") for i, layer in enumerate(spec["layers"])]
    return _layer_from_spec(spec, params, prefix)


def _layer_from_spec(spec: Mapping, params: Mapping, prefix: str) -> dict:
    if spec["kind"] == "flatten":
        return O.flatten_layer()
    if spec["kind"] != "dense":
        raise ValueError(f"unknown layer kind {spec['kind']!r}")
    w = np.asarray(params[f"{prefix}.weight"], dtype=np.float64)
    b = np.asarray(params[f"{prefix}.bias"], dtype=np.float64)
    if w.shape != (spec["out"], spec["in"]):
        raise ValueError(f"{prefix}.weight has shape {w.shape}, spec says {(spec['out'], spec['in'])}")
    return O.dense_layer(w, b, spec["activation"])


def _typed_from_spec(spec: Mapping, params: Mapping, prefix: str) -> dict:
    tree = {"type": spec["type"]}
    for field in MODEL_FIELDS[spec["type"]]:
        tree[field] = _module_from_spec(spec[field], params, f"{prefix}.{field}")
    return tree


def model_from_spec(spec: Mapping, params: Mapping) -> dict:
    """Oracle model trees (float64) from a case's model spec and parameters."""
    out = {}
    for key, sub in spec.items():
        if key == "vae":
            out[key] = {"encoder": _typed_from_spec(sub["encoder"], params, "vae.encoder"),
                        "decoder": _typed_from_spec(sub["decoder"], params, "vae.decoder")}
        elif key in ("mi", "encoder", "decoder"):
            out[key] = _typed_from_spec(sub, params, key)
        elif key == "chain":
            out[key] = _module_from_spec(sub, params, "chain")
        else:
            raise ValueError(f"unknown model key {key!r}")
    return out


# ---------------------------------------------------------------------------
# Building and evaluating cases
# ---------------------------------------------------------------------------

def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(np.float32)


def make_case(name: str, op: str, *, description: str = "", models: Mapping | None = None,
              inputs: Mapping | None = None, kwargs: Mapping | None = None,
              draws: Sequence = (), julia_seed: int, reference_error: Mapping | None = None,
              tolerance: Mapping | None = None, expected: Mapping | None = None,
              compute_expected: bool = True) -> dict:
    """Assemble a case; the expected outputs come from the oracle unless given.

    ``models`` holds oracle trees; parameters and float inputs are rounded to
    float32 (the reference's dtype) before the oracle runs, so the expected
    values belong to exactly the stored numbers.  ``draws`` is a sequence of
    ``(name, kind, value)`` in the reference's draw order, with ``kind``
    ``"randn"`` (value: float32 array in the batch-first layout) or
    ``"shuffle"`` (value: 0-based permutation).
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    spec, params = model_to_spec(models or {})
    enc_inputs = {}
    for k, v in (inputs or {}).items():
        arr = np.asarray(v)
        enc_inputs[k] = encode_array(arr if np.issubdtype(arr.dtype, np.integer) else _f32(arr))
    draw_specs, draw_values = [], {}
    for dname, kind, value in draws:
        if kind == "randn":
            arr = _f32(value)
            draw_specs.append({"name": dname, "kind": "randn", "shape": list(arr.shape)})
            draw_values[dname] = encode_array(arr, "float32")
        elif kind == "shuffle":
            arr = np.asarray(value, dtype=np.int64)
            draw_specs.append({"name": dname, "kind": "shuffle", "n": int(arr.shape[0])})
            draw_values[dname] = encode_array(arr, "int64")
        else:
            raise ValueError(f"unknown draw kind {kind!r}")
    case = {
        "format": CASE_FORMAT,
        "name": name,
        "description": description,
        "reference": dict(REFERENCE),
        "julia_seed": int(julia_seed),
        "op": op,
        "kwargs": dict(kwargs or {}),
        "model": spec,
        "params": {k: encode_array(v, "float32") for k, v in params.items()},
        "inputs": enc_inputs,
        "draws": draw_specs,
        "draw_values": draw_values,
        "reference_error": dict(reference_error) if reference_error else None,
        "tolerance": dict(tolerance) if tolerance else None,
        "expected": {},
    }
    if expected is not None:
        case["expected"] = {k: encode_array(np.asarray(v, dtype=np.float64), "float64")
                            for k, v in expected.items()}
    elif compute_expected:
        try:
            out = evaluate_with_oracle(case)
        except O.ReferenceRaises as err:
            # the reference raises and the oracle defines no intended value
            if not reference_error or reference_error.get("defect") != err.defect:
                raise
            out = {}
        case["expected"] = {k: encode_array(v, "float64") for k, v in out.items()}
    validate_case(case)
    return case


def _arr(a) -> np.ndarray:
    return O.as_array(a)


def _prefixed(d: Mapping, prefix: str) -> dict:
    return {f"{prefix}{k}": np.asarray(v, dtype=np.float64) for k, v in d.items()}


def _adam_out(state: Mapping, prefix: str) -> dict:
    out = {}
    for k, st in state.items():
        out[f"adam.{prefix}{k}.m"] = np.asarray(st["m"], dtype=np.float64)
        out[f"adam.{prefix}{k}.v"] = np.asarray(st["v"], dtype=np.float64)
    return out


def evaluate_with_oracle(case: Mapping) -> dict:
    """Run a case through the float64 oracle: ``{output name: float64 array}``.

    Where the reference raises, :class:`parity.oracle.ReferenceRaises` is
    raised, except for two documented intents that the oracle defines: the
    ``n_samples`` average of ``infomaxloss`` (D3) and a ``"zero"``
    regularization in ``miloss`` / ``vae_loss`` (D4, D6), which adds 0.
    """
    op = case["op"]
    kw = dict(case.get("kwargs") or {})
    params = {k: v for k, v in decode_section(case, "params").items()}
    models = model_from_spec(case.get("model") or {}, params)
    inp = {k: (v.astype(np.float64) if v.dtype != np.int64 else v)
           for k, v in decode_section(case, "inputs").items()}
    dv = decode_section(case, "draw_values")
    draws = []
    for d in case.get("draws") or []:
        val = dv[d["name"]]
        draws.append(val.astype(np.float64) if d["kind"] == "randn" else val.astype(np.int64))
    x = inp.get("x")
    x_out = inp.get("x_out")
    out: dict[str, Any] = {}

    def reg_flag(key):
        val = kw.get(key)
        if val is None:
            return False
        if val != "zero":
            raise ValueError(f"{key} must be 'zero' or absent")
        return True

    if op == "chain_forward":
        out["y"] = _arr(O.apply_module(models["chain"], x))
    elif op == "encoder_forward":
        out.update({k: _arr(v) for k, v in O.encoder_forward(models["encoder"], x).items()})
    elif op == "decoder_forward":
        out.update({k: _arr(v) for k, v in O.decoder_forward(models["decoder"], inp["z"]).items()})
    elif op == "spherical_logprior":
        out["logprior"] = _arr(O.spherical_logprior(inp["z"]))
    elif op == "encoder_kl":
        out["kl"] = _arr(O.encoder_kl({"mu": inp["mu"], "logsigma": inp["logsigma"]}))
    elif op == "encoder_logposterior":
        out["logposterior"] = _arr(O.encoder_logposterior(
            inp["z"], {"mu": inp["mu"], "logsigma": inp["logsigma"]}, index=kw.get("index")))
    elif op == "decoder_loglikelihood":
        fields = {k: inp[k] for k in ("p", "mu", "logsigma", "sigma") if k in inp}
        out["loglikelihood"] = _arr(O.decoder_loglikelihood(
            x, inp["z"], kw["decoder_type"], fields, sigma=kw.get("sigma"),
            index=kw.get("index"), dims=kw.get("dims")))
    elif op == "reparameterize":
        use_log = bool(kw.get("log", True))
        scale = inp["logsigma"] if use_log else inp["sigma"]
        out["z"] = _arr(O.reparameterize(inp["mu"], scale, draws[0], log=use_log))
    elif op == "shuffle_latent":
        out["z_shuffle"] = _arr(O.shuffle_latent(inp["z"], draws[0] if draws else None,
                                                 seed=kw.get("seed")))
    elif op == "mi_forward":
        out["g"] = _arr(O.mi_forward(models["mi"], x, inp["z"]))
    elif op == "variational_mutual_info":
        out["mi"] = _arr(O.variational_mutual_info(models["mi"], x, inp["z"], inp["z_shuffle"]))
    elif op in ("vae_forward", "infomaxvae_forward"):
        if op == "vae_forward":
            vo = O.vae_forward(models["vae"], x, draws[0], latent=True)
        else:
            res = O.infomaxvae_forward(models["vae"], models["mi"], x, draws[0], draws[1],
                                       latent=True, seed=kw.get("seed"))
            vo = res["vae"]
            out["mi"] = _arr(res["mi"])
        out.update({f"encoder.{k}": _arr(v) for k, v in vo["encoder"].items()})
        out["z"] = _arr(vo["z"])
        out.update({f"decoder.{k}": _arr(v) for k, v in vo["decoder"].items()})
    elif op == "variational_mutual_info_model":
        out["mi"] = _arr(O.variational_mutual_info_model(models["vae"], models["mi"], x,
                                                         draws[0], draws[1], seed=kw.get("seed")))
    elif op in ("infomaxloss", "infomaxloss_gradient"):
        beta, alpha = kw.get("beta", 1.0), kw.get("alpha", 1.0)
        n_samples = kw.get("n_samples")
        if kw.get("seed") is not None:
            raise O.ReferenceRaises("D1", "UndefVarError", "MersenneTwister is not defined")
        if n_samples is not None:
            noises, perms = draws[0::2], draws[1::2]
            if len(noises) != n_samples or len(perms) != n_samples:
                raise ValueError("n_samples cases need one noise and one permutation per sample")
            if op == "infomaxloss":
                out["loss"] = np.float64(O.infomaxloss_n_samples(
                    models["vae"], models["mi"], x, x_out, noises=noises, perms=perms,
                    beta=beta, alpha=alpha))
            else:
                loss, g = O.infomaxloss_n_samples_grad(
                    models["vae"], models["mi"], x, x_out, noises=noises, perms=perms,
                    beta=beta, alpha=alpha)
                out["loss"] = np.float64(loss)
                out.update(_prefixed(g, "grad.vae."))
        elif op == "infomaxloss":
            out["loss"] = np.float64(O.infomaxloss(models["vae"], models["mi"], x, x_out,
                                                   noise=draws[0], perm=draws[1],
                                                   beta=beta, alpha=alpha))
        else:
            loss, g = O.infomaxloss_grad(models["vae"], models["mi"], x, x_out,
                                         noise=draws[0], perm=draws[1], beta=beta, alpha=alpha)
            out["loss"] = np.float64(loss)
            out.update(_prefixed(g, "grad.vae."))
    elif op in ("miloss", "miloss_gradient"):
        reg_flag("regularization")  # a zero regularization adds 0 (documented intent, D4)
        if kw.get("seed") is not None:
            raise O.ReferenceRaises("D1", "UndefVarError", "MersenneTwister is not defined")
        if op == "miloss":
            out["loss"] = np.float64(O.miloss(models["vae"], models["mi"], x,
                                              noise=draws[0], perm=draws[1]))
        else:
            loss, g = O.miloss_grad(models["vae"], models["mi"], x, noise=draws[0], perm=draws[1])
            out["loss"] = np.float64(loss)
            out.update(_prefixed(g, "grad.mi."))
    elif op in ("vae_loss", "vae_loss_gradient"):
        reg_flag("reg_function")  # a zero regularization adds 0 (documented intent, D6)
        beta = kw.get("beta", 1.0)
        if op == "vae_loss":
            out["loss"] = np.float64(O.vae_loss(models["vae"], x, x_out, noise=draws[0], beta=beta))
        else:
            loss, g = O.vae_loss_grad(models["vae"], x, x_out, noise=draws[0], beta=beta)
            out["loss"] = np.float64(loss)
            out.update(_prefixed(g, "grad.vae."))
    elif op == "infomax_train":
        steps = int(kw.get("steps", 1))
        if len(draws) != 4 * steps:
            raise ValueError("infomax_train needs 4 draws per step")
        res = O.infomax_train(models["vae"], models["mi"], x, x_out, draws=draws,
                              eta=kw.get("eta", 1e-3), beta=kw.get("beta", 1.0),
                              alpha=kw.get("alpha", 1.0))
        out["loss_vae"] = np.asarray(res["loss_vae"], dtype=np.float64)
        out["loss_mi"] = np.asarray(res["loss_mi"], dtype=np.float64)
        out.update(_prefixed(O.flat_params(res["vae"]), "params.vae."))
        out.update(_prefixed(O.flat_params(res["mi"]), "params.mi."))
        out.update(_adam_out(res["opt_state"]["vae"], "vae."))
        out.update(_adam_out(res["opt_state"]["mi"], "mi."))
    elif op == "infomax_train_fused":
        steps = int(kw.get("steps", 1))
        if len(draws) != 2 * steps:
            raise ValueError("infomax_train_fused needs 2 draws (noise, permutation) per step")
        res = O.infomax_train_fused(models["vae"], models["mi"], x, x_out, draws=draws,
                                    eta=kw.get("eta", 1e-3), beta=kw.get("beta", 1.0),
                                    alpha=kw.get("alpha", 1.0))
        out["loss_vae"] = np.asarray(res["loss_vae"], dtype=np.float64)
        out["loss_mi"] = np.asarray(res["loss_mi"], dtype=np.float64)
        out.update(_prefixed(res["grads"]["vae"], "grad.vae."))
        out.update(_prefixed(res["grads"]["mi"], "grad.mi."))
        out.update(_prefixed(O.flat_params(res["vae"]), "params.vae."))
        out.update(_prefixed(O.flat_params(res["mi"]), "params.mi."))
        out.update(_adam_out(res["opt_state"]["vae"], "vae."))
        out.update(_adam_out(res["opt_state"]["mi"], "mi."))
    elif op == "vae_train":
        steps = int(kw.get("steps", 1))
        if len(draws) != steps:
            raise ValueError("vae_train needs 1 draw per step")
        res = O.vae_train(models["vae"], x, x_out, draws=draws, eta=kw.get("eta", 1e-3),
                          beta=kw.get("beta", 1.0))
        out["loss"] = np.asarray(res["loss"], dtype=np.float64)
        out.update(_prefixed(O.flat_params(res["vae"]), "params.vae."))
        out.update(_adam_out(res["opt_state"], "vae."))
    elif op == "mutual_info_chain_constructor":
        if isinstance(kw.get("size_input"), list):
            raise O.ReferenceRaises("D2", "UndefVarError",
                                    "AutoEncoderToolkit is not defined inside InfoMaxVAEs")
        raise ValueError("mutual_info_chain_constructor cases exist for the D2 error path")
    else:  # pragma: no cover - validate_case rejects unknown ops
        raise ValueError(f"unknown op {op!r}")
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
