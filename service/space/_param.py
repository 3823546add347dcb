"""One searched hyperparameter (`params.NAME`), in Optuna's vocabulary: float, int or categorical."""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from ._conditions import value_key
from ._errors import Issue, did_you_mean, num, show
from ._types import SCALAR_SCHEMA, Flag, Frozen, Number, if_equals, scalars, set_fields

PARAM_TYPES = ("float", "int", "categorical")

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



_WHOLE_IF_A_NUMBER = {"anyOf": [{"type": "integer"}, {"not": {"type": "number"}}]}


def _param_json_schema(schema: dict) -> None:
    """Which keys each type takes, whole numbers for int, and what log excludes; the rules between values
    (low < high, high on the step grid) are the validator's alone."""
    numeric = ("low", "high", "log", "step")
    schema["allOf"] = [
        {
            "if": if_equals("type", "categorical", None),
            "then": {"required": ["choices"], "properties": {"choices": {"type": "array"}, **{k: False for k in numeric}}},
            "else": {"required": ["low", "high"], "properties": {"choices": {"type": "null"}, **_NOT_NULL}},
        },
        {"if": if_equals("type", "int", None), "then": {"properties": {k: _WHOLE_IF_A_NUMBER for k in ("low", "high", "step")}}},
        {"if": if_equals("log", True, False), "then": {"properties": {"low": {"exclusiveMinimum": 0}, "step": {"type": "null"}}}},
    ]


_NOT_NULL = {key: {"not": {"type": "null"}} for key in ("low", "high")}
_CHOICES_SCHEMA = {"anyOf": [{"type": "array", "items": SCALAR_SCHEMA, "minItems": 1, "uniqueItems": True}, {"type": "null"}]}
_WHEN_SCHEMA = {
    "type": "object",
    "additionalProperties": {"anyOf": [SCALAR_SCHEMA, {"type": "array", "items": SCALAR_SCHEMA, "minItems": 1}]},
}


class ParamSpec(Frozen):
    """One searched hyperparameter, in Optuna's vocabulary."""

    model_config = ConfigDict(json_schema_extra=_param_json_schema)

    type: Annotated[str, WithJsonSchema({"enum": list(PARAM_TYPES)})] = Field(description="float, int or categorical")
    low: Optional[Number] = Field(None, description="lower bound, inclusive (float, int)")
    high: Optional[Number] = Field(None, description="upper bound, inclusive (float, int)")
    log: Flag = Field(False, description="sample on a log scale; low must be > 0 (float, int)")
    step: Optional[Number] = Field(
        None, description="grid spacing from low (float, int); not with log", json_schema_extra={"exclusiveMinimum": 0}
    )
    choices: Annotated[Optional[tuple[Any, ...]], WithJsonSchema(_CHOICES_SCHEMA)] = Field(
        None, description="the values to choose from (categorical)"
    )
    when: Annotated[dict[str, tuple[Any, ...]], WithJsonSchema(_WHEN_SCHEMA)] = Field(
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
        choices = scalars(value, what="choice")
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
            conditions[parent] = scalars(values, what="condition value", at=(parent,))
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
            set_fields(self, **{key: self._integer(key) for key in ("low", "high", "step") if getattr(self, key) is not None})
        else:
            set_fields(self, low=float(self.low), high=float(self.high))
            if self.step is not None:
                set_fields(self, step=float(self.step))
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
