"""Every validation rule of the space format, each with the message a user sees.

Each case changes one line of a valid space and checks that the SpaceError names the file and line, the
dotted field, the offending value, and a fix.
"""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest

from service.space import SpaceError, parse_space
from space_cases import CASES, MODES_MISSING, PARAMS_EMPTY, PARAMS_MISSING, space_text, without_key



@pytest.mark.parametrize("changes, field, shows, fix, line_of", CASES)
def test_validate_rule_message_names_field_value_line_and_fix(changes, field, shows, fix, line_of):
    text, lines = space_text(changes)
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml")
    error = caught.value.errors[0]  # the case's rule is the first broken in the file; others may follow
    line = line_of if isinstance(line_of, int) else lines[line_of or next(iter(changes))]
    assert (error.file, error.line, error.field) == ("space.yaml", line, field), str(caught.value)
    assert shows in error.message, str(error)
    assert fix in error.hint, str(error)
    assert str(error).startswith(f"space.yaml:{line}: {field}: "), str(error)
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "drop, hint",
    [
        ("name", "add name: my-study"),
        ("trainable", "add trainable: cnn"),
        ("metric", "add metric: val_acc"),
    ],
)
def test_validate_required_key_missing(drop, hint):
    with pytest.raises(SpaceError) as caught:
        parse_space(without_key(drop), source="space.yaml")
    assert caught.value.field == drop
    assert caught.value.line is None  # nowhere in the file to point at
    assert "missing" in caught.value.message and hint in caught.value.hint
    assert str(caught.value).startswith(f"space.yaml: {drop}: ")


def test_validate_params_missing_or_empty():
    with pytest.raises(SpaceError, match=r"space.yaml: params: is required but missing; add params:"):
        parse_space(PARAMS_MISSING, source="space.yaml")
    with pytest.raises(SpaceError, match=r"space.yaml:10: params: \{\} searches nothing; add at least one parameter"):
        parse_space(PARAMS_EMPTY, source="space.yaml")


def test_validate_multi_objective_requires_modes():
    with pytest.raises(SpaceError) as caught:
        parse_space(MODES_MISSING, source="space.yaml")
    assert caught.value.field == "mode"
    assert "add mode: [max, max]" in caught.value.hint


def test_validate_reports_every_error_the_first_in_the_file_first():
    text, lines = space_text(
        {"lr": "  lr: {type: float, low: 0.5, high: 0.1}", "budget": "budget: {trials: 0}"}
    )
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml")
    assert caught.value.line == lines["budget"]
    assert [e.line for e in caught.value.errors] == [lines["budget"], lines["lr"]]


@pytest.mark.parametrize(
    "extra, shows",
    [
        ("sampler: {type: tpe, n_startup_trials: 5, constant_liar: false}", None),
        ("sampler: {type: nsga2, population_size: 10, crossover_prob: 0.8}", "metric"),
    ],
)
def test_validate_accepts_sampler_options(extra, shows):
    changes = {"sampler": extra}
    if shows:
        changes.update(metric="metric: [val_acc, n_params]", mode="mode: [max, min]")
    text, _ = space_text(changes)
    space = parse_space(text, source="space.yaml")
    assert space.sampler.options


# -- user trainables, imported from the space's folder --------------------------------------------------
def _module(tmp_path, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))


def test_validate_user_trainable_found_next_to_the_space(tmp_path):
    _module(tmp_path, "hps_user_ok", "def train(config):\n    pass\n")
    text, _ = space_text({"trainable": "trainable: hps_user_ok:train", "metric": "metric: score", "fixed": "fixed: {anything: [1, 2]}"})
    space = parse_space(text, source="space.yaml", base_dir=tmp_path)
    assert space.trainable_spec is None
    assert str(tmp_path) not in sys.path  # the search path was only borrowed


def test_validate_user_trainable_import_failure(tmp_path):
    _module(tmp_path, "hps_user_broken", "raise RuntimeError('boom at import')\n")
    text, lines = space_text({"trainable": "trainable: hps_user_broken:train"})
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml", base_dir=tmp_path)
    assert caught.value.line == lines["trainable"]
    assert "RuntimeError: boom at import" in caught.value.message
    assert "python -c 'import hps_user_broken'" in caught.value.hint


def test_validate_user_trainable_function_missing(tmp_path):
    _module(tmp_path, "hps_user_nofunc", "def trian(config):\n    pass\n")
    text, _ = space_text({"trainable": "trainable: hps_user_nofunc:train"})
    with pytest.raises(SpaceError, match=r"has no attribute 'train'; did you mean 'trian'"):
        parse_space(text, source="space.yaml", base_dir=tmp_path)


# -- data files, checked by trainables.datasets.check_data -----------------------------------------------
def test_validate_data_error_becomes_space_error(tmp_path):
    text, lines = space_text({"data": "data: {dataset: csv, path: missing.csv, target: y}"})
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml", base_dir=tmp_path)
    error = caught.value
    assert (error.field, error.line) == ("data", lines["data"])
    assert str(tmp_path / "missing.csv") in error.message
    assert error.value["path"] == str(tmp_path / "missing.csv")


def test_validate_data_csv_target_checked(tmp_path):
    (tmp_path / "table.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    text, _ = space_text({"data": "data: {dataset: csv, path: table.csv, target: lable}"})
    with pytest.raises(SpaceError, match="lable"):
        parse_space(text, source="space.yaml", base_dir=tmp_path)
    good, _ = space_text({"data": "data: {dataset: csv, path: table.csv, target: label}"})
    assert parse_space(good, source="space.yaml", base_dir=tmp_path).data.path == str(tmp_path / "table.csv")


def test_validate_check_data_false_skips_the_data_check(tmp_path):
    text, _ = space_text({"data": "data: {dataset: csv, path: missing.csv, target: y}"})
    assert parse_space(text, source="space.yaml", base_dir=tmp_path, check_data=False).data.target == "y"


# -- the error object itself -------------------------------------------------------------------------------
def test_space_error_attributes_and_pickling():
    text, lines = space_text({"lr": "  lr: {type: float, low: 0.5, high: 0.1}"})
    with pytest.raises(SpaceError) as caught:
        parse_space(text, source="space.yaml")
    error = caught.value
    assert (error.file, error.line, error.field, error.value) == ("space.yaml", lines["lr"], "params.lr.low", 0.5)
    assert error.message == "0.5 is not below high (0.1)"
    assert error.hint.startswith("make low < high")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.field == error.field
