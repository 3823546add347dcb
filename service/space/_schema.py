"""JSON Schema of the space format, for editor completion and hover help (e.g. the YAML language server:
`# yaml-language-server: $schema=hpsearch-space.schema.json`).

Built from the same tables the validator uses (models' fields and descriptions, the sampler registry, the
dataset and scheduler names), so it cannot drift from what `load_space` accepts. It describes the shape;
rules that relate values (low < high, names the trainable accepts) are only in the validator.
"""

from __future__ import annotations

from typing import Any

from trainables import BUILTIN_TRAINABLES, DATASETS

from ._model import MODES, NAME_PATTERN, SearchSpace
from ._param import PARAM_TYPES, ParamSpec
from ._sections import SCHEDULERS, Budget, DataSpec, Resources, SchedulerSpec
from ._samplers import SAMPLERS

_NUMBER: dict = {"type": "number"}
_SCALAR: dict = {"type": ["string", "number", "boolean", "null"]}
_DURATION = {
    "oneOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^\s*((\d+(\.\d*)?|\.\d+)\s*[dhms]\s*)+$|^\s*[0-9.]+\s*$|^none$"},
        {"type": "null"},
    ]
}


def _doc(model: Any, name: str) -> str:
    return model.model_fields[name].description or ""


def _prop(model: Any, name: str, schema: dict) -> dict:
    field = model.model_fields[name]
    out = {**schema, "description": field.description or ""}
    if not field.is_required() and field.default_factory is None:
        out["default"] = field.default
    return out


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a space file."""
    data = {
        "type": "object",
        "description": _doc(SearchSpace, "data"),
        "additionalProperties": False,
        "properties": {
            "dataset": _prop(DataSpec, "dataset", {"enum": list(DATASETS)}),
            "val_fraction": _prop(DataSpec, "val_fraction", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
            "seed": _prop(DataSpec, "seed", {"type": "integer", "minimum": 0}),
            "root": _prop(DataSpec, "root", {"type": "string"}),
            "path": _prop(DataSpec, "path", {"type": "string"}),
            "target": _prop(DataSpec, "target", {"type": "string"}),
            "categorical": _prop(DataSpec, "categorical", {"enum": ["onehot", "ordinal"]}),
        },
        "allOf": [
            {"if": {"properties": {"dataset": {"const": "csv"}}, "required": ["dataset"]}, "then": {"required": ["path", "target"]}},
            {
                "if": {"properties": {"dataset": {"enum": ["mnist", "fashion_mnist", "cifar10"]}}, "required": ["dataset"]},
                "then": {"required": ["root"]},
            },
        ],
    }
    budget = {
        "type": "object",
        "description": _doc(SearchSpace, "budget"),
        "additionalProperties": False,
        "properties": {
            "trials": _prop(Budget, "trials", {"type": "integer", "minimum": 1}),
            "max_epochs": _prop(Budget, "max_epochs", {"type": "integer", "minimum": 1}),
            "concurrency": _prop(Budget, "concurrency", {"type": "integer", "minimum": 1}),
            "time": {**_DURATION, "description": _doc(Budget, "time_text"), "default": None},
            "max_failed_trials": _prop(Budget, "max_failed_trials", {"type": ["integer", "null"], "minimum": 0}),
        },
    }
    resources = {
        "type": "object",
        "description": _doc(SearchSpace, "resources"),
        "additionalProperties": False,
        "properties": {
            "cpu": _prop(Resources, "cpu", {"type": "number", "exclusiveMinimum": 0}),
            "gpu": _prop(Resources, "gpu", {"type": "number", "minimum": 0}),
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hpsearch search space",
        "description": "What to search, on what, with how much: `hpsearch submit space.yaml`.",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "trainable", "metric", "params"],
        "properties": {
            "name": _prop(SearchSpace, "name", {"type": "string", "pattern": NAME_PATTERN}),
            "description": _prop(SearchSpace, "description", {"type": ["string", "null"]}),
            "trainable": _prop(
                SearchSpace,
                "trainable",
                {"anyOf": [{"enum": list(BUILTIN_TRAINABLES)}, {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"}]},
            ),
            "data": data,
            "metric": _prop(
                SearchSpace,
                "metric",
                {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}]},
            ),
            "mode": _prop(
                SearchSpace, "mode", {"oneOf": [{"enum": list(MODES)}, {"type": "array", "items": {"enum": list(MODES)}, "minItems": 1}]}
            ),
            "budget": budget,
            "resources": resources,
            "sampler": _sampler_schema(),
            "scheduler": _scheduler_schema(),
            "params": {
                "type": "object",
                "description": _doc(SearchSpace, "params"),
                "minProperties": 1,
                "additionalProperties": _param_schema(),
            },
            "fixed": {"type": "object", "description": _doc(SearchSpace, "fixed")},
        },
    }


def _sampler_schema() -> dict:
    options: dict[str, dict] = {}
    for info in SAMPLERS.values():
        for name, rule in info.options.items():
            options[name] = {**_rule_schema(rule), "description": rule.help}
    per_type = [
        {
            "if": {"properties": {"type": {"const": name}}},
            "then": {"propertyNames": {"enum": ["type", "seed", *info.options]}},
        }
        for name, info in SAMPLERS.items()
    ]
    return {
        "type": "object",
        "description": "the Optuna sampler; other keys are options of its constructor. "
        + "; ".join(f"{name}: {info.summary}" for name, info in SAMPLERS.items()),
        "properties": {
            "type": {"enum": list(SAMPLERS), "default": "tpe", "description": "which sampler"},
            "seed": {"type": ["integer", "null"], "minimum": 0, "default": None, "description": "sampler seed; none = random"},
            **options,
        },
        "additionalProperties": False,
        "allOf": per_type,
    }


def _rule_schema(rule) -> dict:
    if rule.kind == "bool":
        return {"type": "boolean"}
    if rule.kind == "choice":
        return {"enum": list(rule.choices)}
    out: dict[str, Any] = {"type": "integer" if rule.kind == "int" else "number"}
    if rule.low is not None:
        out["exclusiveMinimum" if rule.low_open else "minimum"] = rule.low
    if rule.high is not None:
        out["exclusiveMaximum" if rule.high_open else "maximum"] = rule.high
    return out


def _scheduler_schema() -> dict:
    return {
        "type": "object",
        "description": _doc(SearchSpace, "scheduler"),
        "additionalProperties": False,
        "properties": {
            "type": _prop(SchedulerSpec, "type", {"enum": list(SCHEDULERS)}),
            "grace_period": _prop(SchedulerSpec, "grace_period", {"type": "integer", "minimum": 1}),
            "reduction_factor": _prop(SchedulerSpec, "reduction_factor", {"type": "number", "minimum": 2}),
            "min_samples_required": _prop(SchedulerSpec, "min_samples_required", {"type": "integer", "minimum": 1}),
        },
    }


def _param_schema() -> dict:
    scalar_or_list = {"oneOf": [_SCALAR, {"type": "array", "items": _SCALAR, "minItems": 1}]}
    return {
        "type": "object",
        "description": "one searched hyperparameter (Optuna's vocabulary)",
        "additionalProperties": False,
        "required": ["type"],
        "properties": {
            "type": _prop(ParamSpec, "type", {"enum": list(PARAM_TYPES)}),
            "low": _prop(ParamSpec, "low", _NUMBER),
            "high": _prop(ParamSpec, "high", _NUMBER),
            "log": _prop(ParamSpec, "log", {"type": "boolean"}),
            "step": _prop(ParamSpec, "step", {"type": "number", "exclusiveMinimum": 0}),
            "choices": _prop(ParamSpec, "choices", {"type": "array", "items": _SCALAR, "minItems": 1, "uniqueItems": True}),
            "when": _prop(ParamSpec, "when", {"type": "object", "additionalProperties": scalar_or_list}),
        },
        "allOf": [
            {"if": {"properties": {"type": {"const": "categorical"}}}, "then": {"required": ["choices"]}},
            {"if": {"properties": {"type": {"enum": ["float", "int"]}}}, "then": {"required": ["low", "high"]}},
        ],
    }
