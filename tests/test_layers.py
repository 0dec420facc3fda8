"""Dense, Chain, Flatten, Reshape, ActivationOverDims and the named activations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autoencoder_toolkit import activations
from autoencoder_toolkit.layers import ActivationOverDims, Chain, Dense, Flatten, Reshape, glorot_uniform


def test_dense_is_linear_with_out_in_weight_and_zero_bias():
    layer = Dense(7, 3, "relu")
    assert isinstance(layer, torch.nn.Linear)
    assert tuple(layer.weight.shape) == (3, 7)
    assert torch.count_nonzero(layer.bias) == 0
    a = math.sqrt(6 / (7 + 3))
    assert float(layer.weight.detach().abs().max()) <= a


def test_dense_forward_applies_activation_after_affine_map():
    layer = Dense.from_weights([[1.0, -2.0], [0.5, 0.5]], [0.1, -3.0], "relu")
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    expected = torch.relu(x @ torch.tensor([[1.0, -2.0], [0.5, 0.5]]).T + torch.tensor([0.1, -3.0]))
    torch.testing.assert_close(layer(x), expected)
    # one sample (1-D) in, one sample out
    torch.testing.assert_close(layer(x[0]), expected[0])


def test_glorot_uniform_bounds_and_spread():
    g = torch.Generator().manual_seed(0)
    w = glorot_uniform(200, 300, generator=g)
    a = math.sqrt(6 / 500)
    assert w.shape == (200, 300) and w.dtype == torch.float32
    assert float(w.min()) >= -a and float(w.max()) < a
    # Uniform on [-a, a) has variance a²/3.
    assert abs(float(w.var()) - a * a / 3) < 0.05 * a * a / 3


@pytest.mark.parametrize("name", activations.ACTIVATION_NAMES)
def test_named_activations_torch_and_array_forms_agree(name):
    act = activations.get_activation(name)
    x = torch.linspace(-6, 6, 61, dtype=torch.float64).reshape(1, -1)
    y_torch = act.torch_fn(x).numpy()
    y_np = act.array_fn(np, x.numpy())
    np.testing.assert_allclose(y_np, y_torch, rtol=1e-10, atol=1e-12)


def test_activation_reference_values():
    x = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    get = lambda n: activations.get_activation(n).torch_fn(x).numpy()  # noqa: E731
    np.testing.assert_allclose(get("relu"), [0, 0, 3])
    np.testing.assert_allclose(get("leakyrelu"), [-0.02, 0, 3])
    np.testing.assert_allclose(get("softplus"), np.log1p(np.exp([-2.0, 0.0, 3.0])))
    np.testing.assert_allclose(get("elu"), [math.exp(-2) - 1, 0, 3])
    np.testing.assert_allclose(get("silu"), np.array([-2, 0, 3]) / (1 + np.exp([2.0, 0.0, -3.0])))
    # NNlib's gelu is the tanh approximation
    v = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(get("gelu"), 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))))
    sm = get("softmax")
    np.testing.assert_allclose(sm, np.exp(v) / np.exp(v).sum())


def test_callables_map_back_to_names_and_unknown_names_are_refused():
    assert activations.get_activation(torch.relu).name == "relu"
    assert activations.get_activation(torch.nn.functional.softplus).name == "softplus"
    assert activations.get_activation(torch.nn.Tanh()).name == "tanh"
    assert activations.get_activation(lambda t: t * 2).name is None
    with pytest.raises(ValueError, match="activation: unknown activation 'rellu'"):
        activations.get_activation("rellu")
    with pytest.raises(TypeError, match="activation"):
        activations.get_activation(3)


def test_flatten_keeps_the_sample_axis_in_julia_order():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    y = Flatten()(x)
    assert y.shape == (2, 60)
    # Same memory order as Julia's column-major flatten of a (5, 4, 3, 2) array.
    jl = np.arange(120).reshape(2, 3, 4, 5)  # C order == Julia (5,4,3,2) column-major
    np.testing.assert_array_equal(y.numpy(), jl.reshape(2, 60))
    m = torch.ones(4, 6)
    assert Flatten()(m).shape == (4, 6)
    assert Flatten()(torch.ones(5)).shape == (5, 1)


def test_reshape_and_its_julia_form():
    x = torch.arange(2 * 64 * 49, dtype=torch.float32).reshape(2, -1)
    assert Reshape(-1, 64, 7, 7)(x).shape == (2, 64, 7, 7)
    r = Reshape.from_julia(7, 7, 64, ":")
    assert r.shape == (-1, 64, 7, 7)
    with pytest.raises(ValueError, match="shape"):
        Reshape(-1, -1, 3)


def test_activation_over_dims_softmax_over_last_axis():
    x = torch.randn(3, 4, 5)
    y = ActivationOverDims("softmax", -1)(x)
    torch.testing.assert_close(y.sum(-1), torch.ones(3, 4))
    with pytest.raises(ValueError, match="activation"):
        ActivationOverDims("sigmoid")


def test_chain_applies_in_order():
    c = Chain(Dense.from_weights([[2.0]], [0.0]), Dense.from_weights([[1.0]], [1.0]))
    assert float(c(torch.tensor([[3.0]])).detach()) == 7.0
