"""The study registry: one row per study, on SQLite (a laptop) or PostgreSQL (a cluster).

- `_models.py`      the table (`StudyModel`) and the record a caller gets (`StudyRecord`, made from its columns)
- `_repository.py`  `Registry`: create, update, touch, delete, find, list
- `_migrate.py`     brings a database to the code's schema when it is opened (Alembic)
- `migrations/`     Alembic's env.py and one script per schema revision (README there: writing the next one)
The engine (a small connection pool, patience with a busy server, SQLite settings) is service/_database.py's,
shared with Optuna's storage.
"""

from service._registry._errors import RegistryUnavailable, StudyNotFound
from service._registry._models import SCHEMA_REVISION, StudyModel, StudyRecord, new_study_id
from service._registry._repository import Registry, open_registry

__all__ = [
    "Registry",
    "RegistryUnavailable",
    "SCHEMA_REVISION",
    "StudyModel",
    "StudyNotFound",
    "StudyRecord",
    "new_study_id",
    "open_registry",
]
