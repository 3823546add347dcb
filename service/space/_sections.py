"""The sections of a space besides params: data, budget, resources, sampler, scheduler.

Every model forbids unknown keys and checks only its own section; rules between sections are in `_rules.py`.
Where a section's rule spans its keys (which keys apply to which dataset, scheduler or sampler), the model
also writes it into its JSON Schema (`json_schema_extra`), from the same table the validator reads.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Optional, Union

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from trainables import CATEGORICAL_ENCODINGS, COMMON_DATA_KEYS, DATASET_KEYS, DATASETS, DataConfig, required_data_keys

from ._duration import DURATION_PATTERN, parse_duration
from ._errors import Issue, SpaceError, did_you_mean, num, show
from ._samplers import SAMPLERS
from ._types import (
    NONE_WORD_PATTERN,
    NUMERIC_TEXT_PATTERN,
    AtLeast,
    Between,
    Flag,
    Float,
    Frozen,
    Int,
    Number,
    OrNoneWord,
    Text,
    WholeAbove,
    choice,
    if_equals,
    none_word,
    rule_schema,
    to_number,
)

# The keys each scheduler reads besides `type`; giving another one is a mistake, not a no-op.
SCHEDULER_KEYS: dict[str, tuple[str, ...]] = {
    "asha": ("grace_period", "reduction_factor", "brackets", "rung_check"),
    "median": ("grace_period", "min_samples_required"),
    "fifo": (),
}
SCHEDULERS = tuple(SCHEDULER_KEYS)

Dataset = choice(DATASETS, "dataset")
Encoding = choice(CATEGORICAL_ENCODINGS, "encoding")
SamplerType = choice(tuple(SAMPLERS), "sampler")
SchedulerType = choice(SCHEDULERS, "scheduler")


# -- data ------------------------------------------------------------------------------------------------
# The trainables' DataConfig is the source of the data section's keys and defaults (config["data"] is a
# DataConfig); DataSpec adds what a file needs: types, ranges and messages naming the fix.
_DATA_DEFAULTS = asdict(DataConfig())
_DATASET_ONLY_KEYS = ("root", "path", "target", "categorical")  # read by some datasets only


def _data_json_schema(schema: dict) -> None:
    """Per dataset: the keys it needs, and the keys it does not read left out (null for an unset path)."""
    rules = []
    for dataset in DATASETS:
        required = required_data_keys(dataset)
        properties: dict[str, Any] = {key: {"type": "string"} for key in required}
        for key in _DATASET_ONLY_KEYS:
            if key not in DATASET_KEYS[dataset]:
                properties[key] = {"type": "null"} if _DATA_DEFAULTS[key] is None else False
        rules.append(
            {
                "if": if_equals("dataset", dataset, _DATA_DEFAULTS["dataset"]),
                "then": {"required": list(required), "properties": properties} if required else {"properties": properties},
            }
        )
    schema["allOf"] = rules


class DataSpec(Frozen):
    """What a trial trains on. `root` and `path` are absolute once parsed (relative to the space file)."""

    model_config = ConfigDict(json_schema_extra=_data_json_schema)

    dataset: Dataset = Field(
        _DATA_DEFAULTS["dataset"],
        description="digits (bundled, 8x8), mnist, fashion_mnist, cifar10 (files under root), csv",
    )
    val_fraction: Annotated[Float, Between(0, 1, hint="use a fraction such as 0.2")] = Field(
        _DATA_DEFAULTS["val_fraction"], description="share of the data held out for validation, in (0, 1)"
    )
    seed: Annotated[Int, AtLeast(0)] = Field(_DATA_DEFAULTS["seed"], description="seed of the train/validation split")
    root: Optional[Text] = Field(_DATA_DEFAULTS["root"], description="folder holding mnist / fashion_mnist / cifar10 files")
    path: Optional[Text] = Field(_DATA_DEFAULTS["path"], description="csv file (dataset: csv)")
    target: Optional[Text] = Field(_DATA_DEFAULTS["target"], description="csv column to predict (dataset: csv)")
    categorical: Encoding = Field(
        _DATA_DEFAULTS["categorical"], description="how csv text columns become numbers: onehot or ordinal (csv only)"
    )

    @model_validator(mode="after")
    def _per_dataset(self) -> "DataSpec":
        given = self.model_fields_set
        allowed = DATASET_KEYS[self.dataset]
        for key in _DATASET_ONLY_KEYS:
            if key in given and getattr(self, key) is not None and key not in allowed:
                users = [d for d in DATASETS if key in DATASET_KEYS[d]]
                raise Issue(
                    f"{key} {show(getattr(self, key))} does not apply to dataset {self.dataset!r} (only to {', '.join(users)})",
                    f"remove {key}",
                    at=(key,),
                    value=getattr(self, key),
                )
        for key in required_data_keys(self.dataset):
            if getattr(self, key) is None:
                example = {"root": "data/", "path": "data/table.csv", "target": "label"}[key]
                raise Issue(f"dataset {self.dataset!r} needs {key!r}", f"add {key}: {example}", at=(key,))
        return self

    def applicable(self) -> dict:
        """The keys that mean something for this dataset (what `to_dict` writes back)."""
        keys = COMMON_DATA_KEYS + DATASET_KEYS[self.dataset]
        return {k: getattr(self, k) for k in keys}


# -- budget and resources ---------------------------------------------------------------------------------
# budget.time as a file may write it: seconds, a duration such as 1h30m, or none / null for no limit.
_TIME_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN},
        {"type": "string", "pattern": NONE_WORD_PATTERN},
        {"type": "null"},
    ]
}


class Budget(Frozen):
    """How much search: trials, epochs per trial, trials at once, wall-clock limit, failures tolerated."""

    trials: Annotated[Int, AtLeast(1)] = Field(20, description="trials to run (a grid may finish earlier)")
    max_epochs: Annotated[Int, AtLeast(1)] = Field(10, description="epochs per trial; ASHA stops weak trials earlier")
    concurrency: Annotated[Int, AtLeast(1)] = Field(2, description="trials running at the same time")
    time_text: Annotated[Optional[str], WithJsonSchema(_TIME_SCHEMA)] = Field(
        None, alias="time",
        description="wall-clock limit of the study, counted from its first trial's start (time spent waiting for "
                    "a free worker does not count): 90s, 30m, 2h, 1h30m; none = no limit",
    )
    max_failed_trials: Annotated[
        Optional[Annotated[Int, AtLeast(0, hint="use 0 or more, or none")]], OrNoneWord()
    ] = Field(None, description="stop the study after more failures; none = no limit")
    max_retries: Annotated[Int, AtLeast(0, hint="use 0 (never retry) or more")] = Field(
        3, description="retries of a trial whose worker or node was lost, each from its last checkpoint; a trial's "
                       "own error, a NaN or an out-of-memory error is never retried"
    )

    @property
    def time_s(self) -> Optional[float]:
        """The time limit in seconds, or None for no limit."""
        return None if self.time_text is None else parse_duration(self.time_text)

    @field_validator("time_text", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Optional[str]:
        value = none_word(value)
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except SpaceError as exc:
            raise Issue(exc.message, exc.hint, value=value) from None
        if seconds <= 0:
            raise Issue(f"{show(value)} is not a positive duration", "use e.g. 30m, or none for no limit", value=value)
        return f"{num(value)}s" if isinstance(value, (int, float)) else value.strip()


_RAY_FRACTIONS = "which Ray cannot schedule"


class Resources(Frozen):
    """What one trial reserves on a Ray node."""

    cpu: Annotated[Float, AtLeast(0, strict=True), WholeAbove(1, _RAY_FRACTIONS)] = Field(
        1.0, description="CPUs per trial, > 0"
    )
    gpu: Annotated[Float, AtLeast(0), WholeAbove(1, _RAY_FRACTIONS)] = Field(
        0.0, description="GPUs per trial, >= 0; a fraction such as 0.5 shares a GPU"
    )


# -- sampler and scheduler --------------------------------------------------------------------------------
def _sampler_json_schema(schema: dict) -> None:
    """The sampler as a file writes it: `type`, `seed` and the constructor options side by side (the model
    gathers the options into `options`); which options each type takes, and the values each accepts."""
    properties = schema["properties"]
    del properties["options"]
    rules = []
    for kind, info in SAMPLERS.items():
        for name, rule in info.options.items():
            properties.setdefault(name, {"description": rule.help})
        then: dict[str, Any] = {
            "propertyNames": {"enum": ["type", "seed", "deterministic", *info.options]},
            "properties": {name: rule_schema(rule, numeric_text=True) for name, rule in info.options.items()},
        }
        conflicts = _OPTION_CONFLICTS.get(kind)
        if conflicts:
            then["not"] = {"anyOf": conflicts}
        rules.append({"if": if_equals("type", kind, "tpe"), "then": then})
    needs_seed = {"required": ["seed"], "properties": {"seed": {"not": {"type": "null"}}}}
    rules.append({"if": {"properties": {"deterministic": {"const": True}}, "required": ["deterministic"]}, "then": needs_seed})
    schema["allOf"] = rules


# Option combinations a sampler refuses, as JSON Schema (the validator's words are in _check_sampler_options).
_OPTION_CONFLICTS = {
    "tpe": [{"properties": {"group": {"const": True}, "multivariate": {"const": False}}, "required": ["group", "multivariate"]}],
    "cmaes": [
        {"properties": {"lr_adapt": {"const": True}, other: {"const": True}}, "required": ["lr_adapt", other]}
        for other in ("use_separable_cma", "with_margin")
    ],
}


class SamplerSpec(Frozen):
    """The Optuna sampler; every key besides `type` and `seed` is an option of its constructor."""

    model_config = ConfigDict(json_schema_extra=_sampler_json_schema)

    type: SamplerType = Field("tpe", description="which Optuna sampler")
    seed: Optional[Annotated[Int, AtLeast(0)]] = Field(None, description="sampler seed; none = random")
    deterministic: Flag = Field(
        False,
        description="the same trials on every run at any concurrency: trial k is suggested only after trials "
                    "0..k-concurrency finished, and the sampler and ASHA judge it against exactly those (results "
                    "reach the sampler in trial order, never in timing order); needs seed; costs idle workers",
    )
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        base = {k: v for k, v in data.items() if k in _SAMPLER_KEYS}
        options = {k: v for k, v in data.items() if k not in _SAMPLER_KEYS}
        kind = base.get("type", "tpe")
        if kind in SAMPLERS:
            options = _check_sampler_options(kind, options)
        return {**base, "options": options}

    @model_validator(mode="after")
    def _deterministic_needs_seed(self) -> "SamplerSpec":
        if self.deterministic and self.seed is None:
            raise Issue("true needs sampler.seed (an unseeded sampler differs on every run)",
                        "add seed: 0 to sampler", at=("deterministic",), value=True)
        return self


_SAMPLER_KEYS = ("type", "seed", "deterministic")  # the sampler's own keys; every other one is a constructor option


def _check_sampler_options(kind: str, options: dict) -> dict:
    info = SAMPLERS[kind]
    checked: dict[str, Any] = {}
    for name, value in options.items():
        rule = info.options.get(name)
        if rule is None:
            if name in info.not_settable:
                raise Issue(f"option {name!r} of the {kind} sampler {info.not_settable[name]}", "remove it", at=(name,))
            raise Issue(
                f"unknown option {name!r} for the {kind} sampler",
                did_you_mean(name, [*_SAMPLER_KEYS, *info.options], f"{kind} takes"),
                at=(name,),
                value=name,
            )
        if rule.kind in ("int", "float") and isinstance(value, str):
            try:
                value = to_number(value)
            except Issue:
                pass
        if not rule.accepts(value):
            raise Issue(f"{show(value)} is not {rule.describe()}", f"use {rule.describe()} ({rule.help})", at=(name,), value=value)
        checked[name] = int(value) if rule.kind == "int" else value
    if kind == "tpe" and checked.get("group") and checked.get("multivariate") is False:
        raise Issue("group: true needs multivariate: true", "set multivariate: true or drop group", at=("group",), value=True)
    if kind == "cmaes" and checked.get("lr_adapt") and (checked.get("use_separable_cma") or checked.get("with_margin")):
        raise Issue(
            "lr_adapt cannot be combined with use_separable_cma or with_margin",
            "keep one of them",
            at=("lr_adapt",),
            value=True,
        )
    return checked


def _scheduler_json_schema(schema: dict) -> None:
    """Per scheduler type: the keys it does not read left out."""
    keys = [key for key in schema["properties"] if key != "type"]
    schema["allOf"] = [
        {
            "if": if_equals("type", kind, "asha"),
            "then": {"properties": {key: False for key in keys if key not in SCHEDULER_KEYS[kind]}},
        }
        for kind in SCHEDULERS
    ]


# a percentage in (0, 100]: not 0, 0.0 or .0; at most 100
_PERCENT_PATTERN = r"^\s*(?!0*\.?0*\s*%)(?:100(?:\.0*)?|\d{1,2}(?:\.\d*)?|\.\d+)\s*%\s*$"
_GRACE_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "pattern": _PERCENT_PATTERN},
        {"type": "string", "pattern": NUMERIC_TEXT_PATTERN},
    ]
}


def _grace_period(value: Any) -> Union[int, float, str]:
    """Epochs (a whole number >= 1), a percentage of max_epochs ("25%": 0 < p <= 100) or a fraction (0 < f < 1)."""
    hint = "give a whole number of epochs (at least 1), a percentage of max_epochs such as \"25%\", or a fraction such as 0.25"
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = to_number(value.strip()[:-1])
        except Issue:
            raise Issue(f"{show(value)} is not a percentage", hint, value=value) from None
        if not 0 < percent <= 100:
            raise Issue(f"{show(value)} is not a percentage in (0, 100]", hint, value=value)
        return f"{num(percent)}%"
    number = to_number(value)
    if isinstance(number, float) and 0 < number < 1:
        return number
    if isinstance(number, float) and not number.is_integer():
        raise Issue(f"{show(value)} is neither a whole number of epochs nor a fraction below 1", hint, value=value)
    if number < 1:
        raise Issue(f"{show(value)} is not >= 1", "give at least 1 epoch, a percentage of max_epochs such as \"25%\", "
                    "or a fraction such as 0.25", value=value)
    return int(number)


class SchedulerSpec(Frozen):
    """The Tune trial scheduler; epochs are its time unit."""

    model_config = ConfigDict(json_schema_extra=_scheduler_json_schema)

    type: SchedulerType = Field(
        "asha", description="asha (stop weak trials at rungs), median (stop below the median), fifo (never stop)"
    )
    grace_period: Annotated[Union[int, float, str], BeforeValidator(_grace_period), WithJsonSchema(_GRACE_SCHEMA)] = Field(
        1, description="epochs every trial runs before it may be stopped (asha, median): a whole number of epochs, "
                       "or a share of budget.max_epochs as a percentage (\"25%\") or a fraction below 1 (0.25), "
                       "rounded to the nearest epoch, at least 1"
    )
    reduction_factor: Annotated[Number, AtLeast(2, hint="use 2 or more (3 is common)")] = Field(
        3, description="asha: keep 1/reduction_factor of trials at each rung"
    )
    min_samples_required: Annotated[Int, AtLeast(1, hint="use 1 or more")] = Field(
        3, description="median: trials needed at an epoch before comparing"
    )
    brackets: Annotated[Int, AtLeast(1, hint="use 1 (plain ASHA) or more")] = Field(
        1, description="asha: trials are dealt in turn to this many brackets; bracket b first judges at "
                       "grace_period * reduction_factor**b epochs, and the last of the most brackets a budget "
                       "allows never stops a trial (a hedge against learning curves that cross)"
    )
    rung_check: Flag = Field(
        False, description="asha: the 1st, 4th and 7th trials, then the 11th, 19th, 35th, ..., train in full; a rung at which "
                           "the best of them would have been stopped is skipped, with the rungs before it, by the "
                           "trials that start after (learning curves that cross move the study to later rungs, "
                           "or to none); instead of brackets"
    )

    def grace_epochs(self, max_epochs: int) -> int:
        """grace_period in epochs for a study of `max_epochs` epochs."""
        if isinstance(self.grace_period, int):
            return self.grace_period
        share = float(self.grace_period.rstrip("%")) / 100 if isinstance(self.grace_period, str) else self.grace_period
        return min(max_epochs, max(1, int(share * max_epochs + 0.5)))

    @model_validator(mode="after")
    def _options(self) -> "SchedulerSpec":
        allowed = SCHEDULER_KEYS[self.type]
        for key in dict.fromkeys(key for keys in SCHEDULER_KEYS.values() for key in keys):  # every option, once
            if key in self.model_fields_set and key not in allowed:
                users = [s for s, keys in SCHEDULER_KEYS.items() if key in keys]
                raise Issue(
                    f"{key} {show(getattr(self, key))} does not apply to the {self.type} scheduler (only to {', '.join(users)})",
                    f"remove {key}",
                    at=(key,),
                    value=getattr(self, key),
                )
        return self
