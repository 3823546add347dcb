"""The study registry against real SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from service._registry import SCHEMA_REVISION, Registry, StudyNotFound, new_study_id
from service._states import StudyStatus

FAILED, RUNNING, SUCCEEDED = StudyStatus.FAILED, StudyStatus.RUNNING, StudyStatus.SUCCEEDED


@pytest.fixture
def registry(empty_registry_url):
    """A registry on a database of its own (the session's PostgreSQL database is left without studies: the API
    tests expect none there)."""
    registry = Registry(empty_registry_url)
    yield registry
    registry.dispose()


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


def test_registry_create_and_find_round_trip(registry):
    created = _create(registry)
    found = registry.find_or_raise_by_id(created.id)
    assert found.id == created.id
    assert found.status == "queued"
    assert found.metrics == ["val_acc"] and found.modes == ["max"]
    assert found.created_at is not None


def test_registry_update_counts_best_and_status(registry):
    study = _create(registry)
    registry.update(study.id, status=RUNNING, n_trials=3, n_completed=2, n_pruned=1)
    registry.update(study.id, status=SUCCEEDED, best_value=0.97, best_params={"lr": 0.01, "optimizer": "adam"})
    record = registry.find_by_id(study.id)
    assert (record.status, record.n_trials, record.n_completed, record.n_pruned) == (SUCCEEDED, 3, 2, 1)
    assert record.best_params == {"lr": 0.01, "optimizer": "adam"}
    assert record.best_value == pytest.approx(0.97)


def test_registry_update_rejects_unknown_status_and_fields(registry):
    study = _create(registry)
    with pytest.raises(ValueError, match="status 'done' is not one of"):
        registry.update(study.id, status="done")
    with pytest.raises(TypeError, match="cannot update"):
        registry.update(study.id, colour="red")


def test_registry_find_by_unique_prefix(registry):
    study = _create(registry, name="prefix-study")
    _create(registry, name="other-study")
    assert registry.find_or_raise_by_id(study.id[:14]).id == study.id


def test_registry_find_missing_raises(registry):
    assert registry.find_by_id("nope") is None
    with pytest.raises(StudyNotFound):
        registry.find_or_raise_by_id("nope")


def test_registry_list_filters_by_status_newest_first(registry):
    a = _create(registry, name="list-a")
    b = _create(registry, name="list-b")
    registry.update(a.id, status=FAILED)
    ids = [r.id for r in registry.list()]
    assert ids.index(b.id) < ids.index(a.id)
    assert a.id in [r.id for r in registry.list(status=FAILED)]
    assert b.id not in [r.id for r in registry.list(status=FAILED)]


def test_registry_reopening_keeps_studies_and_revision(empty_registry_url):
    study = _create(Registry(empty_registry_url))
    again = Registry(empty_registry_url)
    assert again.find_by_id(study.id) is not None
    again.dispose()
    engine = create_engine(empty_registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from hpsearch_alembic_version")).scalar_one() == SCHEMA_REVISION
    engine.dispose()


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
        assert conn.execute(text("select version_num from hpsearch_alembic_version")).all() == [(SCHEMA_REVISION,)]
    engine.dispose()
