"""`Registry`: create, update, find, list and delete studies, and note a driver's heartbeat."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any, Optional

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from service._database import make_engine
from service._errors import StudyError
from service._registry._errors import RegistryUnavailable, StudyNotFound
from service._registry._migrate import upgrade_schema
from service._registry._models import StudyModel, StudyRecord, UTCDateTime
from service._states import StudyStatus

_COLUMNS = {column.key: column for column in StudyModel.__table__.columns}
_SET_BY_THE_REGISTRY = {"id", "created_at"}  # `id` is create's `study_id`; `created_at` is the moment
_CREATABLE = _COLUMNS.keys() - _SET_BY_THE_REGISTRY
_REQUIRED = {key for key in _CREATABLE
             if not (_COLUMNS[key].nullable or _COLUMNS[key].default or _COLUMNS[key].server_default)}
_UPDATABLE = {key for key, column in _COLUMNS.items() if not column.info.get("immutable")}
_TIMES = {key for key, column in _COLUMNS.items() if isinstance(column.type, UTCDateTime)}


class Registry:
    """Create, update and query studies in the registry at `url` (an SQLAlchemy URL), whose schema is brought
    up to date when it is opened. Every method opens and closes its own session."""

    def __init__(self, url: str):
        self.url = url
        try:
            self._engine = make_engine(url)
        except StudyError as exc:  # a bad HPSEARCH_DB_* setting: the registry cannot be opened with it
            raise RegistryUnavailable(str(exc)) from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            upgrade_schema(self._engine)
        except OperationalError as exc:
            where = self._engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
            raise RegistryUnavailable(
                f"cannot open the study registry {where} ({reason}); check HPSEARCH_REGISTRY_URL / HPSEARCH_HOME "
                f"and that its database server is up"
            ) from None

    def dispose(self) -> None:
        """Close the connections this registry holds."""
        self._engine.dispose()

    def create(self, *, study_id: str, **fields: Any) -> StudyRecord:
        """Record a new study. `fields` are StudyModel's columns; those that are neither nullable nor defaulted
        are required (name, space_text, metrics, modes, optuna_storage, optuna_study_name,
        mlflow_tracking_uri). `status` is queued unless given; `created_at` is now."""
        _refuse_fields(fields, _CREATABLE, "create a study with", "the registry sets them (the id is `study_id`)")
        missing = _REQUIRED - fields.keys()
        if missing:
            raise TypeError(f"a new study needs {', '.join(sorted(missing))}")
        values = dict(_checked(fields), id=study_id, created_at=_now())
        with self._sessions.begin() as session:
            return StudyRecord.of(session.scalars(insert(StudyModel).returning(StudyModel), [values]).one())

    def update(self, study_id: str, **fields: Any) -> StudyRecord:
        """Set `fields` (columns of StudyModel but id, created_at, metrics and modes) on the study with this
        exact id; the study as it now is."""
        _refuse_fields(fields, _UPDATABLE, "update study fields", "set when the study is created, never changed")
        if not fields:
            return self._find_or_raise_exact(study_id)
        statement = update(StudyModel).where(StudyModel.id == study_id).values(**_checked(fields))
        with self._sessions.begin() as session:
            model = session.scalars(statement.returning(StudyModel)).one_or_none()
            if model is None:
                raise StudyNotFound(f"no study {study_id!r} in the registry")
            return StudyRecord.of(model)

    def touch(self, study_id: str) -> None:
        """Note that the study's driver is alive now (`heartbeat_at`): one UPDATE, cheap enough for a driver to
        call every few seconds."""
        statement = update(StudyModel.__table__).where(StudyModel.id == study_id).values(heartbeat_at=_now())
        with self._engine.begin() as connection:
            if connection.execute(statement).rowcount == 0:
                raise StudyNotFound(f"no study {study_id!r} in the registry")

    def delete(self, study_id: str) -> StudyRecord:
        """Remove the study with this exact id from the registry; the record it had. Its Optuna study, MLflow
        runs and Tune files stay where they are, and stopping a study still running first is the caller's
        part."""
        with self._sessions.begin() as session:
            statement = delete(StudyModel).where(StudyModel.id == study_id).returning(StudyModel)
            model = session.scalars(statement).one_or_none()
            if model is None:
                raise StudyNotFound(f"no study {study_id!r} in the registry")
            return StudyRecord.of(model)

    def find_by_id(self, study_id: str) -> Optional[StudyRecord]:
        with self._sessions() as session:
            model = session.get(StudyModel, study_id)
            return StudyRecord.of(model) if model else None

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
                return StudyRecord.of(rows[0])
        where = self._engine.url.render_as_string(hide_password=True)
        if len(rows) > 1:
            raise StudyNotFound(f"study id {study_id!r} is the start of several studies in {where}; give more of it",
                                public=f"study id {study_id!r} is the start of several studies; give more of it")
        raise StudyNotFound(
            f"no study {study_id!r} in the registry {where}; `hpsearch list` shows the studies there "
            f"(set HPSEARCH_HOME if they are elsewhere)",
            public=f"no study {study_id!r}; `hpsearch list` shows the studies there are",
        )

    def list(self, status: Optional[str] = None, limit: int = 100) -> list[StudyRecord]:
        """The newest `limit` studies, newest first; only those with `status` if given."""
        query = select(StudyModel).order_by(StudyModel.created_at.desc()).limit(limit)
        if status:
            query = query.where(StudyModel.status == _status(status))
        with self._sessions() as session:
            return [StudyRecord.of(m) for m in session.scalars(query)]

    def _find_or_raise_exact(self, study_id: str) -> StudyRecord:
        record = self.find_by_id(study_id)
        if record is None:
            raise StudyNotFound(f"no study {study_id!r} in the registry")
        return record


def _refuse_fields(fields: dict, allowed: set, doing: str, why_not: str) -> None:
    """A TypeError, like a call with an unexpected keyword, for fields a study lacks or that are not
    `allowed` (`why_not` says why)."""
    refused = sorted(fields.keys() - allowed)
    if not refused:
        return
    unknown = [key for key in refused if key not in _COLUMNS]
    if unknown:
        raise TypeError(f"cannot {doing} {unknown}: a study has no such field (its fields are StudyModel's columns: "
                        f"{', '.join(_COLUMNS)})")
    raise TypeError(f"cannot {doing} {refused}: {why_not}")


def _checked(fields: dict) -> dict:
    """`fields` with the status as a StudyStatus; a wrong status or time raises a ValueError naming it now,
    rather than a database error at the flush."""
    for key in fields.keys() & _TIMES:
        try:
            UTCDateTime().process_bind_param(fields[key], None)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return dict(fields, status=_status(fields["status"])) if "status" in fields else fields


def _status(value: Any) -> StudyStatus:
    try:
        return StudyStatus(value)
    except ValueError:
        raise ValueError(f"status {value!r} is not one of {', '.join(StudyStatus)}") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@functools.lru_cache(maxsize=8)
def open_registry(url: str) -> Registry:
    """The process's one `Registry` at `url`: one connection pool, and the schema checked once, however many
    parts of a driver or the API use it (the runner, the progress callback, the study verbs)."""
    return Registry(url)
