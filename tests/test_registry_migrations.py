"""The registry's schema migrations, on real SQLite and PostgreSQL databases.

Legacy databases are made the way hpsearch made them before the registry used Alembic: `create_all` of the
models as they were (frozen below: schemas 1 and 2 as of commit a47f40c, 3 as of 62caab2) and the version
row, then studies written as that code wrote them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest
from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from service._registry import SCHEMA_REVISION, Registry, RegistryUnavailable
from service._registry._migrate import VERSION_TABLE, alembic_config
from service._registry._models import Base


# -- the registry before Alembic, frozen ------------------------------------------------------------------
class _Schema1Columns:
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    space_text: Mapped[str] = mapped_column(Text)
    space_source: Mapped[Optional[str]] = mapped_column(Text)
    space_overrides: Mapped[Optional[list]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    metric: Mapped[str] = mapped_column(String(256))
    mode: Mapped[str] = mapped_column(String(64))
    optuna_storage: Mapped[str] = mapped_column(Text)
    optuna_study_name: Mapped[str] = mapped_column(String(256))
    mlflow_tracking_uri: Mapped[str] = mapped_column(Text)
    mlflow_experiment_id: Mapped[Optional[str]] = mapped_column(String(64))
    mlflow_parent_run_id: Mapped[Optional[str]] = mapped_column(String(64))
    tune_path: Mapped[Optional[str]] = mapped_column(Text)
    ray_job_id: Mapped[Optional[str]] = mapped_column(String(128))
    driver: Mapped[Optional[str]] = mapped_column(String(256))
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    n_running: Mapped[int] = mapped_column(Integer, default=0)
    n_completed: Mapped[int] = mapped_column(Integer, default=0)
    n_pruned: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    best_value: Mapped[Optional[float]] = mapped_column(Float)
    best_params: Mapped[Optional[dict]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)


class _Schema2Columns(_Schema1Columns):
    warm_start_from: Mapped[Optional[str]] = mapped_column(String(128))
    register_model: Mapped[Optional[str]] = mapped_column(String(256))
    registered_model: Mapped[Optional[str]] = mapped_column(String(300))
    stop_requested_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class _Schema3Columns(_Schema2Columns):
    best_trial: Mapped[Optional[int]] = mapped_column(Integer)
    pareto_front: Mapped[Optional[list]] = mapped_column(JSON)
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


def _legacy_models(version: int):
    class LegacyBase(DeclarativeBase):
        pass

    class SchemaVersion(LegacyBase):
        __tablename__ = "hpsearch_schema_version"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        version: Mapped[int] = mapped_column(Integer, nullable=False)

    class Study({1: _Schema1Columns, 2: _Schema2Columns, 3: _Schema3Columns}[version], LegacyBase):
        __tablename__ = "hpsearch_studies"

    return LegacyBase, SchemaVersion, Study


_T0 = datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)

# Studies as the code of each schema wrote them: every field set, the fewest set, several objectives.
_LEGACY_STUDIES = [
    dict(id="digits-cnn-20261101-100000-aaaa", name="digits-cnn", space_text="name: digits-cnn\n",
         space_source="/home/u/digits_cnn.yaml", space_overrides=["train.epochs=3"], status="succeeded",
         created_at=_T0, started_at=_T0 + timedelta(seconds=2), finished_at=_T0 + timedelta(minutes=9),
         metric=json.dumps(["val_acc"]), mode=json.dumps(["max"]), optuna_storage="sqlite:////h/optuna.db",
         optuna_study_name="digits-cnn-20261101-100000-aaaa", mlflow_tracking_uri="sqlite:////h/mlflow.db",
         mlflow_experiment_id="3", mlflow_parent_run_id="9f2c", tune_path="/h/tune/digits-cnn-20261101-100000-aaaa",
         ray_job_id="raysubmit_1", driver="laptop:4242", n_trials=12, n_running=0, n_completed=9, n_pruned=2,
         n_failed=1, best_value=0.9871, best_params={"lr": 0.003, "optimizer": "adam", "layers": [32, 64]},
         error="1 trial failed: CUDA out of memory"),
    dict(id="mlp-20261101-110000-bbbb", name="mlp", space_text="name: mlp\n", space_source=None,
         space_overrides=None, status="queued", created_at=_T0 + timedelta(hours=1), started_at=None,
         finished_at=None, metric=json.dumps(["val_loss"]), mode=json.dumps(["min"]),
         optuna_storage="postgresql+psycopg2://hpsearch@postgres/hpsearch",
         optuna_study_name="mlp-20261101-110000-bbbb",
         mlflow_tracking_uri="http://mlflow:5000", mlflow_experiment_id=None, mlflow_parent_run_id=None,
         tune_path=None, ray_job_id=None, driver=None, n_trials=0, n_running=0, n_completed=0, n_pruned=0,
         n_failed=0, best_value=None, best_params=None, error=None),
    dict(id="tabular-20261101-120000-cccc", name="tabular", space_text="name: tabular\n",
         space_source="tabular.yaml", space_overrides=["a=1", "b=2"], status="stopped",
         created_at=_T0 + timedelta(hours=2), started_at=_T0 + timedelta(hours=2, seconds=1),
         finished_at=_T0 + timedelta(hours=3), metric=json.dumps(["val_acc", "latency_ms"]),
         mode=json.dumps(["max", "min"]), optuna_storage="sqlite:////h/optuna.db",
         optuna_study_name="tabular-20261101-120000-cccc", mlflow_tracking_uri="sqlite:////h/mlflow.db",
         mlflow_experiment_id="4", mlflow_parent_run_id="77aa", tune_path="/h/tune/t", ray_job_id=None,
         driver="gpu-1:17", n_trials=5, n_running=2, n_completed=3, n_pruned=0, n_failed=0, best_value=None,
         best_params=None, error="interrupted"),
]
_SCHEMA2_FIELDS = [
    dict(warm_start_from="digits-cnn-20261031-090000-dddd", register_model="digits", registered_model="digits/3",
         stop_requested_at=_T0 + timedelta(minutes=8)),
    dict(warm_start_from=None, register_model=None, registered_model=None, stop_requested_at=None),
    dict(warm_start_from=None, register_model="tabular", registered_model=None,
         stop_requested_at=_T0 + timedelta(hours=2, minutes=59)),
]


_SCHEMA3_FIELDS = [
    dict(best_trial=7, pareto_front=None, heartbeat_at=_T0 + timedelta(minutes=8, seconds=58)),
    dict(best_trial=None, pareto_front=None, heartbeat_at=None),
    dict(best_trial=None, heartbeat_at=_T0 + timedelta(hours=2, minutes=58),
         pareto_front=[{"trial": 1, "values": [0.91, 3.5], "params": {"depth": 4}},
                       {"trial": 3, "values": [0.95, 7.0], "params": {"depth": 8}}]),
]


def _legacy_database(url: str, version: int) -> list[dict]:
    """A registry made by hpsearch's schema `version` (1 to 3) code, with studies; the rows written."""
    LegacyBase, SchemaVersion, Study = _legacy_models(version)
    rows = [dict(row, **(v2 if version >= 2 else {}), **(v3 if version >= 3 else {}))
            for row, v2, v3 in zip(_LEGACY_STUDIES, _SCHEMA2_FIELDS, _SCHEMA3_FIELDS)]
    engine = create_engine(url)
    LegacyBase.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(SchemaVersion(id=1, version=version))
        session.add_all(Study(**row) for row in rows)
    engine.dispose()
    return rows


def _as_read(row: dict) -> dict:
    """What the registry's record should hold for a row written by the legacy code."""
    expected = dict(row, metrics=json.loads(row["metric"]), modes=json.loads(row["mode"]),
                    space_overrides=row["space_overrides"] or [])
    del expected["metric"], expected["mode"]
    for key in ("warm_start_from", "register_model", "registered_model", "stop_requested_at", "best_trial",
                "pareto_front", "heartbeat_at"):
        expected.setdefault(key, None)
    expected["retries"] = 0
    return expected


def _schema_differences(url: str) -> list:
    """What Alembic's autogenerate would change to make the database match the models (nothing, when the
    migrations and the models agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "version_table": VERSION_TABLE,
            "include_name": lambda name, type_, parents: type_ != "table" or name.startswith("hpsearch_"),
        })
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    return differences


def _scalar(url: str, sql: str):
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return value


@pytest.mark.parametrize("version", [1, 2, 3])
def test_registry_upgrades_a_database_made_before_alembic_keeping_every_study(empty_registry_url, version):
    rows = _legacy_database(empty_registry_url, version)

    registry = Registry(empty_registry_url)

    for row in rows:
        record = registry.find_or_raise_by_id(row["id"])
        assert {key: getattr(record, key) for key in _as_read(row)} == _as_read(row)
        assert record.created_at.tzinfo is not None  # also on SQLite, which keeps no zone
    assert [r.id for r in registry.list()] == [row["id"] for row in reversed(rows)]
    assert _scalar(empty_registry_url, f"select version_num from {VERSION_TABLE}") == SCHEMA_REVISION
    assert _scalar(empty_registry_url, "select version from hpsearch_schema_version") > 3  # refused by old code
    assert _schema_differences(empty_registry_url) == []
    # and it is usable, and opens again as it is
    registry.update(rows[1]["id"], status="running", register_model="mlp")
    registry.dispose()
    assert Registry(empty_registry_url).find_by_id(rows[1]["id"]).register_model == "mlp"


def test_registry_upgrade_stops_at_a_status_it_does_not_know_and_changes_nothing(empty_registry_url):
    rows = _legacy_database(empty_registry_url, 2)
    engine = create_engine(empty_registry_url)
    with engine.begin() as conn:
        conn.execute(text("update hpsearch_studies set status = 'paused' where id = :id"), {"id": rows[0]["id"]})
    engine.dispose()

    with pytest.raises(RegistryUnavailable, match=rf"{rows[0]['id']} \('paused'\).*left as it was") as caught:
        Registry(empty_registry_url)

    assert "\n" not in str(caught.value)
    assert _scalar(empty_registry_url, "select version from hpsearch_schema_version") == 2
    assert _scalar(empty_registry_url, "select count(*) from hpsearch_studies where metric is not null") == len(rows)
    with pytest.raises(Exception, match=VERSION_TABLE):  # not even stamped
        _scalar(empty_registry_url, f"select version_num from {VERSION_TABLE}")


def test_registry_database_checks_the_status_word(empty_registry_url):
    from sqlalchemy.exc import IntegrityError

    registry = Registry(empty_registry_url)
    study = registry.create(study_id="s-1", name="s", space_text="name: s\n", space_source=None, metrics=["m"],
                            modes=["max"], optuna_storage="o", optuna_study_name="s-1", mlflow_tracking_uri="m")
    registry.dispose()
    engine = create_engine(empty_registry_url)
    with pytest.raises(IntegrityError, match="ck_hpsearch_studies_status"), engine.begin() as conn:
        conn.execute(text("update hpsearch_studies set status = 'paused' where id = :id"), {"id": study.id})
    engine.dispose()


def test_registry_downgrade_to_schema_2_gives_back_what_that_code_reads(empty_registry_url):
    """An operator who must go back to the previous hpsearch: `alembic downgrade 0002` (see migrations/README)."""
    from alembic import command

    rows = _legacy_database(empty_registry_url, 2)
    registry = Registry(empty_registry_url)
    registry.update(rows[0]["id"], status="crashed", heartbeat_at=_T0, retries=2, best_trial=4)
    registry.dispose()
    engine = create_engine(empty_registry_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002")
    engine.dispose()

    _, _, Study = _legacy_models(2)
    engine = create_engine(empty_registry_url)
    with Session(engine) as session:
        read = {s.id: {key: getattr(s, key) for key in rows[0]} for s in session.query(Study)}
    engine.dispose()
    expected = {row["id"]: dict(row, space_overrides=row["space_overrides"] or []) for row in rows}
    expected[rows[0]["id"]]["status"] = "crashed"
    if empty_registry_url.startswith("sqlite"):  # SQLite keeps no zone: schema 2's code read UTC times without one
        for study in expected.values():
            study.update({k: v.replace(tzinfo=None) for k, v in study.items() if isinstance(v, datetime)})
    assert read == expected
    assert _scalar(empty_registry_url, "select version from hpsearch_schema_version") == 2
    assert Registry(empty_registry_url).find_by_id(rows[0]["id"]).retries == 0  # and up again


def test_registry_refuses_a_pre_alembic_version_it_does_not_know(empty_registry_url):
    _legacy_database(empty_registry_url, 2)
    engine = create_engine(empty_registry_url)
    with engine.begin() as conn:
        conn.execute(text("update hpsearch_schema_version set version = 7"))
    engine.dispose()
    with pytest.raises(RegistryUnavailable, match=f"has schema version 7 but no {VERSION_TABLE}.*upgrade hpsearch"):
        Registry(empty_registry_url)


def test_registry_new_database_has_exactly_the_models_schema(empty_registry_url):
    Registry(empty_registry_url).dispose()
    assert _schema_differences(empty_registry_url) == []
    assert _scalar(empty_registry_url, f"select version_num from {VERSION_TABLE}") == SCHEMA_REVISION


def test_registry_schema_revision_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


def test_registry_refuses_a_database_newer_than_it_knows(empty_registry_url):
    Registry(empty_registry_url).dispose()
    engine = create_engine(empty_registry_url)
    with engine.begin() as conn:
        conn.execute(text(f"update {VERSION_TABLE} set version_num = '9001'"))
    engine.dispose()
    with pytest.raises(RegistryUnavailable, match="upgrade hpsearch") as caught:
        Registry(empty_registry_url)
    assert "\n" not in str(caught.value) and "9001" in str(caught.value)


@pytest.mark.slow
def test_registry_opening_an_up_to_date_database_reads_only_its_revision(registry_url):
    """The API, every driver and each `hpsearch status` open the registry: at the head that is one query, and
    Alembic is not even imported."""
    Registry(registry_url).dispose()
    code = (
        "import json, sys\n"
        "from sqlalchemy import event\n"
        "from sqlalchemy.engine import Engine\n"
        "statements = []\n"
        "event.listen(Engine, 'before_cursor_execute', lambda conn, cursor, sql, *rest: statements.append(sql))\n"
        "from service._registry import Registry\n"
        "Registry(sys.argv[1])\n"
        "print(json.dumps({'statements': statements, 'alembic': 'alembic' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, registry_url], capture_output=True, text=True, check=True)
    opened = json.loads(out.stdout)
    assert opened["alembic"] is False
    assert opened["statements"] == [f"SELECT version_num FROM {VERSION_TABLE}"]


@pytest.mark.slow
def test_registry_shares_its_database_with_optuna(empty_registry_url):
    """On a cluster the registry and Optuna's storage are one PostgreSQL database; each keeps its own revision."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="before", storage=empty_registry_url)
    registry = Registry(empty_registry_url)
    optuna.create_study(study_name="after", storage=empty_registry_url)
    registry.dispose()

    assert Registry(empty_registry_url).list() == []
    assert {s.study_name for s in optuna.get_all_study_summaries(storage=empty_registry_url)} == {"before", "after"}
    assert _scalar(empty_registry_url, f"select version_num from {VERSION_TABLE}") == SCHEMA_REVISION
    assert _scalar(empty_registry_url, "select count(*) from alembic_version") == 1  # Optuna's, untouched
