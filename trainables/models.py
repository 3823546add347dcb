"""The networks of the built-in trainables, their initialisers and a parameter count.

`build_model` takes the model-building hyperparameters (the fields of MLPArch / CNNArch; missing ones take
their defaults), so a checkpoint's "hparams" rebuilds the same network without the trial's config.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Optional

import torch
from torch import nn

from trainables._catalog import ACTIVATIONS, INITIALIZERS
from trainables._defaults import CNNArch, MLPArch
from trainables._errors import DataError

ARCHS = {"mlp": MLPArch, "cnn": CNNArch}


def build_model(model_name: str, hparams: dict, input_shape: tuple, num_classes: int) -> nn.Module:
    """A freshly initialised (torch default) network for inputs of `input_shape` (no batch dim)."""
    if model_name not in ARCHS:
        raise ValueError(f"model_name is {model_name!r}, but must be one of {', '.join(ARCHS)}")
    arch_cls = ARCHS[model_name]
    known = {f.name for f in fields(arch_cls)}
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(
            f"{model_name} does not take {', '.join(map(repr, unknown))}; "
            f"it builds from {', '.join(sorted(known))}"
        )
    arch = arch_cls(**hparams)
    if arch.activation not in ACTIVATIONS:
        raise ValueError(f"activation is {arch.activation!r}, but must be one of {', '.join(ACTIVATIONS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes is {num_classes}, but a classifier needs >= 2")
    if model_name == "mlp":
        return MLP(tuple(input_shape), num_classes, arch)
    if len(input_shape) != 3:
        raise DataError(
            f"the cnn trainable needs image data; got inputs of shape {tuple(input_shape)} instead of "
            "(channels, height, width) — use the mlp trainable for tabular data"
        )
    return CNN(tuple(input_shape), num_classes, arch)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (weights and biases, not batch-norm running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, the torch default
        "elu": nn.ELU,
        "selu": nn.SELU,
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }[name]()


class MLP(nn.Module):
    """Flatten -> hidden_layers x (Linear -> [BatchNorm1d] -> activation -> [Dropout]) -> Linear."""

    def __init__(self, input_shape: tuple, num_classes: int, arch: MLPArch):
        super().__init__()
        self.activation = arch.activation  # read by init_weights for the he_* gain
        layers: list[nn.Module] = [nn.Flatten()]  # (B, *input_shape) -> (B, F)
        width = math.prod(input_shape)
        for _ in range(arch.hidden_layers):
            # A bias before batch norm is cancelled by its mean subtraction, so leave it out.
            layers.append(nn.Linear(width, arch.units, bias=not arch.batch_norm))
            if arch.batch_norm:
                layers.append(nn.BatchNorm1d(arch.units))
            layers.append(make_activation(arch.activation))
            if arch.dropout > 0:
                layers.append(nn.Dropout(arch.dropout))
            width = arch.units
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, num_classes) logits


class CNN(nn.Module):
    """conv_blocks x (convs_per_block x (Conv2d -> [BatchNorm2d] -> activation) -> MaxPool2d(2)), maps
    doubling per block -> Flatten -> Linear(dense_units) -> activation -> [Dropout] -> Linear.

    A block pools only while height and width are both >= 2, so 3 blocks fit 8x8 digits (8 -> 4 -> 2 -> 1).
    """

    def __init__(self, input_shape: tuple, num_classes: int, arch: CNNArch):
        super().__init__()
        self.activation = arch.activation
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for block in range(arch.conv_blocks):
            maps = arch.maps * 2**block
            for _ in range(arch.convs_per_block):
                layers.append(
                    nn.Conv2d(channels, maps, arch.kernel_size, padding="same", bias=not arch.batch_norm)
                )
                if arch.batch_norm:
                    layers.append(nn.BatchNorm2d(maps))
                layers.append(make_activation(arch.activation))
                channels = maps
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
        self.features = nn.Sequential(*layers)  # (B, C, H, W) -> (B, channels, height, width)
        head: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(channels * height * width, arch.dense_units),
            make_activation(arch.activation),
        ]
        if arch.dropout > 0:
            head.append(nn.Dropout(arch.dropout))
        head.append(nn.Linear(arch.dense_units, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


def init_weights(model: nn.Module, scheme: str, activation: Optional[str] = None) -> None:
    """Re-initialise every Linear and Conv weight of `model` in place with `scheme`; zero their biases.

    "default" leaves torch's own initialisation (weights and biases) untouched. The he_* schemes use the
    gain of `activation` (default: the model's own `activation`, else relu) where torch has one; elu and
    gelu, which it has not, use relu's. lecun_normal is N(0, 1/fan_in). Batch-norm layers keep weight 1,
    bias 0.
    """
    if scheme not in INITIALIZERS:
        raise ValueError(f"initializer is {scheme!r}, but must be one of {', '.join(INITIALIZERS)}")
    if scheme == "default":
        return
    activation = activation or getattr(model, "activation", "relu")
    # torch.nn.init.calculate_gain knows these; the rest are relu-like.
    nonlinearity = activation if activation in ("relu", "leaky_relu", "selu", "tanh", "sigmoid") else "relu"
    slope = 0.01 if nonlinearity == "leaky_relu" else 0.0  # nn.LeakyReLU's default negative slope
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        w = module.weight
        if scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w)
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w)
        elif scheme == "he_uniform":
            nn.init.kaiming_uniform_(w, a=slope, nonlinearity=nonlinearity)
        elif scheme == "he_normal":
            nn.init.kaiming_normal_(w, a=slope, nonlinearity=nonlinearity)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w)
        elif scheme == "lecun_normal":
            nn.init.kaiming_normal_(w, nonlinearity="linear")  # std = 1 / sqrt(fan_in)
        if module.bias is not None:
            nn.init.zeros_(module.bias)



def load_model(checkpoint_file: str, map_location: str = "cpu") -> nn.Module:
    """Rebuild the model a trial checkpoint (checkpoint.pt) was saved from, with its trained weights, in
    eval mode. The checkpoint carries the model name, its hyperparameters and the data's shape."""
    state = torch.load(checkpoint_file, map_location=map_location, weights_only=True)
    model = build_model(state["model_name"], state["hparams"], tuple(state["input_shape"]), state["num_classes"])
    model.load_state_dict(state["model"])
    return model.eval()
