"""The registry's tables, and the record a caller gets for a study.

The schema's history is in migrations/versions/: a change here goes with a new revision there, and
`SCHEMA_REVISION` names the revision these models describe.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import JSON, DateTime, Enum, Float, Integer, MetaData, String, Text, TypeDecorator, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service._states import FINISHED_STATUSES, StudyStatus

SCHEMA_REVISION = "0003"  # the Alembic revision these models describe (a test checks it is the newest)


class Base(DeclarativeBase):
    # Indexes and check constraints named the same on every backend, so that a revision can name the one it
    # changes (the index pattern is SQLAlchemy's default, which the tables were made with):
    # https://alembic.sqlalchemy.org/en/latest/naming.html
    metadata = MetaData(naming_convention={"ix": "ix_%(column_0_label)s", "ck": "ck_%(table_name)s_%(constraint_name)s"})


class UTCDateTime(TypeDecorator):
    """A timestamp with time zone that reads back in UTC on every backend: SQLite keeps no zone, so times are
    stored there as UTC and given the zone back when read. A time without a zone is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[dt.datetime], dialect) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"{value} has no time zone; give the registry aware times (datetime.now(timezone.utc))")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: Optional[dt.datetime], dialect) -> Optional[dt.datetime]:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# The status is stored as its word (`queued`, `running`, ...: the enum's values, not its member names) in a
# VARCHAR(16), the same on both backends, rather than as a PostgreSQL ENUM type, which SQLite lacks:
# https://docs.sqlalchemy.org/en/20/core/type_basics.html#sqlalchemy.types.Enum
# The database checks the word (ck_hpsearch_studies_status, made by revision 0003). A new status therefore
# needs a revision that widens the check. It would need one anyway: an older hpsearch cannot read a word it
# does not know, and a newer revision makes it refuse the database with "upgrade hpsearch" instead.
_STATUS = Enum(
    StudyStatus,
    name="status",
    native_enum=False,
    length=16,
    values_callable=lambda statuses: [s.value for s in statuses],
    validate_strings=True,
    create_constraint=True,
)


class SchemaVersionModel(Base):
    """The schema version as hpsearch kept it before Alembic: a single row (id 1). Alembic's own table,
    `hpsearch_alembic_version`, rules now; this row follows the revision's number so that an older hpsearch
    refuses a newer database with its own "upgrade hpsearch" instead of failing on a missing column."""

    __tablename__ = "hpsearch_schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class StudyModel(Base):
    """One study: what was asked (the space, its objectives, its stores), where it stands, and what it found."""

    __tablename__ = "hpsearch_studies"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # new_study_id(): "<name>-<yyyymmdd-hhmmss>-<4 hex>"
    name: Mapped[str] = mapped_column(String(128), index=True)
    space_text: Mapped[str] = mapped_column(Text)  # the YAML file as submitted
    space_source: Mapped[Optional[str]] = mapped_column(Text)  # the file it was read from
    space_overrides: Mapped[list[str]] = mapped_column(JSON, default=list)  # `--set KEY=VALUE` strings applied to it
    status: Mapped[StudyStatus] = mapped_column(_STATUS, index=True, default=StudyStatus.QUEUED)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    metrics: Mapped[list[str]] = mapped_column(JSON)  # the objectives' names, in the space's order
    modes: Mapped[list[str]] = mapped_column(JSON)  # "max" or "min", one per metric
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
    # Revision 0002: what a driver started later (by the API, on the cluster) needs to know, and the stop switch.
    warm_start_from: Mapped[Optional[str]] = mapped_column(String(128))  # study id whose trials seed this one
    register_model: Mapped[Optional[str]] = mapped_column(String(256))  # Model Registry name for the best model
    registered_model: Mapped[Optional[str]] = mapped_column(String(300))  # "name/version" once registered
    # Set by `hpsearch stop`; the driver polls it and ends the study as Ctrl-C does (see service/_progress.py).
    stop_requested_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    # Revision 0003: the outcome as the study's summary gives it, and the driver's liveness.
    best_trial: Mapped[Optional[int]] = mapped_column(Integer)  # Optuna's number of the best trial
    # Several objectives: the front, [{"trial": number, "values": [one per metric], "params": {name: value}}].
    pareto_front: Mapped[Optional[list[dict]]] = mapped_column(JSON)
    # The driver's last sign of life (Registry.touch, every few seconds): a local driver that died is noticed.
    heartbeat_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    # Trials of this study retried so far after an infrastructure failure (a lost worker or node). The
    # server default gives the studies made before revision 0003 their 0.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


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
    pareto_front: Optional[list[dict]] = None
    heartbeat_at: Optional[dt.datetime] = None
    retries: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @classmethod
    def _from_model(cls, m: StudyModel) -> "StudyRecord":
        return cls(
            id=m.id, name=m.name, space_text=m.space_text, space_source=m.space_source,
            space_overrides=m.space_overrides, status=m.status,
            created_at=m.created_at, started_at=m.started_at, finished_at=m.finished_at,
            metrics=m.metrics, modes=m.modes, optuna_storage=m.optuna_storage,
            optuna_study_name=m.optuna_study_name, mlflow_tracking_uri=m.mlflow_tracking_uri,
            mlflow_experiment_id=m.mlflow_experiment_id, mlflow_parent_run_id=m.mlflow_parent_run_id,
            tune_path=m.tune_path, ray_job_id=m.ray_job_id, driver=m.driver, n_trials=m.n_trials, n_running=m.n_running,
            n_completed=m.n_completed, n_pruned=m.n_pruned, n_failed=m.n_failed, best_value=m.best_value,
            best_params=m.best_params, error=m.error, warm_start_from=m.warm_start_from,
            register_model=m.register_model, registered_model=m.registered_model,
            stop_requested_at=m.stop_requested_at, best_trial=m.best_trial, pareto_front=m.pareto_front,
            heartbeat_at=m.heartbeat_at, retries=m.retries,
        )


def new_study_id(name: str) -> str:
    """Readable, sortable and unique: `digits-cnn-20261121-230512-9f3a`."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{secrets.token_hex(2)}"
