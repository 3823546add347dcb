"""The scalar types of a space file: numbers (numeric text too), integers, text, flags, names from a list.

Each is a pydantic `Annotated` type whose BeforeValidator raises `Issue` with the user's value and a fix, so
that every model reads and reports a scalar the same way.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ._errors import Issue, did_you_mean, num, show


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


Float = Annotated[float, BeforeValidator(to_float)]
Int = Annotated[int, BeforeValidator(to_int)]
Number = Annotated[Union[int, float], BeforeValidator(to_number)]
Text = Annotated[str, BeforeValidator(to_text)]
Flag = Annotated[bool, BeforeValidator(to_flag)]


def at_least(value, low, what: str, *, strict: bool = False, hint: str = ""):
    """`value` >= low (or > low when strict), else an Issue such as "`0` is not >= 1"."""
    if value < low or (strict and value == low):
        sign = ">" if strict else ">="
        raise Issue(f"{show(value)} is not {sign} {num(low)}", hint or f"{what} must be {sign} {num(low)}", value=value)
    return value


def none_word(value: Any) -> Any:
    """`none` written as a word means "no limit", like null."""
    return None if isinstance(value, str) and value.strip().lower() in ("none", "null", "") else value


def set_fields(model: BaseModel, **values: Any) -> None:
    """Normalise fields of a frozen model from its own validator (before anyone can see it)."""
    for name, value in values.items():
        object.__setattr__(model, name, value)


class Frozen(BaseModel):
    """Every model of a space: immutable once built, unknown keys refused, defaults trusted as written."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)


_SCALAR_TYPES = (str, int, float, bool, type(None))


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
