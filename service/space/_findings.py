"""The errors of one space file, from every stage, as the SpaceErrors a user reads.

Stages run in order: the raw data (non-finite numbers, unknown top-level keys), the model (pydantic's errors,
one per broken field), then the checks on the built model. A later stage's error at or under the key path of
an earlier one is the same mistake seen again and is dropped; so is a second error at the same path within a
stage. What is left is reported in file order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from ._errors import NO_VALUE, Issue, SpaceError, did_you_mean, show
from ._model import LOADER_KEYS, SearchSpace
from ._yaml import Locations, dotted

RAW, MODEL, CHECKS = 0, 1, 2  # the stages, in the order they run

# Hints for required keys, by key path with params entries written as "*".
_REQUIRED_HINTS = {
    ("name",): "add name: my-study",
    ("trainable",): "add trainable: cnn (built-ins: mlp, cnn) or your own package.module:function",
    ("metric",): "add metric: val_acc (a metric the trainable reports)",
    ("params",): "add params: with at least one parameter, e.g. lr: {type: float, low: 1.0e-4, high: 0.1, log: true}",
    ("params", "*", "type"): "add type: float, int or categorical",
}
_MAPPING_HINTS = {
    ("params", "*"): "write {type: float, low: ..., high: ...} (or {type: categorical, choices: [...]}); "
    "constants go under fixed:",
}


@dataclass(frozen=True)
class _Found:
    stage: int
    path: tuple
    error: SpaceError


class Findings:
    """Collects the errors of one file; `error()` / `raise_if_any()` give them together as one SpaceError."""

    def __init__(self, file: str, locations: Locations) -> None:
        self.file = file
        self.locations = locations
        self._found: list[_Found] = []

    def issue(self, stage: int, issue: Issue, path: tuple = ()) -> None:
        """An Issue raised at `path` (its own `at` goes below that)."""
        self._add(stage, path + issue.at, issue.message, issue.hint, issue.value)

    def validation_error(self, exc: ValidationError) -> None:
        for error in exc.errors(include_url=False):
            self._add(MODEL, *_convert(error))

    def raise_if_any(self) -> None:
        if self._found:
            raise self.error()

    def error(self) -> SpaceError:
        """All errors found (at least one), without echoes, in file order, as one SpaceError."""
        kept: list[_Found] = []
        for found in self._found:
            if not any(_same_mistake(earlier, found) for earlier in kept):
                kept.append(found)
        in_file_order = sorted(kept, key=lambda f: (f.error.line is None, f.error.line or 0))  # a stable sort
        return SpaceError.from_errors([f.error for f in in_file_order])

    def _add(self, stage: int, path: tuple, message: str, hint: str, value: Any) -> None:
        where = self.locations.find(path)
        error = SpaceError(
            message, file=self.file, line=where.line, field=dotted(path), value=value, hint=hint, origin=where.origin
        )
        self._found.append(_Found(stage, path, error))


def _same_mistake(earlier: _Found, later: _Found) -> bool:
    if earlier.stage == later.stage:
        return earlier.path == later.path
    return later.path[: len(earlier.path)] == earlier.path


# -- pydantic errors → (path, message, hint, value) -------------------------------------------------------
def _convert(error: dict) -> tuple[tuple, str, str, Any]:
    loc = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input", NO_VALUE)
    issue = (error.get("ctx") or {}).get("error")
    if isinstance(issue, Issue):
        value = issue.value if issue.value is not NO_VALUE else (given if not issue.at else NO_VALUE)
        return loc + issue.at, issue.message, issue.hint, value
    pattern = tuple("*" if len(loc) > 1 and loc[0] == "params" and i == 1 else p for i, p in enumerate(loc))
    if kind == "missing":
        return loc, "is required but missing", _REQUIRED_HINTS.get(pattern, f"add {loc[-1]}:"), NO_VALUE
    if kind == "extra_forbidden":
        allowed = _input_names(loc[:-1])
        return loc, f"unknown key {loc[-1]!r}", did_you_mean(loc[-1], allowed, "valid keys"), loc[-1]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"{show(given)} is not a mapping", _MAPPING_HINTS.get(pattern, "write key: value pairs under it"), given
    if kind in ("list_type", "tuple_type"):
        return loc, f"{show(given)} is not a list", "write a list such as [a, b]", given
    return loc, f"{show(given)}: {error['msg']}", "fix this value", given


def _input_names(loc: tuple) -> list[str]:
    """The keys the model at `loc` accepts, for "did you mean"."""
    model: Any = SearchSpace
    index = 0
    while index < len(loc):
        field = _field(model, loc[index])
        if field is None:
            return []
        annotation = _unwrap(field.annotation)
        if getattr(annotation, "__origin__", None) is dict:
            annotation = _unwrap(annotation.__args__[1])
            index += 1  # skip the free key (a parameter's name)
        model = annotation
        index += 1
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    names = [f.alias or n for n, f in model.model_fields.items()]
    return [n for n in names if n not in LOADER_KEYS] if model is SearchSpace else names


def _field(model: Any, key: Any):
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] → X."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if getattr(annotation, "__origin__", None) is Union and len(args) == 1:
        return args[0]
    return annotation
