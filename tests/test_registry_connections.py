"""How a registry uses PostgreSQL connections: few per process, and patience with a busy or restarting server.

Against the machine's real PostgreSQL. Connections are counted in pg_stat_activity by an application name of
the test's own; "too many clients" is produced by a role allowed one connection, and a restart by a relay
that stops and starts, so the server's own limit, which other tests share, is never touched.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service._database import with_driver
from service._registry import Registry, RegistryUnavailable, new_study_id


def _create(registry: Registry, name: str = "conn"):
    study_id = new_study_id(name)
    return registry.create(
        study_id=study_id, name=name, space_text="name: x\n", space_source=None, metrics=["val_acc"], modes=["max"],
        optuna_storage="sqlite:///optuna.db", optuna_study_name=study_id, mlflow_tracking_uri="sqlite:///mlflow.db",
    )


@pytest.fixture
def admin(pg_url):
    engine = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def database_url(pg_url, admin):
    """A PostgreSQL database of the test's own (the session's is left without studies for the API tests)."""
    name = f"hps_conn_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _connections(admin, application_name: str) -> int:
    with admin.connect() as conn:
        return conn.execute(text("select count(*) from pg_stat_activity where application_name = :name"),
                            {"name": application_name}).scalar_one()


@pytest.mark.slow
@pytest.mark.parametrize("pool_size,bound", [(None, 1), ("1", 1), ("3", 3)])
def test_registry_holds_few_postgresql_connections(database_url, admin, monkeypatch, pool_size, bound):
    """One Registry holds one connection after sequential use, at most the pool size during a burst of 16
    threads (the others wait their turn) and after it, and none once disposed. HPSEARCH_DB_POOL_SIZE sets the
    pool size."""
    if pool_size is None:
        monkeypatch.delenv("HPSEARCH_DB_POOL_SIZE", raising=False)  # `hpsearch serve` sets it in its process
    else:
        monkeypatch.setenv("HPSEARCH_DB_POOL_SIZE", pool_size)
    name = f"hps-test-{secrets.token_hex(4)}"
    registry = Registry(f"{database_url}?application_name={name}")

    studies = [_create(registry) for _ in range(3)]  # typical use: a driver's writes, a `status`, a `list`
    for study in studies:
        registry.update(study.id, status="running", n_trials=1)
        registry.find_or_raise_by_id(study.id)
    registry.list()
    assert _connections(admin, name) == 1

    # The peak is counted where the connections are opened and closed: pg_stat_activity keeps a closed
    # connection's row until its server process has exited, which on a loaded machine lags behind the burst.
    open_now, peak, lock = 1, 1, threading.Lock()

    def opened(*_args) -> None:
        nonlocal open_now, peak
        with lock:
            open_now += 1
            peak = max(peak, open_now)

    def closed(*_args) -> None:
        nonlocal open_now
        with lock:
            open_now -= 1

    event.listen(registry._engine, "connect", opened)
    event.listen(registry._engine, "close", closed)
    event.listen(registry._engine, "close_detached", closed)

    def work(i: int) -> None:
        for _ in range(10):
            registry.update(studies[i % 3].id, n_trials=i)
            registry.list(limit=5)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(work, range(16)))

    assert 1 <= peak <= bound
    assert _settles(lambda: _connections(admin, name) <= bound)  # a closed connection's server process ends soon after
    registry.dispose()
    assert _settles(lambda: _connections(admin, name) == 0)


def _settles(condition, within_s: float = 30.0) -> bool:  # a loaded machine ends server processes late
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("variable,value", [
    ("HPSEARCH_DB_POOL_SIZE", "0"),
    ("HPSEARCH_DB_POOL_SIZE", "many"),
    ("HPSEARCH_DB_CONNECT_WAIT_S", "-1"),
    ("HPSEARCH_DB_CONNECT_WAIT_S", "soon"),
])
def test_registry_rejects_a_bad_connection_setting(pg_url, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(RegistryUnavailable, match=f"{variable} is '{value}', but must be"):
        Registry(pg_url)


@pytest.fixture
def one_connection_url(pg_url, admin):
    """A database whose owner may hold one connection at a time: PostgreSQL refuses its second with "too many
    connections for role" (SQLSTATE 53300, the code of "too many clients already")."""
    name = f"hps_one_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 1'))
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
    yield make_url(pg_url).set(username=name, database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))


@pytest.mark.slow
def test_registry_waits_for_a_server_with_no_free_connection(one_connection_url):
    other = create_engine(one_connection_url, poolclass=NullPool)
    held = other.connect()  # takes the role's only connection
    threading.Timer(1.5, held.close).start()

    started = time.monotonic()
    registry = Registry(one_connection_url)

    assert time.monotonic() - started >= 1.0
    assert registry.list() == []
    registry.dispose()
    other.dispose()


@pytest.mark.slow
def test_registry_gives_up_on_a_full_server_after_the_connect_wait(one_connection_url, monkeypatch):
    monkeypatch.setenv("HPSEARCH_DB_CONNECT_WAIT_S", "1")
    other = create_engine(one_connection_url, poolclass=NullPool)
    with other.connect():
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match="too many connections"):
            Registry(one_connection_url)
        assert 1 <= time.monotonic() - started < 60  # gave up after its 1 s wait, not the default's minutes
    other.dispose()


def test_registry_reports_a_wrong_address_at_once(monkeypatch):
    monkeypatch.setenv("HPSEARCH_DB_CONNECT_WAIT_S", "300")  # a refused address is not waited for at all
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="Connection refused"):
        Registry(f"postgresql+psycopg2://postgres@127.0.0.1:{_free_port()}/nothing")
    assert time.monotonic() - started < 60


class _Relay:
    """A TCP relay to PostgreSQL that stops and starts: to a client, what a restart of the server looks like
    (open connections drop, new ones are refused, then accepted again)."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.port = target, _free_port()
        self._sockets: list[socket.socket] = []
        self._running = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        time.sleep(0.2)  # the accept loop closes the listener
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            client.settimeout(None)
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()
        listener.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_registry_rides_out_a_server_restart(database_url):
    url = make_url(database_url)
    relay = _Relay((url.host, url.port or 5432))
    relay.start()
    registry = Registry(url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False))
    study = _create(registry, "restart")

    relay.stop()  # the server goes down: its connections drop, new ones are refused ...
    threading.Timer(1.5, relay.start).start()  # ... and it is back 1.5 s later

    assert registry.find_or_raise_by_id(study.id).id == study.id
    registry.update(study.id, status="running")
    registry.dispose()
    relay.stop()


def test_a_postgresql_url_without_a_driver_uses_one_that_is_installed(pg_url):
    """`postgresql://` means psycopg 3 to SQLAlchemy 2.1; hpsearch[cluster] installs psycopg2, which is used
    where psycopg 3 is missing, so the URL most people write works as it is."""
    bare = "postgresql://" + make_url(pg_url).render_as_string(hide_password=False).split("://", 1)[1]
    resolved = make_url(with_driver(bare))
    resolved.get_dialect().import_dbapi()  # raises ImportError for a driver that is not here
    assert resolved.get_backend_name() == "postgresql"
    registry = Registry(bare)
    assert registry.list() is not None
    registry.dispose()


@pytest.mark.parametrize("url,expected", [
    ("foo://admin:s3cret@db/hps", "names a database SQLAlchemy does not know (foo)"),
    ("postgresql+pg8000://admin:s3cret@db/hps", "needs the Python package pg8000, which is not installed here"),
    ("admin:s3cret at db", "a database URL is not a URL SQLAlchemy can read"),
])
def test_a_database_url_sqlalchemy_cannot_use_is_one_line_without_its_password(url, expected, tmp_path):
    env = {**os.environ, "HPSEARCH_HOME": str(tmp_path), "HPSEARCH_REGISTRY_URL": url}
    done = subprocess.run([sys.executable, "-m", "service.cli", "list"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
