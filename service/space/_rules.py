"""Rules that relate sections of a space to each other, to the trainable catalog, and to the data.

`check_space` runs them in a fixed order (structure, then objectives and search, then the trainable, then
the data files last because they touch the disk) and raises the first broken one as an `Issue` whose `at`
is the key path from the top of the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterator, Optional

from trainables import BUILTIN_TRAINABLES, RESERVED_CONFIG_KEYS, ParamRule, TrainableSpec

from ._conditions import find_cycle, value_key
from ._errors import Issue, did_you_mean, num, show
from ._grid import GRID_LIMIT, grid_values
from ._samplers import MULTI_OBJECTIVE_SAMPLERS, SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS

if TYPE_CHECKING:
    from ._model import ParamSpec, SearchSpace

_TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def check_space(space: "SearchSpace", *, base_dir: Optional[str] = None, check_data: bool = True) -> None:
    _check_objectives(space)
    _check_params_and_fixed(space)
    _check_conditions(space)
    _check_scheduler(space)
    _check_sampler(space)
    spec = _check_trainable(space, base_dir)
    if spec is not None:
        _check_against_catalog(space, spec)
    if check_data:
        _check_data(space)


# -- metric, mode, and what several objectives need ---------------------------------------------------------
def _check_objectives(space: "SearchSpace") -> None:
    metrics, modes = space.metrics, space.modes
    if isinstance(space.metric, list) and len(metrics) > 1:
        if "mode" not in space.model_fields_set:
            raise Issue(
                f"is missing; with {len(metrics)} metrics give one mode per metric",
                f"add mode: [{', '.join('max' for _ in metrics)}] (max or min each)",
                at=("mode",),
            )
    if isinstance(space.mode, list) != isinstance(space.metric, list) or len(modes) != len(metrics):
        if isinstance(space.metric, list) and isinstance(space.mode, str) and len(metrics) == 1:
            return  # metric: [val_acc] with mode: max is unambiguous
        raise Issue(
            f"{show(space.mode)} does not match metric {show(space.metric)} ({len(modes)} mode(s) for {len(metrics)} metric(s))",
            "give one mode per metric: a single word for one metric, a list of the same length for a list",
            at=("mode",),
            value=space.mode,
        )


def _check_sampler(space: "SearchSpace") -> None:
    kind = space.sampler.type
    if space.is_multi_objective and kind not in MULTI_OBJECTIVE_SAMPLERS:
        raise Issue(
            f"{kind!r} optimises a single metric, but {len(space.metrics)} metrics are given",
            f"use one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)} (nsga2 or tpe are the usual choices), or one metric",
            at=("sampler", "type"),
            value=kind,
        )
    if not space.is_multi_objective and kind not in SINGLE_OBJECTIVE_SAMPLERS:
        raise Issue(
            f"{kind!r} is for several metrics, but one metric is given",
            "use tpe (or cmaes, gp) for one metric, or list several metrics",
            at=("sampler", "type"),
            value=kind,
        )
    missing = [package for package in SAMPLERS[kind].needs if importlib.util.find_spec(package) is None]
    if missing:
        raise Issue(
            f"the {kind} sampler needs the Python package {missing[0]!r}, which is not installed",
            f"pip install {' '.join(missing)}, or choose another sampler",
            at=("sampler", "type"),
            value=kind,
        )
    if kind == "grid":
        total = 1
        for name, param in space.params.items():
            total *= len(grid_values(name, param, at=("params", name)))
        if total > GRID_LIMIT:
            raise Issue(
                f"the grid has {total} points, more than {GRID_LIMIT}",
                "use fewer choices or larger steps, or another sampler",
                at=("sampler", "type"),
                value=kind,
            )


def _check_scheduler(space: "SearchSpace") -> None:
    scheduler = space.scheduler
    if space.is_multi_objective and scheduler.type == "median":
        raise Issue(
            "the median scheduler compares one metric, but several metrics are given",
            "use asha (it stops on the first metric) or fifo",
            at=("scheduler", "type"),
            value=scheduler.type,
        )
    if scheduler.type in ("asha", "median") and scheduler.grace_period > space.budget.max_epochs:
        raise Issue(
            f"{scheduler.grace_period} is more than budget.max_epochs ({space.budget.max_epochs})",
            f"make grace_period <= {space.budget.max_epochs}, or raise max_epochs",
            at=("scheduler", "grace_period"),
            value=scheduler.grace_period,
        )


# -- params and fixed -------------------------------------------------------------------------------------
def _check_params_and_fixed(space: "SearchSpace") -> None:
    for section, names in (("params", space.params), ("fixed", space.fixed)):
        for name in names:
            if name in RESERVED_CONFIG_KEYS:
                raise Issue(
                    f"{name!r} is reserved: hpsearch sets it in every trial's config",
                    "set it under data: / budget.max_epochs instead" if name in ("data", "max_epochs") else "rename it",
                    at=(section, name),
                    value=name,
                )
    for name in space.fixed:
        if name in space.params:
            raise Issue(
                f"{name!r} is both searched (params) and fixed",
                "keep it in one of params: or fixed:",
                at=("fixed", name),
                value=name,
            )


def _check_conditions(space: "SearchSpace") -> None:
    params = space.params
    for name, param in params.items():
        for parent, values in param.when.items():
            at = ("params", name, "when", parent)
            if parent == name:
                raise Issue(f"{name!r} is conditional on itself", f"remove {parent} from its when:", at=at, value=parent)
            if parent not in params:
                if parent in space.fixed:
                    raise Issue(
                        f"{parent!r} is fixed, not searched, so the condition is always true or always false",
                        f"drop the condition, or search {parent} under params:",
                        at=at,
                        value=parent,
                    )
                raise Issue(f"unknown parameter {parent!r}", did_you_mean(parent, params, "searched parameters"), at=at, value=parent)
            for value in values:
                _check_condition_value(parent, params[parent], value, at)
    cycle = find_cycle({name: tuple(p.when) for name, p in params.items()})
    if cycle:
        raise Issue(
            f"conditions form a cycle: {' -> '.join(cycle)}",
            "a parameter cannot depend on itself through others; remove one of these conditions",
            at=("params", cycle[0], "when", cycle[1]),
            value=cycle[1],
        )


def _check_condition_value(parent: str, spec: "ParamSpec", value: Any, at: tuple) -> None:
    if spec.type == "categorical":
        if value_key(value) not in {value_key(c) for c in spec.choices or ()}:
            hint = f"use one of them{_guess(value, spec.choices or ())}"
            if isinstance(value, bool) and any(isinstance(c, str) for c in spec.choices or ()):
                hint += "; YAML reads on/off/yes/no unquoted as true/false, so quote such a value: 'on'"
            raise Issue(
                f"{show(value)} is not among the choices of {parent!r} ({show(list(spec.choices or ()))})",
                hint,
                at=at,
                value=value,
            )
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Issue(
            f"{show(value)} is not a number, but {parent!r} is a {spec.type} parameter",
            f"use a value in [{num(spec.low)}, {num(spec.high)}]",
            at=at,
            value=value,
        )
    if not spec.low <= value <= spec.high:
        raise Issue(
            f"{show(value)} is outside the range of {parent!r} [{num(spec.low)}, {num(spec.high)}]",
            "use a value the parent can take",
            at=at,
            value=value,
        )
    if spec.type == "float" and spec.step is None:
        raise Issue(
            f"a continuous float {parent!r} practically never equals {show(value)} exactly",
            f"give {parent} a step, or make it categorical",
            at=at,
            value=value,
        )
    step = spec.step if spec.step is not None else 1
    if (Decimal(str(value)) - Decimal(str(spec.low))) % Decimal(str(step)) != 0:
        raise Issue(
            f"{show(value)} is not a value {parent!r} can take (low {num(spec.low)} + a multiple of {num(step)})",
            "use a value on the parent's grid",
            at=at,
            value=value,
        )


def _guess(value: Any, choices) -> str:
    names = [c for c in choices if isinstance(c, str)]
    hint = did_you_mean(value, names) if names else ""
    return f"; {hint.split(' (')[0]}" if hint.startswith("did you mean") else ""


# -- trainable and catalog --------------------------------------------------------------------------------
def _check_trainable(space: "SearchSpace", base_dir: Optional[str]) -> Optional[TrainableSpec]:
    target = space.trainable
    at = ("trainable",)
    if ":" not in target:
        spec = BUILTIN_TRAINABLES.get(target)
        if spec is None:
            raise Issue(
                f"unknown trainable {target!r}",
                did_you_mean(target, BUILTIN_TRAINABLES, "built-ins") + ", or your own as package.module:function",
                at=at,
                value=target,
            )
        return spec
    if not _TARGET.match(target):
        raise Issue(
            f"{target!r} is not package.module:function",
            "write e.g. trainable: mypackage.train:train (a module importable from here, and its function)",
            at=at,
            value=target,
        )
    module_name, func_name = target.split(":")
    with _importable_from(base_dir):
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise Issue(
                f"module {module_name!r} is not importable",
                "put it next to the space file or in the current folder, or add its folder to PYTHONPATH",
                at=at,
                value=target,
            )
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:  # a user's module may fail in any way while importing
            raise Issue(
                f"importing {module_name!r} failed: {type(exc).__name__}: {exc}",
                f"fix the module so that `python -c 'import {module_name}'` works",
                at=at,
                value=target,
            ) from None
    function = getattr(module, func_name, None)
    if function is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
        raise Issue(
            f"module {module_name!r} has no attribute {func_name!r}",
            did_you_mean(func_name, names, "its functions"),
            at=at,
            value=target,
        )
    if not callable(function):
        raise Issue(f"{target!r} is a {type(function).__name__}, not a function", "name a train(config) function", at=at, value=target)
    return None


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


def _check_against_catalog(space: "SearchSpace", spec: TrainableSpec) -> None:
    for name, param in space.params.items():
        rule = spec.params.get(name)
        if rule is None:
            raise Issue(
                f"{name!r} is not a parameter of trainable {spec.name!r}",
                did_you_mean(name, spec.params, f"{spec.name} takes"),
                at=("params", name),
                value=name,
            )
        _check_param_rule(name, param, rule)
    for name, value in space.fixed.items():
        rule = spec.params.get(name)
        if rule is None:
            raise Issue(
                f"{name!r} is not a parameter of trainable {spec.name!r}",
                did_you_mean(name, spec.params, f"{spec.name} takes"),
                at=("fixed", name),
                value=name,
            )
        if rule.kind == "int" and isinstance(value, float) and value.is_integer():
            raise Issue(f"{show(value)} is a float, but {name} takes integers", f"write {int(value)}", at=("fixed", name), value=value)
        if not rule.accepts(value):
            raise Issue(
                f"{show(value)} is not allowed for {name} ({rule.help}: {rule.describe()})",
                _rule_fix(rule, value),
                at=("fixed", name),
                value=value,
            )
    for index, metric in enumerate(space.metrics):
        if metric not in spec.metrics:
            raise Issue(
                f"trainable {spec.name!r} does not report {metric!r}",
                did_you_mean(metric, spec.metrics, "it reports"),
                at=("metric", index) if isinstance(space.metric, list) else ("metric",),
                value=metric,
            )
    if spec.needs_images and space.data.dataset == "csv":
        raise Issue(
            f"trainable {spec.name!r} needs image data, but dataset is 'csv'",
            "use digits, mnist, fashion_mnist or cifar10, or trainable: mlp for tables",
            at=("data", "dataset"),
            value="csv",
        )


def _check_param_rule(name: str, param: "ParamSpec", rule: ParamRule) -> None:
    at = ("params", name)
    if param.type == "categorical":
        for index, choice in enumerate(param.choices or ()):
            if rule.kind == "int" and isinstance(choice, float):
                raise Issue(
                    f"choice {show(choice)} is a float, but {name} takes integers",
                    f"write {int(choice)}" if choice.is_integer() else f"use whole numbers ({rule.describe()})",
                    at=at + ("choices", index),
                    value=choice,
                )
            if not rule.accepts(choice):
                raise Issue(
                    f"choice {show(choice)} is not allowed for {name} ({rule.help}: {rule.describe()})",
                    _rule_fix(rule, choice),
                    at=at + ("choices", index),
                    value=choice,
                )
        return
    if rule.kind in ("bool", "choice"):
        example = "[true, false]" if rule.kind == "bool" else "[" + ", ".join(rule.choices[:3]) + "]"
        raise Issue(
            f"{name} is {rule.describe()}, but is searched as {param.type}",
            f"use type: categorical with choices: {example}",
            at=at + ("type",),
            value=param.type,
        )
    if rule.kind == "int" and param.type == "float":
        raise Issue(
            f"{name} takes integers ({rule.describe()}), but is searched as float",
            "use type: int (or categorical with whole-number choices)",
            at=at + ("type",),
            value="float",
        )
    for key in ("low", "high"):
        value = getattr(param, key)
        if not rule.accepts(value):
            raise Issue(
                f"{show(value)} is outside what {name} accepts ({rule.help}: {rule.describe()})",
                _bound_fix(key, value, rule),
                at=at + (key,),
                value=value,
            )


def _bound_fix(key: str, value: float, rule: ParamRule) -> str:
    if rule.low is not None and (value < rule.low or (value == rule.low and rule.low_open)):
        return f"make {key} {'>' if rule.low_open else '>='} {num(rule.low)}"
    if rule.high is not None and (value > rule.high or (value == rule.high and rule.high_open)):
        return f"make {key} {'<' if rule.high_open else '<='} {num(rule.high)}"
    return f"use {rule.describe()}"


def _rule_fix(rule: ParamRule, value: Any) -> str:
    if rule.kind == "choice":
        return did_you_mean(value, rule.choices, "allowed")
    if rule.kind == "bool":
        return "use true or false"
    return f"use {rule.describe()}"


# -- data -------------------------------------------------------------------------------------------------
def _check_data(space: "SearchSpace") -> None:
    """Ask the trainables' data code whether the files are there and readable (DataError otherwise)."""
    try:
        from trainables.datasets import check_data
    except ModuleNotFoundError as exc:
        if exc.name in ("trainables", "trainables.datasets"):
            return  # not installed in this checkout: nothing to check against
        raise
    builtin = space.trainable if space.trainable_spec is not None else None
    try:
        check_data(space.data.model_dump(), trainable=builtin)
    except ValueError as exc:  # trainables.DataError is a ValueError
        raise Issue(
            str(exc).rstrip("."),
            "fix the data: settings or the files they point at",
            at=("data",),
            value={k: v for k, v in space.data.model_dump().items() if v is not None},
        ) from None
