"""The registry's tables, and the record a caller gets for a study.

The schema's history is in migrations/versions/: a change here goes with a new revision there, and
`SCHEMA_REVISION` names the revision these models describe.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import secrets
from typing import TYPE_CHECKING, Optional, get_args

from sqlalchemy import JSON, DateTime, Enum, Float, Integer, MetaData, String, Text, TypeDecorator, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service._states import StudyStatus

SCHEMA_REVISION = "0003"  # the Alembic revision these models describe (a test checks it is the newest)


class Base(DeclarativeBase):
    # Indexes and check constraints named the same on every backend, so that a revision can name the one it
    # changes (the index pattern is SQLAlchemy's default, which the tables were made with):
    # https://alembic.sqlalchemy.org/en/latest/naming.html
    metadata = MetaData(
        naming_convention={"ix": "ix_%(column_0_label)s", "ck": "ck_%(table_name)s_%(constraint_name)s"}
    )


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


# Columns set when a study is created and never changed by Registry.update (an Optuna study's objectives and
# directions are fixed when it is made).
_IMMUTABLE = {"immutable": True}

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
    `hpsearch_alembic_version`, rules now. From revision 0003 on the row holds 99, higher than any hpsearch
    from before Alembic knows (1 to 3), so that such an hpsearch refuses the database with its own "upgrade
    hpsearch" instead of failing on a missing column."""

    __tablename__ = "hpsearch_schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class StudyModel(Base):
    """One study: what was asked (the space, its objectives, its stores), where it stands, and what it found."""

    __tablename__ = "hpsearch_studies"

    # new_study_id(): "<name>-<yyyymmdd-hhmmss>-<4 hex>"
    id: Mapped[str] = mapped_column(String(128), primary_key=True, info=_IMMUTABLE)
    name: Mapped[str] = mapped_column(String(128), index=True)
    space_text: Mapped[str] = mapped_column(Text)  # the YAML file as submitted
    space_source: Mapped[Optional[str]] = mapped_column(Text)  # the file it was read from
    space_overrides: Mapped[list[str]] = mapped_column(JSON, default=list)  # `--set KEY=VALUE` strings applied to it
    status: Mapped[StudyStatus] = mapped_column(_STATUS, index=True, default=StudyStatus.QUEUED)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, info=_IMMUTABLE)
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    metrics: Mapped[list[str]] = mapped_column(JSON, info=_IMMUTABLE)  # the objectives' names, in the space's order
    modes: Mapped[list[str]] = mapped_column(JSON, info=_IMMUTABLE)  # "max" or "min", one per metric
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


def _frozen_columns(model: type[Base]) -> type:
    """A frozen dataclass with one field per column of `model`, in the table's order: the same name, and the
    Python type its `Mapped[...]` annotation gives."""
    annotations = inspect.get_annotations(model, eval_str=True)
    fields = [(column.key, get_args(annotations[column.key])[0]) for column in model.__mapper__.column_attrs]
    columns = dataclasses.make_dataclass(f"{model.__name__}Columns", fields, frozen=True)
    columns.__module__ = __name__
    return columns


if TYPE_CHECKING:
    # Type checkers do not see fields made at run time; the model has the same attributes with the same types
    # (`Mapped[str]` reads as `str`), so to them a record is described by it.
    _StudyColumns = StudyModel
else:
    _StudyColumns = _frozen_columns(StudyModel)


class StudyRecord(_StudyColumns):
    """A study as read from the registry: a frozen copy of its row, detached from any database session, with
    one attribute per column of StudyModel (same name, same type)."""

    @property
    def finished(self) -> bool:
        """No driver works on the study any more (it may still be resumed)."""
        return self.status.finished

    @classmethod
    def of(cls, model: StudyModel) -> StudyRecord:
        return cls(**{column.key: getattr(model, column.key) for column in StudyModel.__mapper__.column_attrs})


def new_study_id(name: str) -> str:
    """Readable, sortable and unique: `digits-cnn-20261121-230512-9f3a`."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{secrets.token_hex(2)}"
