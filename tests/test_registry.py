"""The study registry against real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from service._registry import SCHEMA_VERSION, Registry, StudyNotFound, new_study_id
from service._states import StudyStatus

FAILED, RUNNING, SUCCEEDED = StudyStatus.FAILED, StudyStatus.RUNNING, StudyStatus.SUCCEEDED


def _create(registry: Registry, name: str = "digits-cnn"):
    study_id = new_study_id(name)
    return registry.create(
        study_id=study_id,
        name=name,
        space_text="name: x\n",
        space_source="/tmp/space.yaml",
        metrics=["val_acc"],
        modes=["max"],
        optuna_storage="sqlite:///optuna.db",
        optuna_study_name=study_id,
        mlflow_tracking_uri="sqlite:///mlflow.db",
    )


def test_registry_create_and_find_round_trip(registry_url):
    registry = Registry(registry_url)
    created = _create(registry)
    found = registry.find_or_raise_by_id(created.id)
    assert found.id == created.id
    assert found.status == "queued"
    assert found.metrics == ["val_acc"] and found.modes == ["max"]
    assert found.created_at is not None


def test_registry_update_counts_best_and_status(registry_url):
    registry = Registry(registry_url)
    study = _create(registry)
    registry.update(study.id, status=RUNNING, n_trials=3, n_completed=2, n_pruned=1)
    registry.update(study.id, status=SUCCEEDED, best_value=0.97, best_params={"lr": 0.01, "optimizer": "adam"})
    record = registry.find_by_id(study.id)
    assert (record.status, record.n_trials, record.n_completed, record.n_pruned) == (SUCCEEDED, 3, 2, 1)
    assert record.best_params == {"lr": 0.01, "optimizer": "adam"}
    assert record.best_value == pytest.approx(0.97)


def test_registry_update_rejects_unknown_status_and_fields(registry_url):
    registry = Registry(registry_url)
    study = _create(registry)
    with pytest.raises(ValueError, match="status 'done' is not one of"):
        registry.update(study.id, status="done")
    with pytest.raises(TypeError, match="cannot update"):
        registry.update(study.id, colour="red")


def test_registry_find_by_unique_prefix(registry_url):
    registry = Registry(registry_url)
    study = _create(registry, name="prefix-study")
    _create(registry, name="other-study")
    assert registry.find_or_raise_by_id(study.id[:14]).id == study.id


def test_registry_find_missing_raises(registry_url):
    registry = Registry(registry_url)
    assert registry.find_by_id("nope") is None
    with pytest.raises(StudyNotFound):
        registry.find_or_raise_by_id("nope")


def test_registry_list_filters_by_status_newest_first(registry_url):
    registry = Registry(registry_url)
    a = _create(registry, name="list-a")
    b = _create(registry, name="list-b")
    registry.update(a.id, status=FAILED)
    ids = [r.id for r in registry.list()]
    assert ids.index(b.id) < ids.index(a.id)
    assert a.id in [r.id for r in registry.list(status=FAILED)]
    assert b.id not in [r.id for r in registry.list(status=FAILED)]


def test_registry_reopening_keeps_studies_and_version(registry_url):
    study = _create(Registry(registry_url))
    again = Registry(registry_url)
    assert again.find_by_id(study.id) is not None
    engine = create_engine(registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("select version from hpsearch_schema_version")).scalar_one() == SCHEMA_VERSION
    engine.dispose()


def test_registry_refuses_newer_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Registry(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("update hpsearch_schema_version set version = :v"), {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    with pytest.raises(RuntimeError, match="upgrade hpsearch"):
        Registry(url)


# The studies table as schema version 1 created it, before cluster mode added its columns.
_V1_TABLE = """
CREATE TABLE hpsearch_studies (
    id VARCHAR(128) PRIMARY KEY, name VARCHAR(128), space_text TEXT, space_source TEXT, space_overrides JSON,
    status VARCHAR(16), created_at TIMESTAMP WITH TIME ZONE, started_at TIMESTAMP WITH TIME ZONE,
    finished_at TIMESTAMP WITH TIME ZONE, metric VARCHAR(256), mode VARCHAR(64), optuna_storage TEXT,
    optuna_study_name VARCHAR(256), mlflow_tracking_uri TEXT, mlflow_experiment_id VARCHAR(64),
    mlflow_parent_run_id VARCHAR(64), tune_path TEXT, ray_job_id VARCHAR(128), driver VARCHAR(256),
    n_trials INTEGER, n_running INTEGER, n_completed INTEGER, n_pruned INTEGER, n_failed INTEGER,
    best_value FLOAT, best_params JSON, error TEXT
)
"""


def test_registry_migrates_a_version_1_database_without_losing_studies(empty_registry_url):
    engine = create_engine(empty_registry_url)
    with engine.begin() as conn:
        conn.execute(text(_V1_TABLE))
        conn.execute(text("CREATE TABLE hpsearch_schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO hpsearch_schema_version VALUES (1, 1)"))
        conn.execute(text(
            "INSERT INTO hpsearch_studies (id, name, space_text, status, created_at, metric, mode, optuna_storage, "
            "optuna_study_name, mlflow_tracking_uri, n_trials, n_running, n_completed, n_pruned, n_failed, best_value) "
            "VALUES ('old-1', 'old', 'name: old', 'succeeded', '2026-11-01 10:00:00+00', '[\"val_acc\"]', '[\"max\"]', "
            "'sqlite:///o.db', 'old-1', 'sqlite:///m.db', 5, 0, 4, 1, 0, 0.93)"
        ))
    engine.dispose()

    registry = Registry(empty_registry_url)

    old = registry.find_or_raise_by_id("old-1")
    assert (old.status, old.n_completed, old.best_value, old.stop_requested_at) == ("succeeded", 4, 0.93, None)
    registry.update("old-1", stop_requested_at=datetime.now(timezone.utc), register_model="digits")
    assert registry.find_by_id("old-1").register_model == "digits"
    engine = create_engine(empty_registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("select version from hpsearch_schema_version")).scalar_one() == SCHEMA_VERSION
    engine.dispose()
    registry.dispose()
    assert Registry(empty_registry_url).find_by_id("old-1").register_model == "digits"  # and opens again as is


@pytest.mark.slow
def test_registry_opened_by_many_processes_at_once_on_a_new_database(empty_registry_url):
    """The API and the first drivers (or a CLI and a driver) open a new registry at the same moment."""
    import subprocess
    import sys

    code = "import sys; from service._registry import Registry; Registry(sys.argv[1]).list()"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_registry_url], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(errors)[-3000:]
    engine = create_engine(empty_registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("select count(*), max(version) from hpsearch_schema_version")).one() == (1, SCHEMA_VERSION)
    engine.dispose()
