"""Rules between a space and the catalog of a built-in trainable: the parameters it takes, the values each
accepts, the metrics it reports, the data it can read.

A user's own trainable has no catalog entry, so none of this applies to it. Each rule yields `Issue`s whose
`at` is the key path from the top of the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from trainables import IMAGE_DATASETS, ParamRule, TrainableSpec

from ._errors import Issue, did_you_mean, num, show
from ._model import SearchSpace
from ._param import ParamSpec


def catalog_issues(
    space: SearchSpace, spec: TrainableSpec, *, parts: Iterable[str] = ("params", "fixed", "metric", "data")
) -> Iterator[Issue]:
    """Everything in the `parts` of `space` that the built-in trainable `spec` would refuse or never report."""
    checks = {"params": _params, "fixed": _fixed, "metric": _metrics, "data": _data}
    for part in parts:
        yield from checks[part](space, spec)


def _params(space: SearchSpace, spec: TrainableSpec) -> Iterator[Issue]:
    for name, param in space.params.items():
        rule = spec.params.get(name)
        if rule is None:
            yield _not_a_param(spec, name, ("params", name))
        else:
            yield from _param_rule(name, param, rule)


def _fixed(space: SearchSpace, spec: TrainableSpec) -> Iterator[Issue]:
    for name, value in space.fixed.items():
        at = ("fixed", name)
        rule = spec.params.get(name)
        if rule is None:
            yield _not_a_param(spec, name, at)
        elif rule.kind == "int" and isinstance(value, float) and value.is_integer():
            yield Issue(f"{show(value)} is a float, but {name} takes integers", f"write {int(value)}", at=at, value=value)
        elif not rule.accepts(value):
            yield Issue(
                f"{show(value)} is not allowed for {name} ({rule.help}: {rule.describe()})",
                _rule_fix(rule, value),
                at=at,
                value=value,
            )


def _not_a_param(spec: TrainableSpec, name: str, at: tuple) -> Issue:
    return Issue(
        f"{name!r} is not a parameter of trainable {spec.name!r}",
        did_you_mean(name, spec.params, f"{spec.name} takes"),
        at=at,
        value=name,
    )


def _metrics(space: SearchSpace, spec: TrainableSpec) -> Iterator[Issue]:
    for index, metric in enumerate(space.metrics):
        if metric not in spec.metrics:
            yield Issue(
                f"trainable {spec.name!r} does not report {metric!r}",
                did_you_mean(metric, spec.metrics, "it reports"),
                at=("metric", index) if isinstance(space.metric, list) else ("metric",),
                value=metric,
            )


def _data(space: SearchSpace, spec: TrainableSpec) -> Iterator[Issue]:
    dataset = space.data.dataset
    if spec.needs_images and dataset not in IMAGE_DATASETS:
        yield Issue(
            f"trainable {spec.name!r} needs image data, but dataset is {dataset!r}",
            f"use {', '.join(IMAGE_DATASETS[:-1])} or {IMAGE_DATASETS[-1]}, or trainable: mlp for tables",
            at=("data", "dataset"),
            value=dataset,
        )


def _param_rule(name: str, param: ParamSpec, rule: ParamRule) -> Iterator[Issue]:
    at = ("params", name)
    if param.type == "categorical":
        for index, choice in enumerate(param.choices or ()):
            if rule.kind == "int" and isinstance(choice, float):
                yield Issue(
                    f"choice {show(choice)} is a float, but {name} takes integers",
                    f"write {int(choice)}" if choice.is_integer() else f"use whole numbers ({rule.describe()})",
                    at=at + ("choices", index),
                    value=choice,
                )
            elif not rule.accepts(choice):
                yield Issue(
                    f"choice {show(choice)} is not allowed for {name} ({rule.help}: {rule.describe()})",
                    _rule_fix(rule, choice),
                    at=at + ("choices", index),
                    value=choice,
                )
        return
    if rule.kind in ("bool", "choice"):
        example = "[true, false]" if rule.kind == "bool" else "[" + ", ".join(rule.choices[:3]) + "]"
        yield Issue(
            f"{name} is {rule.describe()}, but is searched as {param.type}",
            f"use type: categorical with choices: {example}",
            at=at + ("type",),
            value=param.type,
        )
        return
    if rule.kind == "int" and param.type == "float":
        yield Issue(
            f"{name} takes integers ({rule.describe()}), but is searched as float",
            "use type: int (or categorical with whole-number choices)",
            at=at + ("type",),
            value="float",
        )
        return
    for key in ("low", "high"):
        value = getattr(param, key)
        if not rule.accepts(value):
            yield Issue(
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
