"""service/space/_mlflow_keys.py: MLflow's key and value rules, against the installed MLflow and in spaces."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils import validation

from service.space import SpaceError, parse_space
from space_cases import MLFLOW_KEY_CASES, USER_TRAINABLE, user_space
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


@pytest.fixture
def user_dir(tmp_path):
    name, body = USER_TRAINABLE
    (tmp_path / name).write_text(body)
    return tmp_path


def _parse(user_dir, **where):
    return parse_space(user_space(**where), source="space.yaml", base_dir=user_dir)


@pytest.mark.parametrize("where, line, field, shows, fix", MLFLOW_KEY_CASES)
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
