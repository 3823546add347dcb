"""The typed, frozen search space and the rules that concern one section at a time.

Every model forbids unknown keys. Validators raise `Issue` (a ValueError carrying a sub-path, the offending
value and a fix); `_load.py` turns pydantic's errors into one SpaceError with the file and line. Rules that
relate sections to each other or to the trainable catalog live in `_rules.py`.

Defaults (also given in `json_schema()`):

    data:      {dataset: digits, val_fraction: 0.2, seed: 0}    csv adds categorical: onehot
    mode:      max                                               required as a list for several metrics
    budget:    {trials: 20, max_epochs: 10, concurrency: 2, time: none, max_failed_trials: none}
    resources: {cpu: 1, gpu: 0}                                  per trial
    sampler:   {type: tpe, seed: none}
    scheduler: {type: asha, grace_period: 1, reduction_factor: 3}   median: min_samples_required 3
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict
from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from trainables import (
    BUILTIN_TRAINABLES,
    CATEGORICAL_ENCODINGS,
    COMMON_DATA_KEYS,
    DATASET_KEYS,
    DATASETS,
    DataConfig,
    TrainableSpec,
    required_data_keys,
)

from ._conditions import value_key
from ._duration import parse_duration
from ._errors import Issue, SpaceError, did_you_mean, num, show
from ._samplers import SAMPLERS

SCHEDULERS = ("asha", "median", "fifo")
PARAM_TYPES = ("float", "int", "categorical")
MODES = ("max", "min")
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"

# Names other libraries use for distributions, so a user coming from them gets the Optuna spelling.
_FOREIGN_PARAM_TYPES = {
    "uniform": "type: float",
    "loguniform": "type: float with log: true",
    "quniform": "type: float with step",
    "discrete_uniform": "type: float with step",
    "randint": "type: int",
    "int_uniform": "type: int",
    "choice": "type: categorical",
    "bool": "type: categorical with choices: [true, false]",
    "boolean": "type: categorical with choices: [true, false]",
    "str": "type: categorical",
}


# -- Scalar coercion: numbers, integers, text, flags, names from a list ------------------------------------
def _number(value: Any) -> Union[int, float]:
    """An int or float; numeric text such as "1e-4" (which PyYAML reads as a string) is accepted."""
    if isinstance(value, bool):
        raise Issue(f"{show(value)} is not a number", "write a number such as 0.1", value=value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise Issue(f"{show(value)} is not a number", "write a number such as 0.1 or 1.0e-4", value=value) from None
    if not isinstance(value, float):
        raise Issue(f"{show(value)} is not a number", "write a number such as 0.1", value=value)
    if not math.isfinite(value):
        raise Issue(f"{show(value)} is not a finite number", "write a finite number", value=value)
    return value


def _float(value: Any) -> float:
    return float(_number(value))


def _int(value: Any) -> int:
    try:
        number = _number(value)
    except Issue as issue:
        issue.hint = "write a whole number such as 10" if "finite" not in issue.message else issue.hint
        raise
    if isinstance(number, float):
        if not number.is_integer():
            raise Issue(f"{show(value)} is not a whole number", f"write an integer such as {round(number)}", value=value)
        return int(number)
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Issue(f"{show(value)} is not text", f"quote it: '{show(value)}'", value=value)
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Issue(f"{show(value)} is not true or false", "write true or false", value=value)
    return value


def _one_of(names: tuple[str, ...], what: str):
    def check(value: Any) -> str:
        if value not in names:
            raise Issue(f"unknown {what} {show(value)}", did_you_mean(value, names), value=value)
        return value

    return check


Float = Annotated[float, BeforeValidator(_float)]
Int = Annotated[int, BeforeValidator(_int)]
Number = Annotated[Union[int, float], BeforeValidator(_number)]
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]


def _at_least(value, low, what: str, *, strict: bool = False, hint: str = ""):
    """`value` >= low (or > low when strict), else an Issue such as "`0` is not >= 1"."""
    if value < low or (strict and value == low):
        sign = ">" if strict else ">="
        raise Issue(f"{show(value)} is not {sign} {num(low)}", hint or f"{what} must be {sign} {num(low)}", value=value)
    return value


def _none_word(value: Any) -> Any:
    """`none` written as a word means "no limit", like null."""
    return None if isinstance(value, str) and value.strip().lower() in ("none", "null", "") else value


def _set(model: BaseModel, **values: Any) -> None:
    """Normalise fields of a frozen model from its own validator (before anyone can see it)."""
    for name, value in values.items():
        object.__setattr__(model, name, value)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)


# -- data ------------------------------------------------------------------------------------------------
# The trainables' DataConfig is the source of the data section's keys and defaults (config["data"] is a
# DataConfig); DataSpec adds what a file needs: types, ranges and messages naming the fix.
_DATA_DEFAULTS = asdict(DataConfig())


class DataSpec(_Frozen):
    """What a trial trains on. `root` and `path` are absolute once parsed (relative to the space file)."""

    dataset: Annotated[str, BeforeValidator(_one_of(DATASETS, "dataset"))] = Field(
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
    categorical: Annotated[str, BeforeValidator(_one_of(CATEGORICAL_ENCODINGS, "encoding"))] = Field(
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
        return _at_least(value, 0, "seed")

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
class Budget(_Frozen):
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
        return _at_least(value, 1, str(info.field_name))

    @field_validator("max_failed_trials", mode="before")
    @classmethod
    def _failures_word(cls, value: Any) -> Any:
        return _none_word(value)

    @field_validator("max_failed_trials")
    @classmethod
    def _failures(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else _at_least(value, 0, "max_failed_trials", hint="use 0 or more, or none")

    @field_validator("time_text", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Optional[str]:
        value = _none_word(value)
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except SpaceError as exc:
            raise Issue(exc.message, exc.hint, value=value) from None
        if seconds <= 0:
            raise Issue(f"{show(value)} is not a positive duration", "use e.g. 30m, or none for no limit", value=value)
        return f"{num(value)}s" if isinstance(value, (int, float)) else value.strip()


class Resources(_Frozen):
    """What one trial reserves on a Ray node."""

    cpu: Float = Field(1.0, description="CPUs per trial, > 0")
    gpu: Float = Field(0.0, description="GPUs per trial, >= 0; a fraction such as 0.5 shares a GPU")

    @field_validator("cpu", "gpu")
    @classmethod
    def _amount(cls, value: float, info: ValidationInfo) -> float:
        strict = info.field_name == "cpu"
        _at_least(value, 0, str(info.field_name), strict=strict)
        if value > 1 and not value.is_integer():
            raise Issue(
                f"{show(value)} is a fraction above 1, which Ray cannot schedule",
                f"use a fraction below 1 or a whole number ({math.floor(value)} or {math.ceil(value)})",
                value=value,
            )
        return value


# -- sampler and scheduler --------------------------------------------------------------------------------
class SamplerSpec(_Frozen):
    """The Optuna sampler; every key besides `type` and `seed` is an option of its constructor."""

    type: Annotated[str, BeforeValidator(_one_of(tuple(SAMPLERS), "sampler"))] = "tpe"
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
        return None if value is None else _at_least(value, 0, "seed")


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
                value = _number(value)
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


class SchedulerSpec(_Frozen):
    """The Tune trial scheduler; epochs are its time unit."""

    type: Annotated[str, BeforeValidator(_one_of(SCHEDULERS, "scheduler"))] = Field(
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
        _at_least(value, low, key, hint=hint)
    except Issue as issue:
        issue.at = (key,)
        raise


# -- params -----------------------------------------------------------------------------------------------
_SCALAR_TYPES = (str, int, float, bool, type(None))


def _scalars(values: Any, *, what: str, at: tuple = ()) -> tuple:
    """Check a list of YAML scalars (choices, condition values) and return it as a tuple."""
    for index, value in enumerate(values):
        if not isinstance(value, _SCALAR_TYPES):
            raise Issue(
                f"{what} {show(value)} is a {type(value).__name__}, not a single value",
                "use numbers, text, true/false or null",
                at=at + (index,),
                value=value,
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise Issue(f"{what} {show(value)} is not finite", "use a finite number", at=at + (index,), value=value)
    return tuple(values)


class ParamSpec(_Frozen):
    """One searched hyperparameter, in Optuna's vocabulary."""

    type: str = Field(description="float, int or categorical")
    low: Optional[Number] = Field(None, description="lower bound, inclusive (float, int)")
    high: Optional[Number] = Field(None, description="upper bound, inclusive (float, int)")
    log: Flag = Field(False, description="sample on a log scale; low must be > 0 (float, int)")
    step: Optional[Number] = Field(None, description="grid spacing from low (float, int); not with log")
    choices: Optional[tuple[Any, ...]] = Field(None, description="the values to choose from (categorical)")
    when: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict, description="sample only when these parameters took one of these values"
    )

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> str:
        if value in PARAM_TYPES:
            return value
        if isinstance(value, str) and value.lower() in _FOREIGN_PARAM_TYPES:
            raise Issue(f"unknown parameter type {show(value)}", f"write {_FOREIGN_PARAM_TYPES[value.lower()]}", value=value)
        raise Issue(f"unknown parameter type {show(value)}", did_you_mean(value, PARAM_TYPES), value=value)

    @field_validator("choices", mode="before")
    @classmethod
    def _choices(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise Issue(f"{show(value)} is not a list", "write choices: [a, b, c]", value=value)
        if not value:
            raise Issue("[] has no choices", "list at least one value (two to search anything)", value=[])
        choices = _scalars(value, what="choice")
        seen: dict = {}
        for index, choice in enumerate(choices):
            key = value_key(choice)
            if key in seen:
                raise Issue(
                    f"choice {show(choice)} is listed twice (items {seen[key]} and {index})",
                    "list each choice once",
                    at=(index,),
                    value=choice,
                )
            seen[key] = index
        return choices

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise Issue(f"{show(value)} is not a mapping", "write when: {optimizer: sgd} or when: {optimizer: [sgd, rmsprop]}", value=value)
        conditions = {}
        for parent, allowed in value.items():
            values = allowed if isinstance(allowed, list) else [allowed]
            if not values:
                raise Issue(f"condition on {parent!r} lists no values", f"write {parent}: value or {parent}: [a, b]", at=(parent,), value=[])
            conditions[parent] = _scalars(values, what="condition value", at=(parent,))
        return conditions

    @model_validator(mode="after")
    def _distribution(self) -> "ParamSpec":
        given = self.model_fields_set
        if self.type == "categorical":
            for key in ("low", "high", "log", "step"):
                if key in given:
                    raise Issue(
                        f"{key} {show(getattr(self, key))} does not apply to a categorical parameter",
                        f"remove {key}, or use type float/int for a range",
                        at=(key,),
                        value=getattr(self, key),
                    )
            if self.choices is None:
                raise Issue("a categorical parameter needs choices", "add choices: [a, b, c]", at=("choices",))
            return self
        if self.choices is not None:
            raise Issue(
                f"choices {show(list(self.choices))} do not apply to a {self.type} parameter",
                "use type: categorical for a list of values, or low/high for a range",
                at=("choices",),
                value=list(self.choices),
            )
        for key in ("low", "high"):
            if getattr(self, key) is None:
                raise Issue(f"a {self.type} parameter needs {key!r}", f"add {key}: <number>", at=(key,))
        if self.type == "int":
            _set(self, **{key: self._integer(key) for key in ("low", "high", "step") if getattr(self, key) is not None})
        else:
            _set(self, low=float(self.low), high=float(self.high))
            if self.step is not None:
                _set(self, step=float(self.step))
        low, high, step = self.low, self.high, self.step
        if low >= high:
            raise Issue(
                f"{show(low)} is not below high ({show(high)})",
                "make low < high (for a constant, move the parameter to fixed:)",
                at=("low",),
                value=low,
            )
        if self.log and low <= 0:
            raise Issue(
                f"{show(low)} is not > 0, which log: true needs",
                f"make low > 0 (e.g. {'1' if self.type == 'int' else '1.0e-5'}) or drop log",
                at=("low",),
                value=low,
            )
        if step is not None:
            if step <= 0:
                raise Issue(f"{show(step)} is not > 0", "use a positive step", at=("step",), value=step)
            if self.log:
                raise Issue(
                    f"step {show(step)} cannot be combined with log: true",
                    "drop step or drop log (Optuna supports one or the other)",
                    at=("step",),
                    value=step,
                )
            self._check_divisible()
        return self

    def _integer(self, key: str) -> int:
        value = getattr(self, key)
        if isinstance(value, float):
            if not value.is_integer():
                raise Issue(
                    f"{show(value)} is not a whole number, which an int parameter needs",
                    f"use {math.floor(value)} or {math.ceil(value)}, or type: float",
                    at=(key,),
                    value=value,
                )
            return int(value)
        return value

    def _check_divisible(self) -> None:
        """Optuna silently lowers `high` to the last point of the grid; we say so instead."""
        from decimal import Decimal

        low, high, step = (Decimal(str(x)) for x in (self.low, self.high, self.step))
        if (high - low) % step != 0:
            last = (high - low) // step * step + low
            suggestion = int(last) if self.type == "int" else float(last)
            raise Issue(
                f"{show(self.high)} is not low + a multiple of step ({show(self.step)})",
                f"use high: {show(suggestion)} (Optuna would silently lower it)",
                at=("high",),
                value=self.high,
            )

    def describe(self) -> str:
        """'float  [0.0001, 0.3] log', 'int  [8, 64] step 8', 'categorical  sgd, adam'."""
        if self.type == "categorical":
            return "categorical  " + ", ".join(_plain(c) for c in self.choices or ())
        text = f"{self.type:<5}  [{num(self.low)}, {num(self.high)}]"
        if self.log:
            text += " log"
        if self.step is not None:
            text += f" step {num(self.step)}"
        return text

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices or ())
        else:
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: (v[0] if len(v) == 1 else list(v)) for k, v in self.when.items()}
        return out


def _plain(value: Any) -> str:
    return show(value).strip("'") if isinstance(value, str) else show(value)


# -- metric and mode --------------------------------------------------------------------------------------
def _metric(value: Any) -> Union[str, list]:
    if isinstance(value, str):
        if not value.strip():
            raise Issue("is empty", "name a metric the trainable reports, e.g. val_acc", value=value)
        return value
    if isinstance(value, list):
        if not value:
            raise Issue("[] names no metric", "name one metric, or a list for several objectives", value=value)
        seen = set()
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise Issue(f"{show(item)} is not a metric name", "write names such as val_acc", at=(index,), value=item)
            if item in seen:
                raise Issue(f"{item!r} is listed twice", "list each metric once", at=(index,), value=item)
            seen.add(item)
        return list(value)
    raise Issue(f"{show(value)} is not a metric name", "write metric: val_acc or metric: [val_acc, n_params]", value=value)


def _mode_word(value: Any, at: tuple = ()) -> str:
    if value in MODES:
        return value
    if isinstance(value, str) and value.lower()[:3] in MODES:
        raise Issue(f"unknown mode {show(value)}", f"did you mean {value.lower()[:3]!r}? (max or min)", at=at, value=value)
    raise Issue(f"unknown mode {show(value)}", did_you_mean(value, MODES), at=at, value=value)


def _mode(value: Any) -> Union[str, list]:
    if isinstance(value, list):
        if not value:
            raise Issue("[] names no mode", "give max or min, one per metric", value=value)
        return [_mode_word(item, (index,)) for index, item in enumerate(value)]
    return _mode_word(value)


# -- the space --------------------------------------------------------------------------------------------
class SearchSpace(_Frozen):
    """A validated search space: what to train, on what, what to search, how much, and how.

    Build it with `load_space` / `parse_space`; constructing it directly runs the same validation.
    """

    name: Text = Field(description="study name: letters, digits, '-' and '_' (used in paths and run names)")
    description: Optional[Text] = Field(None, description="free text shown with the study")
    trainable: Text = Field(description="a built-in trainable (mlp, cnn) or package.module:function")
    data: DataSpec = Field(default_factory=DataSpec, description="the dataset every trial trains on")
    metric: Annotated[Union[str, list[str]], BeforeValidator(_metric)] = Field(
        description="a metric the trainable reports, or a list of them for several objectives"
    )
    mode: Annotated[Union[str, list[str]], BeforeValidator(_mode)] = Field(
        "max", description="max or min; a list, one per metric, for several objectives"
    )
    budget: Budget = Field(default_factory=Budget, description="how much search")
    resources: Resources = Field(default_factory=Resources, description="what each trial reserves")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec, description="the Optuna sampler")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec, description="the Tune scheduler")
    params: dict[str, ParamSpec] = Field(description="the hyperparameters to search (at least one)")
    fixed: dict[str, Any] = Field(default_factory=dict, description="constants passed to every trial")
    source: str = Field("<string>", description="the file the space was read from (not a YAML key)")
    text: str = Field("", description="the YAML text as read, before overrides (not a YAML key)")
    overrides: tuple[str, ...] = Field((), description="the --set KEY=VALUE overrides applied (not a YAML key)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(NAME_PATTERN, value):
            fixed = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-") or "my-study"
            raise Issue(
                f"{show(value)} may only contain letters, digits, '-' and '_'",
                f"e.g. name: {fixed}",
                value=value,
            )
        return value

    @field_validator("params")
    @classmethod
    def _some_params(cls, value: dict) -> dict:
        if not value:
            raise Issue(
                "{} searches nothing",
                "add at least one parameter, e.g. lr: {type: float, low: 1.0e-4, high: 0.1, log: true}",
                value={},
            )
        return value

    @model_validator(mode="after")
    def _across_sections(self, info: ValidationInfo) -> "SearchSpace":
        from ._rules import check_space  # the rules need the model, the model calls the rules

        context = info.context or {}
        check_space(self, base_dir=context.get("base_dir"), check_data=context.get("check_data", True))
        return self

    # -- derived views ----------------------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def modes(self) -> list[str]:
        return [self.mode] if isinstance(self.mode, str) else list(self.mode)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def trainable_spec(self) -> Optional[TrainableSpec]:
        """The catalog entry of a built-in trainable; None for a user's package.module:function."""
        return BUILTIN_TRAINABLES.get(self.trainable)

    def trial_constants(self) -> dict:
        """What every trial's config holds besides the searched values."""
        return {**copy.deepcopy(self.fixed), "data": self.data.model_dump(), "max_epochs": self.budget.max_epochs}

    def to_dict(self) -> dict:
        """The space as plain data (YAML-dumpable); parsing it again gives an equal space."""
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["trainable"] = self.trainable
        out["data"] = self.data.applicable()
        out["metric"] = self.metric if isinstance(self.metric, str) else list(self.metric)
        out["mode"] = self.mode if isinstance(self.mode, str) else list(self.mode)
        out["budget"] = self.budget.model_dump(by_alias=True)
        out["resources"] = self.resources.model_dump()
        out["sampler"] = {"type": self.sampler.type, "seed": self.sampler.seed, **self.sampler.options}
        scheduler_keys = {"asha": ("grace_period", "reduction_factor"), "median": ("grace_period", "min_samples_required")}
        out["scheduler"] = {"type": self.scheduler.type}
        out["scheduler"].update({k: getattr(self.scheduler, k) for k in scheduler_keys.get(self.scheduler.type, ())})
        out["params"] = {name: p.to_dict() for name, p in self.params.items()}
        out["fixed"] = copy.deepcopy(self.fixed)
        return out


# The keys a space file may hold at its top level (the others are filled in by the loader).
LOADER_KEYS = ("source", "text", "overrides")
FILE_KEYS = tuple(name for name in SearchSpace.model_fields if name not in LOADER_KEYS)
