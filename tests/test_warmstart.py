"""Warm start: which trials of an old study seed a new one, rebuilt for the new space, and what is said."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

import optuna

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from service._warmstart import (  # noqa: E402
    NUMBER_ATTR,
    SOURCE_ATTR,
    WarmStartError,
    distributions_for,
    plan_warm_start,
)
from service.space import build_sampler, define_by_run, parse_space  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

OLD_PARAMS = """\
lr:        {type: float, low: 1.0e-4, high: 0.1, log: true}
units:     {type: int, low: 16, high: 128, step: 16}
optimizer: {type: categorical, choices: [sgd, adam]}
momentum:  {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}
dropout:   {type: float, low: 0.0, high: 0.5, step: 0.1}
"""


def _space(params: str = OLD_PARAMS, *, metric: str = "val_acc", mode: str = "max"):
    body = textwrap.indent(textwrap.dedent(params).strip(), "  ")
    header = f"name: new\ntrainable: mlp\ndata: {{dataset: digits}}\nmetric: {metric}\nmode: {mode}\n"
    return parse_space(f"{header}params:\n{body}\n")


def _replace(params: str, **lines: Optional[str]) -> str:
    """`params` with the line of each named parameter replaced (None removes it)."""
    out = []
    for line in params.splitlines():
        name = line.split(":", 1)[0].strip()
        if name in lines:
            if lines[name] is not None:
                out.append(f"{name}: {lines[name]}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class Row:
    """One trial of a source study: values to enqueue (the rest is sampled), how it ended, its curve."""

    params: dict[str, Any] = field(default_factory=dict)
    state: TrialState = TrialState.COMPLETE
    value: Any = 0.5
    curve: tuple[float, ...] = ()


def _source(space, rows: list[Row], directions=("maximize",)) -> "optuna.Study":
    """A source study of `space` run by ask/tell, as the runner's searcher does."""
    study = optuna.create_study(directions=list(directions), sampler=optuna.samplers.RandomSampler(seed=0))
    suggest = define_by_run(space)
    for index, row in enumerate(rows):
        if row.params:
            study.enqueue_trial(row.params)
        trial = study.ask()
        suggest(trial)
        trial.set_user_attr("tune_trial_id", f"tune-{index}")
        trial.set_user_attr("note", f"n{index}")
        for step, value in enumerate(row.curve, start=1):
            trial.report(value, step)
        if row.state == TrialState.COMPLETE:
            study.tell(trial, row.value)
        elif row.state in (TrialState.PRUNED, TrialState.FAIL):
            study.tell(trial, state=row.state)
        # RUNNING: left as it is
    return study


def _one_trial_source(name: str, value: Any, distribution) -> "optuna.Study":
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={name: value}, distributions={name: distribution}, value=0.9))
    return study


# -- distributions ------------------------------------------------------------------------------------------
def test_distributions_for_equal_what_define_by_run_suggests():
    space = _space(
        """
        lr:            {type: float, low: 1.0e-4, high: 0.1, log: true}
        dropout:       {type: float, low: 0.0, high: 0.5, step: 0.1}
        weight_decay:  {type: float, low: 0.0, high: 0.01}
        units:         {type: int, low: 16, high: 256, log: true}
        batch_size:    {type: int, low: 16, high: 128, step: 16}
        hidden_layers: {type: int, low: 1, high: 4}
        optimizer:     {type: categorical, choices: [sgd, adam]}
        momentum:      {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}
        nesterov:      {type: categorical, choices: [true, false], when: {optimizer: sgd}}
        """
    )
    study = optuna.create_study(direction="maximize")
    suggested = {}
    for optimizer in ("sgd", "adam"):
        study.enqueue_trial({"optimizer": optimizer})
        trial = study.ask()
        define_by_run(space)(trial)
        suggested.update(study.tell(trial, 0.5).distributions)
    assert suggested == distributions_for(space)


# -- an identical space ---------------------------------------------------------------------------------------
def test_plan_identical_space_keeps_complete_and_pruned_trials():
    space = _space()
    rows = [Row(value=0.5 + i / 100, curve=(0.3, 0.4, 0.5 + i / 100)) for i in range(10)]
    rows += [Row(state=TrialState.PRUNED, curve=(0.2, 0.25)), Row(state=TrialState.PRUNED, curve=(0.1,))]
    rows += [Row(state=TrialState.PRUNED)]  # stopped before its first report: no value
    source = _source(space, rows)

    plan = plan_warm_start(source, space, source_label="old-study")

    assert len(plan.trials) == 13
    assert {t.params["optimizer"] for t in plan.trials} == {"sgd", "adam"}  # with and without momentum
    assert plan.messages == ["kept 13 of 13 finished trials of study 'old-study' (10 complete, 3 pruned)"]
    for old, new in zip(source.trials, plan.trials):
        assert new.state == old.state
        assert new.params == old.params
        assert new.distributions == old.distributions
        assert new.values == old.values
        assert new.intermediate_values == old.intermediate_values
        # user attrs are carried, but not the link to the old experiment's Tune trial
        assert "tune_trial_id" in old.user_attrs
        assert new.user_attrs == {"note": old.user_attrs["note"], SOURCE_ATTR: "old-study", NUMBER_ATTR: old.number}
    assert plan.trials[10].value == 0.25  # a pruned trial's value is its last intermediate value
    assert plan.trials[12].values is None


def test_plan_trials_seed_a_tpe_study_that_then_asks():
    space = _space()
    rows = [Row(value=i / 20, curve=(i / 40, i / 20)) for i in range(12)] + [Row(state=TrialState.PRUNED, curve=(0.1,))]
    source = _source(space, rows)
    plan = plan_warm_start(source, space, source_label="old")

    new_study = optuna.create_study(sampler=build_sampler(space), direction="maximize")
    new_study.add_trials(plan.trials)
    trial = new_study.ask()
    define_by_run(space)(trial)
    new_study.tell(trial, 0.7)

    assert isinstance(new_study.sampler, optuna.samplers.TPESampler)
    assert len(new_study.trials) == 14 and new_study.trials[-1].state == TrialState.COMPLETE
    # Seeded and new trials share their distributions, so every unconditional parameter stays in the
    # space multivariate TPE models jointly.
    joint = optuna.search_space.intersection_search_space(new_study.trials, include_pruned=True)
    assert set(joint) == {"lr", "units", "optimizer", "dropout"}


def test_plan_pruned_trial_without_value_takes_its_last_intermediate_value():
    space = _space("dropout: {type: float, low: 0.0, high: 0.5}")
    source = optuna.create_study(direction="maximize")
    source.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            params={"dropout": 0.1},
            distributions={"dropout": FloatDistribution(0.0, 0.5)},
            intermediate_values={1: 0.3, 2: 0.4},
        )
    )
    (trial,) = plan_warm_start(source, space, source_label="old").trials
    assert trial.state == TrialState.PRUNED and trial.value == 0.4 and trial.intermediate_values == {1: 0.3, 2: 0.4}


# -- what is skipped or dropped -------------------------------------------------------------------------------
def test_plan_skips_failed_running_and_waiting_trials():
    space = _space()
    source = _source(space, [Row(), Row(state=TrialState.FAIL), Row(state=TrialState.RUNNING), Row()])
    source.enqueue_trial({"optimizer": "adam"})  # WAITING

    plan = plan_warm_start(source, space, source_label="old")

    assert [t.user_attrs[NUMBER_ATTR] for t in plan.trials] == [0, 3]
    assert plan.messages == [
        "kept 2 of 2 finished trials of study 'old' (2 complete)",
        "ignored 1 failed, 1 running, 1 waiting trial(s): only complete and pruned trials seed a study",
    ]


def test_plan_narrower_range_skips_trials_outside_it():
    old_space = _space()
    rows = [Row(params={"lr": lr}) for lr in (5e-4, 5e-3, 5e-2)]
    source = _source(old_space, rows)
    new_space = _space(_replace(OLD_PARAMS, lr="{type: float, low: 1.0e-3, high: 1.0e-2, log: true}"))

    plan = plan_warm_start(source, new_space, source_label="old")

    assert [t.params["lr"] for t in plan.trials] == [5e-3]
    assert plan.trials[0].distributions["lr"] == FloatDistribution(1e-3, 1e-2, log=True)
    assert plan.messages == [
        "kept 1 of 3 finished trials of study 'old' (1 complete)",
        "skipped 2 trials: 'lr' is outside the new range [0.001, 0.01]",
    ]


def test_plan_drops_old_parameters_in_one_message():
    old_space = _space()
    rows = [Row(params={"optimizer": "sgd"}), Row(params={"optimizer": "sgd"}), Row(params={"optimizer": "adam"})]
    source = _source(old_space, rows)
    new_space = _space(_replace(OLD_PARAMS, dropout=None, momentum=None))

    plan = plan_warm_start(source, new_space, source_label="old")

    assert len(plan.trials) == 3
    assert all(set(t.params) == {"lr", "units", "optimizer"} for t in plan.trials)
    assert plan.messages == [
        "kept 3 of 3 finished trials of study 'old' (3 complete)",
        "dropped parameters not in the new space: 'dropout' from 3 trials, 'momentum' from 2 trials",
    ]


def test_plan_drops_old_parameters_with_one_count_in_one_message():
    source = _source(_space(), [Row(), Row()])
    plan = plan_warm_start(source, _space(_replace(OLD_PARAMS, dropout=None, units=None)), source_label="old")
    assert plan.messages[1:] == ["dropped 'dropout', 'units' (not in the new space) from 2 trials"]


@pytest.mark.parametrize(
    "old_momentum, new_lines, kept, messages",
    [
        pytest.param(
            "{type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}",
            {},
            [{"optimizer", "momentum"}, {"optimizer"}],
            [],
            id="same-condition",
        ),
        pytest.param(
            "{type: float, low: 0.0, high: 0.9}",
            {"momentum": "{type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}"},
            [{"optimizer", "momentum"}, {"optimizer"}],
            ["dropped 'momentum' (its condition {optimizer: 'sgd'} does not hold) from 1 trial"],
            id="condition-fails-drops-the-param",
        ),
        pytest.param(
            "{type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}",
            {"momentum": "{type: float, low: 0.0, high: 0.9, when: {optimizer: [sgd, adam]}}"},
            [{"optimizer", "momentum"}],
            ["skipped 1 trial: 'momentum' is required but missing"],
            id="condition-holds-but-missing-skips-the-trial",
        ),
        pytest.param(
            "{type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}",
            {"momentum": "{type: float, low: 0.0, high: 0.9}"},
            [{"optimizer", "momentum"}],
            ["skipped 1 trial: 'momentum' is required but missing"],
            id="now-unconditional-skips-trials-without-it",
        ),
        pytest.param(
            "{type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}",
            {
                "optimizer": "{type: categorical, choices: [sgd, rmsprop]}",
                "momentum": "{type: float, low: 0.0, high: 0.9, when: {optimizer: [sgd, rmsprop]}}",
            },
            [{"optimizer", "momentum"}],
            ["skipped 1 trial: 'optimizer' is not among the new choices ('sgd', 'rmsprop')"],
            id="invalid-parent-says-only-the-parent",
        ),
    ],
)
def test_plan_conditional_param_kept_only_where_its_condition_holds(old_momentum, new_lines, kept, messages):
    params = "optimizer: {type: categorical, choices: [sgd, adam]}\nmomentum: " + old_momentum + "\n"
    source = _source(_space(params), [Row(params={"optimizer": "sgd", "momentum": 0.5}), Row(params={"optimizer": "adam"})])

    plan = plan_warm_start(source, _space(_replace(params, **new_lines)), source_label="old")

    assert [set(t.params) for t in plan.trials] == kept
    assert plan.trials[0].params["momentum"] == 0.5
    assert plan.messages[1:] == messages


def test_plan_required_param_missing_everywhere_gives_an_empty_plan():
    source = _source(_space(), [Row(), Row(state=TrialState.PRUNED, curve=(0.2,))])
    new_space = _space(OLD_PARAMS + "hidden_layers: {type: int, low: 1, high: 4}\n")

    plan = plan_warm_start(source, new_space, source_label="old")

    assert plan.trials == []
    assert plan.messages == [
        "kept 0 of 2 finished trials of study 'old'; the new study starts without warm start",
        "skipped 2 trials: 'hidden_layers' is required but missing",
    ]


# New distributions at whose edges the boundary cases sit, and the old ones the values were sampled from.
FLOAT_02_04 = "{type: float, low: 0.2, high: 0.4}"
FLOAT_STEP = "{type: float, low: 0.0, high: 0.4, step: 0.2}"
INT_STEP = "{type: int, low: 32, high: 96, step: 32}"
INT_LOG = "{type: int, low: 16, high: 256, log: true}"
OPTIMIZERS = "{type: categorical, choices: [sgd, adam]}"
BATCH_SIZES = "{type: categorical, choices: [16, 32, 64]}"
OLD_FLOAT, OLD_FLOAT_STEP = FloatDistribution(0.0, 0.6), FloatDistribution(0.0, 0.5, step=0.1)
OLD_INT_STEP, OLD_INT_LOG = IntDistribution(16, 128, step=16), IntDistribution(8, 512, log=True)
OLD_OPTIMIZERS = CategoricalDistribution(["sgd", "adam", "rmsprop"])
OUTSIDE, OFF_GRID = "is outside the new range", "is not on the new grid"


@pytest.mark.parametrize(
    "name, new_spec, value, old_distribution, expected",
    [
        # float range: both bounds are inside
        ("dropout", FLOAT_02_04, 0.2, OLD_FLOAT, 0.2),
        ("dropout", FLOAT_02_04, 0.4, OLD_FLOAT, 0.4),
        ("dropout", FLOAT_02_04, 0.1999, OLD_FLOAT, f"{OUTSIDE} [0.2, 0.4]"),
        ("dropout", FLOAT_02_04, 0.4001, OLD_FLOAT, f"{OUTSIDE} [0.2, 0.4]"),
        # 0.0 + 3 * 0.1 = 0.30000000000000004, as Optuna samples a step grid, is on the new bound 0.3
        ("dropout", "{type: float, low: 0.0, high: 0.3}", 0.1 * 3, OLD_FLOAT_STEP, 0.3),
        # float step grid
        ("dropout", FLOAT_STEP, 0.0, OLD_FLOAT, 0.0),
        ("dropout", FLOAT_STEP, 0.4, OLD_FLOAT, 0.4),
        ("dropout", FLOAT_STEP, 0.1 * 2, OLD_FLOAT_STEP, 0.1 * 2),
        ("dropout", FLOAT_STEP, 0.1 * 3, OLD_FLOAT_STEP, f"{OFF_GRID} (0.0 + a multiple of 0.2)"),
        ("dropout", FLOAT_STEP, 0.6, OLD_FLOAT, f"{OUTSIDE} [0.0, 0.4]"),
        # int range, step and log
        ("units", INT_STEP, 32, OLD_INT_STEP, 32),
        ("units", INT_STEP, 96, OLD_INT_STEP, 96),
        ("units", INT_STEP, 48, OLD_INT_STEP, f"{OFF_GRID} (32 + a multiple of 32)"),
        ("units", INT_STEP, 16, OLD_INT_STEP, f"{OUTSIDE} [32, 96]"),
        ("units", INT_STEP, 128, OLD_INT_STEP, f"{OUTSIDE} [32, 96]"),
        ("units", INT_LOG, 16, OLD_INT_LOG, 16),
        ("units", INT_LOG, 256, OLD_INT_LOG, 256),
        ("units", INT_LOG, 512, OLD_INT_LOG, f"{OUTSIDE} [16, 256]"),
        # categorical: YAML equality (1 == 1.0, but true != 1); the new space's own choice is kept
        ("optimizer", OPTIMIZERS, "adam", OLD_OPTIMIZERS, "adam"),
        ("optimizer", OPTIMIZERS, "rmsprop", OLD_OPTIMIZERS, "is not among the new choices ('sgd', 'adam')"),
        ("batch_size", BATCH_SIZES, 32, OLD_INT_STEP, 32),
        ("batch_size", BATCH_SIZES, 32.0, FloatDistribution(16.0, 64.0), 32),
        ("batch_norm", "{type: categorical, choices: [true, false]}", 1, IntDistribution(0, 1),
         "is not among the new choices (True, False)"),
        # int vs float
        ("dropout", FLOAT_02_04, 0, IntDistribution(0, 1), "is not a float (int), but the new space samples floats"),
        ("units", INT_STEP, 32.0, FloatDistribution(16.0, 128.0), "is not an int (float), but the new space samples ints"),
        ("units", "{type: int, low: 1, high: 2}", True, CategoricalDistribution([True, False]),
         "is not an int (bool), but the new space samples ints"),
    ],
)
def test_plan_value_at_the_boundary_of_the_new_distribution(name, new_spec, value, old_distribution, expected):
    source = _one_trial_source(name, value, old_distribution)
    new_space = _space(f"{name}: {new_spec}")

    plan = plan_warm_start(source, new_space, source_label="old")

    if isinstance(expected, str) and expected.startswith("is "):  # a reason: the trial is skipped
        assert plan.trials == []
        assert plan.messages[1:] == [f"skipped 1 trial: {name!r} {expected}"]
    else:
        (trial,) = plan.trials
        assert trial.params[name] == expected and type(trial.params[name]) is type(expected)
        assert trial.distributions[name] == distributions_for(new_space)[name]


# -- objectives ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "old_directions, old_metric_names, metric, mode, expected",
    [
        (["minimize"], None, "val_acc", "max", "it optimises minimize, but the new space optimises maximize val_acc"),
        (["maximize", "minimize"], None, "val_acc", "max", "it optimises maximize, minimize, but the new space optimises maximize"),
        (["maximize"], None, "[val_acc, n_params]", "[max, min]", "the new space optimises maximize val_acc, minimize n_params"),
        (["maximize", "maximize"], None, "[val_acc, n_params]", "[max, min]", "it optimises maximize, maximize, but"),
        (["maximize"], ["train_acc"], "val_acc", "max", "it optimises maximize train_acc, but the new space optimises"),
    ],
)
def test_plan_objectives_differ_raises(old_directions, old_metric_names, metric, mode, expected):
    source = optuna.create_study(directions=old_directions)
    if old_metric_names:
        with pytest.warns(optuna.exceptions.ExperimentalWarning):
            source.set_metric_names(old_metric_names)
    with pytest.raises(WarmStartError) as info:
        plan_warm_start(source, _space(metric=metric, mode=mode), source_label="old")
    message = str(info.value)
    assert message.startswith("cannot warm-start from study 'old': ") and expected in message
    assert "\n" not in message and isinstance(info.value, ValueError)


def test_plan_multi_objective_same_directions_seeds_a_study():
    space = _space(metric="[val_acc, n_params]", mode="[max, min]")
    rows = [Row(value=(0.5 + i / 100, 1000 - i)) for i in range(11)] + [Row(state=TrialState.PRUNED)]
    source = _source(space, rows, directions=("maximize", "minimize"))

    plan = plan_warm_start(source, space, source_label="old")

    assert len(plan.trials) == 12 and plan.trials[0].values == [0.5, 1000]
    new_study = optuna.create_study(sampler=build_sampler(space), directions=["maximize", "minimize"])
    new_study.add_trials(plan.trials)
    trial = new_study.ask()
    define_by_run(space)(trial)
    new_study.tell(trial, [0.6, 900])


# -- nothing to seed -----------------------------------------------------------------------------------------
def test_plan_empty_source_gives_an_empty_plan():
    plan = plan_warm_start(optuna.create_study(direction="maximize"), _space(), source_label="old")
    assert plan.trials == []
    assert plan.messages == ["study 'old' has no complete or pruned trials; the new study starts without warm start"]


def test_plan_only_failed_trials_gives_an_empty_plan():
    space = _space()
    plan = plan_warm_start(_source(space, [Row(state=TrialState.FAIL)] * 2), space, source_label="old")
    assert plan.trials == []
    assert plan.messages == [
        "study 'old' has no complete or pruned trials; the new study starts without warm start",
        "ignored 2 failed trial(s): only complete and pruned trials seed a study",
    ]
