"""Warm start: seed a new study with the finished trials of an earlier study whose space is compatible.

    plan = plan_warm_start(old_study, space, source_label="digits-mlp-1")   # WarmStartError if objectives differ
    for line in plan.messages:
        print(line)
    new_study.add_trials(plan.trials)

Every trial is rebuilt as the new space would have suggested it, so TPE sees the same distributions for the
seeded trials as for its own (a parameter whose distribution differs between trials falls out of the
multivariate search space):
- only COMPLETE and PRUNED trials are used (TPE models pruned ones through their intermediate values);
- parameters the new space does not search are dropped; so is a conditional parameter whose `when:` does
  not hold on the trial's kept values;
- a parameter the new space would have suggested for this trial (unconditional, or its `when:` holds) must be
  present and lie in the new distribution, or the trial is skipped: TPE needs complete trials.
Nothing is dropped silently: `messages` says what was left out and why, counted over trials.

Optuna is imported inside the functions, like service/space, so importing this module stays fast.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from service.space import conditions_hold, dependency_order, value_key

if TYPE_CHECKING:
    import optuna

    from service.space import ParamSpec, SearchSpace

SOURCE_ATTR = "warm_start.source"  # user attribute: the study a seeded trial came from
NUMBER_ATTR = "warm_start.number"  # user attribute: the trial's number in that study

# A float this close to a bound, relative to the range, is on the bound: grid arithmetic such as
# 0.0 + 3 * 0.1 = 0.30000000000000004 must not cost a trial whose new `high` is 0.3.
_BOUND_TOLERANCE = 1e-9
# Optuna's own tolerance for "on the step grid" of a float (FloatDistribution._contains); stricter here
# would drop values Optuna accepts, looser would make create_trial raise.
_GRID_TOLERANCE = 1e-8
_STATE_WORDS = {"FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}  # the states never seeded


class WarmStartError(ValueError):
    """The source study cannot seed the new one: its objectives differ."""


@dataclass
class WarmStartPlan:
    """The seeded trials and, for the terminal, what was left out."""

    trials: list["optuna.trial.FrozenTrial"] = field(default_factory=list)  # for study.add_trials(...)
    messages: list[str] = field(default_factory=list)  # one line each: what was kept, dropped, and why


def distributions_for(space: "SearchSpace") -> dict[str, "optuna.distributions.BaseDistribution"]:
    """The distribution of every parameter of `space`, exactly as `define_by_run` suggests it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    # Mirrors service.space._compile.suggest_params; tests/test_warmstart.py compares the two.
    out: dict[str, Any] = {}
    for name, param in space.params.items():
        if param.type == "categorical":
            out[name] = CategoricalDistribution(list(param.choices or ()))
        elif param.type == "int":
            out[name] = IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
        else:
            out[name] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    return out


def plan_warm_start(source: "optuna.Study", space: "SearchSpace", *, source_label: str) -> WarmStartPlan:
    """The finished trials of `source`, rebuilt for `space`, and messages saying what was left out.

    Raises WarmStartError when the objectives differ (number of directions, a direction, or, when the source
    recorded metric names, a metric). A source with nothing usable gives an empty plan, not an error.
    """
    from optuna.trial import TrialState

    _check_objectives(source, space, source_label)
    used_states = (TrialState.COMPLETE, TrialState.PRUNED)
    all_trials = source.get_trials(deepcopy=False)
    finished = [t for t in all_trials if t.state in used_states]
    plan = WarmStartPlan()
    ignored = Counter(_STATE_WORDS[t.state.name] for t in all_trials if t.state not in used_states)

    distributions = distributions_for(space)
    order = dependency_order({name: tuple(p.when) for name, p in space.params.items()})
    skip_reasons: Counter[str] = Counter()  # reason -> skipped trials with it
    drop_reasons: Counter[str] = Counter()  # reason -> kept trials that lost a parameter for it
    not_in_space: Counter[str] = Counter()  # old parameter -> kept trials that had it
    kept_states: Counter[str] = Counter()
    for old in finished:
        params, dropped, problems = _fit_params(old.params, space, distributions, order)
        if problems:
            skip_reasons.update(problems)
            continue
        drop_reasons.update(dropped)
        not_in_space.update(name for name in old.params if name not in space.params)
        kept_states[old.state.name.lower()] += 1
        plan.trials.append(_rebuild(old, params, distributions, source_label, len(source.directions)))

    plan.messages.append(_summary(source_label, len(plan.trials), len(finished), kept_states))
    if not_in_space:
        plan.messages.append(_not_in_space_message(not_in_space))
    plan.messages += [f"dropped {reason} from {_trials(n)}" for reason, n in drop_reasons.most_common()]
    plan.messages += [f"skipped {_trials(n)}: {reason}" for reason, n in skip_reasons.most_common()]
    if ignored:
        counts = ", ".join(f"{ignored[word]} {word}" for word in _STATE_WORDS.values() if ignored[word])
        plan.messages.append(f"ignored {counts} trial(s): only complete and pruned trials seed a study")
    return plan


# -- objectives ---------------------------------------------------------------------------------------------
def _check_objectives(source: "optuna.Study", space: "SearchSpace", label: str) -> None:
    old_directions = [d.name.lower() for d in source.directions]
    new_directions = ["maximize" if mode == "max" else "minimize" for mode in space.modes]
    old_names = source.metric_names  # None unless the study recorded them (set_metric_names)
    if old_directions == new_directions and (old_names is None or list(old_names) == space.metrics):
        return
    old = ", ".join(old_directions if old_names is None else (f"{d} {m}" for d, m in zip(old_directions, old_names)))
    new = ", ".join(f"{d} {m}" for d, m in zip(new_directions, space.metrics))
    raise WarmStartError(
        f"cannot warm-start from study {label!r}: it optimises {old}, but the new space optimises {new}; "
        "warm-start from a study with the same objectives, or drop --warm-start"
    )


# -- one trial ----------------------------------------------------------------------------------------------
def _fit_params(
    old: dict[str, Any], space: "SearchSpace", distributions: dict, order: list[str]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The trial's parameters as the new space would have suggested them.

    Walks the new space parents first, as define_by_run does. Returns (params, dropped, problems):
    `dropped` are reasons a value was left out of the trial, `problems` reasons the trial cannot be used.
    """
    params: dict[str, Any] = {}
    dropped: list[str] = []
    problems: list[str] = []
    for name in order:
        spec = space.params[name]
        if spec.when and not conditions_hold(spec.when, params):
            if name in old:
                dropped.append(f"{name!r} (its condition {_describe_when(spec.when)} does not hold)")
            continue
        if name not in old:
            problems.append(f"{name!r} is required but missing")
            continue
        value, why_not = _fit_value(old[name], spec, distributions[name])
        if why_not:
            problems.append(f"{name!r} {why_not}")
        else:
            params[name] = value
    return params, dropped, problems


def _fit_value(value: Any, spec: "ParamSpec", distribution: Any) -> tuple[Any, Optional[str]]:
    """(the value as the new distribution holds it, None), or (None, why it does not fit)."""
    if spec.type == "categorical":
        for choice in distribution.choices:  # YAML equality: 1 == 1.0, but true != 1
            if value_key(choice) == value_key(value):
                return choice, None
        return None, f"is not among the new choices ({', '.join(map(repr, distribution.choices))})"

    low, high, step = distribution.low, distribution.high, distribution.step
    if spec.type == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            return None, f"is not an int ({type(value).__name__}), but the new space samples ints"
        if not low <= value <= high:
            return None, f"is outside the new range [{low}, {high}]"
        if (value - low) % step:
            return None, f"is not on the new grid ({low} + a multiple of {step})"
        return value, None

    if not isinstance(value, float):
        return None, f"is not a float ({type(value).__name__}), but the new space samples floats"
    slack = _BOUND_TOLERANCE * (high - low)
    if not low - slack <= value <= high + slack:  # NaN too
        return None, f"is outside the new range [{low!r}, {high!r}]"
    value = min(max(value, low), high)
    if step is not None:
        k = (value - low) / step
        if abs(k - round(k)) >= _GRID_TOLERANCE:
            return None, f"is not on the new grid ({low!r} + a multiple of {step!r})"
    return value, None


def _rebuild(old: "optuna.trial.FrozenTrial", params: dict, distributions: dict, label: str, n_objectives: int):
    """A trial for the new study: kept params with the new distributions, values, curve, user attributes."""
    import optuna
    from optuna.trial import TrialState

    values = old.values
    # Optuna gives a pruned trial its last intermediate value (study.tell); one told otherwise gets it here.
    if old.state == TrialState.PRUNED and values is None and old.intermediate_values and n_objectives == 1:
        last = old.intermediate_values[old.last_step]
        values = [last] if math.isfinite(last) else None
    return optuna.trial.create_trial(
        state=old.state,
        values=values,
        params=params,
        distributions={name: distributions[name] for name in params},
        # The old trial's link to its Tune trial belongs to the old experiment: not carried.
        user_attrs={**{k: v for k, v in old.user_attrs.items() if k != "tune_trial_id"}, SOURCE_ATTR: label, NUMBER_ATTR: old.number},
        intermediate_values=dict(old.intermediate_values),
    )


# -- messages -----------------------------------------------------------------------------------------------
def _summary(label: str, kept: int, finished: int, states: Counter) -> str:
    if not finished:
        return f"study {label!r} has no complete or pruned trials; the new study starts without warm start"
    if not kept:
        return f"kept 0 of {finished} finished trials of study {label!r}; the new study starts without warm start"
    detail = ", ".join(f"{states[s]} {s}" for s in ("complete", "pruned") if states[s])
    return f"kept {kept} of {finished} finished trials of study {label!r} ({detail})"


def _not_in_space_message(counts: Counter) -> str:
    """One line for all old parameters the new space does not search."""
    names = sorted(counts)
    if len(set(counts.values())) == 1:
        listed = ", ".join(repr(n) for n in names)
        return f"dropped {listed} (not in the new space) from {_trials(counts[names[0]])}"
    listed = ", ".join(f"{n!r} from {_trials(counts[n])}" for n in names)
    return f"dropped parameters not in the new space: {listed}"


def _describe_when(when: dict) -> str:
    parts = (f"{p}: {v[0]!r}" if len(v) == 1 else f"{p}: {list(v)!r}" for p, v in when.items())
    return "{" + ", ".join(parts) + "}"


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"
