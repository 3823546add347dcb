"""The scalar types of a space file: numbers (numeric text too), integers, text, flags, names from a list,
and the bounds on them.

Each is a pydantic `Annotated` type whose validator raises `Issue` with the user's value and a fix, so that
every model reads and reports a scalar the same way. Where a validator accepts more than its annotation says
(numeric text for a number) or checks more (a bound), the same object also writes that into the JSON Schema
(`WithJsonSchema`, `__get_pydantic_json_schema__`): the schema is generated from these, not written beside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic_core import core_schema

from trainables import ParamRule

from ._errors import Issue, did_you_mean, num, show

# Text that `to_number` reads as a finite number: what Python's int() or float() accept, without nan and inf.
NUMERIC_TEXT_PATTERN = r"^\s*[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?\s*$"
# Words that `none_word` reads as "no limit", like null.
NONE_WORDS = ("none", "null", "")
NONE_WORD_PATTERN = r"^\s*(?:[Nn][Oo][Nn][Ee]|[Nn][Uu][Ll][Ll])?\s*$"
_NUMERIC_TEXT = {"type": "string", "pattern": NUMERIC_TEXT_PATTERN}


# -- Scalar coercion: numbers, integers, text, flags, names from a list ------------------------------------
def to_number(value: Any) -> Union[int, float]:
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


def to_float(value: Any) -> float:
    return float(to_number(value))


def to_int(value: Any) -> int:
    try:
        number = to_number(value)
    except Issue as issue:
        issue.hint = "write a whole number such as 10" if "finite" not in issue.message else issue.hint
        raise
    if isinstance(number, float):
        if not number.is_integer():
            raise Issue(f"{show(value)} is not a whole number", f"write an integer such as {round(number)}", value=value)
        return int(number)
    return number


def to_text(value: Any) -> str:
    if not isinstance(value, str):
        raise Issue(f"{show(value)} is not text", f"quote it: '{show(value)}'", value=value)
    return value


def to_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Issue(f"{show(value)} is not true or false", "write true or false", value=value)
    return value


def one_of(names: tuple[str, ...], what: str):
    """A validator accepting only `names`, with "did you mean" for a near miss."""

    def check(value: Any) -> str:
        if value not in names:
            raise Issue(f"unknown {what} {show(value)}", did_you_mean(value, names), value=value)
        return value

    return check


def choice(names: tuple[str, ...], what: str) -> Any:
    """A text field that takes one of `names` ("unknown sampler 'tpee'; did you mean 'tpe'?")."""
    return Annotated[str, BeforeValidator(one_of(names, what)), WithJsonSchema({"enum": list(names)})]


Float = Annotated[float, BeforeValidator(to_float), WithJsonSchema({"anyOf": [{"type": "number"}, _NUMERIC_TEXT]})]
Int = Annotated[int, BeforeValidator(to_int), WithJsonSchema({"anyOf": [{"type": "integer"}, _NUMERIC_TEXT]})]
Number = Annotated[
    Union[int, float], BeforeValidator(to_number), WithJsonSchema({"anyOf": [{"type": "number"}, _NUMERIC_TEXT]})
]
Text = Annotated[str, BeforeValidator(to_text)]
Flag = Annotated[bool, BeforeValidator(to_flag)]


# -- Bounds: each checks a value with the message users see and writes itself into the JSON Schema ---------
class _Bound:
    """Base of the bounds below: an after-validator named after the field, and a JSON Schema addition."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        field = handler.field_name or "value"
        return core_schema.no_info_after_validator_function(lambda value: self.check(value, field), handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {**handler(schema), **self.json_schema()}

    def check(self, value: Any, field: str) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class OrNoneWord:
    """An optional value that may also be written as the word none (or null): "no limit"."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(none_word, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {"anyOf": [handler(schema), {"type": "string", "pattern": NONE_WORD_PATTERN}]}


@dataclass(frozen=True)
class AtLeast(_Bound):
    """`value >= low`, or `> low` when strict: "0 is not >= 1; trials must be >= 1"."""

    low: float
    strict: bool = False
    hint: str = ""

    def check(self, value: Any, field: str) -> Any:
        return at_least(value, self.low, field, strict=self.strict, hint=self.hint)

    def json_schema(self) -> dict:
        return {"exclusiveMinimum" if self.strict else "minimum": self.low}


@dataclass(frozen=True)
class Between(_Bound):
    """`low < value < high`: "1.0 is not in (0, 1)"."""

    low: float
    high: float
    hint: str = ""

    def check(self, value: Any, field: str) -> Any:
        if not self.low < value < self.high:
            raise Issue(f"{show(value)} is not in ({num(self.low)}, {num(self.high)})", self.hint, value=value)
        return value

    def json_schema(self) -> dict:
        return {"exclusiveMinimum": self.low, "exclusiveMaximum": self.high}


@dataclass(frozen=True)
class WholeAbove(_Bound):
    """Above `limit` only whole numbers (Ray schedules 0.5 of a GPU, or 2, not 1.5)."""

    limit: float
    why: str

    def check(self, value: Any, field: str) -> Any:
        if value > self.limit and not float(value).is_integer():
            raise Issue(
                f"{show(value)} is a fraction above {num(self.limit)}, {self.why}",
                f"use a fraction below {num(self.limit)} or a whole number ({math.floor(value)} or {math.ceil(value)})",
                value=value,
            )
        return value

    def json_schema(self) -> dict:
        return {"not": {"allOf": [{"type": "number", "exclusiveMinimum": self.limit}, {"not": {"multipleOf": 1}}]}}


def at_least(value, low, what: str, *, strict: bool = False, hint: str = ""):
    """`value` >= low (or > low when strict), else an Issue such as "`0` is not >= 1"."""
    if value < low or (strict and value == low):
        sign = ">" if strict else ">="
        raise Issue(f"{show(value)} is not {sign} {num(low)}", hint or f"{what} must be {sign} {num(low)}", value=value)
    return value


def none_word(value: Any) -> Any:
    """`none` written as a word means "no limit", like null."""
    return None if isinstance(value, str) and value.strip().lower() in NONE_WORDS else value


def set_fields(model: BaseModel, **values: Any) -> None:
    """Normalise fields of a frozen model from its own validator (before anyone can see it)."""
    for name, value in values.items():
        object.__setattr__(model, name, value)


class Frozen(BaseModel):
    """Every model of a space: immutable once built, unknown keys refused, defaults trusted as written."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)


_SCALAR_TYPES = (str, int, float, bool, type(None))
SCALAR_SCHEMA = {"type": ["string", "number", "boolean", "null"]}


def scalars(values: Any, *, what: str, at: tuple = ()) -> tuple:
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


# -- JSON Schema pieces shared by the models and the schema ---------------------------------------------
def if_equals(key: str, value: Any, default: Any) -> dict:
    """The `if` of "when `key` is `value`": a missing key counts as its default."""
    condition: dict = {"properties": {key: {"const": value}}}
    return condition if value == default else {**condition, "required": [key]}


def rule_schema(rule: ParamRule, *, numeric_text: bool = False) -> dict:
    """The values a catalog or sampler-option rule accepts (`ParamRule.accepts`), as JSON Schema;
    `numeric_text` where the validator reads numeric text as a number first."""
    if rule.kind == "bool":
        return {"type": "boolean"}
    if rule.kind == "choice":
        return {"enum": list(rule.choices)}
    out: dict[str, Any] = {"type": "integer" if rule.kind == "int" else "number"}
    if rule.low is not None:
        out["exclusiveMinimum" if rule.low_open else "minimum"] = rule.low
    if rule.high is not None:
        out["exclusiveMaximum" if rule.high_open else "maximum"] = rule.high
    return {"anyOf": [out, _NUMERIC_TEXT]} if numeric_text else out
