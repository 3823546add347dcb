"""service/space/_schema.py: the JSON Schema generated from the models, and that it says what `validate` says.

The main test runs every example space and every malformed case of the space tests (tests/space_cases.py)
through both the schema and `parse_space` and expects the same verdict. The few rules no JSON Schema can state
are in one list below, SCHEMA_CANNOT_SAY, each with its reason; a case there must get different verdicts, so
the list cannot outlive the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from service.space import Budget, DataSpec, ParamSpec, Resources, SchedulerSpec, SpaceError, json_schema, parse_space
from service.space._duration import DURATION_PATTERN, parse_duration
from service.space._model import FILE_KEYS
from service.space._types import NONE_WORD_PATTERN, NUMERIC_TEXT_PATTERN, none_word, to_number
from space_cases import (
    BASE,
    CASES,
    EXAMPLE,
    MANY,
    MINIMAL,
    MLFLOW_KEY_CASES,
    MODES_MISSING,
    ONE_MISTAKE_CASES,
    PARAMS_EMPTY,
    TRAIN_ONCE,
    PARAMS_MISSING,
    REFUSED_PART_CASES,
    USER_TRAINABLE,
    space_text,
    user_space,
    without_key,
)

EXAMPLES = sorted((Path(__file__).parents[1] / "search_spaces").glob("*.yaml"))

# Cases the schema cannot judge as `validate` does, and why. Keep it short: encode in the models or in
# _schema.py whatever a JSON Schema can express.
SCHEMA_CANNOT_SAY = {
    # values compared with each other
    "low-not-below-high": "low < high compares two values",
    "low-equals-high": "low < high compares two values",
    "step-not-dividing-float": "high on the step grid is arithmetic between three values",
    "step-not-dividing-int": "high on the step grid is arithmetic between three values",
    "mode-list-too-short": "one mode per metric compares the lengths of two lists",
    "grace-period-over-max-epochs": "grace_period <= max_epochs compares values in two sections",
    "param-also-fixed": "a name in both params and fixed compares the keys of two mappings",
    # conditions name other parameters and their values
    "when-unknown-parent": "a condition names another parameter of the same file",
    "when-value-not-a-choice": "a condition's value must be among another parameter's choices",
    "when-value-list-not-a-choice": "a condition's value must be among another parameter's choices",
    "when-value-yaml-bool": "a condition's value must be among another parameter's choices",
    "when-value-outside-range": "a condition's value must be in another parameter's range",
    "when-value-off-int-grid": "a condition's value must be on another parameter's grid",
    "when-value-text-on-number": "a condition's value must have another parameter's type",
    "when-continuous-float-parent": "a condition on a float needs that parameter to have a step",
    "when-self": "a condition names its own parameter",
    "one-mistake-self-then-cycle": "a condition names its own parameter",
    "when-fixed-parent": "a condition names a key of fixed",
    "when-cycle": "conditions forming a cycle is a property of the graph of all of them",
    # Python and the disk, at validate time
    "trainable-module-missing": "whether a module is importable",
    "trainable-function-missing": "whether a module has the function (importing it)",
    "trainable-not-callable": "whether the attribute is a function (importing it)",
    "example:mnist_cnn.yaml": "the data files on disk (the MNIST files are not in the repository)",
    # values JSON cannot hold apart
    "nan-bound": "JSON has no NaN or Infinity: the schema sees a plain number",
    "catalog-int-choice-float": "JSON has one number type: 64.0 and 64 are the same JSON value",
    "catalog-int-fixed-float": "JSON has one number type: 32.0 and 32 are the same JSON value",
    "numeric-text-bound": "bounds apply to JSON numbers; numeric text such as '0' is checked for its form only",
}


# Wrong shapes of a whole section, as an editor would flag them.
SHAPES = {
    "unknown-section": {"budjet": {"trials": 3}},
    "option-of-another-sampler": {"sampler": {"type": "random", "n_startup_trials": 3}},
    "foreign-param-type": {"params": {"lr": {"type": "uniform", "low": 0, "high": 1}}},
    "categorical-without-choices": {"params": {"lr": {"type": "categorical"}}},
    "mode-word": {"mode": "maximize"},
}


def _case(case_id: str, text: str, valid: bool) -> object:
    return pytest.param(text, valid, id=case_id)


def _corpus() -> list:
    # every example is valid; mnist_cnn's data files are not in the repository, so validate refuses it here
    cases = [_case(f"example:{path.name}", path.read_text(), path.name != "mnist_cnn.yaml") for path in EXAMPLES]
    cases += [_case("example", EXAMPLE, True), _case("minimal", MINIMAL, True)]
    cases += [_case(c.id, space_text(c.values[0])[0], False) for c in CASES]
    cases += [_case(f"required-{key}", without_key(key), False) for key in ("name", "trainable", "metric")]
    cases += [
        _case("params-missing", PARAMS_MISSING, False),
        _case("params-empty", PARAMS_EMPTY, False),
        _case("train-once", TRAIN_ONCE, True),
        _case("modes-missing", MODES_MISSING, False),
        _case("findings-many", MANY, False),
    ]
    cases += [_case(f"shape-{case_id}", yaml.safe_dump({**yaml.safe_load(EXAMPLE), **change}), False) for case_id, change in SHAPES.items()]
    cases += [_case(f"refused-part-{c.id}", c.values[0], False) for c in REFUSED_PART_CASES]
    cases += [_case(f"one-mistake-{c.id}", c.values[0], False) for c in ONE_MISTAKE_CASES]
    cases += [_case(f"mlflow-{c.id}", user_space(**c.values[0]), False) for c in MLFLOW_KEY_CASES]
    cases += [_case("mlflow-accepted", user_space(metric="val/acc", param="'opt.lr'", fixed_key="'a b:c'"), True)]
    change = {
        "time-units-reversed": ({"budget": "budget: {time: 1m30h}"}, False),  # passed the hand-written schema
        "time-words": ({"budget": "budget: {time: 1h30m, max_failed_trials: none}"}, True),
        "numeric-text": ({"lr": '  lr: {type: float, low: "1e-4", high: "0.1", log: true}'}, True),
        "numeric-text-bound": ({"budget": 'budget: {trials: "0"}'}, False),
        "multi-objective": ({"metric": "metric: [val_acc, n_params]", "mode": "mode: [max, min]", "sampler": "sampler: {type: nsga2}"}, True),
        "one-metric-in-a-list": ({"metric": "metric: [val_acc]"}, True),
        "grid-with-steps": ({"sampler": "sampler: {type: grid}", "lr": "  lr: {type: float, low: 0.01, high: 0.1, step: 0.01}", "momentum": "  momentum: {type: float, low: 0.0, high: 0.9, step: 0.1, when: {optimizer: sgd}}"}, True),
        "csv-data": ({"data": "data: {dataset: csv, path: data/wine.csv, target: cultivar, categorical: ordinal}"}, True),
        "digits-root-null": ({"data": "data: {dataset: digits, root: null}"}, True),
        "scheduler-median": ({"scheduler": "scheduler: {type: median, min_samples_required: 2}"}, True),
        "sampler-options": ({"sampler": "sampler: {type: qmc, qmc_type: halton, scramble: true, seed: 3}"}, True),
        "resources-fraction": ({"resources": "resources: {cpu: 2, gpu: 0.5}"}, True),
        "resources-whole": ({"resources": "resources: {cpu: 1, gpu: 2}"}, True),
    }
    cases += [_case(case_id, space_text(changes)[0], valid) for case_id, (changes, valid) in change.items()]
    return cases


CORPUS = _corpus()


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=None)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """Where the spaces are parsed from: the examples' data, and the user trainable some cases name."""
    folder = tmp_path_factory.mktemp("spaces")
    (folder / "data").mkdir()
    for data in (Path(__file__).parents[1] / "search_spaces" / "data").glob("*.csv"):
        (folder / "data" / data.name).write_text(data.read_text())
    name, body = USER_TRAINABLE
    (folder / name).write_text(body)
    return folder


def _validate_says(text: str, base_dir: Path) -> bool:
    try:
        parse_space(text, source="space.yaml", base_dir=base_dir)
    except SpaceError:
        return False
    return True


@pytest.mark.parametrize("text, valid", CORPUS)
def test_schema_and_validate_agree(request, validator, base_dir, text, valid):
    case_id = request.node.callspec.id
    validate_says = _validate_says(text, base_dir)
    assert validate_says is valid, "the case itself is out of date"
    schema_says = validator.is_valid(yaml.safe_load(text))
    if case_id in SCHEMA_CANNOT_SAY:
        assert schema_says is not validate_says, f"the schema now says what validate says: drop {case_id!r} from the list"
    else:
        errors = [e.message[:200] for e in validator.iter_errors(yaml.safe_load(text))]
        assert schema_says is validate_says, errors


def test_schema_cannot_say_lists_only_cases_of_the_corpus():
    ids = {param.id for param in CORPUS}
    assert set(SCHEMA_CANNOT_SAY) <= ids


def test_schema_is_json_draft_2020_12():
    schema = json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_describes_every_key():
    schema = json_schema()
    assert set(schema["properties"]) == set(FILE_KEYS)
    for key, value in schema["properties"].items():
        assert value.get("description"), key
    defs = schema["$defs"]
    sections = {"DataSpec": DataSpec, "Budget": Budget, "Resources": Resources, "SchedulerSpec": SchedulerSpec, "ParamSpec": ParamSpec}
    for name, model in sections.items():
        keys = {field.alias or key for key, field in model.model_fields.items()}
        assert set(defs[name]["properties"]) == keys, name
        assert all(p.get("description") for p in defs[name]["properties"].values()), name


def test_schema_sampler_lists_every_option_a_file_may_write():
    from service.space import SAMPLERS

    sampler = json_schema()["$defs"]["SamplerSpec"]
    options = {name for info in SAMPLERS.values() for name in info.options}
    assert set(sampler["properties"]) == {"type", "seed", "deterministic"} | options


@pytest.mark.parametrize(
    "text",
    ["90s", "30m", "2h", "1h30m", "1.5h", "1d", "45", " 2h 5m 3s ", "1e3", "+5", ".5m", "1H30M", "1 h",
     "1m30h", "30m1h", "1h1h", "0", "0s", "0.0h", "-5", "", "abc", "5 minutes", "nan", "inf", "m"],
)
def test_schema_duration_pattern_is_parse_duration(text):
    try:
        reads = parse_duration(text) > 0
    except SpaceError:
        reads = False
    assert (re.search(DURATION_PATTERN, text) is not None) is reads


@pytest.mark.parametrize(
    "text",
    ["1", "-3", "+2", " 7 ", "1e-4", "1E3", "0.5", ".5", "5.", "1_000", "1.5e+3",
     "", " ", "abc", "1e", "e3", "nan", "inf", "-inf", "1.2.3", "0x10", "1,5", "--1"],
)
def test_schema_numeric_text_pattern_is_to_number(text):
    try:
        to_number(text)
        reads = True
    except ValueError:
        reads = False
    assert (re.search(NUMERIC_TEXT_PATTERN, text) is not None) is reads


@pytest.mark.parametrize("text", ["none", "None", " NULL ", "", "  ", "nil", "no", "nothing", "none none"])
def test_schema_none_word_pattern_is_none_word(text):
    assert (re.search(NONE_WORD_PATTERN, text) is not None) is (none_word(text) is None)


def test_schema_catalog_lists_the_builtin_parameters_and_metrics():
    from trainables import BUILTIN_TRAINABLES

    rules = {rule["if"]["properties"]["trainable"]["const"]: rule["then"]["properties"]
             for rule in json_schema()["allOf"] if "trainable" in rule.get("if", {}).get("properties", {})}
    assert set(rules) == set(BUILTIN_TRAINABLES)
    for name, spec in BUILTIN_TRAINABLES.items():
        assert rules[name]["params"]["propertyNames"]["enum"] == list(spec.params)
        assert rules[name]["metric"]["anyOf"][0]["enum"] == list(spec.metrics)


def test_schema_base_is_valid(validator):
    """BASE, which every case changes, is valid for both."""
    assert validator.is_valid(yaml.safe_load(BASE))
