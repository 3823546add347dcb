"""MlflowTrialLogger against a real MLflow store (SQLite): one nested run per trial, its params, its curves,
its end state and reason — and the same run again after Tune pickles and restores the callback."""

from __future__ import annotations

import math
import pickle

import pytest
from mlflow.tracking import MlflowClient

from service._context import StudyContext
from service._settings import resolve_settings
from service._tracking import get_or_create_experiment, start_parent_run
from service._tracking import trial_run_name
from service._trial_runs import MlflowTrialLogger
from service.space import parse_space

from support import FakeTrial, wait_for

SPACE = """\
name: runs
trainable: mlp
metric: val_acc
budget: {trials: 4, max_epochs: 3}
params:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
  optimizer: {type: categorical, choices: [sgd, adam]}
fixed: {units: 32}
"""



@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One MLflow store for the module (making its schema takes seconds); each test has its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def logger(tmp_path, tracking_uri, request):
    space = parse_space(SPACE.replace("name: runs", f"name: runs-{request.node.name[:40]}"), check_data=False)
    stores = resolve_settings(home=str(tmp_path), tracking_uri=tracking_uri,
                              optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    client = MlflowClient(stores.tracking_uri)
    experiment_id = get_or_create_experiment(client, space.name)
    parent = start_parent_run(client, experiment_id, "study-1", space)
    ctx = StudyContext(study_id="study-1", space=space, stores=stores, experiment_id=experiment_id,
                       parent_run_id=parent, tune_path=tmp_path / "tune")
    return MlflowTrialLogger(ctx, report_interval_s=1e9)


def _train(logger, trial: FakeTrial, values: list) -> None:
    logger.on_trial_start(0, [], trial)
    for epoch, value in enumerate(values, start=1):
        trial.last_result = {"val_acc": value, "train_loss": 1 - (value if math.isfinite(value) else 0),
                             "training_iteration": epoch, "node_ip": "10.0.0.1", "node_id": "n1", "gpu_ids": ""}
        logger.on_trial_result(0, [], trial, trial.last_result)


def test_trial_runs_one_nested_run_with_params_curves_and_state(logger):
    trial = FakeTrial("t1", {"lr": 0.01, "optimizer": "adam", "units": 32, "max_epochs": 3, "data": {"dataset": "digits"}})
    _train(logger, trial, [0.5, 0.7, 0.9])
    logger.on_trial_complete(0, [], trial)

    client = logger.client
    run = client.get_run(logger.run_id_for("t1"))
    assert run.info.status == "FINISHED" and run.info.run_name == "trial-0000 lr=0.01 optimizer=adam"
    assert run.data.tags["mlflow.parentRunId"] == logger.ctx.parent_run_id
    assert run.data.tags["hpsearch.state"] == "completed" and run.data.tags["hpsearch.rung"] == "3"
    assert run.data.tags["hpsearch.node"] == "n1" and "hpsearch.gpu_ids" not in run.data.tags
    assert run.data.params == {"lr": "0.01", "optimizer": "adam", "units": "32"}  # data and max_epochs are not params
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc")] == [(1, 0.5), (2, 0.7), (3, 0.9)]
    assert "training_iteration" not in run.data.metrics
    best = client.get_metric_history(logger.ctx.parent_run_id, "best_val_acc_so_far")
    assert [(m.step, m.value) for m in best] == [(1, 0.9)]


def test_trial_runs_pruned_and_non_finite_trials(logger):
    pruned = FakeTrial("p", {"lr": 0.05, "optimizer": "sgd"})
    _train(logger, pruned, [0.3])
    logger.on_trial_complete(0, [], pruned)
    diverged = FakeTrial("d", {"lr": 0.09, "optimizer": "sgd"})
    _train(logger, diverged, [0.3, 0.4, math.nan])
    logger.on_trial_complete(0, [], diverged)

    pruned_run = logger.client.get_run(logger.run_id_for("p"))
    assert (pruned_run.info.status, pruned_run.data.tags["hpsearch.state"]) == ("FINISHED", "pruned")
    diverged_run = logger.client.get_run(logger.run_id_for("d"))
    assert (diverged_run.info.status, diverged_run.data.tags["hpsearch.state"]) == ("FAILED", "failed")
    assert diverged_run.data.tags["hpsearch.fail_reason"] == "val_acc was nan in epoch 3"


def test_trial_runs_a_trials_own_error_is_the_reason_and_an_artifact(logger):
    trial = FakeTrial("e", {"lr": 0.1, "optimizer": "sgd"})
    _train(logger, trial, [0.2, 0.3])
    trial.last_result = {"hpsearch_fault": "ValueError: lr too high", "training_iteration": 3,
                         "hpsearch_fault_trace": "Traceback (most recent call last):\n  ...\nValueError: lr too high\n"}
    logger.on_trial_result(0, [], trial, trial.last_result)
    logger.on_trial_complete(0, [], trial)
    run = logger.client.get_run(logger.run_id_for("e"))
    assert run.info.status == "FAILED" and run.data.tags["hpsearch.fail_reason"] == "ValueError: lr too high"
    assert run.data.tags["hpsearch.rung"] == "2"  # the epochs it trained, not the fault result's step
    assert [m.step for m in logger.client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    assert [a.path for a in logger.client.list_artifacts(run.info.run_id)] == ["error.txt"]


def test_trial_runs_lost_workers_are_retries_then_the_reason(logger, tmp_path):
    error = tmp_path / "error.txt"
    error.write_text("Failure # 1\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    trial = FakeTrial("lost", {"lr": 0.1, "optimizer": "sgd"}, error_file=str(error))
    _train(logger, trial, [0.2])
    logger.on_trial_recover(0, [], trial)
    logger.on_trial_start(0, [], trial)
    logger.on_trial_recover(0, [], trial)
    run = logger.client.get_run(logger.run_id_for("lost"))
    assert run.info.status == "RUNNING" and run.data.tags["hpsearch.retries"] == "2"
    logger.on_trial_error(0, [], trial)  # Tune gave up after max_retries
    run = logger.client.get_run(logger.run_id_for("lost"))
    assert run.info.status == "FAILED"
    assert run.data.tags["hpsearch.fail_reason"] == (
        "its worker failed 3 times, more than max_retries=3 allows: ray.exceptions.ActorDiedError: The actor died "
        "unexpectedly")


def test_trial_runs_a_trial_tune_gave_up_on_is_failed_though_optuna_was_told_first(logger, tmp_path):
    # Tune tells the searcher (Optuna: failed) before the callbacks' on_trial_error: the run still gets its end.
    import optuna

    from service._optuna import TUNE_TRIAL_ID_ATTR

    study = optuna.create_study(study_name=logger.ctx.study_id, storage=logger.ctx.optuna_storage)
    asked = study.ask()
    asked.set_user_attr(TUNE_TRIAL_ID_ATTR, "gone")
    logger.setup()
    error = tmp_path / "error.txt"
    error.write_text("Failure # 2\nray.exceptions.ActorDiedError: The actor died unexpectedly\n")
    trial = FakeTrial("gone", {"lr": 0.1, "optimizer": "sgd"}, error_file=str(error))
    _train(logger, trial, [0.2])
    logger.on_trial_recover(0, [], trial)
    study.tell(asked, state=optuna.trial.TrialState.FAIL)
    logger.on_trial_error(0, [], trial)
    logger.on_experiment_end([])
    run = logger.client.get_run(logger.run_id_for("gone"))
    assert run.info.status == "FAILED" and run.data.tags["hpsearch.fail_reason"] == (
        "its worker failed 2 times, more than max_retries=3 allows: ray.exceptions.ActorDiedError: The actor died "
        "unexpectedly")


def test_trial_runs_a_worker_lost_before_the_trial_started_is_a_retry_on_its_run(logger):
    # Tune placed the trial on a node that died before the trial's first start: it recovers it at once.
    trial = FakeTrial("early", {"lr": 0.1, "optimizer": "sgd"})
    logger.on_trial_recover(0, [], trial)
    logger.on_trial_start(0, [], trial)
    run = logger.client.get_run(logger.run_id_for("early"))
    assert run.data.tags["hpsearch.retries"] == "1"


def test_trial_runs_a_resumed_trial_keeps_its_run(logger):
    trial = FakeTrial("r", {"lr": 0.02, "optimizer": "adam"})
    _train(logger, trial, [0.5])
    restored = pickle.loads(pickle.dumps(logger))  # what Tune's experiment state holds
    restored.set_state(logger.get_state())
    restored.on_trial_start(0, [], trial)
    assert restored.run_id_for("r") == logger.run_id_for("r")

    fresh = pickle.loads(pickle.dumps(logger))  # no saved state: found again by its tags
    fresh.on_trial_start(0, [], trial)
    assert fresh.run_id_for("r") == logger.run_id_for("r")
    runs = logger.client.search_runs([logger.ctx.experiment_id], "tags.`hpsearch.tune_trial_id` = 'r'")
    assert len(runs) == 1 and runs[0].data.tags["hpsearch.state"] == "running"


def test_trial_runs_a_trial_a_stopped_study_closed_before_it_started_starts_in_that_run(logger):
    """A study stopped while a trial waited for a worker: closing the records made that trial a run saying it never
    started. Resumed, the trial starts in that run (found by its Tune id), which loses the reason and gets the
    trial's params: one run per trial, telling what happened."""
    import optuna

    from service._optuna import TUNE_TRIAL_ID_ATTR, open_storage
    from service._records import close_trial_runs

    study = optuna.create_study(study_name="study-1", storage=open_storage(logger.ctx.optuna_storage),
                                direction="maximize")
    waiting = study.ask()
    waiting.set_user_attr(TUNE_TRIAL_ID_ATTR, "late")
    lr = waiting.suggest_float("lr", 0.001, 0.1, log=True)
    optimizer = waiting.suggest_categorical("optimizer", ["sgd", "adam"])
    close_trial_runs(logger.client, logger.ctx.experiment_id, logger.ctx.parent_run_id, "study-1", study)

    restored = pickle.loads(pickle.dumps(logger))  # the resumed driver's
    restored.setup()
    try:
        trial = FakeTrial("late", {"lr": lr, "optimizer": optimizer, "units": 32})
        _train(restored, trial, [0.5, 0.6, 0.7])
        restored.on_trial_complete(0, [], trial)
    finally:
        restored.on_experiment_end([])

    runs = restored.client.search_runs([logger.ctx.experiment_id], "tags.`hpsearch.trial` = '0'")
    assert [r.info.run_id for r in runs] == [restored.run_id_for("late")]
    run = runs[0]
    assert (run.info.status, run.data.tags["hpsearch.state"]) == ("FINISHED", "completed")
    assert "hpsearch.fail_reason" not in run.data.tags
    assert run.data.params == {"lr": str(lr), "optimizer": optimizer, "units": "32"}
    assert [m.step for m in restored.client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3]


def test_trial_run_name_rounds_floats():
    assert trial_run_name(7, {"lr": 0.0031234, "optimizer": "adam", "maps": 32}, ("lr", "optimizer", "maps")) == \
        "trial-0007 lr=0.00312 optimizer=adam maps=32"


def test_trial_runs_a_restore_of_an_older_pickle_keeps_the_run(logger):
    """Tune unpickles the callback of a study saved by an older hpsearch, whose state lacks later attributes."""
    trial = FakeTrial("old", {"lr": 0.02, "optimizer": "adam"})
    _train(logger, trial, [0.5])
    state = logger.__getstate__()
    for newer in ("_restored", "_reports", "_logged", "_reruns"):
        state.pop(newer, None)
    older = MlflowTrialLogger.__new__(MlflowTrialLogger)
    older.__setstate__(state)

    older.setup()
    older.on_trial_start(0, [], trial)
    older.on_trial_result(0, [], trial, {"val_acc": 0.6, "training_iteration": 2})

    assert older.run_id_for("old") == logger.run_id_for("old")
    steps = [m.step for m in logger.client.get_metric_history(logger.run_id_for("old"), "val_acc")]
    assert steps == [1, 2]


class _CountingClient:
    """The logger's real MLflow client, counting its `search_runs` calls."""

    def __init__(self, client):
        self._client, self.searches = client, 0

    def __getattr__(self, name):
        if name == "search_runs":
            self.searches += 1
        return getattr(self._client, name)


def test_trial_runs_only_a_restored_logger_looks_for_a_new_trials_run(logger):
    counting = _CountingClient(logger.client)
    logger._client = counting
    _train(logger, FakeTrial("first", {"lr": 0.01, "optimizer": "sgd"}), [0.4])
    assert counting.searches == 0  # a first run's new trial cannot have a run yet

    restored = pickle.loads(pickle.dumps(logger))
    restored._client = counting
    restored.on_trial_start(0, [], FakeTrial("second", {"lr": 0.03, "optimizer": "sgd"}))
    assert counting.searches == 1  # made before the driver died, after Tune's last save: looked for


def test_trial_runs_the_report_thread_starts_at_the_first_result_and_ends_with_the_experiment(logger):
    logger.setup()
    trial = FakeTrial("drawn", {"lr": 0.01, "optimizer": "sgd"})
    logger.on_trial_start(0, [], trial)
    assert not logger._reports.running  # the trials are starting: no imports to compete with them

    _train(logger, trial, [0.4])
    assert logger._reports.running
    logger.on_experiment_end([])

    wait_for(lambda: not logger._reports.running, 60, "the report thread to end", every_s=0.05)
