"""MLflow's rules for param keys, metric keys and param values, checked when a space is validated.

Every trial's config (searched params and fixed values) becomes MLflow params of its run, and the metric is
logged under its name. A key MLflow refuses fails the study mid-run with INVALID_PARAMETER_VALUE; checked
here, it is one line of `hpsearch validate` instead.

Mirrors mlflow/utils/validation.py of MLflow 3.17.2 (pyproject.toml pins mlflow>=3.10,<3.18):
`validate_param_and_metric_name` (the rule off Windows, where the drivers run), `path_not_unique`,
`MAX_ENTITY_KEY_LENGTH` and `MAX_PARAM_VAL_LENGTH`. tests/test_space_mlflow_keys.py compares this module
with the installed MLflow, so an upgrade that changes the rules fails there.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any, Optional

from ._errors import Issue
from ._model import SearchSpace

MLFLOW_VERSION = "3.17.2"  # the version these rules were read from
MAX_KEY_LENGTH = 250  # MAX_ENTITY_KEY_LENGTH: param and metric keys
MAX_PARAM_VALUE_LENGTH = 6000  # MAX_PARAM_VAL_LENGTH: a param's value as text
_KEY_CHARACTERS = re.compile(r"^[/\w.\- :]*$")  # letters and digits (\w is Unicode here), _ - . space : /
KEY_CHARACTERS_TEXT = "letters, digits, '_', '-', '.', ' ', ':' and '/'"

# The same rules as one JSON Schema pattern: allowed characters; not empty; no leading '/' or '..'; no '//';
# no trailing '/'; no '.' or '..' path part. (Python's \w is Unicode, an editor's ECMAScript \w is ASCII.)
KEY_PATTERN = r"^(?!/)(?!\.\.)(?!.*//)(?!.*/$)(?!(?:.*/)?\.\.?(?:/|$))[/\w.\- :]+$"


def key_problem(name: str, kind: str = "param") -> Optional[str]:
    """Why MLflow would refuse `name` as a `kind` ("param" or "metric") key, or None if it would not."""
    if not _KEY_CHARACTERS.match(name):
        return f"{name!r} cannot be an MLflow {kind} key: MLflow {MLFLOW_VERSION} allows only {KEY_CHARACTERS_TEXT}"
    if _path_not_unique(name):
        return (
            f"{name!r} cannot be an MLflow {kind} key: MLflow treats keys as file paths, and this one would resolve"
            f" to {posixpath.normpath(name)!r}"
        )
    if len(name) > MAX_KEY_LENGTH:
        return f"{name!r} is {len(name)} characters long, more than the {MAX_KEY_LENGTH} MLflow allows in a {kind} key"
    return None


def value_problem(value: Any) -> Optional[str]:
    """Why `value` is too long for an MLflow param value (compared as the text MLflow stores), or None."""
    length = len(str(value))
    if length > MAX_PARAM_VALUE_LENGTH:
        return f"is {length} characters as text, more than the {MAX_PARAM_VALUE_LENGTH} MLflow keeps in a param value"
    return None


def _path_not_unique(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def mlflow_issues(space: SearchSpace, *, metric: bool = True) -> Iterator[Issue]:
    """Params, fixed keys and values, and (when `metric`) metric names that MLflow would refuse."""
    for section, names in (("params", space.params), ("fixed", space.fixed)):
        for name in names:
            problem = key_problem(name)
            if problem:
                yield Issue(problem, _key_fix(name), at=(section, name), value=name)
    for name, value in space.fixed.items():
        problem = value_problem(value)
        if problem:
            yield Issue(problem, "shorten it, or put it in a file the trainable reads", at=("fixed", name), value=value)
    for name, param in space.params.items():
        for index, choice in enumerate(param.choices or ()):
            problem = value_problem(choice)
            if problem:
                yield Issue(f"choice {problem}", "shorten it", at=("params", name, "choices", index), value=choice)
    for index, name in enumerate(space.metrics if metric else ()):
        problem = key_problem(name, "metric")
        if problem:
            at = ("metric", index) if isinstance(space.metric, list) else ("metric",)
            yield Issue(problem, "report the metric under a name MLflow accepts", at=at, value=name)


def _key_fix(name: str) -> str:
    if len(name) > MAX_KEY_LENGTH:
        return "use a shorter name"
    parts = [re.sub(r"[^\w.\- :]", "_", part) for part in name.split("/") if part not in ("", ".", "..")]
    suggestion = "/".join(parts).lstrip(".")
    return f"rename it, e.g. {suggestion!r}" if suggestion else f"rename it, using only {KEY_CHARACTERS_TEXT}"
