"""The `trainable:` key: a built-in name from the catalog, or a user's `package.module:function`, imported
(from the space's folder and the current one) to check that the function is there."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Optional

from trainables import BUILTIN_TRAINABLES

from ._errors import Issue, did_you_mean

TARGET_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
_AT = ("trainable",)


def trainable_issues(target: str, *, base_dir: Optional[str]) -> Iterator[Issue]:
    """What is wrong with `target`: an unknown built-in, a malformed name, or a module that does not import
    or lacks the function."""
    if ":" not in target:
        if target not in BUILTIN_TRAINABLES:
            yield Issue(
                f"unknown trainable {target!r}",
                did_you_mean(target, BUILTIN_TRAINABLES, "built-ins") + ", or your own as package.module:function",
                at=_AT,
                value=target,
            )
        return
    if not re.match(TARGET_PATTERN, target):
        yield Issue(
            f"{target!r} is not package.module:function",
            "write e.g. trainable: mypackage.train:train (a module importable from here, and its function)",
            at=_AT,
            value=target,
        )
        return
    yield from _import_issues(target, base_dir)


def _import_issues(target: str, base_dir: Optional[str]) -> Iterator[Issue]:
    module_name, func_name = target.split(":")
    module, problem = _import(module_name, target, base_dir)
    if problem is not None:
        yield problem
        return
    function = getattr(module, func_name, None)
    if function is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
        yield Issue(
            f"module {module_name!r} has no attribute {func_name!r}",
            did_you_mean(func_name, names, "its functions"),
            at=_AT,
            value=target,
        )
    elif not callable(function):
        yield Issue(f"{target!r} is a {type(function).__name__}, not a function", "name a train(config) function", at=_AT, value=target)


def _import(module_name: str, target: str, base_dir: Optional[str]) -> tuple[Optional[ModuleType], Optional[Issue]]:
    with _importable_from(base_dir):
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return None, Issue(
                f"module {module_name!r} is not importable",
                "put it next to the space file or in the current folder, or add its folder to PYTHONPATH",
                at=_AT,
                value=target,
            )
        try:
            return importlib.import_module(module_name), None
        except (Exception, SystemExit) as exc:  # a user's module may fail in any way while importing
            return None, Issue(
                f"importing {module_name!r} failed: {type(exc).__name__}: {exc}",
                f"fix the module so that `python -c 'import {module_name}'` works",
                at=_AT,
                value=target,
            )


@contextmanager
def _importable_from(base_dir: Optional[str]) -> Iterator[None]:
    """Look for user modules where the runner puts them on the workers' path: the cwd and the space's folder."""
    extra = [p for p in dict.fromkeys([os.getcwd(), base_dir]) if p and p not in sys.path]
    sys.path[:0] = extra
    try:
        yield
    finally:
        for path in extra:
            if path in sys.path:
                sys.path.remove(path)
