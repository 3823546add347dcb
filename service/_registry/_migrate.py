"""Bringing a registry's database to the schema this code describes, when `Registry(url)` opens it.

The schema's history is the Alembic revisions in `migrations/versions/` (0001 the first schema, 0002 cluster
mode, ...). The revision a database is at lives in the table `hpsearch_alembic_version`, not in Alembic's
default `alembic_version`: on a cluster the registry shares its PostgreSQL database with Optuna, which keeps
its own revision in `alembic_version`.

Opening is on the hot path (the API, every driver and each `hpsearch status` open a registry), so it reads
that one row and is done when the database is at `SCHEMA_REVISION`. Only otherwise does it load Alembic and
take a lock, so that processes opening a new database at the same moment upgrade it one at a time, and then:
- a new database is brought from nothing to the head;
- a database made before the registry used Alembic (its version, 1 to 3, in `hpsearch_schema_version`) is
  stamped at the matching revision and upgraded, its studies kept;
- a database at a revision this code does not know (a newer hpsearch upgraded it) is refused.
Each upgrade runs in one transaction: it applies whole or not at all.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from service._registry._errors import RegistryUnavailable
from service._registry._models import SCHEMA_REVISION, SchemaVersionModel, StudyModel

logger = logging.getLogger(__name__)

VERSION_TABLE = "hpsearch_alembic_version"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# The revision of a database made before the registry used Alembic, by the version in its
# `hpsearch_schema_version`. Version 3 (hpsearch between the study hall's split and Alembic) is schema 2 plus
# best_trial, pareto_front and heartbeat_at, which revision 0003 adds only where they are missing.
_PRE_ALEMBIC_REVISIONS = {1: "0001", 2: "0002", 3: "0002"}

# The key of the PostgreSQL advisory lock held while a database is upgraded: "hpsearch" in ASCII. Any key does
# as long as nothing else in the database takes it (Optuna and MLflow take no advisory locks).
# https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
_PG_LOCK_KEY = int.from_bytes(b"hpsearch", "big")


def upgrade_schema(engine: Engine) -> None:
    """Bring the database behind `engine` to SCHEMA_REVISION (see the module's docstring)."""
    if _read_revision(engine) == SCHEMA_REVISION:
        return
    with _one_process_at_a_time(engine) as connection:
        current = _revision_on(connection)
        if current != SCHEMA_REVISION:  # not upgraded by another process while this one waited for the lock
            _upgrade(connection, current, where=engine.url.render_as_string(hide_password=True))


def _read_revision(engine: Engine) -> Optional[str]:
    """The database's revision, read in one statement; None where there is no version table yet."""
    with engine.connect() as connection:
        try:
            return connection.execute(_SELECT_REVISION).scalar()
        except (OperationalError, ProgrammingError):  # no such table: a new or pre-Alembic database
            return None


def _revision_on(connection: Connection) -> Optional[str]:
    """Like `_read_revision`, inside a transaction that a failed statement would spoil on PostgreSQL."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(_SELECT_REVISION).scalar()


_SELECT_REVISION = text(f"SELECT version_num FROM {VERSION_TABLE}")


@contextmanager
def _one_process_at_a_time(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that one process at a time holds on this database. Whoever comes first
    upgrades it; the others wait, then find it at the head and have nothing to do."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            # Held until this transaction ends, however it ends (even if the process dies).
            connection.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            yield connection
    elif engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            # BEGIN IMMEDIATE takes SQLite's write lock at once (the others wait up to the busy timeout). The
            # driver must leave BEGIN to us, otherwise DDL would run outside the transaction:
            # https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#sqlite-transactions
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.connection.dbapi_connection.in_transaction:
                    connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
    else:  # hpsearch runs its registry on SQLite or PostgreSQL; elsewhere, one transaction and no lock
        with engine.begin() as connection:
            yield connection


def _upgrade(connection: Connection, current: Optional[str], where: str) -> None:
    # Imported here, not at the top: a registry already at the head is opened without loading Alembic.
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(connection)
    scripts = ScriptDirectory.from_config(config)
    stamp_first = False
    if current is None:  # a new database, or one made before the registry used Alembic
        current = _pre_alembic_revision(connection, where)
        stamp_first = current is not None
    _refuse_unknown(scripts, current, where)
    head = scripts.get_current_head()
    logger.info("upgrading the study registry %s from schema %s to %s", where, current or "nothing", head)
    try:
        if stamp_first:
            command.stamp(config, current)
        command.upgrade(config, "head")
    except Exception as exc:  # the transaction is rolled back: say why, and that nothing changed
        reason = str(exc).strip().splitlines()[0]
        raise RegistryUnavailable(
            f"cannot upgrade the study registry {where} from schema {current or 'nothing'} to {head} ({reason}); "
            f"it is left as it was"
        ) from exc


def alembic_config(connection: Optional[Connection] = None):
    """Alembic's configuration for the registry's migrations, without an alembic.ini: the scripts in this
    package, run on `connection` (see migrations/env.py)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _pre_alembic_revision(connection: Connection, where: str) -> Optional[str]:
    """The revision matching a database made before the registry used Alembic, or None if it has no studies
    table. Such a database holds its version in a single row of `hpsearch_schema_version`; where the row is
    missing (a crash between creating the tables and writing it), its columns tell."""
    tables = set(inspect(connection).get_table_names())
    if StudyModel.__tablename__ not in tables:
        return None
    version = None
    if SchemaVersionModel.__tablename__ in tables:
        version = connection.scalar(select(SchemaVersionModel.version).where(SchemaVersionModel.id == 1))
    if version is None:
        columns = {c["name"] for c in inspect(connection).get_columns(StudyModel.__tablename__)}
        version = 3 if "heartbeat_at" in columns else 2 if "stop_requested_at" in columns else 1
    if version not in _PRE_ALEMBIC_REVISIONS:
        raise RegistryUnavailable(
            f"the study registry {where} has schema version {version} but no {VERSION_TABLE}: this hpsearch "
            f"knows versions up to {max(_PRE_ALEMBIC_REVISIONS)} without it; upgrade hpsearch"
        )
    return _PRE_ALEMBIC_REVISIONS[version]


def _refuse_unknown(scripts, revision: Optional[str], where: str) -> None:
    from alembic.util import CommandError

    if revision is None:
        return
    try:
        scripts.get_revision(revision)
    except CommandError:
        raise RegistryUnavailable(
            f"the study registry {where} is at schema revision {revision}, which this hpsearch does not know "
            f"(it knows up to {SCHEMA_REVISION}): a newer hpsearch has upgraded it; upgrade hpsearch"
        ) from None
