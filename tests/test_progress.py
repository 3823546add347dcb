"""StudyProgress: counts, best so far, the failure budget, the terminal table; and its survival through
pickling (Tune pickles callbacks into the experiment state and unpickles them on resume).

Tune's Trial objects are replaced by a small stand-in with the attributes the callback reads."""

from __future__ import annotations

import pickle
import time

import pytest
from rich.console import Console

from service._context import StudyContext
from service._progress import StudyProgress
from service._settings import resolve_settings
from service.space import parse_space

from support import FakeTrial



SPACE = """\
name: s
trainable: mlp
metric: val_acc
mode: {mode}
budget: {{trials: 10, max_epochs: 3, max_failed_trials: {max_failed}, time: {time}}}
params:
  lr: {{type: float, low: 0.001, high: 0.1, log: true}}
"""


def _progress(tmp_path, mode: str = "max", max_failed_trials=None, time: str = "none") -> StudyProgress:
    """The callback alone: a real (empty) Optuna storage to number trials from, no registry row to update."""
    max_failed = "none" if max_failed_trials is None else max_failed_trials
    space = parse_space(SPACE.format(mode=mode, max_failed=max_failed, time=time), check_data=False)
    stores = resolve_settings(home=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                              optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    ctx = StudyContext(study_id="s", space=space, stores=stores, experiment_id="0", parent_run_id="p",
                       tune_path=tmp_path / "tune" / "s", show_progress=False)
    return StudyProgress(ctx, with_registry=False)


def _finish(progress: StudyProgress, trial_id: str, value: float, epochs: int) -> None:
    trial = FakeTrial(trial_id, {"lr": 0.1})
    progress.on_trial_start(0, [], trial)
    for epoch in range(1, epochs + 1):
        trial.last_result = {"val_acc": value * epoch / epochs, "training_iteration": epoch}
        progress.on_trial_result(0, [], trial, trial.last_result)
    progress.on_trial_complete(0, [], trial)


@pytest.mark.parametrize("mode, best", [("max", 0.9), ("min", 0.5)])
def test_progress_counts_states_and_best_completed_value(tmp_path, mode, best):
    progress = _progress(tmp_path, mode=mode)
    _finish(progress, "a", 0.9, 3)
    _finish(progress, "b", 0.5, 3)
    _finish(progress, "c", 0.99, 1)  # pruned at epoch 1: never the best
    snapshot = progress.snapshot
    assert (snapshot.count("completed"), snapshot.count("pruned")) == (2, 1)
    assert snapshot.best_value == pytest.approx(best)


def test_progress_failure_budget_counts_trials_own_faults_not_lost_workers(tmp_path):
    error = tmp_path / "error.txt"
    error.write_text("Traceback ...\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    progress = _progress(tmp_path, max_failed_trials=1)
    lost = FakeTrial("lost", error_file=str(error))
    progress.on_trial_start(0, [], lost)
    progress.on_trial_recover(0, [], lost)
    progress.on_trial_error(0, [], lost)  # Tune gave up on it after its retries: not its own fault
    assert progress.snapshot.trials["lost"].retries == 1 and progress.snapshot.trials["lost"].lost
    assert "ActorDiedError" in progress.snapshot.trials["lost"].reason
    for trial_id in ("a", "b"):
        assert not progress.stop_all()
        trial = FakeTrial(trial_id)
        progress.on_trial_start(0, [], trial)
        trial.last_result = {"hpsearch_fault": "ValueError: boom", "training_iteration": 2}
        progress.on_trial_result(0, [], trial, trial.last_result)
        progress.on_trial_complete(0, [], trial)
    assert progress.stop_all()
    assert progress.snapshot.trials["a"].reason == "ValueError: boom"
    assert progress.snapshot.trials["a"].epoch == 1  # the fault result comes after the last epoch's


@pytest.mark.parametrize("value, stop", [(0.5, False), (float("nan"), True), (float("inf"), True), (None, False)])
def test_progress_stops_a_trial_whose_metric_turns_non_finite(tmp_path, value, stop):
    result = {"training_iteration": 2} if value is None else {"val_acc": value, "training_iteration": 2}
    assert _progress(tmp_path)("t", result) is stop


def test_progress_time_budget_counts_from_the_first_trial_and_across_resumes(tmp_path):
    progress = _progress(tmp_path, time="60s")
    assert not progress.stop_all() and progress.time_used_s() == 0  # waiting for a worker costs nothing
    progress.on_trial_start(0, [], FakeTrial("a"))
    progress.snapshot.phase_started -= 50
    state = progress.get_state()
    restored = pickle.loads(pickle.dumps(progress))
    restored.set_state(state)
    assert 50 <= restored.time_used_s() < 55 and not restored.stop_all()
    restored.on_trial_start(0, [], FakeTrial("b"))
    restored.snapshot.phase_started -= 10
    assert restored.stop_all() and restored.out_of_time


def test_progress_state_round_trips_through_pickle_and_get_state(tmp_path):
    progress = _progress(tmp_path)
    _finish(progress, "a", 0.8, 3)
    restored = pickle.loads(pickle.dumps(progress))
    restored.set_state(progress.get_state())
    assert restored.snapshot.count("completed") == 1
    assert restored.snapshot.best_value == pytest.approx(0.8)


def test_progress_table_shows_running_best_and_failed_trials(tmp_path):
    progress = _progress(tmp_path)
    _finish(progress, "done", 0.95, 3)
    running = FakeTrial("run", {"lr": 0.25, "optimizer": "adam"})
    progress.on_trial_start(0, [], running)
    progress.on_trial_result(0, [], running, {"val_acc": 0.5, "training_iteration": 2})
    console = Console(width=160, record=True)
    console.print(progress.render_table())
    text = console.export_text()
    assert "running" in text and "2/3" in text and "optimizer=adam" in text
    assert "completed" in text and "0.9500" in text
    assert "best val_acc 0.9500" in text


def test_progress_numbers_trials_as_optuna_does(tmp_path):
    import optuna

    progress = _progress(tmp_path)
    study = optuna.create_study(study_name="s", storage=progress.ctx.optuna_storage)
    for tune_id in ("first-asked", "second-asked"):
        study.ask().set_user_attr("tune_trial_id", tune_id)
    progress.on_trial_start(0, [], FakeTrial("second-asked"))  # starts first, but Optuna numbered it 1
    progress.on_trial_start(0, [], FakeTrial("first-asked"))
    assert progress.snapshot.trials["second-asked"].number == 1
    assert progress.snapshot.trials["first-asked"].number == 0


def test_progress_status_line_has_pace_and_eta(tmp_path):
    progress = _progress(tmp_path)
    _finish(progress, "a", 0.9, 3)
    _finish(progress, "b", 0.8, 3)
    progress.snapshot.phase_started = time.time() - 60  # two trials finished in a minute: 8 more take four
    line = progress.status_line()
    assert "completed 2" in line and "· of 10 ·" in line
    assert "2.0 trials/min · ETA 0:04:00" in line and "best val_acc 0.9000" in line


def test_progress_a_rerun_of_a_trial_that_had_ended_changes_none_of_its_records(tmp_path):
    # After a restore from a state saved before the trial ended, Tune runs it again; that run's end is noise.
    import optuna

    from service._optuna import TUNE_TRIAL_ID_ATTR

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize")
    ended = study.ask()
    ended.set_user_attr(TUNE_TRIAL_ID_ATTR, "ended")
    study.tell(ended, 0.9)
    saved = _progress(tmp_path)
    progress = pickle.loads(pickle.dumps(saved))  # what Tune restores
    progress.set_state(saved.get_state())
    progress.setup()
    rerun = FakeTrial("ended")
    progress.on_trial_start(0, [], rerun)
    progress.on_trial_error(0, [], rerun)  # its checkpoint was gone: Tune gave up on the rerun
    assert not [k for k in study.user_attrs if k.startswith("hpsearch.lost")]
    assert progress.snapshot.count("failed") == 0


@pytest.mark.parametrize("restored", [False, True])
def test_progress_a_trial_tune_gave_up_on_is_lost_though_optuna_was_told_first(tmp_path, restored):
    # Tune tells the searcher (Optuna: failed) before the callbacks: the trial is still this run's to record,
    # on a first run as on a resumed one whose trial was still running when the study was saved.
    import optuna

    from service._optuna import LOST_ATTR, TUNE_TRIAL_ID_ATTR

    progress = _progress(tmp_path)
    study = optuna.create_study(study_name="s", storage=progress.ctx.optuna_storage, direction="maximize")
    asked = study.ask()
    asked.set_user_attr(TUNE_TRIAL_ID_ATTR, "lost")
    if restored:
        saved, progress = progress, pickle.loads(pickle.dumps(progress))
        progress.set_state(saved.get_state())
    progress.setup()
    error = tmp_path / "error.txt"
    error.write_text("Failure # 2\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    trial = FakeTrial("lost", error_file=str(error))
    progress.on_trial_start(0, [], trial)
    progress.on_trial_recover(0, [], trial)
    study.tell(asked, state=optuna.trial.TrialState.FAIL)
    progress.on_trial_error(0, [], trial)
    reason = "its worker failed 2 times, more than max_retries=3 allows: ray.exceptions.ActorDiedError: The actor died unexpectedly"
    assert study.user_attrs[f"{LOST_ATTR}.0"] == reason
    assert progress.snapshot.count("failed") == 1 and progress.snapshot.trials["lost"].reason == reason


def test_progress_of_a_resumed_study_counts_the_trials_that_ended_after_tune_saved_it(tmp_path):
    """Tune's saved progress is older than Optuna: one trial was running in it and ended after (Tune runs it
    again), one was asked for and ran whole after it (the searcher takes it back), one ended after it in
    deterministic mode and is held back from the sampler (held as Optuna is told: a plain number), one was
    stopped early, one is still running. The resumed counts, the best and the pace are Optuna's."""
    import optuna

    from service._optuna import HELD_ATTR, TUNE_TRIAL_ID_ATTR

    saved = _progress(tmp_path)
    study = optuna.create_study(study_name="s", storage=saved.ctx.optuna_storage, direction="maximize")
    trials = {}
    for tune_id in ("done-before", "ended-after-save", "asked-after-save", "held-after-save", "pruned-after-save",
                    "still-running"):
        trials[tune_id] = study.ask()
        trials[tune_id].set_user_attr(TUNE_TRIAL_ID_ATTR, tune_id)
    _finish(saved, "done-before", 0.7, 3)
    study.tell(trials["done-before"], 0.7)
    for tune_id in ("ended-after-save", "held-after-save", "pruned-after-save", "still-running"):
        saved.on_trial_start(0, [], FakeTrial(tune_id))
    state = saved.get_state()  # Tune saves the experiment here
    for tune_id, value, epochs in (("ended-after-save", 0.95, 3), ("asked-after-save", 0.8, 3),
                                   ("held-after-save", 0.97, 3), ("pruned-after-save", 0.3, 1)):
        for epoch in range(1, epochs + 1):
            trials[tune_id].report(value * epoch / epochs, epoch)
    study.tell(trials["ended-after-save"], 0.95)
    study.tell(trials["asked-after-save"], 0.8)
    study.tell(trials["pruned-after-save"], state=optuna.trial.TrialState.PRUNED)
    trials["held-after-save"].set_user_attr(HELD_ATTR, {"state": "COMPLETE", "values": 0.97})

    progress = pickle.loads(pickle.dumps(saved))
    progress.set_state(state)
    progress.setup()
    snapshot = progress.snapshot
    assert [snapshot.count(label) for label in ("running", "completed", "pruned")] == [1, 4, 1]
    assert snapshot.best_value == pytest.approx(0.97) and snapshot.best_trial == "held-after-save"
    assert snapshot.trials["asked-after-save"].number == 2 and snapshot.trials["asked-after-save"].epoch == 3
    assert snapshot.trials["pruned-after-save"].value == pytest.approx(0.3)
    progress.on_trial_start(0, [], FakeTrial("ended-after-save"))  # Tune's rerun: stopped, still counted ended
    assert snapshot.count("running") == 1 and "running 1 · completed 4 · pruned 1 ·" in progress.status_line()
    assert "trials/min" not in progress.status_line()  # none ended in this run: no pace from earlier ones
