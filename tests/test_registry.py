"""The study registry against real SQLite and PostgreSQL: creating, updating, finding, listing and deleting
studies, and the record a caller gets. Schema migrations: test_registry_migrations.py; connections:
test_registry_connections.py."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from service._registry import SCHEMA_REVISION, Registry, StudyModel, StudyNotFound, StudyRecord, new_study_id
from service._states import StudyStatus

FAILED, RUNNING, SUCCEEDED = StudyStatus.FAILED, StudyStatus.RUNNING, StudyStatus.SUCCEEDED


@pytest.fixture
def registry(empty_registry_url):
    """A registry on a database of its own (the session's PostgreSQL database is left without studies: the API
    tests expect none there)."""
    registry = Registry(empty_registry_url)
    yield registry
    registry.dispose()


def _create(registry: Registry, name: str = "digits-cnn", **fields):
    study_id = new_study_id(name)
    required = dict(
        name=name,
        space_text="name: x\n",
        space_source="/tmp/space.yaml",
        metrics=["val_acc"],
        modes=["max"],
        optuna_storage="sqlite:///optuna.db",
        optuna_study_name=study_id,
        mlflow_tracking_uri="sqlite:///mlflow.db",
    )
    return registry.create(study_id=study_id, **dict(required, **fields))


def test_registry_record_has_one_field_per_column():
    assert [f.name for f in dataclasses.fields(StudyRecord)] == [c.key for c in StudyModel.__table__.columns]


def test_registry_create_and_find_round_trip(registry):
    before = datetime.now(timezone.utc)
    created = _create(registry, space_overrides=("train.epochs=2",), metrics=["val_acc", "latency_ms"],
                      modes=["max", "min"], warm_start_from="old-study", register_model="digits")

    found = registry.find_or_raise_by_id(created.id)

    assert found == created
    assert found.status is StudyStatus.QUEUED and not found.finished
    assert (found.metrics, found.modes, found.space_overrides) == (["val_acc", "latency_ms"], ["max", "min"],
                                                                   ["train.epochs=2"])
    assert (found.warm_start_from, found.register_model) == ("old-study", "digits")
    assert before <= found.created_at <= datetime.now(timezone.utc)  # with its zone, also on SQLite
    assert (found.n_trials, found.n_completed, found.retries) == (0, 0, 0)
    assert (found.best_trial, found.pareto_front, found.heartbeat_at, found.started_at) == (None, None, None, None)


def test_registry_record_is_read_only(registry):
    record = _create(registry)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = RUNNING


def test_registry_create_with_a_status_and_no_overrides(registry):
    record = _create(registry, status="running", space_source=None)
    assert record.status is RUNNING and record.space_overrides == [] and record.space_source is None


@pytest.mark.parametrize("fields,error,message", [
    ({"colour": "red"}, TypeError, r"cannot create a study with \['colour'\]: a study has no such field"),
    ({"id": "x"}, TypeError, r"cannot create a study with \['id'\]: the registry sets them \(the id is `study_id`\)"),
    ({"created_at": datetime.now(timezone.utc)}, TypeError, r"\['created_at'\]: the registry sets them"),
    ({"status": "done"}, ValueError, "status 'done' is not one of queued, running, succeeded, failed, stopped"),
])
def test_registry_create_rejects_a_wrong_field(registry, fields, error, message):
    with pytest.raises(error, match=message):
        _create(registry, **fields)
    assert registry.list() == []


def test_registry_create_names_the_missing_fields(registry):
    with pytest.raises(TypeError, match="a new study needs metrics, modes$"):
        registry.create(study_id="s-1", name="s", space_text="name: s\n", optuna_storage="o",
                        optuna_study_name="s-1", mlflow_tracking_uri="m")


def test_registry_update_counts_outcome_and_status(registry):
    study = _create(registry, metrics=["val_acc", "latency_ms"], modes=["max", "min"])
    registry.update(study.id, status=RUNNING, n_trials=3, n_completed=2, n_pruned=1)
    front = [{"trial": 2, "values": [0.97, 12.5], "params": {"lr": 0.01}},
             {"trial": 1, "values": [0.95, 8.0], "params": {"lr": 0.1}}]
    returned = registry.update(study.id, status="succeeded", best_value=0.97, best_trial=2, pareto_front=front,
                               best_params={"lr": 0.01, "optimizer": "adam"}, retries=1)
    record = registry.find_by_id(study.id)
    assert record == returned
    assert (record.status, record.n_trials, record.n_completed, record.n_pruned) == (SUCCEEDED, 3, 2, 1)
    assert record.finished
    assert (record.best_trial, record.pareto_front, record.retries) == (2, front, 1)
    assert record.best_params == {"lr": 0.01, "optimizer": "adam"}
    assert record.best_value == pytest.approx(0.97)


def test_registry_update_keeps_times_in_utc(registry):
    study = _create(registry)
    stop = datetime(2026, 11, 30, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert registry.update(study.id, stop_requested_at=stop).stop_requested_at == stop
    assert registry.find_by_id(study.id).stop_requested_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="finished_at: 2026-11-30 12:00:00 has no time zone"):
        registry.update(study.id, finished_at=datetime(2026, 11, 30, 12, 0))


@pytest.mark.parametrize("fields,error,message", [
    ({"status": "done"}, ValueError, "status 'done' is not one of queued, running, succeeded, failed, stopped"),
    ({"colour": "red"}, TypeError, r"cannot update study fields \['colour'\]: a study has no such field"),
    ({"id": "other"}, TypeError, r"cannot update study fields \['id'\]: set when the study is created, never"),
    ({"created_at": datetime.now(timezone.utc)}, TypeError, r"\['created_at'\]: set when the study is created"),
    ({"metrics": ["loss"], "modes": ["min"]}, TypeError, r"\['metrics', 'modes'\]: set when the study is created"),
])
def test_registry_update_rejects_a_wrong_field(registry, fields, error, message):
    study = _create(registry)
    with pytest.raises(error, match=message):
        registry.update(study.id, **fields)
    assert registry.find_by_id(study.id) == study


def test_registry_update_of_a_missing_study_raises(registry):
    with pytest.raises(StudyNotFound, match="no study 'nope'"):
        registry.update("nope", status=RUNNING)
    with pytest.raises(StudyNotFound, match="no study 'nope'"):
        registry.update("nope")


def test_registry_touch_notes_the_heartbeat_and_nothing_else(registry):
    study = _create(registry)
    before = datetime.now(timezone.utc)
    registry.touch(study.id)
    touched = registry.find_by_id(study.id)
    assert before <= touched.heartbeat_at <= datetime.now(timezone.utc)
    assert dataclasses.replace(touched, heartbeat_at=None) == study
    with pytest.raises(StudyNotFound):
        registry.touch("nope")


def test_registry_delete_removes_the_exact_study_only(registry):
    study = _create(registry, name="gone")
    other = _create(registry, name="kept")
    with pytest.raises(StudyNotFound):
        registry.delete(study.id[:8])  # a prefix is not enough to delete
    assert registry.delete(study.id) == study
    assert registry.find_by_id(study.id) is None
    assert [r.id for r in registry.list()] == [other.id]
    with pytest.raises(StudyNotFound):
        registry.delete(study.id)


def test_registry_find_by_unique_prefix(registry):
    study = _create(registry, name="prefix-study")
    _create(registry, name="other-study")
    assert registry.find_or_raise_by_id(study.id[:14]).id == study.id


def test_registry_find_by_an_ambiguous_prefix_asks_for_more(registry):
    _create(registry, name="twin")
    _create(registry, name="twin")
    with pytest.raises(StudyNotFound, match="'twin-' is the start of several studies in .*; give more of it"):
        registry.find_or_raise_by_id("twin-")


def test_registry_find_missing_raises(registry):
    assert registry.find_by_id("nope") is None
    with pytest.raises(StudyNotFound, match="no study 'nope' in the registry .*`hpsearch list`"):
        registry.find_or_raise_by_id("nope")


def test_registry_list_filters_by_status_newest_first(registry):
    a = _create(registry, name="list-a")
    b = _create(registry, name="list-b")
    registry.update(a.id, status=FAILED)
    assert [r.id for r in registry.list()] == [b.id, a.id]
    assert [r.id for r in registry.list(status=FAILED)] == [a.id]
    assert [r.id for r in registry.list(status="queued")] == [b.id]
    assert [r.id for r in registry.list(limit=1)] == [b.id]
    with pytest.raises(ValueError, match="status 'done' is not one of"):
        registry.list(status="done")


def test_registry_reopening_keeps_studies_and_revision(empty_registry_url):
    study = _create(Registry(empty_registry_url))
    again = Registry(empty_registry_url)
    assert again.find_by_id(study.id) == study
    again.dispose()
    engine = create_engine(empty_registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from hpsearch_alembic_version")).scalar_one() == SCHEMA_REVISION
    engine.dispose()


def test_registry_switches_a_new_sqlite_file_to_wal_once_another_writer_lets_go(tmp_path):
    """While another connection holds the write lock of a new SQLite file, switching it to WAL is refused at once
    ("database is locked", without SQLite's busy wait): the registry asks again until the lock is let go."""
    import sqlite3
    import threading

    path = tmp_path / "registry.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    letting_go = threading.Timer(0.5, other.execute, args=("COMMIT",))
    letting_go.start()
    registry = Registry(f"sqlite:///{path}")
    assert registry.list() == []
    letting_go.join()
    other.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    registry.dispose()


@pytest.mark.slow
def test_registry_opened_by_many_processes_at_once_on_a_new_database(empty_registry_url):
    """The API and the first drivers (or a CLI and a driver) open a new registry at the same moment."""
    from support import run_together

    # Each process imports and warms up on a database in memory, then all open the registry at the same moment:
    # on SQLite, the switch to WAL was then refused at once ("database is locked") to some of them.
    code = ("import sys, time; from service._registry import Registry; Registry('sqlite://').list(); "
            "print('ready', flush=True); "
            "start = float(sys.stdin.readline())\nwhile time.time() < start: pass\nRegistry(sys.argv[1]).list()")
    done = run_together(code, [empty_registry_url], processes=10, timeout_s=120)
    assert [p.returncode for p in done] == [0] * 10, "\n".join(p.stderr for p in done)[-3000:]
    engine = create_engine(empty_registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from hpsearch_alembic_version")).all() == [(SCHEMA_REVISION,)]
    engine.dispose()
