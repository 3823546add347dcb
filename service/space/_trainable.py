"""The `trainable:` key: a built-in name from the catalog, or a user's `package.module:function`, and the
policy that decides which user modules a space may name.

Locally (`TrainablePolicy.local()`, the default) a user runs their own code: the module is imported from the
space's folder and the current one to check that the function is there. A service that validates spaces
sent by others (`TrainablePolicy.admitted(...)`) checks the *name* against the modules its admin admitted
and imports nothing: import-time code of an arbitrary module would run in the process that holds the
service's credentials. The driver imports the trainable later, where the image installed it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

from trainables import BUILTIN_TRAINABLES

from ._errors import Issue, did_you_mean
from ._model import TARGET_PATTERN

MODULE_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
_AT = ("trainable",)


@dataclass(frozen=True)
class TrainablePolicy:
    """Which trainables a space may name, decided on the name before anything is imported.

    `modules` is None for the local policy (any module, imported to check it), else the admitted module
    prefixes: `mylab.models` admits `mylab.models` and `mylab.models.x`, not `mylab.modelsx`. The built-in
    trainables (mlp, cnn, synthetic) pass under every policy.
    """

    modules: Optional[tuple[str, ...]] = None

    ENV = "HPSEARCH_TRAINABLE_MODULES"  # comma-separated module prefixes, set by a cluster's admin

    def __post_init__(self) -> None:
        for prefix in self.modules or ():
            if not isinstance(prefix, str) or not re.fullmatch(MODULE_PATTERN, prefix):
                raise ValueError(
                    f"admitted trainable module {prefix!r} is not a dotted module name such as mylab.models"
                    f" (check {self.ENV})"
                )

    @classmethod
    def local(cls) -> "TrainablePolicy":
        """Any module, imported while validating to check that the function exists (a user's own machine)."""
        return cls(None)

    @classmethod
    def admitted(cls, modules: Iterable[str]) -> "TrainablePolicy":
        """The built-ins and modules inside `modules`; checks the name only and never imports."""
        return cls(tuple(modules))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "TrainablePolicy":
        """`admitted` with the prefixes in HPSEARCH_TRAINABLE_MODULES ("mylab.models,other.pkg"); unset or
        empty admits only the built-ins."""
        return cls.admitted(p.strip() for p in environ.get(cls.ENV, "").split(",") if p.strip())

    @property
    def imports(self) -> bool:
        """Whether validating imports a user's module (only the local policy does)."""
        return self.modules is None

    def admits(self, module: str) -> bool:
        """Whether a space may name a function of `module`."""
        if self.modules is None:
            return True
        return any(module == prefix or module.startswith(prefix + ".") for prefix in self.modules)

    def check_loaded(self, target: str) -> None:
        """For a driver about to run `target`, a user's package.module:function whose name this policy admitted:
        the function must be defined in an admitted module too, so that an admitted module importing another's
        function (`from os import system`) opens no way in. Imports the module, as the driver is about to do
        anyway; raises SpaceError when the function is not admitted, or the module does not import."""
        if self.modules is None or ":" not in target:
            return
        from ._errors import SpaceError

        module_name, func_name = target.split(":", 1)
        module, problem = _import(module_name, target, None)
        if problem is not None:  # not installed here, or failing as it imports: the study fails with the reason
            raise SpaceError(problem.message, field="trainable", value=target, hint=problem.hint)
        function = getattr(module, func_name, None)
        home = getattr(function, "__module__", None) or ""
        if callable(function) and self.admits(home):
            return
        raise SpaceError(
            f"{target!r} is not a function of an admitted module (it comes from {home or 'nowhere'!r}): the trainable "
            f"policy of this service runs the built-in trainables and functions defined in modules under "
            f"{self.ENV} (admitted: {', '.join(self.modules) or 'none'})",
            field="trainable", value=target,
            hint="name a train(config) function defined in the admitted module itself",
        )


def trainable_issues(target: str, *, base_dir: Optional[str], policy: Optional[TrainablePolicy] = None) -> Iterator[Issue]:
    """What is wrong with `target` under `policy` (default: local): an unknown built-in, a module the policy
    does not admit, a malformed name, or (local only) a module that does not import or lacks the function."""
    policy = policy or TrainablePolicy.local()
    if ":" not in target:
        if target not in BUILTIN_TRAINABLES:
            yield Issue(
                f"unknown trainable {target!r}",
                did_you_mean(target, BUILTIN_TRAINABLES, "built-ins") + ", or your own as package.module:function",
                at=_AT,
                value=target,
            )
        return
    module_name = target.split(":", 1)[0]
    if not policy.admits(module_name):
        yield _not_admitted(target, module_name, policy)
        return
    if not re.fullmatch(TARGET_PATTERN, target):
        yield Issue(
            f"{target!r} is not package.module:function",
            "write e.g. trainable: mypackage.train:train (a module importable from here, and its function)",
            at=_AT,
            value=target,
        )
        return
    if policy.imports:
        yield from _import_issues(target, base_dir)


def _not_admitted(target: str, module_name: str, policy: TrainablePolicy) -> Issue:
    admitted = ", ".join(policy.modules or ()) or "none"
    return Issue(
        f"module {module_name!r} is not admitted by the trainable policy of this service: it runs the built-in "
        f"trainables ({', '.join(BUILTIN_TRAINABLES)}) and modules under {policy.ENV} (admitted: {admitted})",
        f"use a built-in trainable, or ask the cluster admin to add the module to {policy.ENV} and install it"
        " in the image",
        at=_AT,
        value=target,
    )


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
