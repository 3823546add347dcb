"""Reading a space: file → text → data with lines → `--set` overrides → validated SearchSpace.

Every failure is a SpaceError naming the file, the line (or the `--set` that caused it), the key path, the
value and a fix. When several things are wrong, the one written first in the file is reported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ValidationError

from ._check import check_space
from ._errors import NO_VALUE, Issue, SpaceError, did_you_mean, show
from ._model import FILE_KEYS, LOADER_KEYS, SearchSpace
from ._yaml import MAX_BYTES, Location, Locations, compose, dotted

# Hints for required keys, by key path with params entries written as "*".
_REQUIRED_HINTS = {
    ("name",): "add name: my-study",
    ("trainable",): "add trainable: cnn (built-ins: mlp, cnn) or your own package.module:function",
    ("metric",): "add metric: val_acc (a metric the trainable reports)",
    ("params",): "add params: with at least one parameter, e.g. lr: {type: float, low: 1.0e-4, high: 0.1, log: true}",
    ("params", "*", "type"): "add type: float, int or categorical",
}
_OPTIONAL_SECTIONS = ("data", "budget", "resources", "sampler", "scheduler", "fixed")
_MAPPING_HINTS = {
    ("params", "*"): "write {type: float, low: ..., high: ...} (or {type: categorical, choices: [...]}); "
    "constants go under fixed:",
}


def load_space(path: Union[str, os.PathLike], overrides: Sequence[str] = (), *, check_data: bool = True) -> SearchSpace:
    """Read, override and validate the space file at `path`. `check_data=False` leaves the data files
    unchecked (a space submitted to a cluster names files on the cluster, not here)."""
    file = os.fspath(path)
    where = Path(file)
    try:
        size = where.stat().st_size
    except FileNotFoundError:
        raise SpaceError(
            "no such file", file=file, hint=f"check the path (relative paths start at {os.getcwd()})"
        ) from None
    except OSError as exc:
        raise SpaceError(f"cannot be read: {exc.strerror or exc}", file=file, hint="check the path and its permissions") from None
    if where.is_dir():
        found = sorted(p.name for p in where.glob("*.y*ml"))[:5]
        hint = f"name a file in it, e.g. {os.path.join(file, found[0])}" if found else "name a .yaml file"
        raise SpaceError("is a directory, not a space file", file=file, hint=hint)
    if size > MAX_BYTES:
        raise SpaceError(
            f"is {size // 1024} KiB, larger than {MAX_BYTES // 1024} KiB",
            file=file,
            hint="a space file is a page of YAML; check that this is the right file",
        )
    try:
        raw = where.read_bytes()
    except OSError as exc:
        raise SpaceError(f"cannot be read: {exc.strerror or exc}", file=file, hint="check the file's permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(
            f"is not UTF-8 text (byte {exc.start})", file=file, hint="save the file as UTF-8 YAML"
        ) from None
    absolute = where.resolve()
    return _parse(
        text, file=file, source=str(absolute), overrides=overrides, base_dir=str(absolute.parent), check_data=check_data
    )


def parse_space(
    text: str,
    source: str = "<string>",
    overrides: Sequence[str] = (),
    base_dir: Optional[Union[str, os.PathLike]] = None,
    *,
    check_data: bool = True,
) -> SearchSpace:
    """Validate a space given as YAML text.

    `source` names the text in errors and becomes `space.source`; relative data paths resolve against
    `base_dir` (default: the current directory). `check_data=False` skips asking the data code whether the
    files exist (for tools that only inspect a space, such as a registry listing).
    """
    base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    return _parse(text, file=source, source=source, overrides=overrides, base_dir=base, check_data=check_data)


def _parse(
    text: str,
    *,
    file: str,
    source: str,
    overrides: Sequence[str],
    base_dir: str,
    check_data: bool = True,
) -> SearchSpace:
    if not isinstance(text, str):
        raise SpaceError(f"the space must be text, not {type(text).__name__}", file=file)
    data, locations = compose(text, file)
    if data is None:
        raise SpaceError(
            "is empty",
            file=file,
            hint="a space needs at least name, trainable, metric and params",
        )
    if not isinstance(data, dict):
        raise SpaceError(
            f"holds a {_kind(data)} at the top level, not a mapping",
            file=file,
            line=1,
            value=data,
            hint="write keys at the top level: name:, trainable:, metric:, params:",
        )
    if isinstance(overrides, str):
        overrides = [overrides]
    overrides = tuple(overrides)
    for item in overrides:
        _apply_override(data, locations, item, file)
    for section in _OPTIONAL_SECTIONS:
        if section in data and data[section] is None:
            del data[section]  # `budget:` with every line commented out means the defaults
    if "params" in data and data["params"] is None:
        data["params"] = {}  # reported as "searches nothing"
    _reject_non_finite(data, (), locations, file)
    for key in data:
        if key not in FILE_KEYS:
            _raise(Issue(f"unknown key {key!r}", did_you_mean(key, FILE_KEYS, "valid keys"), value=key), (key,), file, locations)
    _resolve_data_paths(data, locations, base_dir)
    try:
        space = SearchSpace.model_validate({**data, "source": source, "text": text, "overrides": overrides})
    except ValidationError as exc:
        raise _first_error(exc, file, locations) from None
    for issue in check_space(space, base_dir=base_dir, check_data=check_data):
        _raise(issue, (), file, locations)
    return space


def _kind(value: Any) -> str:
    return {list: "list", str: "text", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


# -- --set overrides --------------------------------------------------------------------------------------
def _apply_override(data: dict, locations: Locations, item: Any, file: str) -> None:
    origin = f"--set {item}"
    if not isinstance(item, str) or "=" not in item:
        raise SpaceError(
            "is not KEY=VALUE", file=file, origin=origin, value=item, hint="write e.g. --set budget.trials=5"
        )
    key, _, value_text = item.partition("=")
    parts = key.strip().split(".")
    if not key.strip() or any(not p.strip() for p in parts):
        raise SpaceError(
            f"{key!r} is not a dotted key path", file=file, origin=origin, value=key, hint="write e.g. --set params.lr.high=0.1"
        )
    parts = [p.strip() for p in parts]
    value, value_locations = compose(value_text, file, origin=origin)
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            inside = dotted(parts[: depth + 1])
            raise SpaceError(
                f"{inside} is {show(child)}, not a mapping, so {key!r} cannot be set inside it",
                file=file,
                origin=origin,
                field=dotted(parts),
                value=child,
                hint=f"set the whole value: --set {inside}=..." + (" (a list is written [a, b])" if isinstance(child, list) else ""),
            )
        node = child
    node[parts[-1]] = value
    locations.replace_subtree(tuple(parts), Location(None, origin), value_locations.paths())


# -- checks on the raw data -------------------------------------------------------------------------------
def _reject_non_finite(value: Any, path: tuple, locations: Locations, file: str) -> None:
    """.nan and .inf are never a useful setting, wherever they appear."""
    if isinstance(value, float) and not math.isfinite(value):
        _raise(Issue(f"{show(value)} is not a finite number", "write a finite number", value=value), path, file, locations)
    elif isinstance(value, dict):
        for key, child in value.items():
            _reject_non_finite(child, path + (key,), locations, file)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _reject_non_finite(child, path + (index,), locations, file)


def _resolve_data_paths(data: dict, locations: Locations, base_dir: str) -> None:
    """data.root and data.path become absolute: from the space file's folder, or from the current folder
    when given on the command line with --set (where a user expects shell-relative paths)."""
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for key in ("root", "path"):
        value = section.get(key)
        if isinstance(value, str) and value.strip():
            from_cli = locations.find(("data", key)).origin is not None
            start = os.getcwd() if from_cli else base_dir
            section[key] = os.path.normpath(os.path.join(start, os.path.expanduser(value.strip())))


# -- pydantic errors → SpaceError -------------------------------------------------------------------------
def _first_error(exc: ValidationError, file: str, locations: Locations) -> SpaceError:
    candidates = [_convert(error, file, locations) for error in exc.errors(include_url=False)]
    return min(candidates, key=lambda e: (e.line is None, e.line or 0))  # min() keeps the first of equals


def _convert(error: dict, file: str, locations: Locations) -> SpaceError:
    loc = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input", NO_VALUE)
    issue = (error.get("ctx") or {}).get("error")
    if isinstance(issue, Issue):
        value = issue.value if issue.value is not NO_VALUE else (given if not issue.at else NO_VALUE)
        return _error(issue.message, issue.hint, loc + issue.at, value, file, locations)
    pattern = tuple("*" if len(loc) > 1 and loc[0] == "params" and i == 1 else p for i, p in enumerate(loc))
    if kind == "missing":
        return _error("is required but missing", _REQUIRED_HINTS.get(pattern, f"add {loc[-1]}:"), loc, NO_VALUE, file, locations)
    if kind == "extra_forbidden":
        allowed = _input_names(loc[:-1])
        return _error(f"unknown key {loc[-1]!r}", did_you_mean(loc[-1], allowed, "valid keys"), loc, loc[-1], file, locations)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        hint = _MAPPING_HINTS.get(pattern, "write key: value pairs under it")
        return _error(f"{show(given)} is not a mapping", hint, loc, given, file, locations)
    if kind in ("list_type", "tuple_type"):
        return _error(f"{show(given)} is not a list", "write a list such as [a, b]", loc, given, file, locations)
    return _error(f"{show(given)}: {error['msg']}", "fix this value", loc, given, file, locations)


def _error(message: str, hint: str, path: tuple, value: Any, file: str, locations: Locations) -> SpaceError:
    where = locations.find(path)
    return SpaceError(message, file=file, line=where.line, field=dotted(path), value=value, hint=hint, origin=where.origin)


def _raise(issue: Issue, path: tuple, file: str, locations: Locations) -> None:
    raise _error(issue.message, issue.hint, path + issue.at, issue.value, file, locations)


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
