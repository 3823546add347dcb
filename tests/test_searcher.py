"""StudySearcher: what Tune's calls leave in the Optuna study (a real SQLite storage), without running Tune."""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from service._searcher import StudySearcher
from service.space import parse_space

SPACE = """\
name: s
trainable: mlp
metric: val_acc
budget: {{trials: 10, max_epochs: 3}}
sampler: {sampler}
params:
  optimizer: {{type: categorical, choices: [sgd, adam]}}
  momentum: {{type: float, low: 0.0, high: 0.9, when: {{optimizer: sgd}}}}
fixed: {{units: 32}}
"""


def _searcher(tmp_path, sampler: str = "{type: random, seed: 0}") -> StudySearcher:
    space = parse_space(SPACE.format(sampler=sampler), check_data=False)
    return StudySearcher(study_name="s", storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", space=space)


def _run(searcher: StudySearcher, trial_id: str, values: list, *, error: bool = False) -> dict:
    config = searcher.suggest(trial_id)
    result = None
    for epoch, value in enumerate(values, start=1):
        result = {"val_acc": value, "training_iteration": epoch}
        if epoch < len(values):
            searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result, error=error)
    return config


def test_searcher_config_holds_suggested_conditional_and_constant_values(tmp_path):
    searcher = _searcher(tmp_path)
    configs = [searcher.suggest(f"t{i}") for i in range(8)]
    for config in configs:
        assert config["units"] == 32 and config["max_epochs"] == 3 and config["data"]["dataset"] == "digits"
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
    assert {c["optimizer"] for c in configs} == {"sgd", "adam"}
    tags = [t.user_attrs["tune_trial_id"] for t in searcher.study.get_trials()]
    assert tags == [f"t{i}" for i in range(8)]


def test_searcher_tells_complete_pruned_and_failed_with_the_whole_curve(tmp_path):
    searcher = _searcher(tmp_path)
    _run(searcher, "done", [0.5, 0.7, 0.9])
    _run(searcher, "stopped", [0.4])  # ASHA stopped it after one epoch: its one result arrives at completion
    _run(searcher, "raised", [0.6], error=True)
    _run(searcher, "diverged", [0.5, math.nan, 0.8])
    done, stopped, raised, diverged = searcher.study.get_trials()
    assert (done.state, done.value, done.intermediate_values) == (TrialState.COMPLETE, 0.9, {1: 0.5, 2: 0.7, 3: 0.9})
    assert (stopped.state, stopped.intermediate_values) == (TrialState.PRUNED, {1: 0.4})
    assert raised.state == TrialState.FAIL
    assert diverged.state == TrialState.COMPLETE and 2 not in diverged.intermediate_values  # the NaN never reached Optuna


def test_searcher_ignores_results_after_a_trial_ended(tmp_path):
    searcher = _searcher(tmp_path)
    _run(searcher, "a", [0.5, 0.6, 0.7])
    searcher.on_trial_result("a", {"val_acc": 0.1, "training_iteration": 4})
    searcher.on_trial_complete("a", {"val_acc": 0.1, "training_iteration": 4})
    (trial,) = searcher.study.get_trials()
    assert trial.value == 0.7 and 4 not in trial.intermediate_values


def test_searcher_state_survives_save_and_restore(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.on_trial_result("a", {"val_acc": 0.5, "training_iteration": 1})
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)

    restored = _searcher(tmp_path)  # as Tune does on resume: a fresh object, then restore()
    restored.restore(path)
    restored.on_trial_complete("a", {"val_acc": 0.8, "training_iteration": 3})
    assert restored.suggest("b") is not None
    a, b = restored.study.get_trials()
    assert (a.state, a.intermediate_values) == (TrialState.COMPLETE, {1: 0.5, 3: 0.8})
    assert b.user_attrs["tune_trial_id"] == "b"


def test_searcher_ends_the_study_when_the_grid_is_exhausted(tmp_path):
    space = parse_space(SPACE.format(sampler="{type: grid}").replace(
        "  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}\n", ""), check_data=False)
    searcher = StudySearcher(study_name="g", storage_url=f"sqlite:///{tmp_path / 'grid.db'}", space=space)
    seen = [_run(searcher, f"t{i}", [0.5, 0.6, 0.7])["optimizer"] for i in range(2)]
    assert sorted(seen) == ["adam", "sgd"]
    assert searcher.suggest("t2") == Searcher.FINISHED


def test_searcher_names_the_objectives_and_links_the_study(tmp_path):
    study = _searcher(tmp_path).study
    assert study.metric_names == ["val_acc"]
    assert study.user_attrs["hpsearch.study_id"] == "s"
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}").metric_names == ["val_acc"]


def test_searcher_seed_trials_come_before_the_first_ask(tmp_path):
    space = parse_space(SPACE.format(sampler="{type: tpe, seed: 0}"), check_data=False)
    seed = optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.99, params={"optimizer": "adam"},
                                     distributions={"optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"])},
                                     user_attrs={"warm_start.source": "old"})
    searcher = StudySearcher(study_name="w", storage_url=f"sqlite:///{tmp_path / 'w.db'}", space=space, seed_trials=[seed])
    searcher.suggest("a")
    first, second = searcher.study.get_trials()
    assert first.user_attrs["warm_start.source"] == "old" and second.user_attrs["tune_trial_id"] == "a"


def test_searcher_restored_fails_trials_asked_for_after_its_last_save_as_lost(tmp_path):
    # A driver asks for two trials, Tune saves its state between the two asks, then the driver dies.
    searcher = _searcher(tmp_path)
    searcher.suggest("saved")
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("unsaved")

    restored = _searcher(tmp_path)  # the resumed driver's
    restored.restore(str(tmp_path / "searcher.pkl"))

    saved, unsaved = restored.study.get_trials()
    assert saved.state == TrialState.RUNNING  # Tune continues it from its checkpoint
    assert unsaved.state == TrialState.FAIL  # Tune never heard of it: a new trial takes its place
    assert restored.study.user_attrs[f"hpsearch.lost.{unsaved.number}"].startswith("its driver died before")
