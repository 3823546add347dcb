"""JSON Schema of the space format, for editor completion and hover help (e.g. the YAML language server:
`# yaml-language-server: $schema=hpsearch-space.schema.json`).

Generated, not written: `SearchSpace.model_json_schema()` gives the keys, types, descriptions and defaults,
plus what each type and model adds for what its validator accepts or checks (numeric text, bounds, which keys
apply to which dataset, scheduler, sampler or parameter type). To that this module adds the rules between
sections that a JSON Schema can state, built from the same tables the checks read: the built-in trainables'
catalog (parameter names and values, metric names, image data), the samplers for one or several metrics, the
grid's need for steps, reserved keys and MLflow's key rules. What no JSON Schema can state (low < high, the
step grid, conditions, files on disk, importing a trainable) only `hpsearch validate` checks;
tests/test_space_schema.py names each such case.
"""

from __future__ import annotations

from typing import Any

from trainables import BUILTIN_TRAINABLES, IMAGE_DATASETS, RESERVED_CONFIG_KEYS, ParamRule, TrainableSpec

from ._mlflow_keys import KEY_PATTERN, MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH
from ._model import SearchSpace
from ._samplers import MULTI_OBJECTIVE_SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS
from ._types import if_equals, rule_schema

_MLFLOW_KEY = {"type": "string", "pattern": KEY_PATTERN, "maxLength": MAX_KEY_LENGTH}


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a space file."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **SearchSpace.model_json_schema(),
        "title": "hpsearch search space",
        "description": "What to search, on what, with how much: `hpsearch submit space.yaml`.",
    }
    schema["allOf"] = [_names(), _searches_something(), *_objectives(), _grid(), _deterministic(),
                       *(_catalog(spec) for spec in BUILTIN_TRAINABLES.values())]
    return schema


def _names() -> dict:
    """Keys every trial's config and MLflow run will hold: not reserved, and what MLflow accepts."""
    key = {**_MLFLOW_KEY, "not": {"enum": list(RESERVED_CONFIG_KEYS)}}
    return {
        "properties": {
            "params": {"propertyNames": key},
            "fixed": {"propertyNames": key, "additionalProperties": {"maxLength": MAX_PARAM_VALUE_LENGTH}},
            "metric": {"anyOf": [_MLFLOW_KEY, {"type": "array", "items": _MLFLOW_KEY}]},
        }
    }


def _objectives() -> list[dict]:
    """Several metrics need a mode each, a sampler for several objectives, and no median scheduler; one
    metric needs a single-objective sampler and one mode."""
    several = {"properties": {"metric": {"type": "array", "minItems": 2}}, "required": ["metric"]}
    return [
        {
            "if": several,
            "then": {
                "required": ["mode"],
                "properties": {
                    "mode": {"type": "array"},
                    "sampler": {"properties": {"type": {"enum": list(MULTI_OBJECTIVE_SAMPLERS)}}},
                    "scheduler": {"properties": {"type": {"not": {"const": "median"}}}},
                },
            },
            "else": {"properties": {"sampler": {"properties": {"type": {"enum": list(SINGLE_OBJECTIVE_SAMPLERS)}}}}},
        },
        {
            "if": {"properties": {"metric": {"type": "string"}}, "required": ["metric"]},
            "then": {"properties": {"mode": {"not": {"type": "array"}}}},
        },
    ]


def _searches_something() -> dict:
    """At least one parameter, unless budget.trials is 1 (the fixed configuration trained once)."""
    trials_one = {"properties": {"budget": {"properties": {"trials": {"const": 1}}, "required": ["trials"]}},
                  "required": ["budget"]}
    return {"if": trials_one, "else": {"properties": {"params": {"minProperties": 1}}}}


def _deterministic() -> dict:
    """The median rule judges trials in arrival order, which the deterministic mode cannot fix."""
    deterministic = {"properties": {"sampler": {"properties": {"deterministic": {"const": True}}, "required": ["deterministic"]}},
                     "required": ["sampler"]}
    return {"if": deterministic, "then": {"properties": {"scheduler": {"properties": {"type": {"not": {"const": "median"}}}}}}}


def _grid() -> dict:
    """The grid sampler enumerates every parameter, so a float one needs a step."""
    float_needs_step = {
        "if": if_equals("type", "float", None),
        "then": {"required": ["step"], "properties": {"step": {"not": {"type": "null"}}}},
    }
    return {
        "if": {"properties": {"sampler": {"properties": {"type": {"const": "grid"}}, "required": ["type"]}}, "required": ["sampler"]},
        "then": {"properties": {"params": {"additionalProperties": float_needs_step}}},
    }


def _catalog(spec: TrainableSpec) -> dict:
    """With `trainable: <spec.name>`: only its parameters, each within what it accepts; only its metrics;
    image data when it convolves."""
    metrics = list(spec.metrics)
    then: dict[str, Any] = {
        "params": {
            "propertyNames": {"enum": list(spec.params)},
            "properties": {name: _searched(rule) for name, rule in spec.params.items()},
        },
        "fixed": {
            "propertyNames": {"enum": list(spec.params)},
            "properties": {name: rule_schema(rule) for name, rule in spec.params.items()},
        },
        "metric": {"anyOf": [{"enum": metrics}, {"type": "array", "items": {"enum": metrics}}]},
    }
    if spec.needs_images:
        then["data"] = {"properties": {"dataset": {"enum": list(IMAGE_DATASETS)}}}
    return {"if": if_equals("trainable", spec.name, None), "then": {"properties": then}}


def _searched(rule: ParamRule) -> dict:
    """A parameter searched for a catalog rule: categorical for flags and names; bounds and choices within
    the rule for numbers (bounds apply to numbers: numeric text is read by the validator)."""
    choices = {"items": rule_schema(rule)}
    if rule.kind in ("bool", "choice"):
        return {"properties": {"type": {"const": "categorical"}, "choices": choices}}
    value = rule_schema(rule)
    bounds = {k: v for k, v in value.items() if k != "type"}
    types = ["int", "categorical"] if rule.kind == "int" else ["float", "int", "categorical"]
    return {"properties": {"type": {"enum": types}, "low": bounds, "high": bounds, "choices": choices}}
