"""Reading a space: file → text → data with lines → `--set` overrides → SearchSpace → checks.

Every failure is a SpaceError naming the file, the line (or the `--set` that caused it), the key path, the
value and a fix. A file that cannot be read as a mapping of keys (no such file, YAML syntax, a list at the
top, a broken `--set`) stops at that one error; otherwise every error of the file is reported together
(`SpaceError.errors`, in file order), from the model and from the checks that run on it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import ValidationError

from ._check import check_space
from ._errors import Issue, SpaceError, did_you_mean, show
from ._findings import CHECKS, RAW, Findings
from ._model import FILE_KEYS, SearchSpace
from ._trainable import TrainablePolicy
from ._yaml import MAX_BYTES, Location, Locations, compose, dotted

_OPTIONAL_SECTIONS = ("data", "budget", "resources", "sampler", "scheduler", "fixed")
# Stand-ins for required keys whose value is broken, so that the checks can still look at the rest of the
# file; the checks that read a stood-in key are skipped (see `_check.check_space`).
_STAND_INS = {"name": "unchecked", "trainable": "mlp", "metric": "val_acc"}


def load_space(
    path: Union[str, os.PathLike],
    overrides: Sequence[str] = (),
    *,
    check_data: bool = True,
    trainables: Optional[TrainablePolicy] = None,
) -> SearchSpace:
    """Read, override and validate the space file at `path`. `check_data=False` leaves the data files
    unchecked (a space submitted to a cluster names files on the cluster, not here). `trainables` decides
    which user trainables the space may name (default `TrainablePolicy.local()`: any, imported to check it)."""
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
        text,
        file=file,
        source=str(absolute),
        overrides=overrides,
        base_dir=str(absolute.parent),
        check_data=check_data,
        trainables=trainables,
    )


def parse_space(
    text: str,
    source: str = "<string>",
    overrides: Sequence[str] = (),
    base_dir: Optional[Union[str, os.PathLike]] = None,
    *,
    check_data: bool = True,
    trainables: Optional[TrainablePolicy] = None,
) -> SearchSpace:
    """Validate a space given as YAML text.

    `source` names the text in errors and becomes `space.source`; relative data paths resolve against
    `base_dir` (default: the current directory). `check_data=False` skips asking the data code whether the
    files exist (for tools that only inspect a space, such as a registry listing). `trainables` decides which
    user trainables the space may name: the default, `TrainablePolicy.local()`, admits any module and imports
    it to check the function; `TrainablePolicy.admitted(prefixes)` (or `.from_env()`) checks the name only and
    never imports, for a service validating spaces that others send.
    """
    base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    return _parse(
        text, file=source, source=source, overrides=overrides, base_dir=base, check_data=check_data, trainables=trainables
    )


def _parse(
    text: str,
    *,
    file: str,
    source: str,
    overrides: Sequence[str],
    base_dir: str,
    check_data: bool = True,
    trainables: Optional[TrainablePolicy] = None,
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
    findings = Findings(file, locations)
    for path, issue in _non_finite(data, ()):
        findings.issue(RAW, issue, path)
    for key in [k for k in data if k not in FILE_KEYS]:
        findings.issue(RAW, Issue(f"unknown key {key!r}", did_you_mean(key, FILE_KEYS, "valid keys"), value=key), (key,))
        del data[key]
    _resolve_data_paths(data, locations, base_dir)
    payload = {**data, "source": source, "text": text, "overrides": overrides}

    def check(space: SearchSpace, broken: frozenset[tuple] = frozenset()) -> None:
        for issue in check_space(space, base_dir=base_dir, check_data=check_data, trainables=trainables, broken=broken):
            findings.issue(CHECKS, issue)

    try:
        space = SearchSpace.model_validate(payload)
    except ValidationError as exc:
        findings.validation_error(exc)
        broken = _broken_parts(exc)
        partial = _partial_space(payload, broken)
        if partial is not None:
            check(partial, broken)
        raise findings.error() from None
    check(space)
    findings.raise_if_any()
    return space


def _broken_parts(exc: ValidationError) -> frozenset[tuple]:
    """The parts of the file the model refused: ("budget",), ("params", "lr"), ("params",) for params itself."""
    parts = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        parts.add(loc[:2] if loc[:1] == ("params",) and len(loc) > 1 else loc[:1])
    return frozenset(parts)


def _partial_space(payload: dict, broken: frozenset[tuple]) -> Optional[SearchSpace]:
    """The space without its broken parts (stand-ins or defaults in their place), for the checks to look at
    the rest; None when too little is left to check."""
    if ("params",) in broken or () in broken:
        return None
    data = dict(payload)
    for part in broken:
        if part[0] == "params":
            data["params"] = {name: spec for name, spec in data["params"].items() if name != part[1]}
        elif part[0] in _STAND_INS:
            data[part[0]] = _STAND_INS[part[0]]
        else:
            data.pop(part[0], None)  # an optional key: its default stands in
    if not data.get("params"):
        return None
    try:
        return SearchSpace.model_validate(data)
    except ValidationError:
        return None


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
def _non_finite(value: Any, path: tuple) -> Iterator[tuple[tuple, Issue]]:
    """.nan and .inf are never a useful setting, wherever they appear."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, Issue(f"{show(value)} is not a finite number", "write a finite number", value=value)
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _non_finite(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _non_finite(child, path + (index,))


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
