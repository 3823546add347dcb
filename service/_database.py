"""How hpsearch talks to its databases (the study registry and Optuna's storage): few connections per process,
patience with a PostgreSQL that is busy or restarting, and SQLite (MLflow's store too) set up for one writer
beside many readers."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Optional

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from service._errors import StudyError
from service._retry import retry

logger = logging.getLogger(__name__)

POOL_SIZE_VARIABLE = "HPSEARCH_DB_POOL_SIZE"
CONNECT_WAIT_VARIABLE = "HPSEARCH_DB_CONNECT_WAIT_S"

# PostgreSQL connections one engine (a registry's, an Optuna storage's) keeps: a thread that needs one while
# all are in use waits for the next to come back (every use lasts milliseconds). A cluster's drivers, the API
# and the MLflow server share one server whose default `max_connections` is 100, so a driver keeps one per
# store, and 20 studies at once fit with room to spare (README, Reliability); `hpsearch serve` keeps 4 per
# store for its concurrent requests (service/_serve.py).
DEFAULT_POOL_SIZE = 1
# Connections opened beyond the pool for a moment: Optuna's storage needs a second one while it checks its
# schema (its Alembic check holds one connection and queries with another); the registry never does.
OPTUNA_BURST = 1
# Seconds a thread waits for one of those connections before the pool gives up (SQLAlchemy's default).
_POOL_WAIT_S = 30
# Seconds to wait for a PostgreSQL that answers "too many clients already" or is restarting (it then refuses
# connections, or says it is starting up) before giving up; a container's restart takes a few seconds.
DEFAULT_CONNECT_WAIT_S = 30.0
# Seconds after which an idle connection is replaced: firewalls and proxies drop idle TCP connections
# without a word (a dropped one is also caught by the ping before each use).
_RECYCLE_S = 1800
# What PostgreSQL says when it is there but cannot take a connection now: SQLSTATE 53300 (too many clients,
# or connections of a role or database) and 57P03 (starting up, shutting down, in recovery).
# https://www.postgresql.org/docs/current/errcodes-appendix.html
_SERVER_BUSY = ("too many clients", "too many connections", "remaining connection slots", "starting up",
                "shutting down", "not yet accepting connections", "in recovery mode")
# What a client sees while the server restarts, and also when the address is wrong: so it is waited for only
# once this registry has connected before, and a wrong URL is reported at once.
_REFUSED = ("connection refused",)
# SQLite waits this long (seconds) for another process's write lock before saying "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30


def make_engine(url: str, application: str = "hpsearch registry") -> Engine:
    url = with_driver(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return _server_engine(url, application)


@functools.lru_cache(maxsize=16)
def with_driver(url: str) -> str:
    """`url` with a database driver this Python has. A PostgreSQL URL that names no driver
    (`postgresql://...`) means psycopg 3 to SQLAlchemy 2.1; where only psycopg2 is installed (hpsearch[cluster]
    installs it) that one is used. A URL SQLAlchemy cannot use is a StudyError saying what to install or fix."""
    example = "write it like postgresql+psycopg2://USER@HOST:5432/DATABASE or sqlite:////absolute/path.db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # not echoed: it may hold a password
        raise StudyError(f"a database URL is not a URL SQLAlchemy can read; {example}") from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise StudyError(f"the database URL {parsed.render_as_string(hide_password=True)} names a database "
                         f"SQLAlchemy does not know ({parsed.drivername}); {example}") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2"):
            return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        where = parsed.render_as_string(hide_password=True)
        raise StudyError(f"the database URL {where} needs the Python package {exc.name or parsed.drivername}, "
                         f"which is not installed here: pip install {exc.name or parsed.drivername}, or name "
                         "an installed driver in the URL (postgresql+psycopg2://..., from hpsearch[cluster])") from None
    return url


def engine_kwargs(url: str, application: str, burst: int = 0) -> dict:
    """What `create_engine` takes for `url` (for a library that makes its own engine: Optuna's storage), with
    `burst` connections allowed beyond the pool for a moment."""
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    pool_size = _positive_int(POOL_SIZE_VARIABLE, DEFAULT_POOL_SIZE)
    connect_args = {}
    if make_url(url).get_backend_name() == "postgresql" and "application_name" not in make_url(url).query:
        # How pg_stat_activity names our connections: which store, which process.
        connect_args["application_name"] = f"{application} pid {os.getpid()}"
    return {
        "pool_size": pool_size,
        "max_overflow": burst,
        "pool_timeout": _POOL_WAIT_S,
        "pool_pre_ping": True,  # a connection the server dropped (a restart) is replaced before use
        "pool_recycle": _RECYCLE_S,
        "connect_args": connect_args,
    }


def sqlite_file(url: str) -> Optional[Path]:
    """The file an SQLite URL names, as SQLite opens it (relative to the working directory, `~` not expanded);
    None for another database, an in-memory one or a URL SQLAlchemy cannot read. The one place hpsearch turns
    an SQLite URL into a file (the registry's, MLflow's store, Optuna's storage)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _write_ahead_log(dbapi_connection, _record) -> None:
        # WAL lets readers (`hpsearch status`) proceed while a driver writes: https://sqlite.org/wal.html
        _switch_to_write_ahead_log(dbapi_connection)

    return engine


# Seconds one attempt to switch another library's store to WAL waits for the file (then a few more attempts).
_WAL_SWITCH_WAIT_S = 0.05


def use_write_ahead_log(url: str) -> None:
    """Put the SQLite database at `url` that another library made and opens (MLflow's store, Optuna's storage)
    in WAL mode, once: SQLite keeps the mode in the file, so every later connection of any process has it.

    In their default mode (a rollback journal) a reader blocks writers: `hpsearch status`, the MLflow UI or a
    report reading the store made the driver's writes wait, and after 20–30 s fail "database is locked". In
    WAL mode readers and the one writer proceed together, and a commit needs one sync instead of several
    (0.66 against 0.18 ms on this project's test machine). WAL needs every process on the same host, as the
    registry's SQLite already does (https://sqlite.org/wal.html).

    Best effort, in about a second at most: a file this user may not write (or a URL that opens it read-only,
    `mode=ro`) is left as it is, and so is one that other processes keep busy for that long (the next opening
    tries again). Anything but an SQLite file is left alone."""
    path = sqlite_file(url)
    if path is None or not path.is_file() or make_url(url).query.get("mode") == "ro":
        return
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):  # WAL needs files beside it
        return
    try:
        connection = sqlite3.connect(path, timeout=_WAL_SWITCH_WAIT_S)
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":  # a read: no lock needed
                _switch_to_write_ahead_log(connection, attempts=6, first_pause_s=0.02)  # 20 ms ... 0.32 s
        finally:
            connection.close()
    except sqlite3.Error as exc:
        logger.info("left %s in its journal mode (%s); the next opening tries again", path, exc)


def _switch_to_write_ahead_log(dbapi_connection, attempts: int = 13, first_pause_s: float = 0.005) -> None:
    """Put the database in WAL mode, asking again (by default for about 20 s) while other processes hold it.

    The switch needs the write lock. While another connection holds it (one upgrading the new registry) or
    asks for it too (processes opening a new database at the same moment all switch it), SQLite answers
    "database is locked" at once, without its busy wait, since waiting could deadlock
    (https://www.sqlite.org/c3ref/busy_handler.html); while another connection only reads, after its busy
    wait. Asked again later, the switch is made, or was made by another process and costs nothing."""
    retry(lambda: dbapi_connection.execute("PRAGMA journal_mode=WAL"), on=(sqlite3.OperationalError,),
          when=lambda exc: "locked" in str(exc), attempts=attempts,
          first_pause_s=first_pause_s,  # by default 5 ms, 10 ms, ... 10 s
          what="switching an SQLite database to WAL")


def _server_engine(url: str, application: str) -> Engine:
    engine = create_engine(make_url(url), **engine_kwargs(url, application))
    wait_for_busy_server(engine)
    return engine


def wait_for_busy_server(engine: Engine, wait_s: Optional[float] = None) -> None:
    """Retry a connection the server refuses for now (see _SERVER_BUSY, _REFUSED), with growing pauses, for up
    to `wait_s` seconds; then let the error through."""
    if wait_s is None:
        wait_s = _non_negative_float(CONNECT_WAIT_VARIABLE, DEFAULT_CONNECT_WAIT_S)
    where = engine.url.render_as_string(hide_password=True)
    connected_before = False

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        nonlocal connected_before
        deadline = time.monotonic() + wait_s
        pause = 0.1
        while True:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                message = str(exc).lower()
                worth_waiting = any(s in message for s in _SERVER_BUSY) or (
                    connected_before and any(s in message for s in _REFUSED))
                remaining = deadline - time.monotonic()
                if not worth_waiting or remaining <= 0:
                    raise
                if pause == 0.1:
                    logger.warning("the database %s refuses connections for now (%s); retrying for up to "
                                   "%.0f s", where, str(exc).strip().splitlines()[-1], wait_s)
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 2.0)
            else:
                connected_before = True
                return connection


def _positive_int(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise StudyError(f"{variable} is {raw!r}, but must be a whole number >= 1; unset it for {default}")
    return int(raw)


def _non_negative_float(variable: str, default: float) -> float:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise StudyError(
            f"{variable} is {raw!r}, but must be a number of seconds >= 0; unset it for {default:g}")
    return value


def transient(exc: BaseException) -> bool:
    """Whether a first connection that failed is worth trying again: the server is there but busy or starting
    (see _SERVER_BUSY). A refused one is not: that is also what a wrong address looks like."""
    message = str(exc).lower()
    return any(s in message for s in _SERVER_BUSY)
