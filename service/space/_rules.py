"""Rules that relate the sections of a built space to each other: objectives, names, conditions, scheduler,
sampler.

Each rule is a generator of `Issue`s whose `at` is the key path from the top of the file, so that one pass
reports every broken rule. They read only the space: no imports of user code, no files (those checks are in
`_trainable.py` and `_data.py`); `_check.py` runs them in order.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from trainables import RESERVED_CONFIG_KEYS

from ._conditions import find_cycle, value_key
from ._errors import Issue, did_you_mean, num, show
from ._grid import GRID_LIMIT, grid_values
from ._model import SearchSpace
from ._param import ParamSpec
from ._rungs import judged_epochs, max_brackets
from ._samplers import MULTI_OBJECTIVE_SAMPLERS, SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS


# -- metric, mode, and what several objectives need ---------------------------------------------------------
def objectives(space: SearchSpace) -> Iterator[Issue]:
    metrics, modes = space.metrics, space.modes
    if isinstance(space.metric, list) and len(metrics) > 1 and "mode" not in space.model_fields_set:
        yield Issue(
            f"is missing; with {len(metrics)} metrics give one mode per metric",
            f"add mode: [{', '.join('max' for _ in metrics)}] (max or min each)",
            at=("mode",),
        )
        return
    if isinstance(space.mode, list) != isinstance(space.metric, list) or len(modes) != len(metrics):
        if isinstance(space.metric, list) and isinstance(space.mode, str) and len(metrics) == 1:
            return  # metric: [val_acc] with mode: max is unambiguous
        yield Issue(
            f"{show(space.mode)} does not match metric {show(space.metric)} ({len(modes)} mode(s) for {len(metrics)} metric(s))",
            "give one mode per metric: a single word for one metric, a list of the same length for a list",
            at=("mode",),
            value=space.mode,
        )


def sampler(space: SearchSpace, *, whole: bool = True) -> Iterator[Issue]:
    """The sampler against the objectives and the installed packages; the grid's size only when `whole`
    (every parameter of the file is in `space`)."""
    kind = space.sampler.type
    at = ("sampler", "type")
    if space.is_multi_objective and kind not in MULTI_OBJECTIVE_SAMPLERS:
        yield Issue(
            f"{kind!r} optimises a single metric, but {len(space.metrics)} metrics are given",
            f"use one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)} (nsga2 or tpe are the usual choices), or one metric",
            at=at,
            value=kind,
        )
    if not space.is_multi_objective and kind not in SINGLE_OBJECTIVE_SAMPLERS:
        yield Issue(
            f"{kind!r} is for several metrics, but one metric is given",
            "use tpe (or cmaes, gp) for one metric, or list several metrics",
            at=at,
            value=kind,
        )
    missing = [package for package in SAMPLERS[kind].needs if importlib.util.find_spec(package) is None]
    if missing:
        yield Issue(
            f"the {kind} sampler needs the Python package {missing[0]!r}, which is not installed",
            f"pip install {' '.join(missing)}, or choose another sampler",
            at=at,
            value=kind,
        )
    if kind == "grid":
        yield from _grid(space, whole)


def _grid(space: SearchSpace, whole: bool) -> Iterator[Issue]:
    total, complete = 1, True
    for name, param in space.params.items():
        try:
            total *= len(grid_values(name, param, at=("params", name)))
        except Issue as issue:
            complete = False
            yield issue
    if whole and complete and total > GRID_LIMIT:
        yield Issue(
            f"the grid has {total} points, more than {GRID_LIMIT}",
            "use fewer choices or larger steps, or another sampler",
            at=("sampler", "type"),
            value="grid",
        )


def scheduler(space: SearchSpace) -> Iterator[Issue]:
    spec = space.scheduler
    if space.is_multi_objective and spec.type == "median":
        yield Issue(
            "the median scheduler compares one metric, but several metrics are given",
            "use asha (it stops on the first metric) or fifo",
            at=("scheduler", "type"),
            value=spec.type,
        )
    if spec.type == "median" and space.sampler.deterministic:
        yield Issue(
            "the median scheduler judges trials in the order their results arrive, which sampler.deterministic "
            "cannot fix",
            "use asha or fifo, or drop deterministic",
            at=("scheduler", "type"),
            value=spec.type,
        )
    if spec.type in ("asha", "median") and isinstance(spec.grace_period, int) and spec.grace_period > space.budget.max_epochs:
        yield Issue(
            f"{spec.grace_period} is more than budget.max_epochs ({space.budget.max_epochs})",
            f"make grace_period <= {space.budget.max_epochs}, write it as a share of max_epochs (\"25%\"), or raise max_epochs",
            at=("scheduler", "grace_period"),
            value=spec.grace_period,
        )
        return
    if spec.type == "asha":
        grace, rf, max_epochs = space.grace_epochs, spec.reduction_factor, space.budget.max_epochs
        if spec.rung_check and spec.brackets > 1:
            yield Issue(
                f"brackets {spec.brackets} with rung_check: a rung check chooses each trial's bracket itself",
                "remove brackets (rung_check moves trials to later rungs when the early ones would have stopped the "
                "best), or set rung_check: false",
                at=("scheduler", "brackets"),
                value=spec.brackets,
            )
            return
        most = max_brackets(max_epochs, grace, rf)
        if spec.brackets > most:
            judged = judged_epochs(max_epochs, grace, rf)
            where = f"judges at epochs {', '.join(map(str, judged))}" if judged else "judges at no epoch"
            # A grace given as a share of max_epochs grows with it: raising max_epochs then adds no bracket.
            more = "lower grace_period or reduction_factor" + (", or raise max_epochs"
                                                               if isinstance(spec.grace_period, int) else "")
            yield Issue(
                f"{spec.brackets} brackets are more than this budget has: ASHA with max_epochs {max_epochs}, "
                f"grace_period {grace} and reduction_factor {num(rf)} {where}, so the last of {most} brackets "
                "already never stops a trial",
                f"use brackets <= {most}; for more, {more}",
                at=("scheduler", "brackets"),
                value=spec.brackets,
            )


# -- params and fixed -------------------------------------------------------------------------------------
def reserved_names(space: SearchSpace) -> Iterator[Issue]:
    """Keys hpsearch itself puts in every trial's config cannot be searched or fixed."""
    for section, names in (("params", space.params), ("fixed", space.fixed)):
        for name in names:
            if name in RESERVED_CONFIG_KEYS:
                yield Issue(
                    f"{name!r} is reserved: hpsearch sets it in every trial's config",
                    "set it under data: / budget.max_epochs instead" if name in ("data", "max_epochs") else "rename it",
                    at=(section, name),
                    value=name,
                )


def searches_something(space: SearchSpace) -> Iterator[Issue]:
    """A space searches at least one parameter, unless it trains its fixed configuration once (trials: 1)."""
    if not space.params and space.budget.trials != 1:
        yield Issue(
            "{} searches nothing",
            "add at least one parameter, e.g. lr: {type: float, low: 1.0e-4, high: 0.1, log: true}, or set "
            "budget.trials: 1 to train the fixed configuration once",
            at=("params",),
            value={},
        )


def searched_or_fixed(space: SearchSpace) -> Iterator[Issue]:
    for name in space.fixed:
        if name in space.params:
            yield Issue(
                f"{name!r} is both searched (params) and fixed",
                "keep it in one of params: or fixed:",
                at=("fixed", name),
                value=name,
            )


def conditions(space: SearchSpace, *, unknown: frozenset[str] = frozenset()) -> Iterator[Issue]:
    """`when:` against the parameters it names; parents in `unknown` (refused by the model) are skipped."""
    params = space.params
    for name, param in params.items():
        for parent, values in param.when.items():
            at = ("params", name, "when", parent)
            if parent in unknown:
                continue
            if parent == name:
                yield Issue(f"{name!r} is conditional on itself", f"remove {parent} from its when:", at=at, value=parent)
            elif parent not in params:
                if parent in space.fixed:
                    yield Issue(
                        f"{parent!r} is fixed, not searched, so the condition is always true or always false",
                        f"drop the condition, or search {parent} under params:",
                        at=at,
                        value=parent,
                    )
                else:
                    yield Issue(
                        f"unknown parameter {parent!r}", did_you_mean(parent, params, "searched parameters"), at=at, value=parent
                    )
            else:
                # one wrong value is enough to report for a parent: the others are usually wrong the same way
                yield from _first(_condition_value(parent, params[parent], value, at) for value in values)
    # a parameter conditional on itself is reported above, not again as a cycle
    cycle = find_cycle({name: tuple(p for p in param.when if p != name) for name, param in params.items()})
    if cycle:
        yield Issue(
            f"conditions form a cycle: {' -> '.join(cycle)}",
            "a parameter cannot depend on itself through others; remove one of these conditions",
            at=("params", cycle[0], "when", cycle[1]),
            value=cycle[1],
        )


def _first(candidates: Iterator[Any]) -> Iterator[Issue]:
    for issue in candidates:
        if issue is not None:
            yield issue
            return


def _condition_value(parent: str, spec: ParamSpec, value: Any, at: tuple) -> "Issue | None":
    if spec.type == "categorical":
        if value_key(value) not in {value_key(c) for c in spec.choices or ()}:
            hint = f"use one of them{_guess(value, spec.choices or ())}"
            if isinstance(value, bool) and any(isinstance(c, str) for c in spec.choices or ()):
                hint += "; YAML reads on/off/yes/no unquoted as true/false, so quote such a value: 'on'"
            return Issue(
                f"{show(value)} is not among the choices of {parent!r} ({show(list(spec.choices or ()))})",
                hint,
                at=at,
                value=value,
            )
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Issue(
            f"{show(value)} is not a number, but {parent!r} is a {spec.type} parameter",
            f"use a value in [{num(spec.low)}, {num(spec.high)}]",
            at=at,
            value=value,
        )
    if not spec.low <= value <= spec.high:
        return Issue(
            f"{show(value)} is outside the range of {parent!r} [{num(spec.low)}, {num(spec.high)}]",
            "use a value the parent can take",
            at=at,
            value=value,
        )
    if spec.type == "float" and spec.step is None:
        return Issue(
            f"a continuous float {parent!r} practically never equals {show(value)} exactly",
            f"give {parent} a step, or make it categorical",
            at=at,
            value=value,
        )
    step = spec.step if spec.step is not None else 1
    if (Decimal(str(value)) - Decimal(str(spec.low))) % Decimal(str(step)) != 0:
        return Issue(
            f"{show(value)} is not a value {parent!r} can take (low {num(spec.low)} + a multiple of {num(step)})",
            "use a value on the parent's grid",
            at=at,
            value=value,
        )
    return None


def _guess(value: Any, choices) -> str:
    names = [c for c in choices if isinstance(c, str)]
    hint = did_you_mean(value, names) if names else ""
    return f"; {hint.split(' (')[0]}" if hint.startswith("did you mean") else ""
