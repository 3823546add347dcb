"""StudySearcher: what Tune's calls leave in the Optuna study (a real SQLite storage), without running Tune."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from service._searcher import LOST_REASON, StudySearcher
from service.space import parse_space

SPACE = """\
name: s
trainable: mlp
metric: val_acc
budget: {{trials: 10, max_epochs: 3, concurrency: 10}}
sampler: {sampler}
params:
  optimizer: {{type: categorical, choices: [sgd, adam]}}
  momentum: {{type: float, low: 0.0, high: 0.9, when: {{optimizer: sgd}}}}
fixed: {{units: 32}}
"""


def _searcher(tmp_path, sampler: str = "{type: random, seed: 0}", experiment_path=None) -> StudySearcher:
    space = parse_space(SPACE.format(sampler=sampler), check_data=False)
    return StudySearcher(study_name="s", storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", space=space,
                         experiment_path=experiment_path)


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


def _deterministic(tmp_path, concurrency: int, trials: int = 10) -> StudySearcher:
    text = SPACE.format(sampler="{type: tpe, seed: 0, deterministic: true, n_startup_trials: 2}").replace(
        "{trials: 10, max_epochs: 3, concurrency: 10}", f"{{trials: {trials}, max_epochs: 3, concurrency: {concurrency}}}")
    return StudySearcher(study_name="d", storage_url=f"sqlite:///{tmp_path / 'd.db'}",
                         space=parse_space(text, check_data=False))


def _states(searcher: StudySearcher) -> list[str]:
    return [t.state.name for t in searcher.study.get_trials()]


def test_searcher_deterministic_asks_for_trial_k_only_after_trials_up_to_k_minus_c_finished(tmp_path):
    searcher = _deterministic(tmp_path, concurrency=2)
    assert searcher.suggest("t0") is not None and searcher.suggest("t1") is not None
    assert searcher.suggest("t2") is None  # t0 is still running
    searcher.on_trial_complete("t1", {"val_acc": 0.9, "training_iteration": 3})
    assert _states(searcher) == ["RUNNING", "RUNNING"]  # t1 is held back: t2 must not see it
    assert searcher.suggest("t2") is None
    searcher.on_trial_result("t0", {"val_acc": 0.3, "training_iteration": 1})
    searcher.on_trial_complete("t0", {"val_acc": 0.5, "training_iteration": 3})
    assert _states(searcher) == ["COMPLETE", "RUNNING"]  # t0 told: t2 must see it; t1 still held back
    assert searcher.suggest("t2") is not None
    assert _states(searcher) == ["COMPLETE", "RUNNING", "RUNNING"]
    assert searcher.study.get_trials()[0].intermediate_values == {1: 0.3, 3: 0.5}
    assert searcher.suggest("t3") is not None  # t1 had finished: told now, in trial order
    assert _states(searcher) == ["COMPLETE", "COMPLETE", "RUNNING", "RUNNING"]


def test_searcher_deterministic_tells_everything_once_no_trial_is_left_to_ask_for(tmp_path):
    searcher = _deterministic(tmp_path, concurrency=3, trials=3)
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
    for trial_id in ("c", "a", "b"):
        searcher.on_trial_complete(trial_id, {"val_acc": 0.5, "training_iteration": 3})
    assert _states(searcher) == ["COMPLETE"] * 3


def test_searcher_deterministic_gives_the_same_trials_whatever_order_trials_finish_in(tmp_path):
    def study(name: str, finish_order_key) -> list[dict]:
        (tmp_path / name).mkdir()
        searcher = _deterministic(tmp_path / name, concurrency=3, trials=9)
        running, asked = [], 0
        while asked < 9 or running:
            while asked < 9 and len(running) < 3:
                config = searcher.suggest(f"t{asked}")
                if config is None:
                    break
                running.append((f"t{asked}", config))
                asked += 1
            running.sort(key=finish_order_key)
            trial_id, config = running.pop(0)
            value = 0.6 if config["optimizer"] == "adam" else 0.4 + config["momentum"] / 2
            searcher.on_trial_complete(trial_id, {"val_acc": value, "training_iteration": 3})
        return [t.params for t in searcher.study.get_trials()]

    oldest_first = study("oldest", lambda item: int(item[0][1:]))
    newest_first = study("newest", lambda item: -int(item[0][1:]))
    assert oldest_first == newest_first


def test_searcher_deterministic_trials_held_when_the_study_ends_are_told_by_tell_held(tmp_path):
    from service._optuna import tell_held

    searcher = _deterministic(tmp_path, concurrency=2)
    searcher.suggest("t0"), searcher.suggest("t1")
    searcher.on_trial_result("t1", {"val_acc": 0.4, "training_iteration": 1})
    searcher.on_trial_complete("t1", {"val_acc": 0.9, "training_iteration": 3})  # held: t0 has not finished
    assert _states(searcher) == ["RUNNING", "RUNNING"]
    assert tell_held(searcher.study) == 1  # the study ended (time budget): t1 is recorded as it ended
    t0, t1 = searcher.study.get_trials()
    assert t0.state == TrialState.RUNNING  # never finished: reconcile_running fails it at close
    assert (t1.state, t1.value, t1.intermediate_values) == (TrialState.COMPLETE, 0.9, {1: 0.4, 3: 0.9})
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
    assert restored.study.user_attrs[f"hpsearch.lost.{unsaved.number}"] == LOST_REASON


# -- a restore where Tune's saved trials and the searcher's state come from different moments -----------------
def _tune_saw(monkeypatch, *trials):
    """Tune's saved list of trials, as `ExperimentAnalysis` reads it: (trial id, status, last result)."""
    from types import SimpleNamespace

    listed = [SimpleNamespace(trial_id=i, status=status, last_result=last) for i, status, last in trials]
    monkeypatch.setattr("service._searcher._tune_trials", lambda path: listed)


def _study_searcher(tmp_path) -> StudySearcher:
    return _searcher(tmp_path, experiment_path=str(tmp_path / "tune"))


def _restored(tmp_path) -> StudySearcher:
    restored = _study_searcher(tmp_path)  # the resumed driver's: a fresh object, then restore(), as Tune does
    restored.restore(str(tmp_path / "searcher.pkl"))
    return restored


def test_restored_searcher_takes_back_a_trial_tune_saved_after_it(tmp_path, monkeypatch):
    searcher = _study_searcher(tmp_path)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("b")  # Tune's list was saved after this ask, the searcher's state before
    searcher.on_trial_result("b", {"val_acc": 0.3, "training_iteration": 1})
    _tune_saw(monkeypatch, ("a", "RUNNING", None), ("b", "RUNNING", None))

    restored = _restored(tmp_path)
    restored.on_trial_result("b", {"val_acc": 0.3, "training_iteration": 1})  # replayed from its checkpoint
    restored.on_trial_complete("b", {"val_acc": 0.6, "training_iteration": 3})

    a, b = restored.study.get_trials()
    assert a.state == TrialState.RUNNING
    assert not [k for k in restored.study.user_attrs if k.startswith("hpsearch.lost")]
    assert (b.state, b.value, b.intermediate_values) == (TrialState.COMPLETE, 0.6, {1: 0.3, 3: 0.6})
    restored.suggest("c")
    assert [t.number for t in restored.study.get_trials()] == [0, 1, 2]  # a and b both counted


def test_restored_searcher_fails_a_trial_tune_saved_before_as_lost_and_asks_for_another(tmp_path, monkeypatch):
    searcher = _study_searcher(tmp_path)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's list was saved before "b" was asked for
    _tune_saw(monkeypatch, ("a", "RUNNING", None))

    restored = _restored(tmp_path)

    a, b = restored.study.get_trials()
    assert (a.state, b.state) == (TrialState.RUNNING, TrialState.FAIL)
    assert restored.study.user_attrs[f"hpsearch.lost.{b.number}"] == LOST_REASON
    for i in range(9):  # b is not counted: the budget of 10 still holds nine more asks after a
        assert restored.suggest(f"n{i}") not in (None, Searcher.FINISHED)
    assert restored.suggest("n9") is None  # all asked; a is still running


def test_restored_searcher_ends_a_trial_tune_saved_as_ended(tmp_path, monkeypatch):
    searcher = _study_searcher(tmp_path)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))
    _tune_saw(monkeypatch, ("a", "TERMINATED", {"val_acc": 0.7, "training_iteration": 3}))

    restored = _restored(tmp_path)

    (a,) = restored.study.get_trials()
    assert (a.state, a.value) == (TrialState.COMPLETE, 0.7)  # Tune will not end it again


def _restorable_deterministic(tmp_path, concurrency: int):
    """Makes the deterministic searchers of one study, as a first and a resumed driver make them (with Tune's
    experiment path, which a restore reads)."""
    text = SPACE.format(sampler="{type: tpe, seed: 0, deterministic: true, n_startup_trials: 2}").replace(
        "concurrency: 10", f"concurrency: {concurrency}")
    return lambda: StudySearcher(study_name="d", storage_url=f"sqlite:///{tmp_path / 'd.db'}",
                                 space=parse_space(text, check_data=False), experiment_path=str(tmp_path / "tune"))


def test_restored_searcher_takes_back_a_trial_that_ran_whole_between_two_saves(tmp_path, monkeypatch):
    # A trial that never checkpoints (or fails in its first epoch) can be asked for, run and ended between two
    # of Tune's saves; the driver then dies: neither saved state knows it, Optuna holds its end.
    searcher = _study_searcher(tmp_path)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's list saved at the same moment
    _run(searcher, "b", [0.5, 0.7, 0.8])
    _tune_saw(monkeypatch, ("a", "RUNNING", None))

    restored = _restored(tmp_path)

    a, b = restored.study.get_trials()
    assert a.state == TrialState.RUNNING and (b.state, b.value) == (TrialState.COMPLETE, 0.8)
    assert not [k for k in restored.study.user_attrs if k.startswith("hpsearch.lost")]
    for i in range(8):  # the budget of 10 counts a and b: eight more asks
        assert restored.suggest(f"n{i}") not in (None, Searcher.FINISHED)
    assert restored.suggest("n8") is None  # all asked; a is still running
    assert len(restored.study.get_trials()) == 10


@pytest.mark.parametrize("b_asked", ["after the save", "before the save"])
def test_restored_deterministic_searcher_tells_a_held_trial_that_ran_between_two_saves_in_its_turn(tmp_path,
                                                                                                    monkeypatch, b_asked):
    # b ran whole while a ran, and was held back until a had been told; Tune's list was saved before b was asked
    # for, the searcher's state before it too, or after it (Tune's files are copied one by one).
    searcher = _restorable_deterministic(tmp_path, concurrency=2)
    first = searcher()
    first.suggest("a")
    if b_asked == "before the save":
        first.suggest("b")
    first.save(str(tmp_path / "searcher.pkl"))
    if b_asked == "after the save":
        first.suggest("b")
    for epoch, value in enumerate([0.5, 0.7], start=1):
        first.on_trial_result("b", {"val_acc": value, "training_iteration": epoch})
    first.on_trial_complete("b", {"val_acc": 0.8, "training_iteration": 3})
    assert _states(first) == ["RUNNING", "RUNNING"]
    _tune_saw(monkeypatch, ("a", "RUNNING", None))

    restored = searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert _states(restored) == ["RUNNING", "RUNNING"]  # b is not failed as lost
    restored.on_trial_complete("a", {"val_acc": 0.6, "training_iteration": 3})
    restored.suggest("c")
    restored.suggest("d")  # the sampler must see trials 0 and 1 now: b is told in its turn

    a, b = restored.study.get_trials()[:2]
    assert (a.state, a.value, b.state, b.value) == (TrialState.COMPLETE, 0.6, TrialState.COMPLETE, 0.8)
    assert not [k for k in restored.study.user_attrs if k.startswith("hpsearch.lost")]


def test_restored_deterministic_searcher_at_concurrency_1_goes_on_past_a_told_trial_that_ran_between_two_saves(
        tmp_path, monkeypatch):
    # At concurrency 1 each trial's end is told at once: the trial that ran between two saves is COMPLETE, not
    # held, and the restored searcher counts it and goes on to the next trial.
    searcher = _restorable_deterministic(tmp_path, concurrency=1)
    first = searcher()
    _run(first, "a", [0.5, 0.6, 0.7])
    first.save(str(tmp_path / "searcher.pkl"))
    _run(first, "b", [0.5, 0.7, 0.8])
    _tune_saw(monkeypatch, ("a", "TERMINATED", {"val_acc": 0.7, "training_iteration": 3}))

    restored = searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("c") not in (None, Searcher.FINISHED)

    assert _states(restored) == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert [t.user_attrs["tune_trial_id"] for t in restored.study.get_trials()] == ["a", "b", "c"]


def test_restored_searcher_does_not_take_back_a_trial_cut_off_when_its_study_ended(tmp_path, monkeypatch):
    # A driver that raised closed its study: trials still running were failed as left running (reconciled).
    from service._optuna import reconcile_running

    searcher = _study_searcher(tmp_path)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("b")  # asked in the last second: in neither saved state
    reconcile_running(searcher.study)
    _tune_saw(monkeypatch, ("a", "RUNNING", None))

    restored = _restored(tmp_path)

    for i in range(9):  # the budget of 10 counts a, not b: a new trial takes b's place
        assert restored.suggest(f"n{i}") not in (None, Searcher.FINISHED)
    assert restored.suggest("n9") is None


def test_searcher_ends_the_search_only_once_every_trial_it_asked_for_has_finished(tmp_path):
    space = parse_space(SPACE.format(sampler="{type: random, seed: 0}").replace("trials: 10", "trials: 2"),
                        check_data=False)
    searcher = StudySearcher(study_name="s", storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", space=space)
    searcher.suggest("a")
    _run(searcher, "b", [0.5])
    assert searcher.suggest("c") is None  # a may still be lost in a restore and asked for again
    searcher.on_trial_complete("a", {"val_acc": 0.4, "training_iteration": 1})
    assert searcher.suggest("c") == Searcher.FINISHED
    assert len(searcher.study.get_trials()) == 2


def test_searcher_keeps_the_concurrency_that_tunes_limiter_leaves_to_it(tmp_path):
    from ray.tune.search import ConcurrencyLimiter

    space = parse_space(SPACE.format(sampler="{type: random, seed: 0}").replace("concurrency: 10", "concurrency: 2"),
                        check_data=False)
    limiter = ConcurrencyLimiter(StudySearcher(study_name="s", storage_url=f"sqlite:///{tmp_path / 'o.db'}",
                                               space=space), max_concurrent=2)
    assert limiter.suggest("a") is not None and limiter.suggest("b") is not None
    assert limiter.suggest("c") is None and limiter.live_trials == set()  # the limiter counts nothing itself
    limiter.on_trial_complete("a", {"val_acc": 0.4, "training_iteration": 1})
    assert limiter.suggest("c") is not None


def test_searcher_saved_by_an_older_hpsearch_without_tunes_path_restores(tmp_path):
    searcher = _searcher(tmp_path)
    del searcher.experiment_path  # as unpickled from a study an older hpsearch saved
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(tmp_path)
    del restored.experiment_path
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.study.get_trials()[0].state == TrialState.RUNNING


@pytest.mark.parametrize("deterministic", [True, False])
def test_restored_searcher_keeps_the_end_of_a_trial_that_ended_after_the_save_when_tune_runs_it_again(
        tmp_path, monkeypatch, deterministic):
    # b ended (in deterministic mode: held back until a is told) after both saved states, which hold it as
    # running: Tune runs it again and the study's stopper ends that rerun at its first result. Its end stands.
    if deterministic:
        searcher = _restorable_deterministic(tmp_path, concurrency=2)
    else:
        searcher = lambda: _study_searcher(tmp_path)  # noqa: E731
    first = searcher()
    first.suggest("a")
    first.suggest("b")
    first.save(str(tmp_path / "searcher.pkl"))
    for epoch, value in enumerate([0.5, 0.7], start=1):
        first.on_trial_result("b", {"val_acc": value, "training_iteration": epoch})
    first.on_trial_complete("b", {"val_acc": 0.8, "training_iteration": 3})
    _tune_saw(monkeypatch, ("a", "RUNNING", None), ("b", "RUNNING", None))

    restored = searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("b", {"val_acc": 0.1, "training_iteration": 1})  # the rerun, stopped at once
    restored.on_trial_complete("a", {"val_acc": 0.6, "training_iteration": 3})
    restored.suggest("c")
    restored.suggest("d")  # deterministic: b is told in its turn, once trial 2 is asked for

    a, b = restored.study.get_trials()[:2]
    assert (a.state, a.value) == (TrialState.COMPLETE, 0.6)
    assert (b.state, b.value, b.intermediate_values) == (TrialState.COMPLETE, 0.8, {1: 0.5, 2: 0.7, 3: 0.8})
