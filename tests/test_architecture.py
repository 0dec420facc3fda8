"""The package's structure: layers, no hidden imports, plain torch modules, one model file format."""

from __future__ import annotations

import ast
import importlib
import io
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import autoencoder_toolkit as aet
from autoencoder_toolkit.io import architecture as arch
from autoencoder_toolkit.models import architecture as models_arch
from autoencoder_toolkit.models.mmdvaes import MMDVAE
from autoencoder_toolkit.testing import check_checkpoint_round_trip

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autoencoder_toolkit"
def _function_level_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of the package's own modules inside functions (optional dependencies may load there)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom):
                name = "." * sub.level + (sub.module or "")
                if sub.level or name.startswith("autoencoder_toolkit"):
                    found.append(f"{path.relative_to(root)}:{sub.lineno} from {name} import ...")
            elif isinstance(sub, ast.Import):
                found += [f"{path.relative_to(root)}:{sub.lineno} import {a.name}" for a in sub.names
                          if a.name.startswith("autoencoder_toolkit")]
    return found


def test_no_module_imports_another_inside_a_function():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    found = [hit for f in files for hit in _function_level_imports(f)]
    assert found == []


def test_the_checker_sees_a_function_level_import(tmp_path):
    bad = tmp_path / "autoencoder_toolkit" / "m.py"
    bad.parent.mkdir()
    bad.write_text("def f():\n    from . import vaes\n    import autoencoder_toolkit.io\n    import cupy\n")
    assert _function_level_imports(bad, tmp_path) == ["autoencoder_toolkit/m.py:2 from . import ...",
                                                      "autoencoder_toolkit/m.py:3 import autoencoder_toolkit.io"]


def test_the_layering_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "3 kept, 0 broken" in out.stdout


def test_old_module_paths_name_the_same_modules():
    for old, new in aet.MODULE_ALIASES.items():
        a = importlib.import_module(f"autoencoder_toolkit.{old}")
        b = importlib.import_module(f"autoencoder_toolkit.{new}")
        assert a is b and getattr(aet, old) is b, old
        assert a.__spec__.name == b.__name__  # the real module keeps its own identity


def test_importing_inference_does_not_import_torch():
    code = ("import sys; import autoencoder_toolkit.inference, autoencoder_toolkit.io.model_file; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------
# every model type: a plain torch module that torch.save, torch.load and torch.compile handle
# ----------------------------------------------------------------------------------

D, L = 6, 2


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(3)
    enc = aet.JointGaussianLogEncoder(D, L, [5], ["relu"], "identity")
    decoders = {
        "bernoulli": aet.BernoulliDecoder(D, L, [5], ["relu"], "sigmoid"),
        "simple_gaussian": aet.SimpleGaussianDecoder(D, L, [5], ["tanh"], "identity"),
        "categorical": aet.CategoricalDecoder((3, D), L, [5], ["relu"]),
        "joint_log": aet.JointGaussianLogDecoder(D, L, [5], ["relu"], "identity"),
        "joint": aet.JointGaussianDecoder(D, L, [5], ["relu"], ("identity", "softplus")),
        "split_log": aet.SplitGaussianLogDecoder(D, L, [5, D], ["relu", "identity"], [4, D], ["relu", "identity"]),
        "split": aet.SplitGaussianDecoder(D, L, [5, D], ["relu", "identity"], [4, D], ["relu", "softplus"]),
        "deterministic": aet.Decoder(D, L, [5], ["relu"], "identity"),
    }
    out: dict[str, nn.Module] = {f"decoder_{k}": v for k, v in decoders.items()}
    out.update(encoder=enc, encoder_joint=aet.JointGaussianEncoder(D, L, [5], ["relu"], ("identity", "softplus")),
               encoder_deterministic=aet.Encoder(D, L, [5], ["relu"], "identity"))
    vae = enc * decoders["bernoulli"]
    mi = aet.MutualInfoChain(D, L, [5], ["relu"], "identity")
    out.update(vae=vae, critic=mi, infomaxvae=aet.InfoMaxVAE(vae, mi), mmdvae=MMDVAE(vae),
               chain=aet.Chain(aet.Dense(D, 4, "identity"), aet.Dense(4, 3, "softmax")))
    return out


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_class_is_a_plain_torch_module(name):
    assert type(MODELS[name]).__call__ is torch.nn.Module.__call__


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_save_and_load_round_trip(name):
    model = MODELS[name]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is type(model)
    for (ka, a), (kb, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    x = torch.rand(4, 3, D) if name == "decoder_categorical" else torch.rand(4, L if "decoder" in name else D)
    with torch.no_grad():
        if name in ("vae", "infomaxvae", "mmdvae"):
            a, b = model(x, rng=torch.Generator().manual_seed(1)), loaded(x, rng=torch.Generator().manual_seed(1))
        elif name == "critic":
            a, b = model(x, x[:, :L]), loaded(x, x[:, :L])
        else:
            z = torch.rand(4, L) if "decoder" in name else x
            a, b = model(z), loaded(z)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(u, v)


def test_pickle_of_a_model_with_identity_activations():
    model = MODELS["vae"]
    assert any(getattr(m, "activation", None) is not None and m.activation.name == "identity" for m in model.modules())
    pickle.loads(pickle.dumps(model))  # the PicklingError of a lambda activation is gone


@pytest.mark.filterwarnings("ignore:Dynamo detected")
def test_torch_compile_of_a_model_forward_runs():
    model = MODELS["infomaxvae"]
    x = torch.rand(8, D)
    noise = torch.randn(8, L, generator=torch.Generator().manual_seed(2))
    from autoencoder_toolkit.random.draws import PresetDraws

    with torch.no_grad():
        expected = model(x, rng=PresetDraws([noise]))
        compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
        got = compiled(x, rng=PresetDraws([noise]))
    assert torch.allclose(got.p, expected.p, atol=1e-6)


# ----------------------------------------------------------------------------------
# one architecture registry, one model file format
# ----------------------------------------------------------------------------------

def test_builtin_structures_are_what_the_classes_declare():
    names = {type(m).__name__: m for m in MODELS.values()}
    for name, structure in arch.BUILTIN_STRUCTURES.items():
        assert names[name].structure() == structure, name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_file_opens_with_torch_and_with_the_numpy_loader(name, tmp_path):
    # save_model then load_model: the same class, architecture and tensors (names in order, bit for bit);
    # inference.load reads the same architecture and tensor names (an MMD-VAE's being its VAE's)
    check_checkpoint_round_trip(MODELS[name].eval(), directory=tmp_path, save=models_arch.save_model,
                                load=models_arch.load_model)


def test_configuration_checks_bound_what_a_file_can_ask_for():
    deep = {"type": "Flatten"}
    for _ in range(100):
        deep = {"type": "Chain", "layers": [deep]}
    with pytest.raises(arch.ArchitectureError, match="deeper than 64"):
        arch.check_config(deep)
    huge = {"type": "Dense", "n_in": 2**20, "n_out": 2**20, "activation": "relu"}
    with pytest.raises(arch.ArchitectureError, match="over .* elements"):
        arch.check_config(huge)
    assert arch.expected_tensors({"type": "Dense", "n_in": 3, "n_out": 2, "activation": "relu"}) == \
        {"weight": (2, 3), "bias": (2,)}
    assert len(arch.TORCH_LAYERS) > 20


@pytest.mark.parametrize("cls", [aet.Encoder, aet.JointGaussianLogEncoder, aet.JointGaussianEncoder, aet.Decoder,
                                 aet.SimpleGaussianDecoder, aet.BernoulliDecoder, aet.CategoricalDecoder,
                                 aet.JointGaussianLogDecoder, aet.JointGaussianDecoder, aet.SplitGaussianLogDecoder,
                                 aet.SplitGaussianDecoder, aet.MutualInfoChain])
def test_both_constructor_forms_have_visible_signatures(cls):
    import inspect
    import typing

    forms = typing.get_overloads(cls.__init__)
    assert len(forms) == 2
    params = [list(inspect.signature(f).parameters)[1:] for f in forms]
    assert all("args" not in p and "kwargs" not in p for p in params)
    assert params[0][0] in ("encoder", "decoder", "μ", "data") and params[1][0] in ("n_input", "size_input")
