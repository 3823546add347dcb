"""LocalStudies: the study verbs on this machine's registry — noticing dead drivers, stopping, resuming rules.

Real stores (SQLite registry and MLflow); the drivers are real processes that have ended."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from service._errors import StudyConflict
from service._runner import record_study
from service._settings import resolve_settings
from service._states import StudyStatus
from service._studies import HEARTBEAT_TIMEOUT_S, LocalStudies
from service._tracking import get_or_create_experiment, start_parent_run
from service.space import parse_space

SPACE = """\
name: local-verbs
trainable: mlp
metric: val_acc
budget: {trials: 2, max_epochs: 1}
params:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
"""


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def studies(tmp_path, tracking_uri):
    return LocalStudies(resolve_settings(home=str(tmp_path), tracking_uri=tracking_uri), show_progress=False)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _running_study(studies: LocalStudies, driver: str, **fields):
    """A study a driver was running (its MLflow run open), as the registry holds it."""
    space = parse_space(SPACE, check_data=False)
    record = record_study(studies.registry, space, studies.settings)
    client = MlflowClient(studies.settings.tracking_uri)
    experiment_id = get_or_create_experiment(client, space.name)
    parent = start_parent_run(client, experiment_id, record.id, space)
    return studies.registry.update(record.id, status=StudyStatus.RUNNING, driver=driver, mlflow_experiment_id=experiment_id,
                                   mlflow_parent_run_id=parent, **fields)


@pytest.mark.slow  # seconds, not milliseconds
def test_studies_a_dead_local_driver_is_seen_as_crashed_at_once(studies):
    record = _running_study(studies, f"{socket.gethostname()}:{_dead_pid()}")
    data = studies.status(record.id)
    assert data["status"] == "crashed"
    assert "ended without closing the study" in data["error"] and f"hpsearch resume {record.id}" in data["error"]
    assert MlflowClient(studies.settings.tracking_uri).get_run(record.mlflow_parent_run_id).info.status == "KILLED"
    assert "crashed" in studies.logs(record.id)["text"]
    assert [s["status"] for s in studies.list()] == ["crashed"]


def test_studies_a_live_local_driver_keeps_its_study_running(studies):
    driver = subprocess.Popen(["sleep", "30"])
    try:
        record = _running_study(studies, f"{socket.gethostname()}:{driver.pid}")
        assert studies.status(record.id)["status"] == "running"
    finally:
        driver.kill()
        driver.wait()


@pytest.mark.parametrize("silent_s, expected", [(5, "running"), (HEARTBEAT_TIMEOUT_S + 5, "crashed")])
def test_studies_a_driver_on_another_host_is_judged_by_its_heartbeat(studies, silent_s, expected):
    beat = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=silent_s)
    record = _running_study(studies, "some-other-host:4242", heartbeat_at=beat)
    assert studies.status(record.id)["status"] == expected


def test_studies_stop_of_a_study_without_a_driver_marks_it_stopped(studies):
    record = _running_study(studies, f"{socket.gethostname()}:{_dead_pid()}")
    studies.registry.update(record.id, status=StudyStatus.QUEUED, driver=None)
    stopped = studies.stop(record.id)
    assert stopped["status"] == "stopped" and stopped["stop_requested_at"]
    with pytest.raises(StudyConflict, match="already stopped"):
        studies.stop(record.id)


def test_studies_resume_refuses_a_succeeded_study(studies):
    record = _running_study(studies, "h:1")
    studies.registry.update(record.id, status=StudyStatus.SUCCEEDED)
    with pytest.raises(StudyConflict, match="already succeeded"):
        studies.resume(record.id)


def test_studies_delete_forgets_a_finished_study_in_every_store(studies):
    import optuna

    record = _running_study(studies, f"{socket.gethostname()}:{_dead_pid()}")
    optuna.create_study(study_name=record.optuna_study_name, storage=record.optuna_storage)
    tune = studies.settings.tune_dir / record.id
    tune.mkdir(parents=True)
    studies.registry.update(record.id, tune_path=str(tune))
    with pytest.raises(StudyConflict, match="stop it first"):
        studies.registry.update(record.id, driver=f"{socket.gethostname()}:{subprocess.Popen(['sleep', '5']).pid}")
        studies.delete(record.id)
    studies.registry.update(record.id, status=StudyStatus.FAILED)
    gone = studies.delete(record.id)
    assert gone["deleted"] == {"mlflow_runs": 1, "optuna_study": True, "tune_folder": True, "log": False}
    assert studies.registry.find_by_id(record.id) is None and not tune.exists()
    assert optuna.study.get_all_study_names(record.optuna_storage) == []
    run = MlflowClient(studies.settings.tracking_uri).get_run(record.mlflow_parent_run_id)
    assert run.info.lifecycle_stage == "deleted"
