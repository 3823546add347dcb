"""What each built-in trainable accepts and reports.

The space validator (service/space) reads this catalog to reject parameter names a trainable does not
accept and values outside what a parameter means, before any trial starts. It imports neither torch nor
Ray, so `hpsearch validate` stays fast.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from trainables._defaults import CNNArch, DataConfig, MLPArch, TrainConfig
from trainables.synthetic import SyntheticConfig


@dataclass(frozen=True)
class ParamRule:
    """The values one hyperparameter may take.

    kind: "float", "int", "bool" or "choice". For numbers, `low`/`high` bound the value; `low_open` /
    `high_open` make that bound exclusive (dropout lies in [0, 1), so high=1, high_open=True).
    """

    kind: str
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()

    def describe(self) -> str:
        """The rule in words, for error messages: 'a number in [0, 1)', 'one of sgd, adam'."""
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        noun = "an integer" if self.kind == "int" else "a number"
        if self.low is None and self.high is None:
            return noun
        if self.high is None:
            return f"{noun} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.low is None:
            return f"{noun} {'<' if self.high_open else '<='} {_num(self.high)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{noun} in {left}{_num(self.low)}, {_num(self.high)}{right}"

    def accepts(self, value: Any) -> bool:
        """Whether one concrete value is allowed."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        # numbers.Real also admits numpy scalars (tune.randint yields np.int64); bool is excluded on purpose.
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


def _num(x: Optional[float]) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid")
INITIALIZERS = (
    "default", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal", "lecun_normal",
)
LR_SCHEDULES = ("none", "step", "cosine", "plateau")
IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
DATASETS = IMAGE_DATASETS + ("csv",)
CATEGORICAL_ENCODINGS = ("onehot", "ordinal")
# The keys of config["data"] (DataConfig's fields) that every dataset reads.
COMMON_DATA_KEYS = ("dataset", "val_fraction", "seed")
# The further keys each dataset reads; those whose DataConfig default is None it cannot do without.
DATASET_KEYS: dict[str, tuple[str, ...]] = {
    "digits": (),  # bundled with scikit-learn
    "mnist": ("root",),
    "fashion_mnist": ("root",),
    "cifar10": ("root",),
    "csv": ("path", "target", "categorical"),
}


def required_data_keys(dataset: str) -> tuple[str, ...]:
    """The keys `dataset` needs a value for: its own keys without a default in DataConfig."""
    defaults = asdict(DataConfig())
    return tuple(key for key in DATASET_KEYS[dataset] if defaults[key] is None)


# Knobs every built-in trainable takes: optimisation, regularisation, initialisation.
_COMMON: dict[str, ParamRule] = {
    "lr": ParamRule("float", "learning rate", low=0, low_open=True, high=10),
    "batch_size": ParamRule("int", "examples per step", low=1),
    "optimizer": ParamRule("choice", "optimiser", choices=OPTIMIZERS),
    "momentum": ParamRule("float", "momentum (sgd, rmsprop)", low=0, high=1, high_open=True),
    "nesterov": ParamRule("bool", "Nesterov momentum (sgd with momentum > 0)"),
    "weight_decay": ParamRule("float", "L2 penalty", low=0, high=1),
    "dropout": ParamRule("float", "dropout probability", low=0, high=1, high_open=True),
    "activation": ParamRule("choice", "hidden activation", choices=ACTIVATIONS),
    "initializer": ParamRule("choice", "weight initialisation scheme", choices=INITIALIZERS),
    "batch_norm": ParamRule("bool", "batch normalisation after each hidden layer or convolution"),
    "lr_schedule": ParamRule("choice", "learning-rate schedule over max_epochs", choices=LR_SCHEDULES),
    "seed": ParamRule("int", "seed of weights and batch order", low=0),
}


@dataclass(frozen=True)
class TrainableSpec:
    """A built-in trainable: where its function lives, what it accepts, what it reports."""

    name: str
    target: str  # "module:function", imported only when trials run
    params: dict[str, ParamRule]
    metrics: tuple[str, ...] = ("val_acc", "val_loss", "train_loss", "n_params", "epoch_time_s")
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # value of every param a config leaves out
    needs_images: bool = False  # convolves over height and width, so tabular (csv) data cannot feed it


BUILTIN_TRAINABLES: dict[str, TrainableSpec] = {
    "mlp": TrainableSpec(
        name="mlp",
        target="trainables.mlp:train",
        description="fully connected network on flattened inputs (images or tabular rows)",
        params={
            **_COMMON,
            "hidden_layers": ParamRule("int", "number of hidden layers", low=1, high=16),
            "units": ParamRule("int", "units per hidden layer", low=1, high=65536),
        },
        defaults={**asdict(TrainConfig()), **asdict(MLPArch())},
    ),
    "cnn": TrainableSpec(
        name="cnn",
        target="trainables.cnn:train",
        description="conv-pool blocks (maps doubling per block) then a dense layer; image data only",
        params={
            **_COMMON,
            "conv_blocks": ParamRule("int", "conv-pool blocks", low=1, high=6),
            "maps": ParamRule("int", "feature maps of the first block (doubled per block)", low=1, high=4096),
            "convs_per_block": ParamRule("int", "convolutions before each pooling", low=1, high=4),
            "kernel_size": ParamRule(
                "int", "convolution kernel size (same padding; odd pads symmetrically)", low=1, high=11
            ),
            "dense_units": ParamRule("int", "units of the dense layer before the classifier", low=1, high=65536),
        },
        defaults={**asdict(TrainConfig()), **asdict(CNNArch())},
        needs_images=True,
    ),
    "synthetic": TrainableSpec(
        name="synthetic",
        target="trainables.synthetic:train",
        description="learning curves from a formula with a known optimum (val_acc 0.99), microseconds per epoch; "
                    "for measuring search strategies (trainables/synthetic.py); ignores data",
        params={
            "lr": ParamRule("float", "learning rate (its best value grows with warmup)", low=0, low_open=True, high=10),
            "width": ParamRule("int", "units: wider learns slower and ends higher (best 1024)", low=16, high=1024),
            "warmup": ParamRule("float", "fraction of max_epochs spent warming up", low=0, high=0.5),
            "optimizer": ParamRule("choice", "adam starts faster and ends lower", choices=("sgd", "adam")),
            "seed": ParamRule("int", "seed of the noise", low=0),
            "epoch_seconds": ParamRule("float", "sleep per epoch at width 1024, to mimic training time", low=0),
        },
        metrics=("val_acc", "val_loss", "epoch_time_s"),
        defaults=asdict(SyntheticConfig()),
    ),
}

# Keys the runner adds to every trial's config; a space may not search or fix them.
RESERVED_CONFIG_KEYS = ("data", "max_epochs")
