"""Closing a study's records: MLflow made to agree with Optuna trial by trial, on a real MLflow store."""

from __future__ import annotations

import optuna
import pytest

from service._optuna import RETRIES_ATTR
from service._records import close_trial_runs
from service._tracking import PARENT_TAG, TAG_RETRIES, TAG_STATE, TAG_STUDY, TAG_TRIAL, client_for

STUDY = "records-study"

pytestmark = pytest.mark.slow  # an MLflow store made per test: seconds


@pytest.fixture
def mlflow(tmp_path):
    client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("records", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id, tags={TAG_STUDY: STUDY}).info.run_id
    return client, experiment_id, parent


def _trial_run(mlflow, number: int, **tags: str) -> str:
    client, experiment_id, parent = mlflow
    tags = {PARENT_TAG: parent, TAG_STUDY: STUDY, TAG_TRIAL: str(number), **tags}
    return client.create_run(experiment_id, tags=tags).info.run_id


def test_closing_sets_each_runs_retries_to_the_count_noted_on_optuna(mlflow):
    """A driver resumed after a head loss counts restarts on from Tune's saved state, which can be older than
    the last ones: the counts noted on the Optuna study are the ones the registry sums, and the runs say them."""
    client, experiment_id, parent = mlflow
    study = optuna.create_study(direction="maximize")
    for _ in range(4):
        study.tell(study.ask(), 0.5)
    behind = _trial_run(mlflow, 0, **{TAG_RETRIES: "1", TAG_STATE: "completed"})
    unknown = _trial_run(mlflow, 1, **{TAG_STATE: "completed"})
    agreeing = _trial_run(mlflow, 2, **{TAG_RETRIES: "1", TAG_STATE: "completed"})
    # The live logger counted a restart that the driver died before noting on Optuna (no note: 0).
    unnoted = _trial_run(mlflow, 3, **{TAG_RETRIES: "1", TAG_STATE: "completed"})
    for run_id in (behind, unknown, agreeing, unnoted):
        client.set_terminated(run_id, status="FINISHED")
    study.set_user_attr(f"{RETRIES_ATTR}.0", 2)
    study.set_user_attr(f"{RETRIES_ATTR}.1", 1)
    study.set_user_attr(f"{RETRIES_ATTR}.2", 1)

    close_trial_runs(client, experiment_id, parent, STUDY, study)

    runs = {run_id: client.get_run(run_id) for run_id in (behind, unknown, agreeing, unnoted)}
    assert [runs[r].data.tags.get(TAG_RETRIES) for r in (behind, unknown, agreeing, unnoted)] == ["2", "1", "1", "0"]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}  # closed by the callbacks: left closed
    assert {r.data.tags[TAG_STATE] for r in runs.values()} == {"completed"}


def test_closing_leaves_a_run_without_restarts_without_a_retries_tag(mlflow):
    client, experiment_id, parent = mlflow
    study = optuna.create_study(direction="maximize")
    study.ask()  # still running when the study stopped
    run_id = _trial_run(mlflow, 0, **{TAG_STATE: "running"})

    close_trial_runs(client, experiment_id, parent, STUDY, study)

    run = client.get_run(run_id)
    assert TAG_RETRIES not in run.data.tags
    assert (run.info.status, run.data.tags[TAG_STATE]) == ("KILLED", "interrupted")
