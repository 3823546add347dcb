"""trainables._catalog (through the package's public names): parameter rules, defaults, the dataset tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainables import BUILTIN_TRAINABLES, ParamRule


@pytest.mark.parametrize(
    "rule, value, accepted",
    [
        (ParamRule("float", "lr", low=0, low_open=True, high=10), 0.0, False),
        (ParamRule("float", "lr", low=0, low_open=True, high=10), 10, True),
        (ParamRule("float", "lr", low=0, low_open=True, high=10), math.nan, False),
        (ParamRule("float", "x", low=0), math.inf, False),
        (ParamRule("float", "x", low=0), np.float32(0.5), True),
        (ParamRule("int", "batch_size", low=1), np.int64(64), True),
        (ParamRule("int", "batch_size", low=1), 64.0, True),
        (ParamRule("int", "batch_size", low=1), 64.5, False),
        (ParamRule("int", "batch_size", low=1), True, False),
        (ParamRule("float", "dropout", low=0, high=1, high_open=True), 1, False),
        (ParamRule("bool", "batch_norm"), 1, False),
        (ParamRule("choice", "optimizer", choices=("sgd", "adam")), "adam", True),
        (ParamRule("choice", "optimizer", choices=("sgd", "adam")), "Adam", False),
    ],
)
def test_param_rule_accepts_only_finite_values_in_range(rule, value, accepted):
    assert rule.accepts(value) is accepted


@pytest.mark.parametrize(
    "rule, words",
    [
        (ParamRule("float", "", low=0, high=1, high_open=True), "a number in [0, 1)"),
        (ParamRule("int", "", low=1), "an integer >= 1"),
        (ParamRule("float", "", low=0, low_open=True, high=10), "a number in (0, 10]"),
        (ParamRule("choice", "", choices=("a", "b")), "one of a, b"),
        (ParamRule("bool", ""), "true or false"),
    ],
)
def test_param_rule_describe(rule, words):
    assert rule.describe() == words


@pytest.mark.parametrize("name", list(BUILTIN_TRAINABLES))
def test_builtin_trainables_declare_an_accepted_default_for_every_param(name):
    spec = BUILTIN_TRAINABLES[name]
    assert set(spec.defaults) == set(spec.params)
    for param, rule in spec.params.items():
        assert rule.accepts(spec.defaults[param]), param


def test_dataset_keys_cover_every_dataset_and_only_data_config_fields():
    from dataclasses import fields

    from trainables import COMMON_DATA_KEYS, DATASET_KEYS, DATASETS, DataConfig

    names = [f.name for f in fields(DataConfig)]
    assert set(DATASET_KEYS) == set(DATASETS)
    for dataset, keys in DATASET_KEYS.items():
        assert set(keys) <= set(names) and not set(keys) & set(COMMON_DATA_KEYS), dataset
    # every field is read by some dataset, so none is dead weight in a trial's config["data"]
    assert set(COMMON_DATA_KEYS).union(*DATASET_KEYS.values()) == set(names)


@pytest.mark.parametrize(
    "dataset, required",
    [("digits", ()), ("mnist", ("root",)), ("fashion_mnist", ("root",)), ("cifar10", ("root",)), ("csv", ("path", "target"))],
)
def test_required_data_keys_are_the_dataset_keys_without_a_default(dataset, required):
    from trainables import required_data_keys

    assert required_data_keys(dataset) == required


def test_only_image_trainables_need_images():
    assert [name for name, spec in BUILTIN_TRAINABLES.items() if spec.needs_images] == ["cnn"]
