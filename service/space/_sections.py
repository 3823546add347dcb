"""The sections of a space besides params: data, budget, resources, sampler, scheduler.

Every model forbids unknown keys and checks only its own section; rules between sections are in `_rules.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from trainables import CATEGORICAL_ENCODINGS, COMMON_DATA_KEYS, DATASET_KEYS, DATASETS, DataConfig, required_data_keys

from ._duration import parse_duration
from ._errors import Issue, SpaceError, did_you_mean, num, show
from ._samplers import SAMPLERS
from ._types import Float, Frozen, Int, Number, Text, at_least, none_word, one_of, to_number

SCHEDULERS = ("asha", "median", "fifo")


# -- data ------------------------------------------------------------------------------------------------
# The trainables' DataConfig is the source of the data section's keys and defaults (config["data"] is a
# DataConfig); DataSpec adds what a file needs: types, ranges and messages naming the fix.
_DATA_DEFAULTS = asdict(DataConfig())


class DataSpec(Frozen):
    """What a trial trains on. `root` and `path` are absolute once parsed (relative to the space file)."""

    dataset: Annotated[str, BeforeValidator(one_of(DATASETS, "dataset"))] = Field(
        _DATA_DEFAULTS["dataset"],
        description="digits (bundled, 8x8), mnist, fashion_mnist, cifar10 (files under root), csv",
    )
    val_fraction: Float = Field(
        _DATA_DEFAULTS["val_fraction"], description="share of the data held out for validation, in (0, 1)"
    )
    seed: Int = Field(_DATA_DEFAULTS["seed"], description="seed of the train/validation split")
    root: Optional[Text] = Field(_DATA_DEFAULTS["root"], description="folder holding mnist / fashion_mnist / cifar10 files")
    path: Optional[Text] = Field(_DATA_DEFAULTS["path"], description="csv file (dataset: csv)")
    target: Optional[Text] = Field(_DATA_DEFAULTS["target"], description="csv column to predict (dataset: csv)")
    categorical: Annotated[str, BeforeValidator(one_of(CATEGORICAL_ENCODINGS, "encoding"))] = Field(
        _DATA_DEFAULTS["categorical"], description="how csv text columns become numbers: onehot or ordinal (csv only)"
    )

    @field_validator("val_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise Issue(f"{show(value)} is not in (0, 1)", "use a fraction such as 0.2", value=value)
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        return at_least(value, 0, "seed")

    @model_validator(mode="after")
    def _per_dataset(self) -> "DataSpec":
        given = self.model_fields_set
        allowed = DATASET_KEYS[self.dataset]
        for key in ("root", "path", "target", "categorical"):
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
class Budget(Frozen):
    """How much search: trials, epochs per trial, trials at once, wall-clock limit, failures tolerated."""

    trials: Int = Field(20, description="trials to run (a grid may finish earlier)")
    max_epochs: Int = Field(10, description="epochs per trial; ASHA stops weak trials earlier")
    concurrency: Int = Field(2, description="trials running at the same time")
    time_text: Optional[str] = Field(
        None, alias="time", description="wall-clock limit of the study: 90s, 30m, 2h, 1h30m; none = no limit"
    )
    max_failed_trials: Optional[Int] = Field(None, description="stop the study after more failures; none = no limit")

    @property
    def time_s(self) -> Optional[float]:
        """The time limit in seconds, or None for no limit."""
        return None if self.time_text is None else parse_duration(self.time_text)

    @field_validator("trials", "max_epochs", "concurrency")
    @classmethod
    def _positive(cls, value: int, info: ValidationInfo) -> int:
        return at_least(value, 1, str(info.field_name))

    @field_validator("max_failed_trials", mode="before")
    @classmethod
    def _failures_word(cls, value: Any) -> Any:
        return none_word(value)

    @field_validator("max_failed_trials")
    @classmethod
    def _failures(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else at_least(value, 0, "max_failed_trials", hint="use 0 or more, or none")

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


class Resources(Frozen):
    """What one trial reserves on a Ray node."""

    cpu: Float = Field(1.0, description="CPUs per trial, > 0")
    gpu: Float = Field(0.0, description="GPUs per trial, >= 0; a fraction such as 0.5 shares a GPU")

    @field_validator("cpu", "gpu")
    @classmethod
    def _amount(cls, value: float, info: ValidationInfo) -> float:
        strict = info.field_name == "cpu"
        at_least(value, 0, str(info.field_name), strict=strict)
        if value > 1 and not value.is_integer():
            raise Issue(
                f"{show(value)} is a fraction above 1, which Ray cannot schedule",
                f"use a fraction below 1 or a whole number ({math.floor(value)} or {math.ceil(value)})",
                value=value,
            )
        return value


# -- sampler and scheduler --------------------------------------------------------------------------------
class SamplerSpec(Frozen):
    """The Optuna sampler; every key besides `type` and `seed` is an option of its constructor."""

    type: Annotated[str, BeforeValidator(one_of(tuple(SAMPLERS), "sampler"))] = "tpe"
    seed: Optional[Int] = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        base = {k: v for k, v in data.items() if k in ("type", "seed")}
        options = {k: v for k, v in data.items() if k not in ("type", "seed")}
        kind = base.get("type", "tpe")
        if kind in SAMPLERS:
            options = _check_sampler_options(kind, options)
        return {**base, "options": options}

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else at_least(value, 0, "seed")


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
                did_you_mean(name, ["type", "seed", *info.options], f"{kind} takes"),
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


class SchedulerSpec(Frozen):
    """The Tune trial scheduler; epochs are its time unit."""

    type: Annotated[str, BeforeValidator(one_of(SCHEDULERS, "scheduler"))] = Field(
        "asha", description="asha (stop weak trials at rungs), median (stop below the median), fifo (never stop)"
    )
    grace_period: Int = Field(1, description="epochs every trial runs before it may be stopped (asha, median)")
    reduction_factor: Number = Field(3, description="asha: keep 1/reduction_factor of trials at each rung")
    min_samples_required: Int = Field(3, description="median: trials needed at an epoch before comparing")

    @model_validator(mode="after")
    def _options(self) -> "SchedulerSpec":
        applies = {"asha": ("grace_period", "reduction_factor"), "median": ("grace_period", "min_samples_required")}
        allowed = applies.get(self.type, ())
        for key in ("grace_period", "reduction_factor", "min_samples_required"):
            if key in self.model_fields_set and key not in allowed:
                users = [s for s, keys in applies.items() if key in keys]
                raise Issue(
                    f"{key} {show(getattr(self, key))} does not apply to the {self.type} scheduler (only to {', '.join(users)})",
                    f"remove {key}",
                    at=(key,),
                    value=getattr(self, key),
                )
        _check_at(self.grace_period, 1, "grace_period", "give at least 1 epoch")
        _check_at(self.reduction_factor, 2, "reduction_factor", "use 2 or more (3 is common)")
        _check_at(self.min_samples_required, 1, "min_samples_required", "use 1 or more")
        return self


def _check_at(value, low, key: str, hint: str) -> None:
    try:
        at_least(value, low, key, hint=hint)
    except Issue as issue:
        issue.at = (key,)
        raise
