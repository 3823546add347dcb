"""service/space/_mlflow_keys.py: MLflow's key and value rules, against the installed MLflow and in spaces."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils import validation

from service.space import SpaceError, parse_space
from service.space._mlflow_keys import (
    KEY_PATTERN,
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MLFLOW_VERSION,
    key_problem,
    value_problem,
)

NAMES = [
    "lr", "batch_size", "a-b", "a.b", "a/b", "a/b/c", "with space", "x:y", "ünits", "a.", "a..b", ".a", "a/.b",
    "lr%", "a+b", "tab\tkey", "", ".", "..", "..x", "../a", "./a", "a/./b", "a/../b", "a//b", "/a", "a/", "a/.", "a/..",
    "k" * MAX_KEY_LENGTH, "k" * (MAX_KEY_LENGTH + 1),
]


def _mlflow_refuses_key(name: str) -> bool:
    """What MLflow itself does with a param key (mlflow.utils.validation, as MlflowClient.log_batch calls it)."""
    try:
        validation._validate_param_name(name)
        validation._validate_length_limit("Param key", validation.MAX_ENTITY_KEY_LENGTH, name)
    except MlflowException as exc:
        assert exc.error_code == "INVALID_PARAMETER_VALUE"
        return True
    return False


def test_mlflow_keys_mirror_the_version_read():
    """Reading the rules again is due when MLflow moves; this names the version they were read from."""
    assert version("mlflow") == MLFLOW_VERSION
    assert (validation.MAX_ENTITY_KEY_LENGTH, validation.MAX_PARAM_VAL_LENGTH) == (MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH)


@pytest.mark.parametrize("name", NAMES, ids=repr)
def test_mlflow_keys_key_problem_agrees_with_mlflow(name):
    assert (key_problem(name) is not None) == _mlflow_refuses_key(name)


@pytest.mark.parametrize("name", NAMES, ids=repr)
def test_mlflow_keys_schema_pattern_agrees_with_mlflow(name):
    """The JSON Schema's pattern (plus maxLength) says the same as the rule in code."""
    by_pattern = re.search(KEY_PATTERN, name) is not None and len(name) <= MAX_KEY_LENGTH
    assert by_pattern == (not _mlflow_refuses_key(name))


@pytest.mark.parametrize("length, refused", [(MAX_PARAM_VALUE_LENGTH, False), (MAX_PARAM_VALUE_LENGTH + 1, True)])
def test_mlflow_keys_value_length_boundary(length, refused):
    assert (value_problem("v" * length) is not None) is refused
    assert (value_problem(["v" * (length - 4)]) is not None) is refused  # "['…']" adds 4 characters as text


USER_SPACE = """\
name: keys
trainable: hps_keys_trainable:train
metric: {metric}
params:
  {param}: {{type: float, low: 0.1, high: 0.5}}
fixed:
  {fixed_key}: {fixed_value}
"""


@pytest.fixture
def user_dir(tmp_path):
    (tmp_path / "hps_keys_trainable.py").write_text("def train(config):\n    pass\n")
    return tmp_path


def _parse(user_dir, metric="score", param="lr", fixed_key="width", fixed_value="3"):
    text = USER_SPACE.format(metric=metric, param=param, fixed_key=fixed_key, fixed_value=fixed_value)
    return parse_space(text, source="space.yaml", base_dir=user_dir)


@pytest.mark.parametrize(
    "where, line, field, shows, fix",
    [
        ({"param": "'lr%'"}, 5, "params.lr%", "allows only letters, digits", "rename it, e.g. 'lr_'"),
        ({"param": "a//b"}, 5, "params.a//b", "would resolve to 'a/b'", "rename it, e.g. 'a/b'"),
        ({"fixed_key": "'/abs'"}, 7, "fixed./abs", "treats keys as file paths", "rename it, e.g. 'abs'"),
        ({"fixed_key": "k" * 251}, 7, "fixed." + "k" * 251, "more than the 250 MLflow allows", "shorter name"),
        ({"fixed_value": "x" * 6001}, 7, "fixed.width", "6001 characters as text, more than the 6000", "shorten it"),
        ({"metric": "'acc%'"}, 3, "metric", "MLflow metric key", "a name MLflow accepts"),
    ],
    ids=["param-character", "param-path", "fixed-absolute", "fixed-length", "fixed-value", "metric"],
)
def test_mlflow_keys_refused_at_validate_time(user_dir, where, line, field, shows, fix):
    with pytest.raises(SpaceError) as caught:
        _parse(user_dir, **where)
    error = caught.value
    assert (error.line, error.field) == (line, field), str(error)
    assert shows in error.message and "MLflow" in error.message, str(error)
    assert fix in error.hint, str(error)


def test_mlflow_keys_accepts_what_mlflow_accepts(user_dir):
    space = _parse(user_dir, metric="val/acc", param="'opt.lr'", fixed_key="'layer 1:units'", fixed_value="x" * 6000)
    assert "opt.lr" in space.params and "layer 1:units" in space.fixed
