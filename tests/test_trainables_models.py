"""trainables.models: network shapes, parameter counts and the statistics of every initialiser."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables import DataError, build_model, count_params, init_weights

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def linear_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


# ---- shapes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("input_shape", IMAGE_SHAPES + [(13,)])
@pytest.mark.parametrize("hidden_layers", [1, 3])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_build_model_mlp_outputs_one_logit_per_class(input_shape, hidden_layers, batch_norm):
    hparams = {"hidden_layers": hidden_layers, "units": 16, "batch_norm": batch_norm}
    model = build_model("mlp", hparams, input_shape, 7)
    out = model(torch.rand(5, *input_shape))
    assert out.shape == (5, 7)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == hidden_layers + 1
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == (hidden_layers if batch_norm else 0)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # kernel_size 4: torch pads a copy
@pytest.mark.parametrize("input_shape", IMAGE_SHAPES)
@pytest.mark.parametrize("conv_blocks", [1, 2, 3])
@pytest.mark.parametrize("convs_per_block, kernel_size", [(1, 3), (2, 5), (1, 4)])
def test_build_model_cnn_outputs_one_logit_per_class(input_shape, conv_blocks, convs_per_block, kernel_size):
    hparams = {"conv_blocks": conv_blocks, "maps": 4, "convs_per_block": convs_per_block,
               "kernel_size": kernel_size}
    model = build_model("cnn", hparams, input_shape, 10)
    assert model(torch.rand(2, *input_shape)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == conv_blocks * convs_per_block
    assert [c.out_channels for c in convs[::convs_per_block]] == [4 * 2**b for b in range(conv_blocks)]


@pytest.mark.parametrize("conv_blocks, pools", [(3, 3), (4, 3), (6, 3)])
def test_build_model_cnn_pools_only_while_the_image_is_at_least_2x2(conv_blocks, pools):
    model = build_model("cnn", {"conv_blocks": conv_blocks, "maps": 2}, (1, 8, 8), 10)  # 8 -> 4 -> 2 -> 1
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_build_model_cnn_layers_follow_the_documented_order():
    model = build_model("cnn", {"conv_blocks": 1, "batch_norm": True, "dropout": 0.3}, (1, 8, 8), 10)
    kinds = [type(m).__name__ for m in model.modules() if not isinstance(m, (nn.Sequential, type(model)))]
    assert kinds == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Dropout", "Linear",
    ]


def test_build_model_cnn_rejects_tabular_inputs():
    with pytest.raises(DataError, match="the cnn trainable needs image data"):
        build_model("cnn", {}, (13,), 2)


@pytest.mark.parametrize(
    "model_name, hparams, message",
    [
        ("mlp", {"maps": 3}, "mlp does not take 'maps'"),
        ("cnn", {"units": 3}, "cnn does not take 'units'"),
        ("rnn", {}, "model_name is 'rnn'"),
        ("mlp", {"activation": "swish"}, "activation is 'swish'"),
    ],
)
def test_build_model_rejects_what_it_cannot_build(model_name, hparams, message):
    with pytest.raises(ValueError, match=message):
        build_model(model_name, hparams, (1, 8, 8), 10)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid"])
def test_build_model_uses_the_activation(activation):
    model = build_model("mlp", {"activation": activation}, (4,), 2)
    expected = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU,
                "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[activation]
    assert sum(isinstance(m, expected) for m in model.modules()) == 2


def test_count_params_counts_weights_and_biases():
    model = build_model("mlp", {"hidden_layers": 1, "units": 3, "dropout": 0.0}, (4,), 2)
    assert count_params(model) == (4 * 3 + 3) + (3 * 2 + 2)
    bn = build_model("mlp", {"hidden_layers": 1, "units": 3, "batch_norm": True}, (4,), 2)
    assert count_params(bn) == 4 * 3 + (3 + 3) + (3 * 2 + 2)  # no bias before batch norm; BN weight + bias


# ---- initialisers ------------------------------------------------------------------------------------

FAN_IN, FAN_OUT = 1024, 512  # the first layer of the probe model: 512k weights, so statistics are tight


def probe(activation: str = "relu") -> nn.Module:
    """An mlp whose first Linear is (FAN_OUT, FAN_IN). Seeded: the statistical checks below hold for this draw
    with room to spare, rather than for most draws."""
    torch.manual_seed(0)
    return build_model("mlp", {"hidden_layers": 1, "units": FAN_OUT, "activation": activation}, (FAN_IN,), 10)


def first_weight(model: nn.Module) -> torch.Tensor:
    return linear_layers(model)[0].weight.detach()


GAINS = {  # torch.nn.init.calculate_gain, relu's for activations torch has none for
    "relu": math.sqrt(2),
    "leaky_relu": math.sqrt(2 / (1 + 0.01**2)),
    "elu": math.sqrt(2),
    "gelu": math.sqrt(2),
    "selu": 3 / 4,
    "tanh": 5 / 3,
    "sigmoid": 1.0,
}


@pytest.mark.parametrize("activation", list(GAINS))
def test_init_weights_he_normal_std_is_gain_over_sqrt_fan_in(activation):
    model = probe(activation)
    init_weights(model, "he_normal")
    w = first_weight(model)
    expected = GAINS[activation] / math.sqrt(FAN_IN)
    assert float(w.std()) == pytest.approx(expected, rel=0.02)
    assert abs(float(w.mean())) < 0.01 * expected


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_init_weights_he_uniform_is_bounded_by_gain_sqrt_3_over_fan_in(activation):
    model = probe(activation)
    init_weights(model, "he_uniform")
    w = first_weight(model)
    bound = GAINS[activation] * math.sqrt(3 / FAN_IN)
    assert 0.99 * bound < float(w.abs().max()) <= bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_init_weights_xavier_uniform_is_bounded_by_sqrt_6_over_fans():
    model = probe()
    init_weights(model, "xavier_uniform")
    w = first_weight(model)
    bound = math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert 0.99 * bound < float(w.abs().max()) <= bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize(
    "scheme, expected_std",
    [
        ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("lecun_normal", math.sqrt(1 / FAN_IN)),
    ],
)
def test_init_weights_normal_schemes_have_their_std(scheme, expected_std):
    model = probe()
    init_weights(model, scheme)
    assert float(first_weight(model).std()) == pytest.approx(expected_std, rel=0.02)


def test_init_weights_orthogonal_rows_are_orthonormal():
    model = probe()
    init_weights(model, "orthogonal")
    w = first_weight(model)  # (512, 1024): fewer rows than columns, so W W^T = I
    torch.testing.assert_close(w @ w.T, torch.eye(FAN_OUT), atol=1e-4, rtol=0)


def test_init_weights_orthogonal_applies_to_convolutions():
    model = build_model("cnn", {"maps": 8}, (1, 8, 8), 10)
    init_weights(model, "orthogonal")
    conv2 = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]
    w = conv2.weight.detach().flatten(1)  # (16, 8 * 3 * 3)
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-4, rtol=0)


def test_init_weights_he_normal_uses_the_convolution_fan_in():
    model = build_model("cnn", {"maps": 64, "conv_blocks": 2}, (1, 8, 8), 10)
    init_weights(model, "he_normal")
    conv2 = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]  # (128, 64, 3, 3)
    assert float(conv2.weight.detach().std()) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)


@pytest.mark.parametrize(
    "scheme", ["xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal", "lecun_normal"]
)
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_init_weights_reinitialises_every_layer_and_zeroes_biases(scheme, model_name):
    torch.manual_seed(0)
    model = build_model(model_name, {}, (1, 8, 8), 10)
    before = [m.weight.detach().clone() for m in linear_layers(model)]
    init_weights(model, scheme)
    for layer, old in zip(linear_layers(model), before):
        assert not torch.equal(layer.weight, old)
        if layer.bias is not None:
            assert torch.all(layer.bias == 0)


def test_init_weights_default_keeps_torch_initialisation():
    torch.manual_seed(0)
    model = build_model("mlp", {}, (1, 8, 8), 10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    init_weights(model, "default")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert any(float(layer.bias.detach().abs().sum()) > 0 for layer in linear_layers(model))


def test_init_weights_rejects_an_unknown_scheme():
    with pytest.raises(ValueError, match="initializer is 'glorot', but must be one of default"):
        init_weights(probe(), "glorot")
