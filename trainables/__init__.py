"""Built-in trainables of hpsearch: the catalog of what they accept, the models, the data and the loop.

Importing this package imports neither torch nor Ray (the CLI reads the catalog and must start fast):
names that need torch are loaded on first access through the module-level `__getattr__`.

The tables exported here (the catalog of built-in trainables, the datasets and their keys, the encodings,
the config keys the runner reserves, the data section's defaults) are the one source other packages read:
`service.space` validates a space against them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trainables._catalog import (
    BUILTIN_TRAINABLES,
    CATEGORICAL_ENCODINGS,
    COMMON_DATA_KEYS,
    DATASET_KEYS,
    DATASETS,
    IMAGE_DATASETS,
    RESERVED_CONFIG_KEYS,
    ParamRule,
    TrainableSpec,
    required_data_keys,
)
from trainables._defaults import DataConfig
from trainables._errors import DataError, TrialDiverged

if TYPE_CHECKING:
    from trainables._loop import fit
    from trainables.datasets import Dataset, check_data, load_dataset
    from trainables.models import build_model, count_params, init_weights, load_model

# name -> module that defines it, imported on first access
_LAZY = {
    "fit": "trainables._loop",
    "build_model": "trainables.models",
    "count_params": "trainables.models",
    "init_weights": "trainables.models",
    "load_model": "trainables.models",
    "load_dataset": "trainables.datasets",
    "check_data": "trainables.datasets",
    "Dataset": "trainables.datasets",
}

__all__ = [
    "BUILTIN_TRAINABLES",
    "CATEGORICAL_ENCODINGS",
    "COMMON_DATA_KEYS",
    "DATASETS",
    "DATASET_KEYS",
    "IMAGE_DATASETS",
    "RESERVED_CONFIG_KEYS",
    "DataConfig",
    "DataError",
    "Dataset",
    "ParamRule",
    "TrainableSpec",
    "TrialDiverged",
    "build_model",
    "check_data",
    "count_params",
    "fit",
    "init_weights",
    "load_dataset",
    "load_model",
    "required_data_keys",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
