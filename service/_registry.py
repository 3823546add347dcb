"""The study registry: one row per study, whatever store it runs against.

SQLite on a laptop, PostgreSQL on a cluster; the same models serve both. The schema is versioned in its own
table so that an upgrade migrates studies forward instead of losing them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from service._states import FINISHED_STATUSES, StudyStatus

SCHEMA_VERSION = 3



class StudyNotFound(LookupError):
    """No study has the id asked for."""


class RegistryUnavailable(RuntimeError):
    """The registry's database cannot be opened (a wrong URL, a server that is down, no permission)."""


class _Base(DeclarativeBase):
    pass


class SchemaVersionModel(_Base):
    """A single row holding the schema version this database was last migrated to."""

    __tablename__ = "hpsearch_schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class StudyModel(_Base):
    __tablename__ = "hpsearch_studies"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # "<name>-<yyyymmdd-hhmmss>-<4 hex>"
    name: Mapped[str] = mapped_column(String(128), index=True)
    space_text: Mapped[str] = mapped_column(Text)  # the YAML file as submitted
    space_source: Mapped[Optional[str]] = mapped_column(Text)  # the file it was read from
    space_overrides: Mapped[Optional[list]] = mapped_column(JSON)  # `--set KEY=VALUE` strings applied to it
    status: Mapped[str] = mapped_column(String(16), index=True, default=StudyStatus.QUEUED.value)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    metric: Mapped[str] = mapped_column(String(256))  # JSON list of metric names
    mode: Mapped[str] = mapped_column(String(64))  # JSON list of "max"/"min"
    optuna_storage: Mapped[str] = mapped_column(Text)
    optuna_study_name: Mapped[str] = mapped_column(String(256))
    mlflow_tracking_uri: Mapped[str] = mapped_column(Text)
    mlflow_experiment_id: Mapped[Optional[str]] = mapped_column(String(64))
    mlflow_parent_run_id: Mapped[Optional[str]] = mapped_column(String(64))
    tune_path: Mapped[Optional[str]] = mapped_column(Text)
    ray_job_id: Mapped[Optional[str]] = mapped_column(String(128))
    driver: Mapped[Optional[str]] = mapped_column(String(256))  # "host:pid" of the process running the study
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    n_running: Mapped[int] = mapped_column(Integer, default=0)
    n_completed: Mapped[int] = mapped_column(Integer, default=0)
    n_pruned: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    best_value: Mapped[Optional[float]] = mapped_column(Float)
    best_params: Mapped[Optional[dict]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)
    # Version 2: what a driver started later (by the API, on the cluster) needs to know, and the stop switch.
    warm_start_from: Mapped[Optional[str]] = mapped_column(String(128))  # study id whose trials seed this one
    register_model: Mapped[Optional[str]] = mapped_column(String(256))  # Model Registry name for the best model
    registered_model: Mapped[Optional[str]] = mapped_column(String(300))  # "name/version" once registered
    # Set by `hpsearch stop`; the driver polls it and ends the study as Ctrl-C does (see service/_progress.py).
    stop_requested_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    # Version 3: the best trial's number and the Pareto front, and the driver's heartbeat.
    best_trial: Mapped[Optional[int]] = mapped_column(Integer)
    pareto_front: Mapped[Optional[list]] = mapped_column(JSON)
    heartbeat_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    retries: Mapped[Optional[int]] = mapped_column(Integer, default=0)


@dataclass(frozen=True)
class StudyRecord:
    """A detached, read-only copy of a registry row."""

    id: str
    name: str
    space_text: str
    space_source: Optional[str]
    space_overrides: list[str]
    status: StudyStatus
    created_at: dt.datetime
    started_at: Optional[dt.datetime]
    finished_at: Optional[dt.datetime]
    metrics: list[str]
    modes: list[str]
    optuna_storage: str
    optuna_study_name: str
    mlflow_tracking_uri: str
    mlflow_experiment_id: Optional[str]
    mlflow_parent_run_id: Optional[str]
    tune_path: Optional[str]
    ray_job_id: Optional[str]
    driver: Optional[str]
    n_trials: int
    n_running: int
    n_completed: int
    n_pruned: int
    n_failed: int
    best_value: Optional[float]
    best_params: Optional[dict]
    error: Optional[str]
    warm_start_from: Optional[str] = None
    register_model: Optional[str] = None
    registered_model: Optional[str] = None
    stop_requested_at: Optional[dt.datetime] = None
    best_trial: Optional[int] = None
    pareto_front: Optional[list] = None
    heartbeat_at: Optional[dt.datetime] = None
    retries: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @classmethod
    def _from_model(cls, m: StudyModel) -> "StudyRecord":
        return cls(
            id=m.id, name=m.name, space_text=m.space_text, space_source=m.space_source,
            space_overrides=list(m.space_overrides or []), status=StudyStatus(m.status),
            created_at=m.created_at, started_at=m.started_at, finished_at=m.finished_at,
            metrics=json.loads(m.metric), modes=json.loads(m.mode), optuna_storage=m.optuna_storage,
            optuna_study_name=m.optuna_study_name, mlflow_tracking_uri=m.mlflow_tracking_uri,
            mlflow_experiment_id=m.mlflow_experiment_id, mlflow_parent_run_id=m.mlflow_parent_run_id,
            tune_path=m.tune_path, ray_job_id=m.ray_job_id, driver=m.driver, n_trials=m.n_trials, n_running=m.n_running,
            n_completed=m.n_completed, n_pruned=m.n_pruned, n_failed=m.n_failed, best_value=m.best_value,
            best_params=m.best_params, error=m.error, warm_start_from=m.warm_start_from,
            register_model=m.register_model, registered_model=m.registered_model,
            stop_requested_at=m.stop_requested_at, best_trial=m.best_trial, pareto_front=m.pareto_front,
            heartbeat_at=m.heartbeat_at, retries=m.retries or 0,
        )


_UPDATABLE = {c.name for c in StudyModel.__table__.columns} - {"id", "created_at", "metric", "mode"}


def new_study_id(name: str) -> str:
    """Readable, sortable and unique: `digits-cnn-20261121-230512-9f3a`."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{secrets.token_hex(2)}"


class Registry:
    """Create, update and query studies. Every method opens and closes its own session."""

    def __init__(self, url: str):
        from sqlalchemy.exc import OperationalError

        self.url = url
        self._engine = _make_engine(url)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            _migrate(self._engine)
        except OperationalError as exc:
            where = self._engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
            raise RegistryUnavailable(
                f"cannot open the study registry {where} ({reason}); check HPSEARCH_REGISTRY_URL / HPSEARCH_HOME "
                f"and that its database server is up"
            ) from None

    def dispose(self) -> None:
        self._engine.dispose()

    def create(
        self,
        *,
        study_id: str,
        name: str,
        space_text: str,
        space_source: Optional[str],
        metrics: list[str],
        space_overrides: Sequence[str] = (),
        modes: list[str],
        optuna_storage: str,
        optuna_study_name: str,
        mlflow_tracking_uri: str,
        status: str = StudyStatus.QUEUED,
        warm_start_from: Optional[str] = None,
        register_model: Optional[str] = None,
    ) -> StudyRecord:
        model = StudyModel(
            id=study_id, name=name, space_text=space_text, space_source=space_source,
            space_overrides=list(space_overrides), status=StudyStatus(status).value,
            created_at=_now(), metric=json.dumps(metrics), mode=json.dumps(modes),
            optuna_storage=optuna_storage, optuna_study_name=optuna_study_name,
            mlflow_tracking_uri=mlflow_tracking_uri, n_trials=0, n_running=0, n_completed=0, n_pruned=0,
            n_failed=0, warm_start_from=warm_start_from, register_model=register_model,
        )
        with self._sessions.begin() as session:
            session.add(model)
        return StudyRecord._from_model(model)

    def update(self, study_id: str, **fields: Any) -> StudyRecord:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise TypeError(f"cannot update study fields {sorted(unknown)}")
        if "status" in fields:
            if fields["status"] not in set(StudyStatus):
                raise ValueError(f"status {fields['status']!r} is not one of {', '.join(StudyStatus)}")
            fields["status"] = StudyStatus(fields["status"]).value
        with self._sessions.begin() as session:
            model = session.get(StudyModel, study_id)
            if model is None:
                raise StudyNotFound(f"no study {study_id!r} in the registry")
            for key, value in fields.items():
                setattr(model, key, value)
        return StudyRecord._from_model(model)

    def find_by_id(self, study_id: str) -> Optional[StudyRecord]:
        with self._sessions() as session:
            model = session.get(StudyModel, study_id)
            return StudyRecord._from_model(model) if model else None

    def find_or_raise_by_id(self, study_id: str) -> StudyRecord:
        """Exact id, or a unique prefix of one (ids are long; people type the start)."""
        record = self.find_by_id(study_id)
        if record is not None:
            return record
        pattern = re.sub(r"([%_\\])", r"\\\1", study_id) + "%"
        with self._sessions() as session:
            rows = session.scalars(
                select(StudyModel).where(StudyModel.id.like(pattern, escape="\\")).limit(2)
            ).all()
            if len(rows) == 1:
                return StudyRecord._from_model(rows[0])
        where = self._engine.url.render_as_string(hide_password=True)
        if len(rows) > 1:
            raise StudyNotFound(f"study id {study_id!r} is the start of several studies in {where}; give more of it")
        raise StudyNotFound(
            f"no study {study_id!r} in the registry {where}; `hpsearch list` shows the studies there "
            f"(set HPSEARCH_HOME if they are elsewhere)"
        )

    def delete(self, study_id: str) -> None:
        with self._sessions.begin() as session:
            model = session.get(StudyModel, study_id)
            if model is None:
                raise StudyNotFound(f"no study {study_id!r} in the registry")
            session.delete(model)

    def touch(self, study_id: str) -> None:
        """The driver's sign of life: `heartbeat_at` = now."""
        self.update(study_id, heartbeat_at=_now())

    def list(self, status: Optional[str] = None, limit: int = 100) -> list[StudyRecord]:
        query = select(StudyModel).order_by(StudyModel.created_at.desc()).limit(limit)
        if status:
            query = query.where(StudyModel.status == StudyStatus(status).value)
        with self._sessions() as session:
            return [StudyRecord._from_model(m) for m in session.scalars(query)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)

        # WAL lets readers (`hpsearch status`) proceed while the driver writes.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _add_columns(*columns: str):
    """A migration that adds nullable columns (`name TYPE`) to the studies table; the same DDL on SQLite and
    PostgreSQL. Columns that are already there (a crash between the ALTER and the version bump) are skipped."""

    def migrate(session: Session) -> None:
        from sqlalchemy import inspect, text

        existing = {c["name"] for c in inspect(session.connection()).get_columns(StudyModel.__tablename__)}
        for column in columns:
            if column.split()[0] not in existing:
                session.execute(text(f"ALTER TABLE {StudyModel.__tablename__} ADD COLUMN {column}"))

    return migrate


# Each migration takes the database from version i to i + 1 (index i - 1). Version 1 is the initial schema
# created by `create_all`; later versions append their ALTERs here rather than editing the models silently.
_MIGRATIONS: list = [
    # 1 -> 2: cluster mode (studies launched by the API) and `hpsearch stop`.
    _add_columns("warm_start_from VARCHAR(128)", "register_model VARCHAR(256)", "registered_model VARCHAR(300)",
                 "stop_requested_at TIMESTAMP WITH TIME ZONE"),
    # 2 -> 3: the best trial and the Pareto front in the row, the driver's heartbeat.
    _add_columns("best_trial INTEGER", "pareto_front JSON", "heartbeat_at TIMESTAMP WITH TIME ZONE", "retries INTEGER"),
]


def _migrate(engine: Engine) -> None:
    """Bring the database to SCHEMA_VERSION. Processes that open a new registry at the same moment (the API
    and a driver, a CLI and a driver) race to create the tables; whoever loses finds them made and retries."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(5):
        try:
            return _migrate_once(engine)
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            lost_race = isinstance(exc, IntegrityError) or "already exists" in str(exc.orig or exc)
            if not lost_race or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def _migrate_once(engine: Engine) -> None:
    # A database older than this code: migrate its tables first, so that `create_all` (which never alters an
    # existing table) only adds what is missing altogether.
    with Session(engine) as session, session.begin():
        if inspect_has_table(engine, SchemaVersionModel.__tablename__):
            row = session.get(SchemaVersionModel, 1)
            if row is not None and row.version < SCHEMA_VERSION:
                for version in range(row.version, SCHEMA_VERSION):
                    _MIGRATIONS[version - 1](session)
                row.version = SCHEMA_VERSION
    _Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        row = session.get(SchemaVersionModel, 1)
        if row is None:
            session.add(SchemaVersionModel(id=1, version=SCHEMA_VERSION))
            return
        if row.version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the registry at {engine.url.render_as_string(hide_password=True)} has schema version "
                f"{row.version}, newer than this hpsearch ({SCHEMA_VERSION}); upgrade hpsearch"
            )


def inspect_has_table(engine: Engine, name: str) -> bool:
    from sqlalchemy import inspect

    return inspect(engine).has_table(name)


