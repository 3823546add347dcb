"""`Registry`: create, update and query studies."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from service._registry._engine import make_engine
from service._registry._errors import RegistryUnavailable, StudyNotFound
from service._registry._migrate import upgrade_schema
from service._registry._models import StudyModel, StudyRecord
from service._states import StudyStatus

_UPDATABLE = {c.name for c in StudyModel.__table__.columns} - {"id", "created_at", "metrics", "modes"}


class Registry:
    """Create, update and query studies. Every method opens and closes its own session."""

    def __init__(self, url: str):
        self.url = url
        self._engine = make_engine(url)
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
            space_overrides=list(space_overrides), status=StudyStatus(status),
            created_at=_now(), metrics=list(metrics), modes=list(modes),
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
            fields["status"] = StudyStatus(fields["status"])
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

    def list(self, status: Optional[str] = None, limit: int = 100) -> list[StudyRecord]:
        query = select(StudyModel).order_by(StudyModel.created_at.desc()).limit(limit)
        if status:
            query = query.where(StudyModel.status == StudyStatus(status))
        with self._sessions() as session:
            return [StudyRecord._from_model(m) for m in session.scalars(query)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
